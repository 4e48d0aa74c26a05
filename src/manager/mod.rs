//! The token manager: the published token set, single-flight refresh,
//! proactive refresh, rotation and persistence.
//!
//! The path of a refresh, one file a step: [`TokenManager::access_token`]
//! (here) → [`flight`] (`Flight::join`: lead or follow) → [`refresh`] (spend
//! or adopt, save through the [`persist`] session) → back in [`flight`]
//! (`FlightGuard::publish`, into [`current`]'s published slot).

mod adapters;
mod background;
mod budgets;
mod build;
mod builder;
mod current;
mod discover;
mod events;
mod flight;
mod keys;
use keys::GrantKind;
mod persist;
mod refresh;
mod revoke;
mod shutdown;
mod trigger;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use tracing::Instrument as _;

pub(crate) use background::RefreshInFlight;
pub use builder::{
    DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_FAILURE_COOLDOWN, DEFAULT_LEEWAY, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES, DEFAULT_REFRESH_TIMEOUT, DEFAULT_REJECTED_TOKEN_MIN_AGE,
    DEFAULT_RETRY_BASE_DELAY, DEFAULT_STORE_TIMEOUT, TokenManagerBuilder,
};
pub(crate) use current::{Applied, Lease};

use crate::clock::Clock;
use crate::endpoint::TokenEndpoint;
use crate::error::Error;
use crate::telemetry::RefreshRun;
use crate::token::{AccessToken, TokenSet};
use crate::util::finish_on_drop::FinishOnDrop;
use background::{BackgroundRefresh, Started};
use budgets::Budgets;
use current::{Current, Generation, Published};
use events::Events;
use flight::{Flight, Joined, Trigger};
use persist::StoreOps;

pub use background::RefreshMode;
pub use events::SessionEnd;

/// Keeps one OAuth 2.0 token set fresh and shares it between tasks.
///
/// A `TokenManager` is a cheap handle: clones share one state, one refresh
/// lock and one store. It works on its own (a gRPC interceptor, a websocket
/// handshake) as well as behind [`OAuth2Middleware`](crate::OAuth2Middleware).
///
/// - [`access_token`](TokenManager::access_token) returns a valid token. With
///   a fresh token it takes no lock and allocates nothing. Within the leeway
///   of expiry it returns the still-valid token while one task refreshes
///   ([`RefreshMode::StaleWhileRevalidate`], the default), or refreshes
///   first ([`RefreshMode::Blocking`]); an expired token is always
///   refreshed first.
/// - Refreshes are single flight: however many tasks need one at the same
///   time, the token endpoint is called once and all of them get its result,
///   success or error. The first load from the store is shared the same way.
/// - A rotated refresh token is saved to the store, and `on_refresh` is
///   called, before any caller sees the new access token. When the server
///   returns no refresh token, the old one is kept.
/// - A caller that gives up during a refresh (a timeout, a dropped future)
///   cannot abandon it half way and lose a rotated refresh token: the
///   refresh moves to a task of its own and completes.
/// - Loading and refreshing need a Tokio runtime (current-thread or
///   multi-thread, with timers, as `#[tokio::main]` gives); without one they
///   return [`Error::Config`] instead of panicking. A fresh token is read
///   without one.
///
/// ```no_run
/// # async fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
/// use std::time::Duration;
/// use reqwest_oauth2_refresh::{TokenManager, TokenSet};
///
/// let manager = TokenManager::builder("https://oauth2.googleapis.com/token")
///     .client_id("my-app")
///     .client_secret(std::env::var("CLIENT_SECRET").unwrap_or_default())
///     .initial_tokens(
///         TokenSet::new("ya29.current-access-token")
///             .with_refresh_token("1//refresh-token")
///             .with_expires_in(Duration::from_secs(3599)),
///     )
///     .on_refresh(|tokens| println!("new tokens, expiring at {:?}", tokens.expires_at()))
///     .build()?;
/// let token = manager.access_token().await?;
/// # let _ = token; Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

/// What the builder hands over.
struct Parts {
    endpoint: TokenEndpoint,
    store: Arc<dyn crate::store::TokenStore>,
    seed: Option<TokenSet>,
    grant: GrantKind,
    revocation_url: Option<Url>,
    events: Events,
    clock: Arc<dyn Clock>,
    leeway: Duration,
    background: Option<BackgroundRefresh>,
    failure_cooldown: Duration,
    rejected_token_min_age: Duration,
    budgets: Budgets,
}

