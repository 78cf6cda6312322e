//! The per-container machine (`state`): its transition table and properties.
//! (A file of its own: `state.rs` with them would pass 800 lines.)

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::state::*;
use crate::labels::WorkerRecord;

fn record(address: &str) -> WorkerRecord {
    WorkerRecord::for_test("u", address, "c", "n")
}

fn said(pid: i64) -> Served {
    Served {
        version: Some(format!("0.16.{pid}")),
        pid: Some(pid),
        published: None,
    }
}

/// `record` as announced after its server said `said(pid)`.
fn serving(address: &str, pid: i64) -> WorkerRecord {
    WorkerRecord {
        version: format!("0.16.{pid}"),
        pid,
        ..record(address)
    }
}

fn st(address: Option<&str>, phase: Phase) -> Option<State> {
    Some(State {
        record: address.map(record),
        phase,
    })
}

fn seen(address: Option<&str>, run: Run, health: Health, logs: Logs) -> Observation {
    seen_run(address, run, health, logs, None)
}

/// `seen` of a run that started at `started_ns`.
fn seen_run(
    address: Option<&str>,
    run: Run,
    health: Health,
    logs: Logs,
    started_ns: Option<i64>,
) -> Observation {
    Observation::Seen(Seen {
        record: address.map(record),
        run,
        health,
        logs,
        started_ns,
    })
}

fn ev(event: Event) -> Observation {
    Observation::Event(event)
}

