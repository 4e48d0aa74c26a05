//! The refresh lock: `SET NX PX` with an owner id, and a queue of waiters
//! that the holder hands the lock to on release, so that a fleet waiting
//! for one refresh costs a few commands per host instead of a poll storm.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use super::connection::Connection;
use super::{Keys, read, wait_for_replicas};
use crate::error::BoxError;
use crate::store::{LockedSave, StoreLock};
use crate::token::TokenSet;
use crate::util::jitter::{random_fraction, random_u64};

/// How long a handed-over lock lives before its new holder confirms it: a
/// waiter that died or gave up in the queue stalls the others this long,
/// not for the whole lock TTL.
const CLAIM_TTL: Duration = Duration::from_secs(2);

/// The longest a queued waiter blocks before it looks at the lock itself
/// (jittered down to half): the fallback for a holder that died, a holder
/// of version 0.1 (which releases without handing over), or a hand-over
/// lost in a failover.
const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// How late Redis may end a blocking command past its timeout: it checks
/// them on its timer, every 1/hz (100 ms at the default hz of 10). Shorter
/// waits are slept here instead, and blocks end this much early, so that
/// a lock wait keeps its bound.
const SERVER_TIMER: Duration = Duration::from_millis(100);

/// Takes the lock (free, or handed to us), or queues us and answers how
/// long the lock still lives. Each call does only the calls its case needs:
/// they are most of what a fleet-wide refresh costs Redis.
/// KEYS: lock, queue. ARGV: owner, ttl ms, queue ttl ms, whether we queued
/// already ("1"). Returns 0 when we hold the lock, else the lock's
/// remaining ms (> 0).
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local queued = ARGV[4] == '1'
if queued and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 0
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if queued then
    redis.call('LREM', KEYS[2], 0, ARGV[1])
  end
  return 0
end
if not queued or not redis.call('LPOS', KEYS[2], ARGV[1]) then
  redis.call('RPUSH', KEYS[2], ARGV[1])
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local left = redis.call('PTTL', KEYS[1])
if left < 1 then
  return 1
end
return left
",
    )
});

/// If we hold the lock, hands it to the first waiter (with the short claim
/// TTL, and a push on its wake list, which expires with the claim) or
/// deletes it. A waiter that gives up leaves the queue first ("1"): the
/// lock may have just been handed to it.
/// KEYS: lock, queue. ARGV: owner, claim ms, wake-list prefix, leaving.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if ARGV[4] == '1' then
  redis.call('LREM', KEYS[2], 0, ARGV[1])
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local next = redis.call('LPOP', KEYS[2])
if not next then
  return redis.call('DEL', KEYS[1])
end
redis.call('SET', KEYS[1], next, 'PX', ARGV[2])
local wake = ARGV[3] .. next
redis.call('RPUSH', wake, '1')
redis.call('PEXPIRE', wake, ARGV[2])
return 1
",
    )
});

/// Saves only if the version is still the one read under the lock (fencing):
/// a holder whose lock expired cannot overwrite a newer set.
static SAVE_IF_VERSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local version = redis.call('HGET', KEYS[1], 'version') or '0'
if version ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'tokens', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'version', 1)
return 1
",
    )
});

/// A lock owner id no other holder has: 128 bits from OS-seeded hashing of
/// the process, a counter and the time.
pub(super) fn owner_id() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// One lock attempt: the lock's keys, our owner id, and the TTLs.
struct Attempt<'a> {
    connection: Connection,
    keys: &'a Keys,
    owner: String,
    wake: String,
    ttl: Duration,
    queued: bool,
}

impl Attempt<'_> {
    /// `None` when we hold the lock, else how long it still lives.
    async fn acquire(&mut self) -> Result<Option<Duration>, BoxError> {
        let left: u64 = ACQUIRE
            .key(&self.keys.lock)
            .key(&self.keys.queue)
            .arg(&self.owner)
            .arg(millis(self.ttl))
            // The queue outlives any waiter's wait; it goes with the last.
            .arg(millis(self.ttl.saturating_mul(2)))
            .arg(if self.queued { "1" } else { "0" })
            .invoke_async(&mut self.connection)
            .await?;
        self.queued = left > 0 || self.queued;
        Ok((left > 0).then(|| Duration::from_millis(left)))
    }

    /// Blocks on our wake list for at most `limit`: the holder pushes on it
    /// when it hands us the lock.
    async fn wait_for_hand_over(&mut self, limit: Duration) -> Result<(), BoxError> {
        // BLPOP's timeout is in seconds, fractions allowed; 0 would block
        // forever.
        let seconds = limit.as_secs_f64().max(0.001);
        let _: Option<(String, String)> = redis::cmd("BLPOP")
            .arg(&self.wake)
            .arg(format!("{seconds:.3}"))
            .query_async(&mut self.connection)
            .await?;
        Ok(())
    }

    /// Leaves the queue, passing the lock on if it was just handed to us.
    async fn give_up(&mut self) -> Result<(), BoxError> {
        release(&mut self.connection, self.keys, &self.owner, self.ttl, true).await
    }
}

