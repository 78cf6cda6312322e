//! The task behind a hub: it lists a scope's containers, follows the
//! Engine's events, reconciles every container through its machine
//! (`state`), and publishes the difference to the hub. Its connection to the
//! Engine (list, watch, re-list, back off) is the machine of `watch`; this
//! driver only performs what that machine asks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::follow::{Follow, Followers};
use super::hub::Hub;
use super::ready::{read_ready_all, reread};
use super::remote::{watch_swarm, AbortOnDrop};
use super::source::{resolve_network, Source, LOG};
use super::state::{
    self, Book, Delta, Event, Health, Logs, Observation, Phase, Run, Seen, Served, State,
};
use super::watch::{self, Action, Conn, Input};
use crate::backoff::Policy;
use crate::engine::{now_nanos, ContainerEvent, ContainerInfo};
use crate::error::Result;
use crate::labels::{self, Skip, WorkerRecord};
use crate::ready::Ready;
use crate::registry::{Registry, Update};
use crate::scope::{Change, Scope};

/// The stream task's state.
pub(super) struct Tracker<E: Source> {
    engine: E,
    /// This process's own containers, whose readiness it already knows.
    registry: Registry,
    scope: Scope,
    hub: Weak<Hub>,
    /// The scoped network's exact name, as of the last listing.
    network: Option<String>,
    /// Every tracked container's state.
    book: Book,
    /// Ready-line followers, of containers whose phase awaits one.
    followers: Followers<E>,
    warned: HashSet<String>,
    /// Warnings raised while absorbing, sent ahead of the next batch.
    warnings: Vec<Change>,
    /// Containers already warned about for sharing another's uid.
    duplicates: HashSet<String>,
    /// Containers whose inspect failed, to inspect again: (id, attempt).
    retry_tx: mpsc::UnboundedSender<(String, u32)>,
    /// The delays of inspect retries and reconnects.
    backoff: Policy,
    /// Runs read after a listing, for containers it could not settle in time.
    reread_tx: mpsc::UnboundedSender<(ContainerInfo, Option<Ready>)>,
    /// Engine time of the observation being handled (0: a listing).
    cause_ns: i64,
    /// Tasks on other Swarm nodes announced, by container id (see `swarm`).
    remote: HashMap<String, WorkerRecord>,
    /// This process's Swarm workers on other nodes announced from the
    /// registry, and when, until a poll confirms them.
    own_remote: HashMap<String, tokio::time::Instant>,
    /// This process's Swarm workers on other nodes being stopped, until polls
    /// no longer find them.
    withdrawn: HashSet<String>,
    /// Containers a periodic re-list corrected, until when an event about
    /// them may still explain it (see `anti_entropy`).
    suspects: HashMap<String, tokio::time::Instant>,
}

/// How long after a periodic re-list an event about a container it corrected
/// still counts as the explanation (it was on its way while the listing ran).
const IN_FLIGHT: Duration = Duration::from_secs(2);
/// How long this process's own Swarm worker on another node stays announced
/// without a poll that finds it serving (the probe takes well under a second
/// where the pool can reach it at all).
const OWN_REMOTE_GRACE: Duration = Duration::from_secs(10);

