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
        (
            Error::ImageNotInRegistry {
                image: "r:5000/w:1".into(),
                registry: "r:5000".into(),
            },
            "ImageNotFoundError",
            "registry",
            "r:5000",
        ),
        (
            Error::RegistryDenied {
                verb: "pull",
                image: "r:5000/w:1".into(),
                registry: "r:5000".into(),
                message: "unauthorized".into(),
            },
            "RegistryAuthError",
            "image",
            "r:5000/w:1",
        ),
        (
            Error::RegistryUnreachable {
                verb: "pull",
                image: "r:5000/w:1".into(),
                registry: "r:5000".into(),
                message: "connection refused".into(),
            },
            "RegistryUnreachableError",
            "registry",
            "r:5000",
        ),
        (
            Error::PullFailed {
                verb: "push",
                image: "r:5000/w:1".into(),
                registry: "r:5000".into(),
                message: "disk full".into(),
            },
            "ImagePullError",
            "registry",
            "r:5000",
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
