//! Settings read from the environment.

use std::time::Duration;

/// A positive number of seconds from the environment variable `name`, else
/// `default` (unset, unreadable, zero or negative).
pub fn seconds_from_env(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(default)
}
