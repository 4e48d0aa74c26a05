//! What transport adapters ask of the manager: a lease of the token to
//! attach, the ready header for synchronous code, and what to do once the
//! API has rejected a token.

use reqwest::header::HeaderMap;

use super::background::RefreshInFlight;
use super::current::{Applied, Current, Generation, Lease};
use super::flight::Trigger;
use super::{TokenManager, ensure_runtime, refresh};
use crate::error::Error;

impl TokenManager {
    /// Writes the current token's ready `Authorization` header (`Bearer
    /// <token>`, marked sensitive) into `headers`, without waiting: the
    /// synchronous way to the token, for code that cannot `.await` (a tonic
    /// interceptor, see `OAuth2Interceptor`; a handshake builder). Returns
    /// `false`, leaving `headers` as they were, when no valid token is at
    /// hand: none loaded yet, or the current one has expired. An
    /// `Authorization` header already in `headers` is replaced: check first
    /// if the caller's own should win. A DPoP access token is never written
    /// here (it is `false`): each request needs a proof of its own, which the
    /// middleware and the tower layer sign.
    ///
    /// It never refreshes in place. In the default
    /// [`RefreshMode::StaleWhileRevalidate`](crate::RefreshMode), a token
    /// within the leeway of its expiry (still written), an expired one, or
    /// none at all starts one background refresh or load (in a Tokio task,
    /// when called inside a runtime), so that later calls find a fresh
    /// token. With [`RefreshMode::Blocking`](crate::RefreshMode), the token
    /// is written while it is valid, and something else must refresh it
    /// ([`access_token`](Self::access_token), the middleware, the tower
    /// layer).
    ///
    /// With a fresh token this is one atomic load, a clock read and a
    /// reference-count increment: no lock and no allocation of ours.
    ///
    /// ```no_run
    /// # async fn run(manager: reqwest_oauth2_refresh::TokenManager) -> Result<(), reqwest_oauth2_refresh::Error> {
    /// manager.access_token().await?; // load once, at start-up
    /// let mut headers = http::HeaderMap::new();
    /// if !manager.insert_authorization(&mut headers) {
    ///     eprintln!("no valid token at hand");
    /// }
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn insert_authorization(&self, headers: &mut HeaderMap) -> bool {
        match self.fresh_lease() {
            Some(lease) if lease.dpop().is_none() => {
                lease.apply(headers);
                true
            }
            Some(_) => false,
            None => self.insert_stale_authorization(headers),
        }
    }

    /// [`insert_authorization`](Self::insert_authorization) without a fresh
    /// token: the still valid one, if any, while a background refresh (when
    /// configured) replaces it.
    #[cold]
    fn insert_stale_authorization(&self, headers: &mut HeaderMap) -> bool {
        let inner = &self.inner;
        let current = inner.published.get();
        let now = inner.clock.now();
        if let Some(background) = &inner.background {
            // Nobody waits for the task: a synchronous caller cannot
            // (`shutdown` does, before the program exits).
            match &current {
                // Published since `fresh_lease` looked: nothing to refresh.
                Some(current) if current.is_fresh(now) => {}
                Some(current) => drop(background.start(self, current.generation())),
                None => drop(background.start(self, Generation::NONE)),
            }
        }
        match current {
            Some(current) if !current.is_expired(now) && !current.tokens().is_dpop_token() => {
                current.lease().apply(headers);
                true
            }
            _ => false,
        }
    }

