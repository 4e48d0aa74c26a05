//! The soak: the server, the first tokens, the two phases (the token file,
//! then Redis, one token family through both), their figures and the
//! invariants.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest_oauth2_refresh::{RedisStore, TokenManager, TokenStore};

use crate::driver::{Actions, Driver, Read, Reads, StoreView, watch_store};
use crate::faults::{FaultLog, Rng, unix_ms};
use crate::fixture::{BASIC, BASIC_SECRET, Interop};
use crate::fleet::{Fleet, Tally};
use crate::harness::Notes;
use crate::proxy::{RedisProxy, Shares, TokenProxy};
use crate::redis::Redis;
use crate::stats::Stats;
use crate::worker::{LOCK_TTL, REFRESH_TIMEOUT};

const WORKERS: usize = 8;
const ACCESS_TOKEN_SECS: u64 = 2;
/// ~22% of the token calls meet a fault; a refresh fails only if all three
/// of its tries do.
const TOKEN_FAULTS: Shares = Shares {
    drop: 40,
    reset: 40,
    unavailable: 60,
    delay: 80,
};
const REDIS_FAULTS: Shares = Shares {
    drop: 50,
    reset: 50,
    unavailable: 0,
    delay: 100,
};

/// What one phase came to.
struct Report {
    name: &'static str,
    elapsed: Duration,
    tally: Tally,
    actions: Actions,
    reads: Reads,
    faults: FaultLog,
    restarts: u64,
    forwarded: usize,
    quarantine_hits: HashMap<String, u64>,
    before: Stats,
    after: Stats,
    bad_exits: Vec<String>,
    /// How long a fault's effect may outlast it (a killed holder's lock).
    settle: Duration,
}

fn var(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a whole number")),
        Err(_) => default,
    }
}

