//! Python-facing wrappers: each awaitable turns one core future into an asyncio
//! future and converts its result. This is the one place that wires the core's
//! pieces together: it holds the process's Engine clients and its registry of
//! owned containers, lends them to workers, discovery and the feed, and runs
//! the exit sequence.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::context;
use crate::discovery;
use crate::engine::Engine;
use crate::error::Error;
use crate::feed::{self, Feed};
use crate::labels::{Extra, Port, WorkerRecord};
use crate::registry::Registry;
use crate::runtime::{self, future_into_py};
use crate::scope::{Change, Scope};
use crate::serving;
use crate::values::Seconds;
use crate::worker::{
    self, EngineAccess, FeedAccess, Lifeline, LogSink, Owner, Plan, Running, Standby,
    StandbyKeywords, WorkerConfig,
};

/// What this process owns: its containers, the feed that serves them, and
/// the lifeline its Swarm workers' tasks connect to (served on first use).
struct Process {
    registry: Registry,
    feed: Feed,
    lifeline: tokio::sync::OnceCell<Lifeline>,
}

/// A static because the native module, and so the owner, is loaded once per
/// process; everything below receives these as handles.
fn process() -> &'static Process {
    static PROCESS: OnceLock<Process> = OnceLock::new();
    PROCESS.get_or_init(|| {
        let registry = Registry::default();
        Process {
            feed: Feed::new(registry.clone()),
            registry,
            lifeline: tokio::sync::OnceCell::new(),
        }
    })
}

fn registry() -> &'static Registry {
    &process().registry
}

/// One negotiated client per Engine address, shared by every worker and subscriber
/// of this process (clones share the connection pool).
async fn engine(host: Option<String>) -> Result<Engine, Error> {
    // Process-wide for the reason `process` is.
    static ENGINES: OnceLock<tokio::sync::Mutex<HashMap<String, Engine>>> = OnceLock::new();
    // Keyed by the Engine chosen, not by the argument: the environment (or the
    // current docker context) may choose another one later.
    let endpoint = context::resolve(host.as_deref(), &context::ProcessEnvironment)?;
    let key = endpoint.host.clone();
    let mut engines = ENGINES.get_or_init(Default::default).lock().await;
    if let Some(engine) = engines.get(&key) {
        return Ok(engine.clone());
    }
    let engine = Engine::connect_to(&endpoint).await?;
    engines.insert(key, engine.clone());
    Ok(engine)
}

/// Connect (or reuse the connection) and report the Engine address and API version.
#[pyfunction]
#[pyo3(signature = (host=None))]
pub fn engine_info(py: Python<'_>, host: Option<String>) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async move {
        let engine = engine(host).await?;
        engine.ping().await?;
        Ok(HashMap::from([
            ("host", engine.host().to_owned()),
            ("api_version", engine.api_version().to_owned()),
        ]))
    })
}

/// Inspect an image: `{"id": str, "labels": dict[str, str]}`.
#[pyfunction]
#[pyo3(signature = (image, host=None))]
pub fn inspect_image(
    py: Python<'_>,
    image: String,
    host: Option<String>,
) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async move {
        let info = engine(host).await?.image(&image).await?;
        runtime::attach(|py| -> PyResult<Py<PyAny>> {
            let dict = PyDict::new(py);
            dict.set_item("id", info.id)?;
            dict.set_item("labels", info.labels)?;
            Ok(dict.into_any().unbind())
        })
    })
}

/// Build an image from an uncompressed tar context; returns the image id.
#[pyfunction]
#[pyo3(signature = (context, tag, host=None))]
pub fn build_image<'py>(
    py: Python<'py>,
    context: &Bound<'py, PyBytes>,
    tag: String,
    host: Option<String>,
) -> PyResult<Bound<'py, PyAny>> {
    let context = context.as_bytes().to_vec();
    future_into_py(py, async move {
        Ok(engine(host).await?.build_image(context, &tag).await?)
    })
}

/// Pull an image from its registry (the docker CLI's credentials).
#[pyfunction]
#[pyo3(signature = (image, host=None))]
pub fn pull_image(
    py: Python<'_>,
    image: String,
    host: Option<String>,
) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async move {
        Ok(engine(host).await?.pull_image(&image).await?)
    })
}

