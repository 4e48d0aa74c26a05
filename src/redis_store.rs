//! A token set in Redis, shared by many hosts: one node, a cluster, or the
//! master a Sentinel names.

mod connection;
mod keys;
mod lock;
#[cfg(feature = "redis-sentinel")]
mod sentinel;

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManagerConfig;

use crate::error::{BoxError, Error};
use crate::store::{StoreError, StoreLock, TokenStore};
use crate::token::TokenSet;
use connection::Connection;
use keys::Keys;
#[cfg(feature = "redis-cluster")]
use keys::with_hash_tag;
use lock::RedisLock;

/// How long a refresh lock lives if its holder dies without releasing it.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(60);

/// How long the connections wait to connect and for an answer.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(5);

/// Saves unconditionally and bumps the version.
static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('HSET', KEYS[1], 'tokens', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'version', 1)
",
    )
});

/// Forgets the tokens and bumps the version.
static CLEAR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('HDEL', KEYS[1], 'tokens')
return redis.call('HINCRBY', KEYS[1], 'version', 1)
",
    )
});

/// Stores the token set in Redis under a key you name, for many hosts.
///
/// The key holds a hash with the token set (JSON, the same form as
/// [`FileStore`](crate::FileStore)'s) and a version number. Refreshes are
/// coordinated through a lock at `<key>:lock`: `SET NX PX` with a random owner
/// id. The lock expires after [`DEFAULT_LOCK_TTL`] (see
/// [`RedisStore::with_lock_ttl`]) if its holder dies; a holder whose lock
/// expired mid-refresh cannot overwrite a newer set, because saves under
/// the lock are fenced on the version read when the lock was taken.
///
/// Hosts that find the lock taken queue up (`<key>:lock:queue`) and block
/// on a list of their own; the holder hands the lock to the first in line
/// on release. A fleet-wide refresh so costs about five commands per host,
/// not a poll per host every few milliseconds; a queued host still looks
/// at the lock itself about once a second, for a holder that died or one
/// that predates the queue (version 0.1 releases without handing over).
/// Tasks of one process that share a store (or its clones) wait for each
/// other in the process first, so that one of them at a time waits in
/// Redis. While it waits, the store's connection carries that blocking
/// wait: other operations on the same store wait behind it, up to a second.
///
/// Deployments: [`RedisStore::connect`] (one node; reconnects on its own
/// after Redis restarts), `connect_cluster` (feature `redis-cluster`) and
/// `connect_sentinel` (feature `redis-sentinel`). Operations during an
/// outage fail with [`Error::Store`].
///
/// What it protects: the session from double-spent refresh tokens across
/// hosts. What it does not: the tokens are stored in clear, readable by
/// anyone who can read the key. Use Redis ACLs, TLS (`rediss://`) and a
/// private network.
///
/// ```no_run
/// # async fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
/// use reqwest_oauth2_refresh::{RedisStore, TokenManager};
///
/// let store = RedisStore::connect("redis://127.0.0.1/", "my-app:tokens").await?;
/// let manager = TokenManager::builder("https://auth.example.com/oauth/token")
///     .client_id("my-app")
///     .store(store)
///     .build()?;
/// # let _ = manager; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    keys: Keys,
    lock_ttl: Duration,
    replica_acks: Option<(u32, Duration)>,
    /// Held with the Redis lock by a task of this process: the others
    /// wait here, without Redis traffic, and do not stack blocking waits
    /// on the shared connection.
    local: Arc<tokio::sync::Mutex<()>>,
}

impl RedisStore {
    /// Connects to the Redis node at `redis_url` and stores the token set
    /// under `key` (the lock at `<key>:lock`, as in version 0.1).
    pub async fn connect(redis_url: &str, key: &str) -> Result<Self, Error> {
        let client = redis::Client::open(redis_url).map_err(connect_error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(NETWORK_TIMEOUT))
            .set_response_timeout(Some(NETWORK_TIMEOUT))
            .set_number_of_retries(3);
        let connection = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(connect_error)?;
        Ok(Self::on(Connection::Single(connection), key))
    }

