//! The connection-level list-then-watch, as one pure function.
//!
//! A hub's tracker lists every container, then follows the Engine's event
//! streams from a moment just before the listing, and re-lists on a period
//! while they run. When a stream ends or fails, or a periodic re-list fails,
//! that is a gap: the Engine replays only a few events and none across a
//! restart, so the tracker waits out a backoff and lists again. [`step`] moves
//! a [`Conn`] on one [`Input`] and says what to do next ([`Action`]); it reads
//! no clock and touches no Engine (its only randomness is its backoff policy's
//! jitter), so the tracker's loop only performs the actions, and every
//! transition is tested without a daemon, with an exact policy.

use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::{Backoff, Policy};

/// How long an event stream must stay up before the reconnect backoff resets.
pub const HEALTHY_FOR: Duration = Duration::from_secs(10);
/// How far before the Engine's clock reading an event stream resumes.
pub const SINCE_MARGIN_NS: i64 = 2_000_000_000;
/// Inspects of one container after a failed one, before the next re-list decides.
pub const INSPECT_RETRIES: u32 = 3;

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Listing every container (a first listing, or one after a gap) while
    /// the Engine's clock is read.
    Listing,
    /// Following the event streams from `since` (the Engine's clock, Unix
    /// nanoseconds), opened at `connected`; the next periodic re-list is due
    /// at `resync_at`.
    Watching {
        since: i64,
        connected: Instant,
        resync_at: Instant,
    },
    /// A periodic re-list runs; the streams stay open meanwhile.
    Resyncing {
        since: i64,
        connected: Instant,
        resync_at: Instant,
    },
    /// Waiting `delay` before listing again: a listing failed, or a gap.
    Backoff { delay: Duration },
}

/// The connection's state: its stage, and what carries from one to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    pub stage: Stage,
    /// The reconnect delays: failures since the last healthy stream.
    pub backoff: Backoff,
    /// Listings so far: after the first, the Engine's clock is read afresh
    /// (the daemon may have restarted, or either clock jumped).
    pub listings: u32,
    /// The period of the re-list while the streams run.
    pub resync_every: Duration,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The listing (of `Listing`) ended: `ok` unless it failed. `engine_now`
    /// is the Engine's clock read meanwhile (`None`: it did not say, or the
    /// read failed), `before` ours just before the listing began.
    Listed {
        ok: bool,
        engine_now: Option<i64>,
        before: i64,
    },
    /// The periodic re-list is due (`resync_at` passed).
    ResyncDue,
    /// The periodic re-list ended: `ok` unless it failed (a gap).
    Resynced { ok: bool },
    /// An event stream ended or failed: a gap.
    StreamEnded,
    /// The backoff delay passed.
    Woke,
}

/// What the tracker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// List every container as after a gap, and read the Engine's clock
    /// (afresh if `fresh_clock`); then `Listed`.
    List { fresh_clock: bool },
    /// Open the event streams from `since`; wait for their items, and for
    /// `resync_at` (then `ResyncDue`).
    Watch { since: i64, resync_at: Instant },
    /// Re-list as after a healthy stream; then `Resynced`.
    Resync,
    /// Nothing new: go on with what the stage waits for (watching: the next
    /// re-list is due at its `resync_at`).
    Continue,
    /// Close the streams (if open) and sleep `delay`; then `Woke`.
    Sleep { delay: Duration },
}

impl Conn {
    /// When the next periodic re-list is due, while watching.
    pub fn resync_at(&self) -> Option<Instant> {
        match self.stage {
            Stage::Watching { resync_at, .. } => Some(resync_at),
            _ => None,
        }
    }

    /// A new connection, backing off by `policy`, and its first action: list.
    pub fn start(resync_every: Duration, policy: Policy) -> (Conn, Action) {
        let conn = Conn {
            stage: Stage::Listing,
            backoff: policy.start(),
            listings: 0,
            resync_every,
        };
        (conn, Action::List { fresh_clock: false })
    }
}

