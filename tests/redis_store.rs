//! RedisStore across hosts: eight clients on separate connections refresh
//! once per expiry, a lock that expires mid-refresh cannot overwrite a newer
//! set, Redis restarting mid-run loses nothing, a waiter that gives up
//! leaves the lock queue, and what one fleet-wide refresh costs Redis with
//! 8 and 64 managers (printed, and bounded so that a polling storm fails).
//!
//! The tests use `REDIS_URL` when it is set; otherwise they start
//! `redis-server` on a free loopback port (the restart and command-count
//! tests always start their own). Without either they are reported as ignored, with the reason;
//! under CI (`CI=true` or `CI=1`) a missing Redis fails them.

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::auth_server::AuthServer;
use common::service::{Trials, current_thread, multi_thread};
use futures_util::future::join_all;
use redis_server::{Server, TempDir, free_port, redis_server_missing};
use reqwest_oauth2_refresh::{
    LockedSave, OAuth2Middleware, RedisStore, TokenManager, TokenSet, TokenStore,
};

fn main() -> ExitCode {
    let mut trials = Trials::from_args("redis_store");
    let own = redis_server_missing();
    let any = match std::env::var("REDIS_URL") {
        Ok(_) => None,
        Err(_) => own
            .as_ref()
            .map(|reason| format!("{reason}, and REDIS_URL is not set")),
    };
    let own = own.map(|reason| format!("{reason} (this test restarts a Redis of its own)"));
    trials.add(
        "clients_on_separate_connections_refresh_once_per_expiry",
        any.as_deref(),
        || multi_thread(2).block_on(clients_on_separate_connections_refresh_once_per_expiry()),
    );
    trials.add(
        "lock_that_expired_cannot_overwrite_a_newer_set",
        any.as_deref(),
        || current_thread().block_on(lock_that_expired_cannot_overwrite_a_newer_set()),
    );
    trials.add(
        "a_planted_hash_with_a_huge_issued_at_is_a_typed_error",
        any.as_deref(),
        || current_thread().block_on(a_planted_hash_with_a_huge_issued_at_is_a_typed_error()),
    );
    trials.add(
        "redis_restarting_mid_run_loses_nothing",
        own.as_deref(),
        || multi_thread(2).block_on(redis_restarting_mid_run_loses_nothing()),
    );
    trials.add(
        "a_waiter_that_gives_up_leaves_the_queue_and_the_next_is_handed_the_lock",
        any.as_deref(),
        || multi_thread(2).block_on(a_waiter_that_gives_up_leaves_the_queue()),
    );
    for managers in [8, 64] {
        trials.add(
            format!("commands_per_fleet_wide_refresh_with_{managers}_managers"),
            own.as_deref(),
            move || multi_thread(2).block_on(commands_per_fleet_wide_refresh(managers)),
        );
    }
    trials.run()
}

const CLIENTS: usize = 8;
const REQUESTS_PER_ROUND: usize = 25;
const EXPIRIES: u64 = 3;

/// A Redis to test against, and the server process if we started it.
struct Redis {
    url: String,
    port: Option<u16>,
    // Declared before the directory: the server stops before it goes.
    server: Option<Server>,
    dir: Option<TempDir>,
}

impl Redis {
    /// The Redis at `REDIS_URL`, or one started for this test.
    async fn start(name: &str) -> Self {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Self {
                url,
                port: None,
                server: None,
                dir: None,
            };
        }
        Self::start_own(name).await
    }

    /// A redis-server of the test's own, even when `REDIS_URL` is set: for
    /// a test that must restart it.
    async fn start_own(name: &str) -> Self {
        let port = free_port();
        let mut redis = Self {
            url: format!("redis://127.0.0.1:{port}/"),
            port: Some(port),
            server: None,
            dir: Some(TempDir::new(name)),
        };
        redis.spawn().await;
        redis
    }

    /// Starts redis-server with an append-only file, so that a restart keeps
    /// the data.
    async fn spawn(&mut self) {
        let (Some(port), Some(dir)) = (self.port, &self.dir) else {
            panic!("this Redis was not started by the test");
        };
        let args = ["--appendonly", "yes", "--appendfsync", "always"];
        let args = [&args[..], &["--save", ""]].concat();
        self.server = Some(Server::start(port, dir.path(), &args).await);
    }

    async fn restart(&mut self) {
        // SIGKILL: the append-only file was synced on every write.
        self.server.take().expect("a Redis we started").kill();
        self.spawn().await;
    }
}

