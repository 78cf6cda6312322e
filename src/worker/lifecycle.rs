//! A worker container's lifecycle: check, create, attach, start, wait until it
//! serves, stop, remove.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{oneshot, watch, Mutex};

use super::config::{EngineAccess, WorkerConfig};
use super::lifeline::Lifeline;
use super::spec::create_spec;
use crate::engine::{now_nanos, ContainerInfo, CreateSpec, Engine, InputWriter};
use crate::error::{Error, Result};
use crate::labels;
use crate::output::{Lines, LogSink};
use crate::ready::Ready;
use crate::registry::Registry;

/// Extra time past the drain grace for the server to exit before it is killed.
const STOP_MARGIN: Duration = Duration::from_secs(5);
/// How long a `grace=None` stop (cancel at once) may take before a kill.
const STOP_NOW: Duration = Duration::from_secs(10);

/// A serving worker container.
pub struct Running {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// `ip:port` on the worker's network.
    pub address: String,
    /// wool protocol version the server reports.
    pub version: String,
    /// The server's pid inside the container.
    pub pid: i64,
    /// Where the start went, in seconds per phase, in order.
    pub timings: Vec<(&'static str, f64)>,
    /// The Swarm node it runs on, for a Swarm worker.
    pub node: Option<String>,
    /// What a stop removes.
    target: Target,
    engine: Engine,
    registry: Registry,
    /// The container's stdin; `None` once a stop has begun.
    control: Mutex<Option<InputWriter>>,
    exit: watch::Receiver<Option<i64>>,
    /// Where a dropped handle's stop runs.
    runtime: tokio::runtime::Handle,
}

/// What a worker is to the Engine: a container, or a Swarm service whose
/// one task's container serves.
#[derive(Clone)]
pub(super) enum Target {
    Container,
    /// The service's id, and the task that forwards its output (which a
    /// followed service log never ends by itself).
    Service(String, Option<tokio::task::AbortHandle>),
}

/// What a worker's owner lends it: the record of the containers it owns, and
/// the socket of its worker feed when it serves one.
#[derive(Clone)]
pub struct Owner {
    /// The owner's containers; the worker records its own there.
    pub registry: Registry,
    /// The owner's feed socket, bind-mounted when `engine_access` is the feed.
    pub feed_socket: Option<PathBuf>,
    /// The owner's lifeline listener, which a Swarm worker's task connects to.
    pub lifeline: Option<Lifeline>,
}

/// Run `work` on a task of its own, handing it a receiver that resolves when
/// the caller stops waiting: the work then cleans up before it ends, even
/// though nobody awaits it any more.
pub(super) async fn owned_task<T, F>(
    what: &str,
    work: impl FnOnce(oneshot::Receiver<()>) -> F,
) -> Result<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T>> + Send + 'static,
{
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(work(cancel_rx));
    let result = task.await;
    drop(cancel_tx);
    match result {
        Ok(r) => r,
        // Only the runtime's shutdown (interpreter exit) cancels the task.
        Err(join) if join.is_cancelled() => Err(Error::Cancelled(what.to_owned())),
        Err(join) => Err(Error::Internal(format!("{what} failed: {join}"))),
    }
}

/// Start a worker container and wait until it serves (on a task of its own:
/// see [`super::start`]).
pub(super) async fn start_owned(
    engine: Engine,
    owner: Owner,
    mut cfg: WorkerConfig,
    timeout: Duration,
    sink: Option<LogSink>,
    mut cancelled: oneshot::Receiver<()>,
) -> Result<Running> {
    let mut clock = Clock::new();
    prepare(&engine, &mut cfg).await?;
    let spec = with_engine_access(&engine, &owner, &cfg, create_spec(&cfg))?;
    clock.lap("check");
    let id = engine.create_container(&spec).await?;
    // Before it starts: its routines may use the feed from their first moment.
    let registry = &owner.registry;
    registry.admit(&id);
    clock.lap("create");
    let result = tokio::select! {
        r = bring_up(&engine, registry, &id, &cfg, timeout, sink, clock) => r,
        _ = &mut cancelled => Err(Error::Cancelled(format!("the start of worker {}", cfg.name))),
    };
    if result.is_err() {
        discard(&engine, registry, &id).await;
    }
    result
}

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
/// name from here on).
pub(super) async fn prepare(engine: &Engine, cfg: &mut WorkerConfig) -> Result<()> {
    check_image(engine, cfg).await?;
    if let Some(network) = &cfg.network {
        let info = engine.network(network).await?;
        if info.scope == "swarm" && !info.attachable {
            return Err(Error::NetworkNotAttachable {
                network: network.clone(),
            });
        }
        cfg.network = Some(info.name);
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
        EngineAccess::Feed => {
            if !engine.host().starts_with("unix://") {
                return Err(Error::InvalidArgument(format!(
                    "the worker feed is bind-mounted from this machine, so it needs an \
                     Engine on this machine (unix://), not {}; pass engine_access=\"none\"",
                    engine.host()
                )));
            }
            let socket = owner
                .feed_socket
                .clone()
                .ok_or_else(|| Error::Internal("the worker feed is not being served".to_owned()))?;
            // The socket file alone: nothing else of the owner's directory. A
            // `bind` mount, not `Binds`: should the socket vanish before the
            // create, the daemon refuses instead of creating it as root.
            spec.mounts.push(crate::engine::BindMount {
                source: socket.display().to_string(),
                target: crate::feed::CONTAINER_PATH.to_owned(),
                read_only: true,
            });
            spec.env.push(format!(
                "{}={}",
                crate::feed::ENV,
                crate::feed::CONTAINER_PATH
            ));
            spec.env.push(format!(
                "{}={}",
                crate::feed::OWNER_ENV,
                crate::owner::token()
            ));
        }
        EngineAccess::Socket => {
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
        }
        EngineAccess::None => {}
    }
    // The user's own DOCKER_HOST wins over ours.
    if let Some(host) = cfg.env.get("DOCKER_HOST") {
        let user = format!("DOCKER_HOST={host}");
        spec.env
            .retain(|kv| !kv.starts_with("DOCKER_HOST=") || *kv == user);
    }
    Ok(spec)
}

pub(super) async fn check_image(engine: &Engine, cfg: &WorkerConfig) -> Result<()> {
    let image = engine.image(&cfg.image).await?;
    let mismatch = |detail: String| Error::ImageMismatch {
        image: cfg.image.clone(),
        detail,
    };
    if let Some(python) = image.labels.get("wool.docker.python") {
        if python != &cfg.python {
            return Err(mismatch(format!("it runs Python {python} and this process runs Python {}; cloudpickle needs the same minor version on both sides", cfg.python)));
        }
    }
    if let Some(version) = image.labels.get(labels::VERSION) {
        crate::version::check_wool(version, &cfg.wool_version).map_err(mismatch)?;
    }
    Ok(())
}

async fn bring_up(
    engine: &Engine,
    registry: &Registry,
    id: &str,
    cfg: &WorkerConfig,
    timeout: Duration,
    sink: Option<LogSink>,
    mut clock: Clock,
) -> Result<Running> {
    let mut launched = Launched::launch(engine, registry, id, &cfg.name, sink, &mut clock).await?;
    if let Some(tls) = &cfg.tls {
        // The entry point reads this one line before anything else on stdin.
        launched
            .send(&TlsFiles::of(tls), "its TLS material")
            .await?;
        clock.lap("hand over TLS material");
    }
    let ready = launched
        .wait_for(timeout, |line| Ready::parse(id, now_nanos(), line))
        .await?;
    clock.lap("interpreter, wool import, bind");
    let address = launched.address(engine, cfg).await?;
    clock.lap("inspect address");
    Ok(launched.serving(engine, registry, address, ready, clock.laps))
}

/// A started container the owner holds: its stdin, its output, its exit.
pub(super) struct Launched {
    pub(super) id: String,
    pub(super) name: String,
    input: InputWriter,
    pub(super) lines: Lines,
    pub(super) exit: watch::Receiver<Option<i64>>,
}

impl Launched {
    /// Attach to created container `id`, watch for its exit, and start it.
    pub(super) async fn launch(
        engine: &Engine,
        registry: &Registry,
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
        Ok(Launched {
            id: id.to_owned(),
            name: name.to_owned(),
            input,
            lines: Lines::new(name.to_owned(), output, sink),
            exit: exit_rx,
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
                line = self.lines.next_stdout() => match line {
                    Some(line) => {
                        if let Some(found) = wanted(&line) {
                            return Ok(found);
                        }
                    }
                    None => {
                        // Output ended: the container is gone or going; report its code.
                        let mut exit = self.exit.clone();
                        let code = tokio::time::timeout(Duration::from_secs(5), exit.wait_for(Option::is_some))
                            .await.ok().and_then(|r| r.ok().and_then(|c| *c));
                        return Err(Error::ContainerExited { id: self.name.clone(), code, log_tail: self.lines.tail() });
                    }
                },
                Some(code) = async { exit.wait_for(Option::is_some).await.ok().map(|c| *c) } => {
                    self.lines.drain_for(Duration::from_millis(200)).await;
                    return Err(Error::ContainerExited { id: self.name.clone(), code, log_tail: self.lines.tail() });
                }
                _ = &mut deadline => {
                    return Err(Error::NotServing { id: self.name.clone(), waited: timeout, log_tail: self.lines.tail() });
                }
            }
        }
    }

