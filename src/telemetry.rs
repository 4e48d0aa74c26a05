//! Spans, events and metrics, named in one place so that the names stay
//! stable (the README's Observability section lists them): dashboards and
//! alerts are built on them. Every field is a label, a count, a duration or
//! a status: never a token, a secret or a URL with a query.
//!
//! Each operation is a span with the fields known up front; it ends with an
//! event of the same name carrying the outcome and `duration_ms`, so that a
//! plain log shows the result without span-close events turned on. The
//! metrics (feature `metrics`) are recorded by the same helpers, through
//! [`metrics`].

pub(crate) mod metrics;

use std::time::{Duration, Instant};

use tracing::Span;

use crate::error::Error;

/// Span and event: one refresh led by this manager (a first load
/// included). Fields: `trigger`, `generation`, `attempts`, `outcome`,
/// `duration_ms`.
pub(crate) const REFRESH: &str = "oauth2_refresh";
/// Span and event: one request to the token endpoint. Fields: `call`,
/// `attempt` (0 for the first), `status`, `outcome`, `duration_ms`.
pub(crate) const TOKEN_REQUEST: &str = "oauth2_token_request";
/// Event: a transient token-endpoint failure is retried. Fields: `retry`,
/// `delay_ms`.
pub(crate) const TOKEN_RETRY: &str = "oauth2_token_retry";
/// Span and event: a request sent again after a 401 with a new token.
/// Fields: `transport`, `status`.
pub(crate) const REPLAY: &str = "oauth2_replay";
/// Event: a caller waited for another caller's refresh and took its
/// outcome. Fields: `trigger`, `outcome`, `duration_ms`.
pub(crate) const FLIGHT_WAIT: &str = "oauth2_flight_wait";
/// Span and event: one store call. Fields: `op` (`load`, `save`, `lock`,
/// `release`, `clear`), `outcome`, `duration_ms`.
pub(crate) const STORE: &str = "oauth2_store";
/// Event: the session is over (the refresh token is dead, or revoked).
/// Field: `reason`.
pub(crate) const SESSION_END: &str = "oauth2_session_end";
/// Event: a token request is sent again with the nonce the server asked
/// for (when DPoP is on). Field: `call`.
pub(crate) const DPOP_NONCE_RETRY: &str = "oauth2_dpop_nonce_retry";

/// Milliseconds, for a `duration_ms` field.
fn millis(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// The label of a refresh's error: `invalid_grant` is the end of a
/// session, so it gets a label of its own; everything else is `error`.
pub(crate) fn error_outcome(error: &Error) -> &'static str {
    match error {
        Error::InvalidGrant { .. } | Error::NoRefreshToken => "invalid_grant",
        _ => "error",
    }
}

/// How a refresh this manager led ended, beyond success or failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefreshOutcome {
    /// The token endpoint issued a new set.
    Refreshed,
    /// A set another holder of the store refreshed was taken instead.
    Adopted,
    /// The first load found a set in the store or the builder.
    Loaded,
}

/// One refresh, from the leader's side: its span, and what
/// [`finish`](Self::finish) reports.
pub(crate) struct RefreshRun {
    trigger: &'static str,
    started: Instant,
    outcome: RefreshOutcome,
}

impl RefreshRun {
    /// The span of a refresh of `generation` for `trigger`.
    pub(crate) fn span(trigger: &'static str, generation: u64) -> Span {
        tracing::info_span!(
            "oauth2_refresh",
            trigger,
            generation,
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        )
    }

    pub(crate) fn start(trigger: &'static str) -> Self {
        Self {
            trigger,
            started: Instant::now(),
            outcome: RefreshOutcome::Refreshed,
        }
    }

    /// How a successful run ended (by default: refreshed).
    pub(crate) fn set(&mut self, outcome: RefreshOutcome) {
        self.outcome = outcome;
    }

    /// Reports the end of the run, inside its span.
    pub(crate) fn finish<T>(&self, result: &Result<T, Error>) {
        let outcome = match (result, self.outcome) {
            (Ok(_), RefreshOutcome::Refreshed) => "refreshed",
            (Ok(_), RefreshOutcome::Adopted) => "adopted",
            (Ok(_), RefreshOutcome::Loaded) => "loaded",
            (Err(error), _) => error_outcome(error),
        };
        let elapsed = self.started.elapsed();
        let duration_ms = millis(elapsed);
        let span = Span::current();
        span.record("outcome", outcome);
        span.record("duration_ms", duration_ms);
        let trigger = self.trigger;
        match result {
            Ok(_) => {
                tracing::info!(name: REFRESH, trigger, outcome, duration_ms, "refresh finished")
            }
            Err(error) => tracing::warn!(name: REFRESH, trigger, outcome, duration_ms,
                error = %error, "refresh failed"),
        }
        metrics::refresh(trigger, outcome, elapsed);
    }
}

