//! Public keys as JWKs (RFC 7517), and their RFC 7638 thumbprint input.

use serde_json::{Value, json};

/// A public key as a JWK: what a DPoP proof's `jwk` header carries and what
/// a server's JWKS registers for `private_key_jwt`. Coordinates are
/// base64url without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicJwk {
    /// A P-256 key (`kty` `EC`, `crv` `P-256`).
    P256 {
        /// The x coordinate, 32 bytes.
        x: String,
        /// The y coordinate, 32 bytes.
        y: String,
    },
    /// An Ed25519 key (`kty` `OKP`, `crv` `Ed25519`).
    Ed25519 {
        /// The public key, 32 bytes.
        x: String,
    },
    /// An RSA key (`kty` `RSA`).
    Rsa {
        /// The modulus, big-endian without leading zeros.
        n: String,
        /// The public exponent.
        e: String,
    },
}

impl PublicJwk {
    /// The JWK as JSON, with only the key's own members (no `kid`, no
    /// `alg`): RFC 9449 §4.2 wants no private parts and nothing more.
    pub fn to_json(&self) -> Value {
        match self {
            PublicJwk::P256 { x, y } => json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            PublicJwk::Ed25519 { x } => json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
            PublicJwk::Rsa { n, e } => json!({"kty": "RSA", "n": n, "e": e}),
        }
    }

    /// RFC 7638 §3: the required members in lexicographic order, no
    /// whitespace. Its SHA-256 is the key's thumbprint (DPoP's `jkt`).
    pub fn thumbprint_input(&self) -> String {
        // The members are base64url, so they need no JSON escaping.
        match self {
            PublicJwk::P256 { x, y } => {
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            PublicJwk::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
            PublicJwk::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        }
    }
}
