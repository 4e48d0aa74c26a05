//! Heap allocations per call, counted by a `#[global_allocator]` wrapper
//! over `System`, and an interleaved timing of the hot-path variants.
//!
//! - allocations per `TokenManager::access_token()` with a valid token;
//! - allocations per GET with a valid token on the client thread (the
//!   client runs on a current-thread runtime on the main thread, so its
//!   connection tasks are counted; the loopback server's thread is not),
//!   and in the whole process, for every hot-path variant;
//! - the hot-path variants timed in interleaved rounds (A B C … A B C …),
//!   medians of the rounds: on a noisy machine this is steadier than
//!   criterion's one-after-the-other groups for small ratios
//!   (`ALLOCS_ROUNDS`, default 40, sets the number of rounds).
//!
//! A harness=false binary:
//! `cargo bench -p reqwest-oauth2-refresh-benches --bench allocs`.
//!
//! For instruction counts under callgrind, `BENCH_VARIANT=<id>` and
//! `BENCH_N=<n>` run only `n` requests (or `access_token()` calls, with
//! `BENCH_VARIANT=access_token`) after a warm-up, and print nothing else;
//! run it with two values of `n` and divide the difference.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest_oauth2_refresh::{OAuth2Middleware, TokenManager};

mod common;
use common::{Server, Variant, median, ready};

#[path = "../util/counting.rs"]
mod counting;
use counting::{Counting, count};

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: u64 = 1000;

/// Wraps a middleware and records the size of the future its `handle`
/// returns (the box async_trait allocates per request).
struct HandleSize(Arc<dyn reqwest_middleware::Middleware>, Arc<AtomicUsize>);

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for HandleSize {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let future = self.0.handle(req, extensions, next);
        self.1
            .store(std::mem::size_of_val(&*future), Ordering::SeqCst);
        future.await
    }
}

fn main() {
    if !common::selected("allocs") {
        return;
    }
    let server = Server::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let variants = all_variants(&rt, &server);
    let url = server.url("/hot");
    let manager = common::manager(&server, &server.state.valid_token(), common::bare());
    rt.block_on(manager.access_token()).expect("load");

    if let Ok(id) = std::env::var("BENCH_VARIANT") {
        let n: u64 = std::env::var("BENCH_N")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(N);
        callgrind_mode(&rt, &variants, &manager, &url, &id, n);
        return;
    }

    warm_up(&rt, &variants, &manager, &url);
    println!();
    println!("allocations (a realloc counts as one), with a valid token");
    println!();
    access_token_allocs(&manager);
    try_clone_allocs(&url);
    handle_sizes(&rt, &server, &manager, &url);
    per_get_allocs(&rt, &variants, &url);

    interleaved(&rt, &variants, &url);
}

/// The hot-path variants, with the replay-copy experiments after the
/// trivial middleware.
fn all_variants(rt: &tokio::runtime::Runtime, server: &Server) -> Vec<Variant> {
    let mut variants = rt.block_on(common::hot_variants(server));
    let copies = common::copy_variants();
    let at = variants
        .iter()
        .position(|v| v.id() == "trivial")
        .expect("trivial")
        + 1;
    variants.splice(at..at, copies);
    variants
}

/// Warm up: connections open, lazy statics set, pools filled.
fn warm_up(rt: &tokio::runtime::Runtime, variants: &[Variant], manager: &TokenManager, url: &str) {
    rt.block_on(async {
        for variant in variants {
            for _ in 0..200 {
                assert_eq!(variant.get(url).await, 200, "{}", variant.name());
            }
            join_all((0..64).map(|_| variant.get(url))).await;
        }
    });
    for _ in 0..100 {
        ready!(manager.access_token()).expect("token");
    }
}

