//! A JWS made through `compact` by every algorithm on every backend
//! verifies with the public key alone, and carries the headers set.

use serde_json::{Map, Value, json};

use super::super::key::sha256;
use super::super::{Algorithm, CryptoBackend, Signer, SigningKey, compact};
use super::{backends, fixtures, signs_rsa, unb64, verifies};

/// SHA-256("abc") (FIPS 180-2 B.1), base64url: the `x5t#S256` of a
/// "certificate" whose DER is `abc`.
const ABC_SHA256_B64: &str = "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0";

/// Signs claims through `compact` with a `kid` and a certificate, checks
/// the three parts and the headers, and returns the header, the signed
/// message and the signature.
async fn sign_and_split(key: SigningKey) -> (Map<String, Value>, String, Vec<u8>) {
    let key = key.with_key_id("kid-1").with_certificate_der(b"abc");
    let claims = json!({"iss": "client", "aud": "https://as.example/token"});
    let jws = compact(&key, Some("JWT"), Map::new(), &claims)
        .await
        .unwrap();
    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts.len(), 3, "three parts: {jws}");
    assert!(
        jws.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
        "base64url without padding: {jws}"
    );
    let header: Value = serde_json::from_slice(&unb64(parts[0])).unwrap();
    let payload: Value = serde_json::from_slice(&unb64(parts[1])).unwrap();
    assert_eq!(payload, claims);
    let Value::Object(header) = header else {
        panic!("the header is an object");
    };
    assert_eq!(header["alg"], key.algorithm().name());
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], "kid-1");
    assert_eq!(header["x5t#S256"], ABC_SHA256_B64);
    let message = format!("{}.{}", parts[0], parts[1]);
    (header, message, unb64(parts[2]))
}

async fn check_generated(alg: Algorithm, backend: CryptoBackend, signature_len: usize) {
    let key = SigningKey::generate_with(alg, backend).unwrap();
    assert_eq!(key.backend(), backend);
    let public = key.public_jwk();
    let (_, message, signature) = sign_and_split(key).await;
    assert_eq!(signature.len(), signature_len, "{alg} on {backend:?}");
    assert!(verifies(&public, alg, message.as_bytes(), &signature));
    // A signature over something else must not verify.
    assert!(!verifies(&public, alg, b"other", &signature));
}

#[tokio::test]
async fn es256_signatures_are_raw_r_s_and_verify_on_every_backend() {
    for backend in backends() {
        // 64 bytes and verified with ECDSA_P256_SHA256_FIXED: r‖s, not DER.
        check_generated(Algorithm::Es256, backend, 64).await;
    }
}

#[tokio::test]
async fn eddsa_signatures_verify_on_every_backend() {
    for backend in backends() {
        check_generated(Algorithm::EdDsa, backend, 64).await;
    }
}

#[tokio::test]
async fn rs256_and_ps256_verify_and_are_not_each_other() {
    let Some(fx) = fixtures() else { return };
    for backend in backends().into_iter().filter(|b| signs_rsa(*b)) {
        let rs = SigningKey::from_pem_with(&fx.rsa, backend).unwrap();
        assert_eq!(
            rs.algorithm(),
            Algorithm::Rs256,
            "RSA keys default to RS256"
        );
        let ps = rs.clone().with_algorithm(Algorithm::Ps256).unwrap();
        let public = rs.public_jwk();
        let (header, message, signature) = sign_and_split(rs).await;
        assert_eq!(header["alg"], "RS256");
        assert_eq!(signature.len(), 256);
        assert!(verifies(
            &public,
            Algorithm::Rs256,
            message.as_bytes(),
            &signature
        ));
        assert!(!verifies(
            &public,
            Algorithm::Ps256,
            message.as_bytes(),
            &signature
        ));
        let (header, message, signature) = sign_and_split(ps).await;
        assert_eq!(header["alg"], "PS256");
        assert!(verifies(
            &public,
            Algorithm::Ps256,
            message.as_bytes(),
            &signature
        ));
        assert!(!verifies(
            &public,
            Algorithm::Rs256,
            message.as_bytes(),
            &signature
        ));
    }
}

#[tokio::test]
async fn pkcs8_keys_of_every_type_sign_on_every_backend() {
    let Some(fx) = fixtures() else { return };
    let cases = [
        (&fx.p256, Algorithm::Es256),
        (&fx.ed25519, Algorithm::EdDsa),
        (&fx.rsa, Algorithm::Rs256),
    ];
    for backend in backends() {
        for (pem, alg) in cases {
            if alg.is_rsa() && !signs_rsa(backend) {
                continue;
            }
            let key = SigningKey::from_pem_with(pem, backend).unwrap();
            assert_eq!(key.algorithm(), alg);
            let signature = key.sign(b"message").await.unwrap();
            assert!(verifies(&key.public_jwk(), alg, b"message", &signature));
        }
    }
}

#[tokio::test]
async fn no_kid_or_thumbprint_unless_set() {
    let key = SigningKey::generate(Algorithm::Es256).unwrap();
    let jws = compact(&key, None, Map::new(), &json!({})).await.unwrap();
    let header: Value = serde_json::from_slice(&unb64(jws.split('.').next().unwrap())).unwrap();
    assert_eq!(header, json!({"alg": "ES256"}));
}

#[test]
fn sha256_matches_the_fips_vector() {
    assert_eq!(super::super::b64(sha256(b"abc")), ABC_SHA256_B64);
    #[cfg(feature = "crypto-rustcrypto")]
    assert_eq!(
        super::super::b64(super::super::key::rustcrypto_sha256(b"abc")),
        ABC_SHA256_B64
    );
}

#[test]
fn the_default_backend_is_ring_when_it_is_on() {
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    #[cfg(feature = "crypto-ring")]
    assert_eq!(key.backend(), CryptoBackend::Ring);
    #[cfg(not(feature = "crypto-ring"))]
    assert_eq!(key.backend(), CryptoBackend::RustCrypto);
    assert_eq!(CryptoBackend::default(), key.backend());
}

#[cfg(all(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
#[tokio::test]
async fn ed25519_signatures_are_the_same_on_both_backends() {
    let Some(fx) = fixtures() else { return };
    // Ed25519 is deterministic: two implementations must agree bit for bit.
    let ring = SigningKey::from_pem_with(&fx.ed25519, CryptoBackend::Ring).unwrap();
    let rc = SigningKey::from_pem_with(&fx.ed25519, CryptoBackend::RustCrypto).unwrap();
    assert_eq!(ring.public_jwk(), rc.public_jwk());
    assert_eq!(
        ring.sign(b"message").await.unwrap(),
        rc.sign(b"message").await.unwrap()
    );
}

#[tokio::test]
async fn generated_pkcs8_loads_and_signs_on_every_backend() {
    use super::super::key::generate_pkcs8_with;
    use super::super::pem::encode_pkcs8;
    for made_by in backends() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa] {
            let pem = encode_pkcs8(&generate_pkcs8_with(alg, made_by).unwrap());
            let mut public = None;
            for backend in backends() {
                let key = SigningKey::from_pem_with(&pem, backend).unwrap();
                assert_eq!(key.algorithm(), alg);
                // Every backend reads the same public key out of it.
                let jwk = key.public_jwk();
                assert_eq!(public.get_or_insert_with(|| jwk.clone()), &jwk);
                let signature = key.sign(b"m").await.unwrap();
                assert!(verifies(&jwk, alg, b"m", &signature), "{alg} {made_by:?}");
            }
        }
        assert!(generate_pkcs8_with(Algorithm::Rs256, made_by).is_err());
    }
}
