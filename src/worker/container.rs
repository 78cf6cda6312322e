//! A plain worker container before it serves, as the container start path
//! and the standby use it: the checks and the Engine access of its spec, and
//! the created container attached, started and waited on ([`Launched`]).

use std::time::Duration;

use tokio::sync::watch;

use super::config::{EngineAccess, WorkerConfig};
use super::running::{shut_down, Control, Target};
use super::toolkit::{check_image, send_line, Clock, FeedAccess, Owner};
use crate::engine::{ContainerInfo, CreateSpec, Engine, InputWriter};
use crate::error::{Error, Result};
use crate::feed::Relay;
use crate::labels;
use crate::output::{Lines, LogSink};
use crate::registry::Registry;
use crate::values::Flag;

/// Forget and remove a container that will not serve: whatever went wrong,
/// leave nothing behind.
pub(super) async fn discard(engine: &Engine, registry: &Registry, id: &str) {
    registry.forget(id);
    if let Err(e) = engine.remove(id).await {
        tracing::warn!(id = %id, error = %e, "could not remove a worker container that did not serve");
    }
}

/// Check what `cfg` names before anything is created: the image can serve this
/// process, and the network exists and may be joined (resolved to its exact
/// name from here on). Then decide how this process reaches the worker, if
/// the user did not: at its address on the network where it can route there,
/// else at a published port.
pub(super) async fn check_container(engine: &Engine, cfg: &mut WorkerConfig) -> Result<()> {
    check_image(engine, cfg, cfg.pull).await?;
    let network = match &cfg.network {
        Some(network) => {
            let info = engine.network(network).await?;
            if info.scope == "swarm" && !info.attachable {
                return Err(Error::NetworkNotAttachable {
                    network: network.clone(),
                });
            }
            cfg.network = Some(info.name.clone());
            Some(info)
        }
        // The default bridge; an Engine without one (Podman names it
        // otherwise) is judged by its place alone.
        None if cfg.publication.publish.is_none() => engine.network("bridge").await.ok(),
        None => None,
    };
    if cfg.publication.publish.is_none() {
        let routed = engine.routes_to(network.as_ref()).await;
        cfg.publication.publish = Some(Flag(!routed));
    }
    Ok(())
}

/// `spec` with what `engine_access` gives the container: the owner's feed
/// socket, the Engine socket, or nothing.
pub(super) fn with_engine_access(
    engine: &Engine,
    owner: &Owner,
    cfg: &WorkerConfig,
    mut spec: CreateSpec,
) -> Result<CreateSpec> {
    match cfg.engine_access {
        EngineAccess::Feed => feed_access(engine, owner, &mut spec)?,
        EngineAccess::Socket => mount_engine_socket(engine, &mut spec)?,
        EngineAccess::None => {}
    }
    keep_users_docker_host(cfg, &mut spec);
    Ok(spec)
}

/// The owner's feed (its socket, or a directory for the relay to listen
/// in), and the variables that find it.
fn feed_access(engine: &Engine, owner: &Owner, spec: &mut CreateSpec) -> Result<()> {
    let feed = match &owner.feed {
        Some(FeedAccess::Mount(socket)) => {
            if !engine.host().starts_with("unix://") {
                return Err(Error::Internal(format!(
                    "the worker feed cannot be bind-mounted into {}'s containers",
                    engine.host()
                )));
            }
            // The socket file alone: nothing else of the owner's directory. A
            // `bind` mount, not `Binds`: should the socket vanish before the
            // create, the daemon refuses instead of creating it as root.
            spec.mounts.push(crate::engine::BindMount {
                source: socket.display().to_string(),
                target: crate::feed::CONTAINER_PATH.to_owned(),
                read_only: true,
            });
            crate::feed::CONTAINER_PATH
        }
        Some(FeedAccess::Relay(_)) => {
            // Any user the image runs as may listen there; nothing else can
            // be written (the root filesystem may be read-only).
            spec.confinement.tmpfs.insert(
                crate::feed::RELAY_DIR.to_owned(),
                "rw,noexec,nosuid,nodev,size=64k,mode=1777".to_owned(),
            );
            crate::feed::RELAY_PATH
        }
        None => {
            return Err(Error::Internal(
                "the worker feed is not being served".to_owned(),
            ))
        }
    };
    spec.env.push(format!("{}={feed}", crate::feed::ENV));
    let token = crate::owner::token();
    spec.env.push(format!("{}={token}", crate::feed::OWNER_ENV));
    Ok(())
}

