//! What the leader of a flight does: load the first set, or spend the
//! refresh token (or adopt the set a peer sharing the store refreshed),
//! save, announce, publish. The store protocol is the same with and without
//! a lock; [`StoreSession`] makes the difference.

use std::sync::Arc;

use super::current::{Current, is_adoptable};
use super::flight::{FlightGuard, Trigger};
use super::persist::{StoreSession, retry_save};
use super::{GrantKind, Inner};
use crate::endpoint::request::Grant;
use crate::endpoint::response::Failed;
use crate::error::Error;
use crate::store::LockedSave;
use crate::telemetry::{RefreshOutcome, RefreshRun};
use crate::token::RefreshToken;
use crate::token::TokenSet;

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
    /// The answer was unusable but carried a new refresh token, kept in a
    /// set whose access token counts as expired.
    Salvaged {
        tokens: TokenSet,
        saved: Result<(), Error>,
        error: Error,
    },
}

impl Outcome {
    fn saved(tokens: TokenSet) -> Self {
        Outcome::Refreshed {
            tokens,
            saved: Ok(()),
        }
    }
}

/// Whether two sets are different tokens (not just differently stamped).
fn differs(a: &TokenSet, b: &TokenSet) -> bool {
    a.access_token() != b.access_token() || a.refresh_token() != b.refresh_token()
}

/// Leads the first load: the store's set, else the builder's (seeding the
/// store), else a client-credentials grant.
pub(super) async fn first_load(
    inner: Arc<Inner>,
    guard: FlightGuard,
    record: &mut RefreshRun,
) -> Result<Arc<Current>, Error> {
    let stored = match inner.store.load().await {
        // A store that could not clear a revoked set still returns it.
        Ok(stored) => stored.filter(|tokens| !inner.was_revoked(tokens)),
        Err(error) => return Err(guard.fail(error)),
    };
    let tokens = match (stored, inner.seed()) {
        (Some(stored), _) => stored,
        (None, Some(seed)) => {
            // Seed the empty store, so that it holds what we use. Not a new
            // token set, so `on_refresh` is not told.
            if let Err(error) = inner.store.save(&seed).await {
                tracing::warn!(error = %error, "could not seed the token store");
            }
            seed
        }
        (None, None) if inner.grant.needs_no_refresh_token() => {
            let tokens = match spend(&inner, None).await {
                Ok(tokens) => tokens,
                Err(failed) => {
                    inner.events.refresh_failed(&failed.error);
                    return Err(guard.fail(failed.error));
                }
            };
            if let Err(error) = inner.store.save(&tokens).await {
                tracing::warn!(error = %error, "could not save the client's token");
            }
            inner.announce(&tokens);
            return guard.publish_new(tokens, true, false);
        }
        (None, None) => return Err(guard.fail(Error::NoTokens)),
    };
    record.set(RefreshOutcome::Loaded);
    guard.publish(tokens, true)
}

/// Leads the refresh of `current`.
pub(super) async fn run(
    inner: Arc<Inner>,
    guard: FlightGuard,
    current: Arc<Current>,
    trigger: Trigger,
    record: &mut RefreshRun,
) -> Result<Arc<Current>, Error> {
    let after_rejection = trigger == Trigger::Rejected;
    match coordinated(&inner, &current).await {
        Ok(Outcome::Adopted(tokens)) => {
            record.set(RefreshOutcome::Adopted);
            tracing::info!("adopted the token set another holder of the store refreshed");
            inner.announce(&tokens);
            guard.publish_new(tokens, true, after_rejection)
        }
        Ok(Outcome::Refreshed { tokens, saved }) => {
            publish_refreshed(&inner, guard, tokens, saved, after_rejection)
        }
        Ok(Outcome::Salvaged {
            tokens,
            saved,
            error,
        }) => {
            inner.announce(&tokens);
            let kept = guard.publish_failed(tokens, saved.is_ok(), error.clone())?;
            if saved.is_err() {
                tokio::spawn(retry_save(Arc::downgrade(&inner), kept.generation()));
            }
            Err(error)
        }
        Err(error) => {
            // Logged by the refresh's telemetry, with its trigger and outcome.
            inner.events.refresh_failed(&error);
            Err(guard.fail(error))
        }
    }
}

/// Announces and publishes a set we refreshed. If the store does not have
/// it, the old refresh token is spent all the same: the new set is used
/// from memory while a background task keeps trying to save it.
fn publish_refreshed(
    inner: &Arc<Inner>,
    guard: FlightGuard,
    tokens: TokenSet,
    saved: Result<(), Error>,
    after_rejection: bool,
) -> Result<Arc<Current>, Error> {
    inner.announce(&tokens);
    let next = guard.publish_new(tokens, saved.is_ok(), after_rejection)?;
    tracing::info!(
        generation = next.generation().get(),
        expires_in_secs = next.tokens().expires_in().map(|d| d.as_secs()),
        "token refreshed"
    );
    let Err(error) = saved else {
        return Ok(next);
    };
    tracing::error!(error = %error, "could not save the refreshed tokens; retrying in the background");
    // The caller runs on a runtime (the manager checks before a refresh).
    tokio::spawn(retry_save(Arc::downgrade(inner), next.generation()));
    Err(error)
}

/// The protocol: "lock, re-read, adopt what another holder refreshed or
/// refresh ourselves, save, release"; without a lock, "refresh, save".
async fn coordinated(inner: &Inner, current: &Current) -> Result<Outcome, Error> {
    let mut session = inner.store.session().await?;
    let outcome = refresh_in(inner, &mut session, current).await;
    session.finish().await;
    outcome
}

