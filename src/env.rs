//! Settings read from the environment.

use std::time::Duration;

use crate::values::Seconds;

/// A positive number of seconds from the environment variable `name`, else
/// `default` (unset, unreadable, zero or negative).
pub fn seconds_from_env(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|s| Seconds::new(s).ok())
        .map(Seconds::duration)
        .unwrap_or(default)
}
