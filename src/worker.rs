//! Container lifecycle of one worker: check, create, attach, start, wait until it
//! serves, stop, remove.
//!
//! The owner keeps the container's stdin attached for the container's whole life.
//! The worker image's entry point reads stop commands from it and treats EOF as the
//! owner's death, so a SIGKILLed owner still takes its containers with it (they are
//! created with auto-remove). No privileged helper is involved.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{oneshot, watch, Mutex};

use crate::engine::{now_nanos, Confinement, ContainerInfo, CreateSpec, Engine, InputWriter};
use crate::error::{Error, Result};
use crate::labels::{self, Publication};
use crate::output::Lines;
pub use crate::output::LogSink;

/// The line the worker image prints once its gRPC port is bound.
pub const READY_PREFIX: &str = "wool-docker ready ";
/// Where TLS material lands in the container: a tmpfs of its own, filled over
/// stdin (never env, labels, layers or disk).
const TLS_DIR: &str = "/run/wool-docker/tls";
/// tmpfs options of the TLS directory (PEM files are a few KiB).
const TLS_OPTIONS: &str = "rw,noexec,nosuid,nodev,size=1m";
/// The worker's home directory under a read-only root (the image's `HOME`).
const HOME: &str = "/home/wool";
/// tmpfs options of the home directory.
const HOME_OPTIONS: &str = "rw,noexec,nosuid,nodev,size=64m";
/// tmpfs options of `/tmp` under a read-only root.
const TMP_OPTIONS: &str = "rw,noexec,nosuid,nodev,size=256m,mode=1777";
/// Extra time past the drain grace for the server to exit before it is killed.
const STOP_MARGIN: Duration = Duration::from_secs(5);
/// How long a `grace=None` stop (cancel at once) may take before a kill.
const STOP_NOW: Duration = Duration::from_secs(10);

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
    labels.insert(labels::OWNER.to_owned(), crate::owner::token());
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
        // Paths only: the material itself arrives over stdin into a tmpfs.
        env.insert("WOOL_TLS_CA".to_owned(), format!("{TLS_DIR}/ca.pem"));
        env.insert("WOOL_TLS_CERT".to_owned(), format!("{TLS_DIR}/cert.pem"));
        env.insert("WOOL_TLS_KEY".to_owned(), format!("{TLS_DIR}/key.pem"));
        env.insert("WOOL_TLS_MUTUAL".to_owned(), tls.mutual.to_string());
        env.insert("WOOL_DOCKER_TLS_STDIN".to_owned(), "1".to_owned());
    }
    let confinement = confinement(&cfg.sandbox, cfg.tls.is_some());
    if confinement.tmpfs.contains_key(HOME) {
        env.insert("HOME".to_owned(), HOME.to_owned());
    }
    if cfg.sandbox.user.as_deref().is_some_and(is_root) {
        // Asked for explicitly: the entry point refuses root otherwise.
        env.insert("WOOL_ALLOW_ROOT".to_owned(), "1".to_owned());
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
        confinement,
    }
}

