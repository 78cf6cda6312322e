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
//!
//! The pieces: [`hub`] fans a scope's changes out to its subscriptions;
//! [`tracker`] is the task behind a hub, driven by the connection-level
//! machine of [`watch`] and stepping each container's machine of [`state`];
//! [`follow`] and [`ready`] read ready lines from containers' output;
//! [`remote`] follows the tasks of other Swarm nodes; [`source`] is what all
//! of them read from an Engine, a trait so that unit tests run on a fake.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::env::seconds_from_env;
use crate::error::Result;
use crate::labels::{self, WorkerRecord};
use crate::registry::Registry;
pub use crate::scope::{Change, Scope};

#[cfg(test)]
mod fake;
mod follow;
mod hub;
mod ready;
mod remote;
mod source;
mod state;
mod tracker;
mod watch;

pub use hub::Subscription;
pub use source::Source;

use source::resolve_network;

use hub::Hub;

type HubKey = (String, Scope);

/// Default period of the anti-entropy re-list (`WOOL_DOCKER_RESYNC_INTERVAL`).
const RESYNC_DEFAULT: Duration = Duration::from_secs(30);

/// The anti-entropy period: `WOOL_DOCKER_RESYNC_INTERVAL` seconds, else 30 s.
fn resync_interval() -> Duration {
    seconds_from_env("WOOL_DOCKER_RESYNC_INTERVAL", RESYNC_DEFAULT)
}

/// Subscribe to a scope; equal scopes on one Engine share one event stream.
pub fn subscribe<E: Source>(engine: &E, scope: Scope, registry: &Registry) -> Subscription {
    subscribe_every(engine, scope, registry, resync_interval())
}

/// `subscribe`, with a hub that re-lists every `resync_every` if it starts one.
fn subscribe_every<E: Source>(
    engine: &E,
    scope: Scope,
    registry: &Registry,
    resync_every: Duration,
) -> Subscription {
    // Static: the bindings and the feed subscribe without a shared handle, and
    // must still find the one hub of an Engine and scope.
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
            let hub = Arc::new(Hub::new(shutdown_tx));
            tokio::spawn(tracker::run(
                engine.clone(),
                scope,
                Arc::downgrade(&hub),
                shutdown_rx,
                registry.clone(),
                resync_every,
            ));
            hubs.insert(key, Arc::downgrade(&hub));
            hub
        }
    };
    drop(hubs);
    Hub::subscribe(hub)
}

/// One-shot listing with the subscriber's label and address rules (for
/// `wool-docker ps`): every running matching container with a record, and its
/// health, whether or not it serves yet.
pub async fn list(
    engine: &impl Source,
    scope: &Scope,
) -> Result<Vec<(WorkerRecord, Option<String>)>> {
    let network = resolve_network(engine, scope).await?;
    let containers = engine
        .running(&labels::filter_terms(&scope.selector))
        .await?;
    let mut out = Vec::new();
    for c in containers.iter().filter(|c| scope.admits(&c.labels)) {
        if let Ok(Ok(record)) = labels::parse(c, network.as_deref()) {
            out.push((record, c.health.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
