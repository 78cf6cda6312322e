//! The task behind a hub: the I/O loop that feeds its [`Tracker`]. It
//! performs what the connection's machine (`watch::step`) asks (list, open
//! the event streams, re-list, back off) and, while watching, hands the
//! tracker everything said about single containers: by the Engine, by the
//! tracker's own background work, by the registry, by the Swarm poller. It
//! decides nothing itself.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use super::hub::Hub;
use super::reconcile::Since;
use super::remote::{watch_swarm, AbortOnDrop};
use super::source::{Source, LOG};
use super::tracker::{Inbox, Tracker};
use super::watch::{self, Action, Conn, Input};
use crate::backoff::Policy;
use crate::engine::{now_nanos, ContainerEvent, ContainerInfo, EventStream};
use crate::error::Result;
use crate::ready::Ready;
use crate::registry::{Registry, Update};
use crate::scope::Scope;

/// The hub is gone: the loop ends.
struct Shutdown;

/// One thing heard while watching.
// One lives for one turn of the loop: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Heard {
    Shutdown,
    ResyncDue,
    /// A correction of the periodic re-list is due for judgement.
    Judge,
    Retry(String, u32),
    Reread(ContainerInfo, Option<Ready>),
    Remote(Vec<ContainerInfo>),
    Event(&'static str, Option<Result<ContainerEvent>>),
    Ready(Ready),
    Own(std::result::Result<Update, broadcast::error::RecvError>),
}

/// The loop's state: the tracker, and everything it waits on.
struct Driver<E: Source> {
    t: Tracker<E>,
    inbox: Inbox,
    /// Containers of this process's DockerWorkers, the moment they serve.
    own_ready: broadcast::Receiver<Update>,
    /// On a Swarm manager, the serving tasks of other nodes.
    remote: mpsc::Receiver<Vec<ContainerInfo>>,
    /// Let go when the first listing is out.
    first_listing: Option<oneshot::Sender<()>>,
    shutdown: oneshot::Receiver<()>,
    /// The container and network event streams, while watching. The end or
    /// failure of either is a gap.
    streams: Option<(EventStream, EventStream)>,
    /// The Swarm poller; aborted with this task.
    _remote: AbortOnDrop,
}

/// The task behind a hub, until the hub is dropped (`shutdown`).
pub(super) async fn run<E: Source>(
    engine: E,
    scope: Scope,
    hub: Weak<Hub>,
    shutdown: oneshot::Receiver<()>,
    registry: Registry,
    resync_every: Duration,
    backoff: Policy,
) {
    let mut d = Driver::new(engine, scope, hub, shutdown, registry, backoff);
    let (mut conn, mut action) = Conn::start(resync_every, backoff);
    loop {
        let Ok(input) = d.next_input(action, &conn).await else {
            return;
        };
        (conn, action) = watch::step(&conn, input, Instant::now());
    }
}

impl<E: Source> Driver<E> {
    fn new(
        engine: E,
        scope: Scope,
        hub: Weak<Hub>,
        shutdown: oneshot::Receiver<()>,
        registry: Registry,
        backoff: Policy,
    ) -> Self {
        let own_ready = registry.serving_updates();
        let (t, inbox) = Tracker::new(engine, scope, hub, registry, backoff);
        let (remote_tx, remote) = mpsc::channel(4);
        let (first_tx, first_rx) = oneshot::channel();
        let poller = watch_swarm(t.engine.clone(), t.scope.clone(), first_rx, remote_tx);
        Driver {
            t,
            inbox,
            own_ready,
            remote,
            first_listing: Some(first_tx),
            shutdown,
            streams: None,
            _remote: AbortOnDrop(tokio::spawn(poller)),
        }
    }

    /// Perform `action`, then wait for what the connection's machine hears next.
    async fn next_input(&mut self, action: Action, conn: &Conn) -> Result<Input, Shutdown> {
        if let Some(input) = self.perform(action, conn.backoff.failures()).await? {
            return Ok(input);
        }
        match conn.resync_at() {
            Some(resync_at) if self.streams.is_some() => self.watch(resync_at).await,
            // Nothing to wait for outside watching (the machine asks for
            // nothing new only there): treat it as a gap rather than hang.
            _ => Ok(Input::StreamEnded),
        }
    }

    /// Perform an action; those that end in an input give it at once.
    async fn perform(&mut self, action: Action, failures: u32) -> Result<Option<Input>, Shutdown> {
        Ok(match action {
            Action::List { fresh_clock } => Some(self.list(fresh_clock, failures).await),
            Action::Watch { since, .. } => {
                self.streams = Some(self.t.streams(since));
                None
            }
            Action::Resync => Some(Input::Resynced {
                ok: self.t.anti_entropy().await,
            }),
            Action::Continue => None,
            Action::Sleep { delay } => Some(self.sleep(delay).await?),
        })
    }

    /// List as after a gap. Where the event stream resumes: the Engine's time
    /// (it filters the replay by its own clock, which may differ from ours),
    /// read while the listing runs so the first batch does not wait for it,
    /// less a margin that covers the listing (see `watch`). Events replayed
    /// from inside the margin are applied in order after the listing: most
    /// change nothing it did not already show; a replayed stop of a run
    /// before a restart drops the new run until the replayed start and its
    /// ready line bring it back.
    async fn list(&mut self, fresh_clock: bool, failures: u32) -> Input {
        let before = now_nanos();
        let engine = self.t.engine.clone();
        let (engine_now, synced) =
            tokio::join!(engine.now_ns(fresh_clock), self.t.sync(Since::Gap));
        // The Swarm watcher starts once the first listing is out: its own
        // Engine reads must not slow the first batch.
        if let Some(tx) = self.first_listing.take() {
            let _ = tx.send(());
        }
        let engine_now = engine_now.unwrap_or_else(|e| {
            tracing::debug!(target: LOG, error = %e, "cannot read the Engine's clock; using ours");
            None
        });
        if let Err(e) = &synced {
            tracing::warn!(target: LOG, error = %e, failures, "docker list failed; retrying");
        }
        Input::Listed {
            ok: synced.is_ok(),
            engine_now,
            before,
        }
    }