/// Push a local image to its registry (the docker CLI's credentials).
#[pyfunction]
#[pyo3(signature = (image, host=None))]
pub fn push_image(
    py: Python<'_>,
    image: String,
    host: Option<String>,
) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async move {
        Ok(engine(host).await?.push_image(&image).await?)
    })
}

/// Remove an image by reference; missing is fine.
#[pyfunction]
#[pyo3(signature = (image, host=None))]
pub fn remove_image(
    py: Python<'_>,
    image: String,
    host: Option<String>,
) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async move {
        Ok(engine(host).await?.remove_image(&image).await?)
    })
}

/// Read a worker config as `DockerWorker` passes it: the user's keywords in
/// [`WorkerConfig`]'s schema (an unknown, missing or bad key is a
/// `ValueError` naming it).
fn worker_config(config: &Bound<'_, PyAny>) -> Result<WorkerConfig, Error> {
    let mut de = pythonize::Depythonizer::from_object(config);
    WorkerConfig::read(&mut de).map_err(Error::InvalidArgument)
}

/// Check a worker config without starting anything, and return it as the
/// core reads it (sizes in bytes, binds as `src:dst:mode`, limits as pairs):
/// what `start_worker` accepts, it accepts.
#[pyfunction]
pub fn check_worker_config<'py>(
    py: Python<'py>,
    config: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let cfg = worker_config(config)?;
    pythonize::pythonize(py, &cfg)
        .map_err(|e| Error::InvalidArgument(format!("worker configuration: {e}")).into())
}

/// The port rule (1-65535) for a number or its text: the port, or `ValueError`.
#[pyfunction]
pub fn check_port(port: &Bound<'_, PyAny>) -> PyResult<u16> {
    let checked = match port.extract::<String>() {
        Ok(text) => Port::parse(&text),
        // A bool is an int to Python, never a port.
        Err(_) if port.is_instance_of::<pyo3::types::PyBool>() => {
            Err(format!("port must be an integer in 1-65535, got {port}"))
        }
        Err(_) => match port.extract::<i64>() {
            Ok(number) => Port::new(number),
            Err(_) => Err(format!("port must be an integer in 1-65535, got {port}")),
        },
    };
    Ok(checked.map_err(Error::InvalidArgument)?.0)
}

/// The `extra` rule (strings to strings) for a mapping or its JSON object
/// text: the metadata as a dict, or `ValueError`.
#[pyfunction]
pub fn check_extra(extra: &Bound<'_, PyAny>) -> PyResult<BTreeMap<String, String>> {
    let checked = match extra.extract::<String>() {
        Ok(text) => Extra::read(&text),
        Err(_) => pythonize::depythonize::<Extra>(extra).map_err(|e| Extra::rule(e.to_string())),
    };
    Ok(checked.map_err(Error::InvalidArgument)?.0)
}

/// Read a worker container's configuration from its environment (the
/// documented `WOOL_*` variables): a dict, or `ValueError("VARIABLE: problem")`
/// for the first bad variable. The entry point's one reader.
#[pyfunction]
pub fn read_server_env<'py>(
    py: Python<'py>,
    environ: BTreeMap<String, String>,
) -> PyResult<Bound<'py, PyAny>> {
    let cfg = serving::ServerConfig::from_env(&environ)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    pythonize::pythonize(py, &cfg)
        .map_err(|e| Error::InvalidArgument(format!("server configuration: {e}")).into())
}

/// The port a worker container serves on: its owner's document's, else
/// `WOOL_PORT`'s, else the default; `ValueError("VARIABLE: problem")`.
#[pyfunction]
pub fn read_port(environ: BTreeMap<String, String>) -> PyResult<u16> {
    Ok(serving::port(&environ)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?
        .0)
}

/// A boolean variable by the entry point's rule, or `ValueError("VARIABLE:
/// problem")`; `default` when unset or blank.
#[pyfunction]
pub fn env_flag(
    environ: BTreeMap<String, String>,
    variable: String,
    default: bool,
) -> PyResult<bool> {
    Ok(serving::flag(&environ, &variable, default)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?)
}

