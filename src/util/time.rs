//! Deadlines from durations that may be as large as `Duration::MAX`: a user
//! may configure one and a server may send one, and neither may panic.

use std::time::Duration;

use tokio::time::Instant;

/// About thirty years: what tokio itself uses for "never".
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + after`, saturated to a far future instead of overflowing.
pub(crate) fn deadline_after(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// Whether a wait of `delay` from now would end at or after `deadline`.
pub(crate) fn ends_after(delay: Duration, deadline: Instant) -> bool {
    Instant::now()
        .checked_add(delay)
        .is_none_or(|end| end >= deadline)
}

/// `duration × factor` for a factor in [0, 1], never panicking: the float
/// product of a huge duration can round past what a `Duration` holds.
pub(crate) fn scale(duration: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64() * factor)
        .map_or(duration, |scaled| scaled.min(duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn huge_durations_saturate() {
        let deadline = deadline_after(Duration::MAX);
        assert!(deadline > Instant::now() + Duration::from_secs(86_400 * 365));
        assert!(ends_after(Duration::MAX, deadline));
        assert!(!ends_after(Duration::ZERO, deadline));
        assert_eq!(scale(Duration::MAX, 1.0), Duration::MAX);
        assert_eq!(scale(Duration::from_secs(10), 0.5), Duration::from_secs(5));
    }
}
