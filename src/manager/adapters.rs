//! What transport adapters ask of the manager: a lease of the token to
//! attach, and what to do once the API has rejected one.

use super::current::{Applied, Current, Lease};
use super::flight::Trigger;
use super::{TokenManager, ensure_runtime, refresh};
use crate::error::Error;

impl TokenManager {
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
    pub(crate) async fn lease(&self) -> Result<Lease, Error> {
        Ok(self.current().await?.lease())
    }

    /// After the API rejected the token a request was sent with: refreshes
    /// it unless a newer token exists already, and returns the token to
    /// replay with.
    pub(crate) async fn refresh_after_rejection(&self, sent: Applied) -> Result<Lease, Error> {
        let next = self
            .refresh_generation(sent.generation, Trigger::Rejected)
            .await?;
        Ok(next.lease())
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
