//! Container lifecycle of one worker: check, create, attach, start, wait until it
//! serves, stop, remove.
//!
//! The owner keeps the container's stdin attached for the container's whole life.
//! The worker image's entry point reads stop commands from it and treats EOF as the
//! owner's death, so a SIGKILLed owner still takes its containers with it (they are
//! created with auto-remove). No privileged helper is involved.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{oneshot, watch, Mutex};

use crate::engine::{
    now_nanos, ContainerInfo, CreateSpec, Engine, InputWriter, Output, OutputStream,
};
use crate::error::{Error, Result};
use crate::labels::{self, Publication};

/// The line the worker image prints once its gRPC port is bound.
pub const READY_PREFIX: &str = "wool-docker ready ";
/// Where TLS material is copied into the container (never env, labels or layers).
const TLS_DIR: &str = "/run/wool-docker";
/// Extra time past the drain grace for the server to exit before it is killed.
const STOP_MARGIN: Duration = Duration::from_secs(5);
/// How long a `grace=None` stop (cancel at once) may take before a kill.
const STOP_NOW: Duration = Duration::from_secs(10);
/// Lines of output kept for error messages.
const TAIL_LINES: usize = 40;

/// Receives each line a worker container prints: (container name, is stderr, line).
pub type LogSink = Arc<dyn Fn(&str, bool, &str) + Send + Sync>;

/// What a worker's ready line (or its healthcheck) told about its server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    /// Container id.
    pub id: String,
    /// When it was seen, Unix nanoseconds (the Engine's log stamp where known).
    pub at_ns: i64,
    /// The wool version the server reported.
    pub version: Option<String>,
    /// The server's pid inside the container.
    pub pid: Option<i64>,
}

impl Ready {
    /// Read a ready line's text, if it is one.
    pub fn parse(id: &str, at_ns: i64, line: &str) -> Option<Ready> {
        let json = line.strip_prefix(READY_PREFIX)?;
        let fields: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
        Some(Ready {
            id: id.to_owned(),
            at_ns,
            version: fields
                .get("version")
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            pid: fields.get("pid").and_then(|v| v.as_i64()),
        })
    }
}

/// Containers this process started and saw serving. Discovery in this process
/// takes their readiness from here (it is the server's own word, already read)
/// instead of reading their logs again, so a pool's first view holds them all.
struct Serving {
    ready: std::sync::Mutex<std::collections::HashMap<String, Ready>>,
    updates: tokio::sync::broadcast::Sender<Ready>,
}

fn serving_registry() -> &'static Serving {
    static SERVING: std::sync::OnceLock<Serving> = std::sync::OnceLock::new();
    SERVING.get_or_init(|| Serving {
        ready: Default::default(),
        updates: tokio::sync::broadcast::channel(256).0,
    })
}

/// Whether a container of this process is serving, and what it reported.
pub fn serving(id: &str) -> Option<Ready> {
    let ready = serving_registry()
        .ready
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    ready.get(id).cloned()
}

/// Every container of this process that starts serving from now on.
pub fn serving_updates() -> tokio::sync::broadcast::Receiver<Ready> {
    serving_registry().updates.subscribe()
}

fn mark_serving(ready: Ready) {
    let registry = serving_registry();
    registry
        .ready
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(ready.id.clone(), ready.clone());
    let _ = registry.updates.send(ready);
}

fn forget_serving(id: &str) {
    let registry = serving_registry();
    registry
        .ready
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(id);
}

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
    engine: Engine,
    /// The container's stdin; `None` once a stop has begun.
    control: Mutex<Option<InputWriter>>,
    exit: watch::Receiver<Option<i64>>,
    /// Where a dropped handle's stop runs.
    runtime: tokio::runtime::Handle,
}

/// Start a worker container and wait until it serves.
///
/// Runs on its own task: if the caller stops waiting (the asyncio task was
/// cancelled), the container is still removed before the task ends.
pub async fn start(
    engine: Engine,
    cfg: WorkerConfig,
    timeout: Duration,
    sink: Option<LogSink>,
) -> Result<Running> {
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(start_owned(engine, cfg, timeout, sink, cancel_rx));
    let result = task.await;
    drop(cancel_tx);
    match result {
        Ok(r) => r,
        Err(join) => Err(Error::InvalidArgument(format!(
            "worker start task failed: {join}"
        ))),
    }
}