/// The Engine's own socket, and the group that may open it.
fn mount_engine_socket(engine: &Engine, spec: &mut CreateSpec) -> Result<()> {
    let path = engine.host().strip_prefix("unix://").ok_or_else(|| {
        Error::InvalidArgument(format!(
            "engine_access=\"socket\" needs a local unix-socket Engine, not {}",
            engine.host()
        ))
    })?;
    spec.binds.push(format!("{path}:/var/run/docker.sock"));
    // The worker's unprivileged user reaches the socket through its group.
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::MetadataExt;
        spec.confinement.group_add.push(meta.gid().to_string());
    }
    spec.env
        .push("DOCKER_HOST=unix:///var/run/docker.sock".to_owned());
    Ok(())
}

/// The user's own `DOCKER_HOST` wins over ours.
fn keep_users_docker_host(cfg: &WorkerConfig, spec: &mut CreateSpec) {
    if let Some(host) = cfg.env.get("DOCKER_HOST") {
        let user = format!("DOCKER_HOST={host}");
        spec.env
            .retain(|kv| !kv.starts_with("DOCKER_HOST=") || *kv == user);
    }
}

/// A started container the owner holds: its stdin, its output, its exit.
pub(super) struct Launched {
    pub(super) id: String,
    pub(super) name: String,
    input: InputWriter,
    pub(super) lines: Lines,
    pub(super) exit: watch::Receiver<Option<i64>>,
    /// The worker feed's relay in it, where the feed goes through one.
    relay: Option<Relay>,
}

impl Launched {
    /// Attach to created container `id`, watch for its exit, and start it,
    /// with the feed's relay where `feed` goes through one.
    pub(super) async fn launch(
        engine: &Engine,
        registry: &Registry,
        feed: Option<&FeedAccess>,
        id: &str,
        name: &str,
        sink: Option<LogSink>,
        clock: &mut Clock,
    ) -> Result<Launched> {
        let (output, input) = engine.attach(id, true).await?;
        clock.lap("attach");
        // Registered before start so the exit code is seen even though the
        // container removes itself.
        let (exit_tx, exit_rx) = watch::channel(None);
        let waiter = engine.clone();
        let wait_id = id.to_owned();
        let waiter_registry = registry.clone();
        tokio::spawn(async move {
            let code = waiter.wait_exit(&wait_id).await.unwrap_or(-1);
            waiter_registry.forget(&wait_id);
            let _ = exit_tx.send(Some(code));
        });
        engine.start_container(id).await?;
        clock.lap("start");
        let relay = match feed {
            Some(feed) => feed.start_relay(engine, id).await?,
            None => None,
        };
        if relay.is_some() {
            clock.lap("start the feed's relay");
        }
        Ok(Launched {
            id: id.to_owned(),
            name: name.to_owned(),
            input,
            lines: Lines::new(name.to_owned(), output, sink),
            exit: exit_rx,
            relay,
        })
    }

    /// Write `message` as one JSON line on the container's stdin.
    pub(super) async fn send(&mut self, message: &impl serde::Serialize, what: &str) -> Result<()> {
        send_line(&mut self.input, message, &self.name, what).await
    }

