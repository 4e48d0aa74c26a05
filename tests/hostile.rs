//! Hostile or sloppy servers: what they send must never panic the client,
//! mislead its error handling, forge its logs, learn its secrets from it,
//! or burn refreshes through redirects.

mod common;

use reqwest_oauth2_refresh::{Error, OAuth2Middleware, TokenManager, TokenSet};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::{
    builder, logs, token_body, token_endpoint_answers, token_endpoint_answers_first,
    token_endpoint_issues, token_url,
};

fn tokens() -> TokenSet {
    TokenSet::new("at-SECRET-old").with_refresh_token("rt-SECRET-old")
}

#[tokio::test]
async fn a_retry_after_of_u64_max_ends_the_refresh_instead_of_panicking() {
    let server = MockServer::start().await;
    let answer = ResponseTemplate::new(503).insert_header("retry-after", "18446744073709551615");
    token_endpoint_answers(&server, answer, 1).await;
    let manager = builder(&server).initial_tokens(tokens()).build().unwrap();
    let err = manager.refresh().await.unwrap_err();
    assert!(
        matches!(err, Error::HttpStatus { status } if status == 503),
        "{err:?}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_5xx_with_an_oauth_body_is_retried_and_reported_as_transient() {
    let server = MockServer::start().await;
    let answer = ResponseTemplate::new(503).set_body_json(json!({"error": "server_error"}));
    token_endpoint_answers(&server, answer, 3).await;
    let manager = builder(&server).initial_tokens(tokens()).build().unwrap();
    let err = manager.refresh().await.unwrap_err();
    assert!(
        matches!(&err, Error::OAuth { error, .. } if error == "server_error"),
        "{err:?}"
    );
    assert!(
        err.is_transient(),
        "a 503 is transient whatever its body says"
    );
}

#[tokio::test]
async fn a_5xx_with_a_page_over_the_size_cap_is_still_a_5xx() {
    let server = MockServer::start().await;
    let page = format!("<html>{}</html>", "x".repeat(200 * 1024));
    let answer = ResponseTemplate::new(503).set_body_string(page);
    token_endpoint_answers_first(&server, answer, 1).await;
    token_endpoint_issues(&server, token_body("at-2", None, Some(3600)), 1).await;
    let manager = builder(&server).initial_tokens(tokens()).build().unwrap();
    let next = manager.refresh().await.expect("the 503 was retried");
    assert_eq!(next.access_token().secret(), "at-2");
}

#[tokio::test]
async fn control_characters_from_the_server_never_reach_a_log_line() {
    let (captured, _guard) = logs::capture();
    let server = MockServer::start().await;
    let forged = "temporarily down\n2026-12-01T00:00:00Z  INFO forged: all good\r\u{1b}[2J";
    let answer = ResponseTemplate::new(503)
        .set_body_json(json!({"error": "server_error", "error_description": forged}));
    token_endpoint_answers(&server, answer, 3).await;
    let manager = builder(&server).initial_tokens(tokens()).build().unwrap();
    let err = manager.refresh().await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains('\n') && !shown.contains('\u{1b}'),
        "{shown:?}"
    );
    let logged = captured.text();
    assert!(
        logged.contains("temporarily down"),
        "logs were captured: {logged}"
    );
    assert!(
        !logged
            .lines()
            .any(|line| line.starts_with("2026-12-01T00:00:00Z")),
        "a forged line: {logged}"
    );
    assert!(
        !logged.contains('\u{1b}'),
        "an escape sequence reached the log"
    );
}

#[tokio::test]
async fn secrets_a_server_echoes_are_redacted_from_errors_and_logs() {
    let (captured, _guard) = logs::capture();
    let server = MockServer::start().await;
    let echo = "bad client client-SECRET-value with rt-SECRET-old for at-SECRET-old";
    let transient = ResponseTemplate::new(503)
        .set_body_json(json!({"error": "server_error", "error_description": echo}));
    token_endpoint_answers_first(&server, transient, 1).await;
    let permanent = ResponseTemplate::new(400).set_body_json(json!({
        "error": "invalid_request",
        "error_description": echo,
        "error_uri": "https://as.example/e?token=rt-SECRET-old",
    }));
    token_endpoint_answers(&server, permanent, 1).await;
    let manager = builder(&server)
        .client_secret("client-SECRET-value")
        .initial_tokens(tokens())
        .build()
        .unwrap();
    let err = manager.refresh().await.unwrap_err();
    let shown = format!("{err} {err:?} {}", captured.text());
    assert!(shown.contains("[redacted]"), "{shown}");
    for secret in ["client-SECRET-value", "rt-SECRET-old", "at-SECRET-old"] {
        assert!(!shown.contains(secret), "{secret} shows: {shown}");
    }
}

