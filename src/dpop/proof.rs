//! DPoP proofs (RFC 9449 §4.2): a JWS of `typ` `dpop+jwt` with the public
//! key in its header, new for every request and every attempt.

use std::sync::Arc;
use std::time::SystemTime;

use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use url::Url;

use super::htu::htu;
use crate::error::Error;
use crate::jose::{Signer, b64};
use crate::util::jitter::random_u64;

/// What every proof with one key shares, computed once: the signer and the
/// encoded header (`typ`, `alg`, `jwk`; no `kid`: the key is in the proof).
pub(crate) struct Prover {
    signer: Arc<dyn Signer>,
    header: String,
}

impl std::fmt::Debug for Prover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prover")
            .field("alg", &self.signer.algorithm())
            .finish_non_exhaustive()
    }
}

/// What a proof is for.
pub(crate) struct ProofFor<'a> {
    pub(crate) method: &'a str,
    pub(crate) url: &'a Url,
    /// base64url(SHA-256(access token)), on resource requests.
    pub(crate) ath: Option<&'a str>,
    pub(crate) nonce: Option<&'a str>,
}

impl Prover {
    // Keys (and so provers) exist only with a crypto feature.
    #[cfg_attr(
        not(any(feature = "crypto-ring", feature = "crypto-rustcrypto")),
        allow(dead_code)
    )]
    pub(crate) fn new(signer: Arc<dyn Signer>) -> Self {
        let header = json!({
            "typ": "dpop+jwt",
            "alg": signer.algorithm().name(),
            "jwk": signer.public_jwk().to_json(),
        });
        Self {
            header: b64(header.to_string()),
            signer,
        }
    }

    /// A new proof, as the `DPoP` header's value.
    pub(crate) async fn proof(
        &self,
        what: ProofFor<'_>,
        now: SystemTime,
    ) -> Result<HeaderValue, Error> {
        let mut claims = json!({
            "jti": jti(),
            "htm": what.method,
            "htu": htu(what.url)?,
            "iat": now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        });
        if let Some(ath) = what.ath {
            claims["ath"] = Value::from(ath);
        }
        if let Some(nonce) = what.nonce {
            claims["nonce"] = Value::from(nonce);
        }
        let claims = b64(claims.to_string());
        let mut jws = String::with_capacity(self.header.len() + claims.len() + 100);
        jws.push_str(&self.header);
        jws.push('.');
        jws.push_str(&claims);
        let signature = self
            .signer
            .sign(jws.as_bytes())
            .await
            .map_err(|source| Error::Signing(Arc::from(source)))?;
        jws.push('.');
        jws.push_str(&b64(signature));
        // base64url and dots: always a valid header value.
        HeaderValue::try_from(jws).map_err(|_| Error::Config("a DPoP proof is not a header".into()))
    }
}

/// 128 bits, unique per proof: servers refuse a `jti` they have seen.
fn jti() -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&random_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&random_u64().to_le_bytes());
    b64(bytes)
}
