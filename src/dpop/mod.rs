//! DPoP (RFC 9449): sender-constrained tokens. A proof of possession of a
//! private key goes with every token-endpoint call and, for `DPoP` access
//! tokens, with every API request; the key is kept with the token set in
//! every store, so that another process, another host or a restart can
//! keep refreshing a bound refresh token.

mod htu;
#[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
mod key;
mod nonce;
mod proof;
mod resource;
#[cfg(test)]
mod tests;

pub(crate) use htu::origin;
#[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
pub use key::DpopKey;
#[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
pub(crate) use key::ath;
pub(crate) use nonce::NonceCache;
pub(crate) use proof::{ProofFor, Prover};
pub(crate) use resource::{ResourceProof, authorization};

use reqwest::header::{HeaderMap, HeaderName};

/// The proof's header (RFC 9449 §4.1).
pub(crate) const DPOP: HeaderName = HeaderName::from_static("dpop");
/// Where servers send a new nonce (RFC 9449 §8).
pub(crate) const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The `DPoP-Nonce` of a response, if any.
pub(crate) fn nonce_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(&DPOP_NONCE).and_then(|v| v.to_str().ok())
}
