//! `TokenManager::access_token()` with a valid token: one reader; two reader
//! threads; one and two readers while a forced refresh is in flight (the
//! loopback token endpoint holds its answer back for an hour); and a token
//! without expiry, whose fast path reads no clock. `token_read/parts` times
//! the pieces of the fast path on their own (clock, `ArcSwap` loads, an
//! `Arc` clone), to tell where the nanoseconds go.
//!
//! The future is pinned where it is made and polled once with a no-op waker,
//! as an `.await` would: on the fast path it is ready at once and needs no
//! runtime, so the figure is the call itself.
//!
//! `cargo bench -p reqwest-oauth2-refresh-benches --bench token_read`

use std::sync::Barrier;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use reqwest_oauth2_refresh::TokenManager;

mod common;
use common::{Server, ready};

/// `threads` threads call `access_token()` `iters` times each, starting
/// together; the mean of their elapsed times (time per call per thread).
fn read_in_threads(manager: &TokenManager, threads: usize, iters: u64) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        let token = ready!(manager.access_token()).expect("token");
                        std::hint::black_box(token);
                    }
                    start.elapsed()
                })
            })
            .collect();
        let total: Duration = handles
            .into_iter()
            .map(|h| h.join().expect("reader thread"))
            .sum();
        total / threads as u32
    })
}

fn token_read(c: &mut Criterion) {
    let server = Server::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let manager = TokenManager::builder(&server.url("/token"))
        .client_id("bench")
        .initial_tokens(
            reqwest_oauth2_refresh::TokenSet::new(server.state.valid_token())
                .with_refresh_token("refresh")
                .with_expires_in(common::LIFETIME),
        )
        .http_client(common::bare())
        // The refresh below must stay in flight for the whole measurement.
        .attempt_timeout(Duration::from_secs(3600))
        .refresh_timeout(Duration::from_secs(7200))
        .build()
        .expect("manager");
    // Load the seed (the first call reads the store).
    rt.block_on(manager.access_token()).expect("first token");

    let mut group = c.benchmark_group("token_read");
    group.bench_function(BenchmarkId::new("access_token", "1 thread"), |b| {
        b.iter(|| ready!(manager.access_token()).expect("token"))
    });
    group.bench_function(BenchmarkId::new("access_token", "2 threads"), |b| {
        b.iter_custom(|iters| read_in_threads(&manager, 2, iters))
    });
    // A token without `expires_in`: the fast path reads no clock.
    let no_expiry = TokenManager::builder(&server.url("/token"))
        .client_id("bench")
        .initial_tokens(
            reqwest_oauth2_refresh::TokenSet::new(server.state.valid_token())
                .with_refresh_token("refresh"),
        )
        .http_client(common::bare())
        .build()
        .expect("manager");
    rt.block_on(no_expiry.access_token()).expect("first token");
    group.bench_function(
        BenchmarkId::new("access_token", "1 thread, no expiry (no clock read)"),
        |b| b.iter(|| ready!(no_expiry.access_token()).expect("token")),
    );

    // A forced refresh that the token endpoint answers in an hour.
    server.state.set_token_delay(Duration::from_secs(3600));
    let calls_before = server.state.token_calls.load(Ordering::SeqCst);
    let refreshing = manager.clone();
    let flight = rt.spawn(async move { refreshing.refresh().await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.state.token_calls.load(Ordering::SeqCst) == calls_before {
        assert!(
            Instant::now() < deadline,
            "the refresh never reached /token"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    group.bench_function(
        BenchmarkId::new("access_token", "1 thread, refresh in flight"),
        |b| b.iter(|| ready!(manager.access_token()).expect("token")),
    );
    group.bench_function(
        BenchmarkId::new("access_token", "2 threads, refresh in flight"),
        |b| b.iter_custom(|iters| read_in_threads(&manager, 2, iters)),
    );
    assert!(!flight.is_finished(), "the refresh ended during the bench");
    assert_eq!(
        server.state.token_calls.load(Ordering::SeqCst),
        calls_before + 1,
        "one refresh in flight"
    );
    flight.abort();
    group.finish();
}

/// What the fast path is made of, each on its own, for attribution.
fn components(c: &mut Criterion) {
    use std::sync::Arc;

    let mut group = c.benchmark_group("token_read/parts");
    group.bench_function("SystemTime::now", |b| b.iter(std::time::SystemTime::now));
    let shared: Arc<str> = Arc::from("gen-1");
    group.bench_function("Arc clone+drop", |b| {
        b.iter(|| std::hint::black_box(shared.clone()))
    });
    let swap = arc_swap::ArcSwapOption::from_pointee(42u64);
    group.bench_function("ArcSwapOption::load (guard)", |b| {
        b.iter(|| std::hint::black_box(**swap.load().as_ref().expect("set")))
    });
    group.bench_function("ArcSwapOption::load_full", |b| {
        b.iter(|| std::hint::black_box(swap.load_full()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .nresamples(20_000);
    targets = token_read, components
}
criterion_main!(benches);
