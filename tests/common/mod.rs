//! Shared test helpers: a clock the tests move, token responses, and a
//! client wired like a user's.
#![allow(dead_code)]

pub mod auth_server;
pub mod gate;
pub mod logs;
pub mod service;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use reqwest_middleware::ClientWithMiddleware;
use reqwest_oauth2_refresh::{Clock, OAuth2Middleware, TokenManager, TokenManagerBuilder};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Real time plus an offset that tests advance; nothing sleeps.
#[derive(Debug, Default)]
pub struct TestClock {
    offset_ms: AtomicU64,
}

impl TestClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}

/// An RFC 6749 §5.1 success body.
pub fn token_body(access: &str, refresh: Option<&str>, expires_in: Option<u64>) -> Value {
    let mut body = json!({ "access_token": access, "token_type": "Bearer" });
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    if let Some(expires_in) = expires_in {
        body["expires_in"] = json!(expires_in);
    }
    body
}

/// The token endpoint answers `body` (200) to `times` POSTs.
pub async fn token_endpoint_issues(server: &MockServer, body: Value, times: u64) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(times)
        .mount(server)
        .await;
}

/// The token endpoint gives `answer` to exactly `times` POSTs.
pub async fn token_endpoint_answers(server: &MockServer, answer: ResponseTemplate, times: u64) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(answer)
        .expect(times)
        .mount(server)
        .await;
}

/// The token endpoint gives `answer` to the first `times` POSTs; the mocks
/// mounted after this one answer the rest.
pub async fn token_endpoint_answers_first(
    server: &MockServer,
    answer: ResponseTemplate,
    times: u64,
) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(answer)
        .up_to_n_times(times)
        .expect(times)
        .mount(server)
        .await;
}

pub fn token_url(server: &MockServer) -> String {
    format!("{}/token", server.uri())
}

/// A public-client manager for `server`'s `/token`, with fast retries so
/// that failure tests finish quickly.
pub fn builder(server: &MockServer) -> TokenManagerBuilder {
    builder_at(&token_url(server))
}

/// [`builder`] for the token endpoint at `token_url`.
pub fn builder_at(token_url: &str) -> TokenManagerBuilder {
    TokenManager::builder(token_url)
        .client_id("test-client")
        .retry_base_delay(Duration::from_millis(1))
        .attempt_timeout(Duration::from_secs(5))
}

/// A client whose only middleware is ours, allowed to send to `api`.
pub fn client(manager: &TokenManager, api: &MockServer) -> ClientWithMiddleware {
    let auth = OAuth2Middleware::builder(manager.clone())
        .allow_origin(&api.uri())
        .build()
        .expect("middleware");
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build()
}

/// Our error inside a middleware error, or a panic saying what it was.
pub fn our_error(err: &reqwest_middleware::Error) -> &reqwest_oauth2_refresh::Error {
    match err {
        reqwest_middleware::Error::Middleware(e) => e
            .downcast_ref::<reqwest_oauth2_refresh::Error>()
            .unwrap_or_else(|| panic!("not our error: {e:?}")),
        other => panic!("not a middleware error: {other:?}"),
    }
}

/// The form fields of a recorded request body.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Waits (bounded) until `manager` has published the set with `access`:
/// `on_refresh` runs just before the new set is published, so a test woken
/// by the hook must not expect to see it at once.
pub async fn until_published(manager: &TokenManager, access: &str) {
    let published = async {
        while manager
            .cached_tokens()
            .is_none_or(|t| t.access_token().secret() != access)
        {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), published)
        .await
        .unwrap_or_else(|_| panic!("{access} was not published within 10 s"));
}
