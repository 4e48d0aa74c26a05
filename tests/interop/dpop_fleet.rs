//! DPoP across processes: this test binary run again as workers
//! (`DPOP_WORKER` set) that share one DPoP-bound token family through a
//! `FileStore` file, the key saved in it. A worker either refreshes once
//! (a restart, for `dpop::dpop_family_resumes_after_a_restart_from_the_file_store`)
//! or, one of a fleet, sends rounds of requests to `/api/dpop` through the
//! middleware for a while, across several access-token lifetimes.

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest_oauth2_refresh::{FileStore, OAuth2Middleware, TokenStore as _};
use tokio::process::Command;

use crate::dpop::{DPOP, dpop_api, dpop_stats, file_manager, first_dpop_tokens, token_file};
use crate::fixture::Interop;
use crate::harness::DRIVER_LIMIT;

/// Set in a worker: `refresh`, or `fleet`.
pub const WORKER_ENV: &str = "DPOP_WORKER";
const TOKEN_URL_ENV: &str = "DPOP_WORKER_TOKEN_URL";
const API_URL_ENV: &str = "DPOP_WORKER_API_URL";
const FILE_ENV: &str = "DPOP_WORKER_TOKEN_FILE";
const MILLIS_ENV: &str = "DPOP_WORKER_MILLIS";

/// The fleet: processes, concurrent requests per round, the pause between
/// rounds (a steady load, not a wait for anything), and how long.
const PROCESSES: usize = 4;
const CONCURRENCY: usize = 4;
const ROUND_PAUSE: Duration = Duration::from_millis(100);
const RUN: Duration = Duration::from_secs(7);
/// Access tokens live this long (a `-ttlN` login); the managers refresh
/// `LEEWAY` before expiry.
const TTL_SECS: u64 = 3;
const LEEWAY: Duration = Duration::from_secs(1);

/// A worker's `main`: `Some` when this process is one.
pub fn worker_main() -> Option<ExitCode> {
    let mode = std::env::var(WORKER_ENV).ok()?;
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let token_url = var(TOKEN_URL_ENV);
    let path = var(FILE_ENV);
    let runtime = crate::common::service::multi_thread(2);
    Some(runtime.block_on(async move {
        match mode.as_str() {
            "refresh" => refresh_worker(&token_url, Path::new(&path)).await,
            "fleet" => {
                let millis = var(MILLIS_ENV).parse().expect("milliseconds");
                fleet_worker(&token_url, &var(API_URL_ENV), Path::new(&path), millis).await
            }
            other => panic!("unknown {WORKER_ENV}={other}"),
        }
    }))
}

fn builder(token_url: &str, path: &Path) -> reqwest_oauth2_refresh::TokenManagerBuilder {
    reqwest_oauth2_refresh::TokenManager::builder(token_url)
        .client_id(DPOP.id)
        .client_auth(DPOP.auth)
        .store(FileStore::new(path).expect("a token file path"))
}

/// A restart: a manager with nothing but the file refreshes once.
async fn refresh_worker(token_url: &str, path: &Path) -> ExitCode {
    let manager = builder(token_url, path).build().expect("manager");
    match manager.refresh().await {
        Ok(tokens) if tokens.is_dpop_bound() && tokens.is_dpop_token() => {
            println!("@@refreshed");
            ExitCode::SUCCESS
        }
        Ok(_) => {
            println!("@@error the new set is not DPoP-bound");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("@@error {e}");
            ExitCode::FAILURE
        }
    }
}

