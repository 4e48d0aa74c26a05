//! Key formats: PKCS#8 and PKCS#1 PEM, a certificate before the key,
//! private JWKs (the same key as its PEM), and what is refused.

use std::collections::HashMap;

use serde_json::json;

use super::super::{Algorithm, PublicJwk, Signer, SigningKey, b64};
use super::{backends, fixtures, signs_rsa, verifies};
use crate::error::Error;

/// The members of `openssl pkey -text` output: `name:` then lines of
/// colon-separated hex (or `publicExponent: 65537 (0x10001)` inline).
fn openssl_members(text: &str) -> HashMap<String, Vec<u8>> {
    let mut members = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with(' ') {
            let hex = line.trim().trim_end_matches(':');
            let bytes = hex.split(':').map(|h| u8::from_str_radix(h, 16).unwrap());
            let name = current.as_ref().expect("hex after a member name");
            members
                .entry(name.clone())
                .or_insert_with(Vec::new)
                .extend(bytes);
        } else if let Some(name) = line.strip_suffix(':') {
            current = Some(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("publicExponent: ") {
            let value: u64 = rest.split(' ').next().unwrap().parse().unwrap();
            let bytes = value.to_be_bytes();
            let start = bytes.iter().position(|b| *b != 0).unwrap();
            members.insert("publicExponent".into(), bytes[start..].to_vec());
            current = None;
        } else {
            current = None;
        }
    }
    members
}

/// Big-endian without leading zeros (RFC 7518 §6.3 integers); openssl
/// prints a 00 before a byte whose top bit is set.
fn unsigned(bytes: &[u8]) -> String {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    b64(&bytes[start..])
}

/// A fixed-length field (EC coordinates and scalars), left-padded.
fn fixed(bytes: &[u8], len: usize) -> String {
    let trimmed = &bytes[bytes.len().saturating_sub(len)..];
    let mut out = vec![0; len - trimmed.len()];
    out.extend_from_slice(trimmed);
    b64(out)
}

pub(super) fn p256_jwk(text: &str) -> serde_json::Value {
    let m = openssl_members(text);
    let point = &m["pub"];
    assert_eq!(point.len(), 65, "an uncompressed point");
    json!({"kty": "EC", "crv": "P-256", "d": fixed(&m["priv"], 32),
           "x": b64(&point[1..33]), "y": b64(&point[33..65])})
}

pub(super) fn ed25519_jwk(text: &str) -> serde_json::Value {
    let m = openssl_members(text);
    json!({"kty": "OKP", "crv": "Ed25519", "d": b64(&m["priv"]), "x": b64(&m["pub"])})
}

fn rsa_jwk(text: &str) -> serde_json::Value {
    let m = openssl_members(text);
    let u = |name: &str| unsigned(&m[name]);
    json!({"kty": "RSA", "n": u("modulus"), "e": u("publicExponent"),
           "d": u("privateExponent"), "p": u("prime1"), "q": u("prime2"),
           "dp": u("exponent1"), "dq": u("exponent2"), "qi": u("coefficient")})
}

fn config_message(result: Result<SigningKey, Error>) -> String {
    match result {
        Err(Error::Config(message)) => message,
        Err(other) => panic!("a Config error, not {other:?}"),
        Ok(key) => panic!("refused, not {key:?}"),
    }
}

#[tokio::test]
async fn a_private_jwk_is_the_same_key_as_its_pem() {
    let Some(fx) = fixtures() else { return };
    let cases = [
        (&fx.p256, p256_jwk(&fx.p256_text), Algorithm::Es256),
        (&fx.ed25519, ed25519_jwk(&fx.ed25519_text), Algorithm::EdDsa),
        (&fx.rsa, rsa_jwk(&fx.rsa_text), Algorithm::Rs256),
    ];
    for backend in backends() {
        for (pem, jwk, alg) in &cases {
            if alg.is_rsa() && !signs_rsa(backend) {
                continue;
            }
            let from_pem = SigningKey::from_pem_with(pem, backend).unwrap();
            let from_jwk = SigningKey::from_jwk_with(&jwk.to_string(), backend).unwrap();
            assert_eq!(from_pem.public_jwk(), from_jwk.public_jwk(), "{alg}");
            assert_eq!(from_jwk.algorithm(), *alg);
            // The JWK's public members are its own public key.
            let public = from_jwk.public_jwk().to_json();
            for member in ["x", "y", "n", "e"] {
                assert_eq!(public.get(member), jwk.get(member), "{alg} {member}");
            }
            let signature = from_jwk.sign(b"m").await.unwrap();
            assert!(verifies(&from_pem.public_jwk(), *alg, b"m", &signature));
        }
    }
}

#[test]
fn a_jwk_alg_and_kid_are_used_and_a_wrong_alg_refused() {
    let Some(fx) = fixtures() else { return };
    for backend in backends().into_iter().filter(|b| signs_rsa(*b)) {
        let mut jwk = rsa_jwk(&fx.rsa_text);
        jwk["alg"] = "PS256".into();
        jwk["kid"] = "rsa-1".into();
        let key = SigningKey::from_jwk_with(&jwk.to_string(), backend).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Ps256);
        assert_eq!(key.key_id(), Some("rsa-1"));
        jwk["alg"] = "ES256".into();
        let message = config_message(SigningKey::from_jwk_with(&jwk.to_string(), backend));
        assert!(
            message.contains("an RSA key cannot sign ES256"),
            "{message}"
        );
    }
    for backend in backends() {
        let mut jwk = p256_jwk(&fx.p256_text);
        jwk["alg"] = "EdDSA".into();
        config_message(SigningKey::from_jwk_with(&jwk.to_string(), backend));
    }
}

