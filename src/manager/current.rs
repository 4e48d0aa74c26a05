//! The published token set: what the hot path reads, with its ready
//! `Authorization` header and refresh point computed once per refresh, and
//! the lease that adapters carry from "attach the token" to "it was
//! rejected".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use crate::clock::Clock;
use crate::dpop::{NonceCache, ResourceProof, authorization};
use crate::error::Error;
use crate::token::TokenSet;
use crate::util::jitter::random_fraction;
use crate::util::time::scale;

/// Which published set a token came from. Never reused (the counter only
/// grows, across revocations too), so a late 401 for an old set cannot be
/// taken for a 401 of the current one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Generation(u64);

impl Generation {
    /// Nothing published yet (the default): the first load "replaces" it.
    pub(crate) const NONE: Generation = Generation(0);

    pub(crate) fn next(self) -> Generation {
        Generation(self.0.saturating_add(1))
    }

    pub(crate) fn get(self) -> u64 {
        self.0
    }
}

/// One published token set, with everything the hot path needs precomputed.
pub(crate) struct Current {
    generation: Generation,
    tokens: TokenSet,
    /// `Bearer <token>` (or `DPoP <token>`), marked sensitive, built once
    /// per refresh.
    header: HeaderValue,
    /// For a DPoP access token: what each request's proof needs.
    dpop: Option<Arc<ResourceProof>>,
    refresh_at: Option<SystemTime>,
    expires_at: Option<SystemTime>,
    /// Whether the store holds this set; a set whose save failed must not
    /// be replaced by the older stored one, whose refresh token is spent.
    persisted: AtomicBool,
    /// Where the set came from, for the bound on 401-driven refreshes.
    issued: Issued,
    /// Whether a replay with this set, right after the refresh that got it,
    /// met a 401 too: the API rejects even a brand-new token.
    rejected_on_replay: AtomicBool,
    /// Whether "an API rejects a token issued moments ago" was logged for
    /// this set: once is enough.
    rejection_logged: AtomicBool,
    /// Whether "refresh before expiry failed, using this set" was logged.
    stale_use_logged: AtomicBool,
}

/// How a published set came to be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Issued {
    /// Given, loaded or seeded: its age is unknown.
    Unknown,
    /// Issued by the token endpoint (to us, or to a peer whose rotation we
    /// adopted) at `at`; `after_rejection` if a 401 caused the refresh.
    At {
        at: SystemTime,
        after_rejection: bool,
    },
}

impl Current {
    fn new(
        generation: Generation,
        tokens: TokenSet,
        refresh_at: Option<SystemTime>,
        persisted: bool,
        issued: Issued,
        dpop: Option<Arc<ResourceProof>>,
    ) -> Result<Self, Error> {
        let header = authorization(&tokens)?;
        // The first clone of a freshly built header moves its bytes into a
        // shared allocation; doing it here keeps every later clone (one per
        // request) to a reference-count increment.
        drop(header.clone());
        Ok(Self {
            generation,
            expires_at: tokens.expires_at(),
            tokens,
            header,
            dpop,
            refresh_at,
            persisted: AtomicBool::new(persisted),
            issued,
            rejected_on_replay: AtomicBool::new(false),
            rejection_logged: AtomicBool::new(false),
            stale_use_logged: AtomicBool::new(false),
        })
    }

    pub(crate) fn generation(&self) -> Generation {
        self.generation
    }

    pub(crate) fn tokens(&self) -> &TokenSet {
        &self.tokens
    }

    pub(crate) fn lease(&self) -> Lease {
        Lease {
            header: self.header.clone(),
            generation: self.generation,
            dpop: self.dpop.clone(),
        }
    }

    pub(crate) fn is_fresh(&self, now: SystemTime) -> bool {
        self.refresh_at.is_none_or(|at| now < at)
    }

    pub(crate) fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    pub(crate) fn is_persisted(&self) -> bool {
        self.persisted.load(Ordering::SeqCst)
    }

    pub(crate) fn mark_persisted(&self) {
        self.persisted.store(true, Ordering::SeqCst);
    }

    /// Whether a 401 for this set should be handed back rather than cause
    /// another refresh: the set is younger than `min_age` and the API has
    /// rejected it as new (a replay right after the refresh met a 401), or,
    /// for a call that cannot replay, it was itself got because of a 401.
    pub(crate) fn too_young_to_refresh(
        &self,
        min_age: Duration,
        now: SystemTime,
        replaying: bool,
    ) -> bool {
        let Issued::At {
            at,
            after_rejection,
        } = self.issued
        else {
            return false;
        };
        let young = now
            .duration_since(at)
            .map_or(true, |elapsed| elapsed < min_age);
        let rejected_as_new = self.rejected_on_replay.load(Ordering::Relaxed);
        young && (rejected_as_new || (after_rejection && !replaying))
    }

    /// A replay with this set met a 401.
    pub(crate) fn mark_rejected_on_replay(&self) {
        self.rejected_on_replay.store(true, Ordering::Relaxed);
    }

    /// True the first time only.
    pub(crate) fn first_rejection(&self) -> bool {
        !self.rejection_logged.swap(true, Ordering::Relaxed)
    }

    /// True the first time only.
    pub(crate) fn first_stale_use(&self) -> bool {
        !self.stale_use_logged.swap(true, Ordering::Relaxed)
    }
}

