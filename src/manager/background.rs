//! Stale-while-revalidate (the default): one task refreshes while callers
//! go on with the still-valid token; and the setting that chooses it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

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
    /// its own, so it completes whoever gave up) refreshes: no request is
    /// held back for a refresh it did not need, so a rollover costs no
    /// latency (like MSAL's `refresh_in` and google-auth's non-blocking
    /// refresh). The refresh point is jittered over the last quarter of the
    /// margin so that a fleet does not refresh at once. A failed refresh is
    /// logged and retried by a later request (after the failure cooldown)
    /// while the token is valid.
    ///
    /// The one request that starts the refresh, sent through the middleware
    /// or the tower layer, goes out at once too, but its response is handed
    /// back once the refresh has ended: a program that awaits its requests
    /// before it exits never leaves a rotation half way (the server spent
    /// the old refresh token, the new one would die with the process). For
    /// tokens read otherwise, call
    /// [`TokenManager::shutdown`](crate::TokenManager::shutdown) before the
    /// program exits.
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

/// At most one background refresh at a time, and none once the manager is
/// shut down.
#[derive(Debug)]
pub(crate) struct BackgroundRefresh {
    state: Arc<watch::Sender<State>>,
    /// The longest anyone waits for the task: a caller's bound on a
    /// refresh, which every refresh ends within.
    wait: Duration,
}

#[derive(Debug, Default)]
struct State {
    running: bool,
    closed: bool,
    /// Tasks started so far: a waiter waits for its own, not the next.
    started: u64,
}

/// What [`BackgroundRefresh::start`] did.
pub(crate) enum Started {
    /// This call started the task: the caller may wait for it.
    Task(RefreshInFlight),
    /// One is under way already (or there is no runtime to start one in).
    Running,
    /// The manager is shut down: the caller refreshes in the foreground.
    Closed,
}

/// A background refresh this caller started. The middleware and the tower
/// layer wait for it before they hand back the response of the request that
/// started it, so that a program that awaits its requests before it exits
/// never exits in the middle of a rotation (the server has spent the old
/// refresh token; the new one would die with the process).
#[must_use]
pub(crate) struct RefreshInFlight {
    state: watch::Receiver<State>,
    task: u64,
    wait: Duration,
}

impl RefreshInFlight {
    /// Waits, at most the flight's bound, for the refresh to end.
    pub(crate) async fn finish(mut self) {
        let task = self.task;
        let ended = self
            .state
            .wait_for(|state| !state.running || state.started != task);
        let _ = tokio::time::timeout(self.wait, ended).await;
    }
}

/// Clears the running flag when the task ends, however it ends (a panic
/// included): a flag left set would stop background refresh for good.
struct Pending(Arc<watch::Sender<State>>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.send_modify(|state| state.running = false);
    }
}

impl BackgroundRefresh {
    pub(crate) fn new(wait: Duration) -> Self {
        Self {
            state: Arc::default(),
            wait,
        }
    }

    /// Starts a refresh of `generation` in a task of its own, unless one is
    /// under way or the manager is shut down. Without a Tokio runtime there
    /// is no task to start: the caller goes on with the valid token and a
    /// later call tries again.
    pub(crate) fn start(&self, manager: &TokenManager, generation: Generation) -> Started {
        let mut closed = false;
        let started = self.state.send_if_modified(|state| {
            closed = state.closed;
            let start = !state.running && !state.closed;
            if start {
                state.running = true;
                state.started += 1;
            }
            start
        });
        if !started {
            return if closed {
                Started::Closed
            } else {
                Started::Running
            };
        }
        let pending = Pending(self.state.clone());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "no Tokio runtime to refresh in the background; the valid token is used"
            );
            return Started::Running;
        };
        let state = self.state.subscribe();
        let task = state.borrow().started;
        let in_flight = RefreshInFlight {
            state,
            task,
            wait: self.wait,
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
        Started::Task(in_flight)
    }

    /// Starts no more background refreshes, and waits for the one under
    /// way. `Err` with the bound if it did not end within it.
    pub(crate) async fn close(&self) -> Result<(), Duration> {
        self.state.send_modify(|state| state.closed = true);
        let mut state = self.state.subscribe();
        let ended = state.wait_for(|state| !state.running);
        match tokio::time::timeout(self.wait, ended).await {
            Ok(_) => Ok(()),
            Err(_) => Err(self.wait),
        }
    }
}
