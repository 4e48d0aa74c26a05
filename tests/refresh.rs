//! The refresh request and what comes back: RFC 6749 §6, client
//! authentication (§2.3.1), §5.1 and §5.2 responses, rotation, retries.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use common::gate::{Answer, Gate, GatedTokenEndpoint};
use common::{TestClock, builder, builder_at, form, token_body, token_endpoint_issues, token_url};
use reqwest_oauth2_refresh::{BoxError, ClientAuth, Error, TokenManager, TokenSet, TokenStore};
use serde_json::json;
use wiremock::matchers::{body_string_contains, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn tokens() -> TokenSet {
    TokenSet::new("old-access").with_refresh_token("r1")
}

#[tokio::test]
async fn basic_credentials_are_form_urlencoded_before_base64() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, token_body("a2", None, Some(60)), 1).await;
    let secret = "s3cr:t/+ é&=%";
    let manager = TokenManager::builder(&token_url(&server))
        .client_id("my app:1")
        .client_secret(secret)
        .initial_tokens(tokens())
        .build()
        .unwrap();
    manager.refresh().await.unwrap();

    let request = &server.received_requests().await.unwrap()[0];
    assert_eq!(
        request.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let expected = base64::engine::general_purpose::STANDARD
        .encode("my+app%3A1:s3cr%3At%2F%2B+%C3%A9%26%3D%25");
    assert_eq!(
        request.headers["authorization"],
        format!("Basic {expected}")
    );
    assert_eq!(
        form(&request.body),
        vec![
            ("grant_type".into(), "refresh_token".into()),
            ("refresh_token".into(), "r1".into()),
        ]
    );
}

#[tokio::test]
async fn secret_post_sends_credentials_in_the_body() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, token_body("a2", None, Some(60)), 1).await;
    let manager = TokenManager::builder(&token_url(&server))
        .client_id("app")
        .client_secret("p&ss=word")
        .client_auth(ClientAuth::SecretPost)
        .initial_tokens(tokens())
        .build()
        .unwrap();
    manager.refresh().await.unwrap();

    let request = &server.received_requests().await.unwrap()[0];
    assert!(!request.headers.contains_key("authorization"));
    let fields = form(&request.body);
    assert!(fields.contains(&("client_id".into(), "app".into())));
    assert!(fields.contains(&("client_secret".into(), "p&ss=word".into())));
    assert!(fields.contains(&("refresh_token".into(), "r1".into())));
}

#[tokio::test]
async fn public_client_sends_its_client_id_only() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, token_body("a2", None, Some(60)), 1).await;
    let manager = builder(&server).initial_tokens(tokens()).build().unwrap();
    manager.refresh().await.unwrap();

    let request = &server.received_requests().await.unwrap()[0];
    assert!(!request.headers.contains_key("authorization"));
    assert_eq!(
        form(&request.body),
        vec![
            ("grant_type".into(), "refresh_token".into()),
            ("refresh_token".into(), "r1".into()),
            ("client_id".into(), "test-client".into()),
        ]
    );
}

#[tokio::test]
async fn scope_and_extra_parameters_are_sent() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, token_body("a2", None, Some(60)), 1).await;
    let manager = builder(&server)
        .scope("openid offline_access api://x/.default")
        .extra_param("resource", "https://api.example.com")
        .initial_tokens(tokens())
        .build()
        .unwrap();
    manager.refresh().await.unwrap();
    let fields = form(&server.received_requests().await.unwrap()[0].body);
    assert!(fields.contains(&(
        "scope".into(),
        "openid offline_access api://x/.default".into()
    )));
    assert!(fields.contains(&("resource".into(), "https://api.example.com".into())));
}

/// Records every save, to check what was saved and when.
#[derive(Debug, Default)]
struct RecordingStore {
    saved: Mutex<Vec<TokenSet>>,
}

