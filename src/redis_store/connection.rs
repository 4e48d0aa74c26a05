//! The one connection type the store's operations run on, whatever Redis
//! deployment is behind it.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A connection to a single node, a cluster, or the master a Sentinel
/// names. Cloning shares the underlying connection.
#[derive(Clone)]
pub(super) enum Connection {
    /// One node, reconnecting on its own after it restarts.
    Single(ConnectionManager),
    /// A Redis Cluster: commands go to the node that owns their key's slot.
    #[cfg(feature = "redis-cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
    /// The master a Sentinel names, followed across failovers.
    #[cfg(feature = "redis-sentinel")]
    Sentinel(super::sentinel::FollowMaster),
}

impl Connection {
    /// Whether a command without a key (`WAIT`) reaches the node that holds
    /// the token set: not on a cluster, where it would go to any node.
    pub(super) fn has_one_master(&self) -> bool {
        match self {
            Self::Single(_) => true,
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(_) => false,
            #[cfg(feature = "redis-sentinel")]
            Self::Sentinel(_) => true,
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(c) => c.req_packed_command(cmd),
            #[cfg(feature = "redis-sentinel")]
            Self::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "redis-sentinel")]
            Self::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(c) => c.get_db(),
            #[cfg(feature = "redis-sentinel")]
            Self::Sentinel(c) => c.get_db(),
        }
    }
}
