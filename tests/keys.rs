//! private_key_jwt client authentication and the JWT-bearer grant (RFC
//! 7523) against wiremock: every claim and header, a new `jti` for every
//! attempt, the audience rules, discovery's choice, and Google's
//! service-account key file; each signature verified with the public key.

mod common;
#[path = "common/jwt.rs"]
mod jwt;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use common::{
    TestClock, builder, form, token_body, token_endpoint_answers_first, token_endpoint_issues,
    token_url,
};
use jwt::{Jwt, rsa_pkcs8_pem};
use reqwest_oauth2_refresh::{
    Algorithm, AssertionAudience, Clock, Error, JwtBearerGrant, ServerMetadata, Signer, SigningKey,
    TokenManager, TokenSet, providers,
};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

async fn token_posts(server: &MockServer) -> Vec<Vec<(String, String)>> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r: &Request| form(&r.body))
        .collect()
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn seeded() -> TokenSet {
    TokenSet::new("at-1").with_refresh_token("rt-1")
}

#[tokio::test]
async fn a_client_assertion_carries_every_claim_and_verifies() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, token_body("at-2", Some("rt-2"), Some(3600)), 1).await;
    let clock = TestClock::new();
    let key = SigningKey::generate(Algorithm::Es256)
        .unwrap()
        .with_key_id("key-1");
    let public = key.public_jwk();
    let manager = builder(&server)
        .client_signer(key)
        .issuer("https://issuer.example")
        .clock(clock.clone())
        .initial_tokens(seeded())
        .build()
        .unwrap();
    manager.refresh().await.unwrap();

    let posts = token_posts(&server).await;
    let fields = &posts[0];
    assert_eq!(field(fields, "grant_type"), Some("refresh_token"));
    assert_eq!(field(fields, "client_id"), Some("test-client"));
    assert_eq!(field(fields, "client_assertion_type"), Some(ASSERTION_TYPE));
    assert_eq!(field(fields, "client_secret"), None);
    let jwt = Jwt::parse(field(fields, "client_assertion").unwrap());
    jwt.verify(&public);
    assert_eq!(jwt.header["alg"], "ES256");
    assert_eq!(jwt.header["kid"], "key-1");
    assert_eq!(jwt.header["typ"], "JWT");
    assert_eq!(jwt.claims["iss"], "test-client");
    assert_eq!(jwt.claims["sub"], "test-client");
    assert_eq!(jwt.claims["aud"], "https://issuer.example");
    let iat = jwt.claims["iat"].as_u64().unwrap();
    assert_eq!(iat, unix(clock.now()));
    let exp = jwt.claims["exp"].as_u64().unwrap();
    assert!(
        exp > iat && exp - iat <= 300,
        "a short-lived assertion: {}",
        exp - iat
    );
    assert!(jwt.claims["jti"].as_str().unwrap().len() >= 16);
}

#[tokio::test]
async fn every_attempt_carries_a_new_assertion() {
    let server = MockServer::start().await;
    token_endpoint_answers_first(&server, ResponseTemplate::new(503), 2).await;
    token_endpoint_issues(&server, token_body("at-2", None, Some(3600)), 1).await;
    let key = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let public = key.public_jwk();
    let manager = builder(&server)
        .client_signer(key)
        .initial_tokens(seeded())
        .build()
        .unwrap();
    manager.refresh().await.unwrap();

    let posts = token_posts(&server).await;
    assert_eq!(posts.len(), 3, "two 503s and a success");
    let mut jtis = HashSet::new();
    for fields in &posts {
        let jwt = Jwt::parse(field(fields, "client_assertion").unwrap());
        jwt.verify(&public);
        assert_eq!(jwt.header["alg"], "EdDSA");
        // No issuer is known: the token endpoint's URL.
        assert_eq!(jwt.claims["aud"], token_url(&server));
        jtis.insert(jwt.claims["jti"].as_str().unwrap().to_owned());
    }
    assert_eq!(jtis.len(), 3, "a jti is never reused across retries");
}

