//! [`DpopKey`]: the key a token family is bound to, in the form it is
//! saved in.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use super::Prover;
use crate::error::Error;
use crate::jose::{
    Algorithm, PublicJwk, Signer, SigningKey, b64, generate_pkcs8_pem, read_private_file, sha256,
};

/// A DPoP key (RFC 9449): the private key that tokens are bound to.
///
/// It travels with its [`TokenSet`](crate::TokenSet) (see
/// [`TokenSet::with_dpop_key`](crate::TokenSet::with_dpop_key)) into every
/// store, so that another process, another host or a restart can keep
/// refreshing a bound refresh token: the store holds the private key in
/// clear, next to the refresh token it protects. `Debug` shows the
/// algorithm and thumbprint only.
///
/// ```
/// # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
/// use reqwest_oauth2_refresh::DpopKey;
/// let key = DpopKey::generate()?; // ES256
/// // Authorization servers bind tokens to this (`cnf.jkt`):
/// assert_eq!(key.thumbprint().len(), 43);
/// # Ok(()) }
/// # run().unwrap();
/// ```
#[derive(Clone)]
pub struct DpopKey {
    inner: Arc<Inner>,
}

struct Inner {
    key: SigningKey,
    /// The saved form: PKCS#8 PEM, or a private JWK.
    text: String,
    prover: Arc<Prover>,
    thumbprint: String,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("algorithm", &self.inner.key.algorithm())
            .field("thumbprint", &self.inner.thumbprint)
            .finish_non_exhaustive()
    }
}

impl PartialEq for DpopKey {
    fn eq(&self, other: &Self) -> bool {
        self.inner.thumbprint == other.inner.thumbprint
    }
}

impl DpopKey {
    fn new(key: SigningKey, text: String) -> Self {
        let public = key.public_jwk();
        let thumbprint = b64(sha256(public.thumbprint_input().as_bytes()));
        let prover = Arc::new(Prover::new(Arc::new(key.clone())));
        Self {
            inner: Arc::new(Inner {
                key,
                text,
                prover,
                thumbprint,
            }),
        }
    }

    /// A new ES256 key: what every DPoP server supports.
    pub fn generate() -> Result<Self, Error> {
        Self::generate_with(Algorithm::Es256)
    }

    /// A new key for ES256 or EdDSA.
    pub fn generate_with(algorithm: Algorithm) -> Result<Self, Error> {
        Self::from_pem(&generate_pkcs8_pem(algorithm)?)
    }

    /// A key from PKCS#8 PEM (or PKCS#1 for RSA, which signs RS256).
    pub fn from_pem(text: &str) -> Result<Self, Error> {
        Ok(Self::new(SigningKey::from_pem(text)?, text.to_owned()))
    }

    /// A key from a private JWK; its `alg` is used when present.
    pub fn from_jwk(json: &str) -> Result<Self, Error> {
        Ok(Self::new(SigningKey::from_jwk(json)?, json.to_owned()))
    }

    /// A key from a PEM or JWK file that only its owner can read.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::from_saved(&read_private_file(path.as_ref())?)
    }

    /// A key in either saved form: a JSON object is a JWK, else PEM.
    pub(crate) fn from_saved(text: &str) -> Result<Self, Error> {
        if text.trim_start().starts_with('{') {
            Self::from_jwk(text)
        } else {
            Self::from_pem(text)
        }
    }

    /// The signature algorithm of its proofs.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.key.algorithm()
    }

    /// The public key.
    pub fn public_jwk(&self) -> PublicJwk {
        self.inner.key.public_jwk()
    }

    /// The RFC 7638 SHA-256 thumbprint (base64url): the `jkt` that bound
    /// tokens name in `cnf`, and that `dpop_jkt` sends in an authorization
    /// request.
    pub fn thumbprint(&self) -> &str {
        &self.inner.thumbprint
    }

    /// The form it is saved in.
    pub(crate) fn saved(&self) -> &str {
        &self.inner.text
    }

    pub(crate) fn prover(&self) -> &Arc<Prover> {
        &self.inner.prover
    }
}

/// base64url(SHA-256(access token)): a resource proof's `ath`.
pub(crate) fn ath(access_token: &str) -> String {
    b64(sha256(access_token.as_bytes()))
}