    /// Wait up to `timeout` for a stdout line that `wanted` accepts; a
    /// container that exits or ends its output first is an error with its code
    /// and last output.
    pub(super) async fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut wanted: impl FnMut(&str) -> Option<T>,
    ) -> Result<T> {
        let mut exit = self.exit.clone();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                line = self.lines.next_stdout() => {
                    let Some(line) = line else {
                        return Err(self.output_ended().await);
                    };
                    if let Some(found) = wanted(&line) {
                        return Ok(found);
                    }
                }
                Some(code) = async { exit.wait_for(Option::is_some).await.ok().map(|c| *c) } => {
                    self.lines.drain_for(Duration::from_millis(200)).await;
                    return Err(self.exited_with(code));
                }
                _ = &mut deadline => {
                    return Err(Error::NotServing { id: self.name.clone(), waited: timeout, log_tail: self.lines.tail() });
                }
            }
        }
    }

    /// Wait up to `timeout` for the feed's relay, if it has one, to listen.
    pub(super) async fn relay_ready(&mut self, timeout: Duration) -> Result<()> {
        match &mut self.relay {
            Some(relay) => relay.ready(&self.name, timeout).await,
            None => Ok(()),
        }
    }

    /// Its output ended: the container is gone or going; the error carries
    /// its code when the exit is seen within 5 s.
    async fn output_ended(&mut self) -> Error {
        let mut exit = self.exit.clone();
        let code = tokio::time::timeout(Duration::from_secs(5), exit.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|c| *c));
        self.exited_with(code)
    }

    fn exited_with(&self, code: Option<i64>) -> Error {
        Error::ContainerExited {
            id: self.name.clone(),
            code,
            log_tail: self.lines.tail(),
        }
    }

    /// Its server said `ready`: keep forwarding its output, and hand over what
    /// the owner holds of it (for [`super::running::Running::serving`]).
    pub(super) fn into_control(self) -> Control {
        tokio::spawn(self.lines.pump());
        Control {
            id: self.id,
            name: self.name,
            input: self.input,
            exit: self.exit,
            target: Target::Container,
            node: None,
            relay: self.relay,
        }
    }

    /// Its `ip:port` on the worker network of `cfg`, as an inspect tells; a
    /// container gone meanwhile is an error with its last output. (`&mut`:
    /// its streams are `Send` but not `Sync`, and the future must be `Send`.)
    pub(super) async fn address(&mut self, engine: &Engine, cfg: &WorkerConfig) -> Result<String> {
        let info = engine
            .inspect(&self.id)
            .await?
            .ok_or_else(|| self.exited_with(None))?;
        address_of(&info, cfg, &self.name)
    }

    /// Whether the container has exited.
    pub(super) fn exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Stop a container that never served, as a worker is stopped without
    /// grace: the stop command, its exit (killed past the bound), its removal.
    /// Not a forced removal of a running container, which can race the
    /// Engine's own auto-removal.
    pub(super) async fn retire(self, engine: &Engine, registry: &Registry) {
        let id = self.id.clone();
        let stopped = shut_down(
            engine.clone(),
            registry.clone(),
            (self.id, Target::Container),
            self.exit,
            Some(self.input),
            None,
        )
        .await;
        // Its exit watcher forgets it.
        if let Err(e) = stopped {
            tracing::warn!(id = %id, error = %e, "could not remove a parked container");
        }
    }
}

/// Where this process reaches container `info`: the port the Engine
/// published for it, or its `ip:port` on the worker's network.
fn address_of(info: &ContainerInfo, cfg: &WorkerConfig, name: &str) -> Result<String> {
    let port = cfg.publication.port;
    if cfg.publication.published() {
        return info
            .published
            .get(&port.0)
            .cloned()
            .ok_or_else(|| Error::ContainerRejected {
                id: name.to_owned(),
                message: format!("the Engine published no host port for its port {port}"),
            });
    }
    match labels::endpoint(info, cfg.network.as_deref()).map(|(_, ep)| ep) {
        Some(ep) if !ep.ip.is_empty() => Ok(format!("{}:{port}", ep.ip)),
        _ => Err(Error::ContainerRejected {
            id: name.to_owned(),
            message: format!(
                "it has no IP address on network {:?}",
                cfg.network.as_deref().unwrap_or("bridge")
            ),
        }),
    }
}