    /// Its server said `ready` at `address`: announce it to this process's
    /// discovery, keep forwarding its output, and hand over the running worker.
    pub(super) fn serving(
        self,
        engine: &Engine,
        registry: &Registry,
        address: String,
        ready: Ready,
        timings: Vec<(&'static str, f64)>,
    ) -> Running {
        tokio::spawn(self.lines.pump());
        Running::serving(
            Control {
                id: self.id,
                name: self.name,
                input: self.input,
                exit: self.exit,
                target: Target::Container,
                node: None,
            },
            engine,
            registry,
            address,
            ready,
            timings,
        )
    }

    /// Its `ip:port` on the worker network of `cfg`, as an inspect tells; a
    /// container gone meanwhile is an error with its last output. (`&mut`:
    /// its streams are `Send` but not `Sync`, and the future must be `Send`.)
    pub(super) async fn address(&mut self, engine: &Engine, cfg: &WorkerConfig) -> Result<String> {
        let info = engine
            .inspect(&self.id)
            .await?
            .ok_or_else(|| Error::ContainerExited {
                id: self.name.clone(),
                code: None,
                log_tail: self.lines.tail(),
            })?;
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

/// Write `message` as one JSON line to worker `name`'s control stream (its
/// stdin, or a Swarm worker's lifeline); a stream already closed means the
/// worker is gone.
pub(super) async fn send_line(
    writer: &mut (impl tokio::io::AsyncWrite + Unpin),
    message: &impl serde::Serialize,
    name: &str,
    what: &str,
) -> Result<()> {
    let mut line = serde_json::to_vec(message)
        .map_err(|e| Error::Internal(format!("cannot encode {what}: {e}")))?;
    line.push(b'\n');
    let written = match writer.write_all(&line).await {
        Ok(()) => writer.flush().await,
        Err(e) => Err(e),
    };
    written.map_err(|e| Error::ContainerExited {
        id: name.to_owned(),
        code: None,
        log_tail: format!("could not hand it {what}: {e}"),
    })
}

/// `ip:port` of container `info` on the worker's network.
fn address_of(info: &ContainerInfo, cfg: &WorkerConfig, name: &str) -> Result<String> {
    let port = cfg.publication.port;
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

/// What the owner holds of a worker that serves: its control stream, its
/// exit, and what a stop removes.
pub(super) struct Control {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) input: InputWriter,
    pub(super) exit: watch::Receiver<Option<i64>>,
    pub(super) target: Target,
    pub(super) node: Option<String>,
}

impl Running {
    /// Worker `control` serves at `address`, as `ready` says: announce it to
    /// this process's discovery and hand over the running worker.
    pub(super) fn serving(
        control: Control,
        engine: &Engine,
        registry: &Registry,
        address: String,
        ready: Ready,
        timings: Vec<(&'static str, f64)>,
    ) -> Running {
        registry.mark_serving(ready.clone());
        Running {
            id: control.id,
            name: control.name,
            address,
            version: ready.version.unwrap_or_default(),
            pid: ready.pid.unwrap_or_default(),
            timings,
            node: control.node,
            target: control.target,
            engine: engine.clone(),
            registry: registry.clone(),
            control: Mutex::new(Some(control.input)),
            exit: control.exit,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Drain and remove the container. `grace`: `None` cancels in-flight work at
    /// once, negative waits for the drain indefinitely, positive bounds it. Past the
    /// bound the container is killed. Safe after the container already died.
    pub async fn stop(&self, grace: Option<f64>) -> Result<()> {
        let control = self.control.lock().await.take();
        // Own task: an asyncio cancellation of the caller must not skip the removal.
        let task = tokio::spawn(shut_down(
            self.engine.clone(),
            self.registry.clone(),
            (self.id.clone(), self.target.clone()),
            self.exit.clone(),
            control,
            grace,
        ));
        match task.await {
            Ok(result) => result,
            Err(join) if join.is_cancelled() => Err(Error::Cancelled(format!(
                "the stop of worker {}",
                self.name
            ))),
            Err(join) => Err(Error::Internal(format!(
                "the worker stop task failed: {join}"
            ))),
        }
    }

    /// Whether the container has exited.
    pub fn exited(&self) -> bool {
        self.exit.borrow().is_some()
    }
}

impl Drop for Running {
    /// A handle dropped without `stop()` (a cancelled start that had already
    /// succeeded, a `DockerWorker` collected while running) must not leave a
    /// serving container behind: stop it at once, as the owner's death would.
    fn drop(&mut self) {
        let Some(control) = self.control.get_mut().take() else {
            return;
        };
        let (engine, registry, id) = (self.engine.clone(), self.registry.clone(), self.id.clone());
        let (exit, target) = (self.exit.clone(), self.target.clone());
        // After the runtime shut down (interpreter exit) this does nothing; the
        // process's exit then closes the container's stdin, which stops it.
        self.runtime.spawn(async move {
            if let Err(e) = shut_down(engine, registry, (id.clone(), target), exit, Some(control), None).await {
                tracing::warn!(id = %id, error = %e, "could not remove a dropped worker's container");
            }
        });
    }
}

/// Send the stop command, wait for the server per `grace`, kill past the bound,
/// and remove the container (or the service, whose removal kills its task).
async fn shut_down(
    engine: Engine,
    registry: Registry,
    (id, target): (String, Target),
    mut exit: watch::Receiver<Option<i64>>,
    control: Option<InputWriter>,
    grace: Option<f64>,
) -> Result<()> {
    registry.stopping(&id);
    // NaN bounds nothing and means nothing: treat it as no grace.
    let grace = grace.filter(|g| !g.is_nan());
    let command = format!("stop {}\n", grace.unwrap_or(0.0));
    // Past this the server is killed; `None` waits for the drain forever.
    let bound = match grace {
        None => Some(STOP_NOW),
        Some(g) if g < 0.0 => None,
        Some(g) => Some(
            Duration::try_from_secs_f64(g)
                .unwrap_or(Duration::MAX)
                .saturating_add(STOP_MARGIN),
        ),
    };
    let mut exited = false;
    if let Some(mut writer) = control {
        let sent =
            writer.write_all(command.as_bytes()).await.is_ok() && writer.flush().await.is_ok();
        // Keep stdin open until the server exits: EOF would mean "stop now".
        if sent {
            let wait = exit.wait_for(Option::is_some);
            exited = match bound {
                Some(b) => matches!(tokio::time::timeout(b, wait).await, Ok(Ok(_))),
                None => wait.await.is_ok(),
            };
        }
        drop(writer);
    }
    match target {
        Target::Container => {
            if !exited {
                engine.kill(&id, "SIGKILL").await?;
            }
            engine.remove(&id).await
        }
        Target::Service(service, output) => {
            let removed = engine.remove_service(&service).await;
            if let Some(output) = output {
                output.abort();
            }
            removed
        }
    }
}

/// Measures the phases of a start.
pub(super) struct Clock {
    last: std::time::Instant,
    pub(super) laps: Vec<(&'static str, f64)>,
}

impl Clock {
    pub(super) fn new() -> Self {
        Clock {
            last: std::time::Instant::now(),
            laps: Vec::new(),
        }
    }

    pub(super) fn lap(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        self.laps.push((phase, (now - self.last).as_secs_f64()));
        self.last = now;
    }
}

/// TLS material as the entry point reads it from stdin (one JSON line).
#[derive(serde::Serialize)]
pub(super) struct TlsFiles<'a> {
    ca: &'a str,
    cert: &'a str,
    key: &'a str,
}

impl<'a> TlsFiles<'a> {
    pub(super) fn of(tls: &'a super::config::Tls) -> Self {
        TlsFiles {
            ca: &tls.ca,
            cert: &tls.cert,
            key: &tls.key,
        }
    }
}
