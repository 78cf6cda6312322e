//! Label discovery: initial list, event stream, cache, diff, reconnect.
//!
//! One task per (Engine, selector, network) owns the event stream and the cache and
//! fans changes out to every subscription. A container is announced once it serves:
//! its worker printed the ready line (read from its log stream, or seen by a
//! `DockerWorker` of this process) or its healthcheck reports healthy. It is
//! dropped as soon as it is being stopped, killed, dies, is paused, turns unhealthy
//! or leaves the scoped network. After any gap in the event stream the task
//! re-lists and emits exactly the difference, because the Engine replays only a
//! few events and none across a restart.
//!
//! Changes travel in batches, and a listing's changes are one batch: a new
//! subscription's first batch holds every container serving when it subscribed,
//! so a pool's first dispatches see all of them, not the first one found.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex as StdMutex, OnceLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::engine::{
    now_nanos, rfc3339_nanos, ContainerEvent, ContainerInfo, Engine, Output, OutputStream,
};
use crate::error::Result;
use crate::labels::{self, Skip, WorkerRecord};
use crate::worker::{self, Ready};

/// What a subscription receives. The `i64` is the Engine's time (Unix
/// nanoseconds) of the observation behind the change — the event, or the log line
/// of the ready announcement — or 0 when it came from a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A worker started serving.
    Added(WorkerRecord, i64),
    /// A worker's advertised record changed.
    Updated(WorkerRecord, i64),
    /// A worker stopped serving.
    Dropped(WorkerRecord, i64),
    /// A matching container was skipped; the text names it and why.
    Warning(String),
}

/// Which containers a discovery sees.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// Labels every container must carry (`key` → `value`; empty value: any).
    pub selector: BTreeMap<String, String>,
    /// Only containers on this network, addressed on it.
    pub network: Option<String>,
}

/// One subscriber's view: every known worker as `Added`, then deltas.
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Vec<Change>>,
    _hub: Arc<Hub>,
}

impl Subscription {
    /// Wait for the next batch of changes, then take the batches already queued
    /// behind it while fewer than `max` changes are taken. A batch is never split:
    /// the first one holds every worker known when the subscription began. Empty
    /// only if the hub is gone.
    pub async fn next_batch(&mut self, max: usize) -> Vec<Change> {
        let Some(mut batch) = self.rx.recv().await else {
            return Vec::new();
        };
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        batch
    }
}

/// Shared between the stream task and subscriptions.
struct Hub {
    announced: StdMutex<Announced>,
    _shutdown: oneshot::Sender<()>,
}

#[derive(Default)]
struct Announced {
    workers: BTreeMap<String, WorkerRecord>,
    subscribers: Vec<mpsc::UnboundedSender<Vec<Change>>>,
}

impl Announced {
    fn send(&mut self, batch: Vec<Change>) {
        if !batch.is_empty() {
            self.subscribers.retain(|tx| tx.send(batch.clone()).is_ok());
        }
    }
}

type HubKey = (String, Scope);

/// Subscribe to a scope; equal scopes on one Engine share one event stream.
pub fn subscribe(engine: &Engine, scope: Scope) -> Subscription {
    static HUBS: OnceLock<StdMutex<HashMap<HubKey, Weak<Hub>>>> = OnceLock::new();
    let key = (engine.host().to_owned(), scope.clone());
    let mut hubs = HUBS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    hubs.retain(|_, hub| hub.strong_count() > 0);
    let hub = match hubs.get(&key).and_then(Weak::upgrade) {
        Some(hub) => hub,
        None => {
            let (shutdown_tx, shutdown_rx) = oneshot::channel();
            let hub = Arc::new(Hub {
                announced: Default::default(),
                _shutdown: shutdown_tx,
            });
            tokio::spawn(run(
                engine.clone(),
                scope,
                Arc::downgrade(&hub),
                shutdown_rx,
            ));
            hubs.insert(key, Arc::downgrade(&hub));
            hub
        }
    };
    drop(hubs);
    let (tx, rx) = mpsc::unbounded_channel();
    {
        // Under the lock the stream task sends its batches with: the snapshot and
        // the batches after it neither overlap nor leave a gap.
        let mut announced = hub.announced.lock().unwrap_or_else(|p| p.into_inner());
        let snapshot: Vec<Change> = announced
            .workers
            .values()
            .map(|r| Change::Added(r.clone(), 0))
            .collect();
        if !snapshot.is_empty() {
            let _ = tx.send(snapshot);
        }
        announced.subscribers.push(tx);
    }
    Subscription { rx, _hub: hub }
}

