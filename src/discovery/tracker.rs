//! The state behind a hub, and what it makes of each thing it hears: a
//! listing, an event, an inspect, a ready line, a Swarm poll. It reconciles
//! every container through its machine (`state`), decides by the pure steps
//! of `reconcile`, `remotes` and `publish`, and publishes the difference to
//! the hub. The loop that feeds it (`drive`) only performs I/O.

use std::collections::{HashMap, HashSet};
use std::sync::Weak;

use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::follow::{Follow, Followers};
use super::hub::Hub;
use super::publish::Publisher;
use super::ready::{read_ready_all, reread, START_SLACK_NS};
use super::reconcile::{self, Do, Relist, Since, Suspects};
use super::remotes::Remotes;
use super::source::{resolve_network, Source, LOG};
use super::state::{Book, Delta, Event, Health, Logs, Observation, Run, Seen, Served};
use super::watch::{self, Input};
use crate::backoff::Policy;
use crate::engine::{ContainerEvent, ContainerInfo, EventStream};
use crate::error::Result;
use crate::labels::{self, Skip};
use crate::ready::Ready;
use crate::registry::{Registry, Update};
use crate::scope::Scope;

/// The stream task's state.
pub(super) struct Tracker<E: Source> {
    pub(super) engine: E,
    /// This process's own containers, whose readiness it already knows.
    registry: Registry,
    pub(super) scope: Scope,
    hub: Weak<Hub>,
    /// The scoped network's exact name, as of the last listing.
    network: Option<String>,
    /// Every tracked container's state.
    book: Book,
    /// Ready-line followers, of containers whose phase awaits one.
    followers: Followers<E>,
    /// The warnings owed and given, and the uid rule.
    publisher: Publisher,
    /// Containers whose inspect failed, to inspect again: (id, attempt).
    retry_tx: mpsc::UnboundedSender<(String, u32)>,
    /// The delays of inspect retries.
    backoff: Policy,
    /// Runs read after a listing, for containers it could not settle in time.
    reread_tx: mpsc::UnboundedSender<(ContainerInfo, Option<Ready>)>,
    /// Engine time of the observation being handled (0: a listing).
    cause_ns: i64,
    /// Tasks on other Swarm nodes announced (see `swarm`).
    remotes: Remotes,
    /// Containers a periodic re-list corrected, until an event explains it.
    pub(super) suspects: Suspects,
}

/// Where a tracker's own background work reports back; its loop waits on it.
pub(super) struct Inbox {
    /// Ready lines its followers read.
    pub(super) ready: mpsc::UnboundedReceiver<Ready>,
    /// Inspects to try again.
    pub(super) retry: mpsc::UnboundedReceiver<(String, u32)>,
    /// Runs read in the background after a listing.
    pub(super) reread: mpsc::UnboundedReceiver<(ContainerInfo, Option<Ready>)>,
}

impl<E: Source> Tracker<E> {
    /// A tracker of `scope` that publishes to `hub`, knowing nothing yet.
    pub(super) fn new(
        engine: E,
        scope: Scope,
        hub: Weak<Hub>,
        registry: Registry,
        backoff: Policy,
    ) -> (Self, Inbox) {
        let (ready_tx, ready) = mpsc::unbounded_channel();
        let (retry_tx, retry) = mpsc::unbounded_channel();
        let (reread_tx, reread) = mpsc::unbounded_channel();
        let tracker = Tracker {
            followers: Followers::new(engine.clone(), ready_tx),
            engine,
            registry,
            scope,
            hub,
            network: None,
            book: Book::default(),
            publisher: Publisher::default(),
            retry_tx,
            backoff,
            reread_tx,
            cause_ns: 0,
            remotes: Remotes::default(),
            suspects: Suspects::default(),
        };
        (
            tracker,
            Inbox {
                ready,
                retry,
                reread,
            },
        )
    }

    /// The container and network event streams from `since`. Network events
    /// move addresses: leaving the scoped network drops a worker; joining one
    /// may change an unscoped worker's address.
    pub(super) fn streams(&self, since: i64) -> (EventStream, EventStream) {
        let terms = labels::filter_terms(&self.scope.selector);
        (
            self.engine.container_events(&terms, Some(since)),
            self.engine
                .network_events(self.network.as_deref(), Some(since)),
        )
    }

    /// Re-list on a period while the stream runs, and emit the exact difference.
    /// With a healthy stream there is none but what was on its way: events
    /// emitted while the listing ran arrive after it (a ready line explains
    /// nothing: the listing reads none of a container the stream told of). A
    /// correction no event about its container explains within `IN_FLIGHT` is
    /// drift, a missed event (or a bug), and is logged (`judge_drift`). `false`
    /// if the listing failed (a gap).
    pub(super) async fn anti_entropy(&mut self) -> bool {
        match self.sync(Since::Stream).await {
            Ok(corrected) => {
                self.suspects.corrected(corrected, Instant::now());
                true
            }
            Err(e) => {
                tracing::warn!(target: LOG, error = %e, "periodic re-list failed; reconnecting");
                false
            }
        }
    }