/// Start a worker container from its config (see [`WorkerConfig`]) and wait
/// until it serves. With `log_output`, its output goes to the
/// `wool_docker.worker` logger. With `standby`, a parked container of that
/// standby is claimed when one is free (or about to be), else a fresh one
/// starts.
#[pyfunction]
#[pyo3(signature = (config, timeout=None, log_output=true, host=None, standby=None))]
pub fn start_worker<'py>(
    py: Python<'py>,
    config: &Bound<'py, PyAny>,
    timeout: Option<f64>,
    log_output: bool,
    host: Option<String>,
    standby: Option<PyRef<'py, StandbyHandle>>,
) -> PyResult<Bound<'py, PyAny>> {
    let cfg = worker_config(config)?;
    let timeout = match timeout {
        Some(given) => seconds("timeout", given)?,
        None => cfg.start_timeout.duration(),
    };
    let sink = log_sink(log_output);
    let standby = standby.map(|s| s.inner.clone());
    future_into_py(py, async move {
        if let Some(standby) = standby {
            if let Some(claimed) = standby.claim(&cfg, timeout).await {
                return Ok(WorkerHandle {
                    inner: Arc::new(claimed?),
                });
            }
        }
        let engine = engine(host).await?;
        let mut owner = owner(&engine, cfg.engine_access, cfg.swarm.is_some()).await?;
        if cfg.swarm.is_some() {
            owner.lifeline = Some(lifeline().await?);
        }
        let running = worker::start(engine, owner, cfg, timeout, sink).await?;
        Ok(WorkerHandle {
            inner: Arc::new(running),
        })
    })
}

/// A positive, finite number of seconds, or `ValueError` naming `what`.
fn seconds(what: &str, value: f64) -> Result<Duration, Error> {
    Seconds::new(value)
        .map(Seconds::duration)
        .map_err(|e| Error::InvalidArgument(format!("{what}: {e}")))
}

fn log_sink(log_output: bool) -> Option<LogSink> {
    log_output.then(|| Arc::new(crate::logging::container_line) as LogSink)
}

/// What this process lends a container on `engine`: its registry, and its
/// feed when the container gets the feed: bind-mounted where the Engine
/// shares this process's files, through a relay in each container elsewhere
/// (or everywhere, with `WOOL_DOCKER_FEED_RELAY=1`), as for a Swarm worker.
async fn owner(engine: &Engine, access: EngineAccess, swarm: bool) -> Result<Owner, Error> {
    let feed = match access {
        EngineAccess::Feed => {
            const RELAY: &str = "WOOL_DOCKER_FEED_RELAY";
            let env: BTreeMap<String, String> = std::env::var(RELAY)
                .map(|v| (RELAY.to_owned(), v))
                .into_iter()
                .collect();
            let relay = serving::flag(&env, RELAY, false)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
            // A Swarm task may run on any node: always through the relay.
            if !relay && !swarm && engine.shares_files().await {
                Some(FeedAccess::Mount(process().feed.ensure().await?))
            } else {
                Some(FeedAccess::Relay(process().feed.clone()))
            }
        }
        _ => None,
    };
    Ok(Owner {
        registry: registry().clone(),
        feed,
        lifeline: None,
    })
}

/// The process's lifeline listener, on `WOOL_DOCKER_LIFELINE_PORT` (default:
/// any free port), started on first use.
async fn lifeline() -> Result<Lifeline, Error> {
    let port = std::env::var("WOOL_DOCKER_LIFELINE_PORT")
        .ok()
        .map(|p| {
            p.trim().parse::<u16>().map_err(|_| {
                Error::InvalidArgument(format!(
                    "WOOL_DOCKER_LIFELINE_PORT={p:?} is not a port number"
                ))
            })
        })
        .transpose()?
        .unwrap_or(0);
    process()
        .lifeline
        .get_or_try_init(|| Lifeline::serve(port))
        .await
        .cloned()
}

