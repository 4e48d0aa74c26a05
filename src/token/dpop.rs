//! The DPoP key a token set is bound to, kept with the set so that every
//! store saves it (RFC 9449 §5: a bound refresh token is useless without
//! its key).

use std::fmt;
use std::sync::Arc;
#[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
use std::sync::OnceLock;

use super::TokenSet;
#[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
use crate::dpop::DpopKey;
use crate::dpop::Prover;
#[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
use crate::error::Error;

/// The saved key, read (once, shared by clones) when first needed. A build
/// without a crypto feature keeps the text, so a set it saves again loses
/// nothing.
#[derive(Clone)]
pub(crate) struct BoundKey {
    text: Arc<str>,
    #[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
    parsed: Arc<OnceLock<Result<DpopKey, Error>>>,
}

impl BoundKey {
    pub(crate) fn from_saved(text: String) -> Self {
        Self {
            text: Arc::from(text),
            #[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
            parsed: Arc::new(OnceLock::new()),
        }
    }

    pub(crate) fn saved(&self) -> &str {
        &self.text
    }

    /// A set bound to `key`.
    #[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
    pub(crate) fn of(key: &DpopKey) -> Self {
        let bound = Self::from_saved(key.saved().to_owned());
        let _ = bound.parsed.set(Ok(key.clone()));
        bound
    }

    /// What signs this key's proofs.
    #[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
    pub(crate) fn prover(&self) -> Result<Arc<Prover>, Error> {
        Ok(self.key()?.prover().clone())
    }

    /// Without a crypto feature a bound set cannot be refreshed.
    #[cfg(not(any(feature = "crypto-ring", feature = "crypto-rustcrypto")))]
    pub(crate) fn prover(&self) -> Result<Arc<Prover>, crate::error::Error> {
        Err(crate::error::Error::Config(
            "the token set is bound to a DPoP key; enable the crypto-ring feature".into(),
        ))
    }

    /// The key; an unreadable saved key is an error every time it is used.
    #[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
    pub(crate) fn key(&self) -> Result<&DpopKey, Error> {
        self.parsed
            .get_or_init(|| DpopKey::from_saved(&self.text))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl PartialEq for BoundKey {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for BoundKey {}

impl fmt::Debug for BoundKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DpopKey([redacted])")
    }
}

impl TokenSet {
    /// Binds the set to `key`: its refresh token (and, with `token_type`
    /// `DPoP`, its access token) was issued for proofs signed by it. Give
    /// the tokens your own authorization-code exchange got with this key;
    /// the manager then refreshes with proofs from it, and every store
    /// keeps the key with the tokens.
    ///
    /// ```
    /// # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
    /// use reqwest_oauth2_refresh::{DpopKey, TokenSet};
    /// let key = DpopKey::generate()?;
    /// // ... the authorization code exchange, with DPoP proofs from `key` ...
    /// let tokens = TokenSet::new("access").with_refresh_token("refresh").with_dpop_key(&key);
    /// assert!(tokens.is_dpop_bound());
    /// # Ok(()) }
    /// # run().unwrap();
    /// ```
    #[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
    pub fn with_dpop_key(mut self, key: &DpopKey) -> Self {
        self.dpop_key = Some(BoundKey::of(key));
        self
    }

    /// Whether the set is bound to a DPoP key (kept with it).
    pub fn is_dpop_bound(&self) -> bool {
        self.dpop_key.is_some()
    }

    /// Whether the access token is a DPoP token (`token_type` `DPoP`): API
    /// requests then carry `Authorization: DPoP` and a proof. A set bound
    /// to a key with `Bearer` access tokens (Google binds only the refresh
    /// token) sends its access token as a bearer token.
    pub fn is_dpop_token(&self) -> bool {
        self.token_type()
            .is_some_and(|t| t.eq_ignore_ascii_case("dpop"))
    }

    pub(crate) fn bound_key(&self) -> Option<&BoundKey> {
        self.dpop_key.as_ref()
    }

    pub(crate) fn set_bound_key(&mut self, key: Option<BoundKey>) {
        self.dpop_key = key;
    }
}
