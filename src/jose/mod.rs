//! Signed JWTs of our own (RFC 7515 compact JWS): client assertions
//! (RFC 7523 §2.2, `private_key_jwt`) and JWT-bearer grants (RFC 7523 §2.1).
//!
//! The crypto is behind one small trait, [`Signer`], so that a key in a KMS
//! or an HSM can stand behind it; [`SigningKey`] (features `crypto-ring` or
//! `crypto-rustcrypto`) is a local key from PEM, JWK or a Google
//! service-account file. The JWS itself is assembled here, not by a JWT
//! crate: it is forty lines, and the JWT crates either panic at first use
//! when two of their backends are enabled or pull in a crypto stack the user
//! did not choose.

mod algorithm;
mod jwk;
mod jws;
#[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
mod key;
mod key_file;
#[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
mod pem;
#[cfg(all(test, any(feature = "crypto-ring", feature = "crypto-rustcrypto")))]
mod tests;

use std::fmt;

use async_trait::async_trait;

pub use algorithm::Algorithm;
pub use jwk::PublicJwk;
pub(crate) use jws::{b64, compact};
#[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
pub use key::{CryptoBackend, SigningKey};
#[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
pub(crate) use key::{generate_pkcs8_pem, sha256};
#[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
pub(crate) use key_file::read_private_file;

use crate::error::BoxError;

/// Something that signs JWS payloads with one private key: a local
/// [`SigningKey`], or a key in a KMS or HSM behind an implementation of
/// your own.
///
/// `sign` is async so that a remote signer does not block the runtime; it is
/// called once per token-endpoint attempt (every attempt carries a fresh
/// assertion).
///
/// ```
/// use reqwest_oauth2_refresh::{Algorithm, BoxError, PublicJwk, Signer, async_trait};
///
/// /// A key that lives in a cloud KMS.
/// #[derive(Debug)]
/// struct KmsKey { key_name: String, public: PublicJwk }
///
/// #[async_trait]
/// impl Signer for KmsKey {
///     fn algorithm(&self) -> Algorithm { Algorithm::Rs256 }
///     fn key_id(&self) -> Option<&str> { Some(&self.key_name) }
///     fn public_jwk(&self) -> PublicJwk { self.public.clone() }
///     async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BoxError> {
///         // Call the KMS's asymmetric-sign API with `message` here.
///         # let _ = message;
///         Err("not connected".into())
///     }
/// }
/// ```
#[async_trait]
pub trait Signer: fmt::Debug + Send + Sync + 'static {
    /// The JWS algorithm of [`sign`](Signer::sign)'s signatures.
    fn algorithm(&self) -> Algorithm;

    /// The `kid` header: the id under which the server knows the public key
    /// (a JWKS entry, Google's `private_key_id`).
    fn key_id(&self) -> Option<&str> {
        None
    }

    /// The `x5t#S256` header: the base64url SHA-256 thumbprint of the key's
    /// X.509 certificate, which Microsoft Entra's certificate credentials
    /// identify the key by.
    fn x509_thumbprint_sha256(&self) -> Option<&str> {
        None
    }

    /// The public key, as a JWK (DPoP proofs carry it).
    fn public_jwk(&self) -> PublicJwk;

    /// The signature of `message` in JWS form (RFC 7518 §3): for ES256 the
    /// raw 64-byte `r‖s`, not DER.
    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BoxError>;
}
