//! A scope's hub: the workers announced so far, and the subscriptions they
//! are fanned out to.
//!
//! Each subscription has an inbox of the batches it has not taken yet. A
//! subscriber that stops reading (a Python iteration that stalls) must not make
//! the owner queue every change for it while containers churn: past a bound
//! proportional to the workers announced, its inbox is dropped and it catches
//! up with one difference between what it was last given and what is announced
//! then. So an inbox never holds more than a few times the announced set.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard, Weak};

use tokio::sync::{oneshot, Notify};

use crate::labels::WorkerRecord;
use crate::scope::Change;

/// Changes an inbox may hold beyond twice the announced workers (a catch-up
/// never needs more than the workers it had plus those announced now).
const INBOX_SLACK: usize = 256;

/// One subscriber's view: every known worker as `Added`, then deltas.
pub struct Subscription {
    inbox: Arc<Inbox>,
    hub: Arc<Hub>,
}

impl Subscription {
    /// Wait for the next batch of changes, then take the batches already queued
    /// behind it while fewer than `max` changes are taken. A batch is never split:
    /// the first one holds every worker known when the subscription began. Empty
    /// only if the hub is gone.
    pub async fn next_batch(&mut self, max: usize) -> Vec<Change> {
        loop {
            let notified = self.inbox.notify.notified();
            {
                // The hub's lock first, as the tracker takes them when it sends.
                let announced = lock(&self.hub.announced);
                let mut state = lock(&self.inbox.state);
                let batch = match state.overflowed {
                    true => state.catch_up(&announced.workers),
                    false => state.take(max),
                };
                if !batch.is_empty() {
                    return batch;
                }
            }
            notified.await;
        }
    }
}

/// A subscription's undelivered batches, and what it was given so far.
#[derive(Default)]
struct Inbox {
    state: StdMutex<InboxState>,
    notify: Notify,
}

#[derive(Default)]
struct InboxState {
    queue: VecDeque<Vec<Change>>,
    /// Changes in `queue`.
    queued: usize,
    /// The queue was dropped; the next take is a catch-up.
    overflowed: bool,
    /// Changes dropped with it (warnings included), for the catch-up's warning.
    dropped: usize,
    /// The workers the subscriber was given, by container id.
    given: BTreeMap<String, WorkerRecord>,
}

impl InboxState {
    fn push(&mut self, batch: &[Change], announced: usize) {
        if self.overflowed {
            self.dropped += batch.len();
            return;
        }
        if self.queued + batch.len() > 2 * announced + INBOX_SLACK {
            self.dropped += self.queued + batch.len();
            self.queue.clear();
            self.queued = 0;
            self.overflowed = true;
            return;
        }
        self.queued += batch.len();
        self.queue.push_back(batch.to_vec());
    }

    /// The next batch and those behind it, up to `max` changes (a batch whole).
    fn take(&mut self, max: usize) -> Vec<Change> {
        let mut out = Vec::new();
        while let Some(batch) = self.queue.front() {
            if !out.is_empty() && out.len() + batch.len() > max {
                break;
            }
            let batch = self.queue.pop_front().unwrap_or_default();
            self.queued -= batch.len();
            out.extend(batch);
        }
        for change in &out {
            apply(&mut self.given, change);
        }
        out
    }

    /// The difference from what was given to what is announced: drops first (a
    /// uid may move between containers), then updates, then additions.
    fn catch_up(&mut self, announced: &BTreeMap<String, WorkerRecord>) -> Vec<Change> {
        let mut dropped = Vec::new();
        let mut updated = Vec::new();
        let mut added = Vec::new();
        for (id, old) in &self.given {
            match announced.get(id) {
                None => dropped.push(Change::Dropped(old.clone(), 0)),
                Some(new) if new.uid != old.uid => {
                    dropped.push(Change::Dropped(old.clone(), 0));
                    added.push(Change::Added(new.clone(), 0));
                }
                Some(new) if new != old => updated.push(Change::Updated(new.clone(), 0)),
                Some(_) => {}
            }
        }
        for (id, new) in announced {
            if !self.given.contains_key(id) {
                added.push(Change::Added(new.clone(), 0));
            }
        }
        let mut out = vec![Change::Warning(format!(
            "this subscriber fell {} changes behind; it was given the difference \
             to the current workers instead",
            self.dropped
        ))];
        out.extend(dropped);
        out.extend(updated);
        out.extend(added);
        self.given = announced.clone();
        self.overflowed = false;
        self.dropped = 0;
        out
    }
}

