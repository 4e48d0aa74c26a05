//! Secrets never show: not in `Debug`, `Display`, errors, nor in `tracing`
//! output at any level.

mod common;

use common::{client, token_body, token_url};
use reqwest_oauth2_refresh::{OAuth2Middleware, TokenManager, TokenSet};
use serde_json::json;
use wiremock::matchers::{header, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRETS: [&str; 6] = [
    // base64 of the Basic credentials, which carry the client secret
    "dGVzdC1jbGllbnQ6Y2xpZW50LVNFQ1JFVA",
    "access-SECRET-1",
    "refresh-SECRET-1",
    "access-SECRET-2",
    "refresh-SECRET-2",
    "client-SECRET",
];

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} shows {secret}: {text}");
    }
}

// A current-thread runtime keeps every task, the refresh task included, on
// the thread whose events are captured.
#[tokio::test]
async fn no_secret_in_logs_debug_or_errors() {
    let (captured, _capturing) = common::logs::capture();

    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    Mock::given(path("/token"))
        .and(header(
            "authorization",
            "Basic dGVzdC1jbGllbnQ6Y2xpZW50LVNFQ1JFVA==",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body(
            "access-SECRET-2",
            Some("refresh-SECRET-2"),
            Some(3600),
        )))
        .up_to_n_times(1)
        .expect(1)
        .mount(&auth)
        .await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant", "error_description": "reuse detected"
        })))
        .expect(1)
        .mount(&auth)
        .await;
    Mock::given(path("/data"))
        .and(header("authorization", "Bearer access-SECRET-2"))
        .respond_with(ResponseTemplate::new(200))
        .up_to_n_times(1)
        .mount(&api)
        .await;
    Mock::given(path("/data"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&api)
        .await;

    let builder = TokenManager::builder(&token_url(&auth))
        .client_id("test-client")
        .client_secret("client-SECRET")
        .initial_tokens(TokenSet::new("access-SECRET-1").with_refresh_token("refresh-SECRET-1"));
    assert_no_secret("builder Debug", &format!("{builder:?}"));
    let manager = builder.build().unwrap();
    let middleware = OAuth2Middleware::builder(manager.clone())
        .allow_origin(&api.uri())
        .build()
        .unwrap();
    let client = client(&manager, &api);
    let url = format!("{}/data", api.uri());

    // 401 → refresh (rotation) → replay → 200; then 401 → invalid_grant.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let err = client.get(&url).send().await.unwrap_err();

    assert_no_secret(
        "error Display",
        &format!("{err} / {:#}", anyhow_chain(&err)),
    );
    assert_no_secret("error Debug", &format!("{err:?}"));
    assert_no_secret("manager Debug", &format!("{manager:?}"));
    assert_no_secret("middleware Debug", &format!("{middleware:?}"));
    assert_no_secret(
        "token set Debug",
        &format!("{:?}", manager.cached_tokens().unwrap()),
    );
    let logs = captured.text();
    assert!(
        logs.contains("refresh token was rotated"),
        "the capture works: {logs}"
    );
    assert_no_secret("tracing output", &logs);
    if std::env::var_os("SHOW_LOGS").is_some() {
        println!("{logs}");
    }
}

fn anyhow_chain(err: &reqwest_middleware::Error) -> String {
    let mut out = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = source {
        out.push_str(&format!("{e}; "));
        source = e.source();
    }
    out
}
