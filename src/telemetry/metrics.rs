//! The metrics (feature `metrics`), recorded through the [`metrics`] crate's
//! facade: whichever recorder the application installed (Prometheus,
//! OpenTelemetry, StatsD) gets them; without the feature, or without a
//! recorder, recording costs nothing. Counters count events once (a refresh
//! once, not once per waiting caller), like Duende.AccessTokenManagement's.
#![cfg_attr(not(feature = "metrics"), allow(dead_code))]

/// Refreshes this process led, by `trigger` and `outcome`.
pub(crate) const REFRESH_TOTAL: &str = "oauth2_refresh_total";
/// How long those refreshes took, by `trigger` (histogram, seconds).
pub(crate) const REFRESH_DURATION: &str = "oauth2_refresh_duration_seconds";
/// Requests sent to the token endpoint, by `call` and `outcome`.
pub(crate) const TOKEN_ATTEMPTS_TOTAL: &str = "oauth2_token_endpoint_attempts_total";
/// Of those, the retries of a transient failure.
pub(crate) const TOKEN_RETRIES_TOTAL: &str = "oauth2_token_endpoint_retries_total";
/// Callers that waited for another caller's refresh, by `trigger`.
pub(crate) const WAITERS_TOTAL: &str = "oauth2_refresh_waiters_total";
/// Requests replayed after a 401, by `transport`.
pub(crate) const REPLAYS_TOTAL: &str = "oauth2_replays_total";
/// Store calls, by `op` and `outcome`.
pub(crate) const STORE_OPERATIONS_TOTAL: &str = "oauth2_store_operations_total";
/// How long taking the store's lock took (histogram, seconds).
pub(crate) const STORE_LOCK_WAIT: &str = "oauth2_store_lock_wait_seconds";
/// Sessions that ended, by `reason`.
pub(crate) const SESSION_ENDS_TOTAL: &str = "oauth2_session_ends_total";
/// Token requests sent again with a DPoP nonce (when DPoP is on).
pub(crate) const DPOP_NONCE_RETRIES_TOTAL: &str = "oauth2_dpop_nonce_retries_total";

#[cfg(feature = "metrics")]
mod record {
    use std::time::Duration;

    use super::*;

    pub(crate) fn refresh(trigger: &'static str, outcome: &'static str, took: Duration) {
        ::metrics::counter!(REFRESH_TOTAL, "trigger" => trigger, "outcome" => outcome).increment(1);
        ::metrics::histogram!(REFRESH_DURATION, "trigger" => trigger).record(took.as_secs_f64());
    }

    pub(crate) fn token_attempt(call: &'static str, outcome: &'static str) {
        ::metrics::counter!(TOKEN_ATTEMPTS_TOTAL, "call" => call, "outcome" => outcome)
            .increment(1);
    }

    pub(crate) fn token_retry() {
        ::metrics::counter!(TOKEN_RETRIES_TOTAL).increment(1);
    }

    pub(crate) fn flight_waiter(trigger: &'static str) {
        ::metrics::counter!(WAITERS_TOTAL, "trigger" => trigger).increment(1);
    }

    pub(crate) fn replay(transport: &'static str) {
        ::metrics::counter!(REPLAYS_TOTAL, "transport" => transport).increment(1);
    }

    pub(crate) fn store(op: &'static str, outcome: &'static str, took: Duration) {
        ::metrics::counter!(STORE_OPERATIONS_TOTAL, "op" => op, "outcome" => outcome).increment(1);
        let _ = took;
    }

    pub(crate) fn store_lock_wait(took: Duration) {
        ::metrics::histogram!(STORE_LOCK_WAIT).record(took.as_secs_f64());
    }

    pub(crate) fn session_end(reason: &'static str) {
        ::metrics::counter!(SESSION_ENDS_TOTAL, "reason" => reason).increment(1);
    }

    pub(crate) fn dpop_nonce_retry(call: &'static str) {
        ::metrics::counter!(DPOP_NONCE_RETRIES_TOTAL, "call" => call).increment(1);
    }
}

/// Without the feature: the same calls, doing nothing.
#[cfg(not(feature = "metrics"))]
mod record {
    use std::time::Duration;

    pub(crate) fn refresh(_: &'static str, _: &'static str, _: Duration) {}
    pub(crate) fn token_attempt(_: &'static str, _: &'static str) {}
    pub(crate) fn token_retry() {}
    pub(crate) fn flight_waiter(_: &'static str) {}
    pub(crate) fn replay(_: &'static str) {}
    pub(crate) fn store(_: &'static str, _: &'static str, _: Duration) {}
    pub(crate) fn store_lock_wait(_: Duration) {}
    pub(crate) fn session_end(_: &'static str) {}
    pub(crate) fn dpop_nonce_retry(_: &'static str) {}
}

pub(crate) use record::*;

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    /// The one helper no code path of this crate reaches yet: the DPoP
    /// client calls it (tests/metrics.rs covers the others end to end).
    #[test]
    fn a_dpop_nonce_retry_is_counted() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, || {
            crate::telemetry::dpop_nonce_retry("refresh_token");
        });
        let recorded = snapshotter.snapshot().into_vec();
        let [(key, _, _, DebugValue::Counter(1))] = recorded.as_slice() else {
            panic!("{recorded:?}");
        };
        assert_eq!(key.key().name(), super::DPOP_NONCE_RETRIES_TOTAL);
    }
}