/// `change` applied to a set of workers by container id.
fn apply(workers: &mut BTreeMap<String, WorkerRecord>, change: &Change) {
    match change {
        Change::Added(r, _) | Change::Updated(r, _) => {
            workers.insert(r.container_id.clone(), r.clone());
        }
        Change::Dropped(r, _) => {
            workers.remove(&r.container_id);
        }
        Change::Warning(_) => {}
    }
}

fn lock<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take discovery down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Shared between the stream task and subscriptions.
pub(super) struct Hub {
    pub(super) announced: StdMutex<Announced>,
    /// Dropped with the last subscription: the tracker ends.
    _shutdown: oneshot::Sender<()>,
}

#[derive(Default)]
pub(super) struct Announced {
    /// Every worker announced, by container id.
    pub(super) workers: BTreeMap<String, WorkerRecord>,
    subscribers: Vec<Weak<Inbox>>,
}

impl Hub {
    pub(super) fn new(shutdown: oneshot::Sender<()>) -> Hub {
        Hub {
            announced: Default::default(),
            _shutdown: shutdown,
        }
    }

    /// A new subscription: every worker announced so far, then what follows.
    pub(super) fn subscribe(hub: Arc<Hub>) -> Subscription {
        let inbox = Arc::new(Inbox::default());
        {
            // Under the lock the stream task sends its batches with: the snapshot and
            // the batches after it neither overlap nor leave a gap.
            let mut announced = lock(&hub.announced);
            let snapshot: Vec<Change> = announced
                .workers
                .values()
                .map(|r| Change::Added(r.clone(), 0))
                .collect();
            if !snapshot.is_empty() {
                lock(&inbox.state).push(&snapshot, announced.workers.len());
            }
            announced.subscribers.push(Arc::downgrade(&inbox));
        }
        Subscription { inbox, hub }
    }
}

impl Announced {
    /// Send one batch to every subscription still open.
    pub(super) fn send(&mut self, batch: Vec<Change>) {
        if batch.is_empty() {
            return;
        }
        let announced = self.workers.len();
        self.subscribers.retain(|inbox| {
            let Some(inbox) = inbox.upgrade() else {
                return false;
            };
            lock(&inbox.state).push(&batch, announced);
            inbox.notify.notify_one();
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, uid: &str) -> WorkerRecord {
        WorkerRecord::for_test(uid, &format!("{id}:1"), id, id)
    }

    /// A subscriber that does not read while containers churn holds at most a
    /// bound proportional to the announced workers, and then catches up with
    /// exactly the current set.
    #[test]
    fn a_stalled_subscriber_is_bounded_and_catches_up_exactly() {
        let mut state = InboxState::default();
        state.push(&[Change::Added(record("a", "u1"), 0)], 1);
        assert_eq!(state.take(100).len(), 1);
        let mut announced = BTreeMap::from([("a".to_owned(), record("a", "u1"))]);
        for i in 0..100_000 {
            let id = format!("c{}", i % 50);
            let batch = if i % 2 == 0 {
                announced.insert(id.clone(), record(&id, &id));
                vec![Change::Added(record(&id, &id), 0)]
            } else {
                announced.remove(&id);
                vec![Change::Dropped(record(&id, &id), 0)]
            };
            state.push(&batch, announced.len());
            assert!(state.queued <= 2 * announced.len() + INBOX_SLACK);
        }
        // "a" moved to another uid, "b" is new, the churned ones are as left.
        announced.insert("a".into(), record("a", "u2"));
        announced.insert("b".into(), record("b", "u3"));
        state.push(&[Change::Updated(record("a", "u2"), 0)], announced.len());
        let changes = state.catch_up(&announced);
        assert!(matches!(&changes[0], Change::Warning(w) if w.contains("fell")));
        let position = |wanted: &dyn Fn(&Change) -> bool| changes.iter().position(wanted);
        let drop_a = position(&|c| matches!(c, Change::Dropped(r, _) if r.uid == "u1"));
        let add_a = position(&|c| matches!(c, Change::Added(r, _) if r.uid == "u2"));
        assert!(
            drop_a.is_some() && drop_a < add_a,
            "the old uid must go before the new one comes"
        );
        let mut view = BTreeMap::from([("a".to_owned(), record("a", "u1"))]);
        for change in &changes {
            apply(&mut view, change);
        }
        assert_eq!(view, announced);
        assert!(!state.overflowed && state.queue.is_empty());
    }
}
