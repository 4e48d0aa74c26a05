//! `redis-server` processes for the Redis tests (`tests/redis_store.rs`,
//! `tests/redis_cluster.rs`): a single node, cluster nodes, sentinels, each
//! on a free loopback port in a private directory, killed on drop. Include
//! it with `#[path = "common/redis.rs"] mod redis_server;` (it needs the
//! `redis` crate, which only the Redis targets have).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why `redis-server` cannot be started here, if it cannot.
pub fn redis_server_missing() -> Option<String> {
    match Command::new("redis-server")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`redis-server --version` exited with {}",
            out.status
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Some("redis-server not found on PATH".to_owned())
        }
        Err(e) => Some(format!("cannot run redis-server: {e}")),
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "oauth2-redis-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `redis-server` process (a node or a sentinel), killed on drop.
pub struct Server {
    pub port: u16,
    child: Option<Child>,
}

impl Server {
    /// Starts `redis-server` on `port` with `args` (after the port and the
    /// bind address), working in `dir`, and waits (bounded) until its log
    /// says it accepts connections.
    pub async fn start(port: u16, dir: &Path, args: &[&str]) -> Self {
        let mut child = Command::new("redis-server")
            .args(args)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", dir.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let log = child.stdout.take().expect("piped stdout");
        let server = Self {
            port,
            child: Some(child),
        };
        wait_until_ready(log).await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL: a crash, not a shutdown.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads the log until "Ready to accept connections" (a node) or the
/// sentinel's id line, within 10 s. The thread drains the log for the
/// server's life: a full pipe would stall it.
pub async fn wait_until_ready(log: std::process::ChildStdout) {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut ready = Some(ready_tx);
        let mut seen = String::new();
        for line in BufReader::new(log).lines().map_while(Result::ok) {
            let is_ready =
                line.contains("Ready to accept connections") || line.contains("Sentinel ID is");
            if !is_ready {
                seen.push_str(&line);
                seen.push('\n');
            } else if let Some(tx) = ready.take() {
                let _ = tx.send(Ok(()));
            }
        }
        if let Some(tx) = ready {
            let _ = tx.send(Err(seen));
        }
    });
    match tokio::time::timeout(Duration::from_secs(10), ready_rx).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(log))) => panic!("redis-server exited before it was ready:\n{log}"),
        Ok(Err(_)) => panic!("the redis-server log reader died"),
        Err(_) => panic!("redis-server was not ready within 10 s"),
    }
}

/// A plain connection to one node, for the test's own commands.
pub async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Polls `check` every 20 ms until it holds, for at most `limit`: for
/// conditions of outside processes (a cluster that converges, a failover),
/// which say nothing when they change.
pub async fn poll_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many commands a node has processed since its last `CONFIG RESETSTAT`
/// (the commands clients sent: a script counts once).
pub async fn commands_processed(connection: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(connection)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("total_commands_processed:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO stats has total_commands_processed")
}

/// `INFO commandstats` as (command, calls), the script's own calls included.
pub async fn command_stats(
    connection: &mut redis::aio::MultiplexedConnection,
) -> Vec<(String, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

pub async fn reset_stats(connection: &mut redis::aio::MultiplexedConnection) {
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(connection)
        .await
        .unwrap();
}
