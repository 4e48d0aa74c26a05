//! The token manager: the current token set, single-flight refresh,
//! proactive refresh, rotation and persistence.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use reqwest::Url;
use reqwest::header::HeaderValue;
use tokio::sync::{Mutex, OwnedMutexGuard, watch};
use tracing::Instrument as _;

use crate::clock::{Clock, SystemClock};
use crate::endpoint::{ClientAuth, ClientSecret, Grant, RetryPolicy, TokenEndpoint, TokenKind};
use crate::error::BoxError;
use crate::error::Error;
use crate::store::{LockedSave, MemoryStore, StoreLock, TokenStore};
use crate::token::{AccessToken, TokenSet};

/// How long before expiry a token is refreshed, at most (it is also capped at
/// half the token's lifetime).
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// The time budget of one refresh, retries included.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(30);
/// The timeout of one request to the token endpoint.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a transient token-endpoint failure is retried.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// The first retry's delay; each further retry doubles it (with jitter).
pub const DEFAULT_RETRY_BASE_DELAY: Duration = Duration::from_millis(250);
/// After a failed refresh, how long further callers get the same error
/// instead of another call to the token endpoint.
pub const DEFAULT_FAILURE_COOLDOWN: Duration = Duration::from_secs(5);
/// The largest token response that is read.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The time a store gets to load or save.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(10);

type RefreshHook = Arc<dyn Fn(&TokenSet) + Send + Sync + 'static>;

/// Keeps one OAuth 2.0 token set fresh and shares it between tasks.
///
/// A `TokenManager` is a cheap handle: clones share one state, one refresh
/// lock and one store. It works on its own (a gRPC interceptor, a websocket
/// handshake) as well as behind [`OAuth2Middleware`](crate::OAuth2Middleware).
///
/// - [`access_token`](TokenManager::access_token) returns a valid token. With
///   a fresh token it takes no lock and allocates nothing; within the leeway
///   of expiry it refreshes first.
/// - Refreshes are single flight: however many tasks need one at the same
///   time, the token endpoint is called once and all of them get its result,
///   success or error.
/// - A rotated refresh token is saved to the store, and `on_refresh` is
///   called, before any caller sees the new access token. When the server
///   returns no refresh token, the old one is kept.
/// - A caller that gives up during a refresh (a timeout, a dropped future)
///   cannot abandon it half way and lose a rotated refresh token: the
///   refresh moves to a task of its own and completes.
///
/// ```no_run
/// # async fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
/// use std::time::Duration;
/// use reqwest_oauth2_refresh::{TokenManager, TokenSet};
///
/// let manager = TokenManager::builder("https://oauth2.googleapis.com/token")
///     .client_id("my-app")
///     .client_secret(std::env::var("CLIENT_SECRET").unwrap_or_default())
///     .tokens(
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

struct Inner {
    /// `None` until the first token is needed and the store has been read.
    current: ArcSwapOption<Current>,
    /// Held for the whole of a refresh (or a load, or a save), by the task
    /// that performs it.
    flight: Arc<Mutex<FlightState>>,
    /// Announces the end of each refresh attempt, with its failure if it
    /// failed: waiters learn the outcome from it without queueing for the
    /// lock one after another.
    attempt_ends: watch::Sender<AttemptEnd>,
    endpoint: TokenEndpoint,
    store: Arc<dyn TokenStore>,
    /// The builder's tokens, until they seed the store; gone after revoke.
    seed: std::sync::Mutex<Option<TokenSet>>,
    grant: GrantKind,
    revocation_url: Option<Url>,
    on_refresh: Option<RefreshHook>,
    clock: Arc<dyn Clock>,
    leeway: Duration,
    background_refresh: bool,
    background_pending: AtomicBool,
    failure_cooldown: Duration,
    store_timeout: Duration,
}

/// What a caller queued for a refresh got first.
enum Waited<L> {
    Locked(L),
    AttemptEnded(Option<(u64, Error)>),
}

/// The refresh attempts finished so far, and how the last one failed.
#[derive(Debug, Default)]
struct AttemptEnd {
    count: u64,
    /// The generation the failed attempt tried to replace, and its error.
    failure: Option<(u64, Error)>,
}

#[derive(Default)]
struct FlightState {
    /// The generation of the last published set; never reused, so a late
    /// 401 for a set from before a revoke cannot be mistaken for the current.
    generation: u64,
    last_failure: Option<Failure>,
}

struct Failure {
    generation: u64,
    at: SystemTime,
    error: Error,
}

impl Failure {
    /// Errors that no retry can fix until the tokens change.
    fn is_permanent(&self) -> bool {
        matches!(
            self.error,
            Error::InvalidGrant { .. } | Error::NoRefreshToken | Error::Config(_)
        )
    }
}

/// One published token set, with everything the hot path needs precomputed.
pub(crate) struct Current {
    pub(crate) generation: u64,
    pub(crate) tokens: TokenSet,
    /// `Bearer <token>`, marked sensitive, built once per refresh.
    pub(crate) header: HeaderValue,
    refresh_at: Option<SystemTime>,
    expires_at: Option<SystemTime>,
    /// Whether the store holds this set; a set whose save failed must not
    /// be replaced by the older stored one, whose refresh token is spent.
    persisted: AtomicBool,
}

impl Current {
    /// `jitter` spreads the refresh point over the last quarter of the
    /// margin, so that a fleet started together does not refresh together.
    fn new(
        generation: u64,
        tokens: TokenSet,
        leeway: Duration,
        jitter: bool,
    ) -> Result<Self, Error> {
        let header = bearer_header(&tokens)?;
        // The first clone of a freshly built header moves its bytes into a
        // shared allocation; doing it here keeps every later clone (one per
        // request) to a reference-count increment.
        drop(header.clone());
        let expires_at = tokens.expires_at();
        let refresh_at = tokens.expires_in().and_then(|lifetime| {
            // Never refresh earlier than half-way through the lifetime, so
            // that servers issuing tokens for seconds do not cause a refresh
            // on every request.
            let mut margin = leeway.min(lifetime / 2);
            if jitter {
                margin = margin.mul_f64(0.75 + 0.25 * random_fraction());
            }
            expires_at.and_then(|at| at.checked_sub(margin))
        });
        Ok(Self {
            generation,
            tokens,
            header,
            refresh_at,
            expires_at,
            persisted: AtomicBool::new(true),
        })
    }

