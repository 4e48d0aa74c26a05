//! What the manager tells the application: new tokens, failed refreshes, and
//! the end of a session. Hooks run on the refreshing task; a panic in one is
//! logged and never loses the tokens.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use super::TokenManagerBuilder;
use crate::error::Error;
use crate::token::TokenSet;

/// Why a session is over: only a new sign-in (then
/// [`TokenManager::set_tokens`](crate::TokenManager::set_tokens)) brings it
/// back. Given to [`on_session_end`](crate::TokenManagerBuilder::on_session_end).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SessionEnd {
    /// The authorization server rejected the refresh token (`invalid_grant`,
    /// or a provider's own word for it), or there is none to refresh with.
    RefreshTokenRejected(Error),
    /// [`TokenManager::revoke`](crate::TokenManager::revoke) ended it.
    Revoked,
}

pub(crate) type RefreshHook = Arc<dyn Fn(&TokenSet) + Send + Sync + 'static>;
pub(crate) type FailureHook = Arc<dyn Fn(&Error) + Send + Sync + 'static>;
pub(crate) type SessionHook = Arc<dyn Fn(&SessionEnd) + Send + Sync + 'static>;

/// The hooks the builder was given.
#[derive(Default, Clone)]
pub(crate) struct Events {
    pub(crate) on_refresh: Option<RefreshHook>,
    pub(crate) on_refresh_failure: Option<FailureHook>,
    pub(crate) on_session_end: Option<SessionHook>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("on_refresh", &self.on_refresh.is_some())
            .field("on_refresh_failure", &self.on_refresh_failure.is_some())
            .field("on_session_end", &self.on_session_end.is_some())
            .finish()
    }
}

/// Runs a hook; a panic there is logged, not allowed to take the refresh
/// (and its new tokens) down.
fn run_hook(name: &str, hook: impl FnOnce()) {
    if std::panic::catch_unwind(AssertUnwindSafe(hook)).is_err() {
        tracing::error!(hook = name, "a hook panicked; the manager goes on");
    }
}

impl Events {
    /// A new token set, saved and about to be used.
    pub(crate) fn refreshed(&self, tokens: &TokenSet) {
        if let Some(hook) = &self.on_refresh {
            run_hook("on_refresh", || hook(tokens));
        }
    }

    /// An attempt to get a new token set failed (once per attempt, not per
    /// caller); a dead refresh token also ends the session.
    pub(crate) fn refresh_failed(&self, error: &Error) {
        if let Some(hook) = &self.on_refresh_failure {
            run_hook("on_refresh_failure", || hook(error));
        }
        if matches!(error, Error::InvalidGrant { .. } | Error::NoRefreshToken) {
            self.session_ended(&SessionEnd::RefreshTokenRejected(error.clone()));
        }
    }

    pub(crate) fn session_ended(&self, end: &SessionEnd) {
        crate::telemetry::session_ended(match end {
            SessionEnd::RefreshTokenRejected(_) => "invalid_grant",
            SessionEnd::Revoked => "revoked",
        });
        if let Some(hook) = &self.on_session_end {
            run_hook("on_session_end", || hook(end));
        }
    }
}

/// The hooks, set on the builder.
impl TokenManagerBuilder {
    /// Called with every new token set (after a refresh, or
    /// [`TokenManager::set_tokens`](crate::TokenManager::set_tokens)), after it is saved to the store and
    /// before any request uses it. Keep it quick: refreshes wait for it.
    ///
    /// A set adopted from the store (another process sharing it refreshed
    /// first) is new to this manager, so the hook sees it too: each process
    /// sees the sets it adopts as well as those it got itself. The set loaded
    /// at start is not announced.
    pub fn on_refresh(mut self, hook: impl Fn(&TokenSet) + Send + Sync + 'static) -> Self {
        self.events.on_refresh = Some(Arc::new(hook));
        self
    }

    /// Called once for every failed attempt to get new tokens (not once per
    /// waiting caller), with its error: for an alert or a metric. Keep it
    /// quick.
    pub fn on_refresh_failure(
        mut self,
        hook: impl Fn(&crate::Error) + Send + Sync + 'static,
    ) -> Self {
        self.events.on_refresh_failure = Some(Arc::new(hook));
        self
    }

    /// Called when the session is over and only a new sign-in helps: the
    /// refresh token was rejected (`invalid_grant`, or a provider's own word
    /// for it) or [`revoke`](crate::TokenManager::revoke) ended it. The place
    /// to send the user back to sign-in, or to page someone for a service.
    ///
    /// ```
    /// # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
    /// use reqwest_oauth2_refresh::{SessionEnd, TokenManager};
    /// let manager = TokenManager::builder("https://auth.example.com/oauth/token")
    ///     .client_id("my-app")
    ///     .on_session_end(|end| match end {
    ///         SessionEnd::RefreshTokenRejected(error) => eprintln!("sign in again: {error}"),
    ///         SessionEnd::Revoked => eprintln!("signed out"),
    ///         _ => {}
    ///     })
    ///     .build()?;
    /// # let _ = manager; Ok(()) }
    /// ```
    pub fn on_session_end(mut self, hook: impl Fn(&SessionEnd) + Send + Sync + 'static) -> Self {
        self.events.on_session_end = Some(Arc::new(hook));
        self
    }
}
