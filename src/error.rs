//! The crate's one error type, and its one conversion into Python exceptions.
//!
//! Variants name the user's problem, not the HTTP call that found it; messages name
//! the object and the next step. Everything else in the crate returns [`Result`].

use std::time::Duration;

use pyo3::exceptions::asyncio::CancelledError;
use pyo3::exceptions::PyValueError;
use pyo3::PyErr;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between wool-docker and the Docker Engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Engine did not answer at all: no daemon, wrong `DOCKER_HOST`, refused.
    #[error(
        "cannot reach the Docker Engine at {host}: {source}; start the daemon or point \
         DOCKER_HOST (or docker_host=) at a running one"
    )]
    DaemonUnreachable {
        /// The address that was tried.
        host: String,
        /// What the transport said.
        #[source]
        source: bollard::errors::Error,
    },

    /// The socket exists but this user may not open it (`EACCES`).
    #[error(
        "permission denied on the Docker Engine socket {socket}: {}",
        access_fix(.group.as_deref())
    )]
    PermissionDenied {
        /// The address that was tried (`unix://…`).
        host: String,
        /// The socket's path.
        socket: String,
        /// The group that owns the socket, by name (its number when it has
        /// none); `None` when this user cannot even look at the socket.
        group: Option<String>,
    },

    /// There is no socket at the Engine's address (`ENOENT`): nothing to
    /// refuse us, unlike a stopped daemon's socket left behind.
    #[error(
        "the Docker Engine socket {socket} does not exist: the daemon is not running, \
         or DOCKER_HOST (or docker_host=, or the docker context) names the wrong socket"
    )]
    SocketMissing {
        /// The address that was tried (`unix://…`).
        host: String,
        /// The socket's path.
        socket: String,
    },

    /// `ssh` could not forward an `ssh://` Engine's socket.
    #[error("cannot reach the Docker Engine at {host} over ssh: {detail}")]
    SshFailed {
        /// The `ssh://` address.
        host: String,
        /// What `ssh` said, and what to do about it.
        detail: String,
    },

    /// An image is not on the daemon (and was not to be pulled).
    #[error(
        "image '{image}' is not on the Docker Engine; build it with \
         `wool-docker image build --tag {image}`, or let the worker pull it \
         (pull=\"missing\", the default)"
    )]
    ImageNotFound {
        /// The image reference.
        image: String,
    },

    /// The registry has no such repository or tag.
    #[error(
        "image '{image}' is not in registry {registry} (no such repository or tag); \
         push it there (`wool-docker image build --tag {image} --push`) or fix the reference"
    )]
    ImageNotInRegistry {
        /// The image reference.
        image: String,
        /// The registry asked.
        registry: String,
    },

    /// The registry refused the credentials, or asked for some and got none.
    #[error(
        "registry {registry} refused to let this process {verb} image '{image}': {message}; \
         log in with `docker login {registry}` (credentials are read as the docker CLI \
         reads them: $DOCKER_CONFIG/config.json, else ~/.docker/config.json), or, if \
         the repository does not exist there, build the image \
         (`wool-docker image build --tag {image}`)"
    )]
    RegistryDenied {
        /// `pull` or `push`.
        verb: &'static str,
        /// The image reference.
        image: String,
        /// The registry that refused.
        registry: String,
        /// The Engine's words.
        message: String,
    },

    /// The Engine could not reach the registry, or not trust it.
    #[error(
        "the Docker Engine cannot reach registry {registry} to {verb} image '{image}': \
         {message}; check that the registry runs at that address and that the Engine \
         trusts its certificate (/etc/docker/certs.d/{registry}/ca.crt on the Engine's host)"
    )]
    RegistryUnreachable {
        /// `pull` or `push`.
        verb: &'static str,
        /// The image reference.
        image: String,
        /// The registry address.
        registry: String,
        /// The Engine's words.
        message: String,
    },

    /// The credentials configured for a registry cannot be read.
    #[error("cannot read the credentials for registry {registry}: {reason}")]
    RegistryCredentials {
        /// The registry.
        registry: String,
        /// What went wrong.
        reason: String,
    },

    /// Any other failure of a pull or push.
    #[error("could not {verb} image '{image}' (registry {registry}): {message}")]
    PullFailed {
        /// `pull` or `push`.
        verb: &'static str,
        /// The image reference.
        image: String,
        /// The registry.
        registry: String,
        /// The Engine's words.
        message: String,
    },

    /// A worker image cannot serve the calling Python process.
    #[error("image '{image}' cannot serve this process: {detail}; rebuild it with `wool-docker image build --tag {image}` from this environment")]
    ImageMismatch {
        /// The image reference.
        image: String,
        /// What differs.
        detail: String,
    },

    /// `docker build` failed.
    #[error("building image '{tag}' failed: {message}")]
    BuildFailed {
        /// The tag being built.
        tag: String,
        /// The builder's error message.
        message: String,
        /// The last lines of build output.
        log_tail: String,
    },

    /// A network does not exist.
    #[error(
        "network '{network}' does not exist; create it with `docker network create \
         {network}` (on Swarm: `docker network create -d overlay --attachable {network}`)"
    )]
    NetworkNotFound {
        /// The network name or id.
        network: String,
    },

    /// A swarm-scoped network that standalone containers may not join.
    #[error(
        "network '{network}' is a Swarm network that is not attachable; recreate it with \
         `docker network create -d overlay --attachable {network}`"
    )]
    NetworkNotAttachable {
        /// The network name.
        network: String,
    },

    /// A Swarm worker needs an overlay network (its task may land on any node).
    #[error(
        "network '{network}' is a {driver} network; a SwarmWorker's task may run on any \
         node, so it needs an attachable overlay: `docker network create -d overlay \
         --attachable {network}`"
    )]
    NetworkNotOverlay {
        /// The network name.
        network: String,
        /// Its driver.
        driver: String,
    },

    /// A Swarm task's node does not have the worker image.
    #[error(
        "image '{image}' is not on Swarm node {node}, where worker {id} was placed: load it \
         there (`docker save {image} | docker -H NODE load`), push it to a registry every \
         node pulls from, or constrain the placement to nodes that have it"
    )]
    ImageNotOnNode {
        /// The worker's service.
        id: String,
        /// The image reference.
        image: String,
        /// The node's id.
        node: String,
    },

    /// No Swarm node can take a worker's task.
    #[error("no Swarm node can run worker {id}: {message}; it was removed")]
    NoSuitableNode {
        /// The worker's service.
        id: String,
        /// The scheduler's words.
        message: String,
    },

    /// A worker container stopped before it served, or could not start.
    #[error("container {id} {} before serving{}", exit_text(*.code), tail_suffix(.log_tail))]
    ContainerExited {
        /// Container name or id.
        id: String,
        /// Exit code, if it ran.
        code: Option<i64>,
        /// The last lines of its output.
        log_tail: String,
    },

    /// The Engine refused to create or start a container.
    #[error("container {id} could not be started: {message}")]
    ContainerRejected {
        /// Container name or id.
        id: String,
        /// The Engine's words.
        message: String,
    },

    /// A worker serves, but this process cannot connect to where it is
    /// advertised.
    #[error("worker {id} serves, but this process cannot reach it at {address} ({detail}); {fix}")]
    Unreachable {
        /// Container name or id.
        id: String,
        /// Where it is advertised.
        address: String,
        /// What the connection attempt said.
        detail: String,
        /// What to do about it.
        fix: String,
    },

    /// The worker feed's relay could not be started in a container, or died
    /// before it listened.
    #[error(
        "container {id} could not carry the worker feed: its relay failed ({reason}); \
         the image needs python3 on PATH, or pass engine_access=\"none\""
    )]
    RelayFailed {
        /// Container name or id.
        id: String,
        /// What the relay said, or why it was not started.
        reason: String,
    },

    /// A container did not announce that it serves before the deadline.
    #[error(
        "container {id} did not serve within {:.1} s; it was removed. Raise the start \
         timeout if the image is slow to start{}",
        .waited.as_secs_f64(), tail_suffix(.log_tail)
    )]
    NotServing {
        /// Container name or id.
        id: String,
        /// How long we waited.
        waited: Duration,
        /// The last lines of its output.
        log_tail: String,
    },

    /// A label on a container cannot be parsed under the wool-docker schema.
    #[error("container {container}: label '{key}' {reason}")]
    InvalidLabel {
        /// Container name or id.
        container: String,
        /// The label key.
        key: String,
        /// What is wrong with its value.
        reason: String,
    },

    /// An argument from the caller is unusable.
    #[error("{0}")]
    InvalidArgument(String),

    /// The caller stopped waiting (its asyncio task was cancelled) or the
    /// runtime is shutting down; what was begun has been undone.
    #[error("{0} was cancelled")]
    Cancelled(String),

    /// A fault of wool-docker itself, not of the caller or the Engine: a task
    /// that panicked, state that cannot be encoded, a directory of its own
    /// that cannot be made.
    #[error("wool-docker internal error: {0}")]
    Internal(String),

    /// The owner's worker feed, inside one of its containers, refused or failed.
    #[error(
        "the worker feed at {path} failed: {reason} (it serves nested routines the \
         scopes of their owner's DockerDiscovery)"
    )]
    Feed {
        /// The feed socket.
        path: String,
        /// What went wrong.
        reason: String,
    },

    /// A Swarm manager's task list could not be read.
    #[error("cannot read the Swarm's tasks from the Engine at {host}: {reason}")]
    SwarmUnreadable {
        /// The manager's address.
        host: String,
        /// What went wrong.
        reason: String,
    },

    /// Any other refusal from the Engine, named by operation.
    #[error("Docker Engine request '{op}' failed: {source}")]
    Engine {
        /// What we were doing.
        op: &'static str,
        /// What the Engine said.
        #[source]
        source: bollard::errors::Error,
    },
}