#[tokio::test]
async fn pkcs1_rsa_keys_load_and_are_the_pkcs8_key() {
    let Some(fx) = fixtures() else { return };
    assert!(fx.rsa_pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(
        fx.genrsa_pkcs1
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );
    for backend in backends().into_iter().filter(|b| signs_rsa(*b)) {
        let pkcs1 = SigningKey::from_pem_with(&fx.rsa_pkcs1, backend).unwrap();
        let pkcs8 = SigningKey::from_pem_with(&fx.rsa, backend).unwrap();
        assert_eq!(pkcs1.public_jwk(), pkcs8.public_jwk());
        let genrsa = SigningKey::from_pem_with(&fx.genrsa_pkcs1, backend).unwrap();
        let signature = genrsa.sign(b"m").await.unwrap();
        assert!(verifies(
            &genrsa.public_jwk(),
            Algorithm::Rs256,
            b"m",
            &signature
        ));
    }
}

#[test]
fn a_certificate_before_the_key_is_skipped() {
    let Some(fx) = fixtures() else { return };
    for backend in backends().into_iter().filter(|b| signs_rsa(*b)) {
        let bundle = format!("{}{}", fx.rsa_cert, fx.rsa);
        let key = SigningKey::from_pem_with(&bundle, backend).unwrap();
        let alone = SigningKey::from_pem_with(&fx.rsa, backend).unwrap();
        assert_eq!(key.public_jwk(), alone.public_jwk());
    }
    // The certificate alone is no key.
    let message = config_message(SigningKey::from_pem(&fx.rsa_cert));
    assert!(message.contains("no PEM private key"), "{message}");
}

#[test]
fn with_algorithm_refuses_what_the_key_type_cannot_sign() {
    for backend in backends() {
        let ec = SigningKey::generate_with(Algorithm::Es256, backend).unwrap();
        for alg in [Algorithm::EdDsa, Algorithm::Rs256, Algorithm::Ps256] {
            config_message(ec.clone().with_algorithm(alg));
        }
        let ed = SigningKey::generate_with(Algorithm::EdDsa, backend).unwrap();
        config_message(ed.clone().with_algorithm(Algorithm::Es256));
        assert!(ed.with_algorithm(Algorithm::EdDsa).is_ok());
        config_message(SigningKey::generate_with(Algorithm::Rs256, backend));
    }
    let Some(fx) = fixtures() else { return };
    for backend in backends().into_iter().filter(|b| signs_rsa(*b)) {
        let rsa = SigningKey::from_pem_with(&fx.rsa, backend).unwrap();
        config_message(rsa.clone().with_algorithm(Algorithm::Es256));
        config_message(rsa.with_algorithm(Algorithm::EdDsa));
    }
}

#[test]
fn encrypted_and_sec1_pems_are_refused_with_the_openssl_command() {
    let Some(fx) = fixtures() else { return };
    for pem in [&fx.p256_encrypted, &fx.p256_sec1] {
        for backend in backends() {
            let message = config_message(SigningKey::from_pem_with(pem, backend));
            assert!(
                message.contains("openssl pkcs8 -topk8 -nocrypt"),
                "{message}"
            );
        }
    }
}

#[cfg(feature = "crypto-rustcrypto")]
#[test]
fn the_pure_rust_backend_refuses_rsa_keys_with_the_reason() {
    use super::super::CryptoBackend;
    let Some(fx) = fixtures() else { return };
    let rc = CryptoBackend::RustCrypto;
    let jwk = rsa_jwk(&fx.rsa_text).to_string();
    for result in [
        SigningKey::from_pem_with(&fx.rsa, rc),
        SigningKey::from_pem_with(&fx.rsa_pkcs1, rc),
        SigningKey::from_jwk_with(&jwk, rc),
    ] {
        let message = config_message(result);
        assert!(message.contains("crypto-ring"), "{message}");
        assert!(message.contains("RUSTSEC-2023-0071"), "{message}");
    }
}

#[test]
fn rfc7638_example_thumbprint() {
    // RFC 7638 §3.1: the RSA key of RFC 7517 appendix A.1.
    let jwk = PublicJwk::Rsa {
        n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into(),
        e: "AQAB".into(),
    };
    let input = jwk.thumbprint_input();
    assert!(
        input.starts_with(r#"{"e":"AQAB","kty":"RSA","n":"0vx7"#),
        "{input}"
    );
    assert_eq!(
        b64(super::super::key::sha256(input.as_bytes())),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn thumbprint_inputs_of_ec_and_okp_keys_are_ordered() {
    let ec = PublicJwk::P256 {
        x: "X".into(),
        y: "Y".into(),
    };
    assert_eq!(
        ec.thumbprint_input(),
        r#"{"crv":"P-256","kty":"EC","x":"X","y":"Y"}"#
    );
    let okp = PublicJwk::Ed25519 { x: "X".into() };
    assert_eq!(
        okp.thumbprint_input(),
        r#"{"crv":"Ed25519","kty":"OKP","x":"X"}"#
    );
}
