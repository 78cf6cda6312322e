//! The Engine-facing types: what callers give the client and what it returns,
//! this crate's own small structs rather than bollard's models.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, Shared};
use futures_util::Stream;
use tokio::io::AsyncWrite;

use crate::error::{Error, Result};

/// What we need to know about an image.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// Image id (`sha256:…`).
    pub id: String,
    /// Labels of its config; containers inherit them.
    pub labels: BTreeMap<String, String>,
}

/// What we need to know about a network.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    /// Network id.
    pub id: String,
    /// Network name.
    pub name: String,
    /// `local` or `swarm`.
    pub scope: String,
    /// Driver name (`bridge`, `overlay`, …).
    pub driver: String,
    /// Whether standalone containers may join a swarm network.
    pub attachable: bool,
    /// Its IPAM subnets (`172.18.0.0/16`), as the Engine gives them.
    pub subnets: Vec<String>,
}

/// A container's address on one network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// Network id.
    pub network_id: String,
    /// IPv4 address, empty when not yet assigned.
    pub ip: String,
}

/// A container as the list and inspect endpoints describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Full container id.
    pub id: String,
    /// Name without the leading slash.
    pub name: String,
    /// Image reference it was created from.
    pub image: String,
    /// Its labels (image labels included).
    pub labels: BTreeMap<String, String>,
    /// `created`, `running`, `paused`, `exited`, …
    pub state: String,
    /// `starting`, `healthy`, `unhealthy`, or `None` without a healthcheck.
    pub health: Option<String>,
    /// Network name → endpoint.
    pub networks: BTreeMap<String, Endpoint>,
    /// When its current run started (Unix nanoseconds); only inspect tells.
    pub started_at_ns: Option<i64>,
    /// When its last run ended (Unix nanoseconds; while it runs, the previous
    /// run's end), if one ever did; only inspect tells.
    pub finished_at_ns: Option<i64>,
    /// TCP ports the Engine publishes on its host: the container's port →
    /// `host:port` where this process reaches it (see `reach`).
    pub published: BTreeMap<u16, String>,
}

/// This Engine's place in a Swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmRole {
    /// Not in a Swarm.
    Standalone,
    /// A worker node: it knows only its own tasks.
    Worker {
        /// This node's id.
        node_id: String,
    },
    /// A manager: it lists every task of the Swarm.
    Manager {
        /// This node's id.
        node_id: String,
    },
}

/// A Swarm task as a manager lists it; every field may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskInfo {
    /// Task id.
    pub id: String,
    /// Its service's id.
    pub service_id: String,
    /// The node it is scheduled on.
    pub node_id: String,
    /// Replica slot (replicated services); `None` for global ones.
    pub slot: Option<i64>,
    /// `running`, `starting`, `shutdown`, `failed`, …
    pub state: String,
    /// What the Swarm wants it to be: `running`, `shutdown`, …
    pub desired_state: String,
    /// Its container, once it has one.
    pub container_id: Option<String>,
    /// The image its container runs.
    pub image: String,
    /// The container-spec labels (Swarm adds its own to the container).
    pub labels: BTreeMap<String, String>,
    /// Network name → the task's address on it.
    pub networks: BTreeMap<String, Endpoint>,
    /// Why it is in its state, as Swarm says (`Status.Err`, else
    /// `Status.Message`): "No such image: …", "no suitable node (…)".
    pub message: String,
    /// Its container's exit code, once it exited.
    pub exit_code: Option<i64>,
    /// When its state last changed, Unix nanoseconds.
    pub changed_ns: Option<i64>,
}

/// One container event from the Engine's stream.
#[derive(Debug, Clone)]
pub struct ContainerEvent {
    /// Container id.
    pub id: String,
    /// `start`, `die`, `health_status: healthy`, …
    pub action: String,
    /// Engine time in nanoseconds since the epoch.
    pub time_nano: i64,
    /// The signal of a `kill` event.
    pub signal: Option<String>,
    /// For network connect/disconnect events, the network's name.
    pub network: Option<String>,
}