/// A key no other test run uses.
fn unique_key(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "oauth2-refresh-test:{name}:{}:{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

async fn seeded_store(redis: &Redis, key: &str) -> RedisStore {
    let store = RedisStore::connect(&redis.url, key).await.unwrap();
    store
        .save(&TokenSet::new("at-0").with_refresh_token("rt-0"))
        .await
        .unwrap();
    store
}

async fn client_for(
    redis: &Redis,
    key: &str,
    auth: &AuthServer,
    http: &reqwest::Client,
) -> reqwest_middleware::ClientWithMiddleware {
    // Each client has its own store, hence its own connection. They share
    // one HTTP client: building one loads the TLS roots (with
    // `--all-features`), a quarter of a second on a busy machine.
    let manager = TokenManager::builder(&auth.token_url())
        .client_id("fleet")
        .retry_base_delay(Duration::from_millis(1))
        .http_client(http.clone())
        .store(RedisStore::connect(&redis.url, key).await.unwrap())
        .build()
        .unwrap();
    reqwest_middleware::ClientBuilder::new(http.clone())
        .with(
            OAuth2Middleware::builder(manager)
                .allow_origin(&auth.server.uri())
                .build()
                .unwrap(),
        )
        .build()
}

/// One round: every client sends its requests at once. Returns how many
/// succeeded.
async fn round(clients: &[reqwest_middleware::ClientWithMiddleware], url: &str) -> usize {
    let sends = clients
        .iter()
        .flat_map(|c| (0..REQUESTS_PER_ROUND).map(move |_| c.get(url).send()));
    join_all(sends)
        .await
        .into_iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == 200))
        .count()
}

async fn clients_on_separate_connections_refresh_once_per_expiry() {
    let redis = Redis::start("fleet").await;
    let auth = AuthServer::start().await;
    let key = unique_key("fleet");
    seeded_store(&redis, &key).await;
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(client_for(&redis, &key, &auth, &http).await);
    }
    for expiry in 1..=EXPIRIES {
        auth.expire_access_token();
        let ok = round(&clients, &auth.api_url()).await;
        assert_eq!(ok, CLIENTS * REQUESTS_PER_ROUND, "expiry {expiry}");
        assert_eq!(
            auth.snapshot(),
            (expiry, 0, false),
            "one refresh per expiry, no reuse"
        );
    }
}