#[tokio::test]
async fn revocation_is_authenticated_with_an_assertion_for_its_own_url() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let key = SigningKey::generate(Algorithm::Es256).unwrap();
    let public = key.public_jwk();
    let revoke_url = format!("{}/revoke", server.uri());
    let manager = builder(&server)
        .client_signer(key)
        .issuer("https://issuer.example")
        .client_assertion_audience(AssertionAudience::Endpoint)
        .revocation_url(&revoke_url)
        .initial_tokens(seeded())
        .build()
        .unwrap();
    manager.revoke().await.unwrap();

    let posts = token_posts(&server).await;
    let fields = &posts[0];
    assert_eq!(field(fields, "token"), Some("rt-1"));
    assert_eq!(field(fields, "client_assertion_type"), Some(ASSERTION_TYPE));
    let jwt = Jwt::parse(field(fields, "client_assertion").unwrap());
    jwt.verify(&public);
    assert_eq!(jwt.claims["aud"], revoke_url);
}

#[tokio::test]
async fn client_credentials_with_a_key_needs_no_secret() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, token_body("cc-1", None, Some(3600)), 1).await;
    let key = SigningKey::generate(Algorithm::Es256).unwrap();
    let manager = builder(&server)
        .client_signer(key)
        .client_assertion_audience(AssertionAudience::Custom("urn:as".into()))
        .client_credentials()
        .build()
        .unwrap();
    assert_eq!(manager.access_token().await.unwrap().secret(), "cc-1");
    let posts = token_posts(&server).await;
    assert_eq!(field(&posts[0], "grant_type"), Some("client_credentials"));
    let jwt = Jwt::parse(field(&posts[0], "client_assertion").unwrap());
    assert_eq!(jwt.claims["aud"], "urn:as");
}

#[tokio::test]
async fn configurations_that_cannot_work_are_refused() {
    let key = || SigningKey::generate(Algorithm::Es256).unwrap();
    let base = || TokenManager::builder("https://as.example/token");
    // No client id to put in iss and sub.
    let err = base().client_signer(key()).build().unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    // The issuer as audience, with no issuer known.
    let err = base()
        .client_id("c")
        .client_signer(key())
        .client_assertion_audience(AssertionAudience::Issuer)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    // A JWT-bearer assertion living longer than an hour.
    let grant = JwtBearerGrant::new("robot", key()).lifetime(Duration::from_secs(7200));
    let err = base().jwt_bearer_grant(grant).build().unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

fn discovered(server: &MockServer, methods: &[&str]) -> ServerMetadata {
    serde_json::from_value(json!({
        "issuer": server.uri(),
        "token_endpoint": token_url(server),
        "token_endpoint_auth_methods_supported": methods,
    }))
    .unwrap()
}

#[tokio::test]
async fn discovery_picks_private_key_jwt_when_the_server_lists_it() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, token_body("at-2", None, Some(3600)), 2).await;
    let key = SigningKey::generate(Algorithm::Es256).unwrap();
    let with_key = TokenManager::from_metadata(&discovered(
        &server,
        &["client_secret_basic", "private_key_jwt"],
    ))
    .client_id("app")
    .client_secret("s3cret")
    .client_signer(key.clone())
    .initial_tokens(seeded())
    .build()
    .unwrap();
    with_key.refresh().await.unwrap();
    let without = TokenManager::from_metadata(&discovered(&server, &["client_secret_basic"]))
        .client_id("app")
        .client_secret("s3cret")
        .client_signer(key)
        .initial_tokens(seeded())
        .build()
        .unwrap();
    without.refresh().await.unwrap();

    let requests = server.received_requests().await.unwrap();
    let first = form(&requests[0].body);
    let jwt = Jwt::parse(field(&first, "client_assertion").expect("an assertion"));
    // Discovery knows the issuer: it is the audience.
    assert_eq!(jwt.claims["aud"], server.uri());
    assert!(requests[0].headers.get("authorization").is_none());
    // The server does not take keys: the secret, in Basic.
    assert_eq!(field(&form(&requests[1].body), "client_assertion"), None);
    assert!(requests[1].headers.get("authorization").is_some());
}

