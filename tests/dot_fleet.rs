//! A fleet of processes sharing one `FileStore` against Django OAuth Toolkit,
//! a real server that revokes the previous access token on every refresh.
//!
//! DOT rotates the refresh token on each refresh and, in the same
//! transaction, deletes the access token the old refresh token had issued
//! (`RefreshToken.revoke()`), so every rotation makes the requests that other
//! processes have in flight with that token meet a 401. What must hold: no
//! request fails because a peer rotated the tokens. Each 401 of that kind is
//! the middleware's to absorb (adopt the peer's set, replay), never the
//! caller's; no refresh token is spent twice (`invalid_grant`), and the
//! token family is alive at the end.
//!
//! The server: `tests/dot/serve.py` (a Django project with DOT, pinned in
//! `tests/dot/requirements.txt`), on a free loopback port with a new SQLite
//! database, 4-second access tokens, rotation, no grace period for a rotated
//! refresh token, and reuse protection (a rotated refresh token presented
//! again revokes the family). Its packages go into `target/dot-venv` (`python3
//! -m venv`, `pip install -r`, once, under a file lock shared with other test
//! processes). Without a usable `python3` or when the install fails the test
//! is reported as ignored, with the reason; under CI (`CI=true` or `CI=1`)
//! it fails instead. See `tests/dot/README.md`.
//!
//! The fleet: this test binary run again as `DOT_FLEET_PROCESSES` (8) worker
//! processes (`DOT_FLEET_WORKER` set), each with a `TokenManager` on the
//! same token file and an `OAuth2Middleware` client, sending
//! `DOT_FLEET_CONCURRENCY` (8) concurrent requests to `/api/ping` every
//! `DOT_FLEET_INTERVAL_MS` (200 ms) for `DOT_FLEET_SECONDS` (16 s). Each
//! worker prints one line per request; the parent adds them up, asks the
//! server what it saw (`/test/stats`), and spends the stored refresh token
//! once more to see the family alive.

mod common;
#[path = "dot/harness.rs"]
mod harness;
#[path = "common/process.rs"]
mod process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use common::service::{Trials, current_thread};
use harness::DotServer;
use reqwest_oauth2_refresh::{FileStore, OAuth2Middleware, TokenManager, TokenSet, TokenStore};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const TARGET: &str = "dot_fleet";
const TEST: &str = "fleet_sharing_a_file_store_never_returns_a_peers_401";
/// Set in the worker processes: the worker's index.
const WORKER_ENV: &str = "DOT_FLEET_WORKER";

/// The run's shape, each overridable through the environment.
#[derive(Debug, Clone, Copy)]
struct Shape {
    processes: usize,
    concurrency: usize,
    interval: Duration,
    duration: Duration,
    access_token_seconds: u64,
    /// How long the server holds each API request before checking its
    /// token (a busy server's queue).
    api_delay_ms: u64,
    /// Open loop: a round starts every interval whether the last one is
    /// done or not (`DOT_FLEET_OPEN_LOOP=1`). Default: closed, each round
    /// waits for the one before.
    open_loop: bool,
}

impl Shape {
    fn from_env() -> Self {
        fn var(name: &str, default: u64) -> u64 {
            match std::env::var(name) {
                Ok(value) => value
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={value:?} is not a whole number")),
                Err(_) => default,
            }
        }
        Self {
            processes: var("DOT_FLEET_PROCESSES", 8) as usize,
            concurrency: var("DOT_FLEET_CONCURRENCY", 8) as usize,
            interval: Duration::from_millis(var("DOT_FLEET_INTERVAL_MS", 200)),
            duration: Duration::from_secs(var("DOT_FLEET_SECONDS", 16)),
            access_token_seconds: var("DOT_ACCESS_TOKEN_SECONDS", 4),
            api_delay_ms: var("DOT_API_DELAY_MS", 0),
            open_loop: var("DOT_FLEET_OPEN_LOOP", 0) == 1,
        }
    }
}

fn main() -> ExitCode {
    if let Ok(index) = std::env::var(WORKER_ENV) {
        return worker::main(&index);
    }
    let mut trials = Trials::from_args(TARGET);
    let missing = harness::missing(trials.would_run(TEST));
    trials.add(TEST, missing.as_deref(), || {
        current_thread().block_on(fleet_sharing_a_file_store_never_returns_a_peers_401())
    });
    trials.run()
}

