//! When a failed attempt is tried again: transient statuses, backoff with
//! jitter, and `Retry-After`.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderValue;

use crate::util::jitter::random_fraction;
use crate::util::time::scale;

/// Limits on one refresh: per-attempt timeout, retries and the overall budget.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    pub(crate) attempt_timeout: Duration,
    pub(crate) budget: Duration,
    pub(crate) max_retries: u32,
    pub(crate) base_delay: Duration,
}

impl RetryPolicy {
    /// Exponential backoff with jitter in [50 %, 100 %] of the step, so that
    /// many clients that failed together do not retry together.
    pub(crate) fn backoff(&self, retries: u32) -> Duration {
        let step = self.base_delay.saturating_mul(2u32.saturating_pow(retries));
        scale(step, 0.5 + random_fraction() / 2.0)
    }
}

pub(crate) fn is_transient_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// `Retry-After` in delay-seconds. An HTTP-date falls back to our backoff.
/// Any number parses: the caller caps the wait at the budget that is left.
pub(crate) fn parse_retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let seconds: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds() {
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("7"))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static(
                "Wed, 21 Oct 2015 07:28:00 GMT"
            ))),
            None
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("18446744073709551615"))),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_saturates() {
        let policy = RetryPolicy {
            attempt_timeout: Duration::from_secs(1),
            budget: Duration::from_secs(1),
            max_retries: 3,
            base_delay: Duration::from_millis(100),
        };
        let second = policy.backoff(1);
        assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
        let huge = policy.backoff(u32::MAX);
        assert!(huge >= Duration::from_secs(200_000_000), "{huge:?}");
        let max = RetryPolicy {
            base_delay: Duration::MAX,
            ..policy
        };
        assert!(max.backoff(3) >= Duration::MAX / 2 - Duration::from_secs(1));
    }
}
