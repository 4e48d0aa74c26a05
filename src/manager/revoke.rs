//! Ending the session: RFC 7009 revocation of the refresh token (or the
//! access token alone), and forgetting what was revoked.

use reqwest::Url;

use super::events::SessionEnd;
use super::{TokenManager, ensure_runtime};
use crate::endpoint::request::RevokeHint;
use crate::error::Error;

impl TokenManager {
    /// Ends the session: revokes the refresh token at the revocation
    /// endpoint (RFC 7009, `token_type_hint=refresh_token`; the access token
    /// when there is no refresh token), then clears the stored token set.
    /// Afterwards the manager has no tokens until
    /// [`set_tokens`](Self::set_tokens); the builder's tokens are not used
    /// again. (A client-credentials manager asks for a new grant when next
    /// needed: its session is the client itself.)
    ///
    /// The server answers 200 also for a token it does not know, so revoking
    /// twice is fine; a 503 is retried like a refresh. If the store cannot
    /// forget the set ([`TokenStore::clear`](crate::TokenStore::clear)), the
    /// error says so, and this manager still never serves the revoked set
    /// again.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
    /// use reqwest_oauth2_refresh::{Error, providers};
    /// let manager = providers::google()
    ///     .client_id("my-app.apps.googleusercontent.com")
    ///     .client_secret("…")
    ///     .build()?;
    /// // Sign out:
    /// manager.revoke().await?;
    /// assert!(matches!(manager.load_tokens().await, Err(Error::NoTokens)));
    /// # Ok(()) }
    /// ```
    pub async fn revoke(&self) -> Result<(), Error> {
        let url = self.revocation_url()?;
        ensure_runtime()?;
        let loaded = match self.loaded().await {
            Ok(current) => Some(current),
            Err(Error::NoTokens) => None,
            Err(error) => return Err(error),
        };
        let inner = &self.inner;
        let guard = inner.flight.exclusive().await?;
        // A refresh may have finished while we waited: revoke what is current.
        if let Some(current) = guard.current().or(loaded) {
            let tokens = current.tokens();
            let (token, hint) = match tokens.refresh_token() {
                Some(refresh) => (refresh.secret(), RevokeHint::Refresh),
                None => (tokens.access_token().secret(), RevokeHint::Access),
            };
            inner
                .endpoint
                .revoke(url, token, hint, inner.clock.as_ref())
                .await?;
            tracing::info!("the session's tokens were revoked");
            inner.events.session_ended(&SessionEnd::Revoked);
        }
        *inner.seed.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some(current) = guard.current() {
            // A store that cannot clear still holds the revoked set: it must
            // never be loaded and served again.
            inner.remember_revoked(current.tokens());
        }
        guard.clear();
        inner.store.clear().await
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
        ensure_runtime()?;
        let revoked = self.loaded().await?;
        let inner = &self.inner;
        let token = revoked.tokens().access_token().secret();
        inner
            .endpoint
            .revoke(url, token, RevokeHint::Access, inner.clock.as_ref())
            .await?;
        let guard = inner.flight.exclusive().await?;
        if guard
            .current()
            .is_some_and(|now| now.generation() == revoked.generation())
        {
            let mut tokens = revoked.tokens().clone();
            tokens.expire_at(inner.clock.now());
            guard.publish(tokens, revoked.is_persisted())?;
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
}
