//! A redis-server of the test's own, with an append-only file synced on
//! every write, that the driver kills (SIGKILL) and starts again on the same
//! port and directory. The same start as `tests/redis_store.rs`'s.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
        // Its log says when it accepts connections; the thread drains the
        // log for the server's life (a full pipe would stall it).
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            let mut seen = String::new();
            for line in BufReader::new(log).lines().map_while(Result::ok) {
                if !line.contains("Ready to accept connections") {
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

    /// SIGKILL and a start on the same port and append-only file.
    pub async fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn().await;
    }
}