    fn is_fresh(&self, now: SystemTime) -> bool {
        self.refresh_at.is_none_or(|at| now < at)
    }

    fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// What caused a refresh, for logs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trigger {
    Expiry,
    Background,
    Rejected,
    Forced,
}

/// A number in [0, 1) from OS-seeded hashing; jitter needs no better.
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// `Bearer <token>`, marked sensitive.
fn bearer_header(tokens: &TokenSet) -> Result<HeaderValue, Error> {
    let mut header = HeaderValue::try_from(format!("Bearer {}", tokens.access_token().secret()))
        .map_err(|_| {
            Error::invalid_response("the access token cannot be sent in an HTTP header")
        })?;
    header.set_sensitive(true);
    Ok(header)
}

/// How the manager gets a new token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GrantKind {
    /// Spend the refresh token (RFC 6749 §6).
    RefreshToken,
    /// Ask for a new token for the client itself (RFC 6749 §4.4).
    ClientCredentials,
}

/// Polls a future in the caller's task, and if the caller drops it before it
/// is done, finishes it in a task of its own: a refresh that has spent its
/// refresh token must get to save the new one.
struct FinishOnDrop<F: Future + Send + 'static>
where
    F::Output: Send,
{
    future: Option<Pin<Box<F>>>,
}

impl<F: Future + Send + 'static> FinishOnDrop<F>
where
    F::Output: Send,
{
    fn new(future: F) -> Self {
        Self {
            future: Some(Box::pin(future)),
        }
    }
}

impl<F: Future + Send + 'static> Future for FinishOnDrop<F>
where
    F::Output: Send,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let Some(future) = this.future.as_mut() else {
            return Poll::Pending;
        };
        let output = std::task::ready!(future.as_mut().poll(cx));
        this.future = None;
        Poll::Ready(output)
    }
}

impl<F: Future + Send + 'static> Drop for FinishOnDrop<F>
where
    F::Output: Send,
{
    fn drop(&mut self) {
        if let Some(future) = self.future.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                future.await;
            });
        }
    }
}

/// How a refresh ended well.
enum Outcome {
    /// We spent the refresh token; `saved` says whether the store has the
    /// new set.
    Refreshed {
        tokens: TokenSet,
        saved: Result<(), Error>,
    },
    /// Another holder of the store had refreshed already; we use its set.
    Adopted(TokenSet),
}

/// Whether two sets are different tokens (not just differently stamped).
fn differs(a: &TokenSet, b: &TokenSet) -> bool {
    a.access_token() != b.access_token() || a.refresh_token() != b.refresh_token()
}

/// The longest we wait for another process's refresh: its budget plus its
/// store operations.
fn store_lock_wait(inner: &Inner) -> Duration {
    inner.endpoint.retry.budget + inner.store_timeout * 3
}

/// A store operation with the store's timeout.
async fn bounded<T>(
    inner: &Inner,
    operation: &'static str,
    future: impl Future<Output = Result<T, BoxError>>,
) -> Result<T, Error> {
    match tokio::time::timeout(inner.store_timeout, future).await {
        Ok(result) => result.map_err(|e| Error::store(operation, e)),
        Err(_) => Err(Error::Timeout(inner.store_timeout)),
    }
}

/// A save under the store's lock, in its own task so that a panicking store
/// cannot take the refresh (and its spent refresh token) down with it.
async fn locked_save(
    inner: &Inner,
    mut lock: Box<dyn StoreLock>,
    tokens: &TokenSet,
) -> (Option<Box<dyn StoreLock>>, Result<LockedSave, Error>) {
    let tokens = tokens.clone();
    let task = tokio::spawn(async move {
        let saved = lock.save(&tokens).await;
        (lock, saved)
    });
    match tokio::time::timeout(inner.store_timeout, task).await {
        Err(_) => (None, Err(Error::Timeout(inner.store_timeout))),
        Ok(Err(_)) => (None, Err(Error::store("save", "the store panicked".into()))),
        Ok(Ok((lock, saved))) => (Some(lock), saved.map_err(|e| Error::store("save", e))),
    }
}

impl TokenManager {
    /// Starts building a manager for the token endpoint at `token_url`.
    pub fn builder(token_url: &str) -> TokenManagerBuilder {
        TokenManagerBuilder::new(token_url)
    }

    /// A valid access token: the current one, or a new one if the current one
    /// is expired or within the leeway of its expiry.
    ///
    /// When a refresh before expiry fails and the current token is still
    /// valid, the current token is returned (and the failure logged); the
    /// error surfaces once the token has expired.
    pub async fn access_token(&self) -> Result<AccessToken, Error> {
        if let Some(token) = self.with_fresh(|current| current.tokens.access_token().clone()) {
            return Ok(token);
        }
        Ok(self.current().await?.tokens.access_token().clone())
    }

    /// The hot path: `read` from the current set if it is fresh, through an
    /// `ArcSwap` guard (no reference count, no lock), with the clock read
    /// only for a set that expires.
    #[inline]
    fn with_fresh<T>(&self, read: impl FnOnce(&Current) -> T) -> Option<T> {
        let guard = self.inner.current.load();
        let current = guard.as_ref()?;
        match current.refresh_at {
            Some(at) if self.inner.clock.now() >= at => None,
            _ => Some(read(current)),
        }
    }

    /// Forces a refresh now and returns the new token set. Single flight:
    /// callers that ask at the same time share one refresh.
    pub async fn refresh(&self) -> Result<TokenSet, Error> {
        let current = self.loaded().await?;
        let next = self
            .refresh_generation(current.generation, Trigger::Forced)
            .await?;
        Ok(next.tokens.clone())
    }

    /// Replaces the token set (after a new sign-in, say): saves it to the
    /// store, calls `on_refresh`, and uses it from now on.
    pub async fn set_tokens(&self, tokens: TokenSet) -> Result<(), Error> {
        bearer_header(&tokens).map_err(|_| {
            Error::Config("the access token cannot be sent in an HTTP header".into())
        })?;
        let mut flight = self.lock_flight().await?;
        let saved = self.save(&tokens).await;
        self.publish(tokens, saved.is_ok(), &mut flight)?;
        saved
    }

