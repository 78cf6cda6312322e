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
//! [`drive`] is the task behind a hub, an I/O loop driven by the
//! connection-level machine of [`watch`] that feeds a [`tracker`], which
//! steps each container's machine of [`state`] and decides by the pure steps
//! of [`reconcile`], [`remotes`] and [`publish`];
//! [`follow`] and [`ready`] read ready lines from containers' output;
//! [`remote`] follows the tasks of other Swarm nodes; [`source`] is what all
//! of them read from an Engine, a trait so that unit tests run on a fake.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::backoff::Policy;
use crate::env::seconds_from_env;
use crate::error::Result;
use crate::labels::{self, WorkerRecord};
use crate::registry::Registry;
pub use crate::scope::{Change, Scope};

mod drive;
#[cfg(test)]
mod fake;
mod follow;
mod hub;
mod publish;
mod ready;
mod reconcile;
mod remote;
mod remotes;
mod source;
mod state;
#[cfg(test)]
mod state_tests;
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
    subscribe_every(
        engine,
        scope,
        registry,
        resync_interval(),
        Policy::RECONNECT,
    )
}

/// `subscribe`, with a hub that re-lists every `resync_every` and backs off by
/// `backoff` if it starts one.
fn subscribe_every<E: Source>(
    engine: &E,
    scope: Scope,
    registry: &Registry,
    resync_every: Duration,
    backoff: Policy,
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
            tokio::spawn(drive::run(
                engine.clone(),
                scope,
                Arc::downgrade(&hub),
                shutdown_rx,
                registry.clone(),
                resync_every,
                backoff,
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
    let mut standby = Vec::new();
    for c in containers.iter().filter(|c| scope.admits(&c.labels)) {
        match labels::parse(c, network.as_deref()) {
            Ok(Ok(record)) if record.standby => standby.push((record, c.health.clone())),
            Ok(Ok(record)) => out.push((record, c.health.clone())),
            _ => {}
        }
    }
    // A standby container is a worker only once its ready line says which.
    let ids = standby
        .iter()
        .map(|(r, _)| r.container_id.clone())
        .collect();
    let read = ready::read_ready_all(engine, ids).await;
    for (record, health) in standby {
        let served = read
            .get(&record.container_id)
            .and_then(|(_, _, ready)| ready.as_ref())
            .map(state::Served::from);
        if let Some(record) = served.and_then(|s| state::as_served(&record, &s)) {
            out.push((record, health));
        }
    }
    // On a Swarm manager, the started tasks of other nodes too (whether this
    // process can reach them or not: `ps` on a manager's host cannot reach
    // an overlay). Without them, still what this node runs.
    if let Ok(crate::engine::SwarmRole::Manager { node_id }) = engine.swarm_role().await {
        let mut poller = crate::swarm::Poller::default();
        let polled = poller
            .poll(engine, &scope.selector, network.as_deref(), &node_id)
            .await;
        if let Err(e) = polled {
            tracing::warn!(target: source::LOG, error = %e, "cannot list the Swarm's tasks on other nodes");
        }
        for c in poller
            .candidates()
            .iter()
            .filter(|c| scope.admits(&c.labels))
        {
            if let Ok(Ok(record)) = labels::parse(c, network.as_deref()) {
                out.push((record, c.health.clone()));
            }
        }
    }
    Ok(out)
}

/// Discovery against a fake Engine, on tokio's paused clock: what a
/// subscription receives across a listing, a gap, a re-list, an ended
/// stream and failed inspects, in milliseconds and without a daemon. (The
/// helpers serve the tests of `tracker` and `drive` too.)
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::fake::{Fake, NETWORK};
    use super::{subscribe_every, Change, Scope, Subscription};
    use crate::backoff::Policy;
    use crate::labels;
    use crate::registry::Registry;

    /// Far longer than anything here takes (the clock is paused: free).
    pub(super) const PATIENCE: Duration = Duration::from_secs(120);
    /// The re-list period of most tests: longer than any of them.
    pub(super) const NEVER: Duration = Duration::from_secs(3600);

    pub(super) fn scope() -> Scope {
        Scope {
            selector: BTreeMap::from([(labels::SELECTOR.to_owned(), "true".to_owned())]),
            network: Some(NETWORK.to_owned()),
            owner: None,
        }
    }

    /// Exact delays: the tests assert them.
    const EXACT: Policy = Policy::RECONNECT.exact();

    fn start(fake: &Fake, resync_every: Duration) -> Subscription {
        subscribe_every(fake, scope(), &Registry::default(), resync_every, EXACT)
    }

    /// A batch as `+name` (added), `~name` (updated), `-name` (dropped), sorted.
    pub(super) fn said(batch: &[Change]) -> Vec<String> {
        let mut out: Vec<String> = batch
            .iter()
            .map(|c| match c {
                Change::Added(r, _) => format!("+{}", r.container_name),
                Change::Updated(r, _) => format!("~{}", r.container_name),
                Change::Dropped(r, _) => format!("-{}", r.container_name),
                Change::Warning(w) => format!("!{w}"),
            })
            .collect();
        out.sort();
        out
    }

    /// The next batch, as `said` puts it; empty if none comes in `PATIENCE`.
    pub(super) async fn next(sub: &mut Subscription) -> Vec<String> {
        match tokio::time::timeout(PATIENCE, sub.next_batch(1000)).await {
            Ok(batch) => said(&batch),
            Err(_) => Vec::new(),
        }
    }

    /// Whether no batch comes for `within`.
    pub(super) async fn quiet(sub: &mut Subscription, within: Duration) -> bool {
        tokio::time::timeout(within, sub.next_batch(1000))
            .await
            .is_err()
    }

    /// Wait until `cond` holds (the clock only moves while everything waits).
    pub(super) async fn until(mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !cond() {
            assert!(Instant::now() < deadline, "condition never held");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The gaps between the listings so far, in milliseconds.
    fn intervals(fake: &Fake) -> Vec<u64> {
        fake.listings()
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis() as u64)
            .collect()
    }

    /// A Swarm worker of this process on another node, under manager `manager`.
    fn own_remote(n: u8, manager: &str) -> crate::ready::Ready {
        let id = format!("{n:02x}").repeat(32);
        let container = crate::engine::ContainerInfo {
            id: id.clone(),
            name: format!("remote-{n}"),
            image: "img".to_owned(),
            labels: BTreeMap::from([
                (labels::SELECTOR.to_owned(), "true".to_owned()),
                (
                    labels::UID.to_owned(),
                    format!("00000000-0000-4000-8000-0000000000{n:02x}"),
                ),
            ]),
            state: "running".to_owned(),
            health: None,
            networks: BTreeMap::from([(
                NETWORK.to_owned(),
                crate::engine::Endpoint {
                    network_id: "net".to_owned(),
                    ip: format!("10.0.9.{n}"),
                },
            )]),
            started_at_ns: None,
            finished_at_ns: None,
            published: BTreeMap::new(),
        };
        crate::ready::Ready {
            id,
            at_ns: 1,
            remote: Some(Box::new(crate::ready::Remote {
                manager: manager.to_owned(),
                container,
            })),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn own_remote_workers_are_announced_at_once_and_dropped_when_gone() {
        let fake = Fake::new();
        let registry = Registry::default();
        let mut sub = subscribe_every(&fake, scope(), &registry, NEVER, EXACT);
        assert_eq!(next(&mut sub).await, Vec::<String>::new());
        for n in [1, 2] {
            registry.admit(&own_remote(n, "").id);
        }
        // Under another Engine's manager: not this discovery's to follow.
        registry.mark_serving(own_remote(2, "tcp://elsewhere:2375"));
        registry.mark_serving(own_remote(1, super::source::Source::host(&fake)));
        assert_eq!(next(&mut sub).await, ["+remote-1"]);
        // Stopping it (or its lifeline's end) drops it, as an event would.
        registry.stopping(&own_remote(1, "").id);
        assert_eq!(next(&mut sub).await, ["-remote-1"]);
        assert!(quiet(&mut sub, Duration::from_secs(5)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_batch_holds_every_serving_container() {
        let fake = Fake::new();
        fake.run(1, Some("healthy"));
        fake.run(2, None);
        fake.print_ready(2, 5);
        // Runs, but has not said that it serves.
        fake.run(3, None);
        let mut sub = start(&fake, NEVER);
        assert_eq!(next(&mut sub).await, ["+worker-1", "+worker-2"]);
        // Its ready line announces it.
        fake.print_ready(3, 9);
        assert_eq!(next(&mut sub).await, ["+worker-3"]);
        // A second subscription shares the hub: its first batch is the snapshot.
        let mut again = start(&fake, NEVER);
        assert_eq!(
            next(&mut again).await,
            ["+worker-1", "+worker-2", "+worker-3"]
        );
        assert_eq!(fake.listings().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_runs_output_counts_from_just_before_its_start_but_after_the_last_run() {
        let fake = Fake::new();
        // The Engine records `StartedAt` once the process runs: a worker that
        // prints at once is stamped before it (here in the second before,
        // which the Engine's `since` filters by).
        fake.run(1, None);
        fake.start_run(1, 6_100, None);
        fake.print_ready_ms(1, 5_900);
        // Restarted 200 ms after its last run ended; the new run is silent yet.
        fake.run(2, None);
        fake.print_ready_ms(2, 5_000);
        fake.start_run(2, 5_500, Some(5_300));
        // Silent when listed; its line reaches the follower stamped early.
        fake.run(3, None);
        fake.start_run(3, 7_200, None);
        let mut sub = start(&fake, NEVER);
        assert_eq!(next(&mut sub).await, ["+worker-1"]);
        fake.print_ready_ms(3, 7_100);
        assert_eq!(next(&mut sub).await, ["+worker-3"]);
        // The new run's own line announces 2.
        fake.print_ready_ms(2, 5_600);
        assert_eq!(next(&mut sub).await, ["+worker-2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_broken_stream_a_relist_emits_exactly_the_difference() {
        let fake = Fake::new();
        fake.run(1, Some("healthy"));
        fake.run(2, Some("healthy"));
        let mut sub = start(&fake, NEVER);
        assert_eq!(next(&mut sub).await, ["+worker-1", "+worker-2"]);
        // While the stream is down, 1 goes and 3 comes; 2 stays as it was.
        fake.remove(1);
        fake.run(3, Some("healthy"));
        fake.break_streams();
        assert_eq!(next(&mut sub).await, ["+worker-3", "-worker-1"]);
        assert!(quiet(&mut sub, Duration::from_secs(60)).await);
        // Re-listed once, after the first backoff, on a new stream.
        assert_eq!(intervals(&fake), [100]);
        assert_eq!(fake.opened(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_stream_is_a_gap_too() {
        let fake = Fake::new();
        fake.run(1, Some("healthy"));
        let mut sub = start(&fake, NEVER);
        assert_eq!(next(&mut sub).await, ["+worker-1"]);
        fake.remove(1);
        fake.end_streams();
        assert_eq!(next(&mut sub).await, ["-worker-1"]);
        assert_eq!(intervals(&fake), [100]);
    }

    #[tokio::test(start_paused = true)]
    async fn reconnects_back_off_and_a_healthy_stream_resets_the_delay() {
        let fake = Fake::new();
        fake.run(1, Some("healthy"));
        fake.fail_listings(4);
        let mut sub = start(&fake, NEVER);
        assert_eq!(next(&mut sub).await, ["+worker-1"]);
        assert_eq!(intervals(&fake), [100, 200, 400, 800]);
        // A stream that ends at once keeps growing the delay.
        until(|| fake.open_streams() == 1).await;
        fake.end_streams();
        until(|| fake.open_streams() == 1).await;
        assert_eq!(intervals(&fake)[4..], [1600]);
        // One that stayed up for a while earns the quick reconnect again.
        tokio::time::sleep(Duration::from_secs(11)).await;
        fake.end_streams();
        let ended = Instant::now();
        until(|| fake.open_streams() == 1).await;
        assert_eq!(fake.listings()[6] - ended, Duration::from_millis(100));
        // Nothing changed, so nothing was said.
        assert!(quiet(&mut sub, Duration::from_secs(1)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn the_periodic_relist_corrects_what_no_event_told() {
        let fake = Fake::new();
        fake.run(1, Some("healthy"));
        let mut sub = start(&fake, Duration::from_secs(30));
        assert_eq!(next(&mut sub).await, ["+worker-1"]);
        let listed = fake.listings()[0];
        // Changes the stream never tells of.
        fake.remove(1);
        fake.run(2, Some("healthy"));
        assert_eq!(next(&mut sub).await, ["+worker-2", "-worker-1"]);
        assert_eq!(fake.listings()[1] - listed, Duration::from_secs(30));
        // On the same stream: a re-list is no gap.
        assert_eq!(fake.opened(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_inspect_is_retried_until_it_answers() {
        let fake = Fake::new();
        let mut sub = start(&fake, NEVER);
        until(|| fake.open_streams() == 1).await;
        fake.run(5, None);
        fake.fail_inspects(5, 2);
        fake.event(5, "start", 1);
        fake.print_ready(5, 2);
        // The ready line alone announces nothing: the address comes from an inspect.
        assert_eq!(next(&mut sub).await, ["+worker-5"]);
        assert_eq!(fake.inspects(5), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn inspects_that_keep_failing_are_left_to_the_next_relist() {
        let fake = Fake::new();
        let mut sub = start(&fake, Duration::from_secs(30));
        until(|| fake.open_streams() == 1).await;
        let started = Instant::now();
        fake.run(5, None);
        fake.fail_inspects(5, 100);
        fake.event(5, "start", 1);
        fake.print_ready(5, 2);
        // The first inspect and three retries, then nothing until the re-list,
        // which keeps the ready line the container printed.
        assert_eq!(next(&mut sub).await, ["+worker-5"]);
        assert!(started.elapsed() >= Duration::from_secs(29));
        assert_eq!(fake.inspects(5), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn the_tracker_ends_with_its_last_subscription() {
        let fake = Fake::new();
        fake.run(1, Some("healthy"));
        let mut sub = start(&fake, NEVER);
        assert_eq!(next(&mut sub).await, ["+worker-1"]);
        drop(sub);
        until(|| fake.open_streams() == 0).await;
    }

    #[test]
    fn a_scope_admits_by_selector_and_owner() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let scope = |owner: Option<&str>| Scope {
            selector: labels(&[(labels::SELECTOR, "true")]),
            network: None,
            owner: owner.map(str::to_owned),
        };
        let managed = |owner: &str| {
            labels(&[
                (labels::SELECTOR, "true"),
                (labels::MANAGED, "true"),
                (labels::OWNER, owner),
            ])
        };
        // A Swarm task or a hand-run container: no `wool.docker.managed`.
        let task = labels(&[
            (labels::SELECTOR, "true"),
            ("com.docker.swarm.service.name", "w"),
        ]);
        let mine = scope(Some("0/m.b.1/1/1"));
        assert!(mine.admits(&task));
        assert!(mine.admits(&managed("0/m.b.1/1/1")));
        assert!(!mine.admits(&managed("0/m.b.1/2/1")));
        assert!(!mine.admits(&labels(&[("other", "x")])));
        assert!(scope(None).admits(&managed("0/m.b.1/2/1")));
        assert_ne!(mine, scope(None), "hubs are keyed by the owner too");
    }

    #[test]
    fn every_file_of_discovery_logs_to_its_logger() {
        // The logging bridge names a record's logger after its target's module.
        assert_eq!(
            Some(super::source::LOG),
            module_path!().strip_suffix("::tests")
        );
    }
}