async fn start_owned(
    engine: Engine,
    mut cfg: WorkerConfig,
    timeout: Duration,
    sink: Option<LogSink>,
    mut cancelled: oneshot::Receiver<()>,
) -> Result<Running> {
    let mut clock = Clock::new();
    check_image(&engine, &cfg).await?;
    if let Some(network) = &cfg.network {
        let info = engine.network(network).await?;
        if info.scope == "swarm" && !info.attachable {
            return Err(Error::NetworkNotAttachable {
                network: network.clone(),
            });
        }
        // The Engine resolved the reference (name, id or id prefix); from here on
        // the network is its exact name.
        cfg.network = Some(info.name);
    }
    clock.lap("check");
    let mut spec = create_spec(&cfg);
    match cfg.engine_access {
        EngineAccess::Feed => {
            if !engine.host().starts_with("unix://") {
                return Err(Error::InvalidArgument(format!(
                    "the worker feed is bind-mounted from this machine, so it needs an \
                     Engine on this machine (unix://), not {}; pass engine_access=\"none\"",
                    engine.host()
                )));
            }
            let socket = crate::feed::ensure().await?;
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
        }
        EngineAccess::Socket => {
            let path = engine.host().strip_prefix("unix://").ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "engine_access=\"socket\" needs a local unix-socket Engine, not {}",
                    engine.host()
                ))
            })?;
            spec.binds.push(format!("{path}:/var/run/docker.sock"));
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
    let id = engine.create_container(&spec).await?;
    // Before it starts: its routines may use the feed from their first moment.
    crate::feed::admit(&id);
    clock.lap("create");
    let result = tokio::select! {
        r = bring_up(&engine, &id, &cfg, timeout, sink, clock) => r,
        _ = &mut cancelled => Err(Error::InvalidArgument("worker start was cancelled".to_owned())),
    };
    if result.is_err() {
        // Whatever went wrong, leave nothing behind.
        crate::feed::revoke(&id);
        if let Err(e) = engine.remove(&id).await {
            tracing::warn!(id = %id, error = %e, "could not remove a worker container that failed to start");
        }
    }
    result
}

async fn check_image(engine: &Engine, cfg: &WorkerConfig) -> Result<()> {
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
        let major = |v: &str| v.split('.').next().unwrap_or_default().to_owned();
        if major(version) != major(&cfg.wool_version) {
            return Err(mismatch(format!("it serves wool {version} and this process runs wool {}; the major versions must match", cfg.wool_version)));
        }
    }
    Ok(())
}

