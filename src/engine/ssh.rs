//! An `ssh://` Engine, reached through a unix socket that one `ssh` process
//! forwards to the remote Engine's socket, for as long as the [`Engine`]
//! handle lives.
//!
//! One forward per Engine rather than a `docker system dial-stdio` per
//! connection (the docker CLI's way, and bollard's `ssh` feature): wool-docker
//! opens a connection per request and per stream, and an ssh handshake per
//! connection would cost more than the request. Everything then goes through
//! a local socket: starts, streams, builds, the Swarm task list.
//!
//! The `ssh` binary is the user's own: its `~/.ssh/config`, agent, keys and
//! known hosts apply, with `BatchMode` (it never prompts) and
//! `WOOL_DOCKER_SSH_OPTS` added. Its stdin is a pipe this process holds and its
//! remote command reads it, so when this process dies, even by `SIGKILL`, the
//! remote side sees end of file and the session ends. A forward that drops is
//! opened again with backoff while the handle lives.
//!
//! [`Engine`]: super::Engine

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::backoff::Policy;
use crate::error::{Error, Result};

/// The remote Engine's socket when the address names none.
const REMOTE_SOCKET: &str = "/var/run/docker.sock";
/// How long `ssh` may take to connect, authenticate and forward.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the forwarded socket is looked for while `ssh` opens it.
const LOOK_EVERY: Duration = Duration::from_millis(10);
/// The most of `ssh`'s error output kept for a message.
const MAX_STDERR: u64 = 8 * 1024;
/// Extra `ssh` options, split as a shell would (`-F ~/.ssh/wool.conf`).
pub const OPTIONS_ENV: &str = "WOOL_DOCKER_SSH_OPTS";
/// Delays between attempts to open a dropped forward again.
const REOPEN: Policy = Policy::new(Duration::from_millis(200), Duration::from_secs(10));

/// Where an `ssh://[user@]host[:port][/socket]` address leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// `user@host` or `host`, as `ssh` takes it.
    destination: String,
    port: Option<u16>,
    /// The Engine's socket on the remote host.
    socket: String,
}