#[tokio::test]
async fn a_token_answer_from_a_redirect_target_is_refused() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    let redirect = ResponseTemplate::new(307)
        .insert_header("location", format!("{}/token", elsewhere.uri()).as_str());
    token_endpoint_answers(&server, redirect, 1).await;
    token_endpoint_issues(
        &elsewhere,
        token_body("at-EVIL", Some("rt-EVIL"), Some(3600)),
        1,
    )
    .await;
    // A client that follows redirects, as a user may hand us.
    let manager = builder(&server)
        .http_client(reqwest::Client::new())
        .initial_tokens(tokens())
        .build()
        .unwrap();
    let err = manager.refresh().await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    let current = manager.cached_tokens().unwrap();
    assert_eq!(current.access_token().secret(), "at-SECRET-old");
    assert_eq!(current.refresh_token().unwrap().secret(), "rt-SECRET-old");
}

#[tokio::test]
async fn a_401_from_a_redirect_target_neither_refreshes_nor_replays() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    token_endpoint_issues(&auth, token_body("at-2", None, Some(3600)), 0).await;
    Mock::given(method("POST"))
        .and(path("/orders"))
        .and(header("authorization", "Bearer at-SECRET-old"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/orders", elsewhere.uri()).as_str()),
        )
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(path("/orders"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&elsewhere)
        .await;
    let manager = TokenManager::builder(&token_url(&auth))
        .client_id("c")
        .initial_tokens(tokens())
        .build()
        .unwrap();
    let auth_mw = OAuth2Middleware::builder(manager)
        .allow_origin(&api.uri())
        .build()
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth_mw)
        .build();
    let response = client
        .post(format!("{}/orders", api.uri()))
        .body("order")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "handed back as it is");
}

#[tokio::test]
async fn an_unusable_answer_that_rotates_the_refresh_token_keeps_the_new_one() {
    let server = MockServer::start().await;
    let unusable = ResponseTemplate::new(200).set_body_json(json!({
        "access_token": "at-2", "token_type": "mac", "refresh_token": "rt-2", "expires_in": 3600
    }));
    token_endpoint_answers_first(&server, unusable, 1).await;
    token_endpoint_issues(&server, token_body("at-3", Some("rt-3"), Some(3600)), 1).await;
    let announced = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = announced.clone();
    let manager = builder(&server)
        .initial_tokens(tokens())
        .on_refresh(move |t| {
            let refresh = t.refresh_token().map(|r| r.secret().to_owned());
            seen.lock().unwrap().push(refresh.unwrap_or_default());
        })
        .build()
        .unwrap();
    let err = manager.refresh().await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    assert_eq!(
        *announced.lock().unwrap(),
        ["rt-2"],
        "saved like a rotation"
    );
    let kept = manager.cached_tokens().unwrap();
    assert_eq!(kept.refresh_token().unwrap().secret(), "rt-2");
    assert!(
        kept.expires_at()
            .is_some_and(|at| at <= std::time::SystemTime::now())
    );
    // Within the cooldown callers get the error, not a refresh per call.
    let again = manager.access_token().await.unwrap_err();
    assert!(matches!(again, Error::InvalidResponse { .. }), "{again:?}");
    // The next attempt spends the new refresh token.
    let next = manager.refresh().await.unwrap();
    assert_eq!(next.access_token().secret(), "at-3");
    let spent: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| {
            common::form(&r.body)
                .into_iter()
                .find(|(k, _)| k == "refresh_token")
                .map(|(_, v)| v)
        })
        .collect();
    assert_eq!(spent, ["rt-SECRET-old", "rt-2"]);
}