    /// The current token set, loaded from the store (or the builder's
    /// tokens) the first time; never refreshes, so nothing is spent. A
    /// client-credentials manager with no token yet asks for its first one.
    pub async fn tokens(&self) -> Result<TokenSet, Error> {
        Ok(self.loaded().await?.tokens.clone())
    }

    /// A copy of the current token set, if one has been loaded.
    pub fn current_tokens(&self) -> Option<TokenSet> {
        self.inner
            .current
            .load()
            .as_ref()
            .map(|current| current.tokens.clone())
    }

    /// Ends the session: revokes the refresh token at the revocation
    /// endpoint (RFC 7009, `token_type_hint=refresh_token`; the access token
    /// when there is no refresh token), then clears the stored token set.
    /// Afterwards the manager has no tokens until
    /// [`set_tokens`](Self::set_tokens); the builder's tokens are not used
    /// again. (A client-credentials manager asks for a new grant when next
    /// needed: its session is the client itself.)
    ///
    /// The server answers 200 also for a token it does not know, so revoking
    /// twice is fine; a 503 is retried like a refresh.
    pub async fn revoke(&self) -> Result<(), Error> {
        let url = self.revocation_url()?;
        let current = match self.loaded().await {
            Ok(current) => Some(current),
            Err(Error::NoTokens) => None,
            Err(error) => return Err(error),
        };
        let inner = &self.inner;
        let mut flight = self.lock_flight().await?;
        // A refresh may have finished while we waited: revoke what is current.
        let current = inner.current.load_full().or(current);
        if let Some(current) = current {
            let tokens = &current.tokens;
            let (token, kind) = match tokens.refresh_token() {
                Some(refresh) => (refresh.secret(), TokenKind::Refresh),
                None => (tokens.access_token().secret(), TokenKind::Access),
            };
            inner
                .endpoint
                .revoke(url, token, kind, inner.clock.as_ref())
                .await?;
            tracing::info!("the session's tokens were revoked");
        }
        *inner.seed.lock().unwrap_or_else(|e| e.into_inner()) = None;
        inner.current.store(None);
        flight.last_failure = None;
        bounded(inner, "clear", inner.store.clear()).await
    }

    /// Revokes only the current access token (RFC 7009,
    /// `token_type_hint=access_token`). The manager then treats it as
    /// expired, so the next request gets a new one first instead of a 401.
    ///
    /// The refresh token is kept, but RFC 7009 §2.1 lets a server revoke the
    /// whole grant with it (oidc-provider does): the next refresh may then
    /// fail with [`Error::InvalidGrant`].
    pub async fn revoke_access_token(&self) -> Result<(), Error> {
        let url = self.revocation_url()?;
        let current = self.loaded().await?;
        let inner = &self.inner;
        inner
            .endpoint
            .revoke(
                url,
                current.tokens.access_token().secret(),
                TokenKind::Access,
                inner.clock.as_ref(),
            )
            .await?;
        let mut flight = self.lock_flight().await?;
        if let Some(now_current) = inner.current.load_full()
            && now_current.generation == current.generation
        {
            let mut tokens = current.tokens.clone();
            tokens.expire_at(inner.clock.now());
            let persisted = current.persisted.load(Ordering::SeqCst);
            self.publish(tokens, persisted, &mut flight)?;
        }
        Ok(())
    }

    fn revocation_url(&self) -> Result<&Url, Error> {
        self.inner.revocation_url.as_ref().ok_or_else(|| {
            Error::Config(
                "no revocation endpoint: set revocation_url, or build with discover".into(),
            )
        })
    }

    /// The current `Authorization` value and its generation, if the token
    /// is fresh: one atomic load, a clock read and a reference-count
    /// increment. Synchronous, so that the middleware's future does not
    /// carry the slow path.
    pub(crate) fn fresh_bearer(&self) -> Option<(HeaderValue, u64)> {
        self.with_fresh(|c| (c.header.clone(), c.generation))
    }

    /// The slow path of [`fresh_bearer`](Self::fresh_bearer): load, or
    /// refresh first.
    pub(crate) async fn bearer(&self) -> Result<(HeaderValue, u64), Error> {
        let current = self.current().await?;
        Ok((current.header.clone(), current.generation))
    }

    /// After the API rejected the token of `generation`: refreshes it unless a
    /// newer token exists already, and returns the token to replay with.
    pub(crate) async fn refresh_rejected(&self, generation: u64) -> Result<HeaderValue, Error> {
        let next = self
            .refresh_generation(generation, Trigger::Rejected)
            .await?;
        Ok(next.header.clone())
    }

    /// The current token, refreshed first if it is stale.
    async fn current(&self) -> Result<Arc<Current>, Error> {
        let current = self.loaded().await?;
        let now = self.inner.clock.now();
        if current.is_fresh(now) {
            return Ok(current);
        }
        if self.inner.background_refresh && !current.is_expired(now) {
            self.refresh_in_background(current.generation);
            return Ok(current);
        }
        match self
            .refresh_generation(current.generation, Trigger::Expiry)
            .await
        {
            Ok(next) => Ok(next),
            Err(error) if !current.is_expired(self.inner.clock.now()) => {
                tracing::warn!(
                    error = %error,
                    "refresh before expiry failed; using the current token while it is valid"
                );
                Ok(current)
            }
            Err(error) => Err(error),
        }
    }

