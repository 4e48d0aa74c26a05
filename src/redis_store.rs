//! A token set in Redis, shared by many hosts.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{BoxError, Error};
use crate::store::{LockedSave, StoreError, StoreLock, TokenStore, poll_lock};
use crate::token::TokenSet;
use crate::util::jitter::random_u64;

/// How long a refresh lock lives if its holder dies without releasing it.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(60);

/// Saves unconditionally and bumps the version.
const SAVE: &str = r"
redis.call('HSET', KEYS[1], 'tokens', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'version', 1)
";

/// Saves only if the version is still the one read under the lock (fencing):
/// a holder whose lock expired cannot overwrite a newer set.
const SAVE_IF_VERSION: &str = r"
local version = redis.call('HGET', KEYS[1], 'version') or '0'
if version ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'tokens', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'version', 1)
return 1
";

/// Forgets the tokens and bumps the version.
const CLEAR: &str = r"
redis.call('HDEL', KEYS[1], 'tokens')
return redis.call('HINCRBY', KEYS[1], 'version', 1)
";

/// Releases the lock only if we still own it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Stores the token set in Redis under a key you name, for many hosts.
///
/// The key holds a hash with the token set (JSON, the same form as
/// [`FileStore`](crate::FileStore)'s) and a version number. Refreshes are
/// coordinated through a lock at `<key>:lock`: `SET NX PX` with a random owner
/// id, released by a compare-and-delete script. The lock expires after
/// [`DEFAULT_LOCK_TTL`] (see [`RedisStore::with_lock_ttl`]) if its holder
/// dies; a holder whose lock expired mid-refresh cannot overwrite a newer
/// set, because saves under the lock are fenced on the version read when
/// the lock was taken.
///
/// The connection is a `redis` connection manager, which reconnects on its
/// own after Redis restarts; operations during the outage fail with
/// [`Error::Store`].
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
    connection: ConnectionManager,
    key: String,
    lock_key: String,
    lock_ttl: Duration,
}

impl RedisStore {
    /// Connects to Redis at `redis_url` and stores the token set under `key`.
    pub async fn connect(redis_url: &str, key: &str) -> Result<Self, Error> {
        let client =
            redis::Client::open(redis_url).map_err(|e| Error::store("connect", Box::new(e)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(3);
        let connection = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| Error::store("connect", Box::new(e)))?;
        Ok(Self {
            connection,
            key: key.to_owned(),
            lock_key: format!("{key}:lock"),
            lock_ttl: DEFAULT_LOCK_TTL,
        })
    }

    /// How long the refresh lock lives if its holder dies. Keep it longer
    /// than a refresh can take (the manager's refresh timeout plus its store
    /// operations), or a slow refresh loses its lock to another host.
    pub fn with_lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// The key the token set is stored under.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may carry a password.
        f.debug_struct("RedisStore")
            .field("key", &self.key)
            .field("lock_ttl", &self.lock_ttl)
            .finish_non_exhaustive()
    }
}

async fn read(
    connection: &mut ConnectionManager,
    key: &str,
) -> Result<(u64, Option<TokenSet>), BoxError> {
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

/// A lock owner id no other holder has: 128 bits from OS-seeded hashing of
/// the process, a counter and the time.
fn owner_id() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

#[async_trait]
impl TokenStore for RedisStore {
    async fn load(&self) -> Result<Option<TokenSet>, BoxError> {
        let mut connection = self.connection.clone();
        Ok(read(&mut connection, &self.key).await?.1)
    }

    async fn save(&self, tokens: &TokenSet) -> Result<(), BoxError> {
        let mut connection = self.connection.clone();
        let json = serde_json::to_string(tokens)?;
        let _: u64 = redis::Script::new(SAVE)
            .key(&self.key)
            .arg(json)
            .invoke_async(&mut connection)
            .await?;
        Ok(())
    }

    async fn clear(&self) -> Result<(), BoxError> {
        let mut connection = self.connection.clone();
        // Keep the version counting up, so a fenced save read before the
        // clear cannot bring the tokens back.
        let _: u64 = redis::Script::new(CLEAR)
            .key(&self.key)
            .invoke_async(&mut connection)
            .await?;
        Ok(())
    }

    async fn lock(&self, wait: Duration) -> Result<Option<Box<dyn StoreLock>>, BoxError> {
        let connection = self.connection.clone();
        let owner = owner_id();
        let ttl_ms = u64::try_from(self.lock_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let acquired = poll_lock(
            wait,
            Duration::from_millis(5),
            Duration::from_millis(100),
            || {
                let mut connection = connection.clone();
                let (lock_key, owner) = (&self.lock_key, &owner);
                async move {
                    let acquired: Option<String> = redis::cmd("SET")
                        .arg(lock_key)
                        .arg(owner)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_ms)
                        .query_async(&mut connection)
                        .await?;
                    Ok(acquired.is_some())
                }
            },
        )
        .await?;
        if !acquired {
            return Err(format!(
                "another holder kept `{}` for longer than {wait:?}",
                self.lock_key
            )
            .into());
        }
        Ok(Some(Box::new(RedisLock {
            connection,
            key: self.key.clone(),
            lock_key: self.lock_key.clone(),
            owner,
            version: None,
        })))
    }
}

/// A held Redis refresh lock, with the version read under it.
struct RedisLock {
    connection: ConnectionManager,
    key: String,
    lock_key: String,
    owner: String,
    version: Option<u64>,
}

impl fmt::Debug for RedisLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLock")
            .field("lock_key", &self.lock_key)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl StoreLock for RedisLock {
    async fn load(&mut self) -> Result<Option<TokenSet>, BoxError> {
        let (version, tokens) = read(&mut self.connection, &self.key).await?;
        self.version = Some(version);
        Ok(tokens)
    }

    async fn save(&mut self, tokens: &TokenSet) -> Result<LockedSave, BoxError> {
        let Some(version) = self.version else {
            return Err("a save under the Redis lock must follow a load".into());
        };
        let json = serde_json::to_string(tokens)?;
        let saved: u64 = redis::Script::new(SAVE_IF_VERSION)
            .key(&self.key)
            .arg(version.to_string())
            .arg(json)
            .invoke_async(&mut self.connection)
            .await?;
        if saved == 1 {
            self.version = Some(version + 1);
            Ok(LockedSave::Saved)
        } else {
            Ok(LockedSave::Superseded)
        }
    }

    async fn release(mut self: Box<Self>) -> Result<(), BoxError> {
        let _: u64 = redis::Script::new(RELEASE)
            .key(&self.lock_key)
            .arg(&self.owner)
            .invoke_async(&mut self.connection)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_ids_differ() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| owner_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 32));
    }
}
