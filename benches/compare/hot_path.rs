//! Hot path: a GET with a valid token against a loopback hyper server,
//! through this crate's middleware, a trivial fixed-header middleware, the
//! bare client, a hand-written "naive" middleware, and the peers
//! (aliri_reqwest, reqwest-auth) with their own floors on reqwest 0.12 /
//! reqwest-middleware 0.4. All variants are in one criterion group per
//! scenario, so their ratios come from the same run.
//!
//! `cargo bench -p reqwest-oauth2-refresh-benches --bench hot_path`

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;

mod common;
use common::Server;

/// Requests in flight at once in the concurrent scenario.
const IN_FLIGHT: usize = 64;

fn hot_path(c: &mut Criterion) {
    let server = Server::start();
    // The client side runs on one thread, the server on another: the
    // machine has two cores.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let variants = rt.block_on(common::hot_variants(&server));
    let url = server.url("/hot");

    // Open the connections (64 per pool) before measuring anything.
    rt.block_on(async {
        for variant in &variants {
            let statuses = join_all((0..IN_FLIGHT).map(|_| variant.get(&url))).await;
            assert!(statuses.iter().all(|&s| s == 200), "{}", variant.name());
        }
    });

    let mut group = c.benchmark_group("hot_path/sequential");
    group.throughput(Throughput::Elements(1));
    for variant in &variants {
        group.bench_function(variant.id(), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        std::hint::black_box(variant.get(&url).await);
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("hot_path/concurrent64");
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    for variant in &variants {
        group.bench_function(variant.id(), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let statuses = join_all((0..IN_FLIGHT).map(|_| variant.get(&url))).await;
                        std::hint::black_box(statuses);
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .nresamples(20_000);
    targets = hot_path
}
criterion_main!(benches);