async fn refresh_in(
    inner: &Inner,
    session: &mut StoreSession<'_>,
    current: &Current,
) -> Result<Outcome, Error> {
    // A set a peer stored after ours is adopted while its access token has
    // more than a second to live, even inside the leeway: refreshing it
    // again would revoke, at servers that revoke the old access token on
    // rotation, the token the other processes have just adopted. Our own
    // set wins while it is not saved: the stored one holds a refresh token
    // we have spent.
    let base = match session.reread().await? {
        Some(stored) if current.is_persisted() && differs(&stored, current.tokens()) => {
            if is_adoptable(&stored, inner.clock.now()) {
                return Ok(Outcome::Adopted(stored));
            }
            // Expired, or about to be: refresh with the newer refresh token.
            stored
        }
        _ => current.tokens().clone(),
    };
    let tokens = match spend(inner, Some(&base)).await {
        Ok(tokens) => tokens,
        Err(Failed {
            error: error @ Error::InvalidGrant { .. },
            ..
        }) => return adopt_after_invalid_grant(session, &base, error).await,
        Err(Failed {
            error,
            rotated: Some(refresh_token),
        }) => return Ok(salvage(inner, session, &base, refresh_token, error).await),
        Err(Failed { error, .. }) => return Err(error),
    };
    match session.save_spent(&tokens).await {
        Ok(LockedSave::Superseded) => {
            // Our lock expired and another holder saved a newer set: the
            // fleet uses that one, so do we.
            tracing::warn!(
                "the store's lock expired during the refresh; adopting the newer stored set"
            );
            match session.latest().await {
                Ok(Some(stored)) => Ok(Outcome::Adopted(stored)),
                _ => Ok(Outcome::saved(tokens)),
            }
        }
        Ok(_) => Ok(Outcome::saved(tokens)),
        Err(error) => Ok(Outcome::Refreshed {
            tokens,
            saved: Err(error),
        }),
    }
}

/// An answer we could not use carried a new refresh token: the server may
/// have revoked the old one on issuing it, so the new one is kept like a
/// rotation (saved, announced), with the access token counted as expired so
/// that the next attempt spends the new refresh token.
async fn salvage(
    inner: &Inner,
    session: &mut StoreSession<'_>,
    base: &TokenSet,
    refresh_token: RefreshToken,
    error: Error,
) -> Outcome {
    tracing::error!(error = %error,
        "the token endpoint's answer was unusable but carried a new refresh token; keeping it");
    let mut tokens = base.clone();
    tokens.set_refresh_token(Some(refresh_token));
    tokens.expire_at(inner.clock.now());
    let saved = session.save(&tokens).await.map(|_| ());
    Outcome::Salvaged {
        tokens,
        saved,
        error,
    }
}

/// A set a peer stored after `current`, adopted (announced and published)
/// if its access token has more than a second to live; the token endpoint is
/// not called.
pub(super) async fn follow_peer(
    inner: &Inner,
    guard: FlightGuard,
    current: &Current,
) -> Option<Arc<Current>> {
    let mut session = inner.store.session().await.ok()?;
    let stored = session.latest().await;
    session.finish().await;
    let stored = stored.ok().flatten()?;
    if !differs(&stored, current.tokens()) || !is_adoptable(&stored, inner.clock.now()) {
        return None;
    }
    tracing::info!("a peer rotated the tokens while the request was in flight; following its set");
    inner.announce(&stored);
    guard.publish_new(stored, true, false).ok()
}

/// `invalid_grant` for `base`'s refresh token: someone sharing the store
/// (a holder whose lock expired, or a process without a lock) may have
/// rotated it meanwhile; then theirs is the set to use.
async fn adopt_after_invalid_grant(
    session: &mut StoreSession<'_>,
    base: &TokenSet,
    error: Error,
) -> Result<Outcome, Error> {
    match session.latest().await {
        Ok(Some(stored)) if stored.refresh_token() != base.refresh_token() => {
            Ok(Outcome::Adopted(stored))
        }
        _ => Err(error),
    }
}

/// Gets a new set from the token endpoint: spends the refresh token of
/// `base`, or asks for a client-credentials token. When the server returns
/// no new refresh token, the old one stays (RFC 6749 §6).
async fn spend(inner: &Inner, base: Option<&TokenSet>) -> Result<TokenSet, Failed> {
    let clock = inner.clock.as_ref();
    let own_grant = match inner.grant {
        GrantKind::ClientCredentials => Some(Grant::ClientCredentials),
        GrantKind::JwtBearer => Some(Grant::JwtBearer),
        GrantKind::RefreshToken => None,
    };
    if let Some(grant) = own_grant {
        tracing::debug!(?grant, "asking the token endpoint for a new token");
        let replaced = base.map(|b| b.access_token().secret());
        let bound = base.and_then(TokenSet::bound_key);
        return inner.endpoint.token(grant, replaced, bound, clock).await;
    }
    let refresh_token = base
        .and_then(TokenSet::refresh_token)
        .ok_or(Error::NoRefreshToken)?;
    tracing::debug!("calling the token endpoint");
    let replaced = base.map(|b| b.access_token().secret());
    let mut tokens = inner
        .endpoint
        .token(
            Grant::Refresh(refresh_token),
            replaced,
            base.and_then(TokenSet::bound_key),
            clock,
        )
        .await?;
    if tokens.refresh_token().is_none() {
        tokens.set_refresh_token(Some(refresh_token.clone()));
    } else {
        tracing::info!("the refresh token was rotated");
    }
    if let Some(base) = base {
        tokens.keep_id_token_of(base);
    }
    Ok(tokens)
}