/// What the workers need to know, passed in their environment.
struct WorkerEnv<'a> {
    token_url: &'a str,
    api_url: &'a str,
    client_id: &'a str,
    client_secret: &'a str,
    token_file: &'a Path,
    shape: Shape,
}

/// A worker process of the fleet: a `TokenManager` on the shared token file
/// and a client with our middleware, sending rounds of concurrent requests.
/// It prints `@@ready`, waits for `go` on stdin, then prints one line per
/// request, `@@req <ms since go, at the send> <ms it took> <outcome>`, and
/// `@@done` at the end.
mod worker {
    use super::*;

    pub fn main(index: &str) -> ExitCode {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| panic!("worker {index}: {name} is not set"))
        };
        let shape = Shape::from_env();
        let token_file = PathBuf::from(var("DOT_FLEET_TOKEN_FILE"));
        let manager = TokenManager::builder(&var("DOT_FLEET_TOKEN_URL"))
            .client_id(var("DOT_FLEET_CLIENT_ID"))
            .client_secret(var("DOT_FLEET_CLIENT_SECRET"))
            .store(FileStore::new(&token_file).expect("a token file path"))
            .build()
            .expect("the manager builds");
        let api_url = var("DOT_FLEET_API_URL");
        let origin = reqwest::Url::parse(&api_url)
            .expect("the API URL")
            .origin()
            .ascii_serialization();
        let auth = OAuth2Middleware::builder(manager)
            .allow_origin(&origin)
            .build()
            .expect("the middleware builds");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a client");
        let client = reqwest_middleware::ClientBuilder::new(http)
            .with(auth)
            .build();
        current_thread().block_on(async move {
            println!("@@ready");
            let mut stdin = BufReader::new(tokio::io::stdin()).lines();
            match stdin.next_line().await {
                Ok(Some(line)) if line == "go" => {}
                _ => return ExitCode::FAILURE,
            }
            let start = Instant::now();
            let mut ticks = tokio::time::interval(shape.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut in_flight = tokio::task::JoinSet::new();
            while start.elapsed() < shape.duration {
                ticks.tick().await;
                for _ in 0..shape.concurrency {
                    let (client, api_url) = (client.clone(), api_url.clone());
                    in_flight.spawn(async move {
                        let sent = start.elapsed();
                        let outcome = outcome(client.get(&api_url).send().await).await;
                        let took = start.elapsed() - sent;
                        println!("@@req {} {} {outcome}", sent.as_millis(), took.as_millis());
                    });
                }
                if !shape.open_loop {
                    // Closed loop: the next round waits for this one.
                    while in_flight.join_next().await.is_some() {}
                }
            }
            while in_flight.join_next().await.is_some() {}
            println!("@@done");
            ExitCode::SUCCESS
        })
    }

    /// One request's outcome as a line's tail: `200`, `401 <challenge>`,
    /// `status <n>`, `error <our error>` or `transport <reqwest's error>`.
    async fn outcome(sent: reqwest_middleware::Result<reqwest::Response>) -> String {
        let response = match sent {
            Ok(response) => response,
            Err(reqwest_middleware::Error::Middleware(e)) => {
                return match e.downcast_ref::<reqwest_oauth2_refresh::Error>() {
                    Some(ours) => format!("error {ours:?}"),
                    None => format!("error (not ours) {e}"),
                };
            }
            Err(reqwest_middleware::Error::Reqwest(e)) => return format!("transport {e}"),
        };
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        // Read the body, so the connection goes back to the pool.
        let _ = response.bytes().await;
        match status {
            200 => "200".to_owned(),
            401 => format!("401 {challenge}"),
            other => format!("status {other}"),
        }
    }
}

