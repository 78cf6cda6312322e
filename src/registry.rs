//! The containers this process owns: one record per container, from its create
//! to its removal. The feed admits connections only from containers recorded
//! here, and discovery in this process takes a recorded container's readiness
//! from here (the server's own word, already read) instead of reading its logs
//! again, so a pool's first view holds every worker it started.
//!
//! A `Registry` is a handle: clones share one record set. The bindings hold the
//! process's one and pass it to workers, discovery and the feed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, Semaphore};

use crate::ready::Ready;

/// Feed connections served at once for one container (a pool opens one per scope).
pub const FEED_SLOTS_PER_CONTAINER: usize = 16;
/// Serving announcements a slow follower may lag behind before it re-reads.
const UPDATES: usize = 256;

/// The containers this process owns; clones share them.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    owned: Mutex<HashMap<String, Owned>>,
    updates: broadcast::Sender<Update>,
}

/// What followers of the registry learn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// An owned container serves.
    Serving(Ready),
    /// An owned Swarm worker on another node is being stopped or is gone: no
    /// event of this Engine tells of it.
    RemoteGone(String),
}

/// One owned container.
struct Owned {
    /// Its feed connections, bounded.
    feed_slots: Arc<Semaphore>,
    /// What its ready line said, once it serves.
    ready: Option<Ready>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            inner: Arc::new(Inner {
                owned: Mutex::new(HashMap::new()),
                updates: broadcast::channel(UPDATES).0,
            }),
        }
    }
}

impl Registry {
    fn owned(&self) -> MutexGuard<'_, HashMap<String, Owned>> {
        // A panic elsewhere must not take every worker down with it.
        self.inner.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record container `id`, just created: from now on it may use the feed.
    pub fn admit(&self, id: &str) {
        self.owned().entry(id.to_owned()).or_insert_with(|| Owned {
            feed_slots: Arc::new(Semaphore::new(FEED_SLOTS_PER_CONTAINER)),
            ready: None,
        });
    }

    /// Container `ready.id` serves; followers learn it at once.
    pub fn mark_serving(&self, ready: Ready) {
        if let Some(owned) = self.owned().get_mut(&ready.id) {
            owned.ready = Some(ready.clone());
        } else {
            return;
        }
        let _ = self.inner.updates.send(Update::Serving(ready));
    }

    /// Container `id` is being stopped: no longer announced from here, though
    /// its draining routines still use the feed.
    pub fn stopping(&self, id: &str) {
        let was = self.owned().get_mut(id).and_then(|o| o.ready.take());
        self.withdraw(id, was);
    }

    /// Container `id` is gone: no longer served, nor announced from here.
    pub fn forget(&self, id: &str) {
        let was = self.owned().remove(id).and_then(|o| o.ready);
        self.withdraw(id, was);
    }

    /// Tell followers that a remote worker that served no longer does.
    fn withdraw(&self, id: &str, was: Option<Ready>) {
        if was.is_some_and(|r| r.remote.is_some()) {
            let _ = self.inner.updates.send(Update::RemoteGone(id.to_owned()));
        }
    }

    /// Whether owned container `id` serves, and what it reported.
    pub fn serving(&self, id: &str) -> Option<Ready> {
        self.owned().get(id).and_then(|o| o.ready.clone())
    }

    /// Every owned container that starts serving from now on, and every
    /// owned remote worker that stops.
    pub fn serving_updates(&self) -> broadcast::Receiver<Update> {
        self.inner.updates.subscribe()
    }

    /// The feed connection slots of owned container `id`; `None`: not ours.
    pub fn feed_slots(&self, id: &str) -> Option<Arc<Semaphore>> {
        self.owned().get(id).map(|o| o.feed_slots.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(id: &str) -> Ready {
        Ready {
            id: id.to_owned(),
            at_ns: 1,
            version: Some("0.15.0".to_owned()),
            pid: Some(7),
            published: None,
            remote: None,
        }
    }

    #[test]
    fn only_admitted_containers_are_served_or_announced() {
        let registry = Registry::default();
        let mut updates = registry.serving_updates();
        registry.mark_serving(ready("stranger"));
        assert!(registry.serving("stranger").is_none());
        assert!(registry.feed_slots("stranger").is_none());
        assert!(updates.try_recv().is_err(), "a stranger was announced");

        registry.admit("a");
        assert!(registry.feed_slots("a").is_some());
        assert!(
            registry.serving("a").is_none(),
            "serving before its ready line"
        );
        registry.mark_serving(ready("a"));
        assert_eq!(registry.serving("a"), Some(ready("a")));
        assert_eq!(updates.try_recv().ok(), Some(Update::Serving(ready("a"))));

        registry.stopping("a");
        assert!(registry.serving("a").is_none(), "announced while stopping");
        assert!(
            registry.feed_slots("a").is_some(),
            "a draining worker lost the feed"
        );

        let clone = registry.clone();
        clone.forget("a");
        assert!(
            registry.serving("a").is_none(),
            "clones share one record set"
        );
        assert!(registry.feed_slots("a").is_none());
    }
}
