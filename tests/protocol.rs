//! The protocol pieces around refresh: client credentials (RFC 6749 §4.4),
//! revocation (RFC 7009), discovery (RFC 8414, OpenID Connect Discovery) and
//! provider presets.

mod common;

use std::time::Duration;

use common::{client, form, our_error, token_body, token_endpoint_issues};
use futures_util::future::join_all;
use reqwest_oauth2_refresh::{Error, ServerMetadata, TokenManager, TokenSet, providers};
use serde_json::json;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn cc_builder(server: &MockServer) -> reqwest_oauth2_refresh::TokenManagerBuilder {
    TokenManager::builder(&format!("{}/token", server.uri()))
        .client_id("service")
        .client_secret("service-secret")
        .retry_base_delay(Duration::from_millis(1))
        .client_credentials()
}

#[tokio::test]
async fn client_credentials_fetches_its_first_token_when_needed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header(
            "authorization",
            "Basic c2VydmljZTpzZXJ2aWNlLXNlY3JldA==",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body(
            "cc-1",
            None,
            Some(3600),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let manager = cc_builder(&server)
        .scope("read:things")
        .audience("https://api.example.com")
        .build()
        .unwrap();
    assert!(server.received_requests().await.unwrap().is_empty(), "lazy");
    assert_eq!(manager.access_token().await.unwrap().secret(), "cc-1");
    let fields = form(&server.received_requests().await.unwrap()[0].body);
    assert_eq!(
        fields,
        vec![
            ("grant_type".into(), "client_credentials".into()),
            ("scope".into(), "read:things".into()),
            ("audience".into(), "https://api.example.com".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_herd_after_a_401_makes_one_new_grant() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body(
            "cc-1",
            None,
            Some(3600),
        )))
        .up_to_n_times(1)
        .expect(1)
        .mount(&auth)
        .await;
    token_endpoint_issues(&auth, token_body("cc-2", None, Some(3600)), 1).await;
    Mock::given(path("/data"))
        .and(header("authorization", "Bearer cc-2"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&api)
        .await;
    Mock::given(path("/data"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&api)
        .await;
    let manager = cc_builder(&auth).build().unwrap();
    manager.access_token().await.unwrap();
    let client = client(&manager, &api);
    let url = format!("{}/data", api.uri());
    let responses = join_all((0..200).map(|_| client.get(&url).send())).await;
    for response in responses {
        assert_eq!(response.unwrap().status(), 200);
    }
}

#[test]
fn client_credentials_needs_a_secret() {
    let err = TokenManager::builder("https://auth.example.com/token")
        .client_id("service")
        .client_credentials()
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

fn with_revocation(server: &MockServer) -> reqwest_oauth2_refresh::TokenManagerBuilder {
    TokenManager::builder(&format!("{}/token", server.uri()))
        .client_id("app")
        .retry_base_delay(Duration::from_millis(1))
        .revocation_url(&format!("{}/revoke", server.uri()))
        .initial_tokens(TokenSet::new("at-1").with_refresh_token("rt-1"))
}

#[tokio::test]
async fn revoke_revokes_the_refresh_token_and_forgets_the_session() {
    let server = MockServer::start().await;
    // A 503 first: retried.
    Mock::given(path("/revoke"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .and(body_string_contains("token=rt-1"))
        .and(body_string_contains("token_type_hint=refresh_token"))
        .and(body_string_contains("client_id=app"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let store = std::sync::Arc::new(reqwest_oauth2_refresh::MemoryStore::new());
    let manager = with_revocation(&server)
        .store(store.clone())
        .build()
        .unwrap();
    manager.access_token().await.unwrap();
    manager.revoke().await.unwrap();

    assert!(manager.cached_tokens().is_none());
    assert!(
        reqwest_oauth2_refresh::TokenStore::load(&*store)
            .await
            .unwrap()
            .is_none()
    );
    // The builder's tokens are not brought back.
    assert!(matches!(
        manager.access_token().await.unwrap_err(),
        Error::NoTokens
    ));
    // Nothing left to revoke: fine, and no call.
    manager.revoke().await.unwrap();
}

#[tokio::test]
async fn revoke_access_token_keeps_the_session() {
    let server = MockServer::start().await;
    Mock::given(path("/revoke"))
        .and(body_string_contains("token=at-1"))
        .and(body_string_contains("token_type_hint=access_token"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/token"))
        .and(body_string_contains("refresh_token=rt-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("at-2", None, None)))
        .expect(1)
        .mount(&server)
        .await;
    let manager = with_revocation(&server).build().unwrap();
    manager.revoke_access_token().await.unwrap();
    let kept = manager.cached_tokens().unwrap();
    assert_eq!(kept.refresh_token().unwrap().secret(), "rt-1");
    // The revoked access token is not sent again: the next one is new.
    assert_eq!(manager.access_token().await.unwrap().secret(), "at-2");
}

#[tokio::test]
async fn revocation_errors_are_typed() {
    let server = MockServer::start().await;
    Mock::given(path("/revoke"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"})))
        .expect(1)
        .mount(&server)
        .await;
    let manager = with_revocation(&server).build().unwrap();
    let err = manager.revoke().await.unwrap_err();
    assert!(
        matches!(&err, Error::OAuth { error, .. } if error == "invalid_client"),
        "{err:?}"
    );
    // A failed revocation forgets nothing.
    assert!(manager.cached_tokens().is_some());

    let without = TokenManager::builder(&format!("{}/token", server.uri()))
        .initial_tokens(TokenSet::new("a"))
        .build()
        .unwrap();
    assert!(matches!(
        without.revoke().await.unwrap_err(),
        Error::Config(_)
    ));
}

fn metadata(issuer: &str, auth_methods: &[&str]) -> serde_json::Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "token_endpoint_auth_methods_supported": auth_methods,
        "response_types_supported": ["code"],
    })
}

#[tokio::test]
async fn discovery_uses_rfc8414_path_insertion_and_checks_the_issuer() {
    let server = MockServer::start().await;
    let issuer = format!("{}/tenant-a", server.uri());
    Mock::given(path("/.well-known/oauth-authorization-server/tenant-a"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(metadata(&issuer, &["client_secret_post"])),
        )
        .mount(&server)
        .await;
    Mock::given(path("/tenant-a/oauth/token"))
        .and(body_string_contains("client_secret=s3cret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("at-2", None, None)))
        .expect(1)
        .mount(&server)
        .await;

    let found = ServerMetadata::fetch(&reqwest::Client::new(), &issuer)
        .await
        .unwrap();
    assert_eq!(found.token_endpoint, format!("{issuer}/oauth/token"));
    assert_eq!(
        found.revocation_endpoint,
        Some(format!("{issuer}/oauth/revoke"))
    );

    // The server takes only client_secret_post: the default follows.
    let manager = TokenManager::discover(&issuer)
        .await
        .unwrap()
        .client_id("app")
        .client_secret("s3cret")
        .initial_tokens(TokenSet::new("at-1").with_refresh_token("rt-1"))
        .build()
        .unwrap();
    assert_eq!(
        manager.refresh().await.unwrap().access_token().secret(),
        "at-2"
    );

    // RFC 8414 §3.3: the issuer must be identical.
    let err = TokenManager::discover(&format!("{issuer}/"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
}

#[tokio::test]
async fn discovery_falls_back_to_openid_configuration() {
    let server = MockServer::start().await;
    let issuer = server.uri();
    Mock::given(path("/.well-known/openid-configuration"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(metadata(&issuer, &["client_secret_basic"])),
        )
        .expect(1)
        .mount(&server)
        .await;
    let found = ServerMetadata::fetch(&reqwest::Client::new(), &issuer)
        .await
        .unwrap();
    assert_eq!(found.issuer, issuer);
}

#[tokio::test]
async fn discovery_refuses_metadata_for_another_issuer() {
    let server = MockServer::start().await;
    Mock::given(path("/.well-known/oauth-authorization-server"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(metadata("https://evil.example.com", &[])),
        )
        .mount(&server)
        .await;
    let err = ServerMetadata::fetch(&reqwest::Client::new(), &server.uri())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidResponse { reason, .. } if reason.contains("RFC 8414")),
        "{err:?}"
    );
}

#[tokio::test]
async fn discovery_of_an_insecure_issuer_is_refused() {
    let err = TokenManager::discover("http://auth.example.com")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

#[tokio::test]
async fn preset_defaults_follow_each_providers_documented_client_auth() {
    // Google documents the secret in the body; without one, a public client.
    let with_secret = providers::google()
        .client_id("id")
        .client_secret("s")
        .build();
    assert!(format!("{:?}", with_secret.unwrap()).contains("SecretPost"));
    let public = providers::google().client_id("id").build().unwrap();
    assert!(format!("{public:?}").contains("client_auth: None"));
    // Cognito app clients with a secret use Basic.
    let cognito = providers::cognito("my-app.auth.eu-west-1.amazoncognito.com")
        .client_id("id")
        .client_secret("s")
        .build()
        .unwrap();
    assert!(format!("{cognito:?}").contains("SecretBasic"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_first_client_credentials_grant_is_shared_by_the_herd() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(503).set_delay(Duration::from_millis(50)))
        .expect(1)
        .mount(&auth)
        .await;
    let manager = cc_builder(&auth).max_retries(0).build().unwrap();
    let client = client(&manager, &api);
    let url = format!("{}/data", api.uri());
    let responses = join_all((0..200).map(|_| client.get(&url).send())).await;
    for response in responses {
        let err = response.unwrap_err();
        assert!(
            matches!(our_error(&err), Error::HttpStatus { status } if *status == 503),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn middleware_reports_a_failed_client_credentials_grant() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client", "error_description": "bad secret"
        })))
        .expect(1)
        .mount(&auth)
        .await;
    let manager = cc_builder(&auth).build().unwrap();
    let err = client(&manager, &api)
        .get(format!("{}/data", api.uri()))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(our_error(&err), Error::OAuth { error, .. } if error == "invalid_client"),
        "{err:?}"
    );
}