/// The scoped network's exact name, resolved by the Engine like the docker CLI
/// resolves it (a name, a full id, or a unique id prefix). Resolved again at every
/// listing: a network re-created under the same name gets a new id.
async fn resolve_network(engine: &Engine, scope: &Scope) -> Result<Option<String>> {
    match &scope.network {
        Some(reference) => Ok(Some(engine.network(reference).await?.name)),
        None => Ok(None),
    }
}

/// One-shot listing with the subscriber's label and address rules (for
/// `wool-docker ps`): every running matching container with a record, and its
/// health, whether or not it serves yet.
pub async fn list(engine: &Engine, scope: &Scope) -> Result<Vec<(WorkerRecord, Option<String>)>> {
    let network = resolve_network(engine, scope).await?;
    let containers = engine
        .list(&labels::filter_terms(&scope.selector), false)
        .await?;
    let mut out = Vec::new();
    for c in containers {
        if let Ok(Ok(record)) = labels::parse(&c, network.as_deref()) {
            out.push((record, c.health.clone()));
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Entry {
    record: Option<WorkerRecord>,
    /// What the server said when it became ready (`None`: not known to serve).
    ready: Option<Ready>,
    running: bool,
    unhealthy: bool,
    watcher: Option<AbortHandle>,
}

impl Entry {
    /// The record to announce, if the container serves: its labels, with the
    /// version and pid its server reported.
    fn serving(&self) -> Option<WorkerRecord> {
        let (record, ready) = (self.record.as_ref()?, self.ready.as_ref()?);
        if !self.running || self.unhealthy {
            return None;
        }
        let mut record = record.clone();
        if let Some(version) = &ready.version {
            record.version = version.clone();
        }
        if let Some(pid) = ready.pid {
            record.pid = pid;
        }
        Some(record)
    }

    /// Take the server's word that it serves; no need to watch for it any more.
    fn learn(&mut self, ready: Ready) {
        self.ready = Some(ready);
        self.stop_watching();
    }

    /// Abort the ready-line watcher, if any (dropping its handle would not).
    fn stop_watching(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
    }

    fn watching(&self) -> bool {
        self.watcher.as_ref().is_some_and(|w| !w.is_finished())
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.stop_watching();
    }
}

/// The stream task's state.
struct Tracker {
    engine: Engine,
    scope: Scope,
    hub: Weak<Hub>,
    /// The scoped network's exact name, as of the last listing.
    network: Option<String>,
    entries: HashMap<String, Entry>,
    warned: HashSet<String>,
    /// Warnings raised while absorbing, sent ahead of the next batch.
    warnings: Vec<Change>,
    /// Containers already warned about for sharing another's uid.
    duplicates: HashSet<String>,
    ready_tx: mpsc::UnboundedSender<Ready>,
    /// Containers whose inspect failed, to inspect again: (id, attempt).
    retry_tx: mpsc::UnboundedSender<(String, u32)>,
    /// Engine time of the observation being handled (0: a listing).
    cause_ns: i64,
}

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Default period of the anti-entropy re-list (`WOOL_DOCKER_RESYNC_INTERVAL`).
const RESYNC_DEFAULT: Duration = Duration::from_secs(30);
/// Inspects of one container after a failed one, before the next re-list decides.
const INSPECT_RETRIES: u32 = 3;
/// How far before the Engine's clock reading an event stream resumes.
const SINCE_MARGIN_NS: i64 = 2_000_000_000;
/// How long an event stream must stay up before the reconnect backoff resets.
const HEALTHY_FOR: Duration = Duration::from_secs(10);
/// How long a listing waits for the logs of the containers it found, so their
/// readiness arrives in the listing's batch; those still unknown are followed.
const LIST_READY_BOUND: Duration = Duration::from_secs(2);
/// Containers whose logs a listing reads at once.
const LIST_READY_CONCURRENCY: usize = 32;
/// How long a container's output is followed for its ready line.
const READY_WATCH_MAX: Duration = Duration::from_secs(600);
/// Longest output line a ready-line reader keeps; longer lines cannot be one.
const MAX_LINE: usize = 64 * 1024;

async fn run(engine: Engine, scope: Scope, hub: Weak<Hub>, mut shutdown: oneshot::Receiver<()>) {
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (retry_tx, mut retry_rx) = mpsc::unbounded_channel();
    let resync_every = resync_interval();
    // Containers of this process's DockerWorkers, the moment they serve.
    let mut own_ready = worker::serving_updates();
    let mut t = Tracker {
        engine,
        scope,
        hub,
        network: None,
        entries: HashMap::new(),
        warned: HashSet::new(),
        warnings: Vec::new(),
        duplicates: HashSet::new(),
        ready_tx,
        retry_tx,
        cause_ns: 0,
    };
    let mut backoff = BACKOFF_START;
    loop {
        // Where the event stream resumes: the Engine's time (it filters the replay
        // by its own clock, which may differ from ours), read while the listing
        // runs so the first batch does not wait for it, less a margin that covers
        // the listing. Events replayed from inside the margin are applied
        // idempotently.
        let before = now_nanos();
        let engine = t.engine.clone();
        let (engine_now, synced) = tokio::join!(engine.now_ns(), t.sync());
        let since = match engine_now {
            Ok(Some(ns)) => ns - SINCE_MARGIN_NS,
            Ok(None) => before,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the Engine's clock; using ours");
                before
            }
        };
        match synced {
            Ok(_) => {
                let connected = tokio::time::Instant::now();
                let terms = labels::filter_terms(&t.scope.selector);
                let mut containers = t.engine.container_events(&terms, Some(since));
                // Network events move addresses: leaving the scoped network drops a
                // worker; joining one may change an unscoped worker's address.
                let mut networks = t.engine.network_events(t.network.as_deref(), Some(since));
                // The end or failure of either stream is a gap: re-list.
                let mut resync = tokio::time::interval_at(
                    tokio::time::Instant::now() + resync_every,
                    resync_every,
                );
                loop {
                    let gap = tokio::select! {
                        _ = &mut shutdown => return,
                        _ = resync.tick() => t.anti_entropy().await,
                        Some((id, attempt)) = retry_rx.recv() => {
                            t.refresh_attempt(&id, attempt).await;
                            false
                        }
                        event = containers.next() => t.on_stream("container", event).await,
                        event = networks.next() => t.on_stream("network", event).await,
                        Some(ready) = ready_rx.recv() => {
                            t.on_ready(ready);
                            false
                        }
                        own = own_ready.recv() => {
                            // A lagging receiver lost some: the log watchers still report them.
                            if let Ok(ready) = own {
                                t.on_ready(ready);
                            }
                            false
                        }
                    };
                    if gap {
                        break;
                    }
                }
                // Only a stream that stayed up earns a quick reconnect: one that
                // fails at once must not make the hub re-list ten times a second.
                if connected.elapsed() >= HEALTHY_FOR {
                    backoff = BACKOFF_START;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, delay_ms = backoff.as_millis() as u64, "docker list failed; retrying")
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The anti-entropy period: `WOOL_DOCKER_RESYNC_INTERVAL` seconds, else 30 s.
fn resync_interval() -> Duration {
    std::env::var("WOOL_DOCKER_RESYNC_INTERVAL")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(RESYNC_DEFAULT)
}

impl Tracker {
    /// Re-list on a period while the stream runs, and emit the exact difference.
    /// With a healthy stream there is none: any drift it corrects is a missed
    /// event (or a bug) and is logged. `true` if the listing failed (a gap).
    async fn anti_entropy(&mut self) -> bool {
        match self.sync().await {
            Ok(0) => false,
            Ok(drift) => {
                tracing::warn!(
                    drift,
                    "periodic re-list corrected changes the event stream missed"
                );
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "periodic re-list failed; reconnecting");
                true
            }
        }
    }

    /// Handle one item of an event stream; `true` when the stream broke or ended.
    async fn on_stream(
        &mut self,
        stream: &'static str,
        item: Option<Result<ContainerEvent>>,
    ) -> bool {
        match item {
            Some(Ok(event)) => {
                self.on_event(event).await;
                false
            }
            Some(Err(e)) => {
                tracing::warn!(stream, error = %e, "docker event stream broke; reconnecting");
                true
            }
            None => {
                tracing::warn!(stream, "docker event stream ended; reconnecting");
                true
            }
        }
    }

    /// Re-list and reconcile every container: the truth after any gap. The
    /// readiness of listed containers not yet known to serve is resolved for all
    /// of them together (one bounded step), and the whole difference is one batch.
    /// Returns the drift: how many changes (or containers appearing or vanishing)
    /// the event stream had not delivered.
    async fn sync(&mut self) -> Result<usize> {
        self.cause_ns = 0;
        let terms = labels::filter_terms(&self.scope.selector);
        let (network, list) = tokio::join!(
            resolve_network(&self.engine, &self.scope),
            self.engine.list(&terms, false)
        );
        self.network = network?;
        let list = list?;
        let unknown: Vec<String> = list
            .iter()
            .filter(|c| self.needs_logs(c))
            .map(|c| c.id.clone())
            .collect();
        let mut learned = read_ready_all(&self.engine, unknown).await;
        // Containers the listing shows that no event had told of, and below
        // the ones it no longer shows: what a healthy stream leaves at 0.
        let mut untold = list
            .iter()
            .filter(|c| !self.entries.contains_key(&c.id))
            .count();
        let mut ids = Vec::with_capacity(list.len());
        for c in &list {
            let (started_ns, ready) = learned.remove(&c.id).unwrap_or_default();
            self.absorb(c, ready, started_ns);
            ids.push(c.id.clone());
        }
        let listed: HashSet<&String> = list.iter().map(|c| &c.id).collect();
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|id| !listed.contains(id))
            .cloned()
            .collect();
        for id in &gone {
            self.entries.remove(id);
            self.warned.remove(id);
            self.duplicates.remove(id);
        }
        untold += gone.len();
        ids.extend(gone);
        let changes = self.reconcile(ids.iter().map(String::as_str));
        Ok(changes.max(untold))
    }

    /// Whether a listed container's readiness must be read from its logs: it
    /// could be a worker, runs, and nothing else has said that it serves.
    fn needs_logs(&self, c: &ContainerInfo) -> bool {
        c.state == "running"
            && c.health.as_deref() != Some("healthy")
            && self.entries.get(&c.id).is_none_or(|e| e.ready.is_none())
            && worker::serving(&c.id).is_none()
            && matches!(labels::parse(c, self.network.as_deref()), Ok(Ok(_)))
    }

    /// Take a container's current description into its entry, keeping what we
    /// learned about readiness; `ready` is what its logs just said, `started_ns`
    /// when its current run started (0: unknown). Callers pass only containers
    /// that match the selector and reconcile afterwards.
    fn absorb(&mut self, c: &ContainerInfo, ready: Option<Ready>, started_ns: i64) {
        let record = match labels::parse(c, self.network.as_deref()) {
            Ok(Ok(r)) => Some(r),
            Ok(Err(Skip::NoAddress)) => None,
            Err(e) => {
                if self.warned.insert(c.id.clone()) {
                    self.warnings.push(Change::Warning(format!(
                        "skipping {e}; fix the label (see the wool-docker label schema)"
                    )));
                }
                None
            }
        };
        let entry = self.entries.entry(c.id.clone()).or_default();
        entry.record = record;
        entry.running = c.state == "running";
        entry.unhealthy = c.health.as_deref() == Some("unhealthy");
        if let Some(ready) = ready.or_else(|| worker::serving(&c.id)) {
            entry.learn(ready);
        } else if c.health.as_deref() == Some("healthy") && entry.ready.is_none() {
            entry.learn(Ready {
                id: c.id.clone(),
                ..Ready::default()
            });
        }
        // A watcher whose log stream broke (e.g. with the Engine connection) has
        // finished without an answer: start another.
        let watch =
            entry.record.is_some() && entry.running && entry.ready.is_none() && !entry.watching();
        if watch {
            let handle = self.watch_ready(&c.id, started_ns, started_ns);
            if let Some(entry) = self.entries.get_mut(&c.id) {
                entry.watcher = Some(handle);
            }
        }
    }

    fn matches_selector(&self, c: &ContainerInfo) -> bool {
        self.scope.selector.iter().all(|(k, v)| {
            c.labels
                .get(k)
                .is_some_and(|have| v.is_empty() || have == v)
        })
    }

    /// Follow a container's output from `since_ns` (the Engine's clock, Unix
    /// nanoseconds; 0: its whole output) until its worker prints a ready line
    /// stamped at or after `from_ns`.
    fn watch_ready(&self, id: &str, since_ns: i64, from_ns: i64) -> AbortHandle {
        let logs = self
            .engine
            .logs(id, true, since_ns.max(0) / 1_000_000_000, true);
        let tx = self.ready_tx.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            match tokio::time::timeout(READY_WATCH_MAX, scan_ready(&id, logs, from_ns)).await {
                Ok(Some(ready)) => {
                    let _ = tx.send(ready);
                }
                Ok(None) => {}
                // A container that never prints the ready line (a custom image)
                // must not hold a log follower for its whole life.
                Err(_) => tracing::info!(
                    id = %id,
                    "no ready line after 10 minutes; only a healthcheck can announce this container now"
                ),
            }
        })
        .abort_handle()
    }

    fn on_ready(&mut self, ready: Ready) {
        let id = ready.id.clone();
        if let Some(entry) = self.entries.get_mut(&id) {
            self.cause_ns = ready.at_ns;
            entry.learn(ready);
            self.reconcile([id.as_str()]);
        }
    }

    async fn on_event(&mut self, e: ContainerEvent) {
        self.cause_ns = e.time_nano;
        let action = e.action.as_str();
        match action {
            "start" => {
                match self.entries.get_mut(&e.id) {
                    // A restart must print its ready line again, and only lines of
                    // the new run count: `refresh` reads its StartedAt and follows
                    // from there. (A start we already saw through a listing keeps
                    // what we know.)
                    Some(entry) if !entry.running => {
                        entry.ready = None;
                        entry.stop_watching();
                    }
                    Some(_) => {}
                    // A new container: follow its output while the inspect runs,
                    // not after. Container events are label-filtered by the Engine,
                    // so this one matches. From the Engine's own time (never
                    // ours), a second early: the ready line can be stamped just
                    // before the start event.
                    None => {
                        let since = e.time_nano - 1_000_000_000;
                        let handle = self.watch_ready(&e.id, since, 0);
                        self.entries.entry(e.id.clone()).or_default().watcher = Some(handle);
                    }
                }
                self.refresh(&e.id).await;
            }
            // Only containers we track: a new container's connect comes while it
            // is starting, when an inspect would wait for the start to finish; its
            // start event follows anyway.
            "connect" | "disconnect" | "rename" if self.entries.contains_key(&e.id) => {
                self.refresh(&e.id).await;
            }
            "connect" | "disconnect" | "rename" => {}
            "pause" | "stop" | "die" | "oom" => self.set(&e.id, |entry| entry.running = false),
            "kill" if stops(e.signal.as_deref()) => self.set(&e.id, |entry| entry.running = false),
            "unpause" => self.set(&e.id, |entry| entry.running = true),
            "destroy" => {
                self.entries.remove(&e.id);
                self.warned.remove(&e.id);
                self.duplicates.remove(&e.id);
                self.reconcile([e.id.as_str()]);
            }
            a if a.starts_with("health_status") => {
                let healthy = a.ends_with(" healthy") || a.ends_with(":healthy");
                if !self.entries.contains_key(&e.id) {
                    self.refresh(&e.id).await;
                }
                let id = e.id.clone();
                self.set(&e.id, |entry| {
                    entry.unhealthy = !healthy;
                    if healthy && entry.ready.is_none() {
                        entry.learn(Ready {
                            id,
                            at_ns: e.time_nano,
                            ..Ready::default()
                        });
                    }
                });
            }
            _ => {}
        }
    }

    fn set(&mut self, id: &str, f: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.entries.get_mut(id) {
            f(entry);
            if !entry.running {
                entry.stop_watching();
            }
            self.reconcile([id]);
        }
    }

    /// Re-inspect one container after an event that may change what it advertises.
    async fn refresh(&mut self, id: &str) {
        self.refresh_attempt(id, 0).await;
    }

    /// Inspect, retried with backoff after a failure (`attempt` so far).
    async fn refresh_attempt(&mut self, id: &str, attempt: u32) {
        match self.engine.inspect(id).await {
            Ok(Some(c)) if self.matches_selector(&c) => {
                let started_ns = c.started_at_ns.unwrap_or_default();
                self.absorb(&c, None, started_ns);
            }
            Ok(_) => {
                self.entries.remove(id);
            }
            Err(e) if attempt < INSPECT_RETRIES => {
                tracing::debug!(id = %id, attempt, error = %e, "inspect failed; retrying");
                let (tx, id) = (self.retry_tx.clone(), id.to_owned());
                tokio::spawn(async move {
                    tokio::time::sleep(BACKOFF_START * 2u32.pow(attempt)).await;
                    let _ = tx.send((id, attempt + 1));
                });
            }
            // The periodic re-list (or the next gap's) settles it.
            Err(e) => tracing::warn!(id = %id, error = %e, "inspect failed"),
        }
        self.reconcile([id]);
    }

    /// wool keys workers by uid, so two live containers announced with one uid
    /// (a Compose service with a fixed `wool.uid`, scaled) would hide each other.
    /// The container announced first keeps the uid; any other gets the uid derived
    /// from its container id, with one warning naming both.
    fn distinct_uid(
        &mut self,
        id: &str,
        mut record: WorkerRecord,
        announced: &BTreeMap<String, WorkerRecord>,
        batch: &mut Vec<Change>,
    ) -> WorkerRecord {
        let holder = announced
            .iter()
            .find(|(other, r)| other.as_str() != id && r.uid == record.uid);
        if let Some((_, held)) = holder {
            if let Some(derived) = labels::uid_from_container_id(id) {
                if self.duplicates.insert(id.to_owned()) {
                    batch.push(Change::Warning(format!(
                        "containers {} and {} both carry wool.uid={}; {} is announced as {derived} \
                         (from its container id). Give each replica its own uid, or leave \
                         wool.uid unset so each gets one from its container id",
                        held.container_name, record.container_name, record.uid,
                        record.container_name
                    )));
                }
                record.uid = derived;
            }
        }
        record
    }

    /// Emit, as one batch, the difference between what is announced and what
    /// should be for these containers (after any pending warnings).
    fn reconcile<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) -> usize {
        let Some(hub) = self.hub.upgrade() else {
            return 0;
        };
        let mut batch = std::mem::take(&mut self.warnings);
        let mut changes = 0;
        let mut announced = hub.announced.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            let desired = self
                .entries
                .get(id)
                .and_then(Entry::serving)
                .map(|r| self.distinct_uid(id, r, &announced.workers, &mut batch));
            let change = match (announced.workers.get(id), desired) {
                (None, Some(r)) => {
                    announced.workers.insert(id.to_owned(), r.clone());
                    Change::Added(r, self.cause_ns)
                }
                (Some(_), None) => match announced.workers.remove(id) {
                    Some(r) => Change::Dropped(r, self.cause_ns),
                    None => continue,
                },
                (Some(old), Some(r)) if *old != r => {
                    announced.workers.insert(id.to_owned(), r.clone());
                    Change::Updated(r, self.cause_ns)
                }
                _ => continue,
            };
            batch.push(change);
            changes += 1;
        }
        announced.send(batch);
        changes
    }
}