fn create_spec(cfg: &WorkerConfig) -> CreateSpec {
    let mut labels = labels::to_labels(&cfg.publication, &cfg.selector);
    labels.extend(cfg.labels.clone());
    labels.insert(labels::MANAGED.to_owned(), "true".to_owned());
    labels.insert(labels::OWNER.to_owned(), owner_token());
    let p = &cfg.publication;
    let mut env: BTreeMap<String, String> = BTreeMap::from([
        ("WOOL_UID".to_owned(), p.uid.clone()),
        ("WOOL_PORT".to_owned(), p.port.to_string()),
        ("WOOL_TAGS".to_owned(), p.tags.join(",")),
        ("WOOL_EXTRA".to_owned(), p.extra.clone()),
        ("WOOL_DOCKER_STDIN_CONTROL".to_owned(), "1".to_owned()),
    ]);
    if let Some(options) = &p.options {
        env.insert("WOOL_OPTIONS".to_owned(), options.clone());
    }
    if let Some(identity) = &p.identity {
        env.insert("WOOL_IDENTITY".to_owned(), identity.clone());
    }
    if let Some(grace) = cfg.shutdown_grace {
        env.insert("WOOL_SHUTDOWN_GRACE".to_owned(), grace.to_string());
    }
    if let Some(options) = &cfg.server_options {
        env.insert("WOOL_SERVER_OPTIONS".to_owned(), options.clone());
    }
    if let Some(ttl) = cfg.proxy_pool_ttl {
        env.insert("WOOL_PROXY_POOL_TTL".to_owned(), ttl.to_string());
    }
    if let Some(hook) = &cfg.backpressure {
        env.insert("WOOL_BACKPRESSURE".to_owned(), hook.clone());
    }
    if let Some(tls) = &cfg.tls {
        // Paths only: the material itself is copied into the container's own layer.
        env.insert("WOOL_TLS_CA".to_owned(), format!("{TLS_DIR}/tls/ca.pem"));
        env.insert(
            "WOOL_TLS_CERT".to_owned(),
            format!("{TLS_DIR}/tls/cert.pem"),
        );
        env.insert("WOOL_TLS_KEY".to_owned(), format!("{TLS_DIR}/tls/key.pem"));
        env.insert("WOOL_TLS_MUTUAL".to_owned(), tls.mutual.to_string());
    }
    env.extend(cfg.env.clone());
    CreateSpec {
        name: cfg.name.clone(),
        image: cfg.image.clone(),
        labels,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        network: cfg.network.clone(),
        binds: cfg.binds.clone(),
        mounts: Vec::new(),
        nano_cpus: cfg.nano_cpus,
        memory: cfg.memory,
        gpus: cfg.gpus,
        auto_remove: true,
        stdin_once: true,
    }
}

async fn bring_up(
    engine: &Engine,
    id: &str,
    cfg: &WorkerConfig,
    timeout: Duration,
    sink: Option<LogSink>,
    mut clock: Clock,
) -> Result<Running> {
    if let Some(tls) = &cfg.tls {
        engine.upload(id, "/", tls_archive(tls)?).await?;
        clock.lap("copy TLS material");
    }
    let (output, input) = engine.attach(id, true).await?;
    clock.lap("attach");
    // Registered before start so the exit code is seen even though the container
    // removes itself.
    let (exit_tx, exit_rx) = watch::channel(None);
    let waiter = engine.clone();
    let wait_id = id.to_owned();
    tokio::spawn(async move {
        let code = waiter.wait_exit(&wait_id).await.unwrap_or(-1);
        forget_serving(&wait_id);
        crate::feed::revoke(&wait_id);
        let _ = exit_tx.send(Some(code));
    });
    engine.start_container(id).await?;
    clock.lap("start");

    let mut lines = Lines::new(cfg.name.clone(), output, sink);
    let mut exit = exit_rx.clone();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let ready = loop {
        tokio::select! {
            line = lines.next_stdout() => match line {
                Some(line) => {
                    if let Some(ready) = Ready::parse(id, now_nanos(), &line) {
                        break ready;
                    }
                }
                None => {
                    // Output ended: the container is gone or going; report its code.
                    let mut exit = exit_rx.clone();
                    let code = tokio::time::timeout(Duration::from_secs(5), exit.wait_for(Option::is_some))
                        .await.ok().and_then(|r| r.ok().and_then(|c| *c));
                    return Err(Error::ContainerExited { id: cfg.name.clone(), code, log_tail: lines.tail() });
                }
            },
            Some(code) = async { exit.wait_for(Option::is_some).await.ok().map(|c| *c) } => {
                lines.drain_for(Duration::from_millis(200)).await;
                return Err(Error::ContainerExited { id: cfg.name.clone(), code, log_tail: lines.tail() });
            }
            _ = &mut deadline => {
                return Err(Error::NotServing { id: cfg.name.clone(), waited: timeout, log_tail: lines.tail() });
            }
        }
    };
    clock.lap("interpreter, wool import, bind");
    let info = engine
        .inspect(id)
        .await?
        .ok_or_else(|| Error::ContainerExited {
            id: cfg.name.clone(),
            code: None,
            log_tail: lines.tail(),
        })?;
    let address = address_of(&info, cfg)?;
    clock.lap("inspect address");
    tokio::spawn(lines.pump());
    mark_serving(ready.clone());
    Ok(Running {
        id: id.to_owned(),
        name: cfg.name.clone(),
        address,
        version: ready.version.unwrap_or_default(),
        pid: ready.pid.unwrap_or_default(),
        timings: clock.laps,
        engine: engine.clone(),
        control: Mutex::new(Some(input)),
        exit: exit_rx,
        runtime: tokio::runtime::Handle::current(),
    })
}

