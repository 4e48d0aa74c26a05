//! Reading and verifying the JWTs we sign, independently of our signer: the
//! signature is checked with ring's verification against the public JWK.

use base64::Engine as _;
use reqwest_oauth2_refresh::PublicJwk;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

fn b64d(part: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url without padding")
}

/// A compact JWS, split and decoded.
pub struct Jwt {
    pub header: Value,
    pub claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jwt {
    pub fn parse(compact: &str) -> Jwt {
        let parts: Vec<&str> = compact.split('.').collect();
        assert_eq!(parts.len(), 3, "a compact JWS has three parts: {compact}");
        Jwt {
            header: serde_json::from_slice(&b64d(parts[0])).expect("header JSON"),
            claims: serde_json::from_slice(&b64d(parts[1])).expect("claims JSON"),
            signing_input: format!("{}.{}", parts[0], parts[1]),
            signature: b64d(parts[2]),
        }
    }

    /// Panics unless the signature verifies with `key` under the header's
    /// `alg`.
    pub fn verify(&self, key: &PublicJwk) {
        let message = self.signing_input.as_bytes();
        let alg = self.header["alg"].as_str().expect("alg");
        let ok = match (alg, key) {
            ("ES256", PublicJwk::P256 { x, y }) => {
                assert_eq!(self.signature.len(), 64, "ES256 is raw r||s");
                let mut point = vec![4];
                point.extend(b64d(x));
                point.extend(b64d(y));
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, &self.signature)
                    .is_ok()
            }
            ("EdDSA", PublicJwk::Ed25519 { x }) => {
                UnparsedPublicKey::new(&signature::ED25519, b64d(x))
                    .verify(message, &self.signature)
                    .is_ok()
            }
            ("RS256" | "PS256", PublicJwk::Rsa { n, e }) => {
                let params = if alg == "RS256" {
                    &signature::RSA_PKCS1_2048_8192_SHA256
                } else {
                    &signature::RSA_PSS_2048_8192_SHA256
                };
                RsaPublicKeyComponents {
                    n: b64d(n),
                    e: b64d(e),
                }
                .verify(params, message, &self.signature)
                .is_ok()
            }
            other => panic!("unexpected algorithm and key: {other:?}"),
        };
        assert!(ok, "the {alg} signature does not verify");
    }
}

#[allow(dead_code)] // not every test file makes RSA keys
/// An RSA key in PKCS#8 PEM, made by `openssl` (ring cannot make RSA keys;
/// CI installs openssl).
pub fn rsa_pkcs8_pem() -> String {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl must be installed to make RSA test keys");
    assert!(out.status.success(), "openssl genpkey failed");
    String::from_utf8(out.stdout).expect("PEM is text")
}