    /// Log the corrections no event came to explain in time.
    pub(super) fn judge_drift(&mut self) {
        let drifted = self.suspects.drifted(Instant::now());
        if !drifted.is_empty() {
            tracing::warn!(target: LOG, drift = drifted.len(),
                containers = %drifted.join(","),
                "periodic re-list corrected changes the event stream missed"
            );
        }
    }

    /// Handle one item of an event stream; a gap when the stream broke or ended.
    pub(super) async fn on_stream(
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
    /// corrected (`reconcile::corrected`).
    pub(super) async fn sync(&mut self, since: Since) -> Result<Vec<String>> {
        self.cause_ns = 0;
        let list = self.list().await?;
        let relist = Relist::new(&list, &self.book, since, |c| self.needs_logs(c));
        let learned = read_ready_all(&self.engine, relist.read_now()).await;
        let later = relist.read_later(&learned, &self.book);
        let (listing, follows) = relist.observe(&list, learned, |c, logs, started_ns| {
            self.seen(c, logs, started_ns)
        });
        let corrected = reconcile::corrected(&self.book, &listing);
        let mut deltas = self.book.relist(&listing);
        for (id, _) in &deltas {
            self.tend(id, follows.get(id).copied().unwrap_or(Follow::No));
        }
        reconcile::reannounce(&self.book, &mut deltas);
        self.publish(deltas);
        if !later.is_empty() {
            tokio::spawn(reread(self.engine.clone(), later, self.reread_tx.clone()));
        }
        Ok(corrected)
    }

    /// The running containers in scope, the scoped network resolved afresh
    /// meanwhile (the Engine filters by the selector; the owner filter is ours).
    async fn list(&mut self) -> Result<Vec<ContainerInfo>> {
        let terms = labels::filter_terms(&self.scope.selector);
        let (network, list) = tokio::join!(
            resolve_network(&self.engine, &self.scope),
            self.engine.running(&terms)
        );
        self.network = network?;
        let mut list = list?;
        list.retain(|c| self.scope.admits(&c.labels));
        Ok(list)
    }

    /// A run read in the background after a listing: applied as an inspect
    /// with its logs read (a run an event has ended since stays ended).
    pub(super) fn on_reread(&mut self, c: ContainerInfo, ready: Option<Ready>) {
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
        self.tend(&c.id, Follow::run_of(&c));
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
                self.publisher.malformed(&c.id, &e);
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
            self.publisher.forget(id);
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

    /// What the registry says of this process's own workers: they serve (a
    /// lagging receiver lost some: the log watchers, and for remote workers
    /// the polls, still report them), or a remote one is gone.
    pub(super) fn on_own(&mut self, own: std::result::Result<Update, broadcast::error::RecvError>) {
        match own {
            Ok(Update::Serving(ready)) => self.on_ready(ready),
            Ok(Update::RemoteGone(id)) => self.on_own_remote_gone(&id),
            Err(_) => {}
        }
    }

    pub(super) fn on_ready(&mut self, ready: Ready) {
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

    /// Perform what an event asks for (`reconcile::event_plan`).
    async fn on_event(&mut self, e: ContainerEvent) {
        let Some(obs) = Event::parse(&e.action, e.signal.as_deref(), e.time_nano) else {
            return;
        };
        self.cause_ns = e.time_nano;
        let id = e.id.as_str();
        self.suspects.explained(id);
        let tracked = self.book.contains(id);
        for step in reconcile::event_plan(&obs, tracked) {
            match step {
                // Container events are label-filtered by the Engine, so this
                // one matches. From the Engine's own time (never ours), a
                // second early: the ready line can be stamped just before
                // the start event.
                Do::Follow => self.followers.start(id, (e.time_nano - START_SLACK_NS, 0)),
                Do::Apply => self.apply(id, &obs),
                Do::Refresh => self.refresh(id).await,
            }
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
    pub(super) async fn refresh_attempt(&mut self, id: &str, attempt: u32) {
        let delta = match self.engine.inspect(id).await {
            Ok(Some(c)) if self.matches_selector(&c) => {
                let seen = self.seen(&c, Logs::Unread, c.started_at_ns);
                let delta = self.book.observe(id, &Observation::Seen(seen));
                let follow = Follow::run_of(&c);
                self.tend(id, follow);
                delta
            }
            Ok(_) => self.observe(id, &Observation::Gone),
            Err(e) => {
                self.retry_later(id, attempt, &e);
                Delta::None
            }
        };
        self.publish(vec![(id.to_owned(), delta)]);
    }

    /// After inspect number `attempt` of `id` failed: the next one, after a
    /// delay, or none (the periodic re-list, or the next gap's, settles it).
    fn retry_later(&self, id: &str, attempt: u32, e: &crate::error::Error) {
        let Some(delay) = watch::inspect_retry(self.backoff, attempt) else {
            tracing::warn!(target: LOG, id = %id, error = %e, "inspect failed");
            return;
        };
        tracing::debug!(target: LOG, id = %id, attempt, error = %e, "inspect failed; retrying");
        let (tx, id) = (self.retry_tx.clone(), id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send((id, attempt + 1));
        });
    }

    /// A Swarm worker of this process serves on another node: announce it at
    /// once (see `Remotes::own`).
    fn on_own_remote(&mut self, task: &ContainerInfo) {
        if !self.scope.admits(&task.labels) {
            return;
        }
        let Ok(Ok(record)) = labels::parse(task, self.network.as_deref()) else {
            return;
        };
        if let Some(delta) = self.remotes.own(&task.id, record, Instant::now()) {
            self.cause_ns = 0;
            self.publish(vec![(task.id.clone(), delta)]);
        }
    }

    /// This process's Swarm worker on another node is being stopped or is
    /// gone: drop it now, as an event would drop a container.
    fn on_own_remote_gone(&mut self, id: &str) {
        if let Some(delta) = self.remotes.own_gone(id) {
            self.cause_ns = 0;
            self.publish(vec![(id.to_owned(), delta)]);
        }
    }

    /// A poll's serving remote tasks: announce exactly the difference.
    pub(super) fn on_remote(&mut self, found: Vec<ContainerInfo>) {
        self.cause_ns = 0;
        let mut desired = HashMap::with_capacity(found.len());
        for c in found.iter().filter(|c| self.scope.admits(&c.labels)) {
            // A standby container is a local owner's, and known by its ready line.
            match labels::parse(c, self.network.as_deref()) {
                Ok(Ok(record)) if !record.standby => {
                    desired.insert(c.id.clone(), record);
                }
                _ => {}
            }
        }
        let found: HashSet<&str> = found.iter().map(|c| c.id.as_str()).collect();
        let registry = &self.registry;
        let serving = |id: &str| registry.serving(id).is_some();
        let deltas = self
            .remotes
            .polled(&found, desired, serving, Instant::now());
        self.publish(deltas);
    }

    /// Send these containers' deltas as one batch (after any pending
    /// warnings), each through the uid rule.
    fn publish(&mut self, deltas: Vec<(String, Delta)>) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let mut announced = hub.announced.lock().unwrap_or_else(|p| p.into_inner());
        let batch = self
            .publisher
            .batch(&mut announced.workers, deltas, self.cause_ns);
        announced.send(batch);
    }
}

/// The tracker against a fake Engine, each handler called as its loop
/// would, on tokio's paused clock.
#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;
    use crate::discovery::fake::{self, Fake};
    use crate::discovery::hub::Subscription;
    use crate::discovery::reconcile::IN_FLIGHT;
    use crate::discovery::tests::{next, quiet, scope};
    use crate::error::Error;

    /// A tracker of the fake's workers, publishing to a hub that the
    /// subscription reads.
    fn tracker(fake: &Fake) -> (Tracker<Fake>, Inbox, Subscription) {
        let (shutdown, _) = oneshot::channel();
        let hub = Arc::new(Hub::new(shutdown));
        let (t, inbox) = Tracker::new(
            fake.clone(),
            scope(),
            Arc::downgrade(&hub),
            Registry::default(),
            Policy::RECONNECT.exact(),
        );
        (t, inbox, Hub::subscribe(hub))
    }

    /// Container `n`'s event `action`, a second after the fake's epoch.
    fn event(n: u8, action: &str) -> Option<Result<ContainerEvent>> {
        Some(Ok(ContainerEvent {
            id: fake::id(n),
            action: action.to_owned(),
            time_nano: fake::T0_NS + 1_000_000_000,
            signal: None,
            network: None,
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_listing_announces_what_serves_as_one_batch() {
        let fake = Fake::new();
        fake.run(1, Some("healthy"));
        fake.run(2, None);
        fake.print_ready(2, 5);
        fake.run(3, None);
        let (mut t, mut inbox, mut sub) = tracker(&fake);
        let mut corrected = t.sync(Since::Gap).await.unwrap();
        corrected.sort();
        assert_eq!(corrected, [fake::id(1), fake::id(2), fake::id(3)]);
        assert_eq!(next(&mut sub).await, ["+worker-1", "+worker-2"]);
        // 3's follower hands over its ready line once it prints it.
        fake.print_ready(3, 9);
        t.on_ready(inbox.ready.recv().await.unwrap());
        assert_eq!(next(&mut sub).await, ["+worker-3"]);
        // A periodic re-list of the same containers corrects and says nothing.
        assert!(t.sync(Since::Stream).await.unwrap().is_empty());
        assert!(quiet(&mut sub, Duration::from_secs(1)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_event_is_applied_inspected_and_a_failed_inspect_retried() {
        let fake = Fake::new();
        let (mut t, mut inbox, mut sub) = tracker(&fake);
        t.sync(Since::Gap).await.unwrap();
        fake.run(5, None);
        fake.fail_inspects(5, 1);
        assert_eq!(t.on_stream("container", event(5, "start")).await, None);
        assert_eq!(fake.inspects(5), 1);
        let (id, attempt) = inbox.retry.recv().await.unwrap();
        assert_eq!((id.as_str(), attempt), (fake::id(5).as_str(), 1));
        t.refresh_attempt(&id, attempt).await;
        // The follower the start event began reads the ready line.
        fake.print_ready(5, 2);
        t.on_ready(inbox.ready.recv().await.unwrap());
        assert_eq!(next(&mut sub).await, ["+worker-5"]);
        // Its death drops it at once.
        t.on_stream("container", event(5, "die")).await;
        assert_eq!(next(&mut sub).await, ["-worker-5"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_or_ended_stream_is_a_gap() {
        let fake = Fake::new();
        let (mut t, _inbox, _sub) = tracker(&fake);
        assert_eq!(
            t.on_stream("container", None).await,
            Some(Input::StreamEnded)
        );
        let broke = Some(Err(Error::Internal("gone".into())));
        assert_eq!(
            t.on_stream("network", broke).await,
            Some(Input::StreamEnded)
        );
        // An action discovery does not care about is nothing.
        assert_eq!(t.on_stream("container", event(1, "exec_start")).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_periodic_relist_suspects_its_corrections_until_events_explain_them() {
        let fake = Fake::new();
        fake.run(1, Some("healthy"));
        let (mut t, _inbox, mut sub) = tracker(&fake);
        t.sync(Since::Gap).await.unwrap();
        assert_eq!(next(&mut sub).await, ["+worker-1"]);
        fake.remove(1);
        fake.run(2, Some("healthy"));
        assert!(t.anti_entropy().await);
        assert_eq!(next(&mut sub).await, ["+worker-2", "-worker-1"]);
        let due = t.suspects.due();
        assert!(due.is_some());
        // The events on their way explain both.
        t.on_stream("container", event(1, "destroy")).await;
        t.on_stream("container", event(2, "rename")).await;
        assert_eq!(t.suspects.due(), None);
        // A failed re-list is a gap.
        fake.fail_listings(1);
        assert!(!t.anti_entropy().await);
        tokio::time::advance(IN_FLIGHT).await;
        t.judge_drift();
        assert!(quiet(&mut sub, Duration::from_secs(1)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn own_remote_workers_come_from_the_registry_and_go_with_polls() {
        let fake = Fake::new();
        let (mut t, _inbox, mut sub) = tracker(&fake);
        t.sync(Since::Gap).await.unwrap();
        let task = fake_task(7);
        let ready = Ready {
            id: task.id.clone(),
            at_ns: 1,
            remote: Some(Box::new(crate::ready::Remote {
                manager: fake.host().to_owned(),
                container: task.clone(),
            })),
            ..Default::default()
        };
        t.on_own(Ok(Update::Serving(ready)));
        assert_eq!(next(&mut sub).await, ["+remote-7"]);
        // The registry does not say it serves: the next poll drops it.
        t.on_remote(vec![]);
        assert_eq!(next(&mut sub).await, ["-remote-7"]);
        // A poll finds it; its owner's stop drops it, and polls keep it dropped.
        t.on_remote(vec![task.clone()]);
        assert_eq!(next(&mut sub).await, ["+remote-7"]);
        t.on_own(Ok(Update::RemoteGone(task.id.clone())));
        assert_eq!(next(&mut sub).await, ["-remote-7"]);
        t.on_remote(vec![task]);
        assert!(quiet(&mut sub, Duration::from_secs(1)).await);
    }

    /// A task of another node, as the Swarm poller reports it.
    fn fake_task(n: u8) -> ContainerInfo {
        ContainerInfo {
            id: fake::id(n),
            name: format!("remote-{n}"),
            image: "img".to_owned(),
            labels: scope().selector,
            state: "running".to_owned(),
            health: None,
            networks: [(
                fake::NETWORK.to_owned(),
                crate::engine::Endpoint {
                    network_id: "net".to_owned(),
                    ip: format!("10.0.9.{n}"),
                },
            )]
            .into(),
            started_at_ns: None,
            finished_at_ns: None,
            published: Default::default(),
        }
    }
}