/// One of the fleet: rounds of `CONCURRENCY` requests for `millis`; prints
/// each failure, then `@@done OK FAILED SETS`, SETS being the new token
/// sets it used (`on_refresh`: its own refreshes and the ones it adopted
/// from the file).
async fn fleet_worker(token_url: &str, api: &str, path: &Path, millis: u64) -> ExitCode {
    let sets = Arc::new(AtomicUsize::new(0));
    let counter = sets.clone();
    let manager = builder(token_url, path)
        .leeway(LEEWAY)
        .on_refresh(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .expect("manager");
    let origin = reqwest::Url::parse(api).expect("URL").origin();
    let auth = OAuth2Middleware::builder(manager)
        .allow_origin(&origin.ascii_serialization())
        .build()
        .expect("middleware");
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build();
    let (mut ok, mut failed) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(millis) {
        let round = (0..CONCURRENCY).map(|_| async {
            let response = client.get(api).send().await?;
            let status = response.status();
            let body = response.text().await?;
            Ok::<_, reqwest_middleware::Error>((status, body))
        });
        for outcome in join_all(round).await {
            match outcome {
                Ok((status, _)) if status.is_success() => ok += 1,
                Ok((status, body)) => {
                    failed += 1;
                    println!("@@fail {status} {body}");
                }
                Err(e) => {
                    failed += 1;
                    println!("@@fail error {e:?}");
                }
            }
        }
        tokio::time::sleep(ROUND_PAUSE).await;
    }
    println!("@@done {ok} {failed} {}", sets.load(Ordering::SeqCst));
    ExitCode::SUCCESS
}

/// This test binary run again as a worker; its stdout, bounded.
async fn run_worker(interop: &Interop, mode: &str, path: &Path, millis: u64) -> String {
    let mut command = Command::new(std::env::current_exe().expect("this test binary"));
    command
        .env(WORKER_ENV, mode)
        .env(TOKEN_URL_ENV, &interop.token_endpoint)
        .env(API_URL_ENV, dpop_api(interop))
        .env(FILE_ENV, path)
        .env(MILLIS_ENV, millis.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("the worker starts");
    let out = tokio::time::timeout(DRIVER_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("a {mode} worker did not finish within {DRIVER_LIMIT:?}"))
        .expect("the worker's output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the {mode} worker exited with {}: {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A restart in a new process: one refresh from the file alone.
pub async fn refresh_in_a_new_process(interop: &Interop, path: &Path) {
    let out = run_worker(interop, "refresh", path, 0).await;
    assert!(out.contains("@@refreshed"), "{out}");
}

/// `PROCESSES` worker processes share one DPoP-bound family through one
/// token file for 7 s of 3 s access tokens, refreshing 1 s before expiry:
/// every request succeeds, the token endpoint never answers
/// `invalid_grant` (no refresh token is spent twice, no proof is refused),
/// and the family is refreshed about once per lifetime (the file lock
/// makes one process refresh and the others adopt its set), not once per
/// process. Each process met the token endpoint's and the resource
/// server's nonce challenges on its own (their nonces are not saved).
pub async fn dpop_fleet_shares_one_family_through_a_file_store(interop: Interop) {
    let login = interop.login("dpop-fleet", TTL_SECS);
    let bound = first_dpop_tokens(&interop, &login).await;
    let born = Instant::now();
    let jkt = bound.jkt().to_owned();
    let path = token_file("interop-dpop-fleet");
    FileStore::new(&path)
        .expect("a token file path")
        .save(&bound.tokens)
        .await
        .expect("the token file is written");

    let millis = RUN.as_millis() as u64;
    let workers = (0..PROCESSES).map(|_| run_worker(&interop, "fleet", &path, millis));
    let outputs = join_all(workers).await;
    let lived = born.elapsed();
    let (mut ok, mut sets) = (0, Vec::new());
    for out in &outputs {
        assert!(!out.contains("@@fail"), "a request failed: {out}");
        let done = out
            .lines()
            .find_map(|line| line.strip_prefix("@@done "))
            .unwrap_or_else(|| panic!("no @@done: {out}"));
        let counts: Vec<u64> = done
            .split(' ')
            .map(|n| n.parse().expect("a count"))
            .collect();
        assert_eq!(counts[1], 0, "{out}");
        ok += counts[0];
        sets.push(counts[2]);
    }

    let stats = dpop_stats(&interop, &jkt).await;
    interop.note(format!(
        "{PROCESSES} processes, {ok} requests, new sets per process {sets:?} in {lived:?}: {stats:?}"
    ));
    assert_eq!(stats.token_invalid_grant, 0, "{stats:?}");
    assert!(
        stats
            .token_errors
            .keys()
            .all(|code| code == "use_dpop_nonce"),
        "{stats:?}"
    );
    assert!(stats.rs_failures.is_empty(), "{stats:?}");
    assert_eq!(stats.rs_verified, ok, "every request verified: {stats:?}");
    let issued = stats.issued("refresh_token");
    // Each process used the sets its peers got, not sets of its own.
    assert!(sets.iter().all(|&n| n <= issued), "{sets:?} of {issued}");
    assert!(sets.iter().all(|&n| n >= 1), "{sets:?}");
    // A refresh every TTL - LEEWAY seconds of the family's life; a process
    // refreshing on its own would make PROCESSES times as many.
    let expiries = lived.as_secs_f64() / TTL_SECS as f64;
    let due = lived.as_secs_f64() / (TTL_SECS as f64 - LEEWAY.as_secs_f64());
    interop.note(format!("expiries {expiries:.1}, refreshes due {due:.1}"));
    assert!(
        issued as f64 >= expiries.floor() - 1.0,
        "{issued} refreshes"
    );
    assert!(
        issued as f64 <= due.ceil() + 1.0,
        "{issued} refreshes: a storm?"
    );
    assert!(
        stats.token_nonce_challenges <= 1 + PROCESSES as u64,
        "at most one per client: {stats:?}"
    );
    assert!(stats.rs_nonce_challenges >= 1, "{stats:?}");

    // The family is alive for one more process.
    let manager = file_manager(&interop, &path).build().expect("manager");
    manager.refresh().await.expect("the family is alive");
    let _ = std::fs::remove_dir_all(path.parent().expect("a directory"));
}