#[test]
fn transitions() {
    use Health::{Healthy, Unhealthy as Failing, Unreported};
    use Phase::*;
    use Run::{Paused as Frozen, Running, Stopped as Exited};
    let a = Some("a:1");
    let ok = |pid| Serving(said(pid));
    let paused = |served: Option<Served>, unhealthy| Paused { served, unhealthy };
    let stopping = |since_ns| Stopping { since_ns };
    // Stopped, as a listing says (no fence) or as an event at 5 said.
    let exited = Stopped { since_ns: None };
    let ended = |since_ns| Stopped {
        since_ns: Some(since_ns),
    };
    #[rustfmt::skip]
    let rows: Vec<(Option<State>, Observation, Option<State>, Delta)> = vec![
        // Unknown containers: a start or a listing makes them known.
        (None, ev(Event::Start), st(None, Starting), Delta::None),
        (None, seen(a, Running, Unreported, Logs::Unread), st(a, Starting), Delta::None),
        (None, seen(a, Running, Unreported, Logs::NoReadyLine), st(a, Starting), Delta::None),
        (None, seen(a, Running, Unreported, Logs::Ready(said(7))), st(a, ok(7)), Delta::Added(serving("a:1", 7))),
        (None, seen(a, Running, Healthy, Logs::Unread), st(a, Serving(Served::default())), Delta::Added(record("a:1"))),
        (None, seen(a, Running, Failing, Logs::Ready(said(7))), st(a, Unhealthy(Some(said(7)))), Delta::None),
        (None, seen(a, Frozen, Unreported, Logs::Ready(said(7))), st(a, paused(Some(said(7)), false)), Delta::None),
        (None, seen(a, Exited, Healthy, Logs::Ready(said(7))), st(a, exited.clone()), Delta::None),
        (None, seen(None, Running, Unreported, Logs::Ready(said(7))), st(None, ok(7)), Delta::None),
        (None, Observation::Ready(said(7)), None, Delta::None),
        (None, ev(Event::Stop { at_ns: 5 }), None, Delta::None),
        (None, ev(Event::Health { healthy: true }), None, Delta::None),
        (None, ev(Event::Moved), None, Delta::None),
        (None, Observation::Gone, None, Delta::None),
        // Starting: a ready line or a passing check announces it.
        (st(a, Starting), Observation::Ready(said(7)), st(a, ok(7)), Delta::Added(serving("a:1", 7))),
        (st(None, Starting), Observation::Ready(said(7)), st(None, ok(7)), Delta::None),
        (st(a, Starting), ev(Event::Health { healthy: true }), st(a, Serving(Served::default())), Delta::Added(record("a:1"))),
        (st(a, Starting), ev(Event::Health { healthy: false }), st(a, Unhealthy(None)), Delta::None),
        (st(a, Starting), ev(Event::Pause), st(a, paused(None, false)), Delta::None),
        (st(a, Starting), ev(Event::Start), st(a, Starting), Delta::None),
        // Serving: anything that stops it serving drops it.
        (st(a, ok(7)), Observation::Ready(said(8)), st(a, ok(8)), Delta::Updated(serving("a:1", 8))),
        (st(a, ok(7)), Observation::Ready(said(7)), st(a, ok(7)), Delta::None),
        (st(a, ok(7)), ev(Event::Start), st(a, ok(7)), Delta::None),
        (st(a, ok(7)), ev(Event::Moved), st(a, ok(7)), Delta::None),
        (st(a, ok(7)), ev(Event::Pause), st(a, paused(Some(said(7)), false)), Delta::Dropped(serving("a:1", 7))),
        (st(a, ok(7)), ev(Event::Stop { at_ns: 5 }), st(a, ended(5)), Delta::Dropped(serving("a:1", 7))),
        (st(a, ok(7)), ev(Event::Health { healthy: false }), st(a, Unhealthy(Some(said(7)))), Delta::Dropped(serving("a:1", 7))),
        (st(a, ok(7)), ev(Event::Health { healthy: true }), st(a, ok(7)), Delta::None),
        (st(a, ok(7)), Observation::Gone, None, Delta::Dropped(serving("a:1", 7))),
        // A listing is the truth about what it shows; unread logs keep what
        // the run said.
        (st(a, ok(7)), seen(Some("b:1"), Running, Unreported, Logs::Unread), st(Some("b:1"), ok(7)), Delta::Updated(serving("b:1", 7))),
        (st(a, ok(7)), seen(None, Running, Unreported, Logs::Unread), st(None, ok(7)), Delta::Dropped(serving("a:1", 7))),
        (st(a, ok(7)), seen(a, Running, Failing, Logs::Unread), st(a, Unhealthy(Some(said(7)))), Delta::Dropped(serving("a:1", 7))),
        (st(a, ok(7)), seen(a, Running, Unreported, Logs::NoReadyLine), st(a, Starting), Delta::Dropped(serving("a:1", 7))),
        (st(a, ok(7)), seen(a, Frozen, Unreported, Logs::Unread), st(a, paused(Some(said(7)), false)), Delta::Dropped(serving("a:1", 7))),
        (st(a, ok(7)), seen(a, Exited, Unreported, Logs::Unread), st(a, exited.clone()), Delta::Dropped(serving("a:1", 7))),
        // Unhealthy: a passing check brings back what it said, or proves it up.
        (st(a, Unhealthy(Some(said(7)))), ev(Event::Health { healthy: true }), st(a, ok(7)), Delta::Added(serving("a:1", 7))),
        (st(a, Unhealthy(None)), ev(Event::Health { healthy: true }), st(a, Serving(Served::default())), Delta::Added(record("a:1"))),
        (st(a, Unhealthy(None)), Observation::Ready(said(7)), st(a, Unhealthy(Some(said(7)))), Delta::None),
        (st(a, Unhealthy(Some(said(7)))), ev(Event::Stop { at_ns: 5 }), st(a, ended(5)), Delta::None),
        // Paused: the same server resumes, with what it said and its health.
        (st(a, paused(Some(said(7)), false)), ev(Event::Unpause), st(a, ok(7)), Delta::Added(serving("a:1", 7))),
        (st(a, paused(None, false)), ev(Event::Unpause), st(a, Starting), Delta::None),
        (st(a, paused(Some(said(7)), true)), ev(Event::Unpause), st(a, Unhealthy(Some(said(7)))), Delta::None),
        (st(a, paused(Some(said(7)), false)), ev(Event::Health { healthy: false }), st(a, paused(Some(said(7)), true)), Delta::None),
        (st(a, paused(None, false)), Observation::Ready(said(7)), st(a, paused(Some(said(7)), false)), Delta::None),
        (st(a, paused(Some(said(7)), false)), ev(Event::Pause), st(a, paused(Some(said(7)), false)), Delta::None),
        (st(a, paused(Some(said(7)), false)), ev(Event::Start), st(None, Starting), Delta::None),
        // Stopped: a run's word does not carry over; a start is a new run
        // whose address an inspect must tell.
        (st(a, ended(5)), ev(Event::Start), st(None, Starting), Delta::None),
        (st(a, exited.clone()), ev(Event::Start), st(None, Starting), Delta::None),
        (st(a, ended(5)), Observation::Ready(said(7)), st(a, ended(5)), Delta::None),
        (st(a, ended(5)), ev(Event::Health { healthy: true }), st(a, ended(5)), Delta::None),
        (st(a, ended(5)), ev(Event::Unpause), st(a, ended(5)), Delta::None),
        (st(a, ended(5)), ev(Event::Stop { at_ns: 9 }), st(a, ended(5)), Delta::None),
        (st(a, exited.clone()), ev(Event::Stop { at_ns: 9 }), st(a, ended(9)), Delta::None),
        (st(a, ended(5)), Observation::Gone, None, Delta::None),
        (st(a, ended(5)), ev(Event::Kill { at_ns: 9 }), st(a, ended(5)), Delta::None),
        // A listing answered a moment after the exit can still show the run
        // running: only a run started after the exit counts.
        (st(a, ended(5)), seen(a, Running, Unreported, Logs::Ready(said(7))), st(a, ended(5)), Delta::None),
        (st(a, ended(5)), seen_run(a, Running, Healthy, Logs::Unread, Some(4)), st(a, ended(5)), Delta::None),
        (st(a, ended(5)), seen_run(a, Running, Unreported, Logs::Ready(said(7)), Some(6)), st(a, ok(7)), Delta::Added(serving("a:1", 7))),
        // With no event's word, a listing is believed.
        (st(a, exited.clone()), seen(a, Running, Unreported, Logs::Unread), st(a, Starting), Delta::None),
        (st(a, exited.clone()), seen(a, Running, Unreported, Logs::Ready(said(7))), st(a, ok(7)), Delta::Added(serving("a:1", 7))),
        // Stopping: signalled, maybe still serving its deregistration delay;
        // only an exit or a new run moves it.
        (st(a, ok(7)), ev(Event::Kill { at_ns: 5 }), st(a, stopping(5)), Delta::Dropped(serving("a:1", 7))),
        (st(a, Starting), ev(Event::Kill { at_ns: 5 }), st(a, stopping(5)), Delta::None),
        (st(a, paused(Some(said(7)), false)), ev(Event::Kill { at_ns: 5 }), st(a, stopping(5)), Delta::None),
        (st(a, stopping(5)), ev(Event::Kill { at_ns: 9 }), st(a, stopping(5)), Delta::None),
        (st(a, stopping(5)), Observation::Ready(said(7)), st(a, stopping(5)), Delta::None),
        (st(a, stopping(5)), ev(Event::Health { healthy: true }), st(a, stopping(5)), Delta::None),
        (st(a, stopping(5)), ev(Event::Unpause), st(a, stopping(5)), Delta::None),
        (st(a, stopping(5)), ev(Event::Moved), st(a, stopping(5)), Delta::None),
        (st(a, stopping(5)), ev(Event::Stop { at_ns: 9 }), st(a, ended(5)), Delta::None),
        (st(a, stopping(5)), ev(Event::Start), st(None, Starting), Delta::None),
        (st(a, stopping(5)), Observation::Gone, None, Delta::None),
        // A listing answered between the signal and the exit shows the run
        // still running, ready line and all: it stays stopping.
        (st(a, stopping(5)), seen(a, Running, Unreported, Logs::Ready(said(7))), st(a, stopping(5)), Delta::None),
        (st(a, stopping(5)), seen_run(a, Running, Healthy, Logs::Ready(said(7)), Some(5)), st(a, stopping(5)), Delta::None),
        (st(a, stopping(5)), seen(Some("b:1"), Frozen, Unreported, Logs::Unread), st(Some("b:1"), stopping(5)), Delta::None),
        (st(a, stopping(5)), seen(a, Exited, Unreported, Logs::Unread), st(a, ended(5)), Delta::None),
        // A run started after the signal (a restart inside a gap) is new.
        (st(a, stopping(5)), seen_run(a, Running, Unreported, Logs::Ready(said(7)), Some(6)), st(a, ok(7)), Delta::Added(serving("a:1", 7))),
        (st(a, stopping(5)), seen_run(a, Running, Unreported, Logs::Unread, Some(6)), st(a, Starting), Delta::None),
    ];
    for (i, (state, obs, want_state, want_delta)) in rows.into_iter().enumerate() {
        let (got_state, got_delta) = step(state.as_ref(), &obs);
        assert_eq!(
            (&got_state, &got_delta),
            (&want_state, &want_delta),
            "row {i}: {state:?} + {obs:?}"
        );
    }
}

