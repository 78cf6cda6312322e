//! Discovery against a fake Engine, on tokio's paused clock: what a
//! subscription receives across a listing, a gap, a re-list, an ended
//! stream and failed inspects, in milliseconds and without a daemon.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::fake::{Fake, NETWORK};
use super::{subscribe_every, Change, Scope, Subscription};
use crate::labels;
use crate::registry::Registry;

/// Far longer than anything here takes (the clock is paused: free).
const PATIENCE: Duration = Duration::from_secs(120);
/// The re-list period of most tests: longer than any of them.
const NEVER: Duration = Duration::from_secs(3600);

fn scope() -> Scope {
    Scope {
        selector: BTreeMap::from([(labels::SELECTOR.to_owned(), "true".to_owned())]),
        network: Some(NETWORK.to_owned()),
        owner: None,
    }
}

fn start(fake: &Fake, resync_every: Duration) -> Subscription {
    subscribe_every(fake, scope(), &Registry::default(), resync_every)
}

/// A batch as `+name` (added), `~name` (updated), `-name` (dropped), sorted.
fn said(batch: &[Change]) -> Vec<String> {
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
async fn next(sub: &mut Subscription) -> Vec<String> {
    match tokio::time::timeout(PATIENCE, sub.next_batch(1000)).await {
        Ok(batch) => said(&batch),
        Err(_) => Vec::new(),
    }
}

/// Whether no batch comes for `within`.
async fn quiet(sub: &mut Subscription, within: Duration) -> bool {
    tokio::time::timeout(within, sub.next_batch(1000))
        .await
        .is_err()
}

/// Wait until `cond` holds (the clock only moves while everything waits).
async fn until(mut cond: impl FnMut() -> bool) {
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
