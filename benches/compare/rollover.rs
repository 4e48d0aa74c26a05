//! Request latency across a token rollover, against steady state: with the
//! default stale-while-revalidate refresh (nobody waits) and with
//! `RefreshMode::Blocking` (the request that meets the stale token waits for
//! the refresh). The two run in turns, rollover by rollover, in one run, so
//! that the machine's noise falls on both alike.
//!
//! The token endpoint answers after an injected 50 ms, so a request that
//! waits for a refresh shows it. Time moves through an injected clock, so a
//! rollover happens exactly when the bench says.
//!
//! Run: `cargo bench -p reqwest-oauth2-refresh-benches --bench rollover`
//! (prints a table; about 30 s).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt as _;
use reqwest_oauth2_refresh::{Clock, OAuth2Middleware, RefreshMode, TokenManager, TokenSet};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

const REFRESH_LATENCY: Duration = Duration::from_millis(50);
const IN_FLIGHT: usize = 8;
const ROLLOVERS: usize = 40;
const REQUESTS_PER_ROUND: usize = 200;

#[derive(Debug, Default)]
struct BenchClock(AtomicU64);

impl Clock for BenchClock {
    fn now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_secs(self.0.load(Ordering::SeqCst))
    }
}

/// Latencies of `REQUESTS_PER_ROUND` requests, `IN_FLIGHT` at a time.
async fn round(client: &reqwest_middleware::ClientWithMiddleware, url: &str) -> Vec<Duration> {
    futures_util::stream::iter(0..REQUESTS_PER_ROUND)
        .map(|_| async {
            let started = Instant::now();
            let response = client.get(url).send().await.expect("request");
            assert_eq!(response.status(), 200);
            started.elapsed()
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

struct Figures {
    steady_p50: Duration,
    steady_p99: Duration,
    rollover_p50: Duration,
    rollover_p99: Duration,
    rollover_max: Duration,
    /// The median over rollovers of (rollover p99 ÷ the p99 of the steady
    /// round just before it).
    paired_ratio: f64,
    refreshes: usize,
}

/// One mode's manager, client and servers, and what it measured.
struct Variant {
    clock: Arc<BenchClock>,
    manager: TokenManager,
    client: reqwest_middleware::ClientWithMiddleware,
    url: String,
    auth: MockServer,
    _api: MockServer,
    steady: Vec<Duration>,
    rollover: Vec<Duration>,
    ratios: Vec<f64>,
}

async fn variant(mode: RefreshMode) -> Variant {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({
                    "access_token": "fresh", "token_type": "Bearer", "expires_in": 3600
                }))
                .set_delay(REFRESH_LATENCY),
        )
        .mount(&auth)
        .await;
    Mock::given(path("/data"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&api)
        .await;
    let clock = Arc::new(BenchClock::default());
    let manager = TokenManager::builder(&format!("{}/token", auth.uri()))
        .client_id("bench")
        .clock(clock.clone())
        .refresh_mode(mode)
        .initial_tokens(
            TokenSet::new("first")
                .with_refresh_token("r")
                .with_expires_in(Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(
            OAuth2Middleware::builder(manager.clone())
                .allow_origin(&api.uri())
                .build()
                .unwrap(),
        )
        .build();
    let url = format!("{}/data", api.uri());
    round(&client, &url).await; // warm up connections
    Variant {
        clock,
        manager,
        client,
        url,
        auth,
        _api: api,
        steady: Vec::new(),
        rollover: Vec::new(),
        ratios: Vec::new(),
    }
}

impl Variant {
    /// A steady round, then a round 30 s before expiry (inside the 60 s
    /// leeway, still valid), then waits for the refresh to land.
    async fn rollover(&mut self) {
        let mut steady = round(&self.client, &self.url).await;
        self.clock.0.fetch_add(3570, Ordering::SeqCst);
        let mut rollover = round(&self.client, &self.url).await;
        let renewed = || {
            self.manager
                .cached_tokens()
                .and_then(|t| t.expires_at())
                .is_some_and(|at| at > self.clock.now() + Duration::from_secs(3000))
        };
        while !renewed() {
            tokio::task::yield_now().await;
        }
        steady.sort();
        rollover.sort();
        let ratio =
            percentile(&rollover, 0.99).as_secs_f64() / percentile(&steady, 0.99).as_secs_f64();
        self.ratios.push(ratio);
        self.steady.extend(steady);
        self.rollover.extend(rollover);
    }

    async fn figures(mut self) -> Figures {
        self.steady.sort();
        self.rollover.sort();
        self.ratios.sort_by(f64::total_cmp);
        Figures {
            steady_p50: percentile(&self.steady, 0.5),
            steady_p99: percentile(&self.steady, 0.99),
            rollover_p50: percentile(&self.rollover, 0.5),
            rollover_p99: percentile(&self.rollover, 0.99),
            rollover_max: *self.rollover.last().unwrap(),
            paired_ratio: self.ratios[self.ratios.len() / 2],
            refreshes: self.auth.received_requests().await.unwrap().len(),
        }
    }
}

/// Both modes, in turns (which goes first alternates).
async fn measure() -> [Figures; 2] {
    let mut default = variant(RefreshMode::default()).await;
    let mut blocking = variant(RefreshMode::Blocking).await;
    for i in 0..ROLLOVERS {
        if i % 2 == 0 {
            default.rollover().await;
            blocking.rollover().await;
        } else {
            blocking.rollover().await;
            default.rollover().await;
        }
    }
    [default.figures().await, blocking.figures().await]
}

fn main() {
    // `cargo test --benches` runs benches with `--test`: nothing to time.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "rollover: {ROLLOVERS} rollovers x {REQUESTS_PER_ROUND} requests, {IN_FLIGHT} in flight, refresh latency {REFRESH_LATENCY:?}"
    );
    println!(
        "| mode | steady p50 | steady p99 | rollover p50 | rollover p99 | p99 ratio (pooled) | p99 ratio (paired median) | rollover max | refreshes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let figures = runtime.block_on(measure());
    let names = ["stale-while-revalidate (default)", "RefreshMode::Blocking"];
    for (name, f) in names.iter().zip(figures) {
        println!(
            "| {name} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {:.2} | {:.2} | {:.1} ms | {} |",
            f.steady_p50.as_secs_f64() * 1e6,
            f.steady_p99.as_secs_f64() * 1e6,
            f.rollover_p50.as_secs_f64() * 1e6,
            f.rollover_p99.as_secs_f64() * 1e6,
            f.rollover_p99.as_secs_f64() / f.steady_p99.as_secs_f64(),
            f.paired_ratio,
            f.rollover_max.as_secs_f64() * 1e3,
            f.refreshes,
        );
    }
}
