//! A scope's hub: the workers announced so far, and the subscriptions they
//! are fanned out to.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::{mpsc, oneshot};

use crate::labels::WorkerRecord;
use crate::scope::Change;

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
pub(super) struct Hub {
    pub(super) announced: StdMutex<Announced>,
    /// Dropped with the last subscription: the tracker ends.
    _shutdown: oneshot::Sender<()>,
}

#[derive(Default)]
pub(super) struct Announced {
    /// Every worker announced, by container id.
    pub(super) workers: BTreeMap<String, WorkerRecord>,
    subscribers: Vec<mpsc::UnboundedSender<Vec<Change>>>,
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
}

impl Announced {
    /// Send one batch to every subscription still open.
    pub(super) fn send(&mut self, batch: Vec<Change>) {
        if !batch.is_empty() {
            self.subscribers.retain(|tx| tx.send(batch.clone()).is_ok());
        }
    }
}