/// "exited with code 137", or "exited" when the code is not known.
fn exit_text(code: Option<i64>) -> String {
    match code {
        Some(code) => format!("exited with code {code}"),
        None => "exited".to_owned(),
    }
}

fn tail_suffix(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; last output:\n{}", tail.trim_end())
    }
}

/// What to do about a socket this user may not open, owned by `group`.
fn access_fix(group: Option<&str>) -> String {
    const ROOTLESS: &str = "or use rootless Docker, whose socket is the user's own";
    match group {
        // Joining root's group is no fix anyone should be told to make.
        Some("root" | "0") => format!("only root may open it; run as root, {ROOTLESS}"),
        Some(group) => format!(
            "it belongs to group '{group}'; add this user to that group with \
             `sudo usermod -aG {group} $USER` and log in again, {ROOTLESS}"
        ),
        None => format!(
            "its directory is closed to this user; run as the user whose Engine it \
             is, {ROOTLESS}"
        ),
    }
}

impl Error {
    /// Wrap an Engine error for `op`, recognising the transport failures that mean the
    /// daemon is not there at all, or not open to us.
    pub(crate) fn engine(op: &'static str, host: &str, source: bollard::errors::Error) -> Self {
        use bollard::errors::Error as B;
        let socket = host.strip_prefix("unix://");
        // bollard looks for the socket before it connects, and a path it
        // cannot look at is "not found" to it: ask the file system which.
        let cause = match (&source, socket) {
            (B::SocketNotFoundError(_), Some(path)) => {
                std::fs::metadata(path).err().map(|e| e.kind())
            }
            // Transparent: its `source()` is the io error's own, not the io error.
            (B::IOError { err }, _) => Some(err.kind()),
            _ => os_cause(&source),
        };
        match (socket, cause) {
            (Some(socket), Some(std::io::ErrorKind::PermissionDenied)) => Error::PermissionDenied {
                host: host.to_owned(),
                socket: socket.to_owned(),
                group: socket_group(socket),
            },
            // Only when the socket is gone: a file the request itself named
            // (a build context) is not the socket.
            (Some(socket), Some(std::io::ErrorKind::NotFound))
                if !std::path::Path::new(socket).exists() =>
            {
                Error::SocketMissing {
                    host: host.to_owned(),
                    socket: socket.to_owned(),
                }
            }
            _ => match &source {
                B::IOError { .. }
                | B::SocketNotFoundError(_)
                | B::RequestTimeoutError
                | B::HyperResponseError { .. } => Error::DaemonUnreachable {
                    host: host.to_owned(),
                    source,
                },
                _ if is_connect_error(&source) => Error::DaemonUnreachable {
                    host: host.to_owned(),
                    source,
                },
                _ => Error::Engine { op, source },
            },
        }
    }