pub async fn soak() {
    let seed = var("CHAOS_SEED", unix_ms() ^ u64::from(std::process::id()));
    let length = Duration::from_secs(var("CHAOS_SECS", 20));
    println!(
        "chaos: seed {seed} (CHAOS_SEED={seed} replays the driver's choices), {length:?} per phase"
    );
    let interop = Interop::start(Notes::default()).await;
    let login = interop.login("chaos", ACCESS_TOKEN_SECS);
    let first = interop.first_tokens(BASIC, &login).await;
    let dir = TempDir::new();

    let file = StoreView::File(dir.0.join("tokens.json"));
    let mut tokens = first.tokens();
    if let Some(secs) = first.expires_in {
        tokens = tokens.with_expires_in(Duration::from_secs(secs));
    }
    file.save(&tokens).await.expect("seed the token file");
    let mut rng = Rng::new(seed);
    let store_env = (
        "CHAOS_STORE".to_owned(),
        format!("file:{}", dir.0.join("tokens.json").display()),
    );
    let files = run_phase(
        &interop,
        &login,
        "file",
        file.clone(),
        vec![store_env],
        None,
        FaultLog::default(),
        rng.next_u64(),
        length,
        &dir.0,
    )
    .await;
    print_reports(&[&files]);

    let mut redis = Redis::start(dir.0.join("redis")).await;
    let key = format!("chaos:{}", std::process::id());
    let direct = RedisStore::connect(&redis.url(), &key)
        .await
        .expect("Redis");
    let Read::Tokens(handed) = file.read().await else {
        panic!("the token file holds no set at the end of the first phase");
    };
    direct.save(&handed).await.expect("seed the Redis key");
    let faults = FaultLog::default();
    let redis_proxy =
        RedisProxy::start(redis.addr, REDIS_FAULTS, rng.next_u64(), faults.clone()).await;
    let env = vec![
        (
            "CHAOS_STORE".to_owned(),
            format!("redis:{}", redis_proxy.url()),
        ),
        ("CHAOS_REDIS_KEY".to_owned(), key.clone()),
    ];
    let view = StoreView::Redis(direct.clone());
    let redises = run_phase(
        &interop,
        &login,
        "redis",
        view,
        env,
        Some((&mut redis, redis_proxy)),
        faults,
        rng.next_u64(),
        length,
        &dir.0,
    )
    .await;

    let family = family_alive(&interop, direct).await;
    println!();
    print_reports(&[&files, &redises]);
    println!("chaos: the token family at the end: {family}");
    let mut broken = violations(&files);
    broken.extend(violations(&redises));
    if !family.starts_with("alive") {
        broken.push(format!("the token family is {family}"));
    }
    if !broken.is_empty() {
        dir.keep();
        panic!(
            "chaos: {} invariants broken:\n  {}",
            broken.len(),
            broken.join("\n  ")
        );
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_phase(
    interop: &Interop,
    login: &str,
    name: &'static str,
    view: StoreView,
    mut env: Vec<(String, String)>,
    redis: Option<(&mut Redis, RedisProxy)>,
    faults: FaultLog,
    seed: u64,
    length: Duration,
    logs: &Path,
) -> Report {
    let before = interop.stats(login).await;
    let proxy = TokenProxy::start(
        &interop.token_endpoint,
        TOKEN_FAULTS,
        seed ^ 1,
        faults.clone(),
    )
    .await;
    env.extend([
        ("CHAOS_TOKEN_URL".to_owned(), proxy.url()),
        ("CHAOS_API_URL".to_owned(), interop.api()),
        ("CHAOS_CLIENT_ID".to_owned(), BASIC.id.to_owned()),
        ("CHAOS_CLIENT_SECRET".to_owned(), BASIC_SECRET.to_owned()),
    ]);
    let logs = logs.join(name);
    std::fs::create_dir_all(&logs).expect("a log directory");
    let reads = Arc::new(Mutex::new(Reads::default()));
    let every = Duration::from_millis(if name == "file" { 2 } else { 20 });
    let (stop_watch, watcher) = watch_store(view.clone(), every, reads.clone());
    let settle = if redis.is_some() {
        LOCK_TTL + REFRESH_TIMEOUT
    } else {
        REFRESH_TIMEOUT
    };
    let redis_proxy = redis.as_ref().map(|(_, proxy)| proxy.clone());
    let mut driver = Driver {
        view,
        proxy: proxy.clone(),
        redis,
        fleet: Fleet::start(WORKERS, env, &logs),
        rng: Rng::new(seed),
        faults: faults.clone(),
        actions: Actions::default(),
        reads: reads.clone(),
    };
    let started = Instant::now();
    driver.run(length).await;
    // The last requests go out without faults, so that each worker ends
    // with what the library gives when the storm is over.
    proxy.set_faults(false);
    if let Some(redis_proxy) = &redis_proxy {
        redis_proxy.set_faults(false);
    }
    let bad_exits = driver.fleet.stop().await;
    let elapsed = started.elapsed();
    let _ = stop_watch.send(true);
    let _ = watcher.await;
    let after = interop.stats(login).await;
    let restarts = driver.fleet.starts - WORKERS as u64 + driver.actions.redis_restarts;
    let tally = std::mem::take(&mut *driver.fleet.tally.lock().unwrap());
    let reads = reads.lock().unwrap().clone();
    Report {
        name,
        elapsed,
        tally,
        actions: driver.actions,
        reads,
        faults,
        restarts,
        forwarded: proxy.forwarded(),
        quarantine_hits: proxy.quarantine_hits(),
        before,
        after,
        bad_exits,
        settle,
    }
}

/// One more refresh of the stored set, straight at the server, and a call
/// of the API with its access token.
async fn family_alive(interop: &Interop, store: RedisStore) -> String {
    let manager = TokenManager::builder(&interop.token_endpoint)
        .client_id(BASIC.id)
        .client_secret(BASIC_SECRET)
        .client_auth(BASIC.auth)
        .store(store)
        .build()
        .expect("the manager builds");
    match manager.refresh().await {
        Ok(tokens) => match interop.raw_me(tokens.access_token().secret()).await {
            StatusCode::OK => "alive (one more refresh, and the API accepted its token)".to_owned(),
            status => format!("dead: the API answered {status} to the new token"),
        },
        Err(e) => format!("dead: one more refresh failed: {e}"),
    }
}

fn invalid_grants(report: &Report) -> u64 {
    let count = |s: &Stats| {
        s.refresh_errors
            .get("invalid_grant")
            .copied()
            .unwrap_or_default()
    };
    count(&report.after) - count(&report.before)
}

fn refreshes(report: &Report) -> u64 {
    report.after.refresh_calls - report.before.refresh_calls
}

/// Refresh points: a 2-second token is refreshed half-way through its life.
fn expiries(report: &Report) -> u64 {
    report.elapsed.as_millis() as u64 / (ACCESS_TOKEN_SECS * 500) + 1
}

fn violations(report: &Report) -> Vec<String> {
    let name = report.name;
    let mut broken = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            broken.push(format!("{name}: {what}"));
        }
    };
    check(
        report.tally.requests > 0 && report.tally.ok > 0,
        "the fleet's requests succeeded at all".to_owned(),
    );
    let grants = invalid_grants(report);
    check(
        grants == 0,
        format!(
            "the server saw {grants} spent refresh tokens (invalid_grant): {:?}",
            report.after.refresh_error_descriptions
        ),
    );
    let excused = &report.actions.lost_after;
    let unexcused: u64 = report
        .quarantine_hits
        .iter()
        .filter(|(rt, _)| !excused.contains(*rt))
        .map(|(_, hits)| hits)
        .sum();
    check(
        unexcused == 0,
        format!(
            "{unexcused} presentations of a refresh token already spent (whose successor was saved), stopped by the proxy"
        ),
    );
    check(
        report.reads.torn.is_empty(),
        format!("torn store reads: {:?}", report.reads.torn),
    );
    check(
        report.reads.missing == 0,
        format!("{} reads found no token set", report.reads.missing),
    );
    check(
        report.tally.other.is_empty(),
        format!(
            "requests that failed without a typed transient error: {:?}",
            report.tally.other
        ),
    );
    let settle = report.settle.as_millis() as u64;
    let unexplained: Vec<_> = report
        .tally
        .failures
        .iter()
        .filter(|(sent, ended, _)| !report.faults.any_during(*sent, *ended, settle))
        .collect();
    check(
        unexplained.is_empty(),
        format!(
            "failures with no fault injected during them or {settle} ms before: {unexplained:?}"
        ),
    );
    let bound = expiries(report) + report.restarts + report.faults.total();
    check(
        refreshes(report) <= bound,
        format!(
            "{} refreshes > {bound} (expiries + restarts + injected faults)",
            refreshes(report)
        ),
    );
    check(
        report.actions.kills() > 0,
        "the driver killed workers".to_owned(),
    );
    check(
        report.actions.kills_mid_refresh_dropped + report.actions.kills_mid_refresh_forwarded > 0,
        "a kill landed mid-refresh".to_owned(),
    );
    check(
        report.actions.kills_mid_save > 0,
        "a kill landed mid-save".to_owned(),
    );
    check(
        report.actions.anomalies.is_empty(),
        format!("{:?}", report.actions.anomalies),
    );
    check(
        report.bad_exits.is_empty(),
        format!("workers that did not stop well: {:?}", report.bad_exits),
    );
    check(
        report.tally.partial_lines <= report.actions.kills(),
        format!("{} partial report lines", report.tally.partial_lines),
    );
    broken
}

