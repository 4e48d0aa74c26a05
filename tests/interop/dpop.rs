//! DPoP (RFC 9449) at the real server: oidc-provider issues DPoP-bound
//! tokens to a public client and requires a nonce in every proof at its
//! token endpoint; `/api/dpop` (dpop.mjs) verifies each proof itself
//! (signature, `typ`, `htm`, `htu`, `iat`, `jti`, `ath`, its own rotating
//! nonce) and that the token's `cnf.jkt` is the proof key's thumbprint.
//! Here: a herd under rotation, and a restart that resumes from a
//! `FileStore` with the key; the fleet is in `dpop_fleet`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use reqwest_middleware::ClientWithMiddleware;
use reqwest_oauth2_refresh::{
    ClientAuth, DpopKey, FileStore, TokenManager, TokenManagerBuilder, TokenSet,
};
use serde::Deserialize;
use serde_json::Value;

use crate::fixture::{HERD, Interop, OAuthClient, form, herd_at, unique};
use crate::harness::{DRIVER_LIMIT, interop_dir, run_bounded};

/// The public client of dpop.mjs: `dpop_bound_access_tokens`, no secret.
pub const DPOP: OAuthClient = OAuthClient {
    id: "dpop-client",
    secret: None,
    auth: ClientAuth::None,
    method: "none",
};

/// What `GET /test/dpop-stats?jkt=` counted for one key (dpop.mjs).
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // every field shows in assertion messages
pub struct DpopStats {
    /// `/api/dpop` answers 200: every check passed.
    pub rs_verified: u64,
    /// `/api/dpop` answers 401 `use_dpop_nonce`.
    pub rs_nonce_challenges: u64,
    /// `/api/dpop`: a good proof with an unknown or expired token.
    pub rs_token_rejected: u64,
    /// `/api/dpop`: any other refusal, by reason.
    pub rs_failures: HashMap<String, u64>,
    pub rs_nonce_rotations: u64,
    /// Token responses with an access token bound to this key, by grant.
    pub token_issued: HashMap<String, u64>,
    pub token_nonce_challenges: u64,
    pub token_invalid_grant: u64,
    pub token_errors: HashMap<String, u64>,
    pub token_error_descriptions: Vec<String>,
    pub accounts: Vec<String>,
}

impl DpopStats {
    pub fn issued(&self, grant: &str) -> u64 {
        self.token_issued.get(grant).copied().unwrap_or(0)
    }
}

/// A first DPoP-bound token set and its key, which get-tokens.mjs made.
pub struct Bound {
    pub tokens: TokenSet,
    pub key: DpopKey,
}

impl Bound {
    pub fn jkt(&self) -> &str {
        self.key.thumbprint()
    }
}

/// The first token pair for `dpop-client`, through the real authorization
/// code + PKCE flow with `dpop_jkt` and a proof at the code exchange. Node
/// makes the key (the crate cannot export one) and prints its private JWK.
pub async fn first_dpop_tokens(interop: &Interop, login: &str) -> Bound {
    let mut command = Command::new("node");
    command
        .arg(interop_dir().join("get-tokens.mjs"))
        .arg(&interop.issuer)
        .arg(DPOP.id)
        .arg("")
        .arg(DPOP.method)
        .arg(format!("--login={login}"))
        .arg("--dpop");
    let out = tokio::task::spawn_blocking(move || run_bounded(command, DRIVER_LIMIT))
        .await
        .expect("the driver does not panic")
        .unwrap_or_else(|e| panic!("get-tokens.mjs --dpop failed: {e}"));
    let mut response: Value = serde_json::from_str(out.trim()).expect("the driver prints JSON");
    let jwk = response
        .as_object_mut()
        .and_then(|o| o.remove("dpop_private_jwk"))
        .expect("dpop_private_jwk");
    let key = DpopKey::from_jwk(&jwk.to_string()).expect("the driver's JWK loads");
    let tokens = TokenSet::from_token_response_json(&response)
        .expect("a token response")
        .with_dpop_key(&key);
    assert!(
        tokens.is_dpop_token(),
        "token_type DPoP: {:?}",
        tokens.token_type()
    );
    Bound { tokens, key }
}

pub async fn dpop_stats(interop: &Interop, jkt: &str) -> DpopStats {
    interop.test_route("dpop-stats", ("jkt", jkt)).await
}

/// Makes every resource-server nonce the key was given stale.
async fn rotate_nonces(interop: &Interop, jkt: &str) {
    let status = interop
        .http
        .post(format!(
            "{}/test/dpop-rotate?{}",
            interop.issuer,
            form(&[("jkt", jkt)])
        ))
        .send()
        .await
        .expect("dpop-rotate answers")
        .status();
    assert_eq!(status, StatusCode::OK);
}