    /// Close the streams and sleep out a backoff.
    async fn sleep(&mut self, delay: Duration) -> Result<Input, Shutdown> {
        self.streams = None;
        // The listing after the gap is the truth; what the last re-list
        // corrected is judged no more.
        self.t.suspects.clear();
        tokio::select! {
            _ = &mut self.shutdown => Err(Shutdown),
            _ = tokio::time::sleep(delay) => Ok(Input::Woke),
        }
    }

    /// Watching: everything about single containers is handled here, until
    /// something the connection's machine hears.
    async fn watch(&mut self, resync_at: Instant) -> Result<Input, Shutdown> {
        loop {
            let heard = self.hear(resync_at).await;
            if let Some(input) = self.handle(heard).await? {
                return Ok(input);
            }
        }
    }

    /// The next thing heard while watching.
    async fn hear(&mut self, resync_at: Instant) -> Heard {
        let judge = self.t.suspects.due();
        let Some((containers, networks)) = self.streams.as_mut() else {
            // Not watching (`next_input` watches only with streams): a gap.
            return Heard::Event("container", None);
        };
        tokio::select! {
            _ = &mut self.shutdown => Heard::Shutdown,
            _ = tokio::time::sleep_until(resync_at) => Heard::ResyncDue,
            _ = tokio::time::sleep_until(judge.unwrap_or_else(Instant::now)), if judge.is_some() => Heard::Judge,
            Some((id, attempt)) = self.inbox.retry.recv() => Heard::Retry(id, attempt),
            Some((c, ready)) = self.inbox.reread.recv() => Heard::Reread(c, ready),
            Some(remote) = self.remote.recv() => Heard::Remote(remote),
            event = containers.next() => Heard::Event("container", event),
            event = networks.next() => Heard::Event("network", event),
            Some(ready) = self.inbox.ready.recv() => Heard::Ready(ready),
            own = self.own_ready.recv() => Heard::Own(own),
        }
    }

    /// Hand what was heard to the tracker; what the connection's machine
    /// hears, if it was that.
    async fn handle(&mut self, heard: Heard) -> Result<Option<Input>, Shutdown> {
        let t = &mut self.t;
        match heard {
            Heard::Shutdown => return Err(Shutdown),
            Heard::ResyncDue => return Ok(Some(Input::ResyncDue)),
            Heard::Event(stream, event) => return Ok(t.on_stream(stream, event).await),
            Heard::Judge => t.judge_drift(),
            Heard::Retry(id, attempt) => t.refresh_attempt(&id, attempt).await,
            Heard::Reread(c, ready) => t.on_reread(c, ready),
            Heard::Remote(remote) => t.on_remote(remote),
            Heard::Ready(ready) => t.on_ready(ready),
            Heard::Own(own) => t.on_own(own),
        }
        Ok(None)
    }
}

/// The loop against a fake Engine, on tokio's paused clock. (What a
/// subscription receives across gaps and re-lists: `discovery::tests`.)
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::discovery::fake::Fake;
    use crate::discovery::tests::{next, scope, until, NEVER, PATIENCE};

    /// The loop of a hub whose end `drop`ping the sender stands for.
    fn spawn(
        fake: &Fake,
        hub: Weak<Hub>,
        every: Duration,
    ) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(run(
            fake.clone(),
            scope(),
            hub,
            rx,
            Registry::default(),
            every,
            crate::backoff::Policy::RECONNECT.exact(),
        ));
        (tx, task)
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_ends_when_its_hub_goes_while_it_backs_off() {
        let fake = Fake::new();
        fake.fail_listings(u32::MAX);
        let (hub_gone, task) = spawn(&fake, Weak::new(), NEVER);
        until(|| fake.listings().len() >= 3).await;
        drop(hub_gone);
        assert!(tokio::time::timeout(PATIENCE, task).await.is_ok());
        assert_eq!(fake.opened(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_ends_when_its_hub_goes_while_it_watches() {
        let fake = Fake::new();
        fake.run(1, Some("healthy"));
        let (hub_gone, task) = spawn(&fake, Weak::new(), NEVER);
        until(|| fake.open_streams() == 1).await;
        drop(hub_gone);
        assert!(tokio::time::timeout(PATIENCE, task).await.is_ok());
        assert_eq!(fake.open_streams(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn while_watching_it_hands_events_and_ready_lines_to_the_tracker() {
        let fake = Fake::new();
        let (shutdown, _) = oneshot::channel();
        let hub = Arc::new(Hub::new(shutdown));
        let (_hub_gone, _task) = spawn(&fake, Arc::downgrade(&hub), Duration::from_secs(30));
        let mut sub = Hub::subscribe(hub);
        until(|| fake.open_streams() == 1).await;
        fake.run(2, None);
        fake.event(2, "start", 1);
        fake.print_ready(2, 2);
        assert_eq!(next(&mut sub).await, ["+worker-2"]);
        // On its period, a re-list on the same streams.
        fake.remove(2);
        assert_eq!(next(&mut sub).await, ["-worker-2"]);
        assert_eq!(fake.listings().len(), 2);
        assert_eq!(fake.opened(), 1);
    }
}