fn print_reports(reports: &[&Report]) {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: &str, value: &dyn Fn(&Report) -> String| {
        rows.push((label.to_owned(), reports.iter().map(|r| value(r)).collect()));
    };
    row("phase", &|r| r.name.to_owned());
    row("seconds", &|r| format!("{:.1}", r.elapsed.as_secs_f64()));
    row("kills: at random", &|r| r.actions.kills_random.to_string());
    row("kills: mid-refresh (call dropped)", &|r| {
        r.actions.kills_mid_refresh_dropped.to_string()
    });
    row("kills: mid-refresh (call forwarded)", &|r| {
        r.actions.kills_mid_refresh_forwarded.to_string()
    });
    row("kills: mid-save", &|r| r.actions.kills_mid_save.to_string());
    row("rotations lost to a kill (re-seeded)", &|r| {
        r.actions.lost_rotations.to_string()
    });
    row("restarts (workers + Redis)", &|r| r.restarts.to_string());
    row("Redis restarts / connection cuts", &|r| {
        format!("{} / {}", r.actions.redis_restarts, r.actions.redis_cuts)
    });
    row("faults injected (all kinds)", &|r| {
        r.faults.total().to_string()
    });
    row("requests", &|r| r.tally.requests.to_string());
    row("  ok", &|r| r.tally.ok.to_string());
    row("  typed transient errors", &|r| {
        r.tally.transient.values().sum::<u64>().to_string()
    });
    row("  anything else", &|r| {
        r.tally.other.values().sum::<u64>().to_string()
    });
    row("worst request wait (ms)", &|r| {
        r.tally.worst_wait_ms.to_string()
    });
    row("refreshes at the server", &|r| refreshes(r).to_string());
    row("  bound (expiries+restarts+faults)", &|r| {
        format!("{}+{}+{}", expiries(r), r.restarts, r.faults.total())
    });
    row("  calls forwarded by the proxy", &|r| {
        r.forwarded.to_string()
    });
    row("invalid_grant at the server", &|r| {
        invalid_grants(r).to_string()
    });
    row("store reads: parsed / torn / missing", &|r| {
        format!(
            "{} / {} / {}",
            r.reads.parsed,
            r.reads.torn.len(),
            r.reads.missing
        )
    });
    row("store reads: unreachable (Redis down)", &|r| {
        r.reads.unreachable.to_string()
    });
    let width = rows
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or_default();
    for (label, values) in &rows {
        let values: Vec<String> = values.iter().map(|v| format!("{v:>14}")).collect();
        println!("chaos: {label:<width$} {}", values.join(""));
    }
    for report in reports {
        let kinds: BTreeMap<_, _> = report.faults.counts();
        println!("chaos: {} faults: {kinds:?}", report.name);
        println!(
            "chaos: {} transient errors: {:?}",
            report.name, report.tally.transient
        );
    }
}

/// The phase's files (token file, worker logs, Redis's append-only file),
/// removed at the end unless the test failed.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("chaos-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        Self(dir)
    }

    fn keep(&self) {
        eprintln!("chaos: the worker logs are in {}", self.0.display());
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
