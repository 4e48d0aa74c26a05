//! FileStore across processes: one refresh per expiry for a whole fleet of
//! OS processes sharing a token file, a lock holder killed with SIGKILL, and
//! a save that fails.
#![cfg(feature = "file-store")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use common::auth_server::AuthServer;
use reqwest_oauth2_refresh::{
    BoxError, Error, FileStore, LockedSave, OAuth2Middleware, StoreLock, TokenManager, TokenSet,
    TokenStore,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const WORKERS: usize = 8;
const REQUESTS_PER_ROUND: usize = 25;
const EXPIRIES: u64 = 4;
/// Every wait on a worker is bounded by this.
const WORKER_TIMEOUT: Duration = Duration::from_secs(60);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oauth2-refresh-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn manager_for(token_url: &str, file: &Path) -> TokenManager {
    TokenManager::builder(token_url)
        .client_id("fleet")
        .retry_base_delay(Duration::from_millis(1))
        .store(FileStore::new(file).unwrap())
        .build()
        .unwrap()
}

/// The entry point of the worker processes the tests below spawn (this test
/// binary, run again with `WORKER_MODE` set). Run normally, it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process_entry_point() {
    let Ok(mode) = std::env::var("WORKER_MODE") else {
        return;
    };
    let file = PathBuf::from(std::env::var("WORKER_TOKEN_FILE").unwrap());
    let token_url = std::env::var("WORKER_TOKEN_URL").unwrap();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    match mode.as_str() {
        "requests" => {
            let api_url = std::env::var("WORKER_API_URL").unwrap();
            let origin = reqwest::Url::parse(&api_url)
                .unwrap()
                .origin()
                .ascii_serialization();
            let manager = manager_for(&token_url, &file);
            let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                .with(
                    OAuth2Middleware::builder(manager)
                        .allow_origin(&origin)
                        .build()
                        .unwrap(),
                )
                .build();
            println!("@@ready");
            while let Ok(Some(line)) = stdin.next_line().await {
                if line != "go" {
                    break;
                }
                let sends = (0..REQUESTS_PER_ROUND).map(|_| client.get(&api_url).send());
                let results = futures_util::future::join_all(sends).await;
                let ok = results
                    .iter()
                    .filter(|r| r.as_ref().is_ok_and(|r| r.status() == 200))
                    .count();
                println!("@@done {ok}");
            }
        }
        "hold-lock" => {
            let store = FileStore::new(&file).unwrap();
            let _lock = store.lock(Duration::from_secs(10)).await.unwrap().unwrap();
            println!("@@locked");
            // Hold it until killed.
            let _ = stdin.next_line().await;
        }
        other => panic!("unknown worker mode {other}"),
    }
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    fn spawn(mode: &str, token_url: &str, api_url: &str, file: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "worker_process_entry_point",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("WORKER_MODE", mode)
            .env("WORKER_TOKEN_URL", token_url)
            .env("WORKER_API_URL", api_url)
            .env("WORKER_TOKEN_FILE", file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn a worker process");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// What follows the next `@@<prefix>` the worker printed (the test
    /// harness prints its own text around it, even on the same line).
    async fn expect(&mut self, prefix: &str) -> String {
        let marker = format!("@@{prefix}");
        let read = async {
            while let Some(line) = self.stdout.next_line().await.unwrap() {
                if let Some((_, rest)) = line.split_once(&marker) {
                    return rest.trim().to_owned();
                }
            }
            panic!("the worker ended before printing {prefix:?}");
        };
        tokio::time::timeout(WORKER_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| panic!("no {prefix:?} from the worker within {WORKER_TIMEOUT:?}"))
    }

    async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_token_file_refresh_once_per_expiry() {
    let auth = AuthServer::start().await;
    let dir = temp_dir("fleet");
    let file = dir.join("tokens.json");
    FileStore::new(&file)
        .unwrap()
        .save(&TokenSet::new("at-0").with_refresh_token("rt-0"))
        .await
        .unwrap();

    let mut workers: Vec<_> = (0..WORKERS)
        .map(|_| Worker::spawn("requests", &auth.token_url(), &auth.api_url(), &file))
        .collect();
    for worker in &mut workers {
        worker.expect("ready").await;
    }
    for expiry in 1..=EXPIRIES {
        auth.expire_access_token();
        for worker in &mut workers {
            worker.send("go").await;
        }
        for worker in &mut workers {
            let ok: usize = worker.expect("done").await.parse().unwrap();
            assert_eq!(
                ok, REQUESTS_PER_ROUND,
                "expiry {expiry}: every request succeeds"
            );
        }
        let (refreshes, invalid_grants, revoked) = auth.snapshot();
        assert_eq!(
            refreshes, expiry,
            "one refresh per expiry for the whole fleet"
        );
        assert_eq!(invalid_grants, 0, "no refresh token was spent twice");
        assert!(!revoked);
    }
    for worker in &mut workers {
        worker.send("quit").await;
        tokio::time::timeout(WORKER_TIMEOUT, worker.child.wait())
            .await
            .unwrap()
            .unwrap();
    }
    let stored = FileStore::new(&file)
        .unwrap()
        .load()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.refresh_token().unwrap().secret(),
        format!("rt-{EXPIRIES}")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_held_by_a_killed_process_is_released() {
    let auth = AuthServer::start().await;
    let dir = temp_dir("killed");
    let file = dir.join("tokens.json");
    let store = FileStore::new(&file).unwrap();
    store
        .save(&TokenSet::new("at-0").with_refresh_token("rt-0"))
        .await
        .unwrap();

    let mut holder = Worker::spawn("hold-lock", &auth.token_url(), &auth.api_url(), &file);
    holder.expect("locked").await;
    let err = store.lock(Duration::from_millis(100)).await.unwrap_err();
    assert!(
        err.to_string().contains("longer than"),
        "the lock is really held: {err}"
    );

    holder.child.kill().await.unwrap(); // SIGKILL: no chance to unlock
    let manager = manager_for(&auth.token_url(), &file);
    let refreshed = tokio::time::timeout(WORKER_TIMEOUT, manager.refresh())
        .await
        .expect("bounded")
        .expect("the OS released the dead holder's lock");
    assert_eq!(refreshed.refresh_token().unwrap().secret(), "rt-1");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_refresh_is_adopted_instead_of_spending_again() {
    let auth = AuthServer::start().await;
    let dir = temp_dir("adopt");
    let file = dir.join("tokens.json");
    FileStore::new(&file)
        .unwrap()
        .save(&TokenSet::new("at-0").with_refresh_token("rt-0"))
        .await
        .unwrap();
    let first = manager_for(&auth.token_url(), &file);
    let second = manager_for(&auth.token_url(), &file);
    assert_eq!(first.access_token().await.unwrap().secret(), "at-0");
    assert_eq!(second.access_token().await.unwrap().secret(), "at-0");

    first.refresh().await.unwrap();
    // The second process still holds rt-0, which is spent. Its refresh must
    // find rt-1 in the file and adopt it, not present rt-0 again.
    let adopted = second.refresh().await.unwrap();
    assert_eq!(adopted.refresh_token().unwrap().secret(), "rt-1");
    assert_eq!(auth.snapshot(), (1, 0, false));
    std::fs::remove_dir_all(dir).unwrap();
}

/// A FileStore whose saves fail while `broken` is set, as on a full disk.
#[derive(Debug)]
struct FailingDisk {
    inner: FileStore,
    broken: Arc<AtomicBool>,
    /// Told of every save under the lock that reached the disk.
    saved: Arc<tokio::sync::Notify>,
}

#[derive(Debug)]
struct FailingDiskLock {
    inner: Box<dyn StoreLock>,
    broken: Arc<AtomicBool>,
    saved: Arc<tokio::sync::Notify>,
}

fn disk_full() -> BoxError {
    Box::new(std::io::Error::from_raw_os_error(28)) // ENOSPC
}

#[async_trait]
impl TokenStore for FailingDisk {
    async fn load(&self) -> Result<Option<TokenSet>, BoxError> {
        self.inner.load().await
    }
    async fn save(&self, tokens: &TokenSet) -> Result<(), BoxError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(disk_full());
        }
        self.inner.save(tokens).await
    }
    async fn lock(&self, wait: Duration) -> Result<Option<Box<dyn StoreLock>>, BoxError> {
        let inner = self.inner.lock(wait).await?.unwrap();
        Ok(Some(Box::new(FailingDiskLock {
            inner,
            broken: self.broken.clone(),
            saved: self.saved.clone(),
        })))
    }
}

#[async_trait]
impl StoreLock for FailingDiskLock {
    async fn load(&mut self) -> Result<Option<TokenSet>, BoxError> {
        self.inner.load().await
    }
    async fn save(&mut self, tokens: &TokenSet) -> Result<LockedSave, BoxError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(disk_full());
        }
        let saved = self.inner.save(tokens).await;
        if saved.is_ok() {
            self.saved.notify_one();
        }
        saved
    }
    async fn release(self: Box<Self>) -> Result<(), BoxError> {
        self.inner.release().await
    }
}

#[tokio::test]
async fn failed_save_keeps_tokens_reports_and_retries() {
    let (captured, _capturing) = common::logs::capture();
    let auth = AuthServer::start().await;
    let dir = temp_dir("savefail");
    let file = dir.join("tokens.json");
    let store = FileStore::new(&file).unwrap();
    store
        .save(&TokenSet::new("at-0").with_refresh_token("rt-0"))
        .await
        .unwrap();
    let broken = Arc::new(AtomicBool::new(true));
    let saved = Arc::new(tokio::sync::Notify::new());
    let manager = TokenManager::builder(&auth.token_url())
        .client_id("fleet")
        .store(FailingDisk {
            inner: FileStore::new(&file).unwrap(),
            broken: broken.clone(),
            saved: saved.clone(),
        })
        .build()
        .unwrap();
    manager.access_token().await.unwrap();

    let err = manager.refresh().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store {
                operation: "save",
                ..
            }
        ),
        "{err:?}"
    );
    let current = manager.cached_tokens().unwrap();
    assert_eq!(
        current.refresh_token().unwrap().secret(),
        "rt-1",
        "kept in memory"
    );
    assert_eq!(manager.access_token().await.unwrap().secret(), "at-1");
    let logs = captured.text();
    assert!(
        logs.contains("could not save the refreshed tokens"),
        "{logs}"
    );
    let on_disk = store.load().await.unwrap().unwrap();
    assert_eq!(on_disk.refresh_token().unwrap().secret(), "rt-0");

    // Once the disk is usable again, the background retry saves the set.
    // Nothing here needs the network any more, so time can be paused: the
    // retry's backoff passes at once, and in order.
    broken.store(false, Ordering::SeqCst);
    tokio::time::pause();
    tokio::time::timeout(Duration::from_secs(2), saved.notified())
        .await
        .expect("the first retry, after 1 s, saves the set");
    let on_disk = store.load().await.unwrap().unwrap();
    assert_eq!(on_disk.refresh_token().unwrap().secret(), "rt-1");
    std::fs::remove_dir_all(dir).unwrap();
}