/// Read a standby's own keywords (`size`, `refill`, `park_timeout`) as the
/// user gave them; an error is a `ValueError` naming the keyword.
fn standby_keywords(keywords: &Bound<'_, PyAny>) -> Result<StandbyKeywords, Error> {
    let mut de = pythonize::Depythonizer::from_object(keywords);
    StandbyKeywords::read(&mut de).map_err(Error::InvalidArgument)
}

/// Check a standby's own keywords without opening anything.
#[pyfunction]
pub fn check_standby(keywords: &Bound<'_, PyAny>) -> PyResult<()> {
    standby_keywords(keywords)?;
    Ok(())
}

/// Open a standby: check the shape's image and network, then park containers
/// shaped by `config` (a worker config; its per-worker values are unused) in
/// the background, as the standby's `keywords` say.
#[pyfunction]
#[pyo3(signature = (config, keywords, name_prefix, log_output=true, host=None))]
pub fn open_standby<'py>(
    py: Python<'py>,
    config: &Bound<'py, PyAny>,
    keywords: &Bound<'py, PyAny>,
    name_prefix: String,
    log_output: bool,
    host: Option<String>,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = worker_config(config)?;
    let keywords = standby_keywords(keywords)?;
    let plan = Plan {
        shape,
        size: keywords.size.0,
        name_prefix,
        refill: keywords.refill,
        timeout: keywords.park_timeout.duration(),
    };
    let sink = log_sink(log_output);
    future_into_py(py, async move {
        let engine = engine(host).await?;
        let owner = owner(&engine, plan.shape.engine_access, false).await?;
        let standby = Standby::open(engine, owner, plan, sink).await?;
        Ok(StandbyHandle { inner: standby })
    })
}

/// Containers parked for the workers of pools; see [`Standby`].
#[pyclass(frozen, module = "wool_docker._native")]
pub struct StandbyHandle {
    inner: Standby,
}

impl Drop for StandbyHandle {
    /// A standby collected without `close()` (never left, or its `Standby`
    /// dropped) must not keep containers parked until the process exits.
    fn drop(&mut self) {
        let inner = self.inner.clone();
        // After the exit hook this does nothing; the process's exit then
        // closes the parked containers' stdin, which stops them.
        runtime::handle().spawn(async move { inner.close().await });
    }
}

#[pymethods]
impl StandbyHandle {
    /// Containers parked now.
    #[getter]
    fn parked(&self) -> usize {
        self.inner.parked()
    }

    /// Park until the standby is full; raises the first failure to park.
    fn filled<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        future_into_py(py, async move { Ok(inner.filled().await?) })
    }

    /// Remove every parked container and stop parking.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        // Its own task: a cancelled caller must not leave containers parked.
        future_into_py(py, async move {
            tokio::spawn(async move { inner.close().await })
                .await
                .map_err(|e| Error::Internal(format!("closing the standby failed: {e}")))?;
            Ok(())
        })
    }
}

/// Remove this user's worker containers whose owner process is gone (`all`: all
/// of this user's; `any_user`: every user's): `(names removed, containers left
/// whose user cannot be told)`.
#[pyfunction]
#[pyo3(signature = (all=false, host=None, labels=Vec::new(), any_user=false))]
pub fn prune(
    py: Python<'_>,
    all: bool,
    host: Option<String>,
    labels: Vec<String>,
    any_user: bool,
) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async move {
        let engine = engine(host).await?;
        let (mut removed, unknown) = crate::owner::prune(&engine, all, any_user, &labels).await?;
        // On a manager, also the services of Swarm workers nobody runs any more.
        if matches!(
            engine.swarm_role().await?,
            crate::engine::SwarmRole::Manager { .. }
        ) {
            removed.extend(worker::prune_services(&engine, any_user, &labels).await?);
        }
        Ok((removed, unknown))
    })
}

/// This process's owner token, the `wool.docker.owner` label of the containers
/// its `DockerWorker`s create.
#[pyfunction]
pub fn owner_token() -> String {
    crate::owner::token()
}