    /// Stale-while-revalidate: one task refreshes while callers go on with
    /// the still-valid token.
    fn refresh_in_background(&self, generation: u64) {
        let pending = &self.inner.background_pending;
        if pending
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(error) = this
                .refresh_generation(generation, Trigger::Background)
                .await
            {
                tracing::warn!(
                    error = %error,
                    "background refresh failed; the current token is used while it is valid"
                );
            }
            this.inner
                .background_pending
                .store(false, Ordering::Release);
        });
    }

    /// The current token set, loading it from the store (or the builder's
    /// seed) the first time.
    async fn loaded(&self) -> Result<Arc<Current>, Error> {
        if let Some(current) = self.inner.current.load_full() {
            return Ok(current);
        }
        let inner = &self.inner;
        let attempts_before = self.attempts();
        let mut flight = self.lock_flight().await?;
        if let Some(current) = inner.current.load_full() {
            return Ok(current);
        }
        let stored = tokio::time::timeout(inner.store_timeout, inner.store.load())
            .await
            .map_err(|_| Error::Timeout(inner.store_timeout))?
            .map_err(|e| Error::store("load", e))?;
        let seed = inner.seed.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let tokens = match (stored, seed) {
            (Some(stored), _) => stored,
            (None, Some(seed)) => {
                // Seed the empty store, so that it holds what we use. Not a
                // new token set, so `on_refresh` is not told.
                if let Err(error) = save_to_store(inner, &seed).await {
                    tracing::warn!(error = %error, "could not seed the token store");
                }
                seed
            }
            (None, None) if inner.grant == GrantKind::ClientCredentials => {
                // Generation 0 stands for "no token yet": waiters share the
                // outcome of this first grant like any refresh.
                if let Some(error) =
                    self.shared_failure(&flight, 0, attempts_before, Trigger::Expiry)
                {
                    return Err(error);
                }
                let tokens = match self.spend(None).await {
                    Ok(tokens) => tokens,
                    Err(error) => {
                        flight.last_failure = Some(Failure {
                            generation: 0,
                            at: inner.clock.now(),
                            error: error.clone(),
                        });
                        self.attempt_ended(Some((0, error.clone())));
                        return Err(error);
                    }
                };
                if let Err(error) = save_to_store(inner, &tokens).await {
                    tracing::warn!(error = %error, "could not save the client's token");
                }
                self.announce(&tokens);
                tokens
            }
            (None, None) => return Err(Error::NoTokens),
        };
        let current = self.publish(tokens, true, &mut flight)?;
        if inner.grant == GrantKind::ClientCredentials {
            self.attempt_ended(None);
        }
        Ok(current)
    }

    async fn lock_flight(&self) -> Result<OwnedMutexGuard<FlightState>, Error> {
        let wait = self.lock_wait();
        tokio::time::timeout(wait, self.inner.flight.clone().lock_owned())
            .await
            .map_err(|_| Error::Timeout(wait))
    }

    /// The longest a caller waits for another task's refresh: the wait for
    /// the store's lock, then a refresh and its store operations, plus slack.
    fn lock_wait(&self) -> Duration {
        let inner = &self.inner;
        store_lock_wait(inner)
            + inner.endpoint.retry.budget
            + inner.store_timeout * 4
            + Duration::from_secs(5)
    }

    /// Single flight: refreshes the token of `generation` unless a newer one
    /// exists or another caller's attempt for it just failed.
    async fn refresh_generation(
        &self,
        generation: u64,
        trigger: Trigger,
    ) -> Result<Arc<Current>, Error> {
        let inner = &self.inner;
        // A late 401 for a replaced token needs no lock at all.
        if let Some(current) = inner.current.load_full()
            && current.generation != generation
        {
            return Ok(current);
        }
        let mut ends = inner.attempt_ends.subscribe();
        let attempts_before = ends.borrow_and_update().count;
        // Wait for the lock, or for the attempt in flight to end: its outcome
        // is ours too, without waiting for every queued caller to take and
        // drop the lock in turn.
        let mut lock = std::pin::pin!(self.lock_flight());
        let mut ended = std::pin::pin!(ends.wait_for(|end| end.count != attempts_before));
        let first = std::future::poll_fn(|cx| {
            if let Poll::Ready(flight) = lock.as_mut().poll(cx) {
                return Poll::Ready(Waited::Locked(flight));
            }
            ended
                .as_mut()
                .poll(cx)
                .map(|end| Waited::AttemptEnded(end.ok().and_then(|end| end.failure.clone())))
        })
        .await;
        let flight = match first {
            Waited::Locked(flight) => flight?,
            Waited::AttemptEnded(failure) => {
                if let Some(current) = inner.current.load_full()
                    && current.generation != generation
                {
                    return Ok(current);
                }
                if let Some((failed, error)) = failure
                    && failed == generation
                {
                    return Err(error);
                }
                lock.await?
            }
        };

        // Double check under the lock: someone may have refreshed already.
        let current = inner.current.load_full().ok_or(Error::NoTokens)?;
        if current.generation != generation {
            tracing::debug!(?trigger, "a newer token exists; not refreshing");
            return Ok(current);
        }
        if let Some(error) = self.shared_failure(&flight, generation, attempts_before, trigger) {
            return Err(error);
        }

        // The refresh owns the lock and runs in this caller's task, so the
        // token request goes out at once (a spawned task would queue behind
        // every other task of a busy runtime); if this caller is cancelled,
        // the refresh moves to a task of its own and still completes and
        // saves.
        let this = self.clone();
        let span = tracing::info_span!("oauth2_refresh", ?trigger, generation);
        FinishOnDrop::new(
            async move { this.refresh_locked(flight, current).await }.instrument(span),
        )
        .await
    }

    /// The error a caller gets instead of a new attempt for `generation`:
    /// the outcome of an attempt that ended while it waited for the lock, or
    /// a recent (or permanent) failure. Forced refreshes only share the
    /// former.
    fn shared_failure(
        &self,
        flight: &FlightState,
        generation: u64,
        attempts_before: u64,
        trigger: Trigger,
    ) -> Option<Error> {
        let inner = &self.inner;
        let failure = flight
            .last_failure
            .as_ref()
            .filter(|f| f.generation == generation)?;
        let ended_while_waiting = self.attempts() != attempts_before;
        let cooling_down = inner
            .clock
            .now()
            .duration_since(failure.at)
            .map_or(true, |elapsed| elapsed < inner.failure_cooldown);
        // A store that is briefly down (Redis restarting) should not fail
        // requests for a whole cooldown: only the token endpoint's failures
        // are remembered beyond the callers that waited.
        let cooling_down = cooling_down && !matches!(failure.error, Error::Store { .. });
        let unforced = !matches!(trigger, Trigger::Forced);
        (ended_while_waiting || (unforced && (failure.is_permanent() || cooling_down)))
            .then(|| failure.error.clone())
    }

    async fn refresh_locked(
        &self,
        mut flight: OwnedMutexGuard<FlightState>,
        current: Arc<Current>,
    ) -> Result<Arc<Current>, Error> {
        let inner = &self.inner;
        let result = self.coordinated_refresh(&current).await;
        let (tokens, saved) = match result {
            Ok(Outcome::Refreshed { tokens, saved }) => (tokens, saved),
            Ok(Outcome::Adopted(tokens)) => {
                tracing::info!("adopted the token set another holder of the store refreshed");
                self.announce(&tokens);
                let next = self.publish(tokens, true, &mut flight);
                self.attempt_ended(None);
                return next;
            }
            Err(error) => {
                tracing::warn!(error = %error, "token refresh failed");
                flight.last_failure = Some(Failure {
                    generation: current.generation,
                    at: inner.clock.now(),
                    error: error.clone(),
                });
                self.attempt_ended(Some((current.generation, error.clone())));
                return Err(error);
            }
        };
        self.announce(&tokens);
        let next = self.publish(tokens, saved.is_ok(), &mut flight);
        self.attempt_ended(None);
        let next = next?;
        tracing::info!(
            generation = next.generation,
            expires_in_secs = next.tokens.expires_in().map(|d| d.as_secs()),
            "token refreshed"
        );
        match saved {
            Ok(()) => Ok(next),
            Err(error) => {
                // The old refresh token is spent: keep the new set in memory
                // (it is published above) and keep trying to save it.
                tracing::error!(error = %error, "could not save the refreshed tokens; retrying in the background");
                tokio::spawn(retry_save(Arc::downgrade(inner), next.generation));
                Err(error)
            }
        }
    }

    /// The refresh protocol: with a store that has a lock, "lock, re-read,
    /// adopt what another holder refreshed or refresh ourselves, save,
    /// release"; without one, refresh and save.
    async fn coordinated_refresh(&self, current: &Current) -> Result<Outcome, Error> {
        let inner = &self.inner;
        let wait = store_lock_wait(inner);
        let lock = tokio::time::timeout(wait + Duration::from_secs(1), inner.store.lock(wait))
            .await
            .map_err(|_| Error::Timeout(wait))?
            .map_err(|e| Error::store("lock", e))?;
        let Some(lock) = lock else {
            return match self.spend(Some(&current.tokens)).await {
                Ok(tokens) => {
                    let saved = save_to_store(inner, &tokens).await;
                    Ok(Outcome::Refreshed { tokens, saved })
                }
                Err(error @ Error::InvalidGrant { .. }) => {
                    // Someone sharing the store may have rotated the token.
                    match bounded(inner, "load", inner.store.load()).await {
                        Ok(Some(stored))
                            if stored.refresh_token() != current.tokens.refresh_token() =>
                        {
                            Ok(Outcome::Adopted(stored))
                        }
                        _ => Err(error),
                    }
                }
                Err(error) => Err(error),
            };
        };
        tracing::debug!("holding the store's refresh lock");
        let (lock, result) = self.refresh_holding(current, lock).await;
        if let Some(lock) = lock
            && let Err(error) = bounded(inner, "release", lock.release()).await
        {
            tracing::warn!(error = %error, "could not release the store's refresh lock; it expires on its own");
        }
        result
    }

    /// The part of the protocol that runs while the store's lock is held.
    /// Gives the lock back unless a panicking store took it down.
    async fn refresh_holding(
        &self,
        current: &Current,
        mut lock: Box<dyn StoreLock>,
    ) -> (Option<Box<dyn StoreLock>>, Result<Outcome, Error>) {
        let inner = &self.inner;
        let stored = match bounded(inner, "load", lock.load()).await {
            Ok(stored) => stored,
            Err(error) => return (Some(lock), Err(error)),
        };
        // Our own set wins while it is not saved: the stored one holds a
        // refresh token we have spent.
        let persisted = current.persisted.load(Ordering::SeqCst);
        let base = match stored {
            Some(stored) if persisted && differs(&stored, &current.tokens) => {
                match Current::new(0, stored.clone(), inner.leeway, false) {
                    Ok(candidate) if candidate.is_fresh(inner.clock.now()) => {
                        return (Some(lock), Ok(Outcome::Adopted(stored)));
                    }
                    // Stale too: refresh with the newer refresh token.
                    _ => stored,
                }
            }
            _ => current.tokens.clone(),
        };
        let tokens = match self.spend(Some(&base)).await {
            Ok(tokens) => tokens,
            Err(error @ Error::InvalidGrant { .. }) => {
                // A holder whose lock expired may have rotated it meanwhile.
                return match bounded(inner, "load", lock.load()).await {
                    Ok(Some(stored)) if stored.refresh_token() != base.refresh_token() => {
                        (Some(lock), Ok(Outcome::Adopted(stored)))
                    }
                    _ => (Some(lock), Err(error)),
                };
            }
            Err(error) => return (Some(lock), Err(error)),
        };
        let (lock, saved) = locked_save(inner, lock, &tokens).await;
        match saved {
            Ok(LockedSave::Saved) => (
                lock,
                Ok(Outcome::Refreshed {
                    tokens,
                    saved: Ok(()),
                }),
            ),
            Ok(LockedSave::Superseded) => {
                // Our lock expired and another holder saved a newer set: the
                // fleet uses that one, so do we.
                tracing::warn!(
                    "the store's lock expired during the refresh; adopting the newer stored set"
                );
                let Some(mut lock) = lock else {
                    return (
                        None,
                        Ok(Outcome::Refreshed {
                            tokens,
                            saved: Ok(()),
                        }),
                    );
                };
                match bounded(inner, "load", lock.load()).await {
                    Ok(Some(stored)) => (Some(lock), Ok(Outcome::Adopted(stored))),
                    _ => (
                        Some(lock),
                        Ok(Outcome::Refreshed {
                            tokens,
                            saved: Ok(()),
                        }),
                    ),
                }
            }
            Err(error) => (
                lock,
                Ok(Outcome::Refreshed {
                    tokens,
                    saved: Err(error),
                }),
            ),
        }
    }

    /// Gets a new set from the token endpoint: spends the refresh token of
    /// `base`, or asks for a client-credentials token. When the server
    /// returns no new refresh token, the old one stays (RFC 6749 §6).
    async fn spend(&self, base: Option<&TokenSet>) -> Result<TokenSet, Error> {
        let inner = &self.inner;
        let clock = inner.clock.as_ref();
        if inner.grant == GrantKind::ClientCredentials {
            tracing::debug!("asking the token endpoint for a client-credentials token");
            return inner.endpoint.token(Grant::ClientCredentials, clock).await;
        }
        let refresh_token = base
            .and_then(TokenSet::refresh_token)
            .ok_or(Error::NoRefreshToken)?;
        tracing::debug!("calling the token endpoint");
        let mut tokens = inner
            .endpoint
            .token(Grant::Refresh(refresh_token), clock)
            .await?;
        if tokens.refresh_token().is_none() {
            tokens.set_refresh_token(Some(refresh_token.clone()));
        } else {
            tracing::info!("the refresh token was rotated");
        }
        Ok(tokens)
    }

    /// Calls `on_refresh` with a new token set; a panic there is logged, not
    /// allowed to lose the tokens.
    fn announce(&self, tokens: &TokenSet) {
        if let Some(hook) = &self.inner.on_refresh
            && std::panic::catch_unwind(AssertUnwindSafe(|| hook(tokens))).is_err()
        {
            tracing::error!("the on_refresh hook panicked; the new tokens are used all the same");
        }
    }

    /// Saves to the store and calls `on_refresh`. The caller holds the lock.
    async fn save(&self, tokens: &TokenSet) -> Result<(), Error> {
        let saved = save_to_store(&self.inner, tokens).await;
        self.announce(tokens);
        saved
    }

    fn attempts(&self) -> u64 {
        self.inner.attempt_ends.borrow().count
    }

    /// Tells waiting callers that an attempt ended, after its outcome is
    /// published (or recorded, for a failure).
    fn attempt_ended(&self, failure: Option<(u64, Error)>) {
        self.inner.attempt_ends.send_modify(|end| {
            end.count += 1;
            end.failure = failure;
        });
    }

    /// Makes `tokens` the current set, under the lock. `persisted` says
    /// whether the store has them.
    fn publish(
        &self,
        tokens: TokenSet,
        persisted: bool,
        flight: &mut FlightState,
    ) -> Result<Arc<Current>, Error> {
        let inner = &self.inner;
        let current = Current::new(
            flight.generation + 1,
            tokens,
            inner.leeway,
            inner.background_refresh,
        )?;
        current.persisted.store(persisted, Ordering::SeqCst);
        flight.generation = current.generation;
        flight.last_failure = None;
        let current = Arc::new(current);
        self.inner.current.store(Some(current.clone()));
        Ok(current)
    }
}