#[async_trait]
impl TokenStore for RecordingStore {
    async fn load(&self) -> Result<Option<TokenSet>, BoxError> {
        Ok(self.saved.lock().unwrap().last().cloned())
    }
    async fn save(&self, tokens: &TokenSet) -> Result<(), BoxError> {
        self.saved.lock().unwrap().push(tokens.clone());
        Ok(())
    }
}

#[tokio::test]
async fn rotated_refresh_token_is_saved_and_announced_before_use() {
    let server = MockServer::start().await;
    Mock::given(path("/token"))
        .and(body_string_contains("refresh_token=r1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body(
            "a2",
            Some("r2"),
            Some(60),
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/token"))
        .and(body_string_contains("refresh_token=r2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body(
            "a3",
            Some("r3"),
            Some(60),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let store = Arc::new(RecordingStore::default());
    let announced = Arc::new(Mutex::new(Vec::new()));
    let hook_store = store.clone();
    let hook_announced = announced.clone();
    let manager = builder(&server)
        .initial_tokens(tokens())
        .store(store.clone())
        .on_refresh(move |t| {
            // The store has it by the time the hook runs.
            assert_eq!(hook_store.saved.lock().unwrap().last(), Some(t));
            hook_announced
                .lock()
                .unwrap()
                .push(t.refresh_token().unwrap().secret().to_owned());
        })
        .build()
        .unwrap();

    let second = manager.refresh().await.unwrap();
    assert_eq!(second.refresh_token().unwrap().secret(), "r2");
    let third = manager.refresh().await.unwrap();
    assert_eq!(third.access_token().secret(), "a3");
    assert_eq!(manager.access_token().await.unwrap().secret(), "a3");

    let saved: Vec<_> = store
        .saved
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.refresh_token().unwrap().secret().to_owned())
        .collect();
    // The builder's seed, then each rotation.
    assert_eq!(saved, ["r1", "r2", "r3"]);
    // The seed fills the empty store but is not news to `on_refresh`.
    assert_eq!(*announced.lock().unwrap(), ["r2", "r3"]);
}

#[tokio::test]
async fn refresh_token_is_kept_when_none_is_returned() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, token_body("a2", None, Some(60)), 2).await;
    let manager = builder(&server).initial_tokens(tokens()).build().unwrap();
    let next = manager.refresh().await.unwrap();
    assert_eq!(next.refresh_token().unwrap().secret(), "r1");
    manager.refresh().await.unwrap();
    for request in server.received_requests().await.unwrap() {
        assert!(form(&request.body).contains(&("refresh_token".into(), "r1".into())));
    }
}

#[tokio::test]
async fn expiry_is_stamped_when_the_response_arrives() {
    let server = MockServer::start().await;
    let clock = TestClock::new();
    token_endpoint_issues(
        &server,
        json!({"access_token": "a2", "token_type": "bearer", "expires_in": "120", "extra": [1]}),
        1,
    )
    .await;
    let manager = builder(&server)
        .clock(clock.clone())
        .initial_tokens(tokens())
        .build()
        .unwrap();
    clock.advance(Duration::from_secs(1000));
    let before = reqwest_oauth2_refresh::Clock::now(&*clock);
    let next = manager.refresh().await.unwrap();
    let after = reqwest_oauth2_refresh::Clock::now(&*clock);
    let expires_at = next.expires_at().unwrap();
    assert!(expires_at >= before + Duration::from_secs(120));
    assert!(expires_at <= after + Duration::from_secs(120));
    assert_eq!(next.expires_in(), Some(Duration::from_secs(120)));
}

#[tokio::test]
async fn invalid_grant_is_its_own_error() {
    let server = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant", "error_description": "Token is not active"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let manager = builder(&server).initial_tokens(tokens()).build().unwrap();
    let err = manager.refresh().await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidGrant { description: Some(d) } if d == "Token is not active"),
        "{err:?}"
    );
    assert!(!err.is_transient());
    // The refresh token is not thrown away: a peer may still fix things, and
    // the user may want to see which one died.
    assert_eq!(
        manager
            .cached_tokens()
            .unwrap()
            .refresh_token()
            .unwrap()
            .secret(),
        "r1"
    );
}

