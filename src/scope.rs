//! What a discovery follows (a scope) and what its subscribers receive (changes):
//! the contract between discovery, the feed that serves it to containers, and the
//! bindings that hand it to Python.

use std::collections::BTreeMap;

use crate::labels::{self, WorkerRecord};

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
    /// The owner filter (`labels::owner_admits`): managed containers of this
    /// owner token only, and every unmanaged one; `None`: no filter.
    pub owner: Option<String>,
}

impl Scope {
    /// Whether a container with these labels is in scope: it carries the
    /// selector and passes the owner filter. Containers, the Swarm's remote
    /// tasks and this process's own serving workers all pass through it.
    pub fn admits(&self, labels: &BTreeMap<String, String>) -> bool {
        labels::selects(&self.selector, labels)
            && labels::owner_admits(self.owner.as_deref(), labels)
    }
}