impl Target {
    pub(super) fn parse(address: &str) -> Result<Target> {
        let invalid = |why: &str| {
            Error::InvalidArgument(format!(
                "'{address}' is not an ssh Engine address ({why}); use ssh://[user@]host[:port]"
            ))
        };
        let rest = address
            .strip_prefix("ssh://")
            .ok_or_else(|| invalid("no ssh:// scheme"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((user, hostport)) => (Some(user), hostport),
            None => (None, authority),
        };
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("an unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        if host.is_empty() || host.starts_with('-') || user.is_some_and(|u| u.starts_with('-')) {
            return Err(invalid("no host"));
        }
        let port = port
            .map(|p| p.parse::<u16>().map_err(|_| invalid("a bad port")))
            .transpose()?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Ok(Target {
            destination: match user {
                Some(user) => format!("{user}@{host}"),
                None => host,
            },
            port,
            socket: match path {
                "" | "/" => REMOTE_SOCKET.to_owned(),
                path => path.to_owned(),
            },
        })
    }

    /// The `ssh` command that forwards `local` to the Engine's socket.
    fn command(&self, local: &Path, options: &[String]) -> Command {
        let mut command = Command::new("ssh");
        command
            .arg("-T")
            .args(["-o", "BatchMode=yes"])
            .args(["-o", "ExitOnForwardFailure=yes"])
            .args(["-o", "StreamLocalBindUnlink=yes"])
            .args(["-o", "ServerAliveInterval=10"])
            .args(["-o", "ConnectTimeout=20"])
            .args(options)
            .arg("-L")
            .arg(format!("{}:{}", local.display(), self.socket));
        if let Some(port) = self.port {
            command.args(["-p", &port.to_string()]);
        }
        // The remote command reads our stdin, so that the session ends with
        // this process (see the module's comment).
        command
            .arg("--")
            .arg(&self.destination)
            .arg("cat >/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }
}

/// A live forward: the local socket, and the task that keeps `ssh` running.
pub(super) struct Tunnel {
    socket: PathBuf,
    dir: PathBuf,
    keeper: JoinHandle<()>,
}

impl Tunnel {
    /// Start `ssh` and wait until its forward is up; an error names what
    /// `ssh` said (an unknown host key, a refused key, an unreachable host).
    pub(super) async fn open(address: &str) -> Result<Tunnel> {
        let target = Target::parse(address)?;
        let options = options()?;
        let dir = crate::rundir::SSH.create().map_err(|e| {
            Error::Internal(format!(
                "cannot make a private directory for the ssh forward: {e}"
            ))
        })?;
        let socket = dir.join("docker.sock");
        let opened = start(&target, &socket, &options).await;
        let child = match opened {
            Ok(child) => child,
            Err(detail) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Error::SshFailed {
                    host: address.to_owned(),
                    detail,
                });
            }
        };
        let keeper = tokio::spawn(keep(
            child,
            target,
            socket.clone(),
            options,
            address.to_owned(),
        ));
        Ok(Tunnel {
            socket,
            dir,
            keeper,
        })
    }

    /// The local socket that leads to the remote Engine.
    pub(super) fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        // Aborting drops the child, which kills `ssh`.
        self.keeper.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Keep `child` running: when it exits, open the forward again with backoff.
async fn keep(
    mut child: (Child, tokio::process::ChildStdin),
    target: Target,
    socket: PathBuf,
    options: Vec<String>,
    address: String,
) {
    let mut attempt = 0;
    loop {
        let status = child.0.wait().await;
        tracing::warn!(host = %address, status = ?status.ok(), "the ssh forward to the Docker Engine ended; opening it again");
        loop {
            tokio::time::sleep(REOPEN.delay(attempt)).await;
            attempt = attempt.saturating_add(1);
            match start(&target, &socket, &options).await {
                Ok(next) => {
                    child = next;
                    attempt = 0;
                    break;
                }
                Err(detail) => {
                    tracing::warn!(host = %address, %detail, "could not open the ssh forward again")
                }
            }
        }
    }
}

/// Start `ssh` and wait until the forwarded socket exists; what went wrong,
/// in words, if it exits first or takes too long.
async fn start(
    target: &Target,
    socket: &Path,
    options: &[String],
) -> std::result::Result<(Child, tokio::process::ChildStdin), String> {
    let _ = std::fs::remove_file(socket);
    let mut child = target
        .command(socket, options)
        .spawn()
        .map_err(|e| format!("cannot run ssh: {e}; install the OpenSSH client"))?;
    let stdin = child.stdin.take().ok_or("ssh has no stdin")?;
    let deadline = tokio::time::Instant::now() + OPEN_TIMEOUT;
    loop {
        if socket.exists() {
            return Ok((child, stdin));
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut said = String::new();
            if let Some(stderr) = child.stderr.take() {
                let _ = stderr.take(MAX_STDERR).read_to_string(&mut said).await;
            }
            return Err(explain(
                &target.destination,
                target.port,
                said.trim(),
                status,
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "ssh did not forward the Engine's socket within {} s",
                OPEN_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// What `ssh` exiting with `said` means, and what to do about it.
fn explain(
    destination: &str,
    port: Option<u16>,
    said: &str,
    status: std::process::ExitStatus,
) -> String {
    let host = destination.rsplit('@').next().unwrap_or(destination);
    let port_option = port.map(|p| format!("-p {p} ")).unwrap_or_default();
    let fix = if said.contains("Host key verification failed") {
        format!(
            "the host key of {host} is not in known_hosts (or has changed); check its \
             fingerprint and add it (ssh-keyscan {port_option}{host} >> ~/.ssh/known_hosts)"
        )
    } else if said.contains("Permission denied") {
        format!(
            "ssh authentication as {destination} was refused; load a key the host accepts \
             into ssh-agent or name it in ~/.ssh/config (IdentityFile): wool-docker \
             never prompts"
        )
    } else if said.contains("Could not resolve hostname")
        || said.contains("Connection refused")
        || said.contains("timed out")
        || said.contains("No route to host")
    {
        format!("{host} cannot be reached over ssh")
    } else {
        format!("ssh exited ({status})")
    };
    if said.is_empty() {
        fix
    } else {
        format!("{fix}; ssh said: {said}")
    }
}

/// The user's extra `ssh` options.
fn options() -> Result<Vec<String>> {
    let Some(text) = std::env::var(OPTIONS_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
    else {
        return Ok(Vec::new());
    };
    shlex::split(&text).ok_or_else(|| {
        Error::InvalidArgument(format!("{OPTIONS_ENV} is not shell words: {text:?}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(address: &str) -> Target {
        Target::parse(address).unwrap_or_else(|e| panic!("{address}: {e}"))
    }

    #[test]
    fn addresses_are_read_as_the_docker_cli_writes_them() {
        assert_eq!(
            target("ssh://me@gpu.example"),
            Target {
                destination: "me@gpu.example".into(),
                port: None,
                socket: REMOTE_SOCKET.into()
            }
        );
        let t = target("ssh://gpu.example:2222/run/user/1000/docker.sock");
        assert_eq!(t.destination, "gpu.example");
        assert_eq!(t.port, Some(2222));
        assert_eq!(t.socket, "/run/user/1000/docker.sock");
        let t = target("ssh://root@[fd00::5]:22");
        assert_eq!(
            (t.destination.as_str(), t.port),
            ("root@[fd00::5]", Some(22))
        );
        for bad in [
            "ssh://",
            "ssh://me@",
            "ssh://-oProxyCommand=x",
            "ssh://h:port",
            "tcp://h",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn what_ssh_says_is_explained() {
        use std::os::unix::process::ExitStatusExt;
        let failed = std::process::ExitStatus::from_raw(255 << 8);
        let key = explain("me@h", Some(2222), "Host key verification failed.", failed);
        assert!(
            key.contains("known_hosts") && key.contains("ssh-keyscan -p 2222 h"),
            "{key}"
        );
        let auth = explain("me@h", None, "me@h: Permission denied (publickey).", failed);
        assert!(
            auth.contains("refused") && auth.contains("ssh-agent"),
            "{auth}"
        );
        let gone = explain(
            "h",
            None,
            "ssh: connect to host h port 22: Connection refused",
            failed,
        );
        assert!(gone.contains("cannot be reached"), "{gone}");
    }
}
