//! Keys at the real server: `private_key_jwt` clients (an ES256 key loaded
//! from a JWK, an RS256 key from a PEM file) refreshing under concurrency
//! through the middleware and revoking; the JWT-bearer grant (RFC 7523
//! §2.1, registered with oidc-provider as an extra grant type, which
//! verifies each assertion with the public key); and a Google
//! service-account key file against a Google-shaped token endpoint.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest_oauth2_refresh::{
    AssertionAudience, JwtBearerGrant, Signer, SigningKey, TokenManager, providers,
};
use serde::Deserialize;
use serde_json::Value;

use crate::fixture::{Interop, Issued, herd, herd_at, unique};
use crate::harness::{DRIVER_LIMIT, interop_dir, run_bounded};
use crate::stats::Revocation;

/// What `GET /test/keys` gives (keys.mjs).
#[derive(Deserialize)]
struct Keys {
    es256: Value,
    rs256: Value,
    bearer: Value,
    google_key_file: Value,
}

#[derive(Debug, Deserialize)]
struct GrantStats {
    grants: u64,
    errors: Vec<String>,
}

async fn keys(interop: &Interop) -> Keys {
    interop.test_route("keys", ("for", "keys")).await
}

async fn grant_stats(interop: &Interop, which: &str) -> GrantStats {
    let all: Value = interop.test_route("keys", ("for", "stats")).await;
    serde_json::from_value(all[which].clone()).expect("stats")
}

