//! The default refresh mode, stale-while-revalidate: inside the leeway no
//! `access_token` caller waits for the refresh (for the one request through
//! the middleware that starts it, see `shutdown.rs`), one refresh runs for
//! everyone, its tokens
//! are saved before any request uses them, and once the token has really
//! expired callers wait for the refresh and get its error. Time moves
//! through the injected clock; the token endpoint and the store hold their
//! answers on gates, so nothing depends on timing.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::gate::{Answer, Gate, GatedTokenEndpoint};
use common::{TestClock, builder_at, token_body};
use futures_util::future::join_all;
use reqwest_oauth2_refresh::{BoxError, Error, MemoryStore, TokenManager, TokenSet, TokenStore};
use serde_json::json;
use tokio::sync::watch;

const CALLERS: usize = 50;

fn old_tokens() -> TokenSet {
    TokenSet::new("old-access")
        .with_refresh_token("r1")
        .with_expires_in(Duration::from_secs(3600))
}

/// A manager with the default settings on `token`, its clock, and tokens
/// that expire in an hour.
fn manager(token: &GatedTokenEndpoint, store: impl TokenStore) -> (TokenManager, Arc<TestClock>) {
    let clock = TestClock::new();
    let manager = builder_at(&token.url())
        .clock(clock.clone())
        .store(store)
        .initial_tokens(old_tokens())
        .build()
        .unwrap();
    (manager, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_the_leeway_nobody_waits_and_one_refresh_runs() {
    let gate = Gate::new();
    let answer = Answer::ok(token_body("new-access", Some("r2"), Some(3600))).held();
    let token = GatedTokenEndpoint::start(&gate, vec![answer]).await;
    let (manager, clock) = manager(&token, MemoryStore::new());
    manager.load_tokens().await.unwrap();
    clock.advance(Duration::from_secs(3590)); // inside the 60 s leeway, valid

    // The endpoint holds its answer until the gate opens, which happens
    // only after every caller returned: had one waited, none would return.
    let calls = (0..CALLERS).map(|_| manager.access_token());
    for token in join_all(calls).await {
        assert_eq!(token.unwrap().secret(), "old-access");
    }
    token.arrived(1).await; // the one refresh is under way
    assert_eq!(
        manager.cached_tokens().unwrap().access_token().secret(),
        "old-access"
    );
    gate.open();
    common::until_published(&manager, "new-access").await;
    assert_eq!(manager.access_token().await.unwrap().secret(), "new-access");
    // `token` checks, when dropped, that it was called exactly once.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_expiry_callers_wait_for_the_refresh_and_get_its_error() {
    let gate = Gate::new();
    let dead = json!({"error": "invalid_grant", "error_description": "revoked"});
    let token =
        GatedTokenEndpoint::start(&gate, vec![Answer::status(400, Some(dead)).held()]).await;
    let (manager, clock) = manager(&token, MemoryStore::new());
    manager.load_tokens().await.unwrap();
    clock.advance(Duration::from_secs(3601)); // expired

    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move { manager.access_token().await })
        })
        .collect();
    token.arrived(1).await;
    // The answer is held: every caller is still waiting for it.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(
        callers.iter().all(|c| !c.is_finished()),
        "a caller did not wait"
    );
    gate.open();
    for caller in callers {
        let result = caller.await.unwrap();
        assert!(
            matches!(result, Err(Error::InvalidGrant { .. })),
            "{result:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_inside_the_leeway_keeps_the_token_until_it_expires() {
    let gate = Gate::new();
    gate.open();
    let dead = json!({"error": "invalid_grant"});
    let token = GatedTokenEndpoint::start(&gate, vec![Answer::status(400, Some(dead))]).await;
    let (manager, clock) = manager(&token, MemoryStore::new());
    manager.load_tokens().await.unwrap();
    clock.advance(Duration::from_secs(3590));
    assert_eq!(manager.access_token().await.unwrap().secret(), "old-access");
    token.arrived(1).await;
    // The failure is remembered (invalid_grant until the tokens change):
    // the valid token is still handed out, with no second call.
    for _ in 0..CALLERS {
        assert_eq!(manager.access_token().await.unwrap().secret(), "old-access");
    }
    clock.advance(Duration::from_secs(11)); // expired now
    let result = manager.access_token().await;
    assert!(
        matches!(result, Err(Error::InvalidGrant { .. })),
        "{result:?}"
    );
}

/// A store whose saves wait for a gate, and that records them.
#[derive(Debug)]
struct HeldSaves {
    open: watch::Sender<bool>,
    saved: Mutex<Vec<TokenSet>>,
}

#[async_trait]
impl TokenStore for HeldSaves {
    async fn load(&self) -> Result<Option<TokenSet>, BoxError> {
        Ok(self.saved.lock().unwrap().last().cloned())
    }
    async fn save(&self, tokens: &TokenSet) -> Result<(), BoxError> {
        // The seed of the empty store is saved at once.
        if tokens.access_token().secret() != "old-access" {
            let mut open = self.open.subscribe();
            let opened = tokio::time::timeout(Duration::from_secs(10), open.wait_for(|o| *o));
            opened
                .await
                .map_err(|_| "the test never opened the save")??;
        }
        self.saved.lock().unwrap().push(tokens.clone());
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Shared(Arc<HeldSaves>);

#[async_trait]
impl TokenStore for Shared {
    async fn load(&self) -> Result<Option<TokenSet>, BoxError> {
        self.0.load().await
    }
    async fn save(&self, tokens: &TokenSet) -> Result<(), BoxError> {
        self.0.save(tokens).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refreshed_token_is_saved_before_anyone_uses_it() {
    let gate = Gate::new();
    gate.open();
    let answer = Answer::ok(token_body("new-access", Some("r2"), Some(3600)));
    let token = GatedTokenEndpoint::start(&gate, vec![answer]).await;
    let store = Shared(Arc::new(HeldSaves {
        open: watch::channel(false).0,
        saved: Mutex::new(Vec::new()),
    }));
    let (manager, clock) = manager(&token, store.clone());
    manager.load_tokens().await.unwrap();
    clock.advance(Duration::from_secs(3590));
    assert_eq!(manager.access_token().await.unwrap().secret(), "old-access");
    token.arrived(1).await;
    // The new tokens have arrived, but their save is held: nobody gets them.
    for _ in 0..CALLERS {
        tokio::task::yield_now().await;
        assert_eq!(manager.access_token().await.unwrap().secret(), "old-access");
    }
    assert_eq!(store.0.saved.lock().unwrap().len(), 1, "only the seed");
    store.0.open.send_replace(true);
    common::until_published(&manager, "new-access").await;
    let saved = store.0.saved.lock().unwrap().last().cloned().unwrap();
    assert_eq!(saved.access_token().secret(), "new-access");
    assert_eq!(saved.refresh_token().unwrap().secret(), "r2");
}