    /// Connects to the Redis Cluster that `nodes` (`redis://host:port/`
    /// URLs, any of its nodes) belong to.
    ///
    /// The token set and its lock must live in one hash slot, so a `key`
    /// without a hash tag gets one: `my-app:tokens` is stored as
    /// `{my-app:tokens}`, its lock at `{my-app:tokens}:lock`. A key with a
    /// tag (`{my-app}:tokens`) is used as it is; [`RedisStore::key`] says
    /// which. Replica acknowledgements ([`RedisStore::with_replica_acks`])
    /// are not asked for on a cluster.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
    /// use reqwest_oauth2_refresh::RedisStore;
    ///
    /// let nodes = ["redis://10.0.0.5:7000/", "redis://10.0.0.6:7000/"];
    /// let store = RedisStore::connect_cluster(&nodes, "{my-app}:tokens").await?;
    /// assert_eq!(store.key(), "{my-app}:tokens");
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis-cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-cluster")))]
    pub async fn connect_cluster(nodes: &[&str], key: &str) -> Result<Self, Error> {
        let client = redis::cluster::ClusterClient::builder(nodes.iter().copied())
            .connection_timeout(NETWORK_TIMEOUT)
            .response_timeout(NETWORK_TIMEOUT)
            .build()
            .map_err(connect_error)?;
        let connection = client.get_async_connection().await.map_err(connect_error)?;
        Ok(Self::on(
            Connection::Cluster(connection),
            &with_hash_tag(key),
        ))
    }

    /// Connects to the master that the sentinels at `sentinels` name
    /// `service_name`, and follows it: after a failover the next operation
    /// asks the sentinels again and goes to the new master. The keys are
    /// the same as with [`RedisStore::connect`].
    ///
    /// Saves wait up to a second for one replica to acknowledge them
    /// (`WAIT 1 1000`; see [`RedisStore::with_replica_acks`]), so that a
    /// failover right after a refresh does not lose the rotated refresh
    /// token. For passwords or TLS on the master, build the
    /// [`SentinelClient`](redis::sentinel::SentinelClient) yourself and use
    /// [`RedisStore::connect_sentinel_client`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
    /// use reqwest_oauth2_refresh::RedisStore;
    ///
    /// let sentinels = ["redis://10.0.0.5:26379/", "redis://10.0.0.6:26379/"];
    /// let store = RedisStore::connect_sentinel(&sentinels, "mymaster", "my-app:tokens").await?;
    /// # let _ = store; Ok(()) }
    /// ```
    #[cfg(feature = "redis-sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-sentinel")))]
    pub async fn connect_sentinel(
        sentinels: &[&str],
        service_name: &str,
        key: &str,
    ) -> Result<Self, Error> {
        let client = redis::sentinel::SentinelClient::build(
            sentinels.to_vec(),
            service_name.to_owned(),
            None,
            redis::sentinel::SentinelServerType::Master,
        )
        .map_err(connect_error)?;
        Self::connect_sentinel_client(client, key).await
    }