/// The first token pair for a private_key_jwt client: get-tokens.mjs signs
/// its code exchange with the same key.
async fn first_tokens_with_key(
    interop: &Interop,
    client_id: &str,
    jwk: &Value,
    login: &str,
) -> Issued {
    let mut command = Command::new("node");
    command
        .arg(interop_dir().join("get-tokens.mjs"))
        .arg(&interop.issuer)
        .arg(client_id)
        .arg("")
        .arg("private_key_jwt")
        .arg(format!("--login={login}"))
        .env("CLIENT_KEY_JWK", jwk.to_string());
    let out = tokio::task::spawn_blocking(move || run_bounded(command, DRIVER_LIMIT))
        .await
        .expect("the driver does not panic")
        .unwrap_or_else(|e| panic!("get-tokens.mjs failed for {client_id}: {e}"));
    let tokens: Value = serde_json::from_str(out.trim()).expect("the driver prints JSON");
    Issued {
        access: tokens["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned(),
        refresh: tokens["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_owned(),
        expires_in: tokens["expires_in"].as_u64(),
    }
}

/// A private key file only its owner can read, in a directory of its own.
fn private_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("interop-keys"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    path
}

/// For an ES256 client (key from a JWK, `aud` the issuer) and an RS256
/// client (key from a PEM file, `aud` the endpoint's URL): a herd of 200
/// requests meeting an invalidated token causes exactly one refresh, which
/// the server saw authenticated with private_key_jwt (it verifies the
/// signature against the client's registered JWKS and refuses a reused
/// `jti`); then `revoke()` authenticates the same way and kills the grant.
pub async fn private_key_jwt_clients_refresh_under_concurrency_and_revoke(interop: Interop) {
    let keys = keys(&interop).await;
    let es256 = SigningKey::from_jwk(&keys.es256["private_jwk"].to_string()).expect("ES256 JWK");
    let pem = private_file("rs256.pem", keys.rs256["pkcs8_pem"].as_str().expect("PEM"));
    let rs256 = SigningKey::from_pem_file(&pem)
        .expect("RS256 PEM")
        .with_key_id(keys.rs256["kid"].as_str().expect("kid"));
    // get-tokens.mjs signs the code exchange with the JWK form of each key.
    let cases = [
        (
            "es256-key-client",
            es256,
            keys.es256["private_jwk"].clone(),
            AssertionAudience::Issuer,
        ),
        (
            "rs256-key-client",
            rs256,
            keys.rs256["private_jwk"].clone(),
            AssertionAudience::Endpoint,
        ),
    ];
    for (client_id, key, jwk, audience) in cases {
        let login = interop.login(client_id, 600);
        let first = first_tokens_with_key(&interop, client_id, &jwk, &login).await;
        interop.note(format!(
            "{client_id}: {:?} key, aud {audience:?}",
            key.algorithm()
        ));
        let refreshes = Arc::new(AtomicUsize::new(0));
        let counter = refreshes.clone();
        let manager = TokenManager::builder(&interop.token_endpoint)
            .client_id(client_id)
            .client_signer(key)
            .issuer(&interop.issuer)
            .client_assertion_audience(audience)
            .revocation_url(&interop.revocation_endpoint)
            .initial_tokens(first.tokens())
            .on_refresh(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            })
            .build()
            .expect("manager");
        let client = interop.client(&manager);
        interop.invalidate(&first.access).await;
        herd(&interop, &client, &login).await;
        let stats = interop.stats(&login).await;
        assert_eq!(stats.refresh_calls, 1, "{client_id}: {stats:?}");
        assert_eq!(stats.refresh_success, 1, "{client_id}: {stats:?}");
        assert_eq!(stats.token_auth, ["private_key_jwt"], "{stats:?}");
        assert_eq!(refreshes.load(Ordering::SeqCst), 1);

        manager.revoke().await.expect("revoke");
        let stats = interop.stats(&login).await;
        let revocation = stats.revocations.last().expect("a revocation");
        assert_eq!(
            revocation,
            &Revocation {
                hint: Some("refresh_token".into()),
                client: Some(client_id.into()),
                auth: "private_key_jwt".into(),
                found: Some("RefreshToken".into()),
                status: 200,
            }
        );
    }
}

/// The JWT-bearer grant at oidc-provider: a cold herd of 200 machine
/// requests causes exactly one exchange, and after the token is invalidated
/// one more; the server verified each assertion (signature, iss, aud = its
/// token endpoint, exp within an hour, a `jti` never seen before).
pub async fn jwt_bearer_grant_exchanges_once_per_herd(interop: Interop) {
    let keys = keys(&interop).await;
    let key = SigningKey::from_jwk(&keys.bearer["private_jwk"].to_string()).expect("JWK");
    let issuer = keys.bearer["iss"].as_str().expect("iss");
    let before = grant_stats(&interop, "bearer_stats").await.grants;
    let manager = TokenManager::builder(&interop.token_endpoint)
        .client_id("jwt-bearer-client")
        .jwt_bearer_grant(JwtBearerGrant::new(issuer, key).subject("alice"))
        .build()
        .expect("manager");
    let client = interop.client(&manager);
    let machine = format!("{}/api/machine", interop.issuer);
    herd_at(&client, &machine, r#""client_id":"jwt-bearer-client""#).await;
    let stats = grant_stats(&interop, "bearer_stats").await;
    assert_eq!(stats.grants - before, 1, "{stats:?}");
    assert!(stats.errors.is_empty(), "{stats:?}");

    let token = manager.cached_tokens().expect("tokens");
    interop.invalidate_only(token.access_token().secret()).await;
    herd_at(&client, &machine, r#""client_id":"jwt-bearer-client""#).await;
    let stats = grant_stats(&interop, "bearer_stats").await;
    assert_eq!(stats.grants - before, 2, "one exchange per herd: {stats:?}");
    assert!(stats.errors.is_empty(), "{stats:?}");
}

/// A Google service-account key file, as Google issues it, through
/// `providers::google_service_account_file`: the Google-shaped endpoint
/// accepts only an RS256 assertion with the file's `kid`, `iss` =
/// `client_email`, `aud` = `token_uri`, a `scope` claim and no client
/// authentication.
pub async fn google_service_account_key_file_gets_a_token(interop: Interop) {
    let keys = keys(&interop).await;
    let file = private_file("service-account.json", &keys.google_key_file.to_string());
    let before = grant_stats(&interop, "google_stats").await.grants;
    let manager = providers::google_service_account_file(
        &file,
        &["https://www.googleapis.com/auth/cloud-platform"],
    )
    .expect("the key file loads")
    .build()
    .expect("manager");
    let token = manager.access_token().await.expect("a token");
    assert!(token.secret().starts_with("ya29."));
    let again = manager.access_token().await.expect("the same token");
    assert_eq!(
        again.secret(),
        token.secret(),
        "no exchange while it is fresh"
    );
    let stats = grant_stats(&interop, "google_stats").await;
    assert_eq!(stats.grants - before, 1, "{stats:?}");
    assert!(stats.errors.is_empty(), "{stats:?}");
}