/// One bounded save, in its own task so that a panicking store cannot take
/// the refresh (and its spent refresh token) down with it.
async fn save_to_store(inner: &Inner, tokens: &TokenSet) -> Result<(), Error> {
    let store = inner.store.clone();
    let tokens = tokens.clone();
    let task = tokio::spawn(async move { store.save(&tokens).await });
    match tokio::time::timeout(inner.store_timeout, task).await {
        Err(_) => Err(Error::Timeout(inner.store_timeout)),
        Ok(Err(_)) => Err(Error::store("save", "the store panicked".into())),
        Ok(Ok(result)) => result.map_err(|e| Error::store("save", e)),
    }
}

/// Retries saving generation `generation` until it succeeds, a newer set
/// supersedes it, or the manager is dropped.
async fn retry_save(inner: Weak<Inner>, generation: u64) {
    let mut delay = Duration::from_secs(1);
    for _ in 0..8 {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(60));
        let Some(inner) = inner.upgrade() else { return };
        let _flight = inner.flight.clone().lock_owned().await;
        let Some(current) = inner.current.load_full() else {
            return;
        };
        if current.generation != generation {
            return;
        }
        match save_coordinated(&inner, &current.tokens).await {
            Ok(saved) => {
                if saved == LockedSave::Saved {
                    tracing::info!(generation, "saved the refreshed tokens on retry");
                } else {
                    tracing::warn!(
                        generation,
                        "a newer token set was stored meanwhile; not overwriting it"
                    );
                }
                current.persisted.store(true, Ordering::SeqCst);
                return;
            }
            Err(error) => {
                tracing::error!(error = %error, generation, "saving the refreshed tokens failed again")
            }
        }
    }
    tracing::error!(
        generation,
        "gave up saving the refreshed tokens; they live only in memory until the next refresh"
    );
}