async fn release(
    connection: &mut Connection,
    keys: &Keys,
    owner: &str,
    ttl: Duration,
    leaving_queue: bool,
) -> Result<(), BoxError> {
    // A lock TTL shorter than the claim's bounds it too.
    let claim = CLAIM_TTL.min(ttl);
    let _: u64 = RELEASE
        .key(&keys.lock)
        .key(&keys.queue)
        .arg(owner)
        .arg(millis(claim))
        .arg(&keys.wake_prefix)
        .arg(if leaving_queue { "1" } else { "0" })
        .invoke_async(connection)
        .await?;
    Ok(())
}

/// Takes the lock within `wait`: `Ok(None)` when the wait ran out (we have
/// left the queue then). Deadlines are tokio's.
pub(super) async fn take(
    connection: Connection,
    keys: &Keys,
    ttl: Duration,
    wait: Duration,
) -> Result<Option<String>, BoxError> {
    let owner = owner_id();
    let mut attempt = Attempt {
        wake: format!("{}{owner}", keys.wake_prefix),
        connection,
        keys,
        owner,
        ttl,
        queued: false,
    };
    let deadline = crate::util::time::deadline_after(wait);
    match wait_in_line(&mut attempt, deadline).await {
        Ok(true) => Ok(Some(attempt.owner)),
        Ok(false) => {
            attempt.give_up().await?;
            Ok(None)
        }
        Err(error) => {
            // Best effort: a queued waiter that vanishes would be handed
            // the lock and stall the others for the claim TTL.
            if attempt.queued {
                let _ = attempt.give_up().await;
            }
            Err(error)
        }
    }
}

/// Tries, queues, and blocks until we hold the lock (`true`) or the
/// deadline has passed (`false`, still queued).
async fn wait_in_line(
    attempt: &mut Attempt<'_>,
    deadline: tokio::time::Instant,
) -> Result<bool, BoxError> {
    loop {
        let Some(left) = attempt.acquire().await? else {
            return Ok(true);
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return Ok(false);
        }
        // Jitter: waiters that queued together do not all fall back at once.
        let fallback = FALLBACK_POLL / 2 + FALLBACK_POLL.mul_f64(random_fraction() / 2.0);
        let block = remaining.min(fallback).min(left);
        if block < SERVER_TIMER * 2 {
            tokio::time::sleep(block).await;
        } else {
            attempt.wait_for_hand_over(block - SERVER_TIMER).await?;
        }
    }
}

/// A held Redis refresh lock, with the version read under it.
pub(super) struct RedisLock {
    pub(super) connection: Connection,
    pub(super) keys: Keys,
    pub(super) owner: String,
    pub(super) ttl: Duration,
    pub(super) version: Option<u64>,
    pub(super) replica_acks: Option<(u32, Duration)>,
    /// The process's own lock, released with this one (or when it drops).
    pub(super) _local: tokio::sync::OwnedMutexGuard<()>,
}

impl fmt::Debug for RedisLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLock")
            .field("lock_key", &self.keys.lock)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl StoreLock for RedisLock {
    async fn load(&mut self) -> Result<Option<TokenSet>, BoxError> {
        let (version, tokens) = read(&mut self.connection, &self.keys.data).await?;
        self.version = Some(version);
        Ok(tokens)
    }

    async fn save(&mut self, tokens: &TokenSet) -> Result<LockedSave, BoxError> {
        let Some(version) = self.version else {
            return Err("a save under the Redis lock must follow a load".into());
        };
        let json = serde_json::to_string(tokens)?;
        let saved: u64 = SAVE_IF_VERSION
            .key(&self.keys.data)
            .arg(version.to_string())
            .arg(json)
            .invoke_async(&mut self.connection)
            .await?;
        if saved != 1 {
            return Ok(LockedSave::Superseded);
        }
        self.version = Some(version + 1);
        wait_for_replicas(&mut self.connection, self.replica_acks).await?;
        Ok(LockedSave::Saved)
    }

    async fn release(mut self: Box<Self>) -> Result<(), BoxError> {
        release(
            &mut self.connection,
            &self.keys,
            &self.owner,
            self.ttl,
            false,
        )
        .await
    }
}

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