    /// [`RedisStore::connect_sentinel`] with a
    /// [`SentinelClient`](redis::sentinel::SentinelClient) you built (its
    /// server type should be `Master`).
    #[cfg(feature = "redis-sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-sentinel")))]
    pub async fn connect_sentinel_client(
        client: redis::sentinel::SentinelClient,
        key: &str,
    ) -> Result<Self, Error> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(NETWORK_TIMEOUT))
            .set_response_timeout(Some(NETWORK_TIMEOUT));
        let connection = sentinel::FollowMaster::connect(client, config)
            .await
            .map_err(connect_error)?;
        Ok(Self::on(Connection::Sentinel(connection), key)
            .with_replica_acks(1, Duration::from_secs(1)))
    }

    fn on(connection: Connection, key: &str) -> Self {
        Self {
            connection,
            keys: Keys::new(key),
            lock_ttl: DEFAULT_LOCK_TTL,
            replica_acks: None,
            local: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// How long the refresh lock lives if its holder dies. Keep it longer
    /// than a refresh can take (the manager's refresh timeout plus its store
    /// operations), or a slow refresh loses its lock to another host.
    pub fn with_lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// After each save, waits up to `timeout` until `replicas` replicas
    /// have it (`WAIT`). Replication is asynchronous: without this, a
    /// master that fails right after a save can take the newest refresh
    /// token with it. A save that fewer replicas acknowledge in time fails
    /// with a transient error (it may stand on the master, but cannot be
    /// relied on): the manager keeps the new tokens in memory and saves
    /// them again. `0` replicas turns it off (the default except with
    /// Sentinel); on a cluster it is not applied.
    pub fn with_replica_acks(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replica_acks = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// The key the token set is stored under.
    pub fn key(&self) -> &str {
        &self.keys.data
    }
}

fn connect_error(error: redis::RedisError) -> Error {
    Error::store("connect", Box::new(error))
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may carry a password.
        f.debug_struct("RedisStore")
            .field("key", &self.keys.data)
            .field("lock_ttl", &self.lock_ttl)
            .field("replica_acks", &self.replica_acks)
            .finish_non_exhaustive()
    }
}

async fn read(connection: &mut Connection, key: &str) -> Result<(u64, Option<TokenSet>), BoxError> {
    let reply: redis::Value = redis::cmd("HMGET")
        .arg(key)
        .arg("version")
        .arg("tokens")
        .query_async(connection)
        .await?;
    from_hash(key, reply)
}

/// The hash's `version` and `tokens` as HMGET answered them; a pure
/// function, so that property tests can give it any reply.
fn from_hash(key: &str, reply: redis::Value) -> Result<(u64, Option<TokenSet>), BoxError> {
    // redis's conversion error quotes the reply, token set and all (found
    // by the property tests): keep only what was wrong. Corrupt data does
    // not fix itself: a permanent failure.
    let (version, tokens): (Option<u64>, Option<String>) =
        redis::from_redis_value(reply).map_err(|_| {
            StoreError::permanent(format!(
                "the hash at `{key}` does not hold a version number and a token set"
            ))
        })?;
    let tokens = match tokens {
        None => None,
        Some(json) => Some(serde_json::from_str(&json).map_err(|e| {
            // The parse error would quote the secrets: keep only its place.
            // Corrupt data does not fix itself: a permanent failure.
            StoreError::permanent(format!(
                "the value at `{key}` is not a token set (JSON error at column {})",
                e.column()
            ))
        })?),
    };
    Ok((version.unwrap_or(0), tokens))
}

/// Waits for replicas to acknowledge the last write, if asked to.
async fn wait_for_replicas(
    connection: &mut Connection,
    acks: Option<(u32, Duration)>,
) -> Result<(), BoxError> {
    let Some((replicas, timeout)) = acks else {
        return Ok(());
    };
    if !connection.has_one_master() {
        return Ok(());
    }
    let timeout_ms = u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let acked: u32 = redis::cmd("WAIT")
        .arg(replicas)
        .arg(timeout_ms)
        .query_async(connection)
        .await?;
    if acked < replicas {
        // The write stands on this node, but a failover now would lose it
        // (or this node is an old master about to be demoted): fail, so
        // that the manager keeps the tokens and saves them again.
        return Err(StoreError::transient(format!(
            "the save reached {acked} of {replicas} Redis replicas within {timeout:?}"
        ))
        .into());
    }
    Ok(())
}

#[async_trait]
impl TokenStore for RedisStore {
    async fn load(&self) -> Result<Option<TokenSet>, BoxError> {
        let mut connection = self.connection.clone();
        Ok(read(&mut connection, &self.keys.data).await?.1)
    }

    async fn save(&self, tokens: &TokenSet) -> Result<(), BoxError> {
        let mut connection = self.connection.clone();
        let json = serde_json::to_string(tokens)?;
        let _: u64 = SAVE
            .key(&self.keys.data)
            .arg(json)
            .invoke_async(&mut connection)
            .await?;
        wait_for_replicas(&mut connection, self.replica_acks).await
    }

    async fn clear(&self) -> Result<(), BoxError> {
        let mut connection = self.connection.clone();
        // Keep the version counting up, so a fenced save read before the
        // clear cannot bring the tokens back.
        let _: u64 = CLEAR
            .key(&self.keys.data)
            .invoke_async(&mut connection)
            .await?;
        wait_for_replicas(&mut connection, self.replica_acks).await
    }

    async fn lock(&self, wait: Duration) -> Result<Option<Box<dyn StoreLock>>, BoxError> {
        let deadline = crate::util::time::deadline_after(wait);
        let held_elsewhere = || -> BoxError {
            format!(
                "another holder kept `{}` for longer than {wait:?}",
                self.keys.lock
            )
            .into()
        };
        let local = tokio::time::timeout_at(deadline, self.local.clone().lock_owned())
            .await
            .map_err(|_| held_elsewhere())?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let taken = lock::take(self.connection.clone(), &self.keys, self.lock_ttl, left).await?;
        let Some(owner) = taken else {
            return Err(held_elsewhere());
        };
        Ok(Some(Box::new(RedisLock {
            connection: self.connection.clone(),
            keys: self.keys.clone(),
            owner,
            ttl: self.lock_ttl,
            version: None,
            replica_acks: self.replica_acks,
            _local: local,
        })))
    }
}

#[cfg(test)]
mod proptests;