fn address_of(info: &ContainerInfo, cfg: &WorkerConfig) -> Result<String> {
    let port = cfg.publication.port;
    match labels::endpoint(info, cfg.network.as_deref()).map(|(_, ep)| ep) {
        Some(ep) if !ep.ip.is_empty() => Ok(format!("{}:{port}", ep.ip)),
        _ => Err(Error::ContainerRejected {
            id: cfg.name.clone(),
            message: format!(
                "it has no IP address on network {:?}",
                cfg.network.as_deref().unwrap_or("bridge")
            ),
        }),
    }
}

impl Running {
    /// Drain and remove the container. `grace`: `None` cancels in-flight work at
    /// once, negative waits for the drain indefinitely, positive bounds it. Past the
    /// bound the container is killed. Safe after the container already died.
    pub async fn stop(&self, grace: Option<f64>) -> Result<()> {
        let control = self.control.lock().await.take();
        // Own task: an asyncio cancellation of the caller must not skip the removal.
        let task = tokio::spawn(shut_down(
            self.engine.clone(),
            self.id.clone(),
            self.exit.clone(),
            control,
            grace,
        ));
        task.await
            .map_err(|e| Error::InvalidArgument(format!("worker stop task failed: {e}")))?
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
        let (engine, id) = (self.engine.clone(), self.id.clone());
        let exit = self.exit.clone();
        // After the runtime shut down (interpreter exit) this does nothing; the
        // process's exit then closes the container's stdin, which stops it.
        self.runtime.spawn(async move {
            if let Err(e) = shut_down(engine, id.clone(), exit, Some(control), None).await {
                tracing::warn!(id = %id, error = %e, "could not remove a dropped worker's container");
            }
        });
    }
}

/// Send the stop command, wait for the server per `grace`, kill past the bound,
/// and remove the container.
async fn shut_down(
    engine: Engine,
    id: String,
    mut exit: watch::Receiver<Option<i64>>,
    control: Option<InputWriter>,
    grace: Option<f64>,
) -> Result<()> {
    forget_serving(&id);
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
    if !exited {
        engine.kill(&id, "SIGKILL").await?;
    }
    engine.remove(&id).await
}

/// Measures the phases of a start.
struct Clock {
    last: std::time::Instant,
    laps: Vec<(&'static str, f64)>,
}

impl Clock {
    fn new() -> Self {
        Clock {
            last: std::time::Instant::now(),
            laps: Vec::new(),
        }
    }

    fn lap(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        self.laps.push((phase, (now - self.last).as_secs_f64()));
        self.last = now;
    }
}

/// Splits container output into lines, forwards them to the sink, keeps a tail.
struct Lines {
    name: String,
    output: OutputStream,
    sink: Option<LogSink>,
    partial: [Vec<u8>; 2],
    pending: std::collections::VecDeque<String>,
    tail: std::collections::VecDeque<String>,
}

impl Lines {
    fn new(name: String, output: OutputStream, sink: Option<LogSink>) -> Self {
        Lines {
            name,
            output,
            sink,
            partial: [Vec::new(), Vec::new()],
            pending: Default::default(),
            tail: Default::default(),
        }
    }

