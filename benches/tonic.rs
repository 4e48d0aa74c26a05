//! A unary tonic call (`grpc.health.v1.Health/Check` over HTTP/2 on
//! loopback) through `OAuth2Layer` with a valid token, against the same
//! call through a layer that only inserts a fixed `authorization` header:
//!
//! - time per call, the variants measured in interleaved rounds (A B C …
//!   B C A …), medians of the rounds (`TONIC_ROUNDS`, default 40, rounds of
//!   `TONIC_CALLS`, default 1000, calls), each round's time over the
//!   fixed-header layer's in the same round;
//! - heap allocations per call on the client thread (the client runs on a
//!   current-thread runtime on the main thread, so the channel's tasks are
//!   counted; the server's thread is not), and in the whole process.
//!
//! A harness=false binary: `cargo bench --bench tonic --features tonic`.
//! For instruction counts under callgrind, `BENCH_VARIANT=<id>` and
//! `BENCH_N=<n>` run only `n` calls of that variant after a warm-up.

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};
use reqwest_oauth2_refresh::tower::{BufferBody, OAuth2Layer};
use reqwest_oauth2_refresh::{TokenManager, TokenSet};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::{Layer, Service};

mod util;

#[path = "util/counting.rs"]
mod counting;
use counting::{Counting, count};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The comparison: inserts a fixed header, nothing else, and hands back the
/// inner service's future as it is.
#[derive(Clone)]
struct FixedHeader<S> {
    inner: S,
    header: HeaderValue,
}

impl<S, B> Service<Request<B>> for FixedHeader<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        request
            .headers_mut()
            .insert(AUTHORIZATION, self.header.clone());
        self.inner.call(request)
    }
}

/// The variants, by id, each a health client over its own stack on one
/// shared channel.
enum Variant {
    Bare(HealthClient<Channel>),
    Fixed(HealthClient<FixedHeader<Channel>>),
    Layer(HealthClient<reqwest_oauth2_refresh::tower::OAuth2Service<Channel>>),
    Buffered(HealthClient<reqwest_oauth2_refresh::tower::OAuth2Service<Channel, BufferBody>>),
}

impl Variant {
    fn id(&self) -> &'static str {
        match self {
            Variant::Bare(_) => "bare",
            Variant::Fixed(_) => "fixed",
            Variant::Layer(_) => "layer",
            Variant::Buffered(_) => "layer_buffered",
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Variant::Bare(_) => "bare channel",
            Variant::Fixed(_) => "fixed-header layer",
            Variant::Layer(_) => "OAuth2Layer",
            Variant::Buffered(_) => "OAuth2Layer, BufferBody replay",
        }
    }

    async fn call(&mut self) {
        let request = HealthCheckRequest::default();
        let outcome = match self {
            Variant::Bare(c) => c.check(request).await,
            Variant::Fixed(c) => c.check(request).await,
            Variant::Layer(c) => c.check(request).await,
            Variant::Buffered(c) => c.check(request).await,
        };
        std::hint::black_box(outcome.expect("the health check answers"));
    }

    async fn calls(&mut self, n: u64) {
        for _ in 0..n {
            self.call().await;
        }
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A tonic server with the health service, on a thread and runtime of its
/// own; its origin.
fn start_server() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("address"))
                .expect("send");
            let (_reporter, health) = tonic_health::server::health_reporter();
            Server::builder()
                .serve_with_incoming(health, TcpIncoming::from(listener))
                .await
                .expect("server");
        });
    });
    format!("http://{}", rx.recv().expect("server address"))
}

fn main() {
    if !util::selected("tonic") {
        return;
    }
    let origin = start_server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let mut variants = rt.block_on(async {
        let channel = Endpoint::from_shared(origin.clone())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let manager = TokenManager::builder("https://as.example/token")
            .initial_tokens(
                TokenSet::new("bench-token").with_expires_in(Duration::from_secs(24 * 3600)),
            )
            .build()
            .expect("manager");
        manager.access_token().await.expect("load");
        let mut header = HeaderValue::from_static("Bearer bench-token");
        header.set_sensitive(true);
        let layer = OAuth2Layer::builder(manager.clone())
            .channel_origin(&origin)
            .build()
            .expect("layer");
        let buffered = OAuth2Layer::builder(manager)
            .channel_origin(&origin)
            .replay(BufferBody::up_to(64 * 1024))
            .build()
            .expect("layer");
        vec![
            Variant::Bare(HealthClient::new(channel.clone())),
            Variant::Fixed(HealthClient::new(FixedHeader {
                inner: channel.clone(),
                header,
            })),
            Variant::Layer(HealthClient::new(layer.layer(channel.clone()))),
            Variant::Buffered(HealthClient::new(buffered.layer(channel))),
        ]
    });
    // Warm up: the connection open, its windows grown, lazy statics set.
    rt.block_on(async {
        for variant in &mut variants {
            variant.calls(500).await;
        }
    });

    if let Ok(id) = std::env::var("BENCH_VARIANT") {
        let variant = variants
            .iter_mut()
            .find(|v| v.id() == id)
            .unwrap_or_else(|| panic!("no variant {id}"));
        rt.block_on(variant.calls(env("BENCH_N", 1000)));
        return;
    }

    let calls = env("TONIC_CALLS", 1000);
    println!("heap allocations per unary call (a realloc counts as one), valid token");
    println!();
    println!("| variant | client thread | process |");
    println!("|---|---|---|");
    for variant in &mut variants {
        let (thread, process, ()) = count(|| rt.block_on(variant.calls(calls)));
        println!(
            "| {} | {:.2} | {:.2} |",
            variant.name(),
            thread as f64 / calls as f64,
            process as f64 / calls as f64
        );
    }

    let rounds = env("TONIC_ROUNDS", 40);
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        // Each round starts with another variant, so that none always
        // follows the same one.
        let n = variants.len();
        for i in (0..n).map(|i| (i + round as usize) % n) {
            let start = Instant::now();
            rt.block_on(variants[i].calls(calls));
            samples[i].push(start.elapsed() / calls as u32);
        }
    }
    // Paired: each round's time over the fixed-header layer's in the same
    // round, so that a slow stretch of the machine cancels out.
    let fixed = samples[1].clone();
    println!();
    println!("time per unary call, {rounds} interleaved rounds of {calls} calls");
    println!();
    println!("| variant | median per call | median of the rounds' ÷ fixed-header layer |");
    println!("|---|---|---|");
    for (variant, samples) in variants.iter().zip(&mut samples) {
        let mut ratios: Vec<f64> = samples
            .iter()
            .zip(&fixed)
            .map(|(s, f)| s.as_secs_f64() / f.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let ratio = ratios[ratios.len() / 2];
        println!(
            "| {} | {:.1} µs | {:.3} |",
            variant.name(),
            util::median(samples).as_secs_f64() * 1e6,
            ratio
        );
    }
}