#[tokio::test]
async fn the_jwt_bearer_grant_signs_a_new_assertion_for_each_token() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, token_body("at", None, Some(3600)), 2).await;
    let clock = TestClock::new();
    let key = SigningKey::generate(Algorithm::Es256)
        .unwrap()
        .with_key_id("sa-key");
    let public = key.public_jwk();
    let grant = JwtBearerGrant::new("robot@example.com", key)
        .subject("alice@example.com")
        .scope_claim("calendar.read")
        .lifetime(Duration::from_secs(600));
    let manager = TokenManager::builder(&token_url(&server))
        .jwt_bearer_grant(grant)
        .clock(clock.clone())
        .build()
        .unwrap();
    manager.access_token().await.unwrap();
    clock.advance(Duration::from_secs(3600));
    manager.access_token().await.unwrap();

    let posts = token_posts(&server).await;
    assert_eq!(posts.len(), 2, "one exchange per expiry");
    let mut jtis = HashSet::new();
    for fields in &posts {
        assert_eq!(
            field(fields, "grant_type"),
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        );
        assert_eq!(field(fields, "client_id"), None, "no client authentication");
        let jwt = Jwt::parse(field(fields, "assertion").unwrap());
        jwt.verify(&public);
        assert_eq!(jwt.header["kid"], "sa-key");
        assert_eq!(jwt.claims["iss"], "robot@example.com");
        assert_eq!(jwt.claims["sub"], "alice@example.com");
        assert_eq!(jwt.claims["aud"], token_url(&server));
        assert_eq!(jwt.claims["scope"], "calendar.read");
        let iat = jwt.claims["iat"].as_u64().unwrap();
        assert_eq!(jwt.claims["exp"].as_u64().unwrap() - iat, 600);
        jtis.insert(jwt.claims["jti"].as_str().unwrap().to_owned());
    }
    assert_eq!(jtis.len(), 2);
}

fn service_account_json(pem: &str, token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "demo",
        "private_key_id": "0123abcd",
        "private_key": pem,
        "client_email": "robot@demo.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    })
    .to_string()
}

#[cfg(unix)]
fn write_private(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[cfg(unix)]
#[tokio::test]
async fn a_google_service_account_key_file_gives_rs256_assertions_google_accepts() {
    let server = MockServer::start().await;
    token_endpoint_issues(
        &server,
        json!({"access_token": "ya29.x", "expires_in": 3599, "token_type": "Bearer"}),
        1,
    )
    .await;
    let pem = rsa_pkcs8_pem();
    let public = SigningKey::from_pem(&pem).unwrap().public_jwk();
    let dir = tempdir();
    let text = service_account_json(&pem, &token_url(&server));
    let readable = write_private(&dir, "readable.json", &text, 0o644);
    let err = providers::google_service_account_file(&readable, &["a"]).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    let file = write_private(&dir, "sa.json", &text, 0o600);
    let manager = providers::google_service_account_file(
        &file,
        &["https://www.googleapis.com/auth/cloud-platform", "openid"],
    )
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(manager.access_token().await.unwrap().secret(), "ya29.x");

    let posts = token_posts(&server).await;
    let fields = &posts[0];
    assert_eq!(fields.len(), 2, "grant_type and assertion only: {fields:?}");
    let jwt = Jwt::parse(field(fields, "assertion").unwrap());
    jwt.verify(&public);
    assert_eq!(jwt.header["alg"], "RS256");
    assert_eq!(jwt.header["kid"], "0123abcd");
    assert_eq!(jwt.claims["iss"], "robot@demo.iam.gserviceaccount.com");
    assert_eq!(jwt.claims["aud"], token_url(&server));
    assert_eq!(
        jwt.claims["scope"],
        "https://www.googleapis.com/auth/cloud-platform openid"
    );
    let iat = jwt.claims["iat"].as_u64().unwrap();
    assert!(jwt.claims["exp"].as_u64().unwrap() - iat <= 3600);
    // The key never shows in what a user might print.
    let printed = format!("{manager:?}");
    assert!(!printed.contains("PRIVATE KEY"), "{printed}");
}

#[tokio::test]
async fn ps256_and_a_certificate_thumbprint_reach_the_header() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, token_body("at-2", None, Some(3600)), 1).await;
    let key = SigningKey::from_pem(&rsa_pkcs8_pem())
        .unwrap()
        .with_algorithm(Algorithm::Ps256)
        .unwrap()
        .with_certificate_der(b"not really a certificate");
    let public = key.public_jwk();
    let manager = providers::rules::entra(builder(&server))
        .client_signer(key)
        .initial_tokens(seeded())
        .build()
        .unwrap();
    manager.refresh().await.unwrap();
    let posts = token_posts(&server).await;
    let jwt = Jwt::parse(field(&posts[0], "client_assertion").unwrap());
    jwt.verify(&public);
    assert_eq!(jwt.header["alg"], "PS256");
    // base64url(SHA-256(the DER)): 43 characters.
    assert_eq!(jwt.header["x5t#S256"].as_str().unwrap().len(), 43);
    // Entra's rules address the assertion to the token endpoint.
    assert_eq!(jwt.claims["aud"], token_url(&server));
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "keys-test-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
