//! Signatures per second of `SigningKey::sign` for each algorithm and
//! backend: ES256 and EdDSA on ring and on RustCrypto, RS256 and PS256
//! (RSA 2048) on ring (the pure-Rust backend refuses RSA).
//!
//! The variants are measured in interleaved rounds (A B C … then B C A …),
//! each round running every variant for `SIGNER_ROUND_MS` milliseconds
//! (default 50), `SIGNER_ROUNDS` rounds (default 30); medians of the rounds,
//! and each RustCrypto round's time over ring's for the same algorithm in
//! the same round, so that a slow stretch of a shared machine cancels out.
//!
//! A harness=false binary: `cargo bench --bench signer --all-features`. The
//! RSA key is made by `openssl genpkey` at start; without `openssl` the RSA
//! rows are skipped, with the reason printed.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest_oauth2_refresh::{Algorithm, CryptoBackend, Signer, SigningKey};

mod util;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Variant {
    alg: Algorithm,
    backend: CryptoBackend,
    key: SigningKey,
}

/// An RSA 2048 PKCS#8 PEM from openssl, or why there is none.
fn rsa_pem() -> Result<String, String> {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .map_err(|e| format!("`openssl` could not be run ({e})"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| "openssl wrote no text".into())
}

fn variants() -> Vec<Variant> {
    let mut out = Vec::new();
    for alg in [Algorithm::Es256, Algorithm::EdDsa] {
        for backend in [CryptoBackend::Ring, CryptoBackend::RustCrypto] {
            let key = SigningKey::generate_with(alg, backend).expect("generate");
            out.push(Variant { alg, backend, key });
        }
    }
    match rsa_pem() {
        Ok(pem) => {
            let rs256 = SigningKey::from_pem_with(&pem, CryptoBackend::Ring).expect("RSA key");
            let ps256 = rs256
                .clone()
                .with_algorithm(Algorithm::Ps256)
                .expect("PS256");
            for key in [rs256, ps256] {
                let alg = key.algorithm();
                let backend = CryptoBackend::Ring;
                out.push(Variant { alg, backend, key });
            }
        }
        Err(reason) => println!("RS256 and PS256 skipped: {reason}"),
    }
    out
}

/// Signs `message` for about `budget`; the time per signature.
fn run(
    rt: &tokio::runtime::Runtime,
    key: &SigningKey,
    message: &[u8],
    budget: Duration,
) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < budget || n == 0 {
            // Batches of 4 keep the clock reads out of the fast rows.
            for _ in 0..4 {
                std::hint::black_box(key.sign(message).await.expect("sign"));
            }
            n += 4;
        }
        start.elapsed() / n
    })
}

fn main() {
    if !util::selected("signer") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let variants = variants();
    // A client assertion's size: a header and claims, base64url.
    let message = vec![b'e'; 320];
    let budget = Duration::from_millis(env("SIGNER_ROUND_MS", 50));
    let rounds = env("SIGNER_ROUNDS", 30) as usize;
    for v in &variants {
        run(&rt, &v.key, &message, budget / 2);
    }
    let n = variants.len();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); n];
    for round in 0..rounds {
        for i in (0..n).map(|i| (i + round) % n) {
            samples[i].push(run(&rt, &variants[i].key, &message, budget));
        }
    }
    report(&variants, samples, rounds, budget);
}

/// Each variant's rounds over ring's rounds for the same algorithm, paired
/// by round (before any sorting), then the median.
fn paired_ratios(variants: &[Variant], samples: &[Vec<Duration>]) -> Vec<f64> {
    variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ring = variants
                .iter()
                .position(|r| r.alg == v.alg && r.backend == CryptoBackend::Ring)
                .expect("a ring row for every algorithm");
            let mut ratios: Vec<f64> = samples[i]
                .iter()
                .zip(&samples[ring])
                .map(|(own, base)| own.as_secs_f64() / base.as_secs_f64())
                .collect();
            ratios.sort_by(f64::total_cmp);
            let n = ratios.len();
            (ratios[(n - 1) / 2] + ratios[n / 2]) / 2.0
        })
        .collect()
}

fn report(variants: &[Variant], mut samples: Vec<Vec<Duration>>, rounds: usize, budget: Duration) {
    let ratios = paired_ratios(variants, &samples);
    println!(
        "SigningKey::sign on a 320-byte message, {rounds} interleaved rounds of {} ms per variant",
        budget.as_millis()
    );
    println!();
    println!(
        "| algorithm | backend | median per signature | signatures/s | round's time ÷ ring's |"
    );
    println!("|---|---|---|---|---|");
    for ((v, samples), ratio) in variants.iter().zip(&mut samples).zip(ratios) {
        let median = util::median(samples);
        let ratio = match v.backend {
            CryptoBackend::Ring => "—".to_owned(),
            _ => format!("{ratio:.2}"),
        };
        println!(
            "| {} | {:?} | {:.1} µs | {:.0} | {ratio} |",
            v.alg,
            v.backend,
            median.as_secs_f64() * 1e6,
            1.0 / median.as_secs_f64(),
        );
    }
}