#[tokio::test]
async fn other_oauth_errors_keep_status_code_and_description() {
    let server = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client",
            "error_description": "Client authentication failed",
            "error_uri": "https://auth.example.com/docs/errors"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let manager = builder(&server).initial_tokens(tokens()).build().unwrap();
    match manager.refresh().await.unwrap_err() {
        Error::OAuth {
            status,
            error,
            description,
            uri,
        } => {
            assert_eq!(status, 401);
            assert_eq!(error, "invalid_client");
            assert_eq!(description.as_deref(), Some("Client authentication failed"));
            assert_eq!(uri.as_deref(), Some("https://auth.example.com/docs/errors"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn error_inside_a_200_is_an_error() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, json!({"error": "invalid_grant"}), 1).await;
    let manager = builder(&server).initial_tokens(tokens()).build().unwrap();
    assert!(matches!(
        manager.refresh().await.unwrap_err(),
        Error::InvalidGrant { description: None }
    ));
}

#[tokio::test]
async fn unusable_success_bodies_are_invalid_responses() {
    for body in [
        ResponseTemplate::new(200).set_body_string("<html>login</html>"),
        ResponseTemplate::new(200).set_body_json(json!({"token_type": "Bearer"})),
        ResponseTemplate::new(200)
            .set_body_json(json!({"access_token": "a", "token_type": "DPoP"})),
        ResponseTemplate::new(200).set_body_json(json!(["access_token"])),
    ] {
        let server = MockServer::start().await;
        Mock::given(path("/token"))
            .respond_with(body)
            .expect(1)
            .mount(&server)
            .await;
        let manager = builder(&server).initial_tokens(tokens()).build().unwrap();
        let err = manager.refresh().await.unwrap_err();
        assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    }
}

#[tokio::test]
async fn transient_failures_are_retried_with_the_same_refresh_token() {
    let server = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/token"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "0")
                .set_body_json(json!({"error": "slow_down"})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    token_endpoint_issues(&server, token_body("a2", Some("r2"), Some(60)), 1).await;
    let manager = builder(&server).initial_tokens(tokens()).build().unwrap();
    let next = manager.refresh().await.unwrap();
    assert_eq!(next.access_token().secret(), "a2");
    for request in server.received_requests().await.unwrap() {
        assert!(form(&request.body).contains(&("refresh_token".into(), "r1".into())));
    }
}

#[tokio::test]
async fn slow_token_endpoint_times_out_and_is_retried() {
    // The first answer waits for a gate that nobody opens: the attempt
    // can only end by its own timeout.
    let token = GatedTokenEndpoint::start(
        &Gate::new(),
        vec![
            Answer::ok(token_body("late", None, Some(60))).held(),
            Answer::ok(token_body("a2", None, Some(60))),
        ],
    )
    .await;
    let manager = builder_at(&token.url())
        .attempt_timeout(Duration::from_millis(200))
        .initial_tokens(tokens())
        .build()
        .unwrap();
    assert_eq!(
        manager.refresh().await.unwrap().access_token().secret(),
        "a2"
    );
}

#[tokio::test]
async fn retry_after_beyond_the_budget_fails_at_once() {
    let server = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600"))
        .expect(1)
        .mount(&server)
        .await;
    let manager = builder(&server)
        .refresh_timeout(Duration::from_secs(30))
        .initial_tokens(tokens())
        .build()
        .unwrap();
    let started = Instant::now();
    let err = manager.refresh().await.unwrap_err();
    assert!(
        matches!(err, Error::HttpStatus { status } if status == 429),
        "{err:?}"
    );
    assert!(err.is_transient());
    // It gave up instead of waiting for an hour or for its 30 s budget.
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn exhausted_retries_keep_the_refresh_token_for_later() {
    let server = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(3)
        .expect(3)
        .mount(&server)
        .await;
    token_endpoint_issues(&server, token_body("a2", Some("r2"), Some(60)), 1).await;
    let manager = builder(&server)
        .max_retries(2)
        .initial_tokens(tokens())
        .build()
        .unwrap();
    let err = manager.refresh().await.unwrap_err();
    assert!(
        matches!(err, Error::HttpStatus { status } if status == 500),
        "{err:?}"
    );
    assert_eq!(
        manager
            .cached_tokens()
            .unwrap()
            .refresh_token()
            .unwrap()
            .secret(),
        "r1"
    );
    let next = manager.refresh().await.unwrap();
    assert_eq!(next.refresh_token().unwrap().secret(), "r2");
    for request in server.received_requests().await.unwrap() {
        assert!(form(&request.body).contains(&("refresh_token".into(), "r1".into())));
    }
}

#[tokio::test]
async fn unreachable_token_endpoint_is_a_transport_error() {
    // A port that was free a moment ago and that nobody listens on now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let manager = TokenManager::builder(&format!("http://127.0.0.1:{port}/token"))
        .retry_base_delay(Duration::from_millis(1))
        .initial_tokens(tokens())
        .build()
        .unwrap();
    let err = manager.refresh().await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert!(err.is_transient());
    assert!(std::error::Error::source(&err).is_some(), "keeps the cause");
}

#[tokio::test]
async fn oversized_token_response_is_refused() {
    let server = MockServer::start().await;
    let huge = "x".repeat(100_000);
    token_endpoint_issues(
        &server,
        json!({"access_token": huge, "token_type": "Bearer"}),
        1,
    )
    .await;
    let manager = builder(&server)
        .max_response_bytes(16 * 1024)
        .initial_tokens(tokens())
        .build()
        .unwrap();
    let err = manager.refresh().await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
}

#[tokio::test]
async fn redirects_from_the_token_endpoint_are_not_followed() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/token", elsewhere.uri()).as_str()),
        )
        .expect(1)
        .mount(&server)
        .await;
    token_endpoint_issues(&elsewhere, token_body("stolen", None, None), 0).await;
    let manager = builder(&server).initial_tokens(tokens()).build().unwrap();
    let err = manager.refresh().await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
}

#[tokio::test]
async fn no_refresh_token_means_no_call() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, token_body("a2", None, None), 0).await;
    let manager = builder(&server)
        .initial_tokens(TokenSet::new("only-access"))
        .build()
        .unwrap();
    assert!(matches!(
        manager.refresh().await.unwrap_err(),
        Error::NoRefreshToken
    ));
}

#[tokio::test]
async fn manager_without_tokens_says_so() {
    let server = MockServer::start().await;
    let manager = builder(&server).build().unwrap();
    assert!(matches!(
        manager.access_token().await.unwrap_err(),
        Error::NoTokens
    ));
}

#[tokio::test]
async fn tokens_in_the_store_win_over_the_builders() {
    let server = MockServer::start().await;
    let store = reqwest_oauth2_refresh::MemoryStore::with_tokens(
        TokenSet::new("stored-access").with_refresh_token("stored-refresh"),
    );
    let manager = builder(&server)
        .store(store)
        .initial_tokens(tokens())
        .build()
        .unwrap();
    assert_eq!(
        manager.access_token().await.unwrap().secret(),
        "stored-access"
    );
}

#[tokio::test]
async fn set_tokens_replaces_a_dead_session() {
    let server = MockServer::start().await;
    Mock::given(path("/token"))
        .and(body_string_contains("refresh_token=r1"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/token"))
        .and(body_string_contains("refresh_token=fresh"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("a9", None, None)))
        .expect(1)
        .mount(&server)
        .await;
    let manager = builder(&server).initial_tokens(tokens()).build().unwrap();
    assert!(matches!(
        manager.refresh().await.unwrap_err(),
        Error::InvalidGrant { .. }
    ));
    manager
        .set_tokens(TokenSet::new("a8").with_refresh_token("fresh"))
        .await
        .unwrap();
    assert_eq!(manager.access_token().await.unwrap().secret(), "a8");
    assert_eq!(
        manager.refresh().await.unwrap().access_token().secret(),
        "a9"
    );
}
