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
    SwarmRole,
};
use crate::env::seconds_from_env;
use crate::error::Result;
use crate::labels::{self, Skip, WorkerRecord};
use crate::ready::Ready;
use crate::registry::Registry;
pub use crate::scope::{Change, Scope};
use crate::swarm;

#[cfg(test)]
mod fake;
mod source;
mod state;
mod watch;

use state::{Book, Delta, Event, Health, Logs, Observation, Phase, Run, Seen, Served, State};

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
pub fn subscribe(engine: &Engine, scope: Scope, registry: &Registry) -> Subscription {
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
                registry.clone(),
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
    for c in containers.iter().filter(|c| scope.admits(&c.labels)) {
        if let Ok(Ok(record)) = labels::parse(c, network.as_deref()) {
            out.push((record, c.health.clone()));
        }
    }
    Ok(out)
}

/// The stream task's state.
struct Tracker {
    engine: Engine,
    /// This process's own containers, whose readiness it already knows.
    registry: Registry,
    scope: Scope,
    hub: Weak<Hub>,
    /// The scoped network's exact name, as of the last listing.
    network: Option<String>,
    /// Every tracked container's state.
    book: Book,
    /// Ready-line watchers, of containers whose phase awaits one.
    watchers: HashMap<String, Watcher>,
    warned: HashSet<String>,
    /// Warnings raised while absorbing, sent ahead of the next batch.
    warnings: Vec<Change>,
    /// Containers already warned about for sharing another's uid.
    duplicates: HashSet<String>,
    ready_tx: mpsc::UnboundedSender<Ready>,
    /// Containers whose inspect failed, to inspect again: (id, attempt).
    retry_tx: mpsc::UnboundedSender<(String, u32)>,
    /// Runs read after a listing, for containers it could not settle in time.
    reread_tx: mpsc::UnboundedSender<(ContainerInfo, Option<Ready>)>,
    /// Engine time of the observation being handled (0: a listing).
    cause_ns: i64,
    /// Tasks on other Swarm nodes announced, by container id (see `swarm`).
    remote: HashMap<String, WorkerRecord>,
    /// Containers a periodic re-list corrected, until when an event about
    /// them may still explain it (see `anti_entropy`).
    suspects: HashMap<String, tokio::time::Instant>,
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
/// How long after a periodic re-list an event about a container it corrected
/// still counts as the explanation (it was on its way while the listing ran).
const IN_FLIGHT: Duration = Duration::from_secs(2);

async fn run(
    engine: Engine,
    scope: Scope,
    hub: Weak<Hub>,
    mut shutdown: oneshot::Receiver<()>,
    registry: Registry,
) {
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (retry_tx, mut retry_rx) = mpsc::unbounded_channel();
    let (reread_tx, mut reread_rx) = mpsc::unbounded_channel();
    let resync_every = resync_interval();
    // Containers of this process's DockerWorkers, the moment they serve.
    let mut own_ready = registry.serving_updates();
    let mut t = Tracker {
        engine,
        registry,
        scope,
        hub,
        network: None,
        book: Book::default(),
        watchers: HashMap::new(),
        warned: HashSet::new(),
        warnings: Vec::new(),
        duplicates: HashSet::new(),
        ready_tx,
        retry_tx,
        reread_tx,
        cause_ns: 0,
        remote: HashMap::new(),
        suspects: HashMap::new(),
    };
    // On a Swarm manager, the tasks of other nodes; aborted with this task.
    let (remote_tx, mut remote_rx) = mpsc::channel(4);
    let (first_tx, first_rx) = oneshot::channel();
    let mut first_listing = Some(first_tx);
    let _remote = AbortOnDrop(tokio::spawn(watch_swarm(
        t.engine.clone(),
        t.scope.clone(),
        first_rx,
        remote_tx,
    )));
    let mut backoff = BACKOFF_START;
    // Listings so far: after the first, the Engine's clock is read again.
    let mut listings = 0u32;
    loop {
        // Where the event stream resumes: the Engine's time (it filters the replay
        // by its own clock, which may differ from ours), read while the listing
        // runs so the first batch does not wait for it, less a margin that covers
        // the listing. Events replayed from inside the margin are applied in
        // order after the listing: most change nothing it did not already
        // show; a replayed stop of a run before a restart drops the new run
        // until the replayed start and its ready line bring it back.
        let before = now_nanos();
        let engine = t.engine.clone();
        let (engine_now, synced) = tokio::join!(engine.now_ns(listings > 0), t.sync(Since::Gap));
        listings = listings.saturating_add(1);
        // The Swarm watcher starts once the first listing is out: its own
        // Engine reads must not slow the first batch.
        if let Some(tx) = first_listing.take() {
            let _ = tx.send(());
        }
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
                    let judge = t.suspects.values().min().copied();
                    let gap = tokio::select! {
                        _ = &mut shutdown => return,
                        _ = resync.tick() => t.anti_entropy().await,
                        _ = tokio::time::sleep_until(judge.unwrap_or_else(tokio::time::Instant::now)),
                            if judge.is_some() => {
                            t.judge_drift();
                            false
                        }
                        Some((id, attempt)) = retry_rx.recv() => {
                            t.refresh_attempt(&id, attempt).await;
                            false
                        }
                        Some((c, ready)) = reread_rx.recv() => {
                            t.on_reread(c, ready);
                            false
                        }
                        Some(remote) = remote_rx.recv() => {
                            t.on_remote(remote);
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
                        // The listing after the gap is the truth; what the
                        // last re-list corrected is judged no more.
                        t.suspects.clear();
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

/// What a listing follows: a gap (the first listing, or a broken stream),
/// after which nothing learned before counts as proof of serving; or a healthy
/// stream (the periodic re-list), whose events told of every restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Since {
    Gap,
    Stream,
}

/// A ready-line follower, and when the first one of this run began: a
/// follower whose log stream broke is replaced, within what is left of
/// `READY_WATCH_MAX`.
struct Watcher {
    handle: AbortHandle,
    began: tokio::time::Instant,
}

/// Whether `tend` may start a missing ready-line follower, and from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    No,
    /// Only one that ended early (its log stream broke), within its budget;
    /// from the current run's start.
    Resume,
    /// From this run start (the Engine's clock, Unix nanoseconds).
    From(i64),
    /// From the current run's start, read by an inspect first.
    Run,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long remote tasks may stay unreachable before the hub says why.
const UNREACHABLE_FOR: Duration = Duration::from_secs(10);

/// Follow the tasks of other Swarm nodes through a manager and send each poll's
/// serving ones (as containers). Returns at once on an Engine that is not a
/// manager; a worker node's is said once, with the fix.
async fn watch_swarm(
    engine: Engine,
    scope: Scope,
    first_listing: oneshot::Receiver<()>,
    tx: mpsc::Sender<Vec<ContainerInfo>>,
) {
    if first_listing.await.is_err() {
        return;
    }
    let node = match engine.swarm_role().await {
        Ok(SwarmRole::Manager { node_id }) => node_id,
        Ok(SwarmRole::Worker { .. }) => {
            static SAID: OnceLock<()> = OnceLock::new();
            if SAID.set(()).is_ok() {
                tracing::warn!(
                    host = %engine.host(),
                    "this Docker Engine is a Swarm worker node: discovery sees only this \
                     node's tasks. Run the pool on a manager node, or pass docker_host= \
                     a manager's Engine, to discover every task of the Swarm"
                );
            }
            return;
        }
        Ok(SwarmRole::Standalone) => return,
        Err(e) => {
            tracing::debug!(error = %e, "cannot tell whether the Engine is a Swarm manager");
            return;
        }
    };
    let every = swarm::interval();
    let mut poller = swarm::Poller::default();
    let mut network = None;
    let mut failing = false;
    let mut unreachable_since: Option<tokio::time::Instant> = None;
    let mut said_unreachable = false;
    let mut events: Option<crate::engine::EventStream> = None;
    loop {
        let events = events.get_or_insert_with(|| engine.swarm_events(None));
        if network.is_none() {
            network = match resolve_network(&engine, &scope).await {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot resolve the scoped network for Swarm tasks");
                    None
                }
            };
        }
        // The period counts from the poll's start: probes of unreachable
        // addresses (a task just killed) take their whole timeout.
        let next = tokio::time::Instant::now() + every;
        if let Some(net) = network.clone() {
            match poller
                .poll(&engine, &scope.selector, net.as_deref(), &node)
                .await
            {
                Ok(()) => {
                    failing = false;
                    if tx.send(poller.serving()).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "reading the Swarm's tasks failed; retrying");
                    }
                    failing = true;
                    network = None;
                }
            }
            if poller.pending() == 0 {
                unreachable_since = None;
            } else if unreachable_since
                .get_or_insert_with(tokio::time::Instant::now)
                .elapsed()
                >= UNREACHABLE_FOR
                && !said_unreachable
            {
                said_unreachable = true;
                tracing::warn!(
                    tasks = poller.pending(),
                    network = net.as_deref().unwrap_or("(none)"),
                    "Swarm tasks on other nodes do not accept connections from this process at \
                     their addresses; run the pool where it can reach them, in a container \
                     attached to their overlay network"
                );
            }
        }
        // Until the next poll (the period, or at once on a service or node
        // event), tasks that do not serve yet are probed on a short period.
        loop {
            let now = tokio::time::Instant::now();
            if now >= next {
                break;
            }
            let wait = if poller.pending() > 0 {
                swarm::PENDING_PROBE.min(next - now)
            } else {
                next - now
            };
            tokio::select! {
                event = events.next() => {
                    match event {
                        Some(Ok(_)) => poller.swarm_changed(),
                        // Ended or failed: reopened at the next poll, which
                        // comes after the period as without events.
                        _ => {
                            tokio::time::sleep_until(next).await;
                            *events = engine.swarm_events(None);
                        }
                    }
                    break;
                }
                _ = tokio::time::sleep(wait) => {
                    if poller.pending() > 0 && poller.probe_pending().await
                        && tx.send(poller.serving()).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    }
}

/// The anti-entropy period: `WOOL_DOCKER_RESYNC_INTERVAL` seconds, else 30 s.
fn resync_interval() -> Duration {
    seconds_from_env("WOOL_DOCKER_RESYNC_INTERVAL", RESYNC_DEFAULT)
}

impl Tracker {
    /// Re-list on a period while the stream runs, and emit the exact difference.
    /// With a healthy stream there is none but what was on its way: events
    /// emitted while the listing ran arrive after it (a ready line explains
    /// nothing: the listing reads none of a container the stream told of). A
    /// correction no event about its container explains within `IN_FLIGHT` is
    /// drift, a missed event (or a bug), and is logged (`judge_drift`). `true`
    /// if the listing failed (a gap).
    async fn anti_entropy(&mut self) -> bool {
        match self.sync(Since::Stream).await {
            Ok(corrected) => {
                let until = tokio::time::Instant::now() + IN_FLIGHT;
                for id in corrected {
                    self.suspects.insert(id, until);
                }
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "periodic re-list failed; reconnecting");
                true
            }
        }
    }

    /// Log the corrections no event came to explain in time.
    fn judge_drift(&mut self) {
        let now = tokio::time::Instant::now();
        let mut drifted: Vec<String> = Vec::new();
        self.suspects.retain(|id, until| {
            let expired = *until <= now;
            if expired {
                drifted.push(id.chars().take(12).collect());
            }
            !expired
        });
        if !drifted.is_empty() {
            drifted.sort();
            tracing::warn!(
                drift = drifted.len(),
                containers = %drifted.join(","),
                "periodic re-list corrected changes the event stream missed"
            );
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

    /// Re-list and reconcile every container: the truth after any gap. After a
    /// gap the readiness of every running container is read from its current
    /// run's output (after a healthy stream: only of containers the stream
    /// never told of), for all of them together in one bounded step, and the
    /// whole difference is one batch. What the step could not read, and runs an
    /// event said had ended that the listing shows running, are read in the
    /// background (`reread`). Returns the containers whose state the listing
    /// corrected (appeared, vanished or changed), except those whose only news
    /// is a ready line read first (the ready-line follower races it, not the
    /// event stream).
    async fn sync(&mut self, since: Since) -> Result<Vec<String>> {
        self.cause_ns = 0;
        let terms = labels::filter_terms(&self.scope.selector);
        let (network, list) = tokio::join!(
            resolve_network(&self.engine, &self.scope),
            self.engine.list(&terms, false)
        );
        self.network = network?;
        // The Engine filters by the selector; the owner filter is ours.
        let mut list = list?;
        list.retain(|c| self.scope.admits(&c.labels));
        // The periodic re-list reads only the containers whose start event it
        // missed: the followers already watch the others for ready lines, and
        // a restart comes with a start event. With a healthy stream that is
        // none, and the re-list is one list call.
        let untold: HashSet<&str> = list
            .iter()
            .filter(|c| !self.book.contains(&c.id))
            .map(|c| c.id.as_str())
            .collect();
        // Containers whose run this listing is the first word on.
        let fresh = |id: &str| since == Since::Gap || untold.contains(id);
        let wanted: Vec<String> = list
            .iter()
            .filter(|c| self.needs_logs(c))
            .map(|c| c.id.clone())
            .collect();
        let unknown: Vec<String> = wanted.iter().filter(|id| fresh(id)).cloned().collect();
        let mut learned = read_ready_all(&self.engine, unknown).await;
        // What could not be read in time (and, after a healthy stream, the runs
        // an event said had ended, to tell a later run) is read in the
        // background, and applied when it arrives.
        let ended = |id: &str| {
            self.book
                .get(id)
                .is_some_and(|s| s.phase.ended_ns().is_some())
        };
        let later: Vec<String> = wanted
            .into_iter()
            .filter(|id| !learned.contains_key(id) && (fresh(id) || ended(id)))
            .collect();
        let mut listing = Vec::with_capacity(list.len());
        let mut started = HashMap::with_capacity(list.len());
        for c in &list {
            // Logs not read in time (or not read at all) leave readiness as known.
            let (started_ns, logs) = match learned.remove(&c.id) {
                Some((started_ns, Some(ready))) => (started_ns, Logs::Ready(Served::from(&ready))),
                Some((started_ns, None)) => (started_ns, Logs::NoReadyLine),
                None => (0, Logs::Unread),
            };
            let run_started = Some(started_ns).filter(|ns| *ns > 0);
            listing.push((c.id.clone(), self.seen(c, logs, run_started)));
            let follow = match (fresh(&c.id), run_started) {
                (false, _) => Follow::Resume,
                (true, Some(ns)) => Follow::From(ns),
                (true, None) => Follow::Run,
            };
            started.insert(c.id.as_str(), follow);
        }
        let mut corrected = Vec::new();
        for (id, seen) in &listing {
            let known = self.book.get(id);
            let read_first = matches!(seen.logs, Logs::Ready(_))
                && known.is_some_and(|s| s.phase.awaits_ready());
            let changes = match known {
                None => seen.run != Run::Stopped,
                Some(s) => {
                    state::step(Some(s), &Observation::Seen(seen.clone()))
                        .0
                        .as_ref()
                        != Some(s)
                }
            };
            if changes && !read_first {
                corrected.push(id.clone());
            }
        }
        // Containers it no longer shows, but for those known to have stopped
        // (the listing shows running ones only).
        let listed: HashSet<&str> = listing.iter().map(|(id, _)| id.as_str()).collect();
        corrected.extend(
            self.book
                .iter()
                .filter(|(id, s)| {
                    !listed.contains(id.as_str()) && !matches!(s.phase, Phase::Stopped { .. })
                })
                .map(|(id, _)| id.clone()),
        );
        let mut deltas = self.book.relist(&listing);
        for (id, delta) in &mut deltas {
            self.tend(id, started.get(id.as_str()).copied().unwrap_or(Follow::No));
            // A listing's diff is exact: an unchanged serving container is
            // announced again, so a uid its duplicate's holder freed returns to
            // it (the publisher sends nothing when its record is the same).
            if *delta == Delta::None {
                if let Some(record) = self.book.get(id).and_then(State::announce) {
                    *delta = Delta::Updated(record);
                }
            }
        }
        self.publish(deltas);
        if !later.is_empty() {
            tokio::spawn(reread(self.engine.clone(), later, self.reread_tx.clone()));
        }
        Ok(corrected)
    }

    /// A run read in the background after a listing: applied as an inspect
    /// with its logs read (a run an event has ended since stays ended).
    fn on_reread(&mut self, c: ContainerInfo, ready: Option<Ready>) {
        if !self.book.contains(&c.id) || !self.matches_selector(&c) {
            return;
        }
        self.cause_ns = 0;
        let logs = match ready {
            Some(ready) => Logs::Ready(Served::from(&ready)),
            None => Logs::NoReadyLine,
        };
        let seen = self.seen(&c, logs, c.started_at_ns);
        let delta = self.book.observe(&c.id, &Observation::Seen(seen));
        self.tend(&c.id, c.started_at_ns.map_or(Follow::Run, Follow::From));
        self.publish(vec![(c.id, delta)]);
    }

    /// Whether a container listed after a gap must have its readiness read
    /// from its logs: it could be a worker, runs, and nothing else says that
    /// its current run serves. What it said before the gap proves nothing: it
    /// may have been restarted meanwhile, and the listing cannot tell (it has
    /// no `StartedAt`). A container an event said had stopped needs its run's
    /// `StartedAt` (read with its logs) to tell a new run from the ended one.
    fn needs_logs(&self, c: &ContainerInfo) -> bool {
        let ended = self
            .book
            .get(&c.id)
            .is_some_and(|s| s.phase.ended_ns().is_some());
        c.state == "running"
            && (ended
                || c.health.as_deref() != Some("healthy") && self.registry.serving(&c.id).is_none())
            && matches!(labels::parse(c, self.network.as_deref()), Ok(Ok(_)))
    }

    /// A listed or inspected container as an observation: its record (a
    /// malformed label is warned about once), run state, health, and what its
    /// logs said (`logs`), unless a `DockerWorker` of this process knows better.
    /// Callers pass only containers that match the selector.
    fn seen(&mut self, c: &ContainerInfo, logs: Logs, started_ns: Option<i64>) -> Seen {
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
        let logs = match (logs, self.registry.serving(&c.id)) {
            (Logs::Ready(served), _) => Logs::Ready(served),
            (_, Some(ready)) => Logs::Ready(Served::from(&ready)),
            (logs, None) => logs,
        };
        Seen {
            record,
            run: Run::of(&c.state),
            health: Health::of(c.health.as_deref()),
            logs,
            started_ns,
        }
    }

    /// Step one container, then bring its watcher in line with its new state.
    fn observe(&mut self, id: &str, obs: &Observation) -> Delta {
        let delta = self.book.observe(id, obs);
        self.tend(id, Follow::No);
        delta
    }

    /// Keep a container's ready-line watcher only while it runs without a word
    /// from its server. After a listing or an inspect (`follow`), start one
    /// where it is missing: a watcher whose log stream broke (e.g. with the
    /// Engine connection) finished without an answer. The periodic re-list
    /// only resumes such a watcher within what is left of its run's
    /// `READY_WATCH_MAX` (a container that never prints a ready line is not
    /// followed for ever). Events start none (a new container's start event
    /// starts its own, earlier).
    fn tend(&mut self, id: &str, follow: Follow) {
        let Some(state) = self.book.get(id) else {
            // Forgotten: so are its watcher and warnings.
            self.stop_watching(id);
            self.warned.remove(id);
            self.duplicates.remove(id);
            return;
        };
        if !state.phase.awaits_ready() {
            self.stop_watching(id);
            return;
        }
        if follow == Follow::No || state.record.is_none() || self.watching(id) {
            return;
        }
        let now = tokio::time::Instant::now();
        // A follower of this run that ended keeps its budget; one that used it
        // up stays ended.
        let began = match (follow, self.watchers.get(id)) {
            (Follow::Resume, Some(w)) => w.began,
            _ => now,
        };
        let Some(budget) = READY_WATCH_MAX.checked_sub(now - began) else {
            return;
        };
        let window = match follow {
            Follow::From(started_ns) => Some((started_ns, started_ns)),
            _ => None,
        };
        let handle = self.watch_ready(id, window, budget);
        self.set_watcher(id, handle, began);
    }

    fn watching(&self, id: &str) -> bool {
        self.watchers
            .get(id)
            .is_some_and(|w| !w.handle.is_finished())
    }

    /// Abort a watcher (dropping its handle would not).
    fn stop_watching(&mut self, id: &str) {
        if let Some(w) = self.watchers.remove(id) {
            w.handle.abort();
        }
    }

    /// Keep a new follower (`began`: when this run's first one began),
    /// aborting the one it replaces.
    fn set_watcher(&mut self, id: &str, handle: AbortHandle, began: tokio::time::Instant) {
        if let Some(old) = self
            .watchers
            .insert(id.to_owned(), Watcher { handle, began })
        {
            old.handle.abort();
        }
    }

    fn matches_selector(&self, c: &ContainerInfo) -> bool {
        self.scope.admits(&c.labels)
    }

    /// Follow a container's output from `since_ns` (the Engine's clock, Unix
    /// nanoseconds) until its worker prints a ready line stamped at or after
    /// `from_ns`: `window` is (since_ns, from_ns), or `None` for its current
    /// run's start (read by an inspect first).
    fn watch_ready(&self, id: &str, window: Option<(i64, i64)>, budget: Duration) -> AbortHandle {
        let engine = self.engine.clone();
        let tx = self.ready_tx.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let (since_ns, from_ns) = match window {
                Some(window) => window,
                None => match engine.inspect(&id).await {
                    Ok(Some(c)) => {
                        let started = c.started_at_ns.unwrap_or_default();
                        (started, started)
                    }
                    _ => return,
                },
            };
            let logs = engine.logs(&id, true, since_ns.max(0) / 1_000_000_000, true);
            match tokio::time::timeout(budget, scan_ready(&id, logs, from_ns)).await {
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
        if self.book.contains(&ready.id) {
            self.cause_ns = ready.at_ns;
            let delta = self.observe(&ready.id, &Observation::Ready(Served::from(&ready)));
            self.publish(vec![(ready.id, delta)]);
        }
    }

    async fn on_event(&mut self, e: ContainerEvent) {
        let Some(obs) = Event::parse(&e.action, e.signal.as_deref(), e.time_nano) else {
            return;
        };
        self.cause_ns = e.time_nano;
        let id = e.id.as_str();
        self.suspects.remove(id);
        let tracked = self.book.contains(id);
        match obs {
            Observation::Event(Event::Start) => {
                // A new container: follow its output while the inspect runs, not
                // after. Container events are label-filtered by the Engine, so
                // this one matches. From the Engine's own time (never ours), a
                // second early: the ready line can be stamped just before the
                // start event. (A restart's watcher follows from its StartedAt,
                // once `refresh` read it.)
                if !tracked {
                    let window = Some((e.time_nano - 1_000_000_000, 0));
                    let handle = self.watch_ready(id, window, READY_WATCH_MAX);
                    self.set_watcher(id, handle, tokio::time::Instant::now());
                }
                self.apply(id, &obs);
                self.refresh(id).await;
            }
            // Only containers we track: a new container's connect comes while it
            // is starting, when an inspect would wait for the start to finish; its
            // start event follows anyway.
            Observation::Event(Event::Moved) if tracked => self.refresh(id).await,
            Observation::Event(Event::Moved) => {}
            Observation::Event(Event::Health { .. }) => {
                if !tracked {
                    self.refresh(id).await;
                }
                self.apply(id, &obs);
            }
            _ => self.apply(id, &obs),
        }
    }

    /// Observe and announce at once.
    fn apply(&mut self, id: &str, obs: &Observation) {
        let delta = self.observe(id, obs);
        self.publish(vec![(id.to_owned(), delta)]);
    }

    /// Re-inspect one container after an event that may change what it advertises.
    async fn refresh(&mut self, id: &str) {
        self.refresh_attempt(id, 0).await;
    }

    /// Inspect, retried with backoff after a failure (`attempt` so far).
    async fn refresh_attempt(&mut self, id: &str, attempt: u32) {
        let delta = match self.engine.inspect(id).await {
            Ok(Some(c)) if self.matches_selector(&c) => {
                let seen = self.seen(&c, Logs::Unread, c.started_at_ns);
                let delta = self.book.observe(id, &Observation::Seen(seen));
                let follow = c.started_at_ns.map_or(Follow::Run, Follow::From);
                self.tend(id, follow);
                delta
            }
            Ok(_) => self.observe(id, &Observation::Gone),
            Err(e) => {
                if attempt < INSPECT_RETRIES {
                    tracing::debug!(id = %id, attempt, error = %e, "inspect failed; retrying");
                    let (tx, id) = (self.retry_tx.clone(), id.to_owned());
                    tokio::spawn(async move {
                        tokio::time::sleep(BACKOFF_START * 2u32.pow(attempt)).await;
                        let _ = tx.send((id, attempt + 1));
                    });
                } else {
                    // The periodic re-list (or the next gap's) settles it.
                    tracing::warn!(id = %id, error = %e, "inspect failed");
                }
                Delta::None
            }
        };
        self.publish(vec![(id.to_owned(), delta)]);
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

    /// A poll's serving remote tasks: announce exactly the difference.
    fn on_remote(&mut self, found: Vec<ContainerInfo>) {
        self.cause_ns = 0;
        let mut desired = HashMap::with_capacity(found.len());
        for c in found.iter().filter(|c| self.scope.admits(&c.labels)) {
            if let Ok(Ok(record)) = labels::parse(c, self.network.as_deref()) {
                desired.insert(c.id.clone(), record);
            }
        }
        let mut deltas = Vec::new();
        for (id, old) in &self.remote {
            if !desired.contains_key(id) {
                deltas.push((id.clone(), Delta::Dropped(old.clone())));
            }
        }
        for (id, record) in &desired {
            match self.remote.get(id) {
                Some(old) if old == record => {}
                Some(_) => deltas.push((id.clone(), Delta::Updated(record.clone()))),
                None => deltas.push((id.clone(), Delta::Added(record.clone()))),
            }
        }
        self.remote = desired;
        self.publish(deltas);
    }

    /// Send these containers' deltas as one batch (after any pending warnings),
    /// each through the uid rule; returns how many changes it held.
    fn publish(&mut self, deltas: Vec<(String, Delta)>) -> usize {
        let Some(hub) = self.hub.upgrade() else {
            return 0;
        };
        let mut batch = std::mem::take(&mut self.warnings);
        let mut changes = 0;
        let mut announced = hub.announced.lock().unwrap_or_else(|p| p.into_inner());
        for (id, delta) in deltas {
            let change = match delta {
                Delta::None => continue,
                Delta::Added(r) | Delta::Updated(r) => {
                    let r = self.distinct_uid(&id, r, &announced.workers, &mut batch);
                    match announced.workers.insert(id, r.clone()) {
                        None => Change::Added(r, self.cause_ns),
                        Some(old) if old != r => Change::Updated(r, self.cause_ns),
                        Some(_) => continue,
                    }
                }
                Delta::Dropped(_) => match announced.workers.remove(&id) {
                    Some(r) => Change::Dropped(r, self.cause_ns),
                    None => continue,
                },
            };
            batch.push(change);
            changes += 1;
        }
        announced.send(batch);
        changes
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for (_, w) in self.watchers.drain() {
            w.handle.abort();
        }
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

/// Read these containers' current runs (`read_run`), a few at a time, and send
/// each as it is read; containers gone meanwhile are left to their events.
async fn reread(
    engine: Engine,
    ids: Vec<String>,
    tx: mpsc::UnboundedSender<(ContainerInfo, Option<Ready>)>,
) {
    let mut reads = futures_util::stream::iter(ids)
        .map(|id| read_run(engine.clone(), id))
        .buffer_unordered(LIST_READY_CONCURRENCY);
    while let Some(read) = reads.next().await {
        if let Some(read) = read {
            if tx.send(read).is_err() {
                return; // the tracker is gone
            }
        }
    }
}

/// One container as an inspect describes it, and its current run's ready
/// line if its output already holds one.
async fn read_run(engine: Engine, id: String) -> Option<(ContainerInfo, Option<Ready>)> {
    let c = engine.inspect(&id).await.ok().flatten()?;
    let ready = ready_since(&engine, &id, c.started_at_ns.unwrap_or_default()).await;
    Some((c, ready))
}

/// The ready line a container's output holds, stamped at or after `started_ns`.
async fn ready_since(engine: &Engine, id: &str, started_ns: i64) -> Option<Ready> {
    let logs = engine.logs(id, false, started_ns / 1_000_000_000, true);
    scan_ready(id, logs, started_ns).await
}

/// One container's current run: when it started, and its ready line if its
/// output already holds one (a previous run's line does not count).
async fn read_ready(engine: Engine, id: String) -> (String, i64, Option<Ready>) {
    let started_ns = match engine.inspect(&id).await {
        Ok(Some(c)) => c.started_at_ns.unwrap_or_default(),
        _ => 0,
    };
    let ready = ready_since(&engine, &id, started_ns).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ready::READY_PREFIX;

    #[test]
    fn a_scope_admits_by_selector_and_owner() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let scope = |owner: Option<&str>| Scope {
            selector: labels(&[(labels::SELECTOR, "true")]),
            network: None,
            owner: owner.map(str::to_owned),
        };
        let managed = |owner: &str| {
            labels(&[
                (labels::SELECTOR, "true"),
                (labels::MANAGED, "true"),
                (labels::OWNER, owner),
            ])
        };
        // A Swarm task or a hand-run container: no `wool.docker.managed`.
        let task = labels(&[
            (labels::SELECTOR, "true"),
            ("com.docker.swarm.service.name", "w"),
        ]);
        let mine = scope(Some("0/m.b.1/1/1"));
        assert!(mine.admits(&task));
        assert!(mine.admits(&managed("0/m.b.1/1/1")));
        assert!(!mine.admits(&managed("0/m.b.1/2/1")));
        assert!(!mine.admits(&labels(&[("other", "x")])));
        assert!(scope(None).admits(&managed("0/m.b.1/2/1")));
        assert_ne!(mine, scope(None), "hubs are keyed by the owner too");
    }

    #[test]
    fn a_ready_line_reports_version_and_pid() {
        let line = format!("{}{{\"version\": \"0.15.7\", \"pid\": 12}}", READY_PREFIX);
        let ready = Ready::parse("c", 5, &line).unwrap();
        assert_eq!(ready.version.as_deref(), Some("0.15.7"));
        assert_eq!(ready.pid, Some(12));
        assert!(Ready::parse("c", 5, "something else").is_none());
    }
}