/// A save outside a refresh, under the store's lock when it has one.
async fn save_coordinated(inner: &Inner, tokens: &TokenSet) -> Result<LockedSave, Error> {
    let wait = store_lock_wait(inner);
    let lock = tokio::time::timeout(wait + Duration::from_secs(1), inner.store.lock(wait))
        .await
        .map_err(|_| Error::Timeout(wait))?
        .map_err(|e| Error::store("lock", e))?;
    let Some(mut lock) = lock else {
        return save_to_store(inner, tokens)
            .await
            .map(|()| LockedSave::Saved);
    };
    // Read first: the save is fenced on the version read under the lock.
    match bounded(inner, "load", lock.load()).await {
        Ok(_) => {
            let (lock, saved) = locked_save(inner, lock, tokens).await;
            if let Some(lock) = lock {
                let _ = bounded(inner, "release", lock.release()).await;
            }
            saved
        }
        Err(error) => {
            let _ = bounded(inner, "release", lock.release()).await;
            Err(error)
        }
    }
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("TokenManager")
            .field("token_url", &inner.endpoint.url.as_str())
            .field("client_id", &inner.endpoint.client_id)
            .field("client_auth", &inner.endpoint.auth)
            .field(
                "generation",
                &inner.current.load().as_ref().map(|c| c.generation),
            )
            .field("store", &inner.store)
            .finish_non_exhaustive()
    }
}

/// Configures a [`TokenManager`]; start with [`TokenManager::builder`].
pub struct TokenManagerBuilder {
    token_url: String,
    client_id: Option<String>,
    client_secret: Option<ClientSecret>,
    client_auth: Option<ClientAuth>,
    scope: Option<String>,
    extra_params: Vec<(String, String)>,
    grant: GrantKind,
    revocation_url: Option<String>,
    /// From discovery: the methods the server accepts, to pick a default.
    supported_auth_methods: Option<Vec<String>>,
    tokens: Option<TokenSet>,
    on_refresh: Option<RefreshHook>,
    store: Option<Arc<dyn TokenStore>>,
    http_client: Option<reqwest::Client>,
    clock: Arc<dyn Clock>,
    leeway: Duration,
    background_refresh: bool,
    retry: RetryPolicy,
    failure_cooldown: Duration,
    max_response_bytes: usize,
    store_timeout: Duration,
}

