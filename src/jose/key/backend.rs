//! The crypto backends behind [`SigningKey`](super::SigningKey): one enum
//! over those enabled, so that turning both features on is just a choice,
//! never a conflict.

use super::jwk_private::PrivateJwk;
#[cfg(feature = "crypto-ring")]
use super::ring_backend;
#[cfg(feature = "crypto-rustcrypto")]
use super::rustcrypto;
use crate::error::{BoxError, Error};
use crate::jose::pem::KeyType;
use crate::jose::{Algorithm, PublicJwk};

/// The crypto library that holds a [`SigningKey`](super::SigningKey)'s
/// private key. Each variant exists with its cargo feature.
///
/// The plain constructors ([`SigningKey::from_pem`](super::SigningKey::from_pem)
/// and the others) use [`CryptoBackend::default()`]: ring when `crypto-ring`
/// is on (it also signs RSA), else RustCrypto. The `*_with` constructors
/// pick one, to compare them or to keep a key off C code.
///
/// ```
/// # #[cfg(feature = "crypto-rustcrypto")]
/// # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
/// use reqwest_oauth2_refresh::{Algorithm, CryptoBackend, SigningKey};
/// let key = SigningKey::generate_with(Algorithm::EdDsa, CryptoBackend::RustCrypto)?;
/// assert_eq!(key.backend(), CryptoBackend::RustCrypto);
/// # Ok(()) }
/// # #[cfg(feature = "crypto-rustcrypto")]
/// # run().unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CryptoBackend {
    /// `ring` (feature `crypto-ring`): ES256, EdDSA, RS256, PS256.
    #[cfg(feature = "crypto-ring")]
    #[cfg_attr(docsrs, doc(cfg(feature = "crypto-ring")))]
    Ring,
    /// RustCrypto's `p256` and `ed25519-dalek`, pure Rust (feature
    /// `crypto-rustcrypto`): ES256 and EdDSA; RSA keys are refused.
    #[cfg(feature = "crypto-rustcrypto")]
    #[cfg_attr(docsrs, doc(cfg(feature = "crypto-rustcrypto")))]
    RustCrypto,
}

impl Default for CryptoBackend {
    /// ring when enabled, since it covers every algorithm; else RustCrypto.
    fn default() -> Self {
        #[cfg(feature = "crypto-ring")]
        return CryptoBackend::Ring;
        #[cfg(not(feature = "crypto-ring"))]
        return CryptoBackend::RustCrypto;
    }
}

/// A key pair in one of the enabled backends.
pub(crate) enum Pair {
    #[cfg(feature = "crypto-ring")]
    Ring(ring_backend::Pair),
    #[cfg(feature = "crypto-rustcrypto")]
    RustCrypto(rustcrypto::Pair),
}

/// Runs `$make` with `$m` naming the backend module `$backend` selects, and
/// wraps the pair it returns.
macro_rules! build {
    ($backend:expr, |$m:ident| $make:expr) => {
        match $backend {
            #[cfg(feature = "crypto-ring")]
            CryptoBackend::Ring => {
                use ring_backend as $m;
                $make.map(Pair::Ring)
            }
            #[cfg(feature = "crypto-rustcrypto")]
            CryptoBackend::RustCrypto => {
                use rustcrypto as $m;
                $make.map(Pair::RustCrypto)
            }
        }
    };
}

/// Runs `$body` with `$pair` bound to the backend's own pair.
macro_rules! each {
    ($self:expr, |$pair:ident| $body:expr) => {
        match $self {
            #[cfg(feature = "crypto-ring")]
            Pair::Ring($pair) => $body,
            #[cfg(feature = "crypto-rustcrypto")]
            Pair::RustCrypto($pair) => $body,
        }
    };
}

impl Pair {
    pub(crate) fn from_pkcs8(
        backend: CryptoBackend,
        der: &[u8],
        kind: KeyType,
    ) -> Result<Pair, Error> {
        build!(backend, |m| m::Pair::from_pkcs8(der, kind))
    }

    pub(crate) fn from_pkcs1(backend: CryptoBackend, der: &[u8]) -> Result<Pair, Error> {
        build!(backend, |m| m::Pair::from_pkcs1(der))
    }

    pub(crate) fn from_private_jwk(
        backend: CryptoBackend,
        jwk: &PrivateJwk,
    ) -> Result<Pair, Error> {
        build!(backend, |m| m::Pair::from_private_jwk(jwk))
    }

    pub(crate) fn generate(backend: CryptoBackend, alg: Algorithm) -> Result<Pair, Error> {
        build!(backend, |m| m::Pair::generate(alg))
    }

    pub(crate) fn backend(&self) -> CryptoBackend {
        match self {
            #[cfg(feature = "crypto-ring")]
            Pair::Ring(_) => CryptoBackend::Ring,
            #[cfg(feature = "crypto-rustcrypto")]
            Pair::RustCrypto(_) => CryptoBackend::RustCrypto,
        }
    }

    pub(crate) fn key_type(&self) -> KeyType {
        each!(self, |p| p.key_type())
    }

    pub(crate) fn public_jwk(&self) -> PublicJwk {
        each!(self, |p| p.public_jwk())
    }

    pub(crate) fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, BoxError> {
        each!(self, |p| p.sign(alg, message))
    }
}

/// A new ES256 or EdDSA key as PKCS#8 DER, for keys that must be saved (a
/// DPoP key kept with its token set), made by the default backend.
pub(crate) fn generate_pkcs8(alg: Algorithm) -> Result<Vec<u8>, Error> {
    generate_pkcs8_with(alg, CryptoBackend::default())
}

pub(crate) fn generate_pkcs8_with(
    alg: Algorithm,
    backend: CryptoBackend,
) -> Result<Vec<u8>, Error> {
    match backend {
        #[cfg(feature = "crypto-ring")]
        CryptoBackend::Ring => ring_backend::generate_pkcs8(alg),
        #[cfg(feature = "crypto-rustcrypto")]
        CryptoBackend::RustCrypto => rustcrypto::generate_pkcs8(alg),
    }
}

/// SHA-256, for `x5t#S256` (and DPoP's `ath` and `jkt`): ring's when it is
/// in the build.
#[cfg(feature = "crypto-ring")]
pub(crate) use ring_backend::sha256;
#[cfg(not(feature = "crypto-ring"))]
pub(crate) use rustcrypto::sha256;