struct Inner {
    /// What the hot path reads; `None` until the first load.
    published: Arc<Published>,
    flight: Flight,
    endpoint: TokenEndpoint,
    store: StoreOps,
    /// The builder's tokens, until they seed the store; gone after revoke.
    seed: std::sync::Mutex<Option<TokenSet>>,
    /// The last set revoked, in case the store could not forget it.
    revoked: std::sync::Mutex<Option<TokenSet>>,
    grant: GrantKind,
    revocation_url: Option<Url>,
    events: Events,
    clock: Arc<dyn Clock>,
    background: Option<BackgroundRefresh>,
    rejected_token_min_age: Duration,
}

impl Inner {
    fn new(parts: Parts) -> Self {
        let published = Arc::new(Published::new(
            parts.leeway,
            parts.background.is_some(),
            parts.clock.clone(),
        ));
        let flight = Flight::new(
            published.clone(),
            parts.clock.clone(),
            parts.failure_cooldown,
            parts.budgets.flight_wait,
        );
        Self {
            published,
            flight,
            endpoint: parts.endpoint,
            store: StoreOps::new(parts.store, parts.budgets),
            seed: std::sync::Mutex::new(parts.seed),
            revoked: std::sync::Mutex::new(None),
            grant: parts.grant,
            revocation_url: parts.revocation_url,
            events: parts.events,
            clock: parts.clock,
            background: parts.background,
            rejected_token_min_age: parts.rejected_token_min_age,
        }
    }

    fn seed(&self) -> Option<TokenSet> {
        self.seed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn remember_revoked(&self, tokens: &TokenSet) {
        *self.revoked.lock().unwrap_or_else(|e| e.into_inner()) = Some(tokens.clone());
    }

    /// Whether `tokens` are the set this manager revoked.
    fn was_revoked(&self, tokens: &TokenSet) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|revoked| {
                revoked.access_token() == tokens.access_token()
                    && revoked.refresh_token() == tokens.refresh_token()
            })
    }

    /// Tells `on_refresh` of a new token set.
    fn announce(&self, tokens: &TokenSet) {
        self.events.refreshed(tokens);
    }
}

/// Loading and refreshing spawn tasks and use timers: say so instead of
/// letting tokio panic outside a runtime.
fn ensure_runtime() -> Result<(), Error> {
    tokio::runtime::Handle::try_current()
        .map(|_| ())
        .map_err(|_| {
            Error::Config(
                "loading or refreshing tokens needs a Tokio runtime; none is running here".into(),
            )
        })
}

impl TokenManager {
    /// Starts building a manager for the token endpoint at `token_url`.
    pub fn builder(token_url: &str) -> TokenManagerBuilder {
        TokenManagerBuilder::new(token_url)
    }

    fn from_inner(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// A valid access token: the current one, or a new one if the current one
    /// has expired. Within the leeway of its expiry the current one is
    /// returned while one task refreshes it; with
    /// [`RefreshMode::Blocking`] the call waits for that refresh.
    ///
    /// When a refresh before expiry fails and the current token is still
    /// valid, the current token is returned (and the failure logged); the
    /// error surfaces once the token has expired.
    pub async fn access_token(&self) -> Result<AccessToken, Error> {
        let inner = &self.inner;
        if let Some(token) = inner
            .published
            .with_fresh(inner.clock.as_ref(), |c| c.tokens().access_token().clone())
        {
            return Ok(token);
        }
        Ok(self.current().await?.tokens().access_token().clone())
    }

    /// Forces a refresh now and returns the new token set. Single flight:
    /// callers that ask at the same time share one refresh.
    pub async fn refresh(&self) -> Result<TokenSet, Error> {
        let current = self.loaded().await?;
        let next = self
            .refresh_generation(current.generation(), Trigger::Forced)
            .await?;
        Ok(next.tokens().clone())
    }

    /// Replaces the token set (after a new sign-in, say): saves it to the
    /// store, calls `on_refresh`, and uses it from now on.
    ///
    /// ```no_run
    /// # async fn run(manager: reqwest_oauth2_refresh::TokenManager, body: Vec<u8>) -> Result<(), reqwest_oauth2_refresh::Error> {
    /// use reqwest_oauth2_refresh::TokenSet;
    /// // `body`: the token endpoint's answer to the new sign-in's code exchange.
    /// manager.set_tokens(TokenSet::from_token_response(&body)?).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_tokens(&self, tokens: TokenSet) -> Result<(), Error> {
        current::bearer_header(&tokens).map_err(|_| {
            Error::Config("the access token cannot be sent in an HTTP header".into())
        })?;
        ensure_runtime()?;
        let guard = self.inner.flight.exclusive().await?;
        let saved = self.inner.store.save(&tokens).await;
        self.inner.announce(&tokens);
        guard.publish(tokens, saved.is_ok())?;
        saved
    }

