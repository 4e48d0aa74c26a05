//! The soak: the server, the first tokens, the two phases (the token file,
//! then Redis, one token family through both), their figures and the
//! invariants.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest_oauth2_refresh::{RedisStore, TokenManager, TokenSet, TokenStore};

use crate::driver::{Actions, Driver, Read, Reads, StoreView, watch_store};
use crate::faults::{FaultLog, Rng, unix_ms};
use crate::fixture::{BASIC, BASIC_SECRET, Interop};
use crate::fleet::Fleet;
use crate::harness::Notes;
use crate::proxy::{RedisProxy, Shares, TokenProxy};
use crate::redis::Redis;
use crate::report::{ACCESS_TOKEN_SECS, Report, print_reports, violations};
use crate::worker::{LOCK_TTL, REFRESH_TIMEOUT};

const WORKERS: usize = 8;
/// 30% of the token calls meet a fault (20% fail); a refresh fails only if
/// all three of its tries do.
const TOKEN_FAULTS: Shares = Shares {
    drop: 50,
    reset: 50,
    unavailable: 100,
    delay: 100,
};
const REDIS_FAULTS: Shares = Shares {
    drop: 50,
    reset: 50,
    unavailable: 0,
    delay: 100,
};

/// How many lines of the workers' logs in `dir` contain `needle`.
fn count_in_logs(dir: &Path, needle: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|log| log.lines().filter(|l| l.contains(needle)).count())
        .sum()
}

/// FileStore's temporary files (`.<name>.<pid>.<n>.tmp`) beside `path`.
fn temp_files_beside(path: &Path) -> usize {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    std::fs::read_dir(path.parent().unwrap_or(Path::new(".")))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with(&prefix) && n.ends_with(".tmp")
                })
                .count()
        })
        .unwrap_or_default()
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
    let run = Run {
        interop: &interop,
        login: &login,
        length,
        dir: &dir.0,
    };
    let mut rng = Rng::new(seed);

    let path = dir.0.join("tokens.json");
    let file = StoreView::File(path.clone());
    let mut tokens = first.tokens();
    if let Some(secs) = first.expires_in {
        tokens = tokens.with_expires_in(Duration::from_secs(secs));
    }
    file.save(&tokens).await.expect("seed the token file");
    let env = vec![("CHAOS_STORE".to_owned(), format!("file:{}", path.display()))];
    let files = run
        .phase(
            "file",
            file.clone(),
            env,
            None,
            FaultLog::default(),
            rng.next_u64(),
        )
        .await;
    print_reports(&[&files]);

    let Read::Tokens(handed) = file.read().await else {
        panic!("the token file holds no set at the end of the first phase");
    };
    let (redises, direct, _redis) = run.redis_phase(&handed, &mut rng).await;
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

/// What every phase shares.
struct Run<'a> {
    interop: &'a Interop,
    login: &'a str,
    length: Duration,
    dir: &'a Path,
}

impl Run<'_> {
    /// The second phase: the family `handed` on from the first, in a Redis
    /// of the test's own behind the Redis proxy. Returns the Redis too: the
    /// family's last check reads it.
    async fn redis_phase(&self, handed: &TokenSet, rng: &mut Rng) -> (Report, RedisStore, Redis) {
        let mut redis = Redis::start(self.dir.join("redis")).await;
        let key = format!("chaos:{}", std::process::id());
        let direct = RedisStore::connect(&redis.url(), &key)
            .await
            .expect("Redis");
        direct.save(handed).await.expect("seed the Redis key");
        let faults = FaultLog::default();
        let proxy =
            RedisProxy::start(redis.addr, REDIS_FAULTS, rng.next_u64(), faults.clone()).await;
        let env = vec![
            ("CHAOS_STORE".to_owned(), format!("redis:{}", proxy.url())),
            ("CHAOS_REDIS_KEY".to_owned(), key),
        ];
        let view = StoreView::Redis(direct.clone());
        let report = self
            .phase(
                "redis",
                view,
                env,
                Some((&mut redis, proxy)),
                faults,
                rng.next_u64(),
            )
            .await;
        (report, direct, redis)
    }

    /// What a worker needs besides its store.
    fn worker_env(&self, proxy: &TokenProxy) -> [(String, String); 4] {
        [
            ("CHAOS_TOKEN_URL".to_owned(), proxy.url()),
            ("CHAOS_API_URL".to_owned(), self.interop.api()),
            ("CHAOS_CLIENT_ID".to_owned(), BASIC.id.to_owned()),
            ("CHAOS_CLIENT_SECRET".to_owned(), BASIC_SECRET.to_owned()),
        ]
    }

    /// One phase: the token proxy, the fleet, the store's watcher, the
    /// driver for the run's length, then the fleet stopped, without faults.
    async fn phase(
        &self,
        name: &'static str,
        view: StoreView,
        mut env: Vec<(String, String)>,
        redis: Option<(&mut Redis, RedisProxy)>,
        faults: FaultLog,
        seed: u64,
    ) -> Report {
        let interop = self.interop;
        let before = interop.stats(self.login).await;
        let proxy = TokenProxy::start(
            &interop.token_endpoint,
            TOKEN_FAULTS,
            seed ^ 1,
            faults.clone(),
        )
        .await;
        env.extend(self.worker_env(&proxy));
        let logs = self.dir.join(name);
        std::fs::create_dir_all(&logs).expect("a log directory");
        let reads = Arc::new(Mutex::new(Reads::default()));
        // The file is cheap to read: often, to catch a torn one.
        let every = Duration::from_millis(if redis.is_some() { 20 } else { 2 });
        let (stop_watch, watcher) = watch_store(view.clone(), every, reads.clone());
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
        driver.run(self.length).await;
        let bad_exits = stop(&mut driver, &proxy, redis_proxy.as_ref()).await;
        let elapsed = started.elapsed();
        let _ = stop_watch.send(true);
        let _ = watcher.await;
        let after = interop.stats(self.login).await;
        let mut report = Report {
            name,
            elapsed,
            tally: std::mem::take(&mut *driver.fleet.tally.lock().unwrap()),
            restarts: driver.fleet.starts - WORKERS as u64 + driver.actions.redis_restarts,
            actions: std::mem::take(&mut driver.actions),
            reads: reads.lock().unwrap().clone(),
            faults,
            forwarded: proxy.forwarded(),
            quarantine_hits: proxy.quarantine_hits(),
            before,
            after,
            bad_exits,
            settle: match redis_proxy {
                Some(_) => LOCK_TTL + REFRESH_TIMEOUT,
                None => REFRESH_TIMEOUT,
            },
            temp_files: 0,
            failed_saves: (0, 0),
        };
        add_from_disk(&mut report, &driver.view, &logs);
        report
    }
}

/// The last requests go out without faults, so that each worker ends with
/// what the library gives when the storm is over; then the fleet stops.
async fn stop(
    driver: &mut Driver<'_>,
    proxy: &TokenProxy,
    redis: Option<&RedisProxy>,
) -> Vec<String> {
    proxy.set_faults(false);
    if let Some(redis) = redis {
        redis.set_faults(false);
    }
    driver.fleet.stop().await
}

/// What the disk says after a phase: the workers' logs, the temporary files
/// that saves cut short left.
fn add_from_disk(report: &mut Report, view: &StoreView, logs: &Path) {
    report.failed_saves = (
        count_in_logs(logs, "trying again before releasing it"),
        count_in_logs(logs, "retrying in the background"),
    );
    if let StoreView::File(path) = view {
        report.temp_files = temp_files_beside(path);
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
