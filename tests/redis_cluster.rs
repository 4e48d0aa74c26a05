//! RedisStore as a fleet runs it: eight managers on a 3-master Redis
//! Cluster refresh once per expiry, and a store behind Sentinel keeps
//! working, with nothing lost, after its master dies and after a
//! `SENTINEL FAILOVER`.
//!
//! Every test starts its own `redis-server` processes on free loopback
//! ports (`redis-server --sentinel` for the sentinel; `redis-cli --cluster
//! create` for the cluster). Without them the tests are reported as
//! ignored, with the reason; under CI (`CI=true` or `CI=1`) they fail.

mod common;
#[path = "common/process.rs"]
mod process;
#[path = "common/redis.rs"]
mod redis_server;

use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::auth_server::AuthServer;
use common::service::{Trials, multi_thread};
use futures_util::future::join_all;
use redis_server::{Server, TempDir, connect, free_port, poll_until, redis_server_missing};
use reqwest_oauth2_refresh::{OAuth2Middleware, RedisStore, TokenManager, TokenSet, TokenStore};

fn main() -> ExitCode {
    let mut trials = Trials::from_args("redis_cluster");
    let server = redis_server_missing();
    let cli = server.clone().or_else(redis_cli_missing);
    trials.add(
        "managers_on_a_cluster_refresh_once_per_expiry",
        cli.as_deref(),
        || multi_thread(2).block_on(managers_on_a_cluster_refresh_once_per_expiry()),
    );
    trials.add(
        "the_store_follows_sentinel_when_the_master_dies",
        server.as_deref(),
        || multi_thread(2).block_on(the_store_follows_sentinel(Failover::KillMaster)),
    );
    trials.add(
        "the_store_follows_a_sentinel_failover_command",
        server.as_deref(),
        || multi_thread(2).block_on(the_store_follows_sentinel(Failover::Command)),
    );
    trials.run()
}

fn redis_cli_missing() -> Option<String> {
    match Command::new("redis-cli")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("`redis-cli --version` exited with {}", out.status)),
        Err(e) => Some(format!("cannot run redis-cli: {e}")),
    }
}

const CLIENTS: usize = 8;
const REQUESTS_PER_ROUND: usize = 10;

