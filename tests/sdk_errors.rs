//! What an SDK author builds on: our errors found behind the README's
//! recommended stack (tracing, retry, this middleware), classified honestly,
//! and a revoked session that stays over whatever the store can do.

mod common;

use std::time::Duration;

use async_trait::async_trait;
use reqwest_middleware::ClientWithMiddleware;
use reqwest_oauth2_refresh::{
    BoxError, Error, OAuth2Middleware, StoreError, TokenManager, TokenSet, TokenStore,
};
use reqwest_retry::{RetryTransientMiddleware, policies::ExponentialBackoff};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::builder;

/// The stack the README recommends, with fast retries.
fn recommended_stack(manager: &TokenManager, api: &MockServer) -> ClientWithMiddleware {
    let retry = ExponentialBackoff::builder()
        .retry_bounds(Duration::from_millis(1), Duration::from_millis(2))
        .build_with_max_retries(2);
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(reqwest_tracing::TracingMiddleware::default())
        .with(RetryTransientMiddleware::new_with_policy(retry))
        .with(
            OAuth2Middleware::builder(manager.clone())
                .allow_origin(&api.uri())
                .build()
                .unwrap(),
        )
        .build()
}

async fn token_endpoint_answers(auth: &MockServer, answer: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(answer)
        .mount(auth)
        .await;
}

fn expired() -> TokenSet {
    TokenSet::new("at-1")
        .with_refresh_token("rt-1")
        .with_expires_in(Duration::from_secs(60))
        .with_issued_at(std::time::SystemTime::now() - Duration::from_secs(3600))
}

async fn error_through_the_stack(answer: ResponseTemplate) -> reqwest_middleware::Error {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_answers(&auth, answer).await;
    let manager = builder(&auth)
        .max_retries(0)
        .initial_tokens(expired())
        .build()
        .unwrap();
    recommended_stack(&manager, &api)
        .get(format!("{}/me", api.uri()))
        .send()
        .await
        .expect_err("the refresh fails")
}

#[tokio::test]
async fn invalid_grant_is_found_behind_retry_and_tracing() {
    let answer = ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"}));
    let err = error_through_the_stack(answer).await;
    if let reqwest_middleware::Error::Middleware(e) = &err {
        assert!(
            e.downcast_ref::<Error>().is_none(),
            "if this finds it, reqwest-retry stopped wrapping and find_in is moot"
        );
    }
    let ours = Error::find_in(&err).expect("our error behind RetryError");
    assert!(matches!(ours, Error::InvalidGrant { .. }), "{ours:?}");
    assert!(ours.needs_sign_in() && !ours.is_transient());
}

#[tokio::test]
async fn invalid_client_and_server_errors_are_found_and_classified() {
    let answer = ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"}));
    let err = error_through_the_stack(answer).await;
    let ours = Error::find_in(&err).expect("found");
    assert!(matches!(ours, Error::OAuth { .. }) && !ours.is_transient() && !ours.needs_sign_in());

    let err = error_through_the_stack(ResponseTemplate::new(503)).await;
    let ours = Error::find_in(&err).expect("found");
    assert!(ours.is_transient(), "{ours:?}");
}

#[tokio::test]
async fn an_api_failure_that_is_not_ours_is_not_found() {
    // Nothing listens on this port: the API call itself fails.
    let manager = TokenManager::builder("http://127.0.0.1:9/token")
        .initial_tokens(TokenSet::new("at-1"))
        .build()
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(
            OAuth2Middleware::builder(manager)
                .allow_origin("http://127.0.0.1:9")
                .build()
                .unwrap(),
        )
        .build();
    let err = client
        .get("http://127.0.0.1:9/me")
        .send()
        .await
        .unwrap_err();
    assert!(Error::find_in(&err).is_none(), "{err:?}");
}

/// The rustdoc's own example store: it cannot clear.
#[derive(Debug, Default)]
struct Keychain(std::sync::Mutex<Option<TokenSet>>);

#[async_trait]
impl TokenStore for Keychain {
    async fn load(&self) -> Result<Option<TokenSet>, BoxError> {
        Ok(self.0.lock().unwrap().clone())
    }
    async fn save(&self, tokens: &TokenSet) -> Result<(), BoxError> {
        *self.0.lock().unwrap() = Some(tokens.clone());
        Ok(())
    }
}

#[tokio::test]
async fn a_revoked_set_is_never_served_again_even_if_the_store_cannot_forget_it() {
    let auth = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&auth)
        .await;
    let manager = builder(&auth)
        .revocation_url(&format!("{}/revoke", auth.uri()))
        .store(Keychain::default())
        .initial_tokens(TokenSet::new("at-1").with_refresh_token("rt-1"))
        .build()
        .unwrap();
    manager.load_tokens().await.unwrap();
    let err = manager.revoke().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store {
                operation: "clear",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        !err.is_transient(),
        "a store that cannot clear will not learn to: {err}"
    );
    assert!(
        err.to_string().contains("does not support clearing"),
        "{err}"
    );
    let after = manager.load_tokens().await.unwrap_err();
    assert!(
        matches!(after, Error::NoTokens),
        "the revoked set came back: {after:?}"
    );
    assert!(manager.cached_tokens().is_none());
}

#[test]
fn store_errors_say_whether_trying_again_helps() {
    let store = |source: BoxError| Error::Store {
        operation: "load",
        source: std::sync::Arc::from(source),
    };
    assert!(!store(StoreError::permanent("refused").into()).is_transient());
    assert!(store(StoreError::transient("redis restarting").into()).is_transient());
    let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
    assert!(!store(Box::new(denied)).is_transient());
    let full = std::io::Error::from_raw_os_error(28); // ENOSPC: space may come back
    assert!(store(Box::new(full)).is_transient());
    assert!(store("connection reset".into()).is_transient());
    let wrapped = StoreError::transient("cannot read").with_source(std::io::Error::other("x"));
    let shown = store(wrapped.into()).to_string();
    assert_eq!(shown, "the token store failed to load: cannot read");
}

#[tokio::test]
async fn a_failing_proactive_refresh_logs_once_per_attempt_not_once_per_request() {
    let (captured, _capturing) = common::logs::capture();
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_answers(&auth, ResponseTemplate::new(503)).await;
    Mock::given(path("/me"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1000)
        .mount(&api)
        .await;
    let clock = common::TestClock::new();
    let failed = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = failed.clone();
    let manager = builder(&auth)
        .clock(clock.clone())
        .initial_tokens(
            TokenSet::new("at-1")
                .with_refresh_token("rt-1")
                .with_expires_in(Duration::from_secs(3600)),
        )
        .on_refresh_failure(move |_| notify.notify_one())
        .build()
        .unwrap();
    clock.advance(Duration::from_secs(3590)); // inside the leeway, still valid
    let client = common::client(&manager, &api);
    let url = format!("{}/me", api.uri());
    let requests = (0..1000).map(|_| client.get(&url).send());
    for response in futures_util::future::join_all(requests).await {
        assert_eq!(response.unwrap().status(), 200, "the valid token is used");
    }
    // The refresh runs in the background (stale-while-revalidate): its
    // retries are logged before it fails, so count once it has.
    tokio::time::timeout(Duration::from_secs(10), failed.notified())
        .await
        .expect("the proactive refresh fails within its budget");
    let warnings = captured
        .text()
        .lines()
        .filter(|l| l.contains(" WARN "))
        .count();
    // One attempt (the cooldown covers the rest): its retries, its failure,
    // and one line for going on with the valid token.
    assert!(
        (1..=6).contains(&warnings),
        "{warnings} WARN lines:\n{}",
        captured.text()
    );
}
