//! Label discovery: initial list, event stream, cache, diff, reconnect.
//!
//! One task per (Engine, selector, network) owns the event stream and the cache and
//! fans changes out to every subscription. A container is announced once it serves:
//! its worker printed the ready line (read from its log stream) or its healthcheck
//! reports healthy. It is dropped as soon as it is being stopped, killed, dies, is
//! paused, turns unhealthy or leaves the scoped network. After any gap in the event
//! stream the task re-lists and emits exactly the difference, because the Engine
//! replays only a few events and none across a restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex as StdMutex, OnceLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::engine::{ContainerEvent, ContainerInfo, Engine, Output};
use crate::error::Result;
use crate::labels::{self, Skip, WorkerRecord};
use crate::worker::READY_PREFIX;

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
    rx: mpsc::UnboundedReceiver<Change>,
    _hub: Arc<Hub>,
}

impl Subscription {
    /// The next change; `None` only if the hub is gone.
    pub async fn next(&mut self) -> Option<Change> {
        self.rx.recv().await
    }

    /// Wait for the next change, then take every change already queued behind it
    /// (up to `max`): one hand-over for a burst such as the initial listing.
    /// Empty only if the hub is gone.
    pub async fn next_batch(&mut self, max: usize) -> Vec<Change> {
        let Some(first) = self.rx.recv().await else {
            return Vec::new();
        };
        let mut batch = vec![first];
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(change) => batch.push(change),
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
    subscribers: Vec<mpsc::UnboundedSender<Change>>,
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
        let mut announced = hub.announced.lock().unwrap_or_else(|p| p.into_inner());
        for record in announced.workers.values() {
            let _ = tx.send(Change::Added(record.clone(), 0));
        }
        announced.subscribers.push(tx);
    }
    Subscription { rx, _hub: hub }
}

/// One-shot listing with the subscriber's label and address rules (for
/// `wool-docker ps`): every running matching container with a record, and its
/// health, whether or not it serves yet.
pub async fn list(engine: &Engine, scope: &Scope) -> Result<Vec<(WorkerRecord, Option<String>)>> {
    let containers = engine
        .list(&labels::filter_terms(&scope.selector), false)
        .await?;
    let mut out = Vec::new();
    for c in containers {
        if let Ok(Ok(record)) = labels::parse(&c, scope.network.as_deref()) {
            out.push((record, c.health.clone()));
        }
    }
    Ok(out)
}

/// A container's readiness, learned from its output.
struct Ready {
    id: String,
    at_ns: i64,
    version: Option<String>,
    pid: Option<i64>,
}

#[derive(Default)]
struct Entry {
    record: Option<WorkerRecord>,
    ready: bool,
    running: bool,
    unhealthy: bool,
    watcher: Option<AbortHandle>,
}

impl Entry {
    fn serving(&self) -> Option<&WorkerRecord> {
        self.record
            .as_ref()
            .filter(|_| self.ready && self.running && !self.unhealthy)
    }
}