/// A key no other test run uses.
fn unique_key(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "oauth2-refresh-test:{name}:{}:{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A manager on `store`. The managers share one HTTP client: building one
/// loads the TLS roots (with `--all-features`), slow on a busy machine.
fn client_for(
    store: RedisStore,
    auth: &AuthServer,
    http: &reqwest::Client,
) -> reqwest_middleware::ClientWithMiddleware {
    let manager = TokenManager::builder(&auth.token_url())
        .client_id("fleet")
        .retry_base_delay(Duration::from_millis(1))
        .http_client(http.clone())
        .store(store)
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

/// Every client sends its requests at once: how many succeeded.
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

/// Three cluster masters, no replicas, each in a directory of its own.
struct Cluster {
    nodes: Vec<Server>,
    _dirs: Vec<TempDir>,
}

impl Cluster {
    async fn start() -> Self {
        let (mut nodes, mut dirs) = (Vec::new(), Vec::new());
        for i in 0..3 {
            let dir = TempDir::new(&format!("cluster-{i}"));
            let args = ["--cluster-enabled", "yes", "--cluster-config-file"];
            let args = [
                &args[..],
                &["nodes.conf", "--save", "", "--appendonly", "no"],
            ]
            .concat();
            nodes.push(Server::start(free_port(), dir.path(), &args).await);
            dirs.push(dir);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        create.args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        process::run_bounded(create, Duration::from_secs(20)).expect("redis-cli --cluster create");
        for node in &nodes {
            let connection = connect(&node.url()).await;
            poll_until("cluster_state:ok", Duration::from_secs(10), || {
                let mut connection = connection.clone();
                async move {
                    let info: String = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async(&mut connection)
                        .await
                        .unwrap_or_default();
                    info.contains("cluster_state:ok")
                }
            })
            .await;
        }
        Self { nodes, _dirs: dirs }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Server::url).collect()
    }
}

async fn cluster_store(urls: &[String], key: &str) -> RedisStore {
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    RedisStore::connect_cluster(&urls, key).await.unwrap()
}

async fn managers_on_a_cluster_refresh_once_per_expiry() {
    let cluster = Cluster::start().await;
    let urls = cluster.urls();
    let auth = AuthServer::start().await;
    let key = unique_key("cluster");
    let store = cluster_store(&urls, &key).await;
    // No hash tag given: the store adds one, so that its keys share a slot.
    assert_eq!(store.key(), format!("{{{key}}}"));
    store
        .save(&TokenSet::new("at-0").with_refresh_token("rt-0"))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(client_for(cluster_store(&urls, &key).await, &auth, &http));
    }
    for expiry in 1..=3 {
        auth.expire_access_token();
        let ok = round(&clients, &auth.api_url()).await;
        assert_eq!(ok, CLIENTS * REQUESTS_PER_ROUND, "expiry {expiry}");
        assert_eq!(
            auth.snapshot(),
            (expiry, 0, false),
            "one refresh per expiry"
        );
    }
    let stored = store.load().await.unwrap().unwrap();
    assert_eq!(stored.refresh_token().unwrap().secret(), "rt-3");

    // The token set and its lock are in one slot, and that slot's master
    // holds the set.
    let any = connect(&urls[0]).await;
    let slot = |name: String| {
        let mut any = any.clone();
        async move {
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(name)
                .query_async(&mut any)
                .await
                .unwrap();
            slot
        }
    };
    let data_slot = slot(store.key().to_owned()).await;
    assert_eq!(slot(format!("{}:lock", store.key())).await, data_slot);
    assert_eq!(slot(format!("{}:lock:queue", store.key())).await, data_slot);
}

/// How the test makes Sentinel move the master.
#[derive(Clone, Copy, Debug)]
enum Failover {
    /// SIGKILL the master: Sentinel sees it down and promotes the replica.
    KillMaster,
    /// `SENTINEL FAILOVER`: the master is demoted to a replica.
    Command,
}

/// A master, its replica and one sentinel (quorum 1).
struct SentinelSetup {
    master: Server,
    replica: Server,
    sentinel: Server,
    _dirs: Vec<TempDir>,
}

const SERVICE: &str = "oauth2-test-master";

impl SentinelSetup {
    async fn start() -> Self {
        let dirs: Vec<TempDir> = (0..3)
            .map(|i| TempDir::new(&format!("sentinel-{i}")))
            .collect();
        let plain = ["--save", "", "--appendonly", "no"];
        let master = Server::start(free_port(), dirs[0].path(), &plain).await;
        let master_port = master.port.to_string();
        let replica_of = ["--replicaof", "127.0.0.1", &master_port];
        let args = [&plain[..], &replica_of[..]].concat();
        let replica = Server::start(free_port(), dirs[1].path(), &args).await;
        let conf = dirs[2].path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {SERVICE} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {SERVICE} 1000\n\
                 sentinel failover-timeout {SERVICE} 10000\n"
            ),
        )
        .unwrap();
        let args = [conf.to_str().unwrap(), "--sentinel"];
        let sentinel = Server::start(free_port(), dirs[2].path(), &args).await;
        let setup = Self {
            master,
            replica,
            sentinel,
            _dirs: dirs,
        };
        // The failover needs the sentinel to know the replica, and the
        // replica to be in sync.
        let sentinel = connect(&setup.sentinel.url()).await;
        poll_until(
            "the sentinel knows the replica",
            Duration::from_secs(15),
            || {
                let mut sentinel = sentinel.clone();
                async move {
                    let replicas: Vec<std::collections::HashMap<String, String>> =
                        redis::cmd("SENTINEL")
                            .arg("REPLICAS")
                            .arg(SERVICE)
                            .query_async(&mut sentinel)
                            .await
                            .unwrap_or_default();
                    replicas.iter().any(|r| {
                        r.get("flags").is_some_and(|f| f == "slave")
                            && r.get("master-link-status").is_some_and(|s| s == "ok")
                    })
                }
            },
        )
        .await;
        setup
    }

    /// Whether the failover to the replica is over as Sentinel sees it:
    /// the replica is the master, with no failover in progress (until then
    /// Sentinel names no valid master, and stores fail their operations).
    /// After `SENTINEL FAILOVER`, also the old master says it is a replica:
    /// until it is reconfigured, it still takes writes, which its resync
    /// then drops.
    async fn failover_done(&self, failover: Failover) -> bool {
        let mut sentinel = connect(&self.sentinel.url()).await;
        let master: std::collections::HashMap<String, String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(SERVICE)
            .query_async(&mut sentinel)
            .await
            .unwrap_or_default();
        let promoted = master.get("port") == Some(&self.replica.port.to_string())
            && master.get("flags").is_some_and(|f| f == "master");
        if !promoted || matches!(failover, Failover::KillMaster) {
            return promoted;
        }
        let mut old = connect(&self.master.url()).await;
        let role: Vec<redis::Value> = redis::cmd("ROLE")
            .query_async(&mut old)
            .await
            .unwrap_or_default();
        matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"slave")
    }

    async fn store(&self, key: &str) -> RedisStore {
        let sentinel = self.sentinel.url();
        RedisStore::connect_sentinel(&[sentinel.as_str()], SERVICE, key)
            .await
            .unwrap()
    }
}

