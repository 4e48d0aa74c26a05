//! The JWS algorithms we sign with (RFC 7518 §3, RFC 8037).

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A JWS signature algorithm.
///
/// ES256 is what every DPoP server supports; RS256 and PS256 are what
/// Microsoft Entra certificates, Okta service apps and Google service
/// accounts use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// ECDSA with P-256 and SHA-256.
    Es256,
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    Ps256,
}

impl Algorithm {
    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Rs256 => "RS256",
            Algorithm::Ps256 => "PS256",
        }
    }

    /// Whether the algorithm signs with an RSA key.
    pub fn is_rsa(self) -> bool {
        matches!(self, Algorithm::Rs256 | Algorithm::Ps256)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        match name {
            "ES256" => Ok(Algorithm::Es256),
            "EdDSA" | "Ed25519" => Ok(Algorithm::EdDsa),
            "RS256" => Ok(Algorithm::Rs256),
            "PS256" => Ok(Algorithm::Ps256),
            other => Err(Error::Config(format!(
                "unsupported signing algorithm {other:?} (ES256, EdDSA, RS256, PS256)"
            ))),
        }
    }
}