/// When a set should be refreshed: `leeway` before expiry, but never earlier
/// than half-way through its lifetime, so that servers issuing tokens for
/// seconds do not cause a refresh on every request. `jitter` (a fraction in
/// [0, 1)) spreads the point over the last quarter of the margin, so that a
/// fleet started together does not refresh together.
pub(crate) fn refresh_at(
    tokens: &TokenSet,
    leeway: Duration,
    jitter: Option<f64>,
) -> Option<SystemTime> {
    let lifetime = tokens.expires_in()?;
    let mut margin = leeway.min(lifetime / 2);
    if let Some(fraction) = jitter {
        margin = scale(margin, 0.75 + 0.25 * fraction);
    }
    tokens.expires_at().and_then(|at| at.checked_sub(margin))
}

/// The life a set another holder stored must have left to be adopted rather
/// than refreshed from. Servers count lifetimes in whole seconds (`exp =
/// floor(now) + ttl`: oidc-provider, and most JWT issuers), so an access
/// token can die up to a second before the `expires_in` its holder was told;
/// a set adopted in that second would be rejected on its first use, and a
/// replay with it would hand the caller a 401.
const ADOPTION_MARGIN: Duration = Duration::from_secs(1);

/// Whether a set another holder stored is worth adopting at `now`: usable
/// for longer than [`ADOPTION_MARGIN`] (or half its lifetime, for tokens that
/// live two seconds or less). Otherwise the caller refreshes from its
/// refresh token, which is the newest there is.
pub(crate) fn is_adoptable(tokens: &TokenSet, now: SystemTime) -> bool {
    let Some(at) = tokens.expires_at() else {
        return true;
    };
    let margin = tokens.expires_in().map_or(ADOPTION_MARGIN, |lifetime| {
        ADOPTION_MARGIN.min(lifetime / 2)
    });
    now.checked_add(margin).is_some_and(|until| until < at)
}

/// `Bearer <token>`, marked sensitive.
pub(crate) fn bearer_header(tokens: &TokenSet) -> Result<HeaderValue, Error> {
    let mut header = HeaderValue::try_from(format!("Bearer {}", tokens.access_token().secret()))
        .map_err(|_| {
            Error::invalid_response("the access token cannot be sent in an HTTP header")
        })?;
    header.set_sensitive(true);
    Ok(header)
}

/// The token a caller may attach to one request, and the generation it
/// belongs to. Applying it leaves an [`Applied`] behind for a 401.
#[derive(Clone)]
pub(crate) struct Lease {
    header: HeaderValue,
    generation: Generation,
    /// Set for a DPoP access token: the request needs a proof as well.
    dpop: Option<Arc<ResourceProof>>,
}

impl Lease {
    /// Puts the token in `headers` (moving the header: no copy on the hot
    /// path).
    #[inline]
    pub(crate) fn apply(self, headers: &mut HeaderMap) -> Applied {
        headers.insert(AUTHORIZATION, self.header);
        Applied {
            generation: self.generation,
        }
    }

    /// What the request's DPoP proof needs, for a DPoP access token.
    #[inline]
    pub(crate) fn dpop(&self) -> Option<&Arc<ResourceProof>> {
        self.dpop.as_ref()
    }
}

/// The token a request was sent with: what a 401 for that request names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Applied {
    pub(crate) generation: Generation,
}

/// The slot the hot path reads: one atomic load, no lock.
pub(crate) struct Published {
    slot: ArcSwapOption<Current>,
    leeway: Duration,
    jitter: bool,
    /// The APIs' DPoP nonces, shared by every set this manager publishes.
    nonces: Arc<NonceCache>,
    clock: Arc<dyn Clock>,
}

impl Published {
    pub(crate) fn new(leeway: Duration, jitter: bool, clock: Arc<dyn Clock>) -> Self {
        Self {
            slot: ArcSwapOption::empty(),
            leeway,
            jitter,
            nonces: Arc::default(),
            clock,
        }
    }

    pub(crate) fn get(&self) -> Option<Arc<Current>> {
        self.slot.load_full()
    }

    /// `read` from the published set if it is fresh, through an `ArcSwap`
    /// guard (no reference count, no lock), with the clock read only for a
    /// set that expires.
    #[inline]
    pub(crate) fn with_fresh<T>(
        &self,
        clock: &dyn Clock,
        read: impl FnOnce(&Current) -> T,
    ) -> Option<T> {
        let guard = self.slot.load();
        let current = guard.as_ref()?;
        match current.refresh_at {
            Some(at) if clock.now() >= at => None,
            _ => Some(read(current)),
        }
    }

    /// A set ready to publish as `generation`.
    pub(crate) fn prepare(
        &self,
        generation: Generation,
        tokens: TokenSet,
        persisted: bool,
        issued: Issued,
    ) -> Result<Current, Error> {
        let jitter = self.jitter.then(random_fraction);
        let refresh_at = refresh_at(&tokens, self.leeway, jitter);
        let dpop = ResourceProof::for_tokens(&tokens, &self.nonces, &self.clock)?;
        Current::new(generation, tokens, refresh_at, persisted, issued, dpop)
    }

    pub(crate) fn set(&self, current: Arc<Current>) {
        self.slot.store(Some(current));
    }

    pub(crate) fn clear(&self) {
        self.slot.store(None);
    }
}

#[cfg(test)]
mod tests;
