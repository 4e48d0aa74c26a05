//! [`SigningKey`]: a private key held in this process.

mod backend;
mod jwk_private;
#[cfg(feature = "crypto-ring")]
#[path = "key/ring.rs"]
mod ring_backend;
#[cfg(feature = "crypto-rustcrypto")]
mod rustcrypto;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

pub use backend::CryptoBackend;
use backend::Pair;
#[cfg(test)]
pub(crate) use backend::generate_pkcs8_with;
pub(crate) use backend::sha256;
#[cfg(all(test, feature = "crypto-rustcrypto"))]
pub(crate) use rustcrypto::sha256 as rustcrypto_sha256;

use super::pem::{self, KeyType, PemKey};
use super::{Algorithm, PublicJwk, Signer, b64, read_private_file};
use crate::error::{BoxError, Error};

/// A private key in this process's memory: ES256 (P-256), EdDSA
/// (Ed25519), RS256 or PS256 (RSA).
///
/// Load it from PEM (PKCS#8 `PRIVATE KEY`, or PKCS#1 `RSA PRIVATE KEY`), a
/// private JWK, or a Google service-account JSON file
/// ([`providers::google_service_account`](crate::providers::google_service_account)).
/// Files that group or others can read are refused, like a token file.
/// `Debug` shows the algorithm, `kid` and backend, never the key. Clones
/// share the key.
///
/// The key lives in [`CryptoBackend::default()`] (ring when `crypto-ring` is
/// on, else RustCrypto) unless a `*_with` constructor names one.
///
/// ```
/// # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
/// use reqwest_oauth2_refresh::{Algorithm, Signer, SigningKey};
/// let key = SigningKey::generate(Algorithm::Es256)?.with_key_id("key-1");
/// assert_eq!(key.algorithm(), Algorithm::Es256);
/// # Ok(()) }
/// # run().unwrap();
/// ```
#[derive(Clone)]
pub struct SigningKey {
    pair: Arc<Pair>,
    algorithm: Algorithm,
    public: PublicJwk,
    key_id: Option<String>,
    x5t_s256: Option<String>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .field("backend", &self.pair.backend())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn new(pair: Pair, algorithm: Option<Algorithm>) -> Result<Self, Error> {
        let algorithm = match (pair.key_type(), algorithm) {
            (KeyType::Ec, None | Some(Algorithm::Es256)) => Algorithm::Es256,
            (KeyType::Ed25519, None | Some(Algorithm::EdDsa)) => Algorithm::EdDsa,
            (KeyType::Rsa, None) => Algorithm::Rs256,
            (KeyType::Rsa, Some(alg)) if alg.is_rsa() => alg,
            (kind, Some(alg)) => {
                return Err(Error::Config(format!(
                    "{} cannot sign {alg}",
                    kind.described()
                )));
            }
        };
        Ok(Self {
            public: pair.public_jwk(),
            pair: Arc::new(pair),
            algorithm,
            key_id: None,
            x5t_s256: None,
        })
    }

    /// A new random key for ES256 or EdDSA (RSA keys cannot be made here),
    /// from the operating system's random numbers.
    pub fn generate(algorithm: Algorithm) -> Result<Self, Error> {
        Self::generate_with(algorithm, CryptoBackend::default())
    }

    /// [`generate`](Self::generate) in the given backend.
    pub fn generate_with(algorithm: Algorithm, backend: CryptoBackend) -> Result<Self, Error> {
        Self::new(Pair::generate(backend, algorithm)?, Some(algorithm))
    }

    /// A key from PEM text: PKCS#8 (`-----BEGIN PRIVATE KEY-----`, what
    /// `openssl genpkey` writes and what Google's service-account files
    /// hold) or PKCS#1 RSA (`-----BEGIN RSA PRIVATE KEY-----`). RSA keys
    /// sign RS256 unless [`with_algorithm`](Self::with_algorithm) says PS256.
    /// Blocks before the key (a certificate) are skipped; encrypted and
    /// SEC1 (`EC PRIVATE KEY`) keys are refused with the `openssl` command
    /// that converts them.
    pub fn from_pem(text: &str) -> Result<Self, Error> {
        Self::from_pem_with(text, CryptoBackend::default())
    }

    /// [`from_pem`](Self::from_pem) in the given backend.
    pub fn from_pem_with(text: &str, backend: CryptoBackend) -> Result<Self, Error> {
        let pair = match pem::parse(text)? {
            PemKey::Pkcs8(der) => {
                let kind = pem::pkcs8_key_type(&der).ok_or_else(|| {
                    Error::Config("the PKCS#8 key is not P-256, Ed25519 or RSA".into())
                })?;
                Pair::from_pkcs8(backend, &der, kind)?
            }
            PemKey::Pkcs1(der) => Pair::from_pkcs1(backend, &der)?,
        };
        Self::new(pair, None)
    }

    /// A key from a PEM file that only its owner can read.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::from_pem(&read_private_file(path.as_ref())?)
    }

    /// A key from a private JWK (`kty` `EC` with `crv` `P-256`, `OKP` with
    /// `Ed25519`, or `RSA` with all its CRT members). Its `alg` and `kid`
    /// members are used when present.
    pub fn from_jwk(json: &str) -> Result<Self, Error> {
        Self::from_jwk_with(json, CryptoBackend::default())
    }

    /// [`from_jwk`](Self::from_jwk) in the given backend.
    pub fn from_jwk_with(json: &str, backend: CryptoBackend) -> Result<Self, Error> {
        let parsed = jwk_private::parse(json)?;
        let algorithm = parsed.alg.as_deref().map(str::parse).transpose()?;
        let mut key = Self::new(Pair::from_private_jwk(backend, &parsed.key)?, algorithm)?;
        key.key_id = parsed.kid;
        Ok(key)
    }

    /// Signs with `algorithm` instead: PS256 for an RSA key whose server
    /// wants it (FAPI 2.0 allows PS256, not RS256).
    pub fn with_algorithm(self, algorithm: Algorithm) -> Result<Self, Error> {
        let kind = self.pair.key_type();
        let compatible = match kind {
            KeyType::Ec => algorithm == Algorithm::Es256,
            KeyType::Ed25519 => algorithm == Algorithm::EdDsa,
            KeyType::Rsa => algorithm.is_rsa(),
        };
        if !compatible {
            return Err(Error::Config(format!(
                "{} cannot sign {algorithm}",
                kind.described()
            )));
        }
        Ok(Self { algorithm, ..self })
    }

    /// The library that holds the key.
    pub fn backend(&self) -> CryptoBackend {
        self.pair.backend()
    }

    /// The `kid` header: the id the server knows the public key by.
    pub fn with_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// The `x5t#S256` header, from the key's X.509 certificate (DER): how
    /// Microsoft Entra identifies certificate credentials.
    pub fn with_certificate_der(mut self, certificate: &[u8]) -> Self {
        self.x5t_s256 = Some(b64(sha256(certificate)));
        self
    }
}

#[async_trait]
impl Signer for SigningKey {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    fn x509_thumbprint_sha256(&self) -> Option<&str> {
        self.x5t_s256.as_deref()
    }

    fn public_jwk(&self) -> PublicJwk {
        self.public.clone()
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BoxError> {
        self.pair.sign(self.algorithm, message)
    }
}

/// A new ES256 or EdDSA key in PKCS#8 PEM: the form a key kept in a store
/// is saved in.
pub(crate) fn generate_pkcs8_pem(algorithm: Algorithm) -> Result<String, Error> {
    Ok(pem::encode_pkcs8(&backend::generate_pkcs8(algorithm)?))
}
