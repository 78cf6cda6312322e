//! Ready-line followers: a task per container that runs without a word from
//! its server yet, following its output until the ready line, which it sends
//! to the tracker.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::ready::{output_from, scan_ready};
use super::source::{Source, LOG};
use super::state::State;
use crate::engine::ContainerInfo;
use crate::ready::Ready;

/// How long a container's output is followed for its ready line.
pub(super) const READY_WATCH_MAX: Duration = Duration::from_secs(600);

/// A ready-line follower, and when the first one of this run began: a
/// follower whose log stream broke is replaced, within what is left of
/// `READY_WATCH_MAX`.
struct Watcher {
    handle: AbortHandle,
    began: Instant,
}

/// Whether `tend` may start a missing ready-line follower, and from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Follow {
    No,
    /// Only one that ended early (its log stream broke), within its budget;
    /// from the current run's start.
    Resume,
    /// From this stamp on (the Engine's clock, Unix nanoseconds): the
    /// earliest of the current run's output (`ready::output_from`).
    From(i64),
    /// From the current run's start, read by an inspect first.
    Run,
}

impl Follow {
    /// From the current run's start, as an inspect (`c`) describes it.
    pub(super) fn run_of(c: &ContainerInfo) -> Follow {
        match c.started_at_ns {
            Some(_) => Follow::From(output_from(c)),
            None => Follow::Run,
        }
    }
}

/// The followers of one tracker, aborted with it.
pub(super) struct Followers<E: Source> {
    engine: E,
    /// Where followers send the ready lines they read.
    tx: mpsc::UnboundedSender<Ready>,
    /// Of containers whose phase awaits a ready line.
    watchers: HashMap<String, Watcher>,
}

impl<E: Source> Followers<E> {
    pub(super) fn new(engine: E, tx: mpsc::UnboundedSender<Ready>) -> Self {
        Followers {
            engine,
            tx,
            watchers: HashMap::new(),
        }
    }

    /// Keep a container's ready-line watcher only while it runs without a word
    /// from its server (`state`; `None`: forgotten). After a listing or an
    /// inspect (`follow`), start one where it is missing: a watcher whose log
    /// stream broke (e.g. with the Engine connection) finished without an
    /// answer. The periodic re-list only resumes such a watcher within what is
    /// left of its run's `READY_WATCH_MAX` (a container that never prints a
    /// ready line is not followed for ever). Events start none (a new
    /// container's start event starts its own, earlier: `start`).
    pub(super) fn tend(&mut self, id: &str, state: Option<&State>, follow: Follow) {
        let Some(state) = state else {
            self.stop(id);
            return;
        };
        if !state.phase.awaits_ready() {
            self.stop(id);
            return;
        }
        if follow == Follow::No || state.record.is_none() || self.watching(id) {
            return;
        }
        let now = Instant::now();
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
            Follow::From(from_ns) => Some((from_ns, from_ns)),
            _ => None,
        };
        let handle = self.spawn(id, window, budget);
        self.set(id, handle, began);
    }

    /// Follow a new container from its start event on, for `READY_WATCH_MAX`;
    /// `window` as for `spawn`.
    pub(super) fn start(&mut self, id: &str, window: (i64, i64)) {
        let handle = self.spawn(id, Some(window), READY_WATCH_MAX);
        self.set(id, handle, Instant::now());
    }

    fn watching(&self, id: &str) -> bool {
        self.watchers
            .get(id)
            .is_some_and(|w| !w.handle.is_finished())
    }

    /// Abort a watcher (dropping its handle would not).
    fn stop(&mut self, id: &str) {
        if let Some(w) = self.watchers.remove(id) {
            w.handle.abort();
        }
    }

    /// Keep a new follower (`began`: when this run's first one began),
    /// aborting the one it replaces.
    fn set(&mut self, id: &str, handle: AbortHandle, began: Instant) {
        if let Some(old) = self
            .watchers
            .insert(id.to_owned(), Watcher { handle, began })
        {
            old.handle.abort();
        }
    }

    /// Follow a container's output from `since_ns` (the Engine's clock, Unix
    /// nanoseconds) until its worker prints a ready line stamped at or after
    /// `from_ns`: `window` is (since_ns, from_ns), or `None` for its current
    /// run's start (read by an inspect first).
    fn spawn(&self, id: &str, window: Option<(i64, i64)>, budget: Duration) -> AbortHandle {
        let engine = self.engine.clone();
        let tx = self.tx.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let (since_ns, from_ns) = match window {
                Some(window) => window,
                None => match engine.inspect(&id).await {
                    Ok(Some(c)) => (output_from(&c), output_from(&c)),
                    _ => return,
                },
            };
            let logs = engine.logs(&id, true, since_ns.max(0) / 1_000_000_000);
            match tokio::time::timeout(budget, scan_ready(&id, logs, from_ns)).await {
                Ok(Some(ready)) => {
                    let _ = tx.send(ready);
                }
                Ok(None) => {}
                // A container that never prints the ready line (a custom image)
                // must not hold a log follower for its whole life.
                Err(_) => tracing::info!(target: LOG, id = %id,
                    "no ready line after 10 minutes; only a healthcheck can announce this container now"
                ),
            }
        })
        .abort_handle()
    }
}

impl<E: Source> Drop for Followers<E> {
    fn drop(&mut self) {
        for (_, w) in self.watchers.drain() {
            w.handle.abort();
        }
    }
}