/// A hash someone planted (or a bug wrote): its parse error reaches the
/// caller as a store failure; before, the overflow of `UNIX_EPOCH +
/// issued_at` panicked on the caller's task.
async fn a_planted_hash_with_a_huge_issued_at_is_a_typed_error() {
    let redis = Redis::start("planted").await;
    let key = unique_key("planted");
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let planted = format!(r#"{{"access_token":"a","issued_at":{}}}"#, u64::MAX);
    let _: i64 = redis::cmd("HSET")
        .arg(&key)
        .arg("version")
        .arg(1)
        .arg("tokens")
        .arg(planted)
        .query_async(&mut connection)
        .await
        .unwrap();
    let manager = TokenManager::builder("https://as.invalid/token")
        .store(RedisStore::connect(&redis.url, &key).await.unwrap())
        .build()
        .unwrap();
    let err = manager.load_tokens().await.unwrap_err();
    assert!(
        matches!(
            err,
            reqwest_oauth2_refresh::Error::Store {
                operation: "load",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("panicked"), "{err}");
    assert!(
        !err.is_transient(),
        "corrupt data does not fix itself: {err}"
    );
}

async fn lock_that_expired_cannot_overwrite_a_newer_set() {
    let redis = Redis::start("fence").await;
    let key = unique_key("fence");
    let store = seeded_store(&redis, &key)
        .await
        .with_lock_ttl(Duration::from_millis(100));
    // Another host: a store of its own (one process's tasks would wait for
    // each other in the process).
    let other = RedisStore::connect(&redis.url, &key)
        .await
        .unwrap()
        .with_lock_ttl(Duration::from_millis(100));
    let mut stale = store.lock(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(
        stale
            .load()
            .await
            .unwrap()
            .unwrap()
            .refresh_token()
            .unwrap()
            .secret(),
        "rt-0"
    );
    // The slow holder's lock expires; another holder takes it, refreshes and
    // saves. (The lock wait is bounded and polls until the key expires.)
    let mut fresh = other.lock(Duration::from_secs(5)).await.unwrap().unwrap();
    fresh.load().await.unwrap();
    let newer = TokenSet::new("at-fresh").with_refresh_token("rt-fresh");
    assert_eq!(fresh.save(&newer).await.unwrap(), LockedSave::Saved);

    // The slow holder comes back: its save is fenced off.
    let older = TokenSet::new("at-stale").with_refresh_token("rt-stale");
    assert_eq!(stale.save(&older).await.unwrap(), LockedSave::Superseded);
    // Nor can it release the lock it no longer owns.
    stale.release().await.unwrap();
    let err = store.lock(Duration::from_millis(20)).await.unwrap_err();
    assert!(err.to_string().contains("longer than"), "{err}");
    fresh.release().await.unwrap();

    let stored = store.load().await.unwrap().unwrap();
    assert_eq!(stored.access_token().secret(), "at-fresh");
}

async fn redis_restarting_mid_run_loses_nothing() {
    let mut redis = Redis::start_own("restart").await;
    let auth = AuthServer::start().await;
    let key = unique_key("restart");
    seeded_store(&redis, &key).await;
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(client_for(&redis, &key, &auth, &http).await);
    }
    auth.expire_access_token();
    assert_eq!(
        round(&clients, &auth.api_url()).await,
        CLIENTS * REQUESTS_PER_ROUND
    );

    redis.restart().await;
    auth.expire_access_token();
    // While the connections come back, requests fail with a store error;
    // within a bounded number of rounds every client is back. No pause
    // between rounds: the first request on a dead connection fails and
    // starts its reconnect, and the requests after it wait for that.
    let mut succeeded = 0;
    for _ in 0..50 {
        succeeded = round(&clients, &auth.api_url()).await;
        if succeeded == CLIENTS * REQUESTS_PER_ROUND {
            break;
        }
    }
    assert_eq!(succeeded, CLIENTS * REQUESTS_PER_ROUND);
    assert_eq!(
        auth.snapshot(),
        (2, 0, false),
        "one refresh per expiry, no reuse"
    );
    let store = RedisStore::connect(&redis.url, &key).await.unwrap();
    let stored = store.load().await.unwrap().unwrap();
    assert_eq!(stored.refresh_token().unwrap().secret(), "rt-2");
}

/// Requests per manager to Redis for one fleet-wide refresh, at most:
/// lock, the wake-up and its claim, re-read, release (and the one
/// refresh's save). Polling the lock while 63 peers take it in turn was
/// about 28 per manager (1835 for 64 managers).
const REQUESTS_PER_MANAGER: u64 = 6;
/// Commands Redis executes per manager, the scripts' own calls included.
const COMMANDS_PER_MANAGER: u64 = 20;

/// What one fleet-wide refresh costs Redis: `managers` managers, each on a
/// connection of its own, send one request each after the access token
/// expired. The figures go to stderr (the README's table); the bound fails
/// for a polling storm.
async fn commands_per_fleet_wide_refresh(managers: usize) {
    let redis = Redis::start_own("commands").await;
    let auth = AuthServer::start().await;
    let key = unique_key("commands");
    seeded_store(&redis, &key).await;
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for _ in 0..managers {
        clients.push(client_for(&redis, &key, &auth, &http).await);
    }
    // Warm up: every manager has loaded, and Redis has the scripts.
    auth.expire_access_token();
    assert_eq!(one_each(&clients, &auth.api_url()).await, managers);

    let mut admin = redis_server::connect(&redis.url).await;
    redis_server::reset_stats(&mut admin).await;
    auth.expire_access_token();
    let started = std::time::Instant::now();
    assert_eq!(one_each(&clients, &auth.api_url()).await, managers);
    let elapsed = started.elapsed();
    let total = redis_server::commands_processed(&mut admin).await;
    let stats = redis_server::command_stats(&mut admin).await;
    assert_eq!(auth.snapshot(), (2, 0, false), "one refresh per expiry");
    // What clients send; scripts never call these themselves.
    let requests: u64 = stats
        .iter()
        .filter(|(name, _)| {
            ["evalsha", "eval", "blpop", "hmget", "wait"].contains(&name.as_str())
                || name.starts_with("script")
        })
        .map(|(_, calls)| calls)
        .sum();
    let n = managers as u64;
    eprintln!(
        "{managers} managers, one fleet-wide refresh in {elapsed:?}: {requests} requests to Redis \
         ({:.1} per manager), {total} commands executed with the scripts' own calls ({:.1} per \
         manager); by command: {stats:?}",
        requests as f64 / n as f64,
        total as f64 / n as f64,
    );
    assert!(
        requests <= REQUESTS_PER_MANAGER * n,
        "{requests} requests for {managers} managers: a polling storm"
    );
    assert!(
        total <= COMMANDS_PER_MANAGER * n + 4,
        "{total} commands for {managers} managers: a polling storm"
    );
}

/// One request from every client at once: how many succeeded.
async fn one_each(clients: &[reqwest_middleware::ClientWithMiddleware], url: &str) -> usize {
    join_all(clients.iter().map(|c| c.get(url).send()))
        .await
        .into_iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == 200))
        .count()
}

async fn queue_length(redis: &Redis, store: &RedisStore) -> usize {
    let mut connection = redis_server::connect(&redis.url).await;
    redis::cmd("LLEN")
        .arg(format!("{}:lock:queue", store.key()))
        .query_async(&mut connection)
        .await
        .unwrap()
}

/// A waiter whose wait runs out leaves the queue (it cannot be handed a
/// lock nobody releases); the next waiter is handed the lock on release,
/// without waiting for its fallback look at the lock (half a second at
/// the least).
async fn a_waiter_that_gives_up_leaves_the_queue() {
    let redis = Redis::start("queue").await;
    let key = unique_key("queue");
    let store = seeded_store(&redis, &key).await;
    let holder = store.lock(Duration::from_secs(5)).await.unwrap().unwrap();
    // A waiter on another host queues, gives up, and leaves.
    let quitter = RedisStore::connect(&redis.url, &key).await.unwrap();
    let err = quitter.lock(Duration::from_millis(250)).await.unwrap_err();
    assert!(err.to_string().contains("longer than"), "{err}");
    assert_eq!(queue_length(&redis, &store).await, 0, "the waiter left");
    // A task of the holder's own process waits in the process.
    let err = store
        .clone()
        .lock(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("longer than"), "{err}");

    // Another host (a task of this process would wait in the process).
    let other = RedisStore::connect(&redis.url, &key).await.unwrap();
    let waiter = {
        let store = other;
        tokio::spawn(async move {
            let lock = store.lock(Duration::from_secs(10)).await;
            (lock, std::time::Instant::now())
        })
    };
    redis_server::poll_until("the waiter queued", Duration::from_secs(5), || async {
        queue_length(&redis, &store).await == 1
    })
    .await;
    let released = std::time::Instant::now();
    holder.release().await.unwrap();
    let (lock, acquired) = waiter.await.unwrap();
    let lock = lock.unwrap().unwrap();
    assert!(
        acquired - released < Duration::from_millis(300),
        "handed over, not found by the fallback: {:?}",
        acquired - released
    );
    assert_eq!(queue_length(&redis, &store).await, 0);
    lock.release().await.unwrap();
    store.lock(Duration::from_millis(1)).await.unwrap().unwrap();
}