/// Allocations per `TokenManager::access_token()` with a valid token.
fn access_token_allocs(manager: &TokenManager) {
    let (thread, process, _) = count(|| {
        for _ in 0..N {
            std::hint::black_box(ready!(manager.access_token()).expect("token"));
        }
    });
    println!(
        "`TokenManager::access_token()`: {:.2} per call (thread), {:.2} (process); its future is {} bytes",
        thread as f64 / N as f64,
        process as f64 / N as f64,
        std::mem::size_of_val(&manager.access_token())
    );
}

/// What the middleware's copy-for-replay costs: a GET as the middleware
/// sees it (built by the client, our Authorization header inserted).
fn try_clone_allocs(url: &str) {
    let mut request = common::bare().get(url).build().expect("request");
    let mut header = reqwest::header::HeaderValue::from_str("Bearer gen-1").expect("value");
    header.set_sensitive(true);
    drop(header.clone()); // shared, as the manager keeps it
    request
        .headers_mut()
        .insert(reqwest::header::AUTHORIZATION, header);
    let (clone_all, _, _) = count(|| {
        for _ in 0..N {
            std::hint::black_box(request.try_clone());
        }
    });
    let (clone_url, _, _) = count(|| {
        for _ in 0..N {
            std::hint::black_box(request.url().clone());
        }
    });
    let (clone_headers, _, _) = count(|| {
        for _ in 0..N {
            std::hint::black_box(request.headers().clone());
        }
    });
    println!(
        "`reqwest::Request::try_clone()` of such a GET: {:.2} per call (its URL: {:.2}, its HeaderMap: {:.2})",
        clone_all as f64 / N as f64,
        clone_url as f64 / N as f64,
        clone_headers as f64 / N as f64
    );
}

/// The size of the future each middleware's `handle` boxes per request.
fn handle_sizes(rt: &tokio::runtime::Runtime, server: &Server, manager: &TokenManager, url: &str) {
    let handle_size = |middleware: Arc<dyn reqwest_middleware::Middleware>| {
        let size = Arc::new(AtomicUsize::new(0));
        let client = reqwest_middleware::ClientBuilder::new(common::bare())
            .with(HandleSize(middleware, size.clone()))
            .build();
        rt.block_on(common::get(&client, url));
        size.load(Ordering::SeqCst)
    };
    let ours_size = handle_size(Arc::new(
        OAuth2Middleware::builder(manager.clone())
            .allow_origin(&server.origin())
            .build()
            .expect("middleware"),
    ));
    let trivial_size = handle_size(Arc::new(common::FixedBearer(
        reqwest::header::HeaderValue::from_static("Bearer x"),
    )));
    println!(
        "the future a middleware's `handle` boxes per request: OAuth2Middleware {ours_size} bytes, the trivial middleware {trivial_size} bytes"
    );
}

/// Allocations per GET for every variant, and over its floor (the bare
/// client on the same stack).
fn per_get_allocs(rt: &tokio::runtime::Runtime, variants: &[Variant], url: &str) {
    println!();
    println!(
        "| client | per GET, client thread | per GET, whole process | extra over its floor (client thread) |"
    );
    println!("|---|---|---|---|");
    let mut floor13 = 0.0;
    let mut floor12 = 0.0;
    for variant in variants {
        let (thread, process, _) = count(|| {
            rt.block_on(async {
                for _ in 0..N {
                    std::hint::black_box(variant.get(url).await);
                }
            })
        });
        let per = thread as f64 / N as f64;
        let floor = match variant {
            Variant::Bare(_) => {
                floor13 = per;
                per
            }
            Variant::Bare012(_) => {
                floor12 = per;
                per
            }
            Variant::Trivial(_)
            | Variant::Copying(..)
            | Variant::Ours(_)
            | Variant::OursNoReplay(_)
            | Variant::Naive(_) => floor13,
            _ => floor12,
        };
        println!(
            "| {} | {:.2} | {:.2} | {:+.2} |",
            variant.name(),
            per,
            process as f64 / N as f64,
            per - floor
        );
    }
}

