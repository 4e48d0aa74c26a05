//! Herd: 1000 concurrent requests meet a token the API no longer accepts,
//! with a token endpoint that answers after 50 ms. Counts token-endpoint
//! calls and measures wall time, for this crate, the naive middleware and
//! the peers, and in the same run the round trips the target is made of:
//!
//!   herd wall ≤ (one refresh round trip + two API waves) × 1.10
//!
//! where an "API wave" is 1000 concurrent requests with a valid token
//! through the bare client (the herd sends every request twice: the 401
//! and the replay), and the refresh round trip is one POST to `/token`.
//!
//! The API and the token endpoint are two loopback servers, each on its own
//! thread, as an API and its authorization server are two hosts.
//!
//! Two scenarios:
//! - revoked: the token is within its lifetime, but the API answers 401;
//! - expired: the token's lifetime is over (and the API answers 401 to it),
//!   so a client that tracks expiry refreshes before sending.
//!
//! A harness=false binary;
//! `cargo bench -p reqwest-oauth2-refresh-benches --bench herd`. `HERD_ROUNDS`
//! (default 10) sets the measured rounds per row, after one warm-up round;
//! `HERD_WORKERS=N` runs the clients on a multi-thread runtime with N
//! workers instead of a current-thread one.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::join_all;
use reqwest_oauth2_refresh::{OAuth2Middleware, TokenManager, TokenSet};

mod common;
use common::{Probe, Server, Variant, fmt_duration, median, peers};

const HERD: usize = 1000;
const TOKEN_LATENCY: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Revoked,
    Expired,
}

/// What one row measured, over the rounds.
struct Row {
    name: String,
    walls: Vec<Duration>,
    /// When the first token-endpoint call arrived, into the herd.
    refresh_at: Vec<Duration>,
    /// When the client first saw a 401 (ours and naive only), into the herd.
    first_401: Vec<Duration>,
    token_calls: Vec<u64>,
    ok: Vec<usize>,
    unauthorized: Vec<usize>,
}

impl Row {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            walls: Vec::new(),
            refresh_at: Vec::new(),
            first_401: Vec::new(),
            token_calls: Vec::new(),
            ok: Vec::new(),
            unauthorized: Vec::new(),
        }
    }

    fn range(values: &[impl Copy + Ord + std::fmt::Display]) -> String {
        let min = values.iter().copied().min();
        let max = values.iter().copied().max();
        match (min, max) {
            (Some(a), Some(b)) if a == b => format!("{a}"),
            (Some(a), Some(b)) => format!("{a}–{b}"),
            _ => "-".into(),
        }
    }
}

/// Runs one herd round: every token issued so far is revoked, then 1000
/// concurrent GETs go out through `client`.
async fn round(server: &Server, row: &mut Row, record: bool, client: Variant) {
    let api = server.url("/api");
    server.state.revoke_all();
    let calls_before = server.state.token_calls.load(Ordering::SeqCst);
    let start = server.state.mark();
    let statuses = join_all((0..HERD).map(|_| client.get(&api))).await;
    let wall = start.elapsed();
    let refresh_at = server.state.first_token_call_after(start);
    let first_401 = server.state.first_401_after(start);
    let calls = server.state.token_calls.load(Ordering::SeqCst) - calls_before;
    if record {
        row.walls.push(wall);
        if let Some(at) = refresh_at {
            row.refresh_at.push(at);
        }
        if let Some(at) = first_401 {
            row.first_401.push(at);
        }
        row.token_calls.push(calls);
        row.ok.push(statuses.iter().filter(|&&s| s == 200).count());
        row.unauthorized
            .push(statuses.iter().filter(|&&s| s == 401).count());
    }
}

/// A seed token for `scenario`: valid now (to be revoked), or expired an
/// hour ago (and revoked as well, as a server would reject it).
fn seed(server: &Server, scenario: Scenario) -> TokenSet {
    let tokens = TokenSet::new(server.state.valid_token())
        .with_refresh_token("refresh")
        .with_expires_in(common::LIFETIME);
    match scenario {
        Scenario::Revoked => tokens,
        Scenario::Expired => {
            tokens.with_issued_at(SystemTime::now() - common::LIFETIME - Duration::from_secs(3600))
        }
    }
}

