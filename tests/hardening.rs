//! No hidden panics and no unbounded waits: corrupt stored data, stores
//! that panic or hang, durations up to `Duration::MAX`, current-thread
//! runtimes, a background refresh that panics, and a save retry that meets
//! a hanging store. Store-only scenarios run on paused time (no network is
//! involved, so tokio's clock can jump); the rest use an injected clock.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest_oauth2_refresh::{
    BoxError, Clock, Error, StoreLock, TokenManager, TokenSet, TokenStore,
};
use serde_json::json;
use tokio::sync::Notify;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::{TestClock, builder, token_body, token_endpoint_issues};

/// What a scripted store does when called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Answer,
    Fail,
    Panic,
    Hang,
}

/// A store whose load, save and lock follow a script the test changes.
#[derive(Debug)]
struct Scripted {
    stored: std::sync::Mutex<Option<TokenSet>>,
    load: std::sync::Mutex<Act>,
    save: std::sync::Mutex<Act>,
    lock: std::sync::Mutex<Act>,
    loads: AtomicUsize,
    locks: AtomicUsize,
    /// Told when a lock call starts.
    lock_called: Notify,
}

impl Scripted {
    fn new(stored: Option<TokenSet>) -> Arc<Self> {
        Arc::new(Self {
            stored: std::sync::Mutex::new(stored),
            load: std::sync::Mutex::new(Act::Answer),
            save: std::sync::Mutex::new(Act::Answer),
            lock: std::sync::Mutex::new(Act::Answer),
            loads: AtomicUsize::new(0),
            locks: AtomicUsize::new(0),
            lock_called: Notify::new(),
        })
    }

    fn set(slot: &std::sync::Mutex<Act>, act: Act) {
        *slot.lock().unwrap() = act;
    }
}

async fn act<T>(slot: &std::sync::Mutex<Act>, answer: T) -> Result<T, BoxError> {
    let act = *slot.lock().unwrap();
    match act {
        Act::Answer => Ok(answer),
        Act::Fail => Err("the disk is full".into()),
        Act::Panic => panic!("a store bug"),
        Act::Hang => std::future::pending().await,
    }
}

#[async_trait]
impl TokenStore for Scripted {
    async fn load(&self) -> Result<Option<TokenSet>, BoxError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let stored = self.stored.lock().unwrap().clone();
        act(&self.load, stored).await
    }

    async fn save(&self, tokens: &TokenSet) -> Result<(), BoxError> {
        act(&self.save, ()).await?;
        *self.stored.lock().unwrap() = Some(tokens.clone());
        Ok(())
    }

    async fn lock(&self, _wait: Duration) -> Result<Option<Box<dyn StoreLock>>, BoxError> {
        self.locks.fetch_add(1, Ordering::SeqCst);
        self.lock_called.notify_one();
        act(&self.lock, None).await
    }
}

/// A manager whose token endpoint is never reached.
fn offline(store: Arc<Scripted>) -> TokenManager {
    TokenManager::builder("https://as.invalid/token")
        .client_id("c")
        .store(store)
        .build()
        .unwrap()
}

fn expired() -> TokenSet {
    TokenSet::new("old")
        .with_refresh_token("r1")
        .with_expires_in(Duration::from_secs(60))
        .with_issued_at(SystemTime::now() - Duration::from_secs(3600))
}