pub fn dpop_api(interop: &Interop) -> String {
    format!("{}/api/dpop", interop.issuer)
}

/// `GET /api/dpop` through the middleware: 200 for `login`, and the server
/// says the token it verified is bound to `jkt`.
async fn dpop_ok(interop: &Interop, client: &ClientWithMiddleware, login: &str, jkt: &str) {
    let response = client
        .get(dpop_api(interop))
        .send()
        .await
        .expect("the request goes through");
    let status = response.status();
    let body = response.text().await.expect("body");
    assert_eq!(status, StatusCode::OK, "GET /api/dpop: {body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["sub"], login, "{body}");
    assert_eq!(body["jkt"], jkt, "{body}");
}

/// The token endpoint answered nothing but its nonce challenges, which
/// the crate (and the driver) met with one retry each.
fn only_nonce_errors(stats: &DpopStats) {
    assert_eq!(stats.token_invalid_grant, 0, "{stats:?}");
    assert!(
        stats
            .token_errors
            .keys()
            .all(|code| code == "use_dpop_nonce"),
        "{stats:?}"
    );
    assert!(stats.rs_failures.is_empty(), "{stats:?}");
}

/// A herd of 200 through the middleware, three times: cold (no nonce
/// known: the resource server challenges, each request retries once with
/// its nonce), then twice with the access token invalidated and every
/// nonce made stale at once: each herd causes exactly one refresh, with a
/// proof that meets the token endpoint's nonce, and all 200 requests
/// succeed. The server verified every proof (`ath`, `cnf.jkt` = the key's
/// RFC 7638 thumbprint) and refused none but the deliberate nonce
/// challenges and dead tokens; the resource server's nonce also rotated
/// on its own while requests were in flight. A forced refresh at the end
/// shows the family alive.
pub async fn dpop_herd_refreshes_once_per_rotation_with_nonces_at_both_ends(interop: Interop) {
    let login = interop.login("dpop-herd", 600);
    let bound = first_dpop_tokens(&interop, &login).await;
    let jkt = bound.jkt().to_owned();
    let seed = dpop_stats(&interop, &jkt).await;
    // The server's thumbprint of the proof key is the crate's.
    assert_eq!(seed.issued("authorization_code"), 1, "{seed:?}");
    assert_eq!(seed.accounts, std::slice::from_ref(&login), "{seed:?}");
    let refreshes = Arc::new(AtomicUsize::new(0));
    let manager = interop
        .manager(DPOP, bound.tokens.clone(), refreshes.clone())
        .build()
        .expect("manager");
    let client = interop.client(&manager);
    let expected = format!(r#""sub":"{login}","client_id":"{}","jkt":"{jkt}""#, DPOP.id);

    herd_at(&client, &dpop_api(&interop), &expected).await;
    let cold = dpop_stats(&interop, &jkt).await;
    interop.note(format!("cold herd: {cold:?}"));
    assert!(cold.rs_nonce_challenges >= 1, "{cold:?}");
    assert_eq!(cold.rs_verified, HERD as u64, "{cold:?}");
    assert_eq!(refreshes.load(Ordering::SeqCst), 0);

    for round in 1..=2 {
        let current = manager.cached_tokens().expect("tokens");
        interop.invalidate(current.access_token().secret()).await;
        rotate_nonces(&interop, &jkt).await;
        let before = dpop_stats(&interop, &jkt).await;
        herd_at(&client, &dpop_api(&interop), &expected).await;
        let after = dpop_stats(&interop, &jkt).await;
        interop.note(format!("herd {round}: {after:?}"));
        assert_eq!(
            refreshes.load(Ordering::SeqCst),
            round,
            "one refresh per herd"
        );
        assert_eq!(after.issued("refresh_token"), round as u64, "{after:?}");
        assert!(
            after.rs_nonce_challenges > before.rs_nonce_challenges,
            "{after:?}"
        );
        assert!(
            after.rs_token_rejected > before.rs_token_rejected,
            "{after:?}"
        );
        assert_eq!(
            after.rs_verified - before.rs_verified,
            HERD as u64,
            "{after:?}"
        );
    }

    let last = manager.refresh().await.expect("the family is alive");
    assert!(last.is_dpop_token() && last.is_dpop_bound());
    dpop_ok(&interop, &client, &login, &jkt).await;
    let stats = dpop_stats(&interop, &jkt).await;
    interop.note(format!("end: {stats:?}"));
    only_nonce_errors(&stats);
    assert_eq!(stats.issued("refresh_token"), 3, "{stats:?}");
    // One challenge per client that had no nonce yet: the driver and the
    // manager; the manager kept the nonce for its later refreshes.
    assert_eq!(stats.token_nonce_challenges, 2, "{stats:?}");
    assert_eq!(stats.rs_verified, 3 * HERD as u64 + 1, "{stats:?}");
    // Three per stale-making, and one every 100 verified requests.
    assert_eq!(stats.rs_nonce_rotations, 2 * 3 + 6, "{stats:?}");
    assert_eq!(stats.accounts, [login], "{stats:?}");
}

/// A new directory for a test's token file.
pub fn token_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("tokens.json")
}

/// A manager for `dpop-client` on the token file, with nothing else: no
/// initial tokens, no DPoP key (both come from the file).
pub fn file_manager(interop: &Interop, path: &Path) -> TokenManagerBuilder {
    TokenManager::builder(&interop.token_endpoint)
        .client_id(DPOP.id)
        .client_auth(DPOP.auth)
        .store(FileStore::new(path).expect("a token file path"))
}

/// The token file's JSON.
fn read_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the token file")).expect("JSON")
}

