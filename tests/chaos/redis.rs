//! A redis-server of the test's own, with an append-only file synced on
//! every write, that the driver kills (SIGKILL) and starts again on the same
//! port and directory. The same start as `tests/redis_store.rs`'s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct Redis {
    pub addr: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Redis {
    pub async fn start(dir: PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        std::fs::create_dir_all(&dir).expect("the Redis directory");
        let mut redis = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            child: None,
        };
        redis.spawn().await;
        redis
    }

    /// The URL of Redis itself, not through the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    async fn spawn(&mut self) {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &self.addr.port().to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--dir", self.dir.to_str().expect("a UTF-8 path")])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let log = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        crate::redis_server::wait_until_ready(log).await;
    }

    /// SIGKILL and a start on the same port and append-only file.
    pub async fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn().await;
    }
}