async fn the_store_follows_sentinel(failover: Failover) {
    let mut setup = SentinelSetup::start().await;
    let auth = AuthServer::start().await;
    let key = unique_key("sentinel");
    let store = setup.store(&key).await;
    store
        .save(&TokenSet::new("at-0").with_refresh_token("rt-0"))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(client_for(setup.store(&key).await, &auth, &http));
    }
    auth.expire_access_token();
    assert_eq!(
        round(&clients, &auth.api_url()).await,
        CLIENTS * REQUESTS_PER_ROUND
    );
    assert_eq!(auth.snapshot(), (1, 0, false));

    match failover {
        Failover::KillMaster => setup.master.kill(),
        Failover::Command => {
            let mut sentinel = connect(&setup.sentinel.url()).await;
            let () = redis::cmd("SENTINEL")
                .arg("FAILOVER")
                .arg(SERVICE)
                .query_async(&mut sentinel)
                .await
                .unwrap();
        }
    }
    poll_until("the failover", Duration::from_secs(20), || {
        setup.failover_done(failover)
    })
    .await;

    // The save that the refresh made before the failover was acknowledged
    // by the replica (WAIT): the new master has it. The store's connection
    // went down with the old master; its next operation asks Sentinel.
    let mut stored = store.load().await;
    if stored.is_err() {
        stored = store.load().await;
    }
    let stored = stored
        .unwrap()
        .expect("the store reads from the new master");
    assert_eq!(
        stored.refresh_token().unwrap().secret(),
        "rt-1",
        "{failover:?}"
    );

    // And the fleet refreshes through it: requests may fail while each
    // connection finds the new master, then all succeed, with one refresh.
    auth.expire_access_token();
    let mut succeeded = 0;
    for _ in 0..50 {
        succeeded = round(&clients, &auth.api_url()).await;
        if succeeded == CLIENTS * REQUESTS_PER_ROUND {
            break;
        }
    }
    assert_eq!(succeeded, CLIENTS * REQUESTS_PER_ROUND, "{failover:?}");
    assert_eq!(auth.snapshot(), (2, 0, false), "one refresh, no reuse");
    let mut new_master = connect(&setup.replica.url()).await;
    let tokens: Option<String> = redis::cmd("HGET")
        .arg(&key)
        .arg("tokens")
        .query_async(&mut new_master)
        .await
        .unwrap();
    assert!(
        tokens.is_some_and(|t| t.contains("rt-2")),
        "saved on the new master"
    );
}