/// Read the logs of containers that already run, all at once and for at most
/// `LIST_READY_BOUND`: id → (when its run started, what its ready line said).
/// Containers missing from the answer (the bound passed) are unknown.
async fn read_ready_all(
    engine: &Engine,
    ids: Vec<String>,
) -> HashMap<String, (i64, Option<Ready>)> {
    let mut out = HashMap::new();
    if ids.is_empty() {
        return out;
    }
    let mut reads = futures_util::stream::iter(ids)
        .map(|id| read_ready(engine.clone(), id))
        .buffer_unordered(LIST_READY_CONCURRENCY);
    let deadline = tokio::time::sleep(LIST_READY_BOUND);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            read = reads.next() => match read {
                Some((id, started_ns, ready)) => {
                    out.insert(id, (started_ns, ready));
                }
                None => break,
            },
            _ = &mut deadline => break,
        }
    }
    out
}

/// One container's current run: when it started, and its ready line if its
/// output already holds one (a previous run's line does not count).
async fn read_ready(engine: Engine, id: String) -> (String, i64, Option<Ready>) {
    let started_ns = match engine.inspect(&id).await {
        Ok(Some(c)) => c.started_at_ns.unwrap_or_default(),
        _ => 0,
    };
    let logs = engine.logs(&id, false, started_ns / 1_000_000_000, true);
    let ready = scan_ready(&id, logs, started_ns).await;
    (id, started_ns, ready)
}