impl TokenManagerBuilder {
    fn new(token_url: &str) -> Self {
        Self {
            token_url: token_url.to_owned(),
            client_id: None,
            client_secret: None,
            client_auth: None,
            scope: None,
            extra_params: Vec::new(),
            grant: GrantKind::RefreshToken,
            revocation_url: None,
            supported_auth_methods: None,
            tokens: None,
            on_refresh: None,
            store: None,
            http_client: None,
            clock: Arc::new(SystemClock),
            leeway: DEFAULT_LEEWAY,
            background_refresh: false,
            retry: RetryPolicy {
                attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
                budget: DEFAULT_REFRESH_TIMEOUT,
                max_retries: DEFAULT_MAX_RETRIES,
                base_delay: DEFAULT_RETRY_BASE_DELAY,
            },
            failure_cooldown: DEFAULT_FAILURE_COOLDOWN,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            store_timeout: DEFAULT_STORE_TIMEOUT,
        }
    }

    /// The client identifier issued by the authorization server.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The client secret, for a confidential client. Omit it for a public
    /// client. It never appears in `Debug` output or logs.
    pub fn client_secret(mut self, client_secret: impl Into<String>) -> Self {
        self.client_secret = Some(ClientSecret::new(client_secret.into()));
        self
    }

    /// How to authenticate to the token endpoint. Default:
    /// [`ClientAuth::SecretBasic`] with a secret, [`ClientAuth::None`] without.
    pub fn client_auth(mut self, client_auth: ClientAuth) -> Self {
        self.client_auth = Some(client_auth);
        self
    }

    /// The `scope` to ask for on each refresh (RFC 6749 §6). Omit it to keep
    /// the originally granted scope; some providers (Microsoft Entra ID for
    /// some resources) want it on every refresh.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// An extra form parameter for every refresh request, for providers that
    /// need one (an `audience`, a `resource`). Call once per parameter.
    pub fn extra_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_params.push((name.into(), value.into()));
        self
    }

    /// An `audience` parameter on every token request (Auth0, Okta).
    pub fn audience(self, audience: impl Into<String>) -> Self {
        self.extra_param("audience", audience)
    }

    /// A `resource` parameter on every token request (RFC 8707).
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.extra_param("resource", resource)
    }

    /// Machine to machine: get tokens with the client credentials grant
    /// (RFC 6749 §4.4) instead of a refresh token. The first token is asked
    /// for when it is first needed, and "refresh" means a new grant, with
    /// the same single flight, proactive refresh and 401 handling. Needs a
    /// client secret; [`scope`](Self::scope), [`audience`](Self::audience)
    /// and [`resource`](Self::resource) go with each request.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
    /// use reqwest_oauth2_refresh::TokenManager;
    /// let manager = TokenManager::builder("https://my-tenant.eu.auth0.com/oauth/token")
    ///     .client_id("service-a")
    ///     .client_secret(std::env::var("CLIENT_SECRET").unwrap_or_default())
    ///     .client_credentials()
    ///     .audience("https://api.example.com")
    ///     .build()?;
    /// # let _ = manager; Ok(()) }
    /// ```
    pub fn client_credentials(mut self) -> Self {
        self.grant = GrantKind::ClientCredentials;
        self
    }

    /// The RFC 7009 revocation endpoint, for [`TokenManager::revoke`].
    pub fn revocation_url(mut self, url: &str) -> Self {
        self.revocation_url = Some(url.to_owned());
        self
    }

    pub(crate) fn supported_auth_methods(mut self, methods: Option<Vec<String>>) -> Self {
        self.supported_auth_methods = methods;
        self
    }

    /// The token set to start from. With a [`store`](Self::store) that
    /// already holds tokens, the store wins (another process may have rotated
    /// them); these only seed an empty store.
    pub fn tokens(mut self, tokens: TokenSet) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Called with every new token set (after a refresh, or
    /// [`TokenManager::set_tokens`]), after it is saved to the store and
    /// before any request uses it. Keep it quick: refreshes wait for it.
    pub fn on_refresh(mut self, hook: impl Fn(&TokenSet) + Send + Sync + 'static) -> Self {
        self.on_refresh = Some(Arc::new(hook));
        self
    }

    /// Where token sets are loaded from and saved to. Default: a
    /// [`MemoryStore`].
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The HTTP client for the token endpoint. By default the manager builds
    /// its own, which follows no redirects; a client given here should not
    /// follow redirects either (a redirect answer is treated as an error).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Refresh this long before expiry, at most (never earlier than half-way
    /// through the token's lifetime). Default [`DEFAULT_LEEWAY`].
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Stale-while-revalidate: when a token enters the leeway before its
    /// expiry, requests go on with it while one background task refreshes,
    /// so no request waits for a refresh it did not need (like MSAL's
    /// `refresh_in` and google-auth's non-blocking refresh). The refresh
    /// point is jittered over the last quarter of the margin so that a fleet
    /// does not refresh at once. Only an expired token makes requests wait.
    /// Off by default.
    pub fn background_refresh(mut self, enabled: bool) -> Self {
        self.background_refresh = enabled;
        self
    }

    /// The time budget of one refresh, retries included. Default
    /// [`DEFAULT_REFRESH_TIMEOUT`].
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.retry.budget = timeout;
        self
    }

    /// The timeout of one request to the token endpoint. Default
    /// [`DEFAULT_ATTEMPT_TIMEOUT`].
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.retry.attempt_timeout = timeout;
        self
    }

    /// How many times a transient failure (connection error, timeout, 5xx,
    /// 429) is retried within the budget. Default [`DEFAULT_MAX_RETRIES`].
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.retry.max_retries = retries;
        self
    }

    /// The first retry's delay; each further one doubles, with jitter. A
    /// `Retry-After` header takes precedence. Default
    /// [`DEFAULT_RETRY_BASE_DELAY`].
    pub fn retry_base_delay(mut self, delay: Duration) -> Self {
        self.retry.base_delay = delay;
        self
    }

    /// After a failed refresh, how long other callers get the same error
    /// instead of a new call to the token endpoint. `invalid_grant` is kept
    /// until the tokens change. Default [`DEFAULT_FAILURE_COOLDOWN`].
    pub fn failure_cooldown(mut self, cooldown: Duration) -> Self {
        self.failure_cooldown = cooldown;
        self
    }

    /// The largest token response read. Default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// The time source for expiry decisions. Default [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the configuration and builds the manager.
    pub fn build(self) -> Result<TokenManager, Error> {
        let url = Url::parse(&self.token_url)
            .map_err(|e| Error::Config(format!("the token URL is not a URL: {e}")))?;
        if !crate::origin::is_secure_url(&url) {
            return Err(Error::Config(
                "the token URL must use https (http only for loopback)".into(),
            ));
        }
        let supports = |method: &str| {
            self.supported_auth_methods
                .as_ref()
                .is_none_or(|methods| methods.iter().any(|m| m == method))
        };
        let auth = match (self.client_auth, &self.client_secret) {
            (Some(auth), _) => auth,
            // RFC 6749 §2.3.1: servers must support Basic; discovery may say
            // a server prefers the body.
            (None, Some(_))
                if !supports("client_secret_basic") && supports("client_secret_post") =>
            {
                ClientAuth::SecretPost
            }
            (None, Some(_)) => ClientAuth::SecretBasic,
            (None, None) => ClientAuth::None,
        };
        if self.grant == GrantKind::ClientCredentials && self.client_secret.is_none() {
            return Err(Error::Config(
                "the client credentials grant needs a client_secret".into(),
            ));
        }
        let revocation_url = match &self.revocation_url {
            None => None,
            Some(url) => {
                let url = Url::parse(url)
                    .map_err(|e| Error::Config(format!("the revocation URL is not a URL: {e}")))?;
                if !crate::origin::is_secure_url(&url) {
                    return Err(Error::Config(
                        "the revocation URL must use https (http only for loopback)".into(),
                    ));
                }
                Some(url)
            }
        };
        match auth {
            ClientAuth::SecretBasic | ClientAuth::SecretPost => {
                if self.client_id.is_none() || self.client_secret.is_none() {
                    return Err(Error::Config(format!(
                        "{auth:?} needs both a client_id and a client_secret"
                    )));
                }
            }
            ClientAuth::None => {
                if self.client_secret.is_some() {
                    return Err(Error::Config(
                        "a client_secret is set but client_auth is None".into(),
                    ));
                }
            }
        }
        if self.retry.budget.is_zero() || self.retry.attempt_timeout.is_zero() {
            return Err(Error::Config("timeouts must be greater than zero".into()));
        }
        let http = match self.http_client {
            Some(client) => client,
            None => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| Error::Transport(Arc::new(e)))?,
        };
        if let Some(tokens) = &self.tokens
            && HeaderValue::try_from(format!("Bearer {}", tokens.access_token().secret())).is_err()
        {
            return Err(Error::Config(
                "the access token cannot be sent in an HTTP header".into(),
            ));
        }
        Ok(TokenManager {
            inner: Arc::new(Inner {
                current: ArcSwapOption::empty(),
                flight: Arc::new(Mutex::new(FlightState::default())),
                attempt_ends: watch::Sender::new(AttemptEnd::default()),
                endpoint: TokenEndpoint {
                    url,
                    http,
                    client_id: self.client_id,
                    client_secret: self.client_secret,
                    auth,
                    scope: self.scope,
                    extra_params: self.extra_params,
                    retry: self.retry,
                    max_response_bytes: self.max_response_bytes,
                },
                store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                seed: std::sync::Mutex::new(self.tokens),
                grant: self.grant,
                revocation_url,
                on_refresh: self.on_refresh,
                clock: self.clock,
                leeway: self.leeway,
                background_refresh: self.background_refresh,
                background_pending: AtomicBool::new(false),
                failure_cooldown: self.failure_cooldown,
                store_timeout: self.store_timeout,
            }),
        })
    }
}