#[test]
fn events_read_from_actions() {
    let parse = |a, s| Event::parse(a, s, 5);
    let kill = Some(ev(Event::Kill { at_ns: 5 }));
    assert_eq!(parse("start", None), Some(ev(Event::Start)));
    assert_eq!(parse("die", None), Some(ev(Event::Stop { at_ns: 5 })));
    assert_eq!(parse("stop", None), Some(ev(Event::Stop { at_ns: 5 })));
    assert_eq!(parse("oom", None), Some(ev(Event::Stop { at_ns: 5 })));
    assert_eq!(parse("kill", Some("15")), kill);
    assert_eq!(parse("kill", Some("9")), kill);
    assert_eq!(parse("kill", None), kill);
    assert_eq!(parse("kill", Some("1")), None);
    assert_eq!(parse("kill", Some("10")), None);
    assert_eq!(parse("destroy", None), Some(Observation::Gone));
    assert_eq!(parse("disconnect", None), Some(ev(Event::Moved)));
    let healthy = |h| Some(ev(Event::Health { healthy: h }));
    assert_eq!(parse("health_status: healthy", None), healthy(true));
    assert_eq!(parse("health_status:healthy", None), healthy(true));
    assert_eq!(parse("health_status: unhealthy", None), healthy(false));
    assert_eq!(parse("exec_start: sh", None), None);
}