    /// Whether the Engine itself is unreachable (as opposed to refusing a request).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Error::DaemonUnreachable { .. }
                | Error::PermissionDenied { .. }
                | Error::SshFailed { .. }
                | Error::SocketMissing { .. }
        )
    }
}

/// The kind of the first OS error in `err`'s chain: bollard and hyper wrap the
/// connect call's `io::Error` in errors of their own.
fn os_cause(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = e.source();
    }
    None
}

/// The name of the group that owns `socket`, else its number; `None` when the
/// socket cannot be looked at.
fn socket_group(socket: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let gid = std::fs::metadata(socket).ok()?.gid();
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(group)) => Some(group.name),
        _ => Some(gid.to_string()),
    }
}

/// hyper-util reports connect failures as its own error type; look through the chain
/// for an io error so a stopped daemon reads as "unreachable", not as a failed request.
fn is_connect_error(err: &bollard::errors::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        let text = e.to_string();
        if text.contains("client error (Connect)") || text.contains("Connection refused") {
            return true;
        }
        cur = e.source();
    }
    false
}

pyo3::import_exception!(wool_docker.exceptions, EngineUnavailableError);
pyo3::import_exception!(wool_docker.exceptions, EnginePermissionError);
pyo3::import_exception!(wool_docker.exceptions, ImageNotFoundError);
pyo3::import_exception!(wool_docker.exceptions, ImageMismatchError);
pyo3::import_exception!(wool_docker.exceptions, ImagePullError);
pyo3::import_exception!(wool_docker.exceptions, RegistryAuthError);
pyo3::import_exception!(wool_docker.exceptions, RegistryUnreachableError);
pyo3::import_exception!(wool_docker.exceptions, ImageBuildError);
pyo3::import_exception!(wool_docker.exceptions, NetworkNotFoundError);
pyo3::import_exception!(wool_docker.exceptions, ContainerFailedError);
pyo3::import_exception!(wool_docker.exceptions, WorkerStartTimeout);
pyo3::import_exception!(wool_docker.exceptions, WoolDockerError);
pyo3::import_exception!(wool_docker.exceptions, EngineError);
pyo3::import_exception!(wool_docker.exceptions, WorkerFeedError);
pyo3::import_exception!(wool_docker.exceptions, WoolDockerInternalError);

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let message = err.to_string();
        // No `_` arm: a new variant must be mapped here before the crate compiles.
        match err {
            Error::DaemonUnreachable { host, .. }
            | Error::SocketMissing { host, .. }
            | Error::SshFailed { host, .. } => EngineUnavailableError::new_err((message, host)),
            Error::PermissionDenied {
                host,
                socket,
                group,
            } => EnginePermissionError::new_err((message, host, socket, group)),
            Error::ImageNotFound { image } => ImageNotFoundError::new_err((message, image)),
            Error::ImageNotInRegistry { image, registry } => {
                ImageNotFoundError::new_err((message, image, registry))
            }
            Error::RegistryDenied {
                image, registry, ..
            } => RegistryAuthError::new_err((message, image, registry)),
            Error::RegistryCredentials { registry, .. } => {
                RegistryAuthError::new_err((message, None::<String>, registry))
            }
            Error::RegistryUnreachable {
                image, registry, ..
            } => RegistryUnreachableError::new_err((message, image, registry)),
            Error::PullFailed {
                image, registry, ..
            } => ImagePullError::new_err((message, image, registry)),
            Error::ImageMismatch { image, .. } => ImageMismatchError::new_err((message, image)),
            Error::BuildFailed { tag, log_tail, .. } => {
                ImageBuildError::new_err((message, tag, log_tail))
            }
            Error::NetworkNotFound { network }
            | Error::NetworkNotAttachable { network }
            | Error::NetworkNotOverlay { network, .. } => {
                NetworkNotFoundError::new_err((message, network))
            }
            Error::ImageNotOnNode { image, .. } => ImageNotFoundError::new_err((message, image)),
            Error::NoSuitableNode { id, .. } => {
                ContainerFailedError::new_err((message, id, None::<i64>, String::new()))
            }
            Error::ContainerExited { id, code, log_tail } => {
                ContainerFailedError::new_err((message, id, code, log_tail))
            }
            Error::ContainerRejected { id, .. }
            | Error::Unreachable { id, .. }
            | Error::RelayFailed { id, .. } => {
                ContainerFailedError::new_err((message, id, None::<i64>, String::new()))
            }
            Error::NotServing { id, waited, .. } => {
                WorkerStartTimeout::new_err((message, id, waited.as_secs_f64()))
            }
            Error::InvalidLabel { .. } => WoolDockerError::new_err(message),
            Error::InvalidArgument(_) => PyValueError::new_err(message),
            // What asyncio reports for a cancelled await, so a cancelled
            // `start()` reads the same whichever side noticed first.
            Error::Cancelled(_) => CancelledError::new_err(message),
            Error::Internal(_) => WoolDockerInternalError::new_err(message),
            Error::Engine { .. } => EngineError::new_err(message),
            Error::Feed { path, .. } => WorkerFeedError::new_err((message, path)),
            Error::SwarmUnreadable { .. } => EngineError::new_err(message),
        }
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
