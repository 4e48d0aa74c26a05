//! What the middleware does to requests: where the token goes, which 401s
//! cause a refresh, and how the replay behaves.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::{TestClock, builder, client, our_error, token_body, token_endpoint_issues};
use http::Extensions;
use reqwest::header::AUTHORIZATION;
use reqwest_middleware::{Middleware, Next};
use reqwest_oauth2_refresh::{Error, OAuth2Middleware, RefreshMode, SkipOAuth2, TokenSet};
use wiremock::matchers::{body_string, header, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn old_tokens() -> TokenSet {
    TokenSet::new("old-access").with_refresh_token("r1")
}

async fn token_endpoint_issuing(server: &MockServer, access: &str, expect: u64) {
    token_endpoint_issues(server, token_body(access, None, Some(3600)), expect).await;
}

async fn api_rejecting_old_token(api: &MockServer, unauthorized: ResponseTemplate) {
    Mock::given(path("/data"))
        .and(header("authorization", "Bearer old-access"))
        .respond_with(unauthorized)
        .expect(1)
        .mount(api)
        .await;
}

/// The API at `/data` answers `status` to `Bearer {token}`, `times` times.
async fn api_answers(api: &MockServer, token: &str, status: u16, times: u64) {
    Mock::given(path("/data"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(status))
        .expect(times)
        .mount(api)
        .await;
}

#[tokio::test]
async fn attaches_bearer_token_to_allowed_origin() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    api_answers(&api, "old-access", 200, 2).await;
    token_endpoint_issuing(&auth, "unused", 0).await;
    let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();
    let client = client(&manager, &api);

    for _ in 0..2 {
        let response = client
            .get(format!("{}/data", api.uri()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

/// Checks what the layer below ours receives.
struct SeesSensitiveHeader(Arc<AtomicBool>);

#[async_trait]
impl Middleware for SeesSensitiveHeader {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let sensitive = req
            .headers()
            .get(AUTHORIZATION)
            .is_some_and(|v| v.is_sensitive());
        self.0.store(sensitive, Ordering::SeqCst);
        next.run(req, extensions).await
    }
}

#[tokio::test]
async fn authorization_header_is_marked_sensitive() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    Mock::given(path("/data"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&api)
        .await;
    let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();
    let seen = Arc::new(AtomicBool::new(false));
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(
            OAuth2Middleware::builder(manager)
                .allow_origin(&api.uri())
                .build()
                .unwrap(),
        )
        .with(SeesSensitiveHeader(seen.clone()))
        .build();
    client
        .get(format!("{}/data", api.uri()))
        .send()
        .await
        .unwrap();
    assert!(seen.load(Ordering::SeqCst));
}

#[tokio::test]
async fn other_origins_get_no_token_and_cause_no_refresh() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    token_endpoint_issuing(&auth, "new-access", 0).await;
    Mock::given(path("/data"))
        .and(header_exists("authorization"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&elsewhere)
        .await;
    Mock::given(path("/data"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&elsewhere)
        .await;
    let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();
    // Same host, other port: another origin.
    let response = client(&manager, &api)
        .get(format!("{}/data", elsewhere.uri()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn request_with_its_own_authorization_is_left_alone() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_issuing(&auth, "new-access", 0).await;
    Mock::given(path("/data"))
        .and(header("authorization", "Basic dXNlcjpwdw=="))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&api)
        .await;
    let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();
    let response = client(&manager, &api)
        .get(format!("{}/data", api.uri()))
        .header("authorization", "Basic dXNlcjpwdw==")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn skip_extension_sends_without_token() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_issuing(&auth, "new-access", 0).await;
    Mock::given(path("/health"))
        .and(header_exists("authorization"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&api)
        .await;
    Mock::given(path("/health"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&api)
        .await;
    let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();
    let response = client(&manager, &api)
        .get(format!("{}/health", api.uri()))
        .with_extension(SkipOAuth2)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[test]
fn insecure_or_missing_origins_are_refused() {
    let manager = reqwest_oauth2_refresh::TokenManager::builder("https://auth.example.com/token")
        .build()
        .unwrap();
    for origin in [
        "http://api.example.com",
        "https://api.example.com/v1",
        "nope",
    ] {
        let err = OAuth2Middleware::builder(manager.clone())
            .allow_origin(origin)
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{origin}: {err}");
    }
    let err = OAuth2Middleware::builder(manager).build().unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[tokio::test]
async fn unauthorized_without_challenge_refreshes_and_replays_the_same_request() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_issuing(&auth, "new-access", 1).await;
    api_rejecting_old_token(&api, ResponseTemplate::new(401)).await;
    Mock::given(method("POST"))
        .and(path("/data"))
        .and(header("authorization", "Bearer new-access"))
        .and(header("x-request", "kept"))
        .and(body_string("the request body"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&api)
        .await;
    let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();

    let response = client(&manager, &api)
        .post(format!("{}/data", api.uri()))
        .header("x-request", "kept")
        .body("the request body")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn invalid_token_challenge_refreshes() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_issuing(&auth, "new-access", 1).await;
    api_rejecting_old_token(
        &api,
        ResponseTemplate::new(401).insert_header(
            "www-authenticate",
            r#"Bearer realm="api", error="invalid_token", error_description="The access token expired""#,
        ),
    )
    .await;
    api_answers(&api, "new-access", 200, 1).await;
    let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();
    let response = client(&manager, &api)
        .get(format!("{}/data", api.uri()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn challenges_that_a_new_token_cannot_fix_are_returned_as_is() {
    for challenge in [
        r#"Bearer error="insufficient_scope", scope="admin""#,
        r#"Basic realm="api""#,
    ] {
        let auth = MockServer::start().await;
        let api = MockServer::start().await;
        token_endpoint_issuing(&auth, "new-access", 0).await;
        api_rejecting_old_token(
            &api,
            ResponseTemplate::new(401).insert_header("www-authenticate", challenge),
        )
        .await;
        let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();
        let response = client(&manager, &api)
            .get(format!("{}/data", api.uri()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{challenge}");
        assert_eq!(
            response.headers()["www-authenticate"],
            challenge,
            "the caller sees the server's challenge"
        );
    }
}

#[tokio::test]
async fn unauthorized_on_the_replay_is_returned_as_is() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_issuing(&auth, "new-access", 1).await;
    api_rejecting_old_token(&api, ResponseTemplate::new(401)).await;
    Mock::given(path("/data"))
        .and(header("authorization", "Bearer new-access"))
        .respond_with(ResponseTemplate::new(401).set_body_string("still no"))
        .expect(1)
        .mount(&api)
        .await;
    let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();
    let response = client(&manager, &api)
        .get(format!("{}/data", api.uri()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.text().await.unwrap(), "still no");
}

#[tokio::test]
async fn streaming_body_is_sent_once_and_its_401_returned() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_issuing(&auth, "new-access", 0).await;
    Mock::given(method("PUT"))
        .and(path("/data"))
        .and(header("authorization", "Bearer old-access"))
        .and(body_string("streamed"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&api)
        .await;
    let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();
    let stream = futures_util::stream::iter([Ok::<_, std::io::Error>("streamed")]);
    let response = client(&manager, &api)
        .put(format!("{}/data", api.uri()))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn failed_refresh_after_401_reaches_the_caller_as_typed_error() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "error": "invalid_grant",
            "error_description": "Refresh token revoked"
        })))
        .expect(1)
        .mount(&auth)
        .await;
    api_answers(&api, "old-access", 401, 2).await;
    let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();
    let client = client(&manager, &api);
    for _ in 0..2 {
        let err = client
            .get(format!("{}/data", api.uri()))
            .send()
            .await
            .unwrap_err();
        // The second call learns the same without spending the dead token again.
        match our_error(&err) {
            Error::InvalidGrant { description } => {
                assert_eq!(description.as_deref(), Some("Refresh token revoked"))
            }
            other => panic!("expected InvalidGrant, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn token_within_leeway_is_refreshed_before_the_request_when_blocking() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    let clock = TestClock::new();
    token_endpoint_issuing(&auth, "new-access", 1).await;
    api_answers(&api, "old-access", 200, 1).await;
    api_answers(&api, "new-access", 200, 1).await;
    let manager = builder(&auth)
        .refresh_mode(RefreshMode::Blocking)
        .clock(clock.clone())
        .initial_tokens(old_tokens().with_expires_in(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let client = client(&manager, &api);
    let url = format!("{}/data", api.uri());

    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    // 30 s before expiry: inside the default 60 s leeway, still valid.
    clock.advance(Duration::from_secs(3570));
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn leeway_never_exceeds_half_the_lifetime() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    let clock = TestClock::new();
    // Tokens live 10 s: with a 60 s leeway, refresh at 5 s, not on every call.
    // Blocking, so that the request that meets the refresh point shows it
    // (and no jitter moves it).
    token_endpoint_issues(&auth, token_body("new-access", None, Some(10)), 1).await;
    api_answers(&api, "old-access", 200, 2).await;
    api_answers(&api, "new-access", 200, 2).await;
    let manager = builder(&auth)
        .refresh_mode(RefreshMode::Blocking)
        .clock(clock.clone())
        .initial_tokens(old_tokens().with_expires_in(Duration::from_secs(10)))
        .build()
        .unwrap();
    let client = client(&manager, &api);
    let url = format!("{}/data", api.uri());

    client.get(&url).send().await.unwrap();
    clock.advance(Duration::from_secs(4));
    client.get(&url).send().await.unwrap();
    clock.advance(Duration::from_secs(2));
    client.get(&url).send().await.unwrap(); // refreshed here, new token lives 10 s
    clock.advance(Duration::from_secs(4));
    client.get(&url).send().await.unwrap();
}

#[tokio::test]
async fn token_without_expiry_is_used_until_a_401() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    let clock = TestClock::new();
    token_endpoint_issuing(&auth, "new-access", 0).await;
    api_answers(&api, "old-access", 200, 1).await;
    let manager = builder(&auth)
        .clock(clock.clone())
        .initial_tokens(old_tokens())
        .build()
        .unwrap();
    clock.advance(Duration::from_secs(10 * 365 * 86_400));
    let response = client(&manager, &api)
        .get(format!("{}/data", api.uri()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn failed_refresh_before_expiry_keeps_using_the_valid_token() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    let clock = TestClock::new();
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(503))
        .expect(2)
        .mount(&auth)
        .await;
    api_answers(&api, "old-access", 200, 2).await;
    let manager = builder(&auth)
        .clock(clock.clone())
        .max_retries(0)
        .initial_tokens(old_tokens().with_expires_in(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let client = client(&manager, &api);
    let url = format!("{}/data", api.uri());

    clock.advance(Duration::from_secs(3570));
    // The refresh fails; the token is still valid, so the request goes out.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    // Within the failure cooldown: no second call to the token endpoint.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    // Expired now: the failure is the caller's.
    clock.advance(Duration::from_secs(31));
    let err = client.get(&url).send().await.unwrap_err();
    assert!(
        matches!(our_error(&err), Error::HttpStatus { status } if *status == 503),
        "{err:?}"
    );
    assert!(our_error(&err).is_transient());
}

#[tokio::test]
async fn outer_retry_layer_does_not_cause_a_second_refresh() {
    use reqwest_retry::{RetryTransientMiddleware, policies::ExponentialBackoff};

    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_issuing(&auth, "new-access", 1).await;
    api_rejecting_old_token(&api, ResponseTemplate::new(401)).await;
    // The replay meets a transient error, the retry layer runs the call again,
    // and the server rejects the new token too: that 401 must come back as is.
    Mock::given(path("/data"))
        .and(header("authorization", "Bearer new-access"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&api)
        .await;
    api_answers(&api, "new-access", 401, 1).await;
    let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();
    let policy = ExponentialBackoff::builder()
        .retry_bounds(Duration::from_millis(1), Duration::from_millis(2))
        .build_with_max_retries(3);
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(reqwest_tracing::TracingMiddleware::default())
        .with(RetryTransientMiddleware::new_with_policy(policy))
        .with(
            OAuth2Middleware::builder(manager)
                .allow_origin(&api.uri())
                .build()
                .unwrap(),
        )
        .build();
    let response = client
        .get(format!("{}/data", api.uri()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn without_replay_a_401_renews_the_token_for_the_next_request() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_issuing(&auth, "new-access", 1).await;
    api_rejecting_old_token(&api, ResponseTemplate::new(401)).await;
    api_answers(&api, "new-access", 200, 1).await;
    let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(
            OAuth2Middleware::builder(manager)
                .allow_origin(&api.uri())
                .replay_on_401(false)
                .build()
                .unwrap(),
        )
        .build();
    let url = format!("{}/data", api.uri());
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
}
