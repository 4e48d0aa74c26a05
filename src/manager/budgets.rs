//! How long each wait may last, derived once from the refresh budget and
//! the store timeout, saturating so that any configured duration (up to
//! `Duration::MAX`) works.

use std::time::Duration;

/// Slack for the store's lock call beyond the wait it is given, and for a
/// queued caller beyond a whole refresh.
const LOCK_CALL_SLACK: Duration = Duration::from_secs(1);
const FLIGHT_SLACK: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub(crate) struct Budgets {
    /// One store load, save, clear or release.
    pub(crate) store_timeout: Duration,
    /// How long the store's lock is waited for: another process's refresh
    /// (its budget) and its store operations.
    pub(crate) store_lock_wait: Duration,
    /// How long a caller waits for the refresh lock of this process: the
    /// store's lock, a refresh and its store operations, plus slack. Every
    /// holder of the lock finishes within it.
    pub(crate) flight_wait: Duration,
}

impl Budgets {
    /// The bound on a store's lock call that is given `wait`.
    pub(crate) fn lock_call(wait: Duration) -> Duration {
        wait.saturating_add(LOCK_CALL_SLACK)
    }

    pub(crate) fn new(refresh_budget: Duration, store_timeout: Duration) -> Self {
        let store_lock_wait = refresh_budget.saturating_add(store_timeout.saturating_mul(3));
        let flight_wait = Self::lock_call(store_lock_wait)
            .saturating_add(refresh_budget)
            .saturating_add(store_timeout.saturating_mul(4))
            .saturating_add(FLIGHT_SLACK);
        Self {
            store_timeout,
            store_lock_wait,
            flight_wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_add_up() {
        let b = Budgets::new(Duration::from_secs(30), Duration::from_secs(10));
        assert_eq!(b.store_lock_wait, Duration::from_secs(60));
        assert_eq!(b.flight_wait, Duration::from_secs(136));
    }

    #[test]
    fn a_holder_of_the_refresh_lock_finishes_within_the_flight_wait() {
        let b = Budgets::new(Duration::from_secs(30), Duration::from_secs(10));
        // lock call, re-read, refresh, save, re-read, release
        let holder =
            Budgets::lock_call(b.store_lock_wait) + Duration::from_secs(30) + b.store_timeout * 4;
        assert!(holder < b.flight_wait);
    }

    #[test]
    fn huge_durations_saturate() {
        let b = Budgets::new(Duration::MAX, Duration::MAX);
        assert_eq!(b.flight_wait, Duration::MAX);
    }
}