/// The transition: the connection's next state and what to do, from its state,
/// one input, and the time it arrived (`now`). An input its stage does not
/// expect (a stale one) changes nothing and asks for nothing new.
pub fn step(conn: &Conn, input: Input, now: Instant) -> (Conn, Action) {
    let mut next = *conn;
    let action = match (conn.stage, input) {
        (
            Stage::Listing,
            Input::Listed {
                ok,
                engine_now,
                before,
            },
        ) => {
            next.listings = conn.listings.saturating_add(1);
            if ok {
                // The Engine filters the replay by its own clock, which may
                // differ from ours; the margin covers the listing. Without
                // its clock, ours from before the listing.
                let since = engine_now.map_or(before, |ns| ns - SINCE_MARGIN_NS);
                let resync_at = now + conn.resync_every;
                next.stage = Stage::Watching {
                    since,
                    connected: now,
                    resync_at,
                };
                Action::Watch { since, resync_at }
            } else {
                back_off(&mut next)
            }
        }
        (
            Stage::Watching {
                since,
                connected,
                resync_at,
            },
            Input::ResyncDue,
        ) => {
            // On a fixed period from the connection: a re-list that overran a
            // period is followed by the next at once.
            next.stage = Stage::Resyncing {
                since,
                connected,
                resync_at: resync_at + conn.resync_every,
            };
            Action::Resync
        }
        (
            Stage::Resyncing {
                since,
                connected,
                resync_at,
            },
            Input::Resynced { ok: true },
        ) => {
            next.stage = Stage::Watching {
                since,
                connected,
                resync_at,
            };
            Action::Continue
        }
        (
            Stage::Watching { connected, .. } | Stage::Resyncing { connected, .. },
            Input::StreamEnded | Input::Resynced { ok: false },
        ) => {
            // Only a stream that stayed up earns a quick reconnect: one that
            // fails at once must not make the hub re-list ten times a second.
            if now.saturating_duration_since(connected) >= HEALTHY_FOR {
                next.backoff.reset();
            }
            back_off(&mut next)
        }
        (Stage::Backoff { .. }, Input::Woke) => {
            next.stage = Stage::Listing;
            Action::List {
                fresh_clock: conn.listings > 0,
            }
        }
        // Not expected in this stage (stale, e.g. a re-list's answer after
        // the gap): nothing changes.
        _ => Action::Continue,
    };
    (next, action)
}

/// Enter the backoff: wait the policy's next delay.
fn back_off(conn: &mut Conn) -> Action {
    let delay = conn.backoff.next_delay();
    conn.stage = Stage::Backoff { delay };
    Action::Sleep { delay }
}