/// Read timestamped output until a ready line stamped at or after `from_ns`.
async fn scan_ready(id: &str, mut logs: OutputStream, from_ns: i64) -> Option<Ready> {
    let mut partial = Vec::new();
    while let Some(Ok(chunk)) = logs.next().await {
        let Output::Stdout(bytes) = chunk else {
            continue;
        };
        partial.extend_from_slice(&bytes);
        while let Some(pos) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let (stamp, text) = line.trim_end().split_once(' ').unwrap_or(("", &line));
            let at_ns = rfc3339_nanos(stamp).unwrap_or_default();
            if at_ns < from_ns {
                continue;
            }
            if let Some(ready) = Ready::parse(id, at_ns, text) {
                return Some(ready);
            }
        }
        if partial.len() > MAX_LINE {
            partial.clear();
        }
    }
    None
}

/// Whether a `kill` with this signal stops the container (Docker reports numbers).
fn stops(signal: Option<&str>) -> bool {
    matches!(
        signal,
        None | Some("2" | "9" | "15" | "SIGINT" | "SIGKILL" | "SIGTERM" | "INT" | "KILL" | "TERM")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_signals_that_stop() {
        assert!(stops(Some("15")));
        assert!(stops(Some("9")));
        assert!(stops(None));
        assert!(!stops(Some("1")));
        assert!(!stops(Some("10")));
    }

    #[test]
    fn an_entry_serves_only_when_ready_running_and_healthy() {
        let record = WorkerRecord {
            uid: "u".into(),
            address: "a:1".into(),
            version: "0.15.7".into(),
            tags: vec![],
            extra: "{}".into(),
            secure: false,
            identity: None,
            options: None,
            container_id: "c".into(),
            container_name: "n".into(),
            network: "w".into(),
            pid: 0,
        };
        let mut e = Entry::default();
        e.record = Some(record);
        e.running = true;
        assert!(e.serving().is_none());
        e.learn(Ready {
            id: "c".into(),
            at_ns: 1,
            version: Some("0.15.8".into()),
            pid: Some(7),
        });
        let served = e.serving().unwrap();
        assert_eq!((served.version.as_str(), served.pid), ("0.15.8", 7));
        e.unhealthy = true;
        assert!(e.serving().is_none());
        e.unhealthy = false;
        e.running = false;
        assert!(e.serving().is_none());
    }

    #[test]
    fn a_ready_line_reports_version_and_pid() {
        let line = format!(
            "{}{{\"version\": \"0.15.7\", \"pid\": 12}}",
            worker::READY_PREFIX
        );
        let ready = Ready::parse("c", 5, &line).unwrap();
        assert_eq!(ready.version.as_deref(), Some("0.15.7"));
        assert_eq!(ready.pid, Some(12));
        assert!(Ready::parse("c", 5, "something else").is_none());
    }
}