    /// The next complete stdout line (stderr lines are forwarded and kept in the tail).
    async fn next_stdout(&mut self) -> Option<String> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(line);
            }
            let chunk = match self.output.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "container output ended with an error");
                    return self.flush_partials();
                }
                None => return self.flush_partials(),
            };
            let (stderr, bytes) = match chunk {
                Output::Stdout(b) => (false, b),
                Output::Stderr(b) => (true, b),
            };
            self.partial[usize::from(stderr)].extend_from_slice(&bytes);
            loop {
                let buf = &mut self.partial[usize::from(stderr)];
                let Some(pos) = buf.iter().position(|b| *b == b'\n') else {
                    break;
                };
                let raw: Vec<u8> = buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&raw)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned();
                self.emit(stderr, &line);
                if !stderr {
                    self.pending.push_back(line);
                }
            }
        }
    }

    fn flush_partials(&mut self) -> Option<String> {
        for stderr in [false, true] {
            let raw = std::mem::take(&mut self.partial[usize::from(stderr)]);
            if !raw.is_empty() {
                let line = String::from_utf8_lossy(&raw).into_owned();
                self.emit(stderr, &line);
                if !stderr {
                    self.pending.push_back(line);
                }
            }
        }
        self.pending.pop_front()
    }

    fn emit(&mut self, stderr: bool, line: &str) {
        if let Some(sink) = &self.sink {
            sink(&self.name, stderr, line);
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_owned());
    }

    /// Read what is left for a short while (the last words of a dying container).
    async fn drain_for(&mut self, d: Duration) {
        let _ =
            tokio::time::timeout(d, async { while self.next_stdout().await.is_some() {} }).await;
    }

    fn tail(&self) -> String {
        self.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Forward the rest of the output until the container's stdout closes.
    async fn pump(mut self) {
        while self.next_stdout().await.is_some() {}
    }
}

fn tls_archive(tls: &Tls) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let dir = TLS_DIR.trim_start_matches('/');
    for (name, text) in [
        ("ca.pem", &tls.ca),
        ("cert.pem", &tls.cert),
        ("key.pem", &tls.key),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o400);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("{dir}/tls/{name}"), text.as_bytes())
            .map_err(|e| Error::InvalidArgument(format!("cannot package TLS material: {e}")))?;
    }
    builder
        .into_inner()
        .map_err(|e| Error::InvalidArgument(format!("cannot package TLS material: {e}")))
}

/// This process as `host/pid/start-time`, so `prune` can tell a dead owner from a
/// live one even when pids are reused.
pub fn owner_token() -> String {
    let pid = std::process::id();
    format!(
        "{}/{pid}/{}",
        hostname(),
        start_time(pid).unwrap_or_default()
    )
}

/// Whether the process named by an owner token is alive. Owners on other hosts
/// cannot be checked and count as alive.
pub fn owner_alive(token: &str) -> bool {
    let mut parts = token.splitn(3, '/');
    let (Some(host), Some(pid), Some(start)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() {
        return true;
    }
    match pid.parse::<u32>() {
        Ok(pid) => start_time(pid).is_some_and(|s| s == start),
        Err(_) => false,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Field 22 of /proc/PID/stat: start time in clock ticks since boot.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19).map(str::to_owned)
}

/// Remove worker containers whose owner is gone (`all`: every managed container),
/// among those that also carry every `key=value` of `only`. Returns the names
/// removed.
pub async fn prune(engine: &Engine, all: bool, only: &[String]) -> Result<Vec<String>> {
    let mut terms = vec![format!("{}=true", labels::MANAGED)];
    terms.extend(only.iter().cloned());
    let managed = engine.list(&terms, true).await?;
    let mut removed = Vec::new();
    for c in managed {
        let alive = c.labels.get(labels::OWNER).is_some_and(|t| owner_alive(t));
        if all || !alive {
            engine.remove(&c.id).await?;
            removed.push(c.name);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_token_is_alive_and_a_dead_pid_is_not() {
        let token = owner_token();
        assert!(owner_alive(&token));
        let parts: Vec<&str> = token.split('/').collect();
        assert!(!owner_alive(&format!("{}/{}/{}", parts[0], parts[1], "1")));
        assert!(owner_alive("some-other-host/1/1"));
        assert!(!owner_alive("garbage"));
    }

    #[test]
    fn tls_archive_holds_three_private_files() {
        let tls = Tls {
            ca: "ca".into(),
            cert: "cert".into(),
            key: "key".into(),
            mutual: true,
        };
        let bytes = tls_archive(&tls).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(entries.len(), 3);
        assert!(entries
            .iter()
            .all(|(p, m)| p.starts_with("run/wool-docker/tls/") && *m == 0o400));
    }
}