impl fmt::Debug for TokenManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManagerBuilder")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("client_auth", &self.client_auth)
            .field("tokens", &self.tokens)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leeway_is_capped_at_half_the_lifetime() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let tokens = TokenSet::new("a")
            .with_expires_in(Duration::from_secs(10))
            .with_issued_at(issued);
        let current = Current::new(1, tokens, Duration::from_secs(60), false).unwrap();
        assert!(current.is_fresh(issued + Duration::from_millis(4999)));
        assert!(!current.is_fresh(issued + Duration::from_secs(5)));
        assert!(!current.is_expired(issued + Duration::from_secs(9)));
        assert!(current.is_expired(issued + Duration::from_secs(10)));

        let tokens = TokenSet::new("a")
            .with_expires_in(Duration::from_secs(3600))
            .with_issued_at(issued);
        let current = Current::new(1, tokens, Duration::from_secs(60), false).unwrap();
        assert!(current.is_fresh(issued + Duration::from_secs(3539)));
        assert!(!current.is_fresh(issued + Duration::from_secs(3540)));
    }

    #[test]
    fn jitter_moves_the_refresh_point_only_within_the_margin() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        for _ in 0..200 {
            let tokens = TokenSet::new("a")
                .with_expires_in(Duration::from_secs(3600))
                .with_issued_at(issued);
            let current = Current::new(1, tokens, Duration::from_secs(60), true).unwrap();
            // Refresh between 60 s and 45 s before expiry.
            assert!(current.is_fresh(issued + Duration::from_secs(3539)));
            assert!(!current.is_fresh(issued + Duration::from_secs(3555)));
        }
    }

    #[test]
    fn token_without_expiry_is_always_fresh() {
        let current = Current::new(1, TokenSet::new("a"), DEFAULT_LEEWAY, false).unwrap();
        assert!(current.is_fresh(SystemTime::now() + Duration::from_secs(10 * 365 * 86400)));
    }

    #[test]
    fn builder_rejects_insecure_or_incomplete_configuration() {
        let err = TokenManager::builder("http://auth.example.com/token")
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        let err = TokenManager::builder("https://auth.example.com/token")
            .client_secret("s")
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        let err = TokenManager::builder("https://auth.example.com/token")
            .client_id("id")
            .client_secret("s")
            .client_auth(ClientAuth::None)
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        assert!(
            TokenManager::builder("http://127.0.0.1:8080/token")
                .build()
                .is_ok()
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let builder = TokenManager::builder("https://auth.example.com/token")
            .client_id("id")
            .client_secret("very-secret-value")
            .tokens(TokenSet::new("access-secret").with_refresh_token("refresh-secret"));
        let printed = format!("{builder:?}");
        assert!(!printed.contains("very-secret-value"), "{printed}");
        assert!(!printed.contains("access-secret"), "{printed}");
        let manager = builder.build().unwrap();
        let printed = format!("{manager:?}");
        assert!(!printed.contains("very-secret-value"), "{printed}");
    }
}