/// Restarts: a manager with a `FileStore` uses and refreshes the family
/// and is dropped; new processes (the `oauth2-refresh` CLI, when it is
/// built, and this test binary run again as a worker) each refresh it
/// from the file alone, key included; a new manager on the file then
/// calls the API and refreshes once more. The server saw every refresh
/// with a proof from the same key (each new client met its nonce
/// challenge once) and every API request bound to it; no `invalid_grant`.
pub async fn dpop_family_resumes_after_a_restart_from_the_file_store(interop: Interop) {
    let login = interop.login("dpop-restart", 600);
    let bound = first_dpop_tokens(&interop, &login).await;
    let jkt = bound.jkt().to_owned();
    let path = token_file("interop-dpop-restart");
    {
        let manager = file_manager(&interop, &path)
            .initial_tokens(bound.tokens.clone())
            .build()
            .expect("manager");
        let client = interop.client(&manager);
        dpop_ok(&interop, &client, &login, &jkt).await;
        interop
            .invalidate(bound.tokens.access_token().secret())
            .await;
        dpop_ok(&interop, &client, &login, &jkt).await;
    }
    let mut clients = 2; // the driver and the first manager
    let mut refreshes = 1;
    let saved = read_file(&path);
    assert_eq!(saved["token_type"], "DPoP", "{}", redacted(&saved));
    assert!(
        saved["dpop_key"].is_string(),
        "the key is saved with the tokens"
    );

    if let Some(cli) = option_env!("CARGO_BIN_EXE_oauth2-refresh") {
        let mut command = Command::new(cli);
        command
            .args(["refresh", "--token-url", &interop.token_endpoint])
            .args(["--client-id", DPOP.id, "--auth", "none", "--token-file"])
            .arg(&path);
        let out = tokio::task::spawn_blocking(move || run_bounded(command, DRIVER_LIMIT))
            .await
            .expect("no panic")
            .unwrap_or_else(|e| panic!("oauth2-refresh refresh failed: {e}"));
        interop.note(format!("oauth2-refresh: {}", out.trim()));
        clients += 1;
        refreshes += 1;
    } else {
        interop.note("oauth2-refresh is not built (feature cli): only the worker restarts");
    }
    crate::dpop_fleet::refresh_in_a_new_process(&interop, &path).await;
    clients += 1;
    refreshes += 1;
    let rotated = read_file(&path);
    assert_ne!(rotated["refresh_token"], saved["refresh_token"]);
    assert_eq!(rotated["dpop_key"], saved["dpop_key"], "the same key");

    let manager = file_manager(&interop, &path).build().expect("manager");
    let client = interop.client(&manager);
    dpop_ok(&interop, &client, &login, &jkt).await;
    let loaded = manager.cached_tokens().expect("tokens from the file");
    assert!(loaded.is_dpop_bound() && loaded.is_dpop_token());
    interop.invalidate(loaded.access_token().secret()).await;
    dpop_ok(&interop, &client, &login, &jkt).await;
    clients += 1;
    refreshes += 1;

    let stats = dpop_stats(&interop, &jkt).await;
    interop.note(format!("{stats:?}"));
    only_nonce_errors(&stats);
    assert_eq!(stats.issued("refresh_token"), refreshes, "{stats:?}");
    assert_eq!(stats.token_nonce_challenges, clients, "{stats:?}");
    assert_eq!(stats.rs_verified, 4, "{stats:?}");
    assert_eq!(stats.accounts, [login], "{stats:?}");
    let _ = std::fs::remove_dir_all(path.parent().expect("a directory"));
}

/// The token file's field names, for a message: no secrets.
fn redacted(file: &Value) -> String {
    file.as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}
