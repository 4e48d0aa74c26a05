//! The pure-Rust backend (RustCrypto `p256`, `ed25519-dalek`): ES256 and
//! EdDSA. RSA keys are refused: the RustCrypto `rsa` crate is under an open
//! timing advisory (RUSTSEC-2023-0071, "Marvin"), so it signs nothing here.

use ed25519_dalek::Signer as _;
use p256::pkcs8::DecodePrivateKey as _;

use super::jwk_private::PrivateJwk;
use crate::error::{BoxError, Error};
use crate::jose::pem::KeyType;
use crate::jose::{Algorithm, PublicJwk, b64};

/// A key pair held by the RustCrypto crates. Both zeroize their secret on
/// drop.
pub(crate) enum Pair {
    Ec(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

fn rejected(what: &str) -> Error {
    // The crates' errors say little more than "malformed"; the key type is
    // what helps.
    Error::Config(format!("the {what} key was rejected"))
}

fn no_rsa() -> Error {
    Error::Config(
        "RSA keys need the `crypto-ring` feature: the pure-Rust backend does not sign RSA \
         (the `rsa` crate has an open timing advisory, RUSTSEC-2023-0071)"
            .into(),
    )
}

impl Pair {
    pub(crate) fn from_pkcs8(der: &[u8], kind: KeyType) -> Result<Pair, Error> {
        match kind {
            KeyType::Ec => p256::ecdsa::SigningKey::from_pkcs8_der(der)
                .map(Pair::Ec)
                .map_err(|_| rejected("P-256")),
            KeyType::Ed25519 => ed25519_dalek::SigningKey::from_pkcs8_der(der)
                .map(Pair::Ed25519)
                .map_err(|_| rejected("Ed25519")),
            KeyType::Rsa => Err(no_rsa()),
        }
    }

    pub(crate) fn from_pkcs1(_der: &[u8]) -> Result<Pair, Error> {
        Err(no_rsa())
    }

    pub(crate) fn from_private_jwk(jwk: &PrivateJwk) -> Result<Pair, Error> {
        let pair = match jwk {
            PrivateJwk::P256 { d, .. } => p256::ecdsa::SigningKey::from_slice(d)
                .map(Pair::Ec)
                .map_err(|_| rejected("P-256"))?,
            PrivateJwk::Ed25519 { d, .. } => {
                let seed: &[u8; 32] = d.as_slice().try_into().map_err(|_| rejected("Ed25519"))?;
                Pair::Ed25519(ed25519_dalek::SigningKey::from_bytes(seed))
            }
            PrivateJwk::Rsa { .. } => return Err(no_rsa()),
        };
        // As ring does: a JWK whose public members are not its private
        // key's would sign with one key and advertise another.
        if !pair.matches_public(jwk) {
            return Err(Error::Config(
                "the JWK's public members do not match its private key".into(),
            ));
        }
        Ok(pair)
    }

    fn matches_public(&self, jwk: &PrivateJwk) -> bool {
        match (self, jwk) {
            (Pair::Ec(key), PrivateJwk::P256 { x, y, .. }) => {
                let point = key.verifying_key().to_sec1_point(false);
                point.x().map(|a| a.as_slice()) == Some(x.as_slice())
                    && point.y().map(|a| a.as_slice()) == Some(y.as_slice())
            }
            (Pair::Ed25519(key), PrivateJwk::Ed25519 { x, .. }) => {
                key.verifying_key().as_bytes().as_slice() == x.as_slice()
            }
            _ => false,
        }
    }

    /// A new key from the operating system's random numbers.
    pub(crate) fn generate(alg: Algorithm) -> Result<Pair, Error> {
        let failed = |e: getrandom::Error| Error::Config(format!("key generation failed: {e}"));
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        match alg {
            Algorithm::Es256 => {
                // A random 32 bytes is a valid scalar unless it is zero or
                // at least the group order (odds about 2^-32): draw again.
                for _ in 0..8 {
                    getrandom::fill(seed.as_mut()).map_err(failed)?;
                    if let Ok(key) = p256::ecdsa::SigningKey::from_slice(seed.as_ref()) {
                        return Ok(Pair::Ec(key));
                    }
                }
                Err(Error::Config("key generation failed".into()))
            }
            Algorithm::EdDsa => {
                getrandom::fill(seed.as_mut()).map_err(failed)?;
                Ok(Pair::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed)))
            }
            _ => Err(no_rsa()),
        }
    }

    pub(crate) fn key_type(&self) -> KeyType {
        match self {
            Pair::Ec(_) => KeyType::Ec,
            Pair::Ed25519(_) => KeyType::Ed25519,
        }
    }

    pub(crate) fn public_jwk(&self) -> PublicJwk {
        match self {
            Pair::Ec(key) => {
                // The uncompressed point: 0x04 ‖ x ‖ y.
                let point = key.verifying_key().to_sec1_point(false);
                let bytes = point.as_bytes();
                PublicJwk::P256 {
                    x: b64(&bytes[1..33]),
                    y: b64(&bytes[33..65]),
                }
            }
            Pair::Ed25519(key) => PublicJwk::Ed25519 {
                x: b64(key.verifying_key().as_bytes()),
            },
        }
    }

    pub(crate) fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, BoxError> {
        match (self, alg) {
            (Pair::Ec(key), Algorithm::Es256) => {
                // RFC 6979 deterministic nonces; `to_bytes` is the fixed
                // r‖s form JWS wants, not DER.
                let signature: p256::ecdsa::Signature =
                    key.try_sign(message).map_err(|_| "ECDSA signing failed")?;
                Ok(signature.to_bytes().to_vec())
            }
            (Pair::Ed25519(key), Algorithm::EdDsa) => Ok(key.sign(message).to_bytes().to_vec()),
            _ => Err(format!("this key cannot sign {alg}").into()),
        }
    }
}

/// A new ES256 or EdDSA key as PKCS#8 DER, for keys that must be saved.
pub(crate) fn generate_pkcs8(alg: Algorithm) -> Result<Vec<u8>, Error> {
    use p256::pkcs8::EncodePrivateKey as _;
    let document = match Pair::generate(alg)? {
        Pair::Ec(key) => key.to_pkcs8_der(),
        Pair::Ed25519(key) => key.to_pkcs8_der(),
    };
    document
        .map(|d| d.as_bytes().to_vec())
        .map_err(|_| Error::Config("the new key could not be encoded".into()))
}

/// SHA-256, for `x5t#S256` (and DPoP's `ath` and `jkt`).
#[cfg_attr(feature = "crypto-ring", allow(dead_code))]
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}
