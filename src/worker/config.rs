//! The worker's configuration, as `DockerWorker` decides it: the boundary
//! between the Python layer and the core.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::labels::Publication;

/// TLS material for a secure worker, PEM text.
#[derive(Debug, Clone, Deserialize)]
pub struct Tls {
    /// CA certificate(s) that client certificates must chain to.
    pub ca: String,
    /// The worker's certificate chain.
    pub cert: String,
    /// The worker's private key.
    pub key: String,
    /// Require client certificates.
    pub mutual: bool,
}

/// Everything `DockerWorker` decides about its container.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkerConfig {
    /// Worker image.
    pub image: String,
    /// Container name.
    pub name: String,
    /// Network to attach; `None` is the default bridge.
    pub network: Option<String>,
    /// The worker's metadata as published in labels.
    pub publication: Publication,
    /// The discovery selector (default `wool.worker=true`), added to the labels.
    pub selector: BTreeMap<String, String>,
    /// The user's extra labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The user's extra environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Binds and volumes, `src:dst[:mode]`.
    #[serde(default)]
    pub binds: Vec<String>,
    /// CPU limit in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// GPUs (-1 for all).
    pub gpus: Option<i64>,
    /// The caller's Python `major.minor`; the image's must match.
    pub python: String,
    /// The caller's wool version; the image's major must match.
    pub wool_version: String,
    /// TLS material when the worker serves securely.
    pub tls: Option<Tls>,
    /// The server's own shutdown grace in seconds (wool's `shutdown_grace_period`).
    pub shutdown_grace: Option<f64>,
    /// How the container reaches the Engine for nested routines.
    #[serde(default)]
    pub engine_access: EngineAccess,
    /// wool's server-side `WorkerOptions` fields, JSON text.
    #[serde(default)]
    pub server_options: Option<String>,
    /// Seconds the server keeps an idle proxy (wool's `proxy_pool_ttl`).
    #[serde(default)]
    pub proxy_pool_ttl: Option<f64>,
    /// The admission hook, cloudpickled and base64-encoded.
    #[serde(default)]
    pub backpressure: Option<String>,
    /// How the container is confined.
    pub sandbox: Sandbox,
}

/// The user's confinement choices, each already resolved by the caller (its
/// default is `DockerWorker`'s keyword default). The tmpfs mounts a read-only
/// root needs, and the TLS directory, are added by `create_spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sandbox {
    /// `user[:group]`; `None` is the image's `USER`.
    pub user: Option<String>,
    /// Read-only root filesystem, with tmpfs for `/tmp` and the home directory.
    pub read_only: bool,
    /// The user's own tmpfs mounts: path to options.
    pub tmpfs: BTreeMap<String, String>,
    /// Capabilities added back (every one is dropped first).
    pub cap_add: Vec<String>,
    /// `--security-opt` values.
    pub security_opt: Vec<String>,
    /// Most processes and threads at once; `None` is unlimited.
    pub pids_limit: Option<i64>,
    /// OOM-kill preference; positive so the kernel kills a worker before its owner.
    pub oom_score_adj: Option<i64>,
    /// Resource limits: name to (soft, hard).
    pub ulimits: BTreeMap<String, (i64, i64)>,
    /// Log driver and its options; `None` is the daemon's default.
    pub log: Option<(String, BTreeMap<String, String>)>,
    /// OCI runtime; `None` is the daemon's default.
    pub runtime: Option<String>,
}

/// What a worker container reaches of discovery (its subscriber needs it when a
/// routine awaits another routine).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineAccess {
    /// The owner's worker feed: records of the owner's scopes, no Engine API.
    #[default]
    Feed,
    /// The Engine socket itself: full control of the host's Docker.
    Socket,
    /// No Engine access: nested routines cannot discover workers.
    None,
}