/// A stream of container events that ends on the first error.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<ContainerEvent>> + Send>>;

/// Everything needed to create a container.
#[derive(Debug, Clone, Default)]
pub struct CreateSpec {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Network to attach at creation (the container's network mode).
    pub network: Option<String>,
    /// A TCP port to publish on the Engine's host, at a port the Engine
    /// picks, bound as narrowly as the Engine's place allows (see `reach`).
    pub publish: Option<u16>,
    /// Bind mounts and volumes, `src:dst[:mode]`.
    pub binds: Vec<String>,
    /// Bind mounts whose source must exist: the create fails if it is missing,
    /// where `binds` has the daemon create it as a root-owned directory.
    pub mounts: Vec<BindMount>,
    /// CPU limit in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// GPUs to request: `Some(-1)` for all.
    pub gpus: Option<i64>,
    /// Remove the container when it exits.
    pub auto_remove: bool,
    /// Keep stdin open for one attached client (the owner).
    pub stdin_once: bool,
    /// Turn off the image's healthcheck (a parked standby container serves
    /// nothing to check, and must not go unhealthy while it waits).
    pub no_healthcheck: bool,
    /// What the container may do (user, capabilities, root filesystem, limits).
    pub confinement: Confinement,
}

/// How a container is confined: the process's user and privileges, its root
/// filesystem, and the limits that keep it from hurting the host. Empty and
/// `None` fields leave the image's or the daemon's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// `user[:group]` the process runs as; `None` is the image's `USER`.
    pub user: Option<String>,
    /// Mount the root filesystem read-only.
    pub read_only: bool,
    /// tmpfs mounts: path to mount options (`size=64m,mode=1777`).
    pub tmpfs: BTreeMap<String, String>,
    /// Capabilities removed (`ALL` for every one).
    pub cap_drop: Vec<String>,
    /// Capabilities added back after `cap_drop`.
    pub cap_add: Vec<String>,
    /// `--security-opt` values (`no-new-privileges:true`, seccomp, AppArmor).
    pub security_opt: Vec<String>,
    /// Most processes and threads at once; `None` leaves it unlimited.
    pub pids_limit: Option<i64>,
    /// The kernel's OOM-kill preference (-1000..1000; higher is killed first).
    pub oom_score_adj: Option<i64>,
    /// Resource limits: (name, soft, hard).
    pub ulimits: Vec<(String, i64, i64)>,
    /// Log driver and its options; `None` is the daemon's default.
    pub log: Option<(String, BTreeMap<String, String>)>,
    /// OCI runtime (`runc`, gVisor's `runsc`, Kata); `None` is the daemon's default.
    pub runtime: Option<String>,
    /// Supplementary groups of the process (e.g. the Engine socket's group).
    pub group_add: Vec<String>,
}

/// One host path bind-mounted into a container (`Mounts`, type `bind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Host path; it must exist when the container is created.
    pub source: String,
    /// Path inside the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Standard output or error, with the bytes the container wrote.
#[derive(Debug, Clone)]
pub enum Output {
    /// A chunk of stdout.
    Stdout(Vec<u8>),
    /// A chunk of stderr.
    Stderr(Vec<u8>),
}

/// A stream of container output chunks.
pub type OutputStream = Pin<Box<dyn Stream<Item = Result<Output>> + Send>>;
/// A writer to a container's stdin.
pub type InputWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// A pull under way, which every caller for the same image awaits.
type Flight = Shared<BoxFuture<'static, std::result::Result<(), Arc<Error>>>>;

/// The image pulls under way on one Engine, by image reference (see `pull`).
#[derive(Clone, Default)]
pub(super) struct Flights(pub(super) Arc<Mutex<HashMap<String, Flight>>>);

impl Flights {
    /// Drop the record of a pull that ended: the next caller pulls anew.
    pub(super) fn forget(&self, image: &str) {
        if let Ok(mut flights) = self.0.lock() {
            flights.remove(image);
        }
    }
}