/// The task behind a hub, until the hub is dropped (`shutdown`).
pub(super) async fn run<E: Source>(
    engine: E,
    scope: Scope,
    hub: Weak<Hub>,
    mut shutdown: oneshot::Receiver<()>,
    registry: Registry,
    resync_every: Duration,
    backoff: Policy,
) {
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (retry_tx, mut retry_rx) = mpsc::unbounded_channel();
    let (reread_tx, mut reread_rx) = mpsc::unbounded_channel();
    // Containers of this process's DockerWorkers, the moment they serve.
    let mut own_ready = registry.serving_updates();
    let mut t = Tracker {
        followers: Followers::new(engine.clone(), ready_tx),
        engine,
        registry,
        scope,
        hub,
        network: None,
        book: Book::default(),
        warned: HashSet::new(),
        warnings: Vec::new(),
        duplicates: HashSet::new(),
        retry_tx,
        backoff,
        reread_tx,
        cause_ns: 0,
        remote: HashMap::new(),
        own_remote: HashMap::new(),
        withdrawn: HashSet::new(),
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
    let (mut conn, mut action) = Conn::start(resync_every, backoff);
    // The container and network event streams, while watching. The end or
    // failure of either is a gap.
    let mut streams = None;
    loop {
        // Perform the action; those that end in an input give it at once.
        let input = match action {
            Action::List { fresh_clock } => {
                // Where the event stream resumes: the Engine's time (it filters
                // the replay by its own clock, which may differ from ours), read
                // while the listing runs so the first batch does not wait for
                // it, less a margin that covers the listing (see `watch`).
                // Events replayed from inside the margin are applied in order
                // after the listing: most change nothing it did not already
                // show; a replayed stop of a run before a restart drops the new
                // run until the replayed start and its ready line bring it back.
                let before = now_nanos();
                let engine = t.engine.clone();
                let (engine_now, synced) =
                    tokio::join!(engine.now_ns(fresh_clock), t.sync(Since::Gap));
                // The Swarm watcher starts once the first listing is out: its own
                // Engine reads must not slow the first batch.
                if let Some(tx) = first_listing.take() {
                    let _ = tx.send(());
                }
                let engine_now = engine_now.unwrap_or_else(|e| {
                    tracing::debug!(target: LOG, error = %e, "cannot read the Engine's clock; using ours");
                    None
                });
                if let Err(e) = &synced {
                    tracing::warn!(target: LOG, error = %e, failures = conn.backoff.failures(), "docker list failed; retrying");
                }
                Some(Input::Listed {
                    ok: synced.is_ok(),
                    engine_now,
                    before,
                })
            }
            Action::Watch { since, .. } => {
                let terms = labels::filter_terms(&t.scope.selector);
                // Network events move addresses: leaving the scoped network drops a
                // worker; joining one may change an unscoped worker's address.
                streams = Some((
                    t.engine.container_events(&terms, Some(since)),
                    t.engine.network_events(t.network.as_deref(), Some(since)),
                ));
                None
            }
            Action::Resync => Some(Input::Resynced {
                ok: t.anti_entropy().await,
            }),
            Action::Continue => None,
            Action::Sleep { delay } => {
                streams = None;
                // The listing after the gap is the truth; what the last
                // re-list corrected is judged no more.
                t.suspects.clear();
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(delay) => Some(Input::Woke),
                }
            }
        };
        let input = match (input, streams.as_mut(), conn.resync_at()) {
            (Some(input), _, _) => input,
            (None, Some((containers, networks)), Some(resync_at)) => {
                // Watching: everything about single containers is handled
                // here, until something the connection's machine hears.
                loop {
                    let judge = t.suspects.values().min().copied();
                    let heard = tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep_until(resync_at) => Some(Input::ResyncDue),
                        _ = tokio::time::sleep_until(judge.unwrap_or_else(tokio::time::Instant::now)),
                            if judge.is_some() => {
                            t.judge_drift();
                            None
                        }
                        Some((id, attempt)) = retry_rx.recv() => {
                            t.refresh_attempt(&id, attempt).await;
                            None
                        }
                        Some((c, ready)) = reread_rx.recv() => {
                            t.on_reread(c, ready);
                            None
                        }
                        Some(remote) = remote_rx.recv() => {
                            t.on_remote(remote);
                            None
                        }
                        event = containers.next() => t.on_stream("container", event).await,
                        event = networks.next() => t.on_stream("network", event).await,
                        Some(ready) = ready_rx.recv() => {
                            t.on_ready(ready);
                            None
                        }
                        own = own_ready.recv() => {
                            // A lagging receiver lost some: the log watchers
                            // (and for remote workers, the polls) still report them.
                            match own {
                                Ok(Update::Serving(ready)) => t.on_ready(ready),
                                Ok(Update::RemoteGone(id)) => t.on_own_remote_gone(&id),
                                Err(_) => {}
                            }
                            None
                        }
                    };
                    if let Some(input) = heard {
                        break input;
                    }
                }
            }
            // Nothing to wait for outside watching (the machine asks for
            // nothing new only there): treat it as a gap rather than hang.
            (None, _, _) => Input::StreamEnded,
        };
        (conn, action) = watch::step(&conn, input, tokio::time::Instant::now());
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

impl<E: Source> Tracker<E> {
    /// Re-list on a period while the stream runs, and emit the exact difference.
    /// With a healthy stream there is none but what was on its way: events
    /// emitted while the listing ran arrive after it (a ready line explains
    /// nothing: the listing reads none of a container the stream told of). A
    /// correction no event about its container explains within `IN_FLIGHT` is
    /// drift, a missed event (or a bug), and is logged (`judge_drift`). `false`
    /// if the listing failed (a gap).
    async fn anti_entropy(&mut self) -> bool {
        match self.sync(Since::Stream).await {
            Ok(corrected) => {
                let until = tokio::time::Instant::now() + IN_FLIGHT;
                for id in corrected {
                    self.suspects.insert(id, until);
                }
                true
            }
            Err(e) => {
                tracing::warn!(target: LOG, error = %e, "periodic re-list failed; reconnecting");
                false
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
            tracing::warn!(target: LOG, drift = drifted.len(),
                containers = %drifted.join(","),
                "periodic re-list corrected changes the event stream missed"
            );
        }
    }

    /// Handle one item of an event stream; a gap when the stream broke or ended.
    async fn on_stream(
        &mut self,
        stream: &'static str,
        item: Option<Result<ContainerEvent>>,
    ) -> Option<Input> {
        match item {
            Some(Ok(event)) => {
                self.on_event(event).await;
                None
            }
            Some(Err(e)) => {
                tracing::warn!(target: LOG, stream, error = %e, "docker event stream broke; reconnecting");
                Some(Input::StreamEnded)
            }
            None => {
                tracing::warn!(target: LOG, stream, "docker event stream ended; reconnecting");
                Some(Input::StreamEnded)
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
            self.engine.running(&terms)
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

    /// Keep a container's ready-line follower in line with its state (see
    /// `Followers::tend`); a forgotten one's warnings are forgotten too.
    fn tend(&mut self, id: &str, follow: Follow) {
        let state = self.book.get(id);
        if state.is_none() {
            self.warned.remove(id);
            self.duplicates.remove(id);
        }
        self.followers.tend(id, state, follow);
    }

    /// Step one container, then bring its watcher in line with its new state.
    fn observe(&mut self, id: &str, obs: &Observation) -> Delta {
        let delta = self.book.observe(id, obs);
        self.tend(id, Follow::No);
        delta
    }

    fn matches_selector(&self, c: &ContainerInfo) -> bool {
        self.scope.admits(&c.labels)
    }

    fn on_ready(&mut self, ready: Ready) {
        if let Some(remote) = &ready.remote {
            // Only discovery of the manager it runs under follows it.
            if remote.manager == self.engine.host() {
                self.on_own_remote(&remote.container);
            }
            return;
        }
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
                    self.followers.start(id, (e.time_nano - 1_000_000_000, 0));
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
                if let Some(delay) = watch::inspect_retry(self.backoff, attempt) {
                    tracing::debug!(target: LOG, id = %id, attempt, error = %e, "inspect failed; retrying");
                    let (tx, id) = (self.retry_tx.clone(), id.to_owned());
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = tx.send((id, attempt + 1));
                    });
                } else {
                    // The periodic re-list (or the next gap's) settles it.
                    tracing::warn!(target: LOG, id = %id, error = %e, "inspect failed");
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

    /// A Swarm worker of this process serves on another node: announce it at
    /// once, as a poll would once it probed it. Until a poll finds it
    /// serving (for `OWN_REMOTE_GRACE` at most), polls keep it.
    fn on_own_remote(&mut self, task: &ContainerInfo) {
        if !self.scope.admits(&task.labels) {
            return;
        }
        let Ok(Ok(record)) = labels::parse(task, self.network.as_deref()) else {
            return;
        };
        if self.remote.contains_key(&task.id) {
            return;
        }
        self.cause_ns = 0;
        self.own_remote
            .insert(task.id.clone(), tokio::time::Instant::now());
        self.remote.insert(task.id.clone(), record.clone());
        self.publish(vec![(task.id.clone(), Delta::Added(record))]);
    }

    /// This process's Swarm worker on another node is being stopped or is
    /// gone: drop it now, as an event would drop a container.
    fn on_own_remote_gone(&mut self, id: &str) {
        self.own_remote.remove(id);
        // Polls may still find its task running while it drains.
        self.withdrawn.insert(id.to_owned());
        if let Some(record) = self.remote.remove(id) {
            self.cause_ns = 0;
            self.publish(vec![(id.to_owned(), Delta::Dropped(record))]);
        }
    }

    /// A poll's serving remote tasks: announce exactly the difference.
    fn on_remote(&mut self, found: Vec<ContainerInfo>) {
        self.cause_ns = 0;
        let mut desired = HashMap::with_capacity(found.len());
        for c in found.iter().filter(|c| self.scope.admits(&c.labels)) {
            // A standby container is a local owner's, and known by its ready line.
            if let Ok(Ok(record)) = labels::parse(c, self.network.as_deref()) {
                if record.standby {
                    continue;
                }
                desired.insert(c.id.clone(), record);
            }
        }
        // This process's own workers being stopped stay dropped; polls that
        // no longer find them end that.
        self.withdrawn
            .retain(|id| found.iter().any(|c| &c.id == id));
        desired.retain(|id, _| !self.withdrawn.contains(id));
        // This process's own tasks, announced before a poll could confirm
        // them, stay until one does (or their grace ends).
        let now = tokio::time::Instant::now();
        self.own_remote
            .retain(|id, at| !desired.contains_key(id) && now - *at < OWN_REMOTE_GRACE);
        for id in self.own_remote.keys() {
            if let Some(record) = self.remote.get(id) {
                if self.registry.serving(id).is_some() {
                    desired.insert(id.clone(), record.clone());
                }
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
