//! Signing keys: every algorithm on every enabled backend, every key
//! format, and hostile inputs. Fixtures are made at test time by `openssl`
//! (a missing `openssl` skips those tests with the reason printed, and
//! fails them when `CI` is set); nothing secret is committed.

mod formats;
mod hostile;
mod sign;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine as _;

use super::{CryptoBackend, PublicJwk};

/// The backends this build has.
fn backends() -> Vec<CryptoBackend> {
    vec![
        #[cfg(feature = "crypto-ring")]
        CryptoBackend::Ring,
        #[cfg(feature = "crypto-rustcrypto")]
        CryptoBackend::RustCrypto,
    ]
}

/// Whether a backend signs RSA (the pure-Rust one refuses to).
fn signs_rsa(backend: CryptoBackend) -> bool {
    #[cfg(feature = "crypto-ring")]
    if backend == CryptoBackend::Ring {
        return true;
    }
    let _ = backend;
    false
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url without padding")
}

/// A private directory (0700) of this test process, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "oauth2-refresh-jose-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&path).expect("create a temp dir");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Keys and a certificate made by openssl, read into memory (the directory
/// they were written to is gone by then).
struct Fixtures {
    p256: String,
    ed25519: String,
    /// RSA 2048, PKCS#8.
    rsa: String,
    /// The same RSA key as PKCS#1 (`RSA PRIVATE KEY`).
    rsa_pkcs1: String,
    /// Another RSA key, from `openssl genrsa -traditional`.
    genrsa_pkcs1: String,
    /// The P-256 key as SEC1 (`EC PRIVATE KEY`) and as encrypted PKCS#8.
    p256_sec1: String,
    p256_encrypted: String,
    /// A self-signed certificate for `rsa`, PEM.
    rsa_cert: String,
    /// `openssl pkey -text` of each key: its members in hex, for JWKs.
    p256_text: String,
    ed25519_text: String,
    rsa_text: String,
}

/// The fixtures, or `None` (with the reason printed) when openssl is
/// missing. Under `CI`, a missing openssl fails the test instead.
fn fixtures() -> Option<&'static Fixtures> {
    static FIXTURES: OnceLock<Option<Fixtures>> = OnceLock::new();
    let found = FIXTURES.get_or_init(make_fixtures).as_ref();
    if found.is_none() {
        let ci = matches!(std::env::var("CI").as_deref(), Ok("true" | "1"));
        assert!(!ci, "openssl is needed for the key fixtures and CI is set");
        eprintln!("skipped: `openssl` is not on PATH, so no key fixtures");
    }
    found
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("openssl writes text")
}

fn make_fixtures() -> Option<Fixtures> {
    if Command::new("openssl").arg("version").output().is_err() {
        return None;
    }
    let dir = TempDir::new("fixtures");
    let d = dir.path();
    let genpkey = |args: &[&str]| openssl(d, &[&["genpkey"], args].concat());
    let p256 = genpkey(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let ed25519 = genpkey(&["-algorithm", "ed25519"]);
    let rsa = genpkey(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    std::fs::write(d.join("p256.pem"), &p256).unwrap();
    std::fs::write(d.join("ed25519.pem"), &ed25519).unwrap();
    std::fs::write(d.join("rsa.pem"), &rsa).unwrap();
    let text = |file: &str| openssl(d, &["pkey", "-in", file, "-text", "-noout"]);
    Some(Fixtures {
        rsa_pkcs1: openssl(d, &["rsa", "-in", "rsa.pem", "-traditional"]),
        genrsa_pkcs1: openssl(d, &["genrsa", "-traditional", "2048"]),
        p256_sec1: openssl(d, &["ec", "-in", "p256.pem"]),
        p256_encrypted: openssl(
            d,
            &[
                "pkcs8",
                "-topk8",
                "-in",
                "p256.pem",
                "-v2",
                "aes-256-cbc",
                "-passout",
                "pass:test",
            ],
        ),
        rsa_cert: openssl(
            d,
            &[
                "req", "-x509", "-new", "-key", "rsa.pem", "-subj", "/CN=test", "-days", "1",
            ],
        ),
        p256_text: text("p256.pem"),
        ed25519_text: text("ed25519.pem"),
        rsa_text: text("rsa.pem"),
        p256,
        ed25519,
        rsa,
    })
}

/// The DER inside a PEM block.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM base64")
}

/// Checks `signature` over `message` with ring's verifier, built from the
/// public JWK alone: an implementation independent of the RustCrypto
/// signer, and for ES256 proof of the fixed `r‖s` form.
#[cfg(feature = "crypto-ring")]
fn verifies(jwk: &PublicJwk, alg: super::Algorithm, message: &[u8], signature: &[u8]) -> bool {
    use super::Algorithm;
    use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};
    match (jwk, alg) {
        (PublicJwk::P256 { x, y }, Algorithm::Es256) => {
            let point = [&[4u8][..], &unb64(x), &unb64(y)].concat();
            UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, signature)
                .is_ok()
        }
        (PublicJwk::Ed25519 { x }, Algorithm::EdDsa) => {
            UnparsedPublicKey::new(&sig::ED25519, unb64(x))
                .verify(message, signature)
                .is_ok()
        }
        (PublicJwk::Rsa { n, e }, Algorithm::Rs256 | Algorithm::Ps256) => {
            let params = if alg == Algorithm::Rs256 {
                &sig::RSA_PKCS1_2048_8192_SHA256
            } else {
                &sig::RSA_PSS_2048_8192_SHA256
            };
            RsaPublicKeyComponents {
                n: unb64(n),
                e: unb64(e),
            }
            .verify(params, message, signature)
            .is_ok()
        }
        _ => false,
    }
}

/// Without ring, the RustCrypto verifiers (from the public JWK alone).
#[cfg(not(feature = "crypto-ring"))]
fn verifies(jwk: &PublicJwk, alg: super::Algorithm, message: &[u8], signature: &[u8]) -> bool {
    use super::Algorithm;
    use ed25519_dalek::Verifier as _;
    match (jwk, alg) {
        (PublicJwk::P256 { x, y }, Algorithm::Es256) => {
            let point = [&[4u8][..], &unb64(x), &unb64(y)].concat();
            let (Ok(key), Ok(sig)) = (
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&point),
                p256::ecdsa::Signature::from_slice(signature),
            ) else {
                return false;
            };
            key.verify(message, &sig).is_ok()
        }
        (PublicJwk::Ed25519 { x }, Algorithm::EdDsa) => {
            let (Ok(key), Ok(sig)) = (
                ed25519_dalek::VerifyingKey::try_from(unb64(x).as_slice()),
                ed25519_dalek::Signature::from_slice(signature),
            ) else {
                return false;
            };
            key.verify(message, &sig).is_ok()
        }
        _ => false,
    }
}