/// One request to the token endpoint.
pub(crate) struct TokenAttempt {
    span: Span,
    call: &'static str,
    attempt: u32,
    started: Instant,
}

impl TokenAttempt {
    /// Attempt `attempt` (0 for the first) of a `call` (`token`, `revoke`).
    pub(crate) fn start(call: &'static str, attempt: u32) -> Self {
        let span = tracing::debug_span!(
            "oauth2_token_request",
            call,
            attempt,
            status = tracing::field::Empty,
        );
        Self {
            span,
            call,
            attempt,
            started: Instant::now(),
        }
    }

    pub(crate) fn span(&self) -> Span {
        self.span.clone()
    }

    /// Reports the attempt's end: `ok`, `transient` (to be retried, if the
    /// budget allows) or `error`. The refresh span, current here, learns
    /// how many attempts there were.
    pub(crate) fn finish(self, outcome: &'static str) {
        let duration_ms = millis(self.started.elapsed());
        let attempts = self.attempt.saturating_add(1);
        Span::current().record("attempts", attempts);
        let (call, attempt) = (self.call, self.attempt);
        self.span.in_scope(|| {
            tracing::debug!(name: TOKEN_REQUEST, call, attempt, outcome, duration_ms,
                "token endpoint answered");
        });
        metrics::token_attempt(call, outcome);
    }
}

/// The status of the token endpoint's answer, on the attempt's span.
pub(crate) fn token_status(status: u16) {
    Span::current().record("status", status);
}

/// A transient failure is retried after `delay`.
pub(crate) fn token_retry(retry: u32, delay: Duration, error: &Error) {
    let delay_ms = millis(delay);
    tracing::warn!(name: TOKEN_RETRY, retry, delay_ms, error = %error,
        "authorization server failed transiently; retrying");
    metrics::token_retry();
}

/// The span of a replay after a 401, for `transport` (`reqwest`, `tower`).
pub(crate) fn replay_span(transport: &'static str) -> Span {
    tracing::debug_span!("oauth2_replay", transport, status = tracing::field::Empty)
}

/// A request was sent again with a new token, and `status` came back.
pub(crate) fn replayed(transport: &'static str, status: u16) {
    Span::current().record("status", status);
    tracing::debug!(name: REPLAY, transport, status, "replayed the request with the new token");
    metrics::replay(transport);
}

/// A caller took the outcome of another caller's refresh after waiting
/// `waited` for it.
pub(crate) fn flight_waited(trigger: &'static str, ok: bool, waited: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    let duration_ms = millis(waited);
    tracing::debug!(name: FLIGHT_WAIT, trigger, outcome, duration_ms,
        "waited for the refresh in flight");
    metrics::flight_waiter(trigger);
}

/// The span of one store call.
pub(crate) fn store_span(op: &'static str) -> Span {
    tracing::debug_span!("oauth2_store", op)
}

/// A store call ended (inside its span); a lock's wait is also measured.
pub(crate) fn store_finished(op: &'static str, ok: bool, elapsed: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    let duration_ms = millis(elapsed);
    tracing::debug!(name: STORE, op, outcome, duration_ms, "store call finished");
    metrics::store(op, outcome, elapsed);
}

/// Taking the store's lock took `waited` (stores with a lock only).
pub(crate) fn store_lock_waited(waited: Duration) {
    metrics::store_lock_wait(waited);
}

/// The session is over; `reason`: `invalid_grant`, `revoked`.
pub(crate) fn session_ended(reason: &'static str) {
    if reason == "revoked" {
        tracing::info!(name: SESSION_END, reason, "the session was revoked");
    } else {
        tracing::error!(name: SESSION_END, reason, "the session is over; only a new sign-in helps");
    }
    metrics::session_end(reason);
}

/// The server (`call`: `token_endpoint` or `api`) asked for a DPoP nonce,
/// and the request is sent again with it.
pub(crate) fn dpop_nonce_retry(call: &'static str) {
    tracing::debug!(name: DPOP_NONCE_RETRY, call, "sending again with the server's DPoP nonce");
    metrics::dpop_nonce_retry(call);
}
