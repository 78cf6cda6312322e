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

    /// An image is not on the daemon; nothing is pulled implicitly.
    #[error(
        "image '{image}' is not on the Docker Engine; build it with \
         `wool-docker image build --tag {image}` (nothing is pulled implicitly)"
    )]
    ImageNotFound {
        /// The image reference.
        image: String,
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
            Error::ContainerRejected { id, .. } | Error::Unreachable { id, .. } => {
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
mod tests {
    use std::ffi::CString;

    use pyo3::prelude::*;
    use pyo3::types::PyModule;

    use super::*;

    /// Load the package's real `exceptions.py` under its own name, over a
    /// stand-in `wool` (only its two base classes), so the mapping below meets
    /// the classes users catch. Once per process: the mapping keeps the classes
    /// it first imported.
    fn load_exceptions(py: Python<'_>) -> PyResult<()> {
        static LOADED: pyo3::sync::PyOnceLock<()> = pyo3::sync::PyOnceLock::new();
        LOADED
            .get_or_try_init(py, || load_exceptions_now(py))
            .map(|_| ())
    }

    fn load_exceptions_now(py: Python<'_>) -> PyResult<()> {
        PyModule::from_code(
            py,
            c"class WoolError(Exception): pass\nclass WoolWarning(Warning): pass\n",
            c"wool.py",
            c"wool",
        )?;
        let package = PyModule::from_code(py, c"", c"__init__.py", c"wool_docker")?;
        package.setattr("__path__", pyo3::types::PyList::empty(py))?;
        let source = CString::new(include_str!("../python/wool_docker/exceptions.py"))?;
        let module = PyModule::from_code(py, &source, c"exceptions.py", c"wool_docker.exceptions")?;
        package.setattr("exceptions", module)?;
        Ok(())
    }

    /// The exception class `err` becomes, and the value of `attr` on it.
    fn mapped(err: Error, attr: &str) -> (String, String) {
        Python::initialize();
        Python::attach(|py| {
            load_exceptions(py).unwrap_or_else(|e| panic!("{e}"));
            let value = PyErr::from(err).into_value(py).into_bound(py);
            let class = value
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            let attribute = value
                .getattr(attr)
                .map(|a| a.to_string())
                .unwrap_or_default();
            (class, attribute)
        })
    }

    #[test]
    fn cancellation_and_internal_failures_have_their_own_exceptions() {
        let (class, args) = mapped(Error::Cancelled("the start of worker w".into()), "args");
        assert_eq!(class, "CancelledError");
        assert!(
            args.contains("the start of worker w was cancelled"),
            "{args}"
        );
        let (class, args) = mapped(Error::Internal("a task panicked".into()), "args");
        assert_eq!(class, "WoolDockerInternalError");
        assert!(args.contains("internal error: a task panicked"), "{args}");
        let (class, _) = mapped(Error::InvalidArgument("bad".into()), "args");
        assert_eq!(class, "ValueError");
    }

    #[test]
    fn each_variant_carries_its_fields_to_its_exception() {
        let cases = [
            (
                Error::ImageNotFound {
                    image: "img".into(),
                },
                "ImageNotFoundError",
                "image",
                "img",
            ),
            (
                Error::NetworkNotAttachable {
                    network: "net".into(),
                },
                "NetworkNotFoundError",
                "network",
                "net",
            ),
            (
                Error::ContainerExited {
                    id: "w".into(),
                    code: Some(3),
                    log_tail: "boom".into(),
                },
                "ContainerFailedError",
                "exit_code",
                "3",
            ),
            (
                Error::NotServing {
                    id: "w".into(),
                    waited: Duration::from_secs(2),
                    log_tail: String::new(),
                },
                "WorkerStartTimeout",
                "waited",
                "2.0",
            ),
            (
                Error::Feed {
                    path: "/run/feed".into(),
                    reason: "refused".into(),
                },
                "WorkerFeedError",
                "path",
                "/run/feed",
            ),
            (
                Error::PermissionDenied {
                    host: "unix:///s".into(),
                    socket: "/s".into(),
                    group: Some("docker".into()),
                },
                "EnginePermissionError",
                "group",
                "docker",
            ),
            (
                Error::SocketMissing {
                    host: "unix:///s".into(),
                    socket: "/s".into(),
                },
                "EngineUnavailableError",
                "host",
                "unix:///s",
            ),
        ];
        for (err, class, attr, value) in cases {
            assert_eq!(mapped(err, attr), (class.to_owned(), value.to_owned()));
        }
    }

    #[test]
    fn every_wool_docker_exception_is_a_wool_docker_error() {
        Python::initialize();
        Python::attach(|py| -> PyResult<()> {
            load_exceptions(py)?;
            let root = py
                .import("wool_docker.exceptions")?
                .getattr("WoolDockerError")?;
            for err in [
                Error::Internal("x".into()),
                Error::SwarmUnreadable {
                    host: "h".into(),
                    reason: "r".into(),
                },
                Error::InvalidLabel {
                    container: "c".into(),
                    key: "k".into(),
                    reason: "r".into(),
                },
            ] {
                let value = PyErr::from(err).into_value(py).into_bound(py);
                assert!(value.is_instance(&root)?);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// An error that wraps another, as hyper's and bollard's do.
    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn io(kind: std::io::ErrorKind) -> bollard::errors::Error {
        bollard::errors::Error::IOError {
            err: std::io::Error::from(kind),
        }
    }

    #[test]
    fn the_os_error_is_found_behind_wrappers() {
        let wrapped = Wrapped(std::io::Error::from_raw_os_error(13));
        assert_eq!(
            os_cause(&wrapped),
            Some(std::io::ErrorKind::PermissionDenied)
        );
        assert_eq!(os_cause(&Error::InvalidArgument("x".into())), None);
    }

    #[test]
    fn a_socket_failure_is_told_by_its_cause() {
        use std::io::ErrorKind as K;
        let host = "unix:///nonexistent/wool-docker.sock";
        let denied = Error::engine("connect", host, io(K::PermissionDenied));
        assert!(
            matches!(&denied, Error::PermissionDenied { socket, group: None, .. }
                if socket == "/nonexistent/wool-docker.sock"),
            "{denied:?}"
        );
        assert!(denied.is_unreachable());
        let missing = Error::engine("connect", host, io(K::NotFound));
        assert!(
            matches!(missing, Error::SocketMissing { .. }),
            "{missing:?}"
        );
        assert!(missing.to_string().contains("does not exist"), "{missing}");
        // bollard's own look before it connects.
        let looked = Error::engine(
            "connect",
            host,
            bollard::errors::Error::SocketNotFoundError(host.into()),
        );
        assert!(matches!(looked, Error::SocketMissing { .. }), "{looked:?}");
        let refused = Error::engine("connect", host, io(K::ConnectionRefused));
        assert!(
            matches!(refused, Error::DaemonUnreachable { .. }),
            "{refused:?}"
        );
        // Over TCP there is no socket to name.
        let tcp = Error::engine("connect", "tcp://h:2375", io(K::PermissionDenied));
        assert!(matches!(tcp, Error::DaemonUnreachable { .. }), "{tcp:?}");
    }

    #[test]
    fn a_denied_socket_names_its_group_and_the_fix() {
        let dir = std::env::temp_dir().join(format!("wool-docker-group-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let socket = dir.join("docker.sock");
        std::fs::write(&socket, b"").unwrap_or_else(|e| panic!("{e}"));
        let path = socket.to_string_lossy().into_owned();
        // A gid no group is named for is named by its number.
        let unnamed = 4_000_042;
        if std::os::unix::fs::chown(&socket, None, Some(unnamed)).is_ok() {
            assert_eq!(socket_group(&path), Some(unnamed.to_string()));
        }
        // gid 0 is root's group everywhere.
        if std::os::unix::fs::chown(&socket, None, Some(0)).is_ok() {
            assert_eq!(socket_group(&path).as_deref(), Some("root"));
        }
        let err = Error::engine(
            "connect",
            &format!("unix://{path}"),
            io(std::io::ErrorKind::PermissionDenied),
        );
        let group = socket_group(&path);
        assert!(matches!(&err, Error::PermissionDenied { group: g, .. } if *g == group));
        assert!(err.to_string().contains(&path), "{err}");
        let _ = std::fs::remove_dir_all(&dir);

        let text = access_fix(Some("docker"));
        assert!(text.contains("group 'docker'"), "{text}");
        assert!(
            text.contains("`sudo usermod -aG docker $USER` and log in again"),
            "{text}"
        );
        assert!(text.contains("rootless Docker"), "{text}");
        for group in [Some("root"), None] {
            let text = access_fix(group);
            assert!(!text.contains("usermod"), "{text}");
            assert!(text.contains("rootless Docker"), "{text}");
        }
    }

    #[test]
    fn a_permission_error_is_also_python_s_permission_error() {
        Python::initialize();
        Python::attach(|py| -> PyResult<()> {
            load_exceptions(py)?;
            let err = Error::PermissionDenied {
                host: "unix:///s".into(),
                socket: "/s".into(),
                group: None,
            };
            let value = PyErr::from(err).into_value(py).into_bound(py);
            let unavailable = py
                .import("wool_docker.exceptions")?
                .getattr("EngineUnavailableError")?;
            assert!(value.is_instance(&unavailable)?);
            assert!(value.is_instance(&py.get_type::<pyo3::exceptions::PyPermissionError>())?);
            assert_eq!(value.getattr("socket")?.extract::<String>()?, "/s");
            assert_eq!(value.getattr("errno")?.extract::<i32>()?, 13);
            assert!(value.str()?.to_string().starts_with("permission denied on"));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
}
