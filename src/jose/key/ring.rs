//! The `ring` backend: ES256, EdDSA, RS256 and PS256.

use ring::rand::SystemRandom;
use ring::rsa::{KeyPairComponents, PublicKeyComponents};
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};

use super::jwk_private::PrivateJwk;
use crate::error::{BoxError, Error};
use crate::jose::pem::KeyType;
use crate::jose::{Algorithm, PublicJwk, b64};

/// A key pair held by ring.
pub(crate) enum Pair {
    Ec(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

const ES256: &signature::EcdsaSigningAlgorithm = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;

fn rejected(what: &str, error: impl std::fmt::Display) -> Error {
    Error::Config(format!("the {what} key was rejected: {error}"))
}

impl Pair {
    pub(crate) fn from_pkcs8(der: &[u8], kind: KeyType) -> Result<Pair, Error> {
        let rng = SystemRandom::new();
        match kind {
            KeyType::Ec => EcdsaKeyPair::from_pkcs8(ES256, der, &rng)
                .map(Pair::Ec)
                .map_err(|e| rejected("P-256", e)),
            KeyType::Ed25519 => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map(Pair::Ed25519)
                .map_err(|e| rejected("Ed25519", e)),
            KeyType::Rsa => RsaKeyPair::from_pkcs8(der)
                .map(Pair::Rsa)
                .map_err(|e| rejected("RSA", e)),
        }
    }

    pub(crate) fn from_pkcs1(der: &[u8]) -> Result<Pair, Error> {
        RsaKeyPair::from_der(der)
            .map(Pair::Rsa)
            .map_err(|e| rejected("RSA", e))
    }

    pub(crate) fn from_private_jwk(jwk: &PrivateJwk) -> Result<Pair, Error> {
        match jwk {
            PrivateJwk::P256 { d, x, y } => {
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                EcdsaKeyPair::from_private_key_and_public_key(
                    ES256,
                    d,
                    &point,
                    &SystemRandom::new(),
                )
                .map(Pair::Ec)
                .map_err(|e| rejected("P-256", e))
            }
            PrivateJwk::Ed25519 { d, x } => Ed25519KeyPair::from_seed_and_public_key(d, x)
                .map(Pair::Ed25519)
                .map_err(|e| rejected("Ed25519", e)),
            PrivateJwk::Rsa {
                n,
                e,
                d,
                p,
                q,
                dp,
                dq,
                qi,
            } => RsaKeyPair::from_components(&KeyPairComponents {
                public_key: PublicKeyComponents { n, e },
                d,
                p,
                q,
                dP: dp,
                dQ: dq,
                qInv: qi,
            })
            .map(Pair::Rsa)
            .map_err(|e| rejected("RSA", e)),
        }
    }

    /// A new key. ring cannot make RSA keys; make those with openssl.
    pub(crate) fn generate(alg: Algorithm) -> Result<Pair, Error> {
        let rng = SystemRandom::new();
        let failed =
            |e: ring::error::Unspecified| Error::Config(format!("key generation failed: {e}"));
        match alg {
            Algorithm::Es256 => {
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(ES256, &rng).map_err(failed)?;
                Pair::from_pkcs8(pkcs8.as_ref(), KeyType::Ec)
            }
            Algorithm::EdDsa => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(failed)?;
                Pair::from_pkcs8(pkcs8.as_ref(), KeyType::Ed25519)
            }
            _ => Err(Error::Config(format!(
                "{alg} keys cannot be generated here; load one from PEM or JWK"
            ))),
        }
    }

    pub(crate) fn key_type(&self) -> KeyType {
        match self {
            Pair::Ec(_) => KeyType::Ec,
            Pair::Ed25519(_) => KeyType::Ed25519,
            Pair::Rsa(_) => KeyType::Rsa,
        }
    }

    pub(crate) fn public_jwk(&self) -> PublicJwk {
        match self {
            Pair::Ec(pair) => {
                // The uncompressed point: 0x04 ‖ x ‖ y.
                let point = pair.public_key().as_ref();
                PublicJwk::P256 {
                    x: b64(&point[1..33]),
                    y: b64(&point[33..65]),
                }
            }
            Pair::Ed25519(pair) => PublicJwk::Ed25519 {
                x: b64(pair.public_key().as_ref()),
            },
            Pair::Rsa(pair) => {
                let parts = PublicKeyComponents::<Vec<u8>>::from(pair.public());
                PublicJwk::Rsa {
                    n: b64(parts.n),
                    e: b64(parts.e),
                }
            }
        }
    }

    pub(crate) fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, BoxError> {
        let rng = SystemRandom::new();
        match (self, alg) {
            (Pair::Ec(pair), Algorithm::Es256) => pair
                .sign(&rng, message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| "ECDSA signing failed".into()),
            (Pair::Ed25519(pair), Algorithm::EdDsa) => Ok(pair.sign(message).as_ref().to_vec()),
            (Pair::Rsa(pair), Algorithm::Rs256 | Algorithm::Ps256) => {
                let padding: &dyn signature::RsaEncoding = if alg == Algorithm::Rs256 {
                    &signature::RSA_PKCS1_SHA256
                } else {
                    &signature::RSA_PSS_SHA256
                };
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(padding, &rng, message, &mut signature)
                    .map_err(|_| "RSA signing failed")?;
                Ok(signature)
            }
            _ => Err(format!("this key cannot sign {alg}").into()),
        }
    }
}

/// SHA-256, for `x5t#S256` (and DPoP's `ath` and `jkt`).
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A new ES256 or EdDSA key as PKCS#8 DER, for keys that must be saved (a
/// DPoP key kept with its token set).
pub(crate) fn generate_pkcs8(alg: Algorithm) -> Result<Vec<u8>, Error> {
    let rng = SystemRandom::new();
    let document = match alg {
        Algorithm::Es256 => EcdsaKeyPair::generate_pkcs8(ES256, &rng),
        Algorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng),
        _ => {
            return Err(Error::Config(format!(
                "{alg} keys cannot be generated here; load one from PEM or JWK"
            )));
        }
    };
    document
        .map(|d| d.as_ref().to_vec())
        .map_err(|e| Error::Config(format!("key generation failed: {e}")))
}
