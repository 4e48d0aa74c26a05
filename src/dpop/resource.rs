//! DPoP on API requests (RFC 9449 §7): a proof with `ath` for every request
//! that carries a `DPoP` access token, the API's nonces, and the one retry
//! a `use_dpop_nonce` challenge earns.

use std::sync::Arc;

use http::{Method, StatusCode};
use reqwest::header::{HeaderMap, HeaderValue};
use url::Url;

use super::{DPOP, NonceCache, ProofFor, Prover, nonce_of, origin};
use crate::challenge;
use crate::clock::Clock;
use crate::error::Error;
use crate::token::TokenSet;

/// What the proofs of one published `DPoP` access token share.
pub(crate) struct ResourceProof {
    prover: Arc<Prover>,
    /// base64url(SHA-256(the access token)).
    ath: String,
    nonces: Arc<NonceCache>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ResourceProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceProof").finish_non_exhaustive()
    }
}

/// `DPoP <token>` or `Bearer <token>`, marked sensitive, as the set's
/// `token_type` says: a set bound to a key with Bearer access tokens
/// (Google binds only the refresh token) sends them as bearer tokens.
pub(crate) fn authorization(tokens: &TokenSet) -> Result<HeaderValue, Error> {
    let scheme = if tokens.is_dpop_token() {
        "DPoP"
    } else {
        "Bearer"
    };
    let mut header = HeaderValue::try_from(format!("{scheme} {}", tokens.access_token().secret()))
        .map_err(|_| {
            Error::invalid_response("the access token cannot be sent in an HTTP header")
        })?;
    header.set_sensitive(true);
    Ok(header)
}

impl ResourceProof {
    /// The proofs for `tokens`' access token, if it is a DPoP token.
    pub(crate) fn for_tokens(
        tokens: &TokenSet,
        nonces: &Arc<NonceCache>,
        clock: &Arc<dyn Clock>,
    ) -> Result<Option<Arc<Self>>, Error> {
        if !tokens.is_dpop_token() {
            return Ok(None);
        }
        let bound = tokens.bound_key().ok_or_else(|| {
            Error::Config(
                "a DPoP access token without its key: give it with TokenSet::with_dpop_key".into(),
            )
        })?;
        let prover = bound.prover()?;
        Ok(Some(Arc::new(Self {
            prover,
            ath: ath_of(tokens)?,
            nonces: nonces.clone(),
            clock: clock.clone(),
        })))
    }

    /// Puts a new proof for `method` `url` into `headers`; the nonce it
    /// carries, if any.
    pub(crate) async fn attach(
        &self,
        method: &Method,
        url: &Url,
        headers: &mut HeaderMap,
    ) -> Result<Option<Arc<str>>, Error> {
        let nonce = self.nonces.get(&origin(url));
        let what = ProofFor {
            method: method.as_str(),
            url,
            ath: Some(&self.ath),
            nonce: nonce.as_deref(),
        };
        let proof = self.prover.proof(what, self.clock.now()).await?;
        headers.insert(DPOP, proof);
        Ok(nonce)
    }

    /// Learns the nonce of an answer from `answered_by`.
    pub(crate) fn note_nonce(&self, answered_by: &Url, headers: &HeaderMap) {
        if let Some(nonce) = nonce_of(headers) {
            self.nonces.note(&origin(answered_by), nonce);
        }
    }

    /// Learns the nonce of an answer from `answered_by`, and says whether
    /// the answer asks for a proof with a nonce other than the one `sent`
    /// (RFC 9449 §9: a 401 whose `DPoP` challenge says `use_dpop_nonce`,
    /// from the origin the request went to, with a `DPoP-Nonce`). Compared
    /// with what this request sent, not with the cache: in a herd, a
    /// peer's answer has usually taught the cache the nonce already.
    pub(crate) fn wants_new_nonce(
        &self,
        sent_to: &Url,
        sent: Option<&str>,
        status: StatusCode,
        answered_by: &Url,
        headers: &HeaderMap,
    ) -> bool {
        self.note_nonce(answered_by, headers);
        let Some(nonce) = nonce_of(headers) else {
            return false;
        };
        status == StatusCode::UNAUTHORIZED
            && answered_by.origin() == sent_to.origin()
            && sent != Some(nonce)
            && challenge::asks_for_dpop_nonce(headers)
    }
}

#[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
fn ath_of(tokens: &TokenSet) -> Result<String, Error> {
    Ok(super::ath(tokens.access_token().secret()))
}

#[cfg(not(any(feature = "crypto-ring", feature = "crypto-rustcrypto")))]
fn ath_of(_tokens: &TokenSet) -> Result<String, Error> {
    Err(Error::Config(
        "a DPoP access token needs the crypto-ring feature".into(),
    ))
}