    /// The current token set, loaded from the store (or the builder's
    /// initial tokens) the first time; never refreshes, so nothing is spent.
    /// A client-credentials manager with no token yet asks for its first one.
    pub async fn load_tokens(&self) -> Result<TokenSet, Error> {
        Ok(self.loaded().await?.tokens().clone())
    }

    /// Renamed [`load_tokens`](Self::load_tokens), which says what it does.
    #[deprecated(since = "0.2.0", note = "renamed to `load_tokens`")]
    pub async fn tokens(&self) -> Result<TokenSet, Error> {
        self.load_tokens().await
    }

    /// A copy of the token set in memory, if one has been loaded; no I/O,
    /// no refresh.
    pub fn cached_tokens(&self) -> Option<TokenSet> {
        self.inner.published.get().map(|c| c.tokens().clone())
    }

    /// Renamed [`cached_tokens`](Self::cached_tokens), which says what it does.
    #[deprecated(since = "0.2.0", note = "renamed to `cached_tokens`")]
    pub fn current_tokens(&self) -> Option<TokenSet> {
        self.cached_tokens()
    }

    /// The current set, refreshed first if it is stale.
    async fn current(&self) -> Result<Arc<Current>, Error> {
        Ok(self.current_starting().await?.0)
    }

    /// [`current`](Self::current), with the background refresh it started.
    async fn current_starting(&self) -> Result<(Arc<Current>, Option<RefreshInFlight>), Error> {
        let current = self.loaded().await?;
        let now = self.inner.clock.now();
        if current.is_fresh(now) {
            return Ok((current, None));
        }
        if let Some(background) = &self.inner.background
            && !current.is_expired(now)
        {
            match background.start(self, current.generation()) {
                Started::Task(in_flight) => return Ok((current, Some(in_flight))),
                Started::Running => return Ok((current, None)),
                Started::Closed => {}
            }
        }
        Ok((self.refresh_stale(current).await?, None))
    }

    /// Refreshes `current` in the caller's task; the still-valid `current`
    /// if that fails.
    async fn refresh_stale(&self, current: Arc<Current>) -> Result<Arc<Current>, Error> {
        match self
            .refresh_generation(current.generation(), Trigger::Expiry)
            .await
        {
            Ok(next) => Ok(next),
            Err(error) if !current.is_expired(self.inner.clock.now()) => {
                // Once per set: every caller of the cooldown gets the same
                // error, and each attempt's failure is logged by its leader.
                if current.first_stale_use() {
                    tracing::warn!(error = %error,
                        "refresh before expiry failed; using the current token while it is valid");
                } else {
                    tracing::debug!(error = %error, "refresh before expiry failed; using the current token");
                }
                Ok(current)
            }
            Err(error) => Err(error),
        }
    }

    /// The published set, loading it the first time (single flight, like a
    /// refresh of "nothing").
    async fn loaded(&self) -> Result<Arc<Current>, Error> {
        match self.inner.published.get() {
            Some(current) => Ok(current),
            None => {
                self.refresh_generation(Generation::NONE, Trigger::Load)
                    .await
            }
        }
    }

    /// Single flight: replaces the set of `generation` unless a newer one
    /// exists or another caller's attempt for it just failed. The leader's
    /// work runs in its own task's poll (so the token request goes out at
    /// once) and moves to a task of its own if the caller gives up.
    async fn refresh_generation(
        &self,
        generation: Generation,
        trigger: Trigger,
    ) -> Result<Arc<Current>, Error> {
        ensure_runtime()?;
        let guard = match self.inner.flight.join(generation, trigger).await {
            Joined::Follow(outcome) => return outcome,
            Joined::Lead(guard) => guard,
        };
        let inner = self.inner.clone();
        let span = RefreshRun::span(trigger.label(), generation.get());
        let mut record = RefreshRun::start(trigger.label());
        let work = async move {
            let result = match guard.current() {
                None => refresh::first_load(inner, guard, &mut record).await,
                Some(current) => refresh::run(inner, guard, current, trigger, &mut record).await,
            };
            record.finish(&result);
            result
        };
        FinishOnDrop::new(work.instrument(span)).await
    }
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("TokenManager")
            .field("token_url", &inner.endpoint.url().as_str())
            .field("client_id", &inner.endpoint.client_id())
            .field("client_auth", &inner.endpoint.client_auth())
            .field(
                "generation",
                &inner.published.get().map(|c| c.generation().get()),
            )
            .field("store", inner.store.store())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
