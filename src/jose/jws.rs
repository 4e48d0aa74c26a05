//! Compact JWS assembly (RFC 7515 §7.1): base64url(header) "."
//! base64url(payload) "." base64url(signature).

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::Signer;
use crate::error::Error;

/// Base64url without padding (RFC 7515 §2).
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `claims` with `signer`. The header gets `alg`, `typ` when given,
/// the signer's `kid` and `x5t#S256`, then `extra` (a DPoP proof's `jwk`).
pub(crate) async fn compact(
    signer: &dyn Signer,
    typ: Option<&str>,
    extra: Map<String, Value>,
    claims: &Value,
) -> Result<String, Error> {
    let mut header = Map::new();
    header.insert("alg".into(), signer.algorithm().name().into());
    if let Some(typ) = typ {
        header.insert("typ".into(), typ.into());
    }
    if let Some(kid) = signer.key_id() {
        header.insert("kid".into(), kid.into());
    }
    if let Some(thumbprint) = signer.x509_thumbprint_sha256() {
        header.insert("x5t#S256".into(), thumbprint.into());
    }
    header.extend(extra);
    let mut message = b64(Value::Object(header).to_string());
    message.push('.');
    message.push_str(&b64(claims.to_string()));
    let signature = signer
        .sign(message.as_bytes())
        .await
        .map_err(|source| Error::Signing(Arc::from(source)))?;
    message.push('.');
    message.push_str(&b64(signature));
    Ok(message)
}