/// The first token pair, from DOT's token endpoint (the password grant,
/// which the test client alone is allowed), with the client's credentials
/// in the body.
async fn first_tokens(http: &reqwest::Client, server: &DotServer) -> TokenSet {
    let ready = &server.ready;
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "password")
        .append_pair("username", &ready.username)
        .append_pair("password", &ready.password)
        .append_pair("client_id", &ready.client_id)
        .append_pair("client_secret", &ready.client_secret)
        .finish();
    let response = http
        .post(server.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("the token endpoint answers");
    let status = response.status();
    let text = response.text().await.expect("a token response body");
    assert_eq!(status, 200, "the password grant: {text}");
    let issued: Value = serde_json::from_str(&text).expect("a JSON token response");
    let field = |name: &str| {
        issued[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in the password grant's answer: {issued}"))
            .to_owned()
    };
    let expires_in = issued["expires_in"]
        .as_u64()
        .unwrap_or_else(|| panic!("no expires_in in the password grant's answer: {issued}"));
    TokenSet::new(field("access_token"))
        .with_refresh_token(field("refresh_token"))
        .with_expires_in(Duration::from_secs(expires_in))
        .with_scope(field("scope"))
}

async fn server_stats(http: &reqwest::Client, server: &DotServer) -> Value {
    let text = http
        .get(server.stats_url())
        .send()
        .await
        .expect("/test/stats answers")
        .text()
        .await
        .expect("/test/stats body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("/test/stats is not JSON ({e}): {text}"))
}

fn count(stats: &Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in /test/stats: {stats}"))
}

/// Every request's outcome, added up over the fleet.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    ok: u64,
    returned_401: u64,
    /// Outcome (without its time) -> count, for everything but 200.
    failures: BTreeMap<String, u64>,
    /// The first failures, as `worker N, sent at T ms, D ms: outcome`.
    examples: Vec<String>,
    /// How long each request took, in ms.
    took_ms: Vec<u64>,
}

impl Tally {
    /// The 50th, 99th and 100th percentile of the requests' times, in ms.
    fn latency(&mut self) -> (u64, u64, u64) {
        self.took_ms.sort_unstable();
        let at = |q: f64| {
            let last = self.took_ms.len().saturating_sub(1);
            self.took_ms
                .get(((last as f64) * q).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        (at(0.5), at(0.99), at(1.0))
    }

    fn add(&mut self, worker: usize, line: &str) {
        let mut fields = line.splitn(3, ' ');
        let (ms, took, outcome) = (
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
        );
        self.requests += 1;
        self.took_ms.push(
            took.parse()
                .unwrap_or_else(|_| panic!("a request line: {line}")),
        );
        if outcome == "200" {
            self.ok += 1;
            return;
        }
        if outcome.starts_with("401") {
            self.returned_401 += 1;
        }
        *self.failures.entry(outcome.to_owned()).or_default() += 1;
        if self.examples.len() < 20 {
            self.examples.push(format!(
                "worker {worker}, sent at {ms} ms, {took} ms: {outcome}"
            ));
        }
    }
}

/// Starts the fleet's workers, gets them all ready, says `go` to each, and
/// adds up what they report. Every wait is bounded.
async fn run_fleet(env: &WorkerEnv<'_>) -> Tally {
    let limit = env.shape.duration + Duration::from_secs(90);
    let mut workers = Vec::new();
    for index in 0..env.shape.processes {
        // The workers read their Shape from the environment they inherit.
        let mut child = Command::new(std::env::current_exe().expect("this test binary"))
            .env(WORKER_ENV, index.to_string())
            .env("DOT_FLEET_TOKEN_URL", env.token_url)
            .env("DOT_FLEET_API_URL", env.api_url)
            .env("DOT_FLEET_CLIENT_ID", env.client_id)
            .env("DOT_FLEET_CLIENT_SECRET", env.client_secret)
            .env("DOT_FLEET_TOKEN_FILE", env.token_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn a worker process");
        let stdin = child.stdin.take().expect("piped stdin");
        let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        workers.push((child, stdin, lines));
    }
    for (index, (_, _, lines)) in workers.iter_mut().enumerate() {
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        match ready {
            Ok(Ok(Some(line))) if line == "@@ready" => {}
            other => panic!("worker {index} did not get ready: {other:?}"),
        }
    }
    for (_, stdin, _) in &mut workers {
        stdin.write_all(b"go\n").await.expect("tell a worker to go");
        stdin.flush().await.expect("tell a worker to go");
    }
    let reads = workers
        .into_iter()
        .enumerate()
        .map(|(index, (child, _stdin, lines))| read_worker(index, child, lines, limit));
    let mut tally = Tally::default();
    for (index, lines) in futures_util::future::join_all(reads).await {
        for line in lines {
            tally.add(index, &line);
        }
    }
    tally
}

/// The token file's directory, removed when the test ends, passed or not.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("dot-fleet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A worker's request lines, up to its `@@done`, within `limit`; then its
/// exit, which must be a success.
async fn read_worker(
    index: usize,
    mut child: tokio::process::Child,
    mut lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    limit: Duration,
) -> (usize, Vec<String>) {
    let read = async {
        let mut mine = Vec::new();
        while let Some(line) = lines.next_line().await.expect("a worker's stdout") {
            if line == "@@done" {
                return mine;
            }
            if let Some(rest) = line.strip_prefix("@@req ") {
                mine.push(rest.to_owned());
            }
        }
        panic!("worker {index} ended before @@done");
    };
    let mine = tokio::time::timeout(limit, read)
        .await
        .unwrap_or_else(|_| panic!("worker {index} did not finish within {limit:?}"));
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("a worker exits after @@done")
        .expect("a worker's exit status");
    assert!(status.success(), "worker {index} exited with {status}");
    (index, mine)
}

async fn fleet_sharing_a_file_store_never_returns_a_peers_401() {
    let shape = Shape::from_env();
    let server = tokio::task::spawn_blocking(move || {
        DotServer::start(shape.access_token_seconds, shape.api_delay_ms)
    })
    .await
    .expect("the server start does not panic")
    .unwrap_or_else(|reason| panic!("the DOT server did not start: {reason}"));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client");
    let dir = TempDir::new();
    let token_file = dir.0.join("tokens.json");
    let store = FileStore::new(&token_file).expect("a token file path");
    store
        .save(&first_tokens(&http, &server).await)
        .await
        .expect("seed the token file");

    let (token_url, api_url) = (server.token_url(), server.api_url());
    let started = Instant::now();
    let mut tally = run_fleet(&WorkerEnv {
        token_url: &token_url,
        api_url: &api_url,
        client_id: &server.ready.client_id,
        client_secret: &server.ready.client_secret,
        token_file: &token_file,
        shape,
    })
    .await;
    let fleet_time = started.elapsed();
    let during = server_stats(&http, &server).await;

    // The family is alive: the stored refresh token is spent once more, and
    // the access token it gives is accepted.
    let last = TokenManager::builder(&token_url)
        .client_id(&server.ready.client_id)
        .client_secret(&server.ready.client_secret)
        .store(FileStore::new(&token_file).expect("a token file path"))
        .build()
        .expect("the manager builds");
    let family = match last.refresh().await {
        Ok(tokens) => {
            let ping = http
                .get(&api_url)
                .bearer_auth(tokens.access_token().secret())
                .send()
                .await
                .expect("the API answers");
            format!(
                "alive (one more refresh, then the API answered {})",
                ping.status()
            )
        }
        Err(e) => format!("dead: one more refresh failed: {e:?}"),
    };
    let after = server_stats(&http, &server).await;

    let refreshes = count(&during, "refreshes");
    let invalid_grants = count(&after, "invalid_grants");
    let refresh_errors = count(&after, "refresh_errors");
    let server_401 = count(&during, "api_401");
    println!(
        "dot_fleet: {} processes x {} requests every {:?} ({} loop) for {:?} (access tokens of {} s, API delay {} ms), {:.1} s",
        shape.processes,
        shape.concurrency,
        shape.interval,
        if shape.open_loop { "open" } else { "closed" },
        shape.duration,
        shape.access_token_seconds,
        shape.api_delay_ms,
        fleet_time.as_secs_f64()
    );
    println!(
        "dot_fleet: requests {}, 200s {}, 401s returned {}, other failures {}",
        tally.requests,
        tally.ok,
        tally.returned_401,
        tally.requests - tally.ok - tally.returned_401
    );
    println!(
        "dot_fleet: server: refreshes {refreshes}, refresh errors {refresh_errors} (invalid_grant {invalid_grants}), API 200s {}, API 401s {server_401} {}",
        count(&during, "api_200"),
        during["api_401_reasons"]
    );
    let (p50, p99, max) = tally.latency();
    println!("dot_fleet: request times: p50 {p50} ms, p99 {p99} ms, max {max} ms");
    println!("dot_fleet: token family {family}");
    for (outcome, n) in &tally.failures {
        println!("dot_fleet: {n} x {outcome}");
    }
    for example in &tally.examples {
        println!("dot_fleet:   {example}");
    }
    let log = server.log();
    if !log.trim().is_empty() {
        println!("dot_fleet: the server's log:\n{log}");
    }

    assert!(tally.requests > 0, "the fleet sent requests");
    assert_eq!(
        tally.returned_401, 0,
        "no request is returned to its caller as a 401 (a peer's rotation is absorbed)"
    );
    assert_eq!(
        invalid_grants, 0,
        "no refresh token is spent twice (invalid_grant at the server)"
    );
    assert!(
        family.starts_with("alive") && family.ends_with("200 OK)"),
        "the token family is {family}"
    );
    assert_eq!(
        tally.ok, tally.requests,
        "every request succeeds: {:?}",
        tally.failures
    );
}
