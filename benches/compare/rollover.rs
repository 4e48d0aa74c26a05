//! Request latency across a token rollover, against steady state: with the
//! default proactive refresh (the request that meets the stale token waits
//! for the refresh) and with `background_refresh(true)` (nobody waits).
//!
//! The token endpoint answers after an injected 50 ms, so a request that
//! waits for a refresh shows it. Time moves through an injected clock, so a
//! rollover happens exactly when the bench says.
//!
//! Run: `cargo bench -p reqwest-oauth2-refresh-benches --bench rollover`
//! (prints a table; about 20 s).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt as _;
use reqwest_oauth2_refresh::{Clock, OAuth2Middleware, TokenManager, TokenSet};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

const REFRESH_LATENCY: Duration = Duration::from_millis(50);
const IN_FLIGHT: usize = 8;
const ROLLOVERS: usize = 20;
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
    refreshes: usize,
}

async fn measure(background: bool) -> Figures {
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
        .background_refresh(background)
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

    let (mut steady, mut rollover) = (Vec::new(), Vec::new());
    for _ in 0..ROLLOVERS {
        steady.extend(round(&client, &url).await);
        // 30 s before expiry: inside the 60 s leeway, still valid.
        clock.0.fetch_add(3570, Ordering::SeqCst);
        rollover.extend(round(&client, &url).await);
        // Let a background refresh land before the next steady round.
        let renewed = || {
            manager
                .cached_tokens()
                .and_then(|t| t.expires_at())
                .is_some_and(|at| at > clock.now() + Duration::from_secs(3000))
        };
        while !renewed() {
            tokio::task::yield_now().await;
        }
    }
    steady.sort();
    rollover.sort();
    Figures {
        steady_p50: percentile(&steady, 0.5),
        steady_p99: percentile(&steady, 0.99),
        rollover_p50: percentile(&rollover, 0.5),
        rollover_p99: percentile(&rollover, 0.99),
        rollover_max: *rollover.last().unwrap(),
        refreshes: auth.received_requests().await.unwrap().len(),
    }
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
        "| mode | steady p50 | steady p99 | rollover p50 | rollover p99 | p99 ratio | rollover max | refreshes |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, background) in [("blocking (default)", false), ("background_refresh", true)] {
        let f = runtime.block_on(measure(background));
        println!(
            "| {name} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {:.2} | {:.1} ms | {} |",
            f.steady_p50.as_secs_f64() * 1e6,
            f.steady_p99.as_secs_f64() * 1e6,
            f.rollover_p50.as_secs_f64() * 1e6,
            f.rollover_p99.as_secs_f64() * 1e6,
            f.rollover_p99.as_secs_f64() / f.steady_p99.as_secs_f64(),
            f.rollover_max.as_secs_f64() * 1e3,
            f.refreshes,
        );
    }
}