/// What every step works with: the two servers, the clients' runtime, and
/// one connection pool per stack, shared by every round (warm, as in an
/// application that has been running). Fields drop in this order: the
/// clients before their runtime.
struct Bench {
    rounds: usize,
    workers: usize,
    api: String,
    token_url: String,
    inner: reqwest::Client,
    inner012: reqwest_012::Client,
    token_client: reqwest::Client,
    rt: tokio::runtime::Runtime,
    server: Server,
    auth_server: Server,
}

/// The medians of the parts of the target, and the targets.
struct Parts {
    api_single: Duration,
    api_wave: Duration,
    api_wave012: Duration,
    refresh_rtt: Duration,
    manager_refresh: Duration,
    target: Duration,
    target012: Duration,
}

/// The samples behind [`Parts`].
#[derive(Default)]
struct PartSamples {
    api_single: Vec<Duration>,
    api_wave: Vec<Duration>,
    api_wave012: Vec<Duration>,
    refresh_rtt: Vec<Duration>,
    manager_refresh: Vec<Duration>,
}

type Table = (Scenario, Vec<Row>);

fn main() {
    if !common::selected("herd") {
        return;
    }
    let rounds: usize = std::env::var("HERD_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let started = Instant::now();
    let bench = Bench::start(rounds);
    bench.rt.block_on(warm_pools(&bench));
    let parts = measure_parts(&bench);
    let mut tables = run_herds(&bench);
    print_parts(&bench, &parts);
    for (scenario, rows) in &mut tables {
        print_table(*scenario, rows, &parts);
    }
    println!();
    println!("herd bench took {:.1} s", started.elapsed().as_secs_f64());
    check_ours(&tables);
}

impl Bench {
    fn start(rounds: usize) -> Self {
        let server = Server::start();
        server.state.set_token_delay(TOKEN_LATENCY);
        // The token endpoint on a server of its own (sharing the API's state).
        let auth_server = Server::start_sharing(server.state.clone());
        let workers: usize = std::env::var("HERD_WORKERS")
            .ok()
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        let rt = client_runtime(workers);
        let api = server.url("/api");
        let token_url = auth_server.url("/token");
        Self {
            rounds,
            workers,
            api,
            token_url,
            inner: common::bare(),
            inner012: peers::bare(),
            token_client: common::bare(),
            rt,
            server,
            auth_server,
        }
    }
}

/// The client's runtime: current-thread by default (the server has the
/// other core); `HERD_WORKERS=N` gives it a multi-thread runtime with N
/// workers instead, as `#[tokio::main]` would.
fn client_runtime(workers: usize) -> tokio::runtime::Runtime {
    if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
    .expect("client runtime")
}

/// Opens ~HERD connections in each pool.
async fn warm_pools(b: &Bench) {
    let valid = b.server.state.valid_token();
    let valid = format!("Bearer {valid}");
    for _ in 0..2 {
        join_all((0..HERD).map(|_| async {
            b.inner
                .get(&b.api)
                .header("authorization", &valid)
                .send()
                .await
                .expect("warm")
                .bytes()
                .await
                .expect("warm body")
        }))
        .await;
        join_all((0..HERD).map(|_| async {
            b.inner012
                .get(&b.api)
                .header("authorization", &valid)
                .send()
                .await
                .expect("warm")
                .bytes()
                .await
                .expect("warm body")
        }))
        .await;
    }
}

/// The parts of the target, measured in this run.
fn measure_parts(b: &Bench) -> Parts {
    let mut samples = b.rt.block_on(sample_parts(b));
    let api_wave = median(&mut samples.api_wave);
    let api_wave012 = median(&mut samples.api_wave012);
    let refresh_rtt = median(&mut samples.refresh_rtt);
    Parts {
        api_single: median(&mut samples.api_single),
        api_wave,
        api_wave012,
        refresh_rtt,
        manager_refresh: median(&mut samples.manager_refresh),
        target: (refresh_rtt + api_wave * 2).mul_f64(1.10),
        target012: (refresh_rtt + api_wave012 * 2).mul_f64(1.10),
    }
}

/// 200 single API round trips, then per round (the first one a warm-up):
/// an API wave on each stack, a refresh round trip, and the same refresh
/// through `TokenManager`.
async fn sample_parts(b: &Bench) -> PartSamples {
    let mut samples = PartSamples::default();
    let valid = format!("Bearer {}", b.server.state.valid_token());
    for _ in 0..200 {
        samples.api_single.push(api_round_trip(b, &valid).await);
    }
    for i in 0..=b.rounds {
        let api_wave = api_wave(b, &valid).await;
        let api_wave012 = api_wave012(b, &valid).await;
        let refresh_rtt = refresh_round_trip(b).await;
        let manager_refresh = manager_refresh(b).await;
        if i > 0 {
            samples.api_wave.push(api_wave);
            samples.api_wave012.push(api_wave012);
            samples.refresh_rtt.push(refresh_rtt);
            samples.manager_refresh.push(manager_refresh);
        }
    }
    samples
}

/// One request to the API, bare reqwest 0.13.
async fn api_round_trip(b: &Bench, valid: &str) -> Duration {
    let start = Instant::now();
    let r = b
        .inner
        .get(&b.api)
        .header("authorization", valid)
        .send()
        .await
        .expect("api");
    assert_eq!(r.status(), 200);
    r.bytes().await.expect("body");
    start.elapsed()
}

/// HERD concurrent requests to the API, bare reqwest 0.13.
async fn api_wave(b: &Bench, valid: &str) -> Duration {
    let start = Instant::now();
    let statuses = join_all((0..HERD).map(|_| async {
        let r = b
            .inner
            .get(&b.api)
            .header("authorization", valid)
            .send()
            .await
            .expect("api");
        let s = r.status().as_u16();
        r.bytes().await.expect("body");
        s
    }))
    .await;
    assert!(statuses.iter().all(|&s| s == 200));
    start.elapsed()
}

/// HERD concurrent requests to the API, bare reqwest 0.12.
async fn api_wave012(b: &Bench, valid: &str) -> Duration {
    let start = Instant::now();
    join_all((0..HERD).map(|_| async {
        let r = b
            .inner012
            .get(&b.api)
            .header("authorization", valid)
            .send()
            .await
            .expect("api");
        r.bytes().await.expect("body");
    }))
    .await;
    start.elapsed()
}

/// One POST to `/token`, bare reqwest.
async fn refresh_round_trip(b: &Bench) -> Duration {
    let start = Instant::now();
    let r = b
        .token_client
        .post(&b.token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=refresh_token&refresh_token=refresh&client_id=bench")
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), 200);
    r.bytes().await.expect("token body");
    start.elapsed()
}

