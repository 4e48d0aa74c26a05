//! A chaos soak across processes, against the real server: 8 worker
//! processes share one token family, first through a `FileStore`, then
//! through a `RedisStore`, against oidc-provider (`tests/interop`) with
//! 2-second access tokens, refresh-token rotation on every use and reuse
//! detection (a spent refresh token presented again revokes the family),
//! while a driver:
//! - kills workers with SIGKILL (at random moments; while the token proxy
//!   holds their refresh, then dropped or forwarded; 0-5 ms after the proxy
//!   wrote them a token response, when they parse or save it) and starts
//!   them again;
//! - restarts Redis (append-only file, fsync on every write) and cuts the
//!   workers' Redis connections;
//! - runs two fault proxies of its own on loopback (`proxy.rs`): one in
//!   front of the token endpoint that drops, resets, delays and answers
//!   503 to a share of the calls, one in front of Redis that drops, resets
//!   and delays connections.
//!
//! Asserted at the end of each phase: the server saw no spent refresh token
//! (no `invalid_grant`; the family is alive at the end: one more refresh
//! works and its token is accepted); every read of the store parses (the
//! driver reads it every few milliseconds, and after each kill and
//! restart); every request succeeded or failed with a typed transient
//! error while a fault was being injected; refreshes at the server <=
//! expiries + restarts + injected faults. Figures are printed: kills,
//! restarts, faults, requests, refreshes, the worst wait.
//!
//! A kill between the server's rotation and the save loses the rotation
//! whatever the client does; `driver.rs` detects that case exactly, puts
//! the lost set in the store (standing in for a new sign-in), and counts
//! it.
//!
//! `CHAOS_SECS` (default 20) is the length of each phase, `CHAOS_SEED` the
//! seed of the driver's and the proxies' choices (printed at the start).
//! Needs node (the oidc-provider server, see `tests/interop`) and
//! redis-server: without them the test is reported as ignored with the
//! reason, and fails under CI.

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../interop/fixture.rs"]
mod fixture;
#[allow(dead_code)]
#[path = "../interop/harness.rs"]
mod harness;
#[path = "../common/process.rs"]
mod process;
#[allow(dead_code)]
#[path = "../interop/stats.rs"]
mod stats;

mod driver;
mod faults;
mod fleet;
mod phase;
mod proxy;
mod redis;
#[path = "../common/redis.rs"]
mod redis_server;
mod report;
mod worker;

use std::process::ExitCode;

use common::service::{Trials, multi_thread};

const TEST: &str = "a_fleet_survives_kills_faults_and_redis_restarts";

fn main() -> ExitCode {
    if let Ok(index) = std::env::var(worker::WORKER_ENV) {
        return worker::main(&index);
    }
    let mut trials = Trials::from_args("chaos");
    harness::show_notes(trials.nocapture());
    let runs = trials.would_run(TEST);
    let missing = redis_server::redis_server_missing().or_else(|| harness::missing(runs));
    trials.add(TEST, missing.as_deref(), || {
        multi_thread(2).block_on(phase::soak())
    });
    trials.run()
}
