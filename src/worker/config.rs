//! The worker's configuration, as `DockerWorker` decides it: the boundary
//! between the Python layer and the core, declared once. `bindings` reads it
//! from the dict `worker.py` builds; every struct rejects unknown keys.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::labels::{self, Publication};

/// TLS material for a secure worker, PEM text.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
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

impl std::fmt::Debug for Tls {
    /// Never the key: a configuration may end up in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("mutual", &self.mutual)
            .finish_non_exhaustive()
    }
}

/// Everything `DockerWorker` decides about its container: the one schema of
/// what crosses from Python (`worker.py` builds it as a dict). Every key is
/// required unless its type is an `Option`, and an unknown key is an error, so
/// a key renamed on one side fails loudly instead of becoming a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
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
    pub labels: BTreeMap<String, String>,
    /// The user's extra environment.
    pub env: BTreeMap<String, String>,
    /// Binds and volumes, `src:dst[:mode]`.
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
    pub shutdown_grace: f64,
    /// How the container reaches the Engine for nested routines.
    pub engine_access: EngineAccess,
    /// wool's server-side `WorkerOptions` fields (all but `channel`).
    pub server_options: labels::Options,
    /// Seconds the server keeps an idle proxy (wool's `proxy_pool_ttl`).
    pub proxy_pool_ttl: f64,
    /// The admission hook, cloudpickled.
    pub backpressure: Option<Pickle>,
    /// How the container is confined.
    pub sandbox: Sandbox,
    /// A `SwarmWorker`'s placement: its container runs as a one-task Swarm
    /// service. `None`: a container on the Engine itself.
    pub swarm: Option<SwarmPlacement>,
}

/// Where the Swarm may place a `SwarmWorker`'s task, and how the task
/// reaches its owner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmPlacement {
    /// Placement constraints (`node.labels.gpu==true`).
    pub constraints: Vec<String>,
    /// CPUs reserved, in billionths.
    pub reserve_nano_cpus: Option<i64>,
    /// Memory reserved, in bytes.
    pub reserve_memory: Option<i64>,
    /// The owner's address the task connects to; `None`: this process's
    /// address on the worker's network, read from the Engine.
    pub lifeline_host: Option<String>,
}

/// Opaque bytes (a cloudpickle) that only the container's Python reads.
#[derive(Clone, PartialEq, Eq)]
pub struct Pickle(pub Vec<u8>);

impl std::fmt::Debug for Pickle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pickle({} bytes)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for Pickle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Pickle;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<Pickle, E> {
                Ok(Pickle(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(
                self,
                v: Vec<u8>,
            ) -> std::result::Result<Pickle, E> {
                Ok(Pickle(v))
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
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
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum EngineAccess {
    /// The owner's worker feed: records of the owner's scopes, no Engine API.
    #[default]
    Feed,
    /// The Engine socket itself: full control of the host's Docker.
    Socket,
    /// No Engine access: nested routines cannot discover workers.
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A complete config, as JSON (serde's rules are the same from a dict).
    fn complete() -> serde_json::Value {
        serde_json::json!({
            "image": "img", "name": "w", "network": null,
            "publication": {
                "uid": "6f0c1a52-3a70-4a36-9a4b-0b7f3d2a9c11", "port": 50051,
                "tags": [], "extra": {"a": "b"}, "secure": false, "identity": null,
                "options": {"compression": 0}, "network": null
            },
            "selector": {"wool.worker": "true"}, "labels": {}, "env": {}, "binds": [],
            "nano_cpus": null, "memory": null, "gpus": null,
            "python": "3.11", "wool_version": "0.15.7", "tls": null,
            "shutdown_grace": 60.0, "engine_access": "feed",
            "server_options": {"proxy_pool_ttl": 60.0}, "proxy_pool_ttl": 60.0,
            "backpressure": null,
            "sandbox": {
                "user": null, "read_only": true, "tmpfs": {}, "cap_add": [],
                "security_opt": [], "pids_limit": null, "oom_score_adj": null,
                "ulimits": {"nofile": [1, 2]}, "log": null, "runtime": null
            }
        })
    }

    fn parse(value: serde_json::Value) -> Result<WorkerConfig, String> {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    #[test]
    fn a_complete_config_is_read_with_its_nested_values() {
        let cfg = parse(complete()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.publication.port, labels::Port(50051));
        assert_eq!(cfg.publication.extra.0["a"], "b");
        assert_eq!(cfg.server_options["proxy_pool_ttl"], 60.0);
        assert_eq!(cfg.engine_access, EngineAccess::Feed);
        assert_eq!(cfg.sandbox.ulimits["nofile"], (1, 2));
    }

    #[test]
    fn an_unknown_key_fails_at_every_level() {
        for pointer in ["", "/publication", "/sandbox", "/tls"] {
            let mut value = complete();
            value["tls"] = serde_json::json!({"ca": "", "cert": "", "key": "", "mutual": true});
            let Some(serde_json::Value::Object(target)) = value.pointer_mut(pointer) else {
                panic!("no object at {pointer:?}");
            };
            target.insert("bogus".to_owned(), serde_json::json!(1));
            let err = parse(value).err().unwrap_or_default();
            assert!(err.contains("unknown field `bogus`"), "{pointer}: {err}");
        }
    }

    #[test]
    fn a_missing_required_key_fails() {
        for key in ["labels", "env", "binds", "shutdown_grace", "server_options"] {
            let mut value = complete();
            value.as_object_mut().map(|o| o.remove(key));
            let err = parse(value).err().unwrap_or_default();
            assert!(
                err.contains(&format!("missing field `{key}`")),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn the_hook_is_bytes_and_never_printed() {
        // Text (the old base64 boundary) is refused.
        assert!(serde_json::from_value::<Pickle>(serde_json::json!("gAU=")).is_err());
        let hook: Pickle =
            serde::de::Deserialize::deserialize(serde::de::value::BytesDeserializer::<
                serde_json::Error,
            >::new(&[128, 5]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hook.0, [128, 5]);
        assert_eq!(format!("{hook:?}"), "Pickle(2 bytes)");
    }

    #[test]
    fn tls_debug_output_leaves_the_key_out() {
        let tls = Tls {
            ca: "CA".into(),
            cert: "CERT".into(),
            key: "SECRET".into(),
            mutual: true,
        };
        assert!(!format!("{tls:?}").contains("SECRET"));
    }
}
