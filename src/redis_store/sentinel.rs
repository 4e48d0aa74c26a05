//! The master a Sentinel names, followed across failovers.

use std::sync::{Arc, Mutex, MutexGuard};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};
use redis::{RedisResult, ServerErrorKind};

/// A connection to the current master: asks the sentinels which node that
/// is whenever the last connection failed or landed on a replica, so that
/// after a failover the next command goes to the new master.
#[derive(Clone)]
pub(crate) struct FollowMaster {
    shared: Arc<Shared>,
}

struct Shared {
    /// Held while asking the sentinels: one reconnect at a time, and the
    /// callers that failed meanwhile take its result.
    sentinel: tokio::sync::Mutex<SentinelClient>,
    config: AsyncConnectionConfig,
    current: Mutex<Current>,
}

#[derive(Default)]
struct Current {
    /// Counts reconnects, so that a failure seen on an old connection does
    /// not drop a newer one.
    generation: u64,
    connection: Option<MultiplexedConnection>,
}

impl FollowMaster {
    /// Connects to the master now, so that a wrong sentinel address or
    /// service name fails at construction.
    pub(crate) async fn connect(
        sentinel: SentinelClient,
        config: AsyncConnectionConfig,
    ) -> RedisResult<Self> {
        let this = Self {
            shared: Arc::new(Shared {
                sentinel: tokio::sync::Mutex::new(sentinel),
                config,
                current: Mutex::new(Current::default()),
            }),
        };
        this.connection().await?;
        Ok(this)
    }

    fn current(&self) -> MutexGuard<'_, Current> {
        // No code panics while holding it; a poisoned lock still holds a
        // usable value.
        self.shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self) -> Option<(u64, MultiplexedConnection)> {
        let current = self.current();
        current
            .connection
            .clone()
            .map(|connection| (current.generation, connection))
    }

    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(cached) = self.cached() {
            return Ok(cached);
        }
        let mut sentinel = self.shared.sentinel.lock().await;
        if let Some(cached) = self.cached() {
            return Ok(cached);
        }
        // The sentinels name the master, and the crate checks with `ROLE`
        // that the node agrees before it connects.
        let connection = sentinel
            .get_async_connection_with_config(&self.shared.config)
            .await?;
        let mut current = self.current();
        current.generation += 1;
        current.connection = Some(connection.clone());
        Ok((current.generation, connection))
    }

    /// Drops the connection of `generation` if it is still the current one.
    fn forget(&self, generation: u64) {
        let mut current = self.current();
        if current.generation == generation {
            current.connection = None;
        }
    }

    /// Forgets the connection after a failure that says it no longer leads
    /// to a usable master.
    fn after_error(&self, generation: u64, error: &RedisError) {
        if needs_new_master(error) {
            self.forget(generation);
        }
    }
}

/// The node refused a write because it is a replica now: the command did
/// not run, so it can go to the new master.
fn is_demoted(error: &RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || error.to_string().contains("READONLY")
}

fn needs_new_master(error: &RedisError) -> bool {
    is_demoted(error)
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
        // A blocked BLPOP released because the node changed role.
        || error.to_string().contains("UNBLOCKED")
}

impl ConnectionLike for FollowMaster {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut connection) = self.connection().await?;
            match connection.req_packed_command(cmd).await {
                Err(error) if is_demoted(&error) => {
                    self.forget(generation);
                    let (generation, mut connection) = self.connection().await?;
                    let retried = connection.req_packed_command(cmd).await;
                    if let Err(error) = &retried {
                        self.after_error(generation, error);
                    }
                    retried
                }
                Err(error) => {
                    self.after_error(generation, &error);
                    Err(error)
                }
                ok => ok,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut connection) = self.connection().await?;
            let result = connection
                .req_packed_commands(pipeline, offset, count)
                .await;
            if let Err(error) = &result {
                self.after_error(generation, error);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.cached()
            .map_or(0, |(_, connection)| connection.get_db())
    }
}