impl Entry {
    /// Abort the ready-line watcher, if any (dropping its handle would not).
    fn stop_watching(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
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
    entries: HashMap<String, Entry>,
    warned: HashSet<String>,
    ready_tx: mpsc::UnboundedSender<Ready>,
    /// Engine time of the observation being handled (0: a listing).
    cause_ns: i64,
}

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

async fn run(engine: Engine, scope: Scope, hub: Weak<Hub>, mut shutdown: oneshot::Receiver<()>) {
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let mut t = Tracker {
        engine,
        scope,
        hub,
        entries: HashMap::new(),
        warned: HashSet::new(),
        ready_tx,
        cause_ns: 0,
    };
    let mut backoff = BACKOFF_START;
    loop {
        // Take the time before listing so nothing falls between list and stream.
        let since = now_nanos();
        match t.sync().await {
            Ok(()) => {
                backoff = BACKOFF_START;
                let terms = labels::filter_terms(&t.scope.selector);
                let containers = t.engine.container_events(&terms, Some(since));
                // Network events move addresses: leaving the scoped network drops a
                // worker; joining one may change an unscoped worker's address.
                let networks = t
                    .engine
                    .network_events(t.scope.network.as_deref(), Some(since));
                let mut events = futures_util::stream::select(containers, networks);
                loop {
                    tokio::select! {
                        _ = &mut shutdown => return,
                        event = events.next() => match event {
                            Some(Ok(event)) => t.on_event(event).await,
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "docker event stream broke; reconnecting");
                                break;
                            }
                            None => {
                                tracing::warn!("docker event stream ended; reconnecting");
                                break;
                            }
                        },
                        Some(ready) = ready_rx.recv() => t.on_ready(ready),
                    }
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

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

impl Tracker {
    /// Re-list and reconcile every container: the truth after any gap.
    async fn sync(&mut self) -> Result<()> {
        self.cause_ns = 0;
        let list = self
            .engine
            .list(&labels::filter_terms(&self.scope.selector), false)
            .await?;
        let mut seen = HashSet::new();
        for c in list {
            seen.insert(c.id.clone());
            self.absorb(&c, 0);
        }
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.entries.remove(&id);
            self.reconcile(&id);
        }
        Ok(())
    }

    /// Take a container's current description into its entry, keeping what we
    /// learned about readiness.
    /// Callers pass only containers that match the selector (the Engine filters
    /// the listing; `refresh` checks).
    fn absorb(&mut self, c: &ContainerInfo, since_secs: i64) {
        let record = match labels::parse(c, self.scope.network.as_deref()) {
            Ok(Ok(r)) => Some(r),
            Ok(Err(Skip::NoAddress)) => None,
            Err(e) => {
                if self.warned.insert(c.id.clone()) {
                    self.broadcast(Change::Warning(format!(
                        "skipping {e}; fix the label (see the wool-docker label schema)"
                    )));
                }
                None
            }
        };
        let entry = self.entries.entry(c.id.clone()).or_default();
        let previous = entry.record.take();
        entry.record = record.map(|mut r| {
            // Keep what the ready line told us: it is the server's own word.
            if let Some(p) = &previous {
                if !p.version.is_empty() {
                    r.version = p.version.clone();
                }
                r.pid = p.pid;
            }
            r
        });
        entry.running = c.state == "running";
        entry.unhealthy = c.health.as_deref() == Some("unhealthy");
        if c.health.as_deref() == Some("healthy") {
            entry.ready = true;
        }
        // A watcher whose log stream broke (e.g. with the Engine connection) has
        // finished without an answer: start another.
        let watching = entry.watcher.as_ref().is_some_and(|w| !w.is_finished());
        let watch = entry.record.is_some() && entry.running && !entry.ready && !watching;
        if watch {
            let handle = self.watch_ready(&c.id, since_secs);
            if let Some(entry) = self.entries.get_mut(&c.id) {
                entry.watcher = Some(handle);
            }
        }
        self.reconcile(&c.id);
    }

    fn matches_selector(&self, c: &ContainerInfo) -> bool {
        self.scope.selector.iter().all(|(k, v)| {
            c.labels
                .get(k)
                .is_some_and(|have| v.is_empty() || have == v)
        })
    }

    /// Follow a container's output until its worker prints the ready line.
    fn watch_ready(&self, id: &str, since_secs: i64) -> AbortHandle {
        // Timestamps: the Engine's own time of the ready line, for latency reports.
        let mut logs = self.engine.logs(id, true, since_secs, true);
        let tx = self.ready_tx.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
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
                    if let Some(json) = text.strip_prefix(READY_PREFIX) {
                        let ready: serde_json::Value =
                            serde_json::from_str(json).unwrap_or_default();
                        let _ = tx.send(Ready {
                            id,
                            at_ns: rfc3339_nanos(stamp).unwrap_or_default(),
                            version: ready
                                .get("version")
                                .and_then(|v| v.as_str())
                                .map(str::to_owned),
                            pid: ready.get("pid").and_then(|v| v.as_i64()),
                        });
                        return;
                    }
                }
            }
        })
        .abort_handle()
    }

    fn on_ready(&mut self, ready: Ready) {
        self.cause_ns = ready.at_ns;
        if let Some(entry) = self.entries.get_mut(&ready.id) {
            entry.ready = true;
            entry.stop_watching();
            if let Some(r) = entry.record.as_mut() {
                if let Some(v) = ready.version.filter(|v| !v.is_empty()) {
                    r.version = v;
                }
                r.pid = ready.pid.unwrap_or(r.pid);
            }
            self.reconcile(&ready.id);
        }
    }

    async fn on_event(&mut self, e: ContainerEvent) {
        self.cause_ns = e.time_nano;
        let action = e.action.as_str();
        match action {
            "start" => {
                // A restart must print its ready line again; a first start (or a
                // start we already saw through a listing) keeps what we know.
                if let Some(entry) = self.entries.get_mut(&e.id) {
                    if !entry.running {
                        entry.ready = false;
                        entry.stop_watching();
                    }
                }
                // The ready line can be stamped just before the start event.
                let since = e.time_nano / 1_000_000_000 - 1;
                // Container events are label-filtered by the Engine, so this one
                // matches: follow its output while the inspect runs, not after.
                let entry = self.entries.entry(e.id.clone()).or_default();
                let watching = entry.watcher.as_ref().is_some_and(|w| !w.is_finished());
                if !entry.ready && !watching {
                    let handle = self.watch_ready(&e.id, since);
                    if let Some(entry) = self.entries.get_mut(&e.id) {
                        entry.watcher = Some(handle);
                    }
                }
                self.refresh(&e.id, since).await;
            }
            // Only containers we track: a new container's connect comes while it
            // is starting, when an inspect would wait for the start to finish; its
            // start event follows anyway.
            "connect" | "disconnect" | "rename" if self.entries.contains_key(&e.id) => {
                self.refresh(&e.id, 0).await;
            }
            "connect" | "disconnect" | "rename" => {}
            "pause" | "stop" | "die" | "oom" => self.set(&e.id, |entry| entry.running = false),
            "kill" if stops(e.signal.as_deref()) => self.set(&e.id, |entry| entry.running = false),
            "unpause" => self.set(&e.id, |entry| entry.running = true),
            "destroy" => {
                self.entries.remove(&e.id);
                self.reconcile(&e.id);
            }
            a if a.starts_with("health_status") => {
                let healthy = a.ends_with(" healthy") || a.ends_with(":healthy");
                if !self.entries.contains_key(&e.id) {
                    self.refresh(&e.id, 0).await;
                }
                self.set(&e.id, |entry| {
                    entry.unhealthy = !healthy;
                    if healthy {
                        entry.ready = true;
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
            self.reconcile(id);
        }
    }

    /// Re-inspect one container after an event that may change what it advertises.
    async fn refresh(&mut self, id: &str, since_secs: i64) {
        match self.engine.inspect(id).await {
            Ok(Some(c)) if self.matches_selector(&c) => self.absorb(&c, since_secs),
            Ok(_) => {
                self.entries.remove(id);
                self.reconcile(id);
            }
            // The next sync after reconnect will settle it.
            Err(e) => tracing::warn!(id = %id, error = %e, "inspect failed"),
        }
    }

    /// Emit the difference between what is announced and what should be.
    fn reconcile(&mut self, id: &str) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let desired = self.entries.get(id).and_then(Entry::serving).cloned();
        let mut announced = hub.announced.lock().unwrap_or_else(|p| p.into_inner());
        let change = match (announced.workers.get(id), desired) {
            (None, Some(r)) => {
                announced.workers.insert(id.to_owned(), r.clone());
                Change::Added(r, self.cause_ns)
            }
            (Some(_), None) => match announced.workers.remove(id) {
                Some(r) => Change::Dropped(r, self.cause_ns),
                None => return,
            },
            (Some(old), Some(r)) if *old != r => {
                announced.workers.insert(id.to_owned(), r.clone());
                Change::Updated(r, self.cause_ns)
            }
            _ => return,
        };
        announced
            .subscribers
            .retain(|tx| tx.send(change.clone()).is_ok());
    }

    fn broadcast(&self, change: Change) {
        if let Some(hub) = self.hub.upgrade() {
            let mut announced = hub.announced.lock().unwrap_or_else(|p| p.into_inner());
            announced
                .subscribers
                .retain(|tx| tx.send(change.clone()).is_ok());
        }
    }
}

/// `2026-11-29T16:45:01.123456789Z` → Unix nanoseconds (UTC only, as Docker
/// writes log timestamps).
fn rfc3339_nanos(stamp: &str) -> Option<i64> {
    let (date, time) = stamp.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let digits: String = frac.chars().take(9).collect();
    let nanos = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60 * 1_000_000_000 + ss * 1_000_000_000 + nanos)
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
    fn log_timestamps_parse_to_unix_nanos() {
        assert_eq!(rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_nanos("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(
            rfc3339_nanos("2026-11-29T16:45:01.123456789Z"),
            Some(1_795_970_701_123_456_789)
        );
        assert_eq!(
            rfc3339_nanos("2000-03-01T00:00:00Z"),
            Some(951_868_800_000_000_000)
        );
        assert_eq!(rfc3339_nanos("garbage"), None);
    }

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
        e.ready = true;
        assert!(e.serving().is_some());
        e.unhealthy = true;
        assert!(e.serving().is_none());
        e.unhealthy = false;
        e.running = false;
        assert!(e.serving().is_none());
    }
}
