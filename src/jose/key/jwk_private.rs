//! Private JWKs (RFC 7517, RFC 7518 §6, RFC 8037): the members decoded.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::Error;

/// A private key's members, decoded from base64url. Never printed.
pub(crate) enum PrivateJwk {
    P256 {
        d: Vec<u8>,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    Ed25519 {
        d: Vec<u8>,
        x: Vec<u8>,
    },
    // The pure-Rust backend refuses RSA without reading the members.
    #[cfg_attr(not(feature = "crypto-ring"), allow(dead_code))]
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        d: Vec<u8>,
        p: Vec<u8>,
        q: Vec<u8>,
        dp: Vec<u8>,
        dq: Vec<u8>,
        qi: Vec<u8>,
    },
}

/// A parsed private JWK with the `alg` and `kid` it names.
pub(crate) struct ParsedJwk {
    pub(crate) key: PrivateJwk,
    pub(crate) alg: Option<String>,
    pub(crate) kid: Option<String>,
}

/// Parses a private JWK. Errors name the member, never its value.
pub(crate) fn parse(text: &str) -> Result<ParsedJwk, Error> {
    let value: Value = serde_json::from_str(text)
        .map_err(|_| Error::Config("the JWK is not valid JSON".into()))?;
    let Value::Object(map) = value else {
        return Err(Error::Config("the JWK is not a JSON object".into()));
    };
    let text_member = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_owned);
    let kty = text_member("kty").unwrap_or_default();
    let crv = text_member("crv").unwrap_or_default();
    let bytes = |name: &str| member(&map, name);
    let key = match (kty.as_str(), crv.as_str()) {
        ("EC", "P-256") => PrivateJwk::P256 {
            d: bytes("d")?,
            x: bytes("x")?,
            y: bytes("y")?,
        },
        ("OKP", "Ed25519") => PrivateJwk::Ed25519 {
            d: bytes("d")?,
            x: bytes("x")?,
        },
        ("RSA", _) => PrivateJwk::Rsa {
            n: bytes("n")?,
            e: bytes("e")?,
            d: bytes("d")?,
            p: bytes("p")?,
            q: bytes("q")?,
            dp: bytes("dp")?,
            dq: bytes("dq")?,
            qi: bytes("qi")?,
        },
        _ => {
            return Err(Error::Config(format!(
                "unsupported JWK (kty {kty:?}, crv {crv:?}): EC P-256, OKP Ed25519 or RSA"
            )));
        }
    };
    Ok(ParsedJwk {
        key,
        alg: text_member("alg"),
        kid: text_member("kid"),
    })
}

fn member(map: &Map<String, Value>, name: &str) -> Result<Vec<u8>, Error> {
    let text = map
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Config(format!("the JWK has no {name:?} member")))?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| Error::Config(format!("the JWK's {name:?} is not base64url")))
}
