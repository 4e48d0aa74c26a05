//! Before the program exits: no refresh left half way.
//!
//! A refresh the process abandons after the server answered has spent the
//! old refresh token, and its new one dies with the process: with rotation
//! and reuse detection, the next process to start revokes the session.

use super::{TokenManager, ensure_runtime};
use crate::error::Error;

impl TokenManager {
    /// Lets the refresh under way finish and its tokens reach the store,
    /// and saves the current set if an earlier save failed. Call it (on any
    /// clone) before the program exits.
    ///
    /// Requests sent through [`OAuth2Middleware`](crate::OAuth2Middleware)
    /// or the tower layer and awaited need no `shutdown`: the request that
    /// starts a background refresh returns once the refresh has ended. What
    /// does: a program that reads tokens with
    /// [`access_token`](Self::access_token) or
    /// [`insert_authorization`](Self::insert_authorization) (a gRPC
    /// interceptor), whose background refresh nobody waits for, and one
    /// that drops request futures before they finish.
    ///
    /// The manager stays usable: from now on a token inside the leeway is
    /// refreshed in the caller's task, as with
    /// [`RefreshMode::Blocking`](crate::RefreshMode::Blocking), so nothing
    /// is left running in the background (the tonic `OAuth2Interceptor`,
    /// which relies on background refresh, no longer starts one). The wait
    /// is bounded like any caller's wait for a refresh ([`Error::Timeout`]);
    /// a failed save is [`Error::Store`].
    ///
    /// ```no_run
    /// # async fn run(manager: reqwest_oauth2_refresh::TokenManager) -> Result<(), reqwest_oauth2_refresh::Error> {
    /// let token = manager.access_token().await?;
    /// // ... the program's work ...
    /// # let _ = token;
    /// manager.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self) -> Result<(), Error> {
        ensure_runtime()?;
        let inner = &self.inner;
        // First, so that no request starts a task after the wait below;
        // then the task that may not have joined the flight yet.
        if let Some(background) = &inner.background {
            background.close().await.map_err(Error::Timeout)?;
        }
        // The refresh lock: a refresh some caller leads (or a save retried
        // in the background) holds it until its tokens are stored.
        let guard = inner.flight.exclusive().await?;
        let Some(current) = guard.current().filter(|c| !c.is_persisted()) else {
            return Ok(());
        };
        inner.store.save_coordinated(current.tokens()).await?;
        current.mark_persisted();
        tracing::info!(
            generation = current.generation().get(),
            "saved the tokens before shutting down"
        );
        Ok(())
    }
}
