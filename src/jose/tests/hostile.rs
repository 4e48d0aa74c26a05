//! Files others can read, `Debug`, and hostile inputs: each is a typed
//! error, never a panic, and no error or `Debug` shows key material.

use base64::Engine as _;
use serde_json::json;

use super::super::{Algorithm, Signer as _, SigningKey};
use super::formats::{ed25519_jwk, p256_jwk};
use super::{TempDir, backends, fixtures, pem_der};
use crate::error::Error;

fn to_pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
}

/// A `Config` error whose text holds none of `secrets`.
fn refused_without(result: Result<SigningKey, Error>, secrets: &[&str]) -> String {
    let message = match result {
        Err(Error::Config(message)) => message,
        Err(other) => panic!("a Config error, not {other:?}"),
        Ok(key) => panic!("refused, not {key:?}"),
    };
    for secret in secrets {
        assert!(!message.contains(secret), "the error shows key material");
    }
    message
}

#[cfg(unix)]
#[test]
fn a_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(fx) = fixtures() else { return };
    let dir = TempDir::new("perms");
    let path = dir.path().join("key.pem");
    std::fs::write(&path, &fx.p256).unwrap();
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let message = refused_without(SigningKey::from_pem_file(&path), &[]);
        assert!(message.contains("chmod 600"), "{message}");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key = SigningKey::from_pem_file(&path).unwrap();
    assert_eq!(key.algorithm(), Algorithm::Es256);
}

#[cfg(unix)]
#[test]
fn a_huge_or_missing_key_file_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("huge");
    let path = dir.path().join("huge.pem");
    let body = "A".repeat(300 * 1024);
    std::fs::write(&path, to_pem("PRIVATE KEY", body.as_bytes())).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let message = refused_without(SigningKey::from_pem_file(&path), &[]);
    assert!(message.contains("too large"), "{message}");
    refused_without(SigningKey::from_pem_file(dir.path().join("missing")), &[]);
    // A directory is not a key file.
    refused_without(SigningKey::from_pem_file(dir.path()), &[]);
}

#[test]
fn debug_shows_no_key_material() {
    let Some(fx) = fixtures() else { return };
    let d = p256_jwk(&fx.p256_text)["d"].as_str().unwrap().to_owned();
    for backend in backends() {
        let key = SigningKey::from_pem_with(&fx.p256, backend)
            .unwrap()
            .with_key_id("k1");
        let shown = format!("{key:?}");
        assert!(shown.starts_with("SigningKey"), "{shown}");
        assert!(shown.contains("Es256") && shown.contains("k1"), "{shown}");
        // Neither the PKCS#8 (any 16-character run of it) nor the scalar.
        let body: String = fx
            .p256
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        for start in (0..body.len() - 16).step_by(8) {
            assert!(!shown.contains(&body[start..start + 16]), "{shown}");
        }
        assert!(!shown.contains(&d), "{shown}");
        assert!(shown.len() < 120, "{shown}");
    }
}

#[test]
fn truncated_der_is_an_error_for_every_length() {
    let Some(fx) = fixtures() else { return };
    let cases = [
        ("PRIVATE KEY", pem_der(&fx.p256)),
        ("PRIVATE KEY", pem_der(&fx.ed25519)),
        ("PRIVATE KEY", pem_der(&fx.rsa)),
        ("RSA PRIVATE KEY", pem_der(&fx.rsa_pkcs1)),
    ];
    for backend in backends() {
        for (label, der) in &cases {
            for len in 0..der.len() {
                let pem = to_pem(label, &der[..len]);
                refused_without(SigningKey::from_pem_with(&pem, backend), &[]);
            }
        }
    }
}

#[test]
fn corrupted_der_never_panics() {
    let Some(fx) = fixtures() else { return };
    let der = pem_der(&fx.p256);
    for backend in backends() {
        for at in 0..der.len() {
            let mut bad = der.clone();
            bad[at] ^= 0x5a;
            // Some corruptions still parse (a changed scalar is another key);
            // any outcome but a panic is fine.
            let _ = SigningKey::from_pem_with(&to_pem("PRIVATE KEY", &bad), backend);
        }
    }
}

#[test]
fn garbage_pem_is_a_typed_error() {
    let garbage = [
        "",
        "not a pem",
        "-----BEGIN PRIVATE KEY-----\n!!!not base64!!!\n-----END PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\nMIIB\n",
        "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "-----BEGIN -----",
        "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n",
        "-----BEGIN RSA PRIVATE KEY-----\nMAMCAQA=\n-----END RSA PRIVATE KEY-----\n",
    ];
    for backend in backends() {
        for text in garbage {
            refused_without(SigningKey::from_pem_with(text, backend), &[]);
        }
    }
}

#[test]
fn huge_pem_text_is_an_error_quickly() {
    let huge = to_pem("PRIVATE KEY", &vec![0x30; 4 * 1024 * 1024]);
    let started = std::time::Instant::now();
    for backend in backends() {
        refused_without(SigningKey::from_pem_with(&huge, backend), &[]);
        refused_without(SigningKey::from_jwk_with(&huge, backend), &[]);
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn hostile_jwks_are_typed_errors_without_their_values() {
    let secret = "c2VjcmV0LXNjYWxhci1ub3QtYmFzZTY0IQ";
    let cases = [
        "not json".to_owned(),
        "[]".to_owned(),
        "{}".to_owned(),
        json!({"kty": "EC", "crv": "P-384", "d": secret}).to_string(),
        json!({"kty": "EC", "crv": "P-256", "d": "!!", "x": "", "y": ""}).to_string(),
        json!({"kty": "EC", "crv": "P-256", "d": secret, "x": "AA", "y": "AA"}).to_string(),
        json!({"kty": "EC", "crv": "P-256", "d": "", "x": "", "y": ""}).to_string(),
        json!({"kty": "OKP", "crv": "Ed25519", "d": secret, "x": "AA"}).to_string(),
        json!({"kty": "OKP", "crv": "Ed25519", "d": 5, "x": "AA"}).to_string(),
        json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": secret, "p": "AQ",
               "q": "AQ", "dp": "AQ", "dq": "AQ", "qi": "AQ"})
        .to_string(),
        json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}).to_string(),
    ];
    for backend in backends() {
        for case in &cases {
            refused_without(SigningKey::from_jwk_with(case, backend), &[secret]);
        }
    }
}

#[test]
fn a_jwk_whose_public_part_is_another_key_is_refused() {
    let Some(fx) = fixtures() else { return };
    let cases = [
        (p256_jwk(&fx.p256_text), Algorithm::Es256),
        (ed25519_jwk(&fx.ed25519_text), Algorithm::EdDsa),
    ];
    for backend in backends() {
        for (jwk, alg) in &cases {
            let other = SigningKey::generate_with(*alg, backend).unwrap();
            let mut jwk = jwk.clone();
            let other = other.public_jwk().to_json();
            jwk["x"] = other["x"].clone();
            if *alg == Algorithm::Es256 {
                jwk["y"] = other["y"].clone();
            }
            let d = jwk["d"].as_str().unwrap().to_owned();
            refused_without(SigningKey::from_jwk_with(&jwk.to_string(), backend), &[&d]);
        }
    }
}
