//! Session events out: a failed refresh once per attempt, and the end of a
//! session (a dead refresh token, a revocation) for the app to prompt a
//! sign-in or alert.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use reqwest_oauth2_refresh::{SessionEnd, TokenSet};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::{builder, token_endpoint_answers};

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn push(&self, what: String) {
        self.0.lock().unwrap().push(what);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn session_end(end: &SessionEnd) -> String {
    match end {
        SessionEnd::RefreshTokenRejected(error) => format!("ended: {error}"),
        SessionEnd::Revoked => "ended: revoked".into(),
        _ => "ended: other".into(),
    }
}

#[tokio::test]
async fn a_dead_refresh_token_fails_once_and_ends_the_session_once_for_a_herd() {
    let server = MockServer::start().await;
    let dead = ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"}));
    token_endpoint_answers(&server, dead, 1).await;
    let seen = Seen::default();
    let (failures, ends) = (seen.clone(), seen.clone());
    let manager = builder(&server)
        .on_refresh_failure(move |error| failures.push(format!("failed: {error}")))
        .on_session_end(move |end| ends.push(session_end(end)))
        .initial_tokens(
            TokenSet::new("at-1")
                .with_refresh_token("rt-1")
                .with_expires_in(Duration::from_secs(60))
                .with_issued_at(std::time::SystemTime::now() - Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    let callers = (0..50).map(|_| manager.access_token());
    for result in join_all(callers).await {
        assert!(result.is_err());
    }
    let all = seen.all();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all[0].starts_with("failed: the refresh token was rejected"),
        "{all:?}"
    );
    assert!(
        all[1].starts_with("ended: the refresh token was rejected"),
        "{all:?}"
    );
}

#[tokio::test]
async fn a_transient_failure_is_reported_but_does_not_end_the_session() {
    let server = MockServer::start().await;
    token_endpoint_answers(&server, ResponseTemplate::new(503), 3).await;
    let seen = Seen::default();
    let (failures, ends) = (seen.clone(), seen.clone());
    let manager = builder(&server)
        .on_refresh_failure(move |error| failures.push(format!("failed: {error}")))
        .on_session_end(move |end| ends.push(session_end(end)))
        .initial_tokens(TokenSet::new("at-1").with_refresh_token("rt-1"))
        .build()
        .unwrap();
    assert!(manager.refresh().await.is_err());
    assert_eq!(
        seen.all(),
        ["failed: the authorization server answered 503 Service Unavailable"]
    );
}

#[tokio::test]
async fn revoking_ends_the_session() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let seen = Seen::default();
    let ends = seen.clone();
    let manager = builder(&server)
        .revocation_url(&format!("{}/revoke", server.uri()))
        .on_session_end(move |end| ends.push(session_end(end)))
        .initial_tokens(TokenSet::new("at-1").with_refresh_token("rt-1"))
        .build()
        .unwrap();
    manager.revoke().await.unwrap();
    assert_eq!(seen.all(), ["ended: revoked"]);
}

#[tokio::test]
async fn a_panicking_hook_does_not_lose_the_refresh() {
    let server = MockServer::start().await;
    let ok = ResponseTemplate::new(200).set_body_json(common::token_body(
        "at-2",
        Some("rt-2"),
        Some(3600),
    ));
    token_endpoint_answers(&server, ok, 1).await;
    let manager = builder(&server)
        .on_refresh(|_| panic!("a buggy hook"))
        .initial_tokens(TokenSet::new("at-1").with_refresh_token("rt-1"))
        .build()
        .unwrap();
    assert_eq!(
        manager.refresh().await.unwrap().access_token().secret(),
        "at-2"
    );
}