/// The container's confinement: the user's choices plus what they imply.
/// Every capability is dropped; a read-only root gets size-bounded tmpfs for
/// `/tmp` and the home directory; TLS material gets a tmpfs of its own that
/// only the worker's user may enter.
fn confinement(sandbox: &Sandbox, tls: bool) -> Confinement {
    // tmpfs belongs to root unless told otherwise: give the private ones to the
    // worker's user when its uid is known (a name is resolved only in the image).
    let owner = sandbox
        .user
        .as_deref()
        .and_then(numeric_ids)
        .map(|(uid, gid)| format!(",uid={uid},gid={gid}"));
    let private = match &owner {
        Some(ids) => format!("mode=0700{ids}"),
        None => "mode=1777".to_owned(),
    };
    let mut tmpfs = BTreeMap::new();
    if sandbox.read_only {
        tmpfs.insert("/tmp".to_owned(), TMP_OPTIONS.to_owned());
        tmpfs.insert(HOME.to_owned(), format!("{HOME_OPTIONS},{private}"));
    }
    if tls {
        tmpfs.insert(TLS_DIR.to_owned(), format!("{TLS_OPTIONS},{private}"));
    }
    tmpfs.extend(sandbox.tmpfs.clone());
    Confinement {
        user: sandbox.user.clone(),
        read_only: sandbox.read_only,
        tmpfs,
        cap_drop: vec!["ALL".to_owned()],
        cap_add: sandbox.cap_add.clone(),
        security_opt: sandbox.security_opt.clone(),
        pids_limit: sandbox.pids_limit,
        oom_score_adj: sandbox.oom_score_adj,
        ulimits: sandbox
            .ulimits
            .iter()
            .map(|(name, (soft, hard))| (name.clone(), *soft, *hard))
            .collect(),
        log: sandbox.log.clone(),
        runtime: sandbox.runtime.clone(),
        group_add: Vec::new(),
    }
}

/// `uid[:gid]` when both are numbers (gid defaults to uid).
fn numeric_ids(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

/// Whether `user[:group]` names root.
fn is_root(user: &str) -> bool {
    matches!(user.split(':').next(), Some("0" | "root"))
}

async fn bring_up(
    engine: &Engine,
    id: &str,
    cfg: &WorkerConfig,
    timeout: Duration,
    sink: Option<LogSink>,
    mut clock: Clock,
) -> Result<Running> {
    let (output, mut input) = engine.attach(id, true).await?;
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
    if let Some(tls) = &cfg.tls {
        // The entry point reads this one line before anything else on stdin.
        let mut line = serde_json::to_vec(&TlsFiles {
            ca: &tls.ca,
            cert: &tls.cert,
            key: &tls.key,
        })
        .map_err(|e| Error::InvalidArgument(format!("cannot encode TLS material: {e}")))?;
        line.push(b'\n');
        input
            .write_all(&line)
            .await
            .map_err(|e| Error::ContainerExited {
                id: cfg.name.clone(),
                code: None,
                log_tail: format!("could not hand it its TLS material: {e}"),
            })?;
        input.flush().await.ok();
        clock.lap("hand over TLS material");
    }

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

/// TLS material as the entry point reads it from stdin (one JSON line).
#[derive(serde::Serialize)]
struct TlsFiles<'a> {
    ca: &'a str,
    cert: &'a str,
    key: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_sandbox_drops_everything_and_mounts_private_tmpfs() {
        let sandbox = Sandbox {
            user: Some("65532:65532".into()),
            read_only: true,
            ..Default::default()
        };
        let c = confinement(&sandbox, true);
        assert_eq!(c.cap_drop, ["ALL"]);
        assert!(c.read_only);
        assert!(c.tmpfs["/tmp"].contains("size="));
        assert!(c.tmpfs[HOME].contains("mode=0700,uid=65532,gid=65532"));
        assert!(c.tmpfs[TLS_DIR].contains("mode=0700,uid=65532,gid=65532"));
        let open = confinement(&Sandbox::default(), false);
        assert!(open.tmpfs.is_empty() && !open.read_only);
        let named = confinement(
            &Sandbox {
                user: Some("wool".into()),
                ..Default::default()
            },
            true,
        );
        assert!(named.tmpfs[TLS_DIR].ends_with("mode=1777"));
    }

    #[test]
    fn root_is_recognised_by_name_and_number() {
        assert!(is_root("0") && is_root("root:root") && is_root("0:1000"));
        assert!(!is_root("65532") && !is_root("1000:0") && !is_root("rooty"));
        assert_eq!(numeric_ids("7"), Some((7, 7)));
        assert_eq!(numeric_ids("7:8"), Some((7, 8)));
        assert_eq!(numeric_ids("wool"), None);
    }
}