/// The same through TokenManager::refresh (its own overhead: task spawn,
/// lock, parse, store, publish).
async fn manager_refresh(b: &Bench) -> Duration {
    let manager = manager_for(
        &b.auth_server,
        seed(&b.server, Scenario::Revoked),
        &b.token_client,
    );
    manager.access_token().await.expect("load");
    let start = Instant::now();
    manager.refresh().await.expect("refresh");
    start.elapsed()
}

/// The herds: a row per client, a table per scenario.
fn run_herds(b: &Bench) -> Vec<Table> {
    let mut tables = Vec::new();
    for scenario in [Scenario::Revoked, Scenario::Expired] {
        let mut rows = vec![
            herd_row(b, "reqwest-oauth2-refresh", || ours_client(b, scenario)),
            herd_row(b, "naive Mutex<String> middleware", || naive_client(b)),
        ];
        if scenario == Scenario::Revoked {
            rows.push(herd_row(b, "aliri_reqwest 0.5 + aliri_tokens 0.3", || {
                aliri_client(b)
            }));
        }
        rows.push(herd_row(
            b,
            "reqwest-auth 1.0 (cached token source)",
            || reqwest_auth_client(b, scenario),
        ));
        tables.push((scenario, rows));
    }
    tables
}

/// One row: a warm-up round, then `rounds` recorded ones, each with a
/// client made afresh by `client`.
fn herd_row<F, Fut>(b: &Bench, name: &str, client: F) -> Row
where
    F: Fn() -> Fut,
    Fut: Future<Output = Variant>,
{
    let mut row = Row::new(name);
    for i in 0..=b.rounds {
        b.rt.block_on(async {
            let client = client().await;
            round(&b.server, &mut row, i > 0, client).await;
        });
    }
    row
}

async fn ours_client(b: &Bench, scenario: Scenario) -> Variant {
    let manager = manager_for(&b.auth_server, seed(&b.server, scenario), &b.token_client);
    // Loaded, as in an application that has been running: the
    // first call reads the store, under the refresh lock.
    manager.load_tokens().await.expect("load");
    let auth = OAuth2Middleware::builder(manager)
        .allow_origin(&b.server.origin())
        .build()
        .expect("middleware");
    let client = reqwest_middleware::ClientBuilder::new(b.inner.clone())
        .with(auth)
        .with(Probe(b.server.state.clone()))
        .build();
    Variant::Ours(client)
}