/// Sequential GETs per variant and round, in [`interleaved`].
const SEQUENTIAL: u32 = 100;
/// Batches of 64 concurrent GETs per variant and round.
const BATCHES: u32 = 5;

/// Interleaved rounds: per request, sequential and 64 in flight. Each
/// round runs every variant once, starting from a different one each round;
/// a variant's ratio is the median over rounds of its time divided by its
/// floor's (the trivial middleware on the same stack) in the same round, so
/// load that comes and goes between rounds cancels out.
fn interleaved(rt: &tokio::runtime::Runtime, variants: &[Variant], url: &str) {
    let rounds: usize = std::env::var("ALLOCS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(40);
    let n = variants.len();
    let mut sequential: Vec<Vec<Duration>> = vec![Vec::new(); n];
    let mut concurrent: Vec<Vec<Duration>> = vec![Vec::new(); n];
    let started = Instant::now();
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let variant = &variants[i];
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..SEQUENTIAL {
                    std::hint::black_box(variant.get(url).await);
                }
                sequential[i].push(start.elapsed() / SEQUENTIAL);
                let start = Instant::now();
                for _ in 0..BATCHES {
                    std::hint::black_box(join_all((0..64).map(|_| variant.get(url))).await);
                }
                concurrent[i].push(start.elapsed() / (BATCHES * 64));
            });
        }
    }
    print_interleaved(variants, &sequential, &concurrent, rounds, started);
}

/// The table of [`interleaved`]: medians per GET, and ratios to the floor
/// paired within a round.
fn print_interleaved(
    variants: &[Variant],
    sequential: &[Vec<Duration>],
    concurrent: &[Vec<Duration>],
    rounds: usize,
    started: Instant,
) {
    let index = |id: &str| variants.iter().position(|v| v.id() == id).expect("variant");
    let (trivial, trivial04) = (index("trivial"), index("trivial04"));
    let paired = |samples: &[Vec<Duration>], i: usize, base: usize| {
        let mut ratios: Vec<f64> = samples[i]
            .iter()
            .zip(&samples[base])
            .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    };
    println!();
    println!(
        "interleaved timing: {rounds} rounds of ({SEQUENTIAL} sequential GETs, then {BATCHES}×64 concurrent) per variant; medians over rounds, ratios paired within a round ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("| client | sequential, per GET | / trivial | 64 in flight, per GET | / trivial |");
    println!("|---|---|---|---|---|");
    for (i, variant) in variants.iter().enumerate() {
        let base = match variant {
            Variant::Bare(_)
            | Variant::Trivial(_)
            | Variant::Copying(..)
            | Variant::Ours(_)
            | Variant::OursNoReplay(_)
            | Variant::Naive(_) => trivial,
            _ => trivial04,
        };
        println!(
            "| {} | {:.2} µs | {:.3} | {:.2} µs | {:.3} |",
            variant.name(),
            median(&mut sequential[i].clone()).as_secs_f64() * 1e6,
            paired(sequential, i, base),
            median(&mut concurrent[i].clone()).as_secs_f64() * 1e6,
            paired(concurrent, i, base),
        );
    }
}

/// Only `n` calls of one variant, for callgrind.
fn callgrind_mode(
    rt: &tokio::runtime::Runtime,
    variants: &[Variant],
    manager: &TokenManager,
    url: &str,
    id: &str,
    n: u64,
) {
    if id == "access_token" {
        for _ in 0..100 {
            ready!(manager.access_token()).expect("token");
        }
        for _ in 0..n {
            std::hint::black_box(ready!(manager.access_token()).expect("token"));
        }
        return;
    }
    let variant = variants
        .iter()
        .find(|v| v.id() == id)
        .unwrap_or_else(|| panic!("no variant {id}"));
    rt.block_on(async {
        for _ in 0..100 {
            variant.get(url).await;
        }
        for _ in 0..n {
            std::hint::black_box(variant.get(url).await);
        }
    });
}