#[test]
fn a_record_is_announced_only_while_serving() {
    let mut state = State {
        record: Some(record("a:1")),
        phase: Phase::Serving(said(7)),
    };
    let announced = state.announce().map(|r| (r.version, r.pid));
    assert_eq!(announced, Some(("0.16.7".into(), 7)));
    // A server that reported nothing leaves the label's version.
    state.phase = Phase::Serving(Served::default());
    assert_eq!(state.announce(), Some(record("a:1")));
    for phase in [
        Phase::Starting,
        Phase::Unhealthy(Some(said(7))),
        Phase::Paused {
            served: Some(said(7)),
            unhealthy: false,
        },
        Phase::Stopping { since_ns: 5 },
        Phase::Stopped { since_ns: Some(5) },
        Phase::Stopped { since_ns: None },
    ] {
        state.phase = phase;
        assert_eq!(state.announce(), None, "{:?}", state.phase);
    }
}

const IDS: [&str; 3] = ["c0", "c1", "c2"];

fn any_served() -> impl Strategy<Value = Served> {
    prop_oneof![Just(Served::default()), Just(said(7)), Just(said(8))]
}

fn any_record() -> impl Strategy<Value = Option<WorkerRecord>> {
    prop_oneof![
        Just(None),
        Just(Some(record("a:1"))),
        Just(Some(record("b:1")))
    ]
}

/// What a listing can say of a container; `read`: whether its logs were read.
fn any_seen(read: bool) -> impl Strategy<Value = Seen> {
    let logs = prop_oneof![
        Just(Logs::NoReadyLine),
        any_served().prop_map(Logs::Ready),
        Just(Logs::Unread),
    ];
    let logs = logs.prop_filter("logs read", move |l| !read || *l != Logs::Unread);
    let run = prop_oneof![Just(Run::Running), Just(Run::Paused), Just(Run::Stopped)];
    let health = prop_oneof![
        Just(Health::Unreported),
        Just(Health::Healthy),
        Just(Health::Unhealthy)
    ];
    // Kills happen at 1..=3: a run started at 0 is the one they signalled,
    // one started at 10 a later run.
    let started = prop_oneof![Just(None), Just(Some(0)), Just(Some(10))];
    (any_record(), run, health, logs, started).prop_map(
        |(record, run, health, logs, started_ns)| Seen {
            record,
            run,
            health,
            logs,
            started_ns,
        },
    )
}

fn any_observation() -> impl Strategy<Value = Observation> {
    let event = prop_oneof![
        Just(Event::Start),
        Just(Event::Pause),
        Just(Event::Unpause),
        (1..=3i64).prop_map(|at_ns| Event::Stop { at_ns }),
        (1..=3i64).prop_map(|at_ns| Event::Kill { at_ns }),
        any::<bool>().prop_map(|healthy| Event::Health { healthy }),
        Just(Event::Moved),
    ];
    prop_oneof![
        any_seen(false).prop_map(Observation::Seen),
        any_served().prop_map(Observation::Ready),
        event.prop_map(Observation::Event),
        Just(Observation::Gone),
    ]
}