/// The owner a `DockerDiscovery` built here filters for by default: this
/// process's token, or inside a worker container that reads its owner's feed,
/// the owner's (the feed serves the owner's scopes alone).
#[pyfunction]
pub fn discovery_owner() -> String {
    match (feed::from_env(), std::env::var(feed::OWNER_ENV)) {
        (Some(_), Ok(owner)) if !owner.is_empty() => owner,
        _ => crate::owner::token(),
    }
}

/// A serving worker container owned by this process.
#[pyclass(frozen, module = "wool_docker._native")]
pub struct WorkerHandle {
    inner: Arc<Running>,
}

#[pymethods]
impl WorkerHandle {
    /// Container id.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }

    /// Container name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// `ip:port` on the worker's network.
    #[getter]
    fn address(&self) -> &str {
        &self.inner.address
    }

    /// wool protocol version the server reported.
    #[getter]
    fn version(&self) -> &str {
        &self.inner.version
    }

    /// The server's pid inside the container.
    #[getter]
    fn pid(&self) -> i64 {
        self.inner.pid
    }

    /// The Swarm node a Swarm worker's task runs on; `None` for a container.
    #[getter]
    fn node(&self) -> Option<&str> {
        self.inner.node.as_deref()
    }

    /// Where the start went: `[(phase, seconds), ...]` in order.
    #[getter]
    fn timings(&self) -> Vec<(&'static str, f64)> {
        self.inner.timings.clone()
    }

    /// Whether the container has exited.
    #[getter]
    fn exited(&self) -> bool {
        self.inner.exited()
    }

    /// Drain per `grace` and remove the container.
    #[pyo3(signature = (grace=None))]
    fn stop<'py>(&self, py: Python<'py>, grace: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        future_into_py(py, async move { Ok(inner.stop(grace).await?) })
    }

    fn __repr__(&self) -> String {
        format!(
            "WorkerHandle(name={:?}, address={:?})",
            self.inner.name, self.inner.address
        )
    }
}

fn record_dict<'py>(
    py: Python<'py>,
    r: &WorkerRecord,
    observed_ns: i64,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("observed_ns", observed_ns)?;
    d.set_item("uid", &r.uid)?;
    d.set_item("address", &r.address)?;
    d.set_item("version", &r.version)?;
    d.set_item("tags", &r.tags)?;
    d.set_item("extra", &r.extra)?;
    d.set_item("secure", r.secure)?;
    d.set_item("identity", &r.identity)?;
    d.set_item("options", &r.options)?;
    d.set_item("pid", r.pid)?;
    d.set_item("container_id", &r.container_id)?;
    d.set_item("container_name", &r.container_name)?;
    d.set_item("network", &r.network)?;
    Ok(d)
}

/// Subscribe to worker containers carrying `selector` (optionally on `network`;
/// with `owner`, managed containers of that owner token only).
#[pyfunction]
#[pyo3(signature = (selector, network=None, host=None, owner=None))]
pub fn subscribe(
    py: Python<'_>,
    selector: std::collections::BTreeMap<String, String>,
    network: Option<String>,
    host: Option<String>,
    owner: Option<String>,
) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async move {
        let scope = Scope {
            selector,
            network,
            owner,
        };
        // Inside an owner's container the owner's feed is the only discovery
        // there is (the Engine is out of reach by design).
        if let Some(path) = feed::from_env() {
            let client = feed::subscribe(&path, &scope).await?;
            return Ok(Subscription::new(Source::Feed(client)));
        }
        let engine = engine(host).await?;
        // Subscribing starts the listing; check the network meanwhile. A missing
        // network fails now, clearly (dropping `sub` stops its stream), rather
        // than retrying a scope that can never match.
        let check = scope.network.clone();
        let sub = discovery::subscribe(&engine, scope.clone(), registry());
        if let Some(n) = &check {
            engine.network(n).await?;
        }
        // This process's containers may ask for what it subscribes to, while
        // it does: the grant lives and dies with the subscription.
        let grant = process().feed.allow(&engine, &scope);
        Ok(Subscription::new(Source::Hub(sub, grant)))
    })
}

