//! The refresh protocol with a store that has a lock, against a scripted
//! store: what the manager does when the stored set moved under it.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{builder, token_body, token_endpoint_issues};
use reqwest_oauth2_refresh::{BoxError, LockedSave, StoreLock, TokenSet, TokenStore};
use serde_json::json;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Answers lock loads from a script and records what happens.
#[derive(Debug, Default)]
struct Script {
    loads: VecDeque<Option<TokenSet>>,
    save_answer: Option<LockedSave>,
    /// How many locked saves fail (transiently) before they work.
    save_failures: u32,
    events: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct ScriptedStore(Arc<Mutex<Script>>);

#[derive(Debug)]
struct ScriptedLock(Arc<Mutex<Script>>);

#[async_trait]
impl TokenStore for ScriptedStore {
    async fn load(&self) -> Result<Option<TokenSet>, BoxError> {
        Ok(Some(TokenSet::new("at-0").with_refresh_token("rt-0")))
    }
    async fn save(&self, _: &TokenSet) -> Result<(), BoxError> {
        self.0.lock().unwrap().events.push("plain save".into());
        Ok(())
    }
    async fn lock(&self, _: Duration) -> Result<Option<Box<dyn StoreLock>>, BoxError> {
        self.0.lock().unwrap().events.push("lock".into());
        Ok(Some(Box::new(ScriptedLock(self.0.clone()))))
    }
}

#[async_trait]
impl StoreLock for ScriptedLock {
    async fn load(&mut self) -> Result<Option<TokenSet>, BoxError> {
        let mut script = self.0.lock().unwrap();
        script.events.push("load".into());
        Ok(script.loads.pop_front().expect("a scripted load"))
    }
    async fn save(&mut self, tokens: &TokenSet) -> Result<LockedSave, BoxError> {
        let mut script = self.0.lock().unwrap();
        script
            .events
            .push(format!("save {}", tokens.refresh_token().unwrap().secret()));
        if script.save_failures > 0 {
            script.save_failures -= 1;
            return Err("the connection was reset".into());
        }
        Ok(script.save_answer.unwrap_or(LockedSave::Saved))
    }
    async fn release(self: Box<Self>) -> Result<(), BoxError> {
        self.0.lock().unwrap().events.push("release".into());
        Ok(())
    }
}

fn ours() -> Option<TokenSet> {
    Some(TokenSet::new("at-0").with_refresh_token("rt-0"))
}

fn peers() -> Option<TokenSet> {
    Some(
        TokenSet::new("at-peer")
            .with_refresh_token("rt-peer")
            .with_expires_in(Duration::from_secs(3600)),
    )
}

#[tokio::test]
async fn refresh_under_the_lock_saves_then_releases() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, token_body("at-1", Some("rt-1"), None), 1).await;
    let store = ScriptedStore::default();
    store.0.lock().unwrap().loads.push_back(ours());
    let manager = builder(&server).store(store.clone()).build().unwrap();
    manager.access_token().await.unwrap();
    manager.refresh().await.unwrap();
    assert_eq!(
        store.0.lock().unwrap().events,
        ["lock", "load", "save rt-1", "release"]
    );
}

/// Releasing the lock with the spent refresh token still stored would let
/// a peer spend it again (the chaos soak's Redis phase lost the family that
/// way when a connection reset hit the save).
#[tokio::test]
async fn a_failed_save_under_the_lock_is_tried_again_before_the_lock_is_released() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, token_body("at-1", Some("rt-1"), None), 1).await;
    let store = ScriptedStore::default();
    {
        let mut script = store.0.lock().unwrap();
        script.loads.push_back(ours());
        script.save_failures = 1;
    }
    let manager = builder(&server).store(store.clone()).build().unwrap();
    manager.access_token().await.unwrap();
    let refreshed = manager.refresh().await.unwrap();
    assert_eq!(refreshed.refresh_token().unwrap().secret(), "rt-1");
    assert_eq!(
        store.0.lock().unwrap().events,
        ["lock", "load", "save rt-1", "save rt-1", "release"]
    );
}

#[tokio::test]
async fn a_fresh_set_from_a_peer_is_adopted_without_calling_the_server() {
    let server = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let store = ScriptedStore::default();
    store.0.lock().unwrap().loads.push_back(peers());
    let manager = builder(&server).store(store.clone()).build().unwrap();
    manager.access_token().await.unwrap();
    let adopted = manager.refresh().await.unwrap();
    assert_eq!(adopted.access_token().secret(), "at-peer");
    assert_eq!(store.0.lock().unwrap().events, ["lock", "load", "release"]);
}

#[tokio::test]
async fn a_fenced_off_save_adopts_the_newer_stored_set() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, token_body("at-1", Some("rt-1"), None), 1).await;
    let store = ScriptedStore::default();
    {
        let mut script = store.0.lock().unwrap();
        script.loads.extend([ours(), peers()]);
        script.save_answer = Some(LockedSave::Superseded);
    }
    let manager = builder(&server).store(store.clone()).build().unwrap();
    manager.access_token().await.unwrap();
    let after = manager.refresh().await.unwrap();
    assert_eq!(after.access_token().secret(), "at-peer");
    assert_eq!(manager.access_token().await.unwrap().secret(), "at-peer");
}

#[tokio::test]
async fn invalid_grant_rereads_the_store_and_adopts_a_peers_rotation() {
    let server = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .expect(1)
        .mount(&server)
        .await;
    let store = ScriptedStore::default();
    store.0.lock().unwrap().loads.extend([ours(), peers()]);
    let manager = builder(&server).store(store.clone()).build().unwrap();
    manager.access_token().await.unwrap();
    let after = manager.refresh().await.unwrap();
    assert_eq!(after.refresh_token().unwrap().secret(), "rt-peer");
}

#[tokio::test]
async fn invalid_grant_with_nothing_newer_stored_is_the_callers() {
    let server = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .expect(1)
        .mount(&server)
        .await;
    let store = ScriptedStore::default();
    store.0.lock().unwrap().loads.extend([ours(), ours()]);
    let manager = builder(&server).store(store.clone()).build().unwrap();
    manager.access_token().await.unwrap();
    assert!(matches!(
        manager.refresh().await.unwrap_err(),
        reqwest_oauth2_refresh::Error::InvalidGrant { .. }
    ));
    assert_eq!(
        store.0.lock().unwrap().events,
        ["lock", "load", "load", "release"]
    );
}