async fn naive_client(b: &Bench) -> Variant {
    let token = b.server.state.valid_token();
    let client = reqwest_middleware::ClientBuilder::new(b.inner.clone())
        .with(common::Naive::new(
            &token,
            &b.auth_server,
            b.token_client.clone(),
        ))
        .with(Probe(b.server.state.clone()))
        .build();
    Variant::Naive(client)
}

async fn aliri_client(b: &Bench) -> Variant {
    // The watcher fetches its token now, before the revocation.
    Variant::Aliri(peers::aliri(&b.auth_server, b.inner012.clone()).await)
}

async fn reqwest_auth_client(b: &Bench, scenario: Scenario) -> Variant {
    let token = b.server.state.valid_token();
    let mut source = peers::CachedSource::new(&token, &b.auth_server, peers::bare());
    if scenario == Scenario::Expired {
        source.expire();
    }
    Variant::ReqwestAuth(peers::reqwest_auth(source, b.inner012.clone()))
}

/// The report's heading and the parts of the target.
fn print_parts(b: &Bench, parts: &Parts) {
    let (rounds, workers) = (b.rounds, b.workers);
    println!();
    println!(
        "herd: {HERD} concurrent GETs, token endpoint latency {} ms, {rounds} rounds per row (+1 warm-up), medians; client runtime: {}",
        TOKEN_LATENCY.as_millis(),
        if workers == 0 {
            "current-thread".to_owned()
        } else {
            format!("multi-thread, {workers} workers")
        }
    );
    println!();
    println!("| part of the target | median |");
    println!("|---|---|");
    println!(
        "| one API round trip (1 request, bare reqwest 0.13) | {} |",
        fmt_duration(parts.api_single)
    );
    println!(
        "| one API wave ({HERD} concurrent, bare reqwest 0.13) | {} |",
        fmt_duration(parts.api_wave)
    );
    println!(
        "| one API wave ({HERD} concurrent, bare reqwest 0.12) | {} |",
        fmt_duration(parts.api_wave012)
    );
    println!(
        "| one refresh round trip (POST /token, bare reqwest) | {} |",
        fmt_duration(parts.refresh_rtt)
    );
    println!(
        "| `TokenManager::refresh()` alone | {} |",
        fmt_duration(parts.manager_refresh)
    );
    println!(
        "| target: (refresh + 2 API waves) × 1.10 | {} (reqwest 0.13), {} (0.12) |",
        fmt_duration(parts.target),
        fmt_duration(parts.target012)
    );
}

/// One scenario's table (the medians sort the rows' samples).
fn print_table(scenario: Scenario, rows: &mut [Row], parts: &Parts) {
    println!();
    println!(
        "{} token: {HERD} concurrent requests (times are medians, from the herd's start)",
        match scenario {
            Scenario::Revoked => "revoked",
            Scenario::Expired => "expired",
        }
    );
    println!();
    println!(
        "| client | token-endpoint calls | 200 / 401 | first 401 seen at | first token call at | wall | wall / target |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in rows.iter_mut() {
        let wall = median(&mut row.walls);
        let t = if row.name.contains("reqwest-auth") || row.name.contains("aliri") {
            parts.target012
        } else {
            parts.target
        };
        let at = |samples: &mut Vec<Duration>| {
            if samples.is_empty() {
                "-".to_owned()
            } else {
                fmt_duration(median(samples))
            }
        };
        println!(
            "| {} | {} | {} / {} | {} | {} | {} | {:.2} |",
            row.name,
            Row::range(&row.token_calls),
            Row::range(&row.ok),
            Row::range(&row.unauthorized),
            at(&mut row.first_401),
            at(&mut row.refresh_at),
            fmt_duration(wall),
            wall.as_secs_f64() / t.as_secs_f64()
        );
    }
}

/// The rounds of this crate must each have called the token endpoint once.
fn check_ours(tables: &[Table]) {
    for (_, rows) in tables {
        let ours = &rows[0];
        assert!(
            ours.token_calls.iter().all(|&c| c == 1),
            "reqwest-oauth2-refresh called the token endpoint {:?} times",
            ours.token_calls
        );
        assert!(
            ours.ok.iter().all(|&ok| ok == HERD),
            "every request succeeded"
        );
    }
}

fn manager_for(server: &Server, tokens: TokenSet, token_client: &reqwest::Client) -> TokenManager {
    TokenManager::builder(&server.url("/token"))
        .client_id("bench")
        .initial_tokens(tokens)
        .http_client(token_client.clone())
        .build()
        .expect("manager")
}