/// List the workers a subscriber would see now: `[(record, health)]`.
#[pyfunction]
#[pyo3(signature = (selector, network=None, host=None))]
pub fn list_workers(
    py: Python<'_>,
    selector: std::collections::BTreeMap<String, String>,
    network: Option<String>,
    host: Option<String>,
) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async move {
        let engine = engine(host).await?;
        let scope = Scope {
            selector,
            network,
            owner: None,
        };
        let workers = discovery::list(&engine, &scope).await?;
        runtime::attach(|py| -> PyResult<Py<PyAny>> {
            let out = pyo3::types::PyList::empty(py);
            for (record, health) in &workers {
                out.append((record_dict(py, record, 0)?, health.clone()))?;
            }
            Ok(out.into_any().unbind())
        })
    })
}

/// Where a subscription's changes come from.
enum Source {
    /// This process's own discovery of the Engine, and its scope's feed grant.
    Hub(
        discovery::Subscription,
        // Held, never read: dropping it stops serving the scope to containers.
        #[allow(dead_code)] feed::Grant,
    ),
    /// The owner's feed, inside one of its containers.
    Feed(feed::Client),
}

impl Source {
    /// The next batch; empty when the source has ended.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Change>, Error> {
        match self {
            Source::Hub(sub, _) => Ok(sub.next_batch(max).await),
            Source::Feed(client) => client.next_batch().await,
        }
    }
}

/// A stream of discovery changes for one iteration.
#[pyclass(frozen, module = "wool_docker._native")]
pub struct Subscription {
    inner: Arc<tokio::sync::Mutex<Option<Source>>>,
    closed: tokio::sync::watch::Sender<bool>,
}

impl Subscription {
    fn new(sub: Source) -> Self {
        Subscription {
            inner: Arc::new(tokio::sync::Mutex::new(Some(sub))),
            closed: tokio::sync::watch::channel(false).0,
        }
    }
}

/// Changes handed to Python per `next()` at most.
const BATCH: usize = 1024;

#[pymethods]
impl Subscription {
    /// The next changes, in order, as `[(kind, record-or-message), ...]`: every
    /// change queued when the first arrives. `None` once closed.
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        let mut closed = self.closed.subscribe();
        future_into_py(py, async move {
            let mut guard = tokio::select! {
                biased;
                _ = closed.wait_for(|c| *c) => return Ok(None),
                guard = inner.lock() => guard,
            };
            let Some(sub) = guard.as_mut() else {
                return Ok(None);
            };
            let changes = tokio::select! {
                changes = sub.next_batch(BATCH) => changes?,
                _ = closed.wait_for(|c| *c) => {
                    guard.take();
                    return Ok(None);
                }
            };
            if changes.is_empty() {
                return Ok(None);
            }
            runtime::attach(|py| -> PyResult<Option<Py<PyAny>>> {
                let out = pyo3::types::PyList::empty(py);
                for change in changes {
                    let item = match change {
                        Change::Added(r, at) => {
                            ("worker-added", record_dict(py, &r, at)?.into_any())
                        }
                        Change::Updated(r, at) => {
                            ("worker-updated", record_dict(py, &r, at)?.into_any())
                        }
                        Change::Dropped(r, at) => {
                            ("worker-dropped", record_dict(py, &r, at)?.into_any())
                        }
                        Change::Warning(text) => ("warning", text.into_pyobject(py)?.into_any()),
                    };
                    out.append(item)?;
                }
                Ok(Some(out.into_any().unbind()))
            })
        })
    }

    /// Release the subscription, also while a `next()` waits (it returns
    /// `None`); the shared stream stops with its last subscription.
    fn close(&self) {
        self.closed.send_replace(true);
        if let Ok(mut guard) = self.inner.try_lock() {
            guard.take();
        }
    }
}

/// The exit hook, registered with `atexit` when the module loads: hand queued log
/// records to Python, stop the runtime (discovery streams, container output
/// pumps, the worker feed, `ssh` forwards), then remove their directories.
///
/// Containers of `DockerWorker`s that were never stopped lose their owner's
/// stdin when the process exits and remove themselves, as after a crash.
#[pyfunction]
pub fn shutdown(py: Python<'_>) {
    crate::logging::flush(py);
    runtime::stop(py);
    crate::rundir::FEED.remove_own();
    crate::rundir::SSH.remove_own();
}