    /// Why [`insert_authorization`](Self::insert_authorization) found no
    /// token, for an error message.
    #[cfg(feature = "tonic")]
    pub(crate) fn missing_token_reason(&self) -> &'static str {
        match (self.inner.published.get(), &self.inner.background) {
            (Some(current), _) if current.tokens().is_dpop_token() => {
                "a DPoP access token needs a proof on every call, which an interceptor \
                 cannot sign: use the OAuth2Layer"
            }
            (None, _) => {
                "no OAuth 2.0 access token has been loaded yet \
                 (call TokenManager::access_token once at start-up)"
            }
            (Some(_), Some(_)) => {
                "the OAuth 2.0 access token has expired and the background refresh \
                 has not replaced it yet"
            }
            (Some(_), None) => "the OAuth 2.0 access token has expired",
        }
    }

    /// Whether a stale token starts a background refresh
    /// ([`RefreshMode::StaleWhileRevalidate`](crate::RefreshMode)).
    #[cfg(feature = "tonic")]
    pub(crate) fn refreshes_in_background(&self) -> bool {
        self.inner.background.is_some()
    }

    /// The lease of the published token if it is fresh: one atomic load, a
    /// clock read and a reference-count increment. Synchronous, so that an
    /// adapter's future does not carry the slow path.
    #[inline]
    pub(crate) fn fresh_lease(&self) -> Option<Lease> {
        let inner = &self.inner;
        inner
            .published
            .with_fresh(inner.clock.as_ref(), Current::lease)
    }

    /// The slow path of [`fresh_lease`](Self::fresh_lease): load, or refresh
    /// first.
    ///
    /// With the background refresh this call started, if it started one:
    /// the adapter waits for it before it hands back the response of the
    /// request (see [`RefreshInFlight`]).
    pub(crate) async fn lease(&self) -> Result<(Lease, Option<RefreshInFlight>), Error> {
        let (current, started) = self.current_starting().await?;
        Ok((current.lease(), started))
    }

    /// After the API rejected the token a request was sent with: refreshes
    /// it unless a newer token exists already, and returns the token to
    /// replay with. `None` hands the 401 back: the token was issued moments
    /// ago, so another would not fix what the API objects to (see
    /// [`rejected_token_min_age`](crate::TokenManagerBuilder::rejected_token_min_age)),
    /// and no peer has a newer one.
    pub(crate) async fn refresh_after_rejection(
        &self,
        sent: Applied,
        replaying: bool,
    ) -> Result<Option<Lease>, Error> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let min_age = inner.rejected_token_min_age;
        let young = inner.published.get().filter(|current| {
            current.generation() == sent.generation
                && current.too_young_to_refresh(min_age, now, replaying)
        });
        if let Some(current) = young {
            if let Some(newer) = self.newer_after_rejection(sent).await {
                return Ok(Some(newer));
            }
            if current.first_rejection() {
                tracing::warn!(
                    "an API rejected a token issued moments ago; not refreshing it again (a new \
                     token would not fix a wrong audience, the API's clock or a gateway): the \
                     401 is handed back"
                );
            }
            return Ok(None);
        }
        let next = self
            .refresh_generation(sent.generation, Trigger::Rejected)
            .await?;
        Ok(Some(next.lease()))
    }

    /// A replay with the token of `sent`, right after the refresh that got
    /// it, met a 401: the API rejects even a new token, so its next 401s
    /// (while it is young) are handed back instead of refreshed.
    pub(crate) fn replay_rejected(&self, sent: Applied) {
        if let Some(current) = self.inner.published.get()
            && current.generation() == sent.generation
        {
            current.mark_rejected_on_replay();
        }
    }

    /// After a replay with a new token met a 401 too: the token may have
    /// been superseded while the request was in flight (a peer sharing the
    /// store rotated it, and the server revoked ours). The lease of a newer
    /// set, if one exists here or in the store: adopted, never refreshed, so
    /// that one call never causes a second refresh.
    pub(crate) async fn newer_after_rejection(&self, sent: Applied) -> Option<Lease> {
        let newer = |current: &Current| current.generation() != sent.generation;
        if let Some(current) = self.inner.published.get().filter(|c| newer(c)) {
            return Some(current.lease());
        }
        ensure_runtime().ok()?;
        let guard = self.inner.flight.exclusive().await.ok()?;
        let current = guard.current()?;
        if newer(&current) {
            return Some(current.lease());
        }
        let followed = refresh::follow_peer(&self.inner, guard, &current).await?;
        Some(followed.lease())
    }
}
