//! RedisStore across hosts: eight clients on separate connections refresh
//! once per expiry, a lock that expires mid-refresh cannot overwrite a newer
//! set, and Redis restarting mid-run loses nothing.
//!
//! The tests use `REDIS_URL` when it is set; otherwise they start
//! `redis-server` on a free loopback port. Without either they skip, except
//! under `CI=true`, where a missing Redis fails them.
#![cfg(feature = "redis")]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::auth_server::AuthServer;
use futures_util::future::join_all;
use reqwest_oauth2_refresh::{
    LockedSave, OAuth2Middleware, RedisStore, TokenManager, TokenSet, TokenStore,
};

const CLIENTS: usize = 8;
const REQUESTS_PER_ROUND: usize = 25;
const EXPIRIES: u64 = 3;

/// A Redis to test against, and the server process if we started it.
struct Redis {
    url: String,
    port: Option<u16>,
    dir: Option<PathBuf>,
    child: Option<Child>,
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Redis {
    /// `None` (after saying why) when there is no Redis and we are not in CI.
    fn start(name: &str) -> Option<Self> {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Some(Self {
                url,
                port: None,
                dir: None,
                child: None,
            });
        }
        Self::start_own(name)
    }

    /// A redis-server of the test's own, even when `REDIS_URL` is set: for
    /// a test that must restart it.
    fn start_own(name: &str) -> Option<Self> {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("oauth2-redis-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self {
            url: format!("redis://127.0.0.1:{port}/"),
            port: Some(port),
            dir: Some(dir),
            child: None,
        };
        match redis.spawn() {
            Ok(()) => Some(redis),
            Err(reason) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI needs Redis: {reason}"
                );
                eprintln!("skipping: {reason} (set REDIS_URL or install redis-server)");
                None
            }
        }
    }

    /// Starts redis-server with an append-only file, so that a restart keeps
    /// the data, and waits (bounded) until it answers.
    fn spawn(&mut self) -> Result<(), String> {
        let (Some(port), Some(dir)) = (self.port, &self.dir) else {
            return Err("this Redis was not started by the test".into());
        };
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", dir.to_str().unwrap()])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err("redis-server did not accept connections within 5 s".into())
    }

    fn restart(&mut self) {
        let mut child = self.child.take().expect("a Redis we started");
        // SIGKILL: the append-only file was synced on every write.
        child.kill().unwrap();
        child.wait().unwrap();
        self.spawn().unwrap();
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
) -> reqwest_middleware::ClientWithMiddleware {
    // Each client has its own store, hence its own connection.
    let manager = TokenManager::builder(&auth.token_url())
        .client_id("fleet")
        .retry_base_delay(Duration::from_millis(1))
        .store(RedisStore::connect(&redis.url, key).await.unwrap())
        .build()
        .unwrap();
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_separate_connections_refresh_once_per_expiry() {
    let Some(redis) = Redis::start("fleet") else {
        return;
    };
    let auth = AuthServer::start().await;
    let key = unique_key("fleet");
    seeded_store(&redis, &key).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(client_for(&redis, &key, &auth).await);
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

#[tokio::test]
async fn lock_that_expired_cannot_overwrite_a_newer_set() {
    let Some(redis) = Redis::start("fence") else {
        return;
    };
    let key = unique_key("fence");
    let store = seeded_store(&redis, &key)
        .await
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
    let mut fresh = store.lock(Duration::from_secs(5)).await.unwrap().unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarting_mid_run_loses_nothing() {
    let Some(mut redis) = Redis::start_own("restart") else {
        return;
    };
    let auth = AuthServer::start().await;
    let key = unique_key("restart");
    seeded_store(&redis, &key).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(client_for(&redis, &key, &auth).await);
    }
    auth.expire_access_token();
    assert_eq!(
        round(&clients, &auth.api_url()).await,
        CLIENTS * REQUESTS_PER_ROUND
    );

    redis.restart();
    auth.expire_access_token();
    // While the connections come back, requests fail with a store error;
    // within a bounded number of rounds every client is back.
    let mut succeeded = 0;
    for _ in 0..50 {
        succeeded = round(&clients, &auth.api_url()).await;
        if succeeded == CLIENTS * REQUESTS_PER_ROUND {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
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