/// After inspect number `attempt` (0: the first) of one container failed: the
/// delay before the next one by `policy`, or `None` when the next re-list
/// must decide.
pub fn inspect_retry(policy: Policy, attempt: u32) -> Option<Duration> {
    (attempt < INSPECT_RETRIES).then(|| policy.delay(attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_secs(30);
    const EXACT: Policy = Policy::RECONNECT.exact();

    fn listed(ok: bool, engine_now: Option<i64>) -> Input {
        Input::Listed {
            ok,
            engine_now,
            before: 1_000,
        }
    }

    /// Run the inputs in order, one `dt` apart, from a fresh connection;
    /// the actions asked for.
    fn run(inputs: &[(Duration, Input)]) -> (Conn, Vec<Action>) {
        let mut now = Instant::now();
        let (mut conn, first) = Conn::start(EVERY, EXACT);
        let mut actions = vec![first];
        for (dt, input) in inputs {
            now += *dt;
            let (next, action) = step(&conn, *input, now);
            conn = next;
            actions.push(action);
        }
        (conn, actions)
    }

    fn sleeps(actions: &[Action]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Sleep { delay } => Some(delay.as_millis() as u64),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_listing_opens_the_streams_before_it_by_the_engines_clock() {
        let t0 = Instant::now();
        let (conn, first) = Conn::start(EVERY, EXACT);
        assert_eq!(first, Action::List { fresh_clock: false });
        let (conn, action) = step(&conn, listed(true, Some(10_000_000_000)), t0);
        assert_eq!(
            action,
            Action::Watch {
                since: 8_000_000_000,
                resync_at: t0 + EVERY
            }
        );
        assert_eq!(conn.listings, 1);
        // Without the Engine's clock: ours, read before the listing.
        let (_, action) = step(&Conn::start(EVERY, EXACT).0, listed(true, None), t0);
        assert!(matches!(action, Action::Watch { since: 1_000, .. }));
    }

    #[test]
    fn failed_listings_back_off_doubling_up_to_the_cap() {
        let mut inputs = Vec::new();
        for _ in 0..8 {
            inputs.push((Duration::ZERO, listed(false, None)));
            inputs.push((Duration::ZERO, Input::Woke));
        }
        let (_, actions) = run(&inputs);
        assert_eq!(
            sleeps(&actions),
            [100, 200, 400, 800, 1600, 3200, 5000, 5000]
        );
        // Every listing after the first reads the Engine's clock afresh.
        assert_eq!(actions.last(), Some(&Action::List { fresh_clock: true }));
    }

    #[test]
    fn a_gap_backs_off_and_relists_resetting_only_after_a_healthy_stream() {
        let s = Duration::from_secs(1);
        let (conn, actions) = run(&[
            (Duration::ZERO, listed(false, None)), // 100
            (Duration::ZERO, Input::Woke),
            (Duration::ZERO, listed(true, None)),
            // A stream that fails at once keeps growing the delay.
            (Duration::ZERO, Input::StreamEnded), // 200
            (Duration::ZERO, Input::Woke),
            (Duration::ZERO, listed(true, None)),
            // One that stayed up long enough starts over.
            (11 * s, Input::StreamEnded), // 100
            (Duration::ZERO, Input::Woke),
        ]);
        assert_eq!(sleeps(&actions), [100, 200, 100]);
        assert_eq!(conn.stage, Stage::Listing);
        assert_eq!(actions.last(), Some(&Action::List { fresh_clock: true }));
        assert_eq!(conn.backoff.failures(), 1);
    }

    #[test]
    fn resyncs_run_on_a_fixed_period_and_a_failed_one_is_a_gap() {
        let t0 = Instant::now();
        let (conn, _) = Conn::start(EVERY, EXACT);
        let (conn, _) = step(&conn, listed(true, None), t0);
        let (conn, action) = step(&conn, Input::ResyncDue, t0 + EVERY);
        assert_eq!(action, Action::Resync);
        // An input the stage does not expect changes nothing.
        let (conn, action) = step(&conn, Input::Woke, t0 + EVERY);
        assert_eq!(action, Action::Continue);
        let (conn, action) = step(&conn, Input::Resynced { ok: true }, t0 + EVERY);
        assert_eq!(action, Action::Continue);
        assert_eq!(conn.resync_at(), Some(t0 + 2 * EVERY));
        let (conn, _) = step(&conn, Input::ResyncDue, t0 + 2 * EVERY);
        let (conn, action) = step(&conn, Input::Resynced { ok: false }, t0 + 2 * EVERY);
        // Up for a minute: the quick reconnect.
        assert_eq!(
            action,
            Action::Sleep {
                delay: Duration::from_millis(100)
            }
        );
        assert!(matches!(conn.stage, Stage::Backoff { .. }));
    }

    #[test]
    fn a_stream_ending_while_a_resync_runs_is_a_gap() {
        let t0 = Instant::now();
        let (conn, _) = Conn::start(EVERY, EXACT);
        let (conn, _) = step(&conn, listed(true, None), t0);
        let (conn, _) = step(&conn, Input::ResyncDue, t0);
        let (conn, action) = step(&conn, Input::StreamEnded, t0);
        assert_eq!(
            action,
            Action::Sleep {
                delay: Duration::from_millis(100)
            }
        );
        // The re-list's late answer is stale.
        let (conn, action) = step(&conn, Input::Resynced { ok: true }, t0);
        assert_eq!(action, Action::Continue);
        let (_, action) = step(&conn, Input::Woke, t0);
        assert_eq!(action, Action::List { fresh_clock: true });
    }

    #[test]
    fn inspects_are_retried_three_times_with_growing_delays() {
        let delays: Vec<Option<u64>> = (0..5)
            .map(|a| inspect_retry(EXACT, a).map(|d| d.as_millis() as u64))
            .collect();
        assert_eq!(delays, [Some(100), Some(200), Some(400), None, None]);
    }
}