/// What subscribers were told, kept from the deltas alone; panics on a delta
/// that contradicts what came before.
fn tell(told: &mut BTreeMap<String, WorkerRecord>, id: &str, delta: Delta) {
    match delta {
        Delta::None => {}
        Delta::Added(r) => {
            let before = told.insert(id.to_owned(), r);
            assert!(before.is_none(), "{id} added twice");
        }
        Delta::Updated(r) => {
            let before = told.insert(id.to_owned(), r.clone());
            assert!(
                before.is_some_and(|b| b != r),
                "{id} updated unannounced or unchanged"
            );
        }
        Delta::Dropped(r) => {
            let before = told.remove(id);
            assert_eq!(before, Some(r), "{id} dropped unannounced");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the tracker saw before (events in any order, missed ones,
    /// stale listings), a re-list that reads the listed containers' logs
    /// leaves it where a fresh tracker given only that listing would be,
    /// except that a run an event said had ended stays ended (whatever the
    /// listing shows of it, unless it shows a later run); and at every step
    /// the deltas sent so far add up to what it announces.
    #[test]
    fn a_relist_converges(
        history in proptest::collection::vec((0..IDS.len(), any_observation()), 0..40),
        listing in proptest::collection::vec(proptest::option::of(any_seen(true)), IDS.len()),
    ) {
        let mut book = Book::default();
        let mut told = BTreeMap::new();
        for (i, obs) in &history {
            let delta = book.observe(IDS[*i], obs);
            tell(&mut told, IDS[*i], delta);
            prop_assert_eq!(&told, &book.announced());
        }
        let listing: Vec<(String, Seen)> = IDS
            .iter()
            .zip(listing)
            .filter_map(|(id, seen)| Some((id.to_string(), seen?)))
            .collect();
        let before = book.clone();
        for (id, delta) in book.relist(&listing) {
            tell(&mut told, &id, delta);
        }
        prop_assert_eq!(&told, &book.announced());
        let mut fresh = Book::default();
        for (id, delta) in fresh.relist(&listing) {
            tell(&mut BTreeMap::new(), &id, delta);
        }
        for id in IDS {
            let listed = listing.iter().find(|(l, _)| l == id).map(|(_, s)| s);
            let phase = before.get(id).map(|s| &s.phase);
            match (listed, phase.and_then(Phase::ended_ns)) {
                (Some(seen), Some(ended)) if seen.started_ns.is_none_or(|s| s <= ended) => {
                    let phase = match (phase, seen.run) {
                        (Some(Phase::Stopping { .. }), Run::Running | Run::Paused) => {
                            Phase::Stopping { since_ns: ended }
                        }
                        _ => Phase::Stopped { since_ns: Some(ended) },
                    };
                    let want = State {
                        record: seen.record.clone(),
                        phase,
                    };
                    prop_assert_eq!(book.get(id), Some(&want));
                }
                _ => prop_assert_eq!(book.get(id), fresh.get(id)),
            }
        }
    }
}

/// A standby container's labels say nothing of the worker it will become: it
/// is no worker while parked, whatever its health says, nor after a ready line
/// that does not state the worker; it is the worker its ready line states.
#[test]
fn a_standby_container_is_the_worker_its_ready_line_states() {
    let parked = Some(State {
        record: Some(WorkerRecord {
            standby: true,
            ..record("a")
        }),
        phase: Phase::Starting,
    });
    let (healthy, delta) = step(
        parked.as_ref(),
        &Observation::Event(Event::Health { healthy: true }),
    );
    assert_eq!(delta, Delta::None, "a parked container passed for a worker");
    let (unstated, delta) = step(healthy.as_ref(), &Observation::Ready(said(3)));
    assert_eq!(
        delta,
        Delta::None,
        "announced without the worker's metadata"
    );
    let published = crate::ready::Published {
        uid: "6f0c1a52-3a70-4a36-9a4b-0b7f3d2a9c11".into(),
        tags: vec!["gpu".into()],
        extra: r#"{"k":"v"}"#.into(),
        secure: true,
        identity: Some("spiffe://w".into()),
        options: None,
    };
    let claimed = Served {
        published: Some(published.clone()),
        ..said(4)
    };
    let (_, delta) = step(unstated.as_ref(), &Observation::Ready(claimed.clone()));
    let Delta::Added(r) = delta else {
        panic!("a claimed container was not announced: {delta:?}");
    };
    assert_eq!(
        (r.uid, r.tags, r.extra, r.secure, r.identity, r.pid),
        (
            published.uid,
            published.tags,
            published.extra,
            true,
            published.identity,
            4
        )
    );
    // Any other container's labels stand, whatever its line says.
    let labelled = st(Some("a"), Phase::Starting);
    let (_, delta) = step(labelled.as_ref(), &Observation::Ready(claimed));
    assert_eq!(delta, Delta::Added(serving("a", 4)));
}
