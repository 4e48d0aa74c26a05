//! Stale-while-revalidate (the default): one task refreshes while callers
//! go on with the still-valid token; and the setting that chooses it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::current::Generation;
use super::flight::Trigger;
use super::{TokenManager, TokenManagerBuilder};

/// What a request does when it meets a token inside the
/// [`leeway`](crate::TokenManagerBuilder::leeway) of its expiry, still valid.
/// Set with [`refresh_mode`](crate::TokenManagerBuilder::refresh_mode).
///
/// In both modes a refresh is single flight, its new tokens are saved (and
/// `on_refresh` told) before any request uses them, and a request whose
/// token has expired waits for the refresh (bounded by
/// [`refresh_timeout`](crate::TokenManagerBuilder::refresh_timeout)) and
/// gets its error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshMode {
    /// The request goes out with the still-valid token while one task (of
    /// its own, so it completes whoever gave up) refreshes: no request
    /// waits for a refresh it did not need, so a rollover costs no latency
    /// (like MSAL's `refresh_in` and google-auth's non-blocking refresh).
    /// The refresh point is jittered over the last quarter of the margin so
    /// that a fleet does not refresh at once. A failed refresh is logged
    /// and retried by a later request (after the failure cooldown) while
    /// the token is valid.
    #[default]
    StaleWhileRevalidate,
    /// The request waits for the refresh and goes out with the new token;
    /// should the refresh fail, it goes out with the still-valid token. For
    /// an application that wants every request after the refresh point to
    /// carry a new token, or no task spawned on its runtime.
    Blocking,
}

/// The refresh mode, set on the builder.
impl TokenManagerBuilder {
    /// What a request does with a token inside the leeway: go on with it
    /// while one task refreshes ([`RefreshMode::StaleWhileRevalidate`], the
    /// default) or wait for the refresh ([`RefreshMode::Blocking`]).
    ///
    /// ```
    /// # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
    /// use reqwest_oauth2_refresh::{RefreshMode, TokenManager};
    /// let manager = TokenManager::builder("https://auth.example.com/oauth/token")
    ///     .client_id("my-app")
    ///     .refresh_mode(RefreshMode::Blocking)
    ///     .build()?;
    /// # let _ = manager; Ok(()) }
    /// ```
    pub fn refresh_mode(mut self, mode: RefreshMode) -> Self {
        self.refresh_mode = mode;
        self
    }

    /// `true`: [`RefreshMode::StaleWhileRevalidate`] (the default);
    /// `false`: [`RefreshMode::Blocking`]. Kept from before the mode was
    /// the default; [`refresh_mode`](Self::refresh_mode) says what it means.
    pub fn background_refresh(self, enabled: bool) -> Self {
        self.refresh_mode(if enabled {
            RefreshMode::StaleWhileRevalidate
        } else {
            RefreshMode::Blocking
        })
    }
}

/// At most one background refresh at a time.
#[derive(Debug, Default)]
pub(crate) struct BackgroundRefresh {
    pending: Arc<AtomicBool>,
}

/// Clears the pending flag when the task ends, however it ends (a panic
/// included): a flag left set would stop background refresh for good.
struct Pending(Arc<AtomicBool>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl BackgroundRefresh {
    /// Starts a refresh of `generation` in a task of its own, unless one is
    /// under way. Without a Tokio runtime there is no task to start: the
    /// caller goes on with the valid token and a later call tries again.
    pub(crate) fn start(&self, manager: &TokenManager, generation: Generation) {
        if self
            .pending
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let pending = Pending(self.pending.clone());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "no Tokio runtime to refresh in the background; the valid token is used"
            );
            return;
        };
        let manager = manager.clone();
        runtime.spawn(async move {
            let _pending = pending;
            if let Err(error) = manager
                .refresh_generation(generation, Trigger::Background)
                .await
            {
                // Once per set: each request in the cooldown starts a task
                // that meets the same failure, and its leader logged it.
                let first = (manager.inner.published.get())
                    .is_some_and(|c| c.generation() == generation && c.first_stale_use());
                if first {
                    tracing::warn!(error = %error,
                        "background refresh failed; the current token is used while it is valid");
                } else {
                    tracing::debug!(error = %error, "background refresh failed");
                }
            }
        });
    }
}
