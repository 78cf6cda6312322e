//! The Swarm driver: the tasks of other nodes, polled through a manager
//! (see `crate::swarm`) and sent to the tracker as containers.

use std::sync::OnceLock;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::source::{resolve_network, Source, LOG};
use crate::engine::{ContainerInfo, SwarmRole};
use crate::scope::Scope;
use crate::swarm;

/// Aborts a task when dropped.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

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
pub(super) async fn watch_swarm(
    engine: impl Source,
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
                tracing::warn!(target: LOG, host = %engine.host(),
                    "this Docker Engine is a Swarm worker node: discovery sees only this \
                     node's tasks. Run the pool on a manager node, or pass docker_host= \
                     a manager's Engine, to discover every task of the Swarm"
                );
            }
            return;
        }
        Ok(SwarmRole::Standalone) => return,
        Err(e) => {
            tracing::debug!(target: LOG, error = %e, "cannot tell whether the Engine is a Swarm manager");
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
        let events = events.get_or_insert_with(|| engine.swarm_events());
        if network.is_none() {
            network = match resolve_network(&engine, &scope).await {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::debug!(target: LOG, error = %e, "cannot resolve the scoped network for Swarm tasks");
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
                        tracing::warn!(target: LOG, error = %e, "reading the Swarm's tasks failed; retrying");
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
                tracing::warn!(target: LOG, tasks = poller.pending(),
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
                            *events = engine.swarm_events();
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
