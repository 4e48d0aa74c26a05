//! A DPoP request against a Bearer request through `OAuth2Layer`, over an
//! in-process service that answers at once (no network: the difference is
//! ours alone):
//!
//! - time per request, the variants measured in interleaved rounds,
//!   medians of the rounds (`DPOP_ROUNDS`, default 30, of `DPOP_CALLS`,
//!   default 2000, requests), DPoP over Bearer in the same round;
//! - heap allocations per request (current-thread runtime, so everything
//!   is counted);
//! - signatures per request: the proofs the service received, over the
//!   requests (exactly one; nothing else is signed, the token being fresh);
//! - one ES256 signature alone, for scale.
//!
//! `cargo bench --bench dpop --all-features`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response};
use reqwest_oauth2_refresh::tower::OAuth2Layer;
use reqwest_oauth2_refresh::{Algorithm, DpopKey, Signer, SigningKey, TokenManager, TokenSet};
use serde_json::json;
use tower::{Layer, Service, ServiceExt};

mod util;

#[path = "util/counting.rs"]
mod counting;
use counting::{Counting, count};

#[global_allocator]
static GLOBAL: Counting = Counting;

const API: &str = "https://api.example.com";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A manager holding a fresh token, DPoP-bound or not (never refreshed: the
/// token endpoint is never called).
fn manager(dpop: bool) -> TokenManager {
    let token_type = if dpop { "DPoP" } else { "Bearer" };
    let mut tokens = TokenSet::from_token_response_json(&json!({
        "access_token": "bench-access-token-0123456789abcdef",
        "token_type": token_type,
        "expires_in": 86400,
        "refresh_token": "r",
    }))
    .expect("a token response");
    if dpop {
        tokens = tokens.with_dpop_key(&DpopKey::generate().expect("a key"));
    }
    TokenManager::builder("https://auth.example.com/token")
        .initial_tokens(tokens)
        .build()
        .expect("manager")
}

type Api = tower::util::BoxCloneService<
    Request<String>,
    Response<String>,
    reqwest_oauth2_refresh::BoxError,
>;

/// Our layer over a service that counts the proofs it sees.
fn service(dpop: bool, proofs: Arc<AtomicU64>) -> Api {
    let inner = tower::service_fn(move |request: Request<String>| {
        if request.headers().contains_key("dpop") {
            proofs.fetch_add(1, Ordering::Relaxed);
        }
        async { Ok::<_, reqwest_oauth2_refresh::BoxError>(Response::new(String::new())) }
    });
    let layer = OAuth2Layer::builder(manager(dpop))
        .allow_origin(API)
        .build()
        .expect("layer");
    tower::util::BoxCloneService::new(layer.layer(inner))
}

async fn run(service: &mut Api, calls: usize) {
    for _ in 0..calls {
        let request = Request::get(format!("{API}/items/42?page=2"))
            .body(String::new())
            .expect("request");
        service
            .ready()
            .await
            .expect("ready")
            .call(request)
            .await
            .expect("answer");
    }
}

fn main() {
    if !util::selected("dpop") {
        return;
    }
    let rounds = env("DPOP_ROUNDS", 30);
    let calls = env("DPOP_CALLS", 2000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let proofs = Arc::new(AtomicU64::new(0));
    let mut bearer = service(false, Arc::new(AtomicU64::new(0)));
    let mut dpop = service(true, proofs.clone());
    // Warm-up: the first load of each manager, caches.
    runtime.block_on(run(&mut bearer, 100));
    runtime.block_on(run(&mut dpop, 100));
    let (mut times_bearer, mut times_dpop, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate the order, so that neither variant always goes first.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut this = [Duration::ZERO; 2];
        for is_dpop in order {
            let service = if is_dpop { &mut dpop } else { &mut bearer };
            let start = Instant::now();
            runtime.block_on(run(service, calls));
            this[usize::from(is_dpop)] = start.elapsed() / calls as u32;
        }
        times_bearer.push(this[0]);
        times_dpop.push(this[1]);
        ratios.push(this[1].as_secs_f64() / this[0].as_secs_f64().max(1e-12));
    }
    // The signature alone, for scale: what a proof cannot avoid.
    let key = SigningKey::generate(Algorithm::Es256).expect("a key");
    let message = [b'x'; 600];
    let start = Instant::now();
    for _ in 0..calls {
        runtime.block_on(key.sign(&message)).expect("a signature");
    }
    let signature = start.elapsed() / calls as u32;
    let before = proofs.load(Ordering::Relaxed);
    let (bearer_allocs, _, ()) = count(|| runtime.block_on(run(&mut bearer, 1000)));
    let (dpop_allocs, _, ()) = count(|| runtime.block_on(run(&mut dpop, 1000)));
    let signed = proofs.load(Ordering::Relaxed) - before;
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN);
    println!("dpop bench: {rounds} rounds of {calls} requests, medians");
    println!(
        "  bearer request: {:>9.2?} per request, {:.1} allocations",
        util::median(&mut times_bearer),
        bearer_allocs as f64 / 1000.0
    );
    println!(
        "  dpop request:   {:>9.2?} per request, {:.1} allocations",
        util::median(&mut times_dpop),
        dpop_allocs as f64 / 1000.0
    );
    println!("  dpop / bearer:  {ratio:.2}x (median of the rounds' ratios)");
    println!("  one ES256 signature alone: {signature:.2?}");
    println!(
        "  signatures per dpop request: {:.3}",
        signed as f64 / 1000.0
    );
}