#[cfg(feature = "file-store")]
#[tokio::test]
async fn a_planted_token_file_with_a_huge_issued_at_is_a_typed_error() {
    use reqwest_oauth2_refresh::FileStore;
    let dir = std::env::temp_dir().join(format!("oauth2-refresh-hardening-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens.json");
    let planted = json!({ "access_token": "a", "issued_at": u64::MAX }).to_string();
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        std::io::Write::write_all(&mut options.open(&file).unwrap(), planted.as_bytes()).unwrap();
    }
    let manager = TokenManager::builder("https://as.invalid/token")
        .store(FileStore::new(&file).unwrap())
        .build()
        .unwrap();
    let err = manager.load_tokens().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store {
                operation: "load",
                ..
            }
        ),
        "{err:?}"
    );
    let chain = format!("{:?}", std::error::Error::source(&err));
    assert!(
        !chain.contains("panicked"),
        "a parse error, not a panic: {chain}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_store_that_panics_while_loading_fails_the_call_not_the_task() {
    let store = Scripted::new(Some(expired()));
    Scripted::set(&store.load, Act::Panic);
    let err = offline(store).load_tokens().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store {
                operation: "load",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_that_hangs_times_out_as_a_store_failure_that_is_not_cached() {
    let store = Scripted::new(Some(expired()));
    Scripted::set(&store.load, Act::Hang);
    let manager = TokenManager::builder("https://as.invalid/token")
        .store(store.clone())
        .store_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = manager.load_tokens().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store {
                operation: "load",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    // The next caller tries the store again: no cooldown for store failures.
    assert!(manager.load_tokens().await.is_err());
    assert_eq!(store.loads.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_whose_store_lock_hangs_is_retried_by_the_next_caller() {
    let store = Scripted::new(Some(expired()));
    Scripted::set(&store.lock, Act::Hang);
    let manager = offline(store.clone());
    for _ in 0..2 {
        let err = manager.access_token().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Store {
                    operation: "lock",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert_eq!(
        store.locks.load(Ordering::SeqCst),
        2,
        "not cached for the cooldown"
    );
}

#[tokio::test]
async fn every_duration_up_to_the_maximum_runs_without_overflow() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(503).insert_header("retry-after", "18446744073709551615"),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    token_endpoint_issues(&server, token_body("a2", None, Some(60)), 1).await;
    let manager = TokenManager::builder(&common::token_url(&server))
        .client_id("c")
        .initial_tokens(expired())
        .leeway(Duration::MAX)
        .refresh_timeout(Duration::MAX)
        .attempt_timeout(Duration::MAX)
        .retry_base_delay(Duration::MAX)
        .failure_cooldown(Duration::MAX)
        .store_timeout(Duration::MAX)
        .build()
        .unwrap();
    // A Retry-After of (uint64)-1 does not fit any budget: the 503 is the
    // answer, at once, instead of a panic or a wait of 584 billion years.
    let err = manager.refresh().await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let next = manager.refresh().await.unwrap();
    assert_eq!(next.access_token().secret(), "a2");
}

#[tokio::test(flavor = "current_thread")]
async fn a_current_thread_runtime_refreshes_in_the_foreground_and_the_background() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, token_body("a2", None, Some(3600)), 1).await;
    let clock = TestClock::new();
    let refreshed = Arc::new(Notify::new());
    let told = refreshed.clone();
    let manager = builder(&server)
        .clock(clock.clone())
        .background_refresh(true)
        .on_refresh(move |_| told.notify_one())
        .initial_tokens(
            TokenSet::new("a1")
                .with_refresh_token("r1")
                .with_expires_in(Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    assert_eq!(manager.access_token().await.unwrap().secret(), "a1");
    clock.advance(Duration::from_secs(3590));
    assert_eq!(manager.access_token().await.unwrap().secret(), "a1");
    tokio::time::timeout(Duration::from_secs(10), refreshed.notified())
        .await
        .expect("the background refresh ran on the current thread");
    common::until_published(&manager, "a2").await;
}

/// A clock that panics once, on the first call after it is armed.
#[derive(Debug, Default)]
struct PanickyClock {
    inner: TestClock,
    armed: AtomicBool,
    fired: AtomicBool,
}

impl Clock for PanickyClock {
    fn now(&self) -> SystemTime {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.fired.store(true, Ordering::SeqCst);
            panic!("the clock panics (a test fault)");
        }
        self.inner.now()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn background_refresh_still_runs_after_its_task_panicked() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    token_endpoint_issues(&server, token_body("a2", None, Some(3600)), 1).await;
    let clock = Arc::new(PanickyClock::default());
    let refreshed = Arc::new(Notify::new());
    let told = refreshed.clone();
    let manager = builder(&server)
        .clock(clock.clone())
        .max_retries(0)
        .background_refresh(true)
        .on_refresh(move |_| told.notify_one())
        .initial_tokens(
            TokenSet::new("a1")
                .with_refresh_token("r1")
                .with_expires_in(Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    manager.access_token().await.unwrap();
    clock.inner.advance(Duration::from_secs(3590));
    // A first background refresh fails (the 500), which records a failure:
    // the next one reads the clock before it decides, and that read panics.
    let failed = manager.refresh().await.unwrap_err();
    assert!(matches!(failed, Error::HttpStatus { .. }), "{failed:?}");
    clock.inner.advance(Duration::from_secs(6)); // past the cooldown
    assert_eq!(manager.access_token().await.unwrap().secret(), "a1");
    clock.armed.store(true, Ordering::SeqCst);
    for _ in 0..100 {
        if clock.fired.load(Ordering::SeqCst) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        clock.fired.load(Ordering::SeqCst),
        "the background task ran and panicked"
    );
    tokio::task::yield_now().await;
    // Background refresh is not stuck: the next stale read starts another.
    assert_eq!(manager.access_token().await.unwrap().secret(), "a1");
    tokio::time::timeout(Duration::from_secs(10), refreshed.notified())
        .await
        .expect("a new background refresh after the panicked one");
}

#[tokio::test]
async fn a_save_retry_meeting_a_hanging_store_holds_the_refresh_lock_briefly() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, token_body("a2", Some("r2"), Some(3600)), 1).await;
    let store = Scripted::new(Some(expired()));
    let manager = TokenManager::builder(&common::token_url(&server))
        .client_id("c")
        .store(store.clone())
        .build()
        .unwrap();
    Scripted::set(&store.save, Act::Fail);
    let err = manager.access_token().await.unwrap_err();
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
    // From here on the store hangs, and nothing needs the network: pause
    // time, let the background retry take the refresh lock and meet the
    // hanging store, and time (virtually) how long a caller waits for it.
    Scripted::set(&store.lock, Act::Hang);
    Scripted::set(&store.save, Act::Hang);
    tokio::time::pause();
    // The refresh's own lock call left a notification behind: take it.
    let _ = futures_util::FutureExt::now_or_never(store.lock_called.notified());
    let locks_before = store.locks.load(Ordering::SeqCst);
    store.lock_called.notified().await;
    assert_eq!(store.locks.load(Ordering::SeqCst), locks_before + 1);
    let started = tokio::time::Instant::now();
    let set = manager.set_tokens(TokenSet::new("a3")).await;
    let waited = started.elapsed();
    assert!(
        matches!(
            set,
            Err(Error::Store {
                operation: "save",
                ..
            })
        ),
        "{set:?}"
    );
    // 10 s store timeout: the retry's lock call (11 s), then our own save.
    assert!(waited <= Duration::from_secs(41), "waited {waited:?}");
}
