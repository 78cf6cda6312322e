//! The one retry policy: exponential from a floor to a cap, jittered so that
//! the owners on a host do not all retry in the same instant (after an Engine
//! restart every one of them loses its streams at once).
//!
//! Retry loops take a [`Policy`] as a value, so tests pass an exact one and
//! assert the delays. A hand-written one rather than `backon`'s: its delays
//! come from an iterator that is neither `Copy` nor `Clone`, which the pure
//! list-then-watch machine (`discovery::watch`) needs, and its jitter adds up
//! to the delay again, past the cap.

use std::time::Duration;

/// How long to wait before each retry after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    floor: Duration,
    cap: Duration,
    jitter: bool,
}

impl Policy {
    /// Reconnecting to an Engine (event streams, listings, inspects): 100 ms
    /// doubling to 5 s.
    pub const RECONNECT: Policy = Policy::new(Duration::from_millis(100), Duration::from_secs(5));
    /// Accepting connections while the process is out of descriptors and the
    /// like, which persists until connections close: 10 ms doubling to 1 s.
    pub const ACCEPT: Policy = Policy::new(Duration::from_millis(10), Duration::from_secs(1));

    /// Jittered delays from `floor` doubling up to `cap`.
    pub const fn new(floor: Duration, cap: Duration) -> Policy {
        Policy {
            floor,
            cap,
            jitter: true,
        }
    }

    /// The same policy without jitter: `floor`, twice that, … up to `cap`.
    pub const fn exact(self) -> Policy {
        Policy {
            jitter: false,
            ..self
        }
    }

    /// The delay before retry `attempt` (0: the first after a success).
    /// Jittered: uniform between the floor and twice the exact delay (capped),
    /// so the mean stays near the exact schedule and the spread grows with it.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exact = |n: u32| {
            self.floor
                .saturating_mul(2u32.saturating_pow(n.min(31)))
                .min(self.cap)
        };
        if !self.jitter {
            return exact(attempt);
        }
        let top = exact(attempt.saturating_add(1));
        // Without randomness (never on Linux), the exact delay: still a delay.
        let Ok(random) = getrandom::u64() else {
            return exact(attempt);
        };
        let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
        self.floor + top.saturating_sub(self.floor).mul_f64(unit)
    }

    /// A retry loop's backoff, at its first delay.
    pub const fn start(self) -> Backoff {
        Backoff {
            policy: self,
            failures: 0,
        }
    }
}

/// Where a retry loop is in its policy: the failures since its last success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    policy: Policy,
    failures: u32,
}

impl Backoff {
    /// The delay to wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.policy.delay(self.failures);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A success: the next failure waits the floor again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_exact_policy_doubles_from_the_floor_up_to_the_cap() {
        let mut backoff = Policy::RECONNECT.exact().start();
        let delays: Vec<u128> = (0..9).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(Policy::RECONNECT.exact().delay(u32::MAX), 5000 * MS);
    }

    #[test]
    fn jittered_delays_stay_within_the_floor_and_the_cap_and_vary() {
        let policy = Policy::RECONNECT;
        for attempt in [0, 1, 3, 6, 40, u32::MAX] {
            let top = policy.exact().delay(attempt.saturating_add(1));
            let delays: Vec<Duration> = (0..200).map(|_| policy.delay(attempt)).collect();
            assert!(
                delays
                    .iter()
                    .all(|d| *d >= 100 * MS && *d <= top && *d <= 5000 * MS),
                "attempt {attempt}: {delays:?}"
            );
            let distinct: std::collections::HashSet<_> = delays.iter().collect();
            assert!(
                distinct.len() > 100,
                "attempt {attempt}: too few distinct delays"
            );
        }
        // Spread at the very first retry too: the one every owner makes at once.
        let first: Vec<Duration> = (0..200).map(|_| policy.delay(0)).collect();
        assert!(first.iter().any(|d| *d > 150 * MS) && first.iter().any(|d| *d < 150 * MS));
    }

    #[test]
    fn a_reset_returns_to_the_floor() {
        let mut exact = Policy::ACCEPT.exact().start();
        for _ in 0..10 {
            exact.next_delay();
        }
        assert_eq!(exact.failures(), 10);
        exact.reset();
        assert_eq!(exact.next_delay(), 10 * MS);
        let mut jittered = Policy::RECONNECT.start();
        for _ in 0..10 {
            jittered.next_delay();
        }
        jittered.reset();
        assert!(jittered.next_delay() <= 200 * MS);
    }
}
