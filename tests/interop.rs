//! Interop with a real, OpenID Certified authorization server: `oidc-provider`
//! (pinned in `tests/interop/package.json`), with refresh-token rotation on
//! for every client and its reuse detection (a rotated refresh token that is
//! presented again revokes the whole grant).
//!
//! The server: `OIDC_ISSUER` if set; otherwise `node tests/interop/server.mjs`,
//! started here when `tests/interop/node_modules` exists (`npm ci` there) and
//! `node` is on `PATH`. Without one the tests print why and pass, except with
//! `CI=true`, where a missing server fails them. The first token pair of each
//! test comes from `tests/interop/get-tokens.mjs`, which drives the real
//! authorization code + PKCE flow through the server's login and consent
//! forms.
//!
//! Covered, each against the real server:
//! - refresh: after a real expiry (401), proactively within the leeway, once
//!   for a herd of 200 concurrent requests, with each client authentication
//!   method (the server records which one each call used), and reuse
//!   detection ending the session with a sticky `Error::InvalidGrant`;
//! - discovery: `ServerMetadata::fetch` and `TokenManager::discover` /
//!   `discover_with` read the token and revocation endpoints and auth
//!   methods (RFC 8414 first; the OpenID fallback for the issuer with a
//!   path), reject an issuer that is not exact (RFC 8414 §3.3), and give a
//!   builder that refreshes end to end, with a default auth method the
//!   server lists (`ISSUER/post-only` lists only `client_secret_post`);
//! - revocation (RFC 7009): `revoke()` with a discovered or explicit
//!   endpoint kills the refresh token at the server and leaves the manager
//!   with `Error::NoTokens`, twice is fine; `revoke_access_token()` makes the
//!   API answer 401, and since oidc-provider revokes the whole grant with an
//!   access token, the next refresh is `Error::InvalidGrant`;
//! - client credentials: lazy first token, exactly one grant per herd (cold
//!   or after a 401), `scope` and RFC 8707 `resource` reaching the token,
//!   revocation followed by a new grant.
//!
//! Each test uses its own account (login), or its own tag (the
//! `x-interop-test` header) for client-credentials and discovery traffic,
//! and the server counts token endpoint calls per account or tag (`GET
//! /test/stats?account=..`) and logs tagged requests (`GET
//! /test/requests?tag=..`), so the tests can assert what really reached the
//! server, also when they share one.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use futures_util::future::join_all;
use reqwest::StatusCode;
use reqwest_middleware::ClientWithMiddleware;
use reqwest_oauth2_refresh::{
    ClientAuth, Error, OAuth2Middleware, ServerMetadata, TokenManager, TokenManagerBuilder,
    TokenSet,
};
use serde::Deserialize;
use serde_json::Value;

use common::{TestClock, our_error};

/// The same secret as `basic-client`'s in `server.mjs`: reserved characters
/// that only survive RFC 6749 §2.3.1 form-urlencoding inside Basic.
const BASIC_SECRET: &str = r##"s3cr:t/+ %2B&=?#;@,~'""##;
const POST_SECRET: &str = "post-secret/+=&%";
/// `cc-client`'s secret in `server.mjs`.
const CC_SECRET: &str = "cc-secret:/+ %2B&=?";
const CC_CLIENT: &str = "cc-client";
/// The resource server (RFC 8707 indicator) client-credentials tokens are
/// issued for, and the scope `/api/service` wants.
const API_RESOURCE: &str = "urn:interop:api";
const API_SCOPE: &str = "api:read";
/// `server.mjs` logs requests that carry this header under its value.
const TAG_HEADER: &str = "x-interop-test";
/// The path of the second issuer of `server.mjs` (client_secret_post only).
const POST_ONLY_PATH: &str = "/post-only";

/// Every bounded wait of these tests.
const TEST_LIMIT: Duration = Duration::from_secs(120);
const SERVER_START_LIMIT: Duration = Duration::from_secs(30);
const DRIVER_LIMIT: Duration = Duration::from_secs(45);
/// Concurrent requests that meet one revoked token.
const HERD: usize = 200;

#[derive(Debug, Clone, Copy)]
struct OAuthClient {
    id: &'static str,
    secret: Option<&'static str>,
    auth: ClientAuth,
    /// The `token_endpoint_auth_method`, for the driver.
    method: &'static str,
}

const BASIC: OAuthClient = OAuthClient {
    id: "basic-client",
    secret: Some(BASIC_SECRET),
    auth: ClientAuth::SecretBasic,
    method: "client_secret_basic",
};
const POST: OAuthClient = OAuthClient {
    id: "post-client",
    secret: Some(POST_SECRET),
    auth: ClientAuth::SecretPost,
    method: "client_secret_post",
};
const PUBLIC: OAuthClient = OAuthClient {
    id: "public-client",
    secret: None,
    auth: ClientAuth::None,
    method: "none",
};

// ---------------------------------------------------------------------------
// Finding or starting the server
// ---------------------------------------------------------------------------

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// No server: skip (print why), or fail under CI.
fn unavailable(reason: &str) -> Option<Interop> {
    if in_ci() {
        panic!("interop server unavailable and CI=true: {reason}");
    }
    eprintln!("SKIPPED interop test: {reason}");
    None
}

fn node_available() -> Result<(), String> {
    match Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("`node --version` exited with {}", out.status)),
        Err(e) => Err(format!("`node` is not on PATH ({e})")),
    }
}

/// A `node server.mjs` child: killed on drop (and it exits by itself when
/// its stdin closes, should this process die without dropping it).
struct ServerProcess {
    child: Child,
    _stdin: ChildStdin,
    log: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Starts the server and waits (bounded) for its ready line; returns
    /// the main issuer.
    fn start() -> Result<(Self, String), String> {
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(interop_dir())
            .env("PORT", "0")
            .env("EXIT_ON_STDIN_EOF", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start node server.mjs: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));

        let err_log = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                err_log
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let out_log = log.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = ready_tx.send(first);
            }
            for line in lines.map_while(Result::ok) {
                let mut log = out_log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });

        let mut server = ServerProcess {
            child,
            _stdin: stdin,
            log,
        };
        let line = match ready_rx.recv_timeout(SERVER_START_LIMIT) {
            Ok(line) => line,
            Err(_) => {
                let _ = server.child.kill();
                let _ = server.child.wait();
                return Err(format!(
                    "server.mjs printed no ready line within {SERVER_START_LIMIT:?}; its log:\n{}",
                    server.log.lock().unwrap()
                ));
            }
        };
        let ready: Value = serde_json::from_str(&line)
            .map_err(|e| format!("server.mjs ready line is not JSON ({e}): {line}"))?;
        let issuer = ready["issuer"]
            .as_str()
            .ok_or_else(|| format!("no issuer in the ready line: {line}"))?
            .to_owned();
        Ok((server, issuer))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- interop server log ---\n{}\n--- end of server log ---",
                self.log.lock().unwrap()
            );
        }
    }
}

/// Runs `command` to completion within `limit`, killing it past that.
/// Returns its stdout, or an error with its stderr.
fn run_bounded(mut command: Command, limit: Duration) -> Result<String, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start {command:?}: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send(out);
    });
    let stderr = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let Ok(out) = rx.recv_timeout(limit) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("{command:?} did not finish within {limit:?}"));
    };
    let status = child.wait().map_err(|e| e.to_string())?;
    let err = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        Err(format!("the driver exited with {status}: {err}"))
    }
}

// ---------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // every field shows in assertion messages
struct Stats {
    refresh_calls: u64,
    refresh_success: u64,
    refresh_errors: HashMap<String, u64>,
    refresh_error_descriptions: Vec<String>,
    code_exchanges: u64,
    /// Successful client-credentials grants (counted under the tag).
    cc_grants: u64,
    cc_errors: HashMap<String, u64>,
    /// The `scope` of each client-credentials token response.
    cc_scopes: Vec<Option<String>>,
    api_ok: u64,
    api_unauthorized: u64,
    /// `/api/service`: a valid token for another audience or scope.
    api_forbidden: u64,
    clients: Vec<String>,
    /// How the client authenticated on each refresh and client-credentials
    /// call, as the server saw it (oidc-provider accepts Basic and the body
    /// alike, so only this shows what the crate sent).
    token_auth: Vec<String>,
    revocations: Vec<Revocation>,
}

/// One call to a revocation endpoint with one of an account's tokens.
#[derive(Debug, Deserialize, PartialEq, Eq)]
struct Revocation {
    hint: Option<String>,
    client: Option<String>,
    auth: String,
    /// The kind of token the server found (`RefreshToken`, `AccessToken`,
    /// `ClientCredentials`), or `None` for a token it did not know.
    found: Option<String>,
    status: u16,
}

impl Revocation {
    fn new(hint: &str, client: &str, auth: &str, found: Option<&str>) -> Self {
        Self {
            hint: Some(hint.to_owned()),
            client: Some(client.to_owned()),
            auth: auth.to_owned(),
            found: found.map(str::to_owned),
            status: 200,
        }
    }
}

/// One request that carried the tag header, as the server logged it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
struct Logged {
    method: String,
    path: String,
    status: Option<u16>,
}

impl Logged {
    fn new(method: &str, path: &str, status: u16) -> Self {
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            status: Some(status),
        }
    }
}

impl Stats {
    fn errors(&self, code: &str) -> u64 {
        self.refresh_errors.get(code).copied().unwrap_or(0)
    }
}

/// What a token endpoint issued, as JSON.
struct Issued {
    access: String,
    refresh: String,
    expires_in: Option<u64>,
}

struct Interop {
    issuer: String,
    /// The second issuer, `ISSUER/post-only`, whose metadata lists only
    /// `client_secret_post`.
    post_only_issuer: String,
    token_endpoint: String,
    revocation_endpoint: String,
    /// A plain client for the test's own calls (no middleware, no redirects).
    http: reqwest::Client,
    _server: Option<ServerProcess>,
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

impl Interop {
    /// The server from `OIDC_ISSUER`, or one started for this test; `None`
    /// (after printing why) when there is none and this is not CI.
    async fn start() -> Option<Self> {
        let (issuer, server) = match std::env::var("OIDC_ISSUER") {
            Ok(issuer) if !issuer.is_empty() => {
                if let Err(reason) = node_available() {
                    return unavailable(&format!(
                        "OIDC_ISSUER is set, but the token driver needs node: {reason}"
                    ));
                }
                (issuer.trim_end_matches('/').to_owned(), None)
            }
            _ => {
                if !interop_dir().join("node_modules").is_dir() {
                    return unavailable(
                        "tests/interop/node_modules is missing: run `npm ci` in tests/interop, \
                         or set OIDC_ISSUER",
                    );
                }
                if let Err(reason) = node_available() {
                    return unavailable(&reason);
                }
                let started = tokio::task::spawn_blocking(ServerProcess::start)
                    .await
                    .expect("the server start does not panic");
                match started {
                    Ok((server, issuer)) => (issuer, Some(server)),
                    Err(reason) => return unavailable(&reason),
                }
            }
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let discovery: Value = serde_json::from_str(
            &http
                .get(format!("{issuer}/.well-known/openid-configuration"))
                .send()
                .await
                .expect("discovery answers")
                .text()
                .await
                .expect("discovery body"),
        )
        .expect("discovery is JSON");
        let endpoint = |name: &str| {
            discovery[name]
                .as_str()
                .unwrap_or_else(|| panic!("discovery has no {name}: {discovery}"))
                .to_owned()
        };
        Some(Self {
            token_endpoint: endpoint("token_endpoint"),
            revocation_endpoint: endpoint("revocation_endpoint"),
            post_only_issuer: format!("{issuer}{POST_ONLY_PATH}"),
            issuer,
            http,
            _server: server,
        })
    }

    /// A login no other test (or run, against a shared server) uses; access
    /// tokens issued to it live `ttl_secs` (see `ttlFor` in server.mjs).
    fn login(&self, name: &str, ttl_secs: u64) -> String {
        format!("{}-ttl{ttl_secs}", unique(name))
    }

    /// A plain client (no redirects) whose requests carry `TAG_HEADER: tag`:
    /// the server logs them (`GET /test/requests`) and counts their
    /// client-credentials grants under `tag`.
    fn tagged_http(&self, tag: &str) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(TAG_HEADER, tag.parse().expect("a header value"));
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .expect("client")
    }

    /// The requests that carried `TAG_HEADER: tag`, in order.
    async fn requests(&self, tag: &str) -> Vec<Logged> {
        let body = self
            .http
            .get(format!(
                "{}/test/requests?{}",
                self.issuer,
                form(&[("tag", tag)])
            ))
            .send()
            .await
            .expect("the request log answers")
            .text()
            .await
            .expect("request log body");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("request log ({e}): {body}"))
    }

    /// The first token pair, through the real authorization code + PKCE flow
    /// (`get-tokens.mjs`).
    async fn first_tokens(&self, client: OAuthClient, login: &str) -> Issued {
        self.first_tokens_from(&self.issuer, client, login).await
    }

    /// [`first_tokens`](Self::first_tokens) from another issuer.
    async fn first_tokens_from(&self, issuer: &str, client: OAuthClient, login: &str) -> Issued {
        let mut command = Command::new("node");
        command
            .arg(interop_dir().join("get-tokens.mjs"))
            .arg(issuer)
            .arg(client.id)
            .arg(client.secret.unwrap_or(""))
            .arg(client.method)
            .arg(format!("--login={login}"));
        let out = tokio::task::spawn_blocking(move || run_bounded(command, DRIVER_LIMIT))
            .await
            .expect("the driver does not panic")
            .unwrap_or_else(|e| panic!("get-tokens.mjs failed for {}: {e}", client.id));
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

    fn manager(
        &self,
        client: OAuthClient,
        tokens: TokenSet,
        refreshes: Arc<AtomicUsize>,
    ) -> reqwest_oauth2_refresh::TokenManagerBuilder {
        let mut builder = TokenManager::builder(&self.token_endpoint)
            .client_id(client.id)
            .client_auth(client.auth)
            .tokens(tokens)
            .on_refresh(move |_| {
                refreshes.fetch_add(1, Ordering::SeqCst);
            });
        if let Some(secret) = client.secret {
            builder = builder.client_secret(secret);
        }
        builder
    }

    fn client(&self, manager: &TokenManager) -> ClientWithMiddleware {
        let auth = OAuth2Middleware::builder(manager.clone())
            .allow_origin(&self.issuer)
            .build()
            .expect("loopback http is an allowed origin");
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(auth)
            .build()
    }

    fn api(&self) -> String {
        format!("{}/api/me", self.issuer)
    }

    fn service(&self) -> String {
        format!("{}/api/service", self.issuer)
    }

    /// `GET /api/service` through the middleware; asserts a 200 for
    /// `cc-client`, audience `urn:interop:api`, scope `api:read`.
    async fn service_ok(&self, client: &ClientWithMiddleware) {
        let response = client
            .get(self.service())
            .send()
            .await
            .expect("the request goes through");
        let status = response.status();
        let body = response.text().await.expect("body");
        assert_eq!(status, StatusCode::OK, "GET /api/service: {body}");
        let body: Value = serde_json::from_str(&body).expect("JSON body");
        assert_eq!(body["client_id"], CC_CLIENT, "{body}");
        assert_eq!(body["aud"], API_RESOURCE, "{body}");
        assert_eq!(body["scope"], API_SCOPE, "{body}");
    }

    /// `GET /api/service` with `access` and no middleware.
    async fn raw_service(&self, access: &str) -> StatusCode {
        self.http
            .get(self.service())
            .bearer_auth(access)
            .send()
            .await
            .expect("the API answers")
            .status()
    }

    /// `GET /api/me` through the middleware; asserts a 200 for `login`.
    async fn me(&self, client: &ClientWithMiddleware, login: &str) {
        let response = client
            .get(self.api())
            .send()
            .await
            .expect("the request goes through");
        assert_eq!(response.status(), StatusCode::OK, "GET /api/me");
        let body: Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("JSON body");
        assert_eq!(body["sub"], login, "{body}");
    }

    /// `GET /api/me` with `access` and no middleware.
    async fn raw_me(&self, access: &str) -> StatusCode {
        self.http
            .get(self.api())
            .bearer_auth(access)
            .send()
            .await
            .expect("the API answers")
            .status()
    }

    async fn stats(&self, login: &str) -> Stats {
        let body = self
            .http
            .get(format!(
                "{}/test/stats?{}",
                self.issuer,
                form(&[("account", login)])
            ))
            .send()
            .await
            .expect("stats answer")
            .text()
            .await
            .expect("stats body");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("stats ({e}): {body}"))
    }

    /// Deletes one access token at the server, as if it had expired: the
    /// deterministic way to make the API answer 401 (the revocation endpoint
    /// of oidc-provider would revoke the refresh tokens too).
    async fn invalidate(&self, access: &str) {
        self.invalidate_only(access).await;
        assert_eq!(self.raw_me(access).await, StatusCode::UNAUTHORIZED);
    }

    /// [`invalidate`](Self::invalidate) without asking `/api/me` (for a
    /// client-credentials token, which `/api/me` never accepts).
    async fn invalidate_only(&self, access: &str) {
        let body = form(&[("token", access)]);
        let answer = self
            .http
            .post(format!("{}/test/invalidate", self.issuer))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("invalidate answers")
            .text()
            .await
            .expect("invalidate body");
        assert!(answer.contains(r#""invalidated":true"#), "{answer}");
    }

    /// A refresh request of our own, without the crate: to spend a refresh
    /// token behind the manager's back, or to check encodings. `basic_raw`
    /// builds the Basic credentials WITHOUT form-urlencoding (the common bug).
    async fn raw_refresh(
        &self,
        client: OAuthClient,
        refresh: &str,
        basic_raw: bool,
    ) -> (StatusCode, Value) {
        let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", refresh)];
        let mut request = self
            .http
            .post(&self.token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json");
        match client.auth {
            ClientAuth::SecretBasic => {
                let secret = client.secret.expect("a secret");
                let credentials = if basic_raw {
                    format!("{}:{secret}", client.id)
                } else {
                    format!("{}:{}", urlencode(client.id), urlencode(secret))
                };
                let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
                request = request.header("authorization", format!("Basic {encoded}"));
            }
            ClientAuth::SecretPost => {
                pairs.push(("client_id", client.id));
                pairs.push(("client_secret", client.secret.expect("a secret")));
            }
            _ => pairs.push(("client_id", client.id)),
        }
        let response = request
            .body(form(&pairs))
            .send()
            .await
            .expect("the token endpoint answers");
        let status = response.status();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A name no other test (or run, against a shared server) uses.
fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = UNIQUE.fetch_add(1, Ordering::SeqCst);
    format!("{name}-{}-{nanos}-{n}", std::process::id())
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn bounded<F: std::future::Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {TEST_LIMIT:?}"));
}

/// `HERD` concurrent `GET /api/me` through the middleware; all must be 200.
async fn herd(interop: &Interop, client: &ClientWithMiddleware, login: &str) {
    herd_at(client, &interop.api(), &format!(r#""sub":"{login}""#)).await;
}

/// `HERD` concurrent `GET /api/service` through the middleware; all must be
/// 200 for `cc-client`.
async fn service_herd(interop: &Interop, client: &ClientWithMiddleware) {
    herd_at(
        client,
        &interop.service(),
        &format!(r#""client_id":"{CC_CLIENT}","aud":"{API_RESOURCE}","scope":"{API_SCOPE}""#),
    )
    .await;
}

/// `HERD` concurrent `GET url`: all must be 200 with `expected` in the body.
async fn herd_at(client: &ClientWithMiddleware, url: &str, expected: &str) {
    let tasks: Vec<_> = (0..HERD)
        .map(|_| {
            let client = client.clone();
            let url = url.to_owned();
            tokio::spawn(async move {
                let response = client.get(url).send().await?;
                let status = response.status();
                let body = response.text().await?;
                Ok::<_, reqwest_middleware::Error>((status, body))
            })
        })
        .collect();
    let mut failures = Vec::new();
    for joined in join_all(tasks).await {
        match joined.expect("no task panics") {
            Ok((StatusCode::OK, body)) if body.contains(expected) => {}
            Ok((status, body)) => failures.push(format!("{status}: {body}")),
            Err(e) => failures.push(format!("error: {e:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {HERD} requests failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// A token that really expired at the server: the API answers 401, the
/// middleware refreshes exactly once and replays; the refresh token rotates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_401_refreshes_once_and_replays() {
    let Some(interop) = Interop::start().await else {
        return;
    };
    bounded(async {
        let login = interop.login("expiry", 3);
        let first = interop.first_tokens(BASIC, &login).await;
        assert_eq!(first.expires_in, Some(3), "the server's short TTL applies");
        let refreshes = Arc::new(AtomicUsize::new(0));
        // No expires_in: only the API's 401 can trigger the refresh.
        let manager = interop
            .manager(
                BASIC,
                TokenSet::new(&first.access).with_refresh_token(&first.refresh),
                refreshes.clone(),
            )
            .build()
            .expect("manager");
        let client = interop.client(&manager);

        interop.me(&client, &login).await;
        // Normally the 3 s token is still valid here. On a loaded machine it
        // may have expired already (it started ticking in get-tokens.mjs),
        // and then this first request was the 401 and refresh this test is
        // about. Either way, from here on: wait until the server says the
        // current token expired, then expect exactly one more refresh.
        let before = interop.stats(&login).await;
        assert!(before.refresh_calls <= 1, "{before:?}");
        assert_eq!(before.refresh_success, before.refresh_calls, "{before:?}");
        if before.refresh_calls == 1 {
            eprintln!("the first token expired before its first use: {before:?}");
        }
        let current = manager.current_tokens().expect("tokens");

        // Wait, bounded, until the server itself says the token expired.
        let expired = async {
            let mut poll = tokio::time::interval(Duration::from_millis(100));
            loop {
                poll.tick().await;
                if interop.raw_me(current.access_token().secret()).await == StatusCode::UNAUTHORIZED
                {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), expired)
            .await
            .expect("the 3 s token expires at the server within 30 s");

        interop.me(&client, &login).await;
        let stats = interop.stats(&login).await;
        let expected = before.refresh_calls + 1;
        assert_eq!(stats.refresh_calls, expected, "{stats:?}");
        assert_eq!(stats.refresh_success, expected, "{stats:?}");
        assert_eq!(refreshes.load(Ordering::SeqCst) as u64, expected);
        let now = manager.current_tokens().expect("tokens");
        assert_ne!(now.access_token().secret(), first.access);
        assert_ne!(now.access_token(), current.access_token());
        let rotated = now.refresh_token().expect("a refresh token");
        assert_ne!(
            rotated.secret(),
            first.refresh,
            "rotation is on for every client"
        );
        assert_ne!(Some(rotated), current.refresh_token(), "rotated again");
        assert_eq!(now.expires_in(), Some(Duration::from_secs(3)));
    })
    .await;
}

/// With `expires_in` known, the manager refreshes before sending once the
/// token is within the leeway of expiry (time moved by an injected clock):
/// the API never sees the old token rejected, and the old token is in fact
/// still valid at the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proactive_refresh_before_expiry() {
    let Some(interop) = Interop::start().await else {
        return;
    };
    bounded(async {
        let login = interop.login("proactive", 600);
        let first = interop.first_tokens(POST, &login).await;
        let lifetime = Duration::from_secs(first.expires_in.expect("expires_in"));
        assert_eq!(lifetime, Duration::from_secs(600));
        let clock = TestClock::new();
        let refreshes = Arc::new(AtomicUsize::new(0));
        let manager = interop
            .manager(
                POST,
                TokenSet::new(&first.access)
                    .with_refresh_token(&first.refresh)
                    .with_expires_in(lifetime),
                refreshes.clone(),
            )
            .clock(clock.clone())
            .build()
            .expect("manager");
        let client = interop.client(&manager);

        interop.me(&client, &login).await;
        assert_eq!(interop.stats(&login).await.refresh_calls, 0);

        // 590 s later, within the default 60 s leeway of expiry.
        clock.advance(lifetime - Duration::from_secs(10));
        interop.me(&client, &login).await;
        let stats = interop.stats(&login).await;
        assert_eq!(stats.refresh_calls, 1, "{stats:?}");
        assert_eq!(stats.refresh_success, 1, "{stats:?}");
        assert_eq!(
            stats.api_unauthorized, 0,
            "the refresh came before the request, not after a 401: {stats:?}"
        );
        assert_eq!(stats.api_ok, 2, "{stats:?}");
        assert_eq!(
            interop.raw_me(&first.access).await,
            StatusCode::OK,
            "the old token is still valid at the server: the refresh was proactive"
        );
        let now = manager.current_tokens().expect("tokens");
        assert_ne!(now.access_token().secret(), first.access);
        assert_ne!(now.refresh_token().expect("rt").secret(), first.refresh);

        // The new token is fresh: no further refresh.
        interop.me(&client, &login).await;
        assert_eq!(interop.stats(&login).await.refresh_calls, 1);
        assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    })
    .await;
}

/// 200 concurrent requests meet a revoked token: one refresh at the server,
/// no invalid_grant, all 200 succeed. Twice, so two rotations in a row: had
/// any refresh token been spent twice, the server would have revoked the
/// whole family and the second round (and the forced third refresh) would
/// fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_herd_refreshes_once_per_rotation() {
    let Some(interop) = Interop::start().await else {
        return;
    };
    bounded(async {
        let login = interop.login("herd", 600);
        let first = interop.first_tokens(BASIC, &login).await;
        let refreshes = Arc::new(AtomicUsize::new(0));
        let manager = interop
            .manager(
                BASIC,
                TokenSet::new(&first.access)
                    .with_refresh_token(&first.refresh)
                    .with_expires_in(Duration::from_secs(first.expires_in.expect("expires_in"))),
                refreshes.clone(),
            )
            .build()
            .expect("manager");
        let client = interop.client(&manager);
        interop.me(&client, &login).await;

        let mut refresh_tokens = vec![first.refresh.clone()];
        for round in 1..=2u64 {
            let current = manager.current_tokens().expect("tokens");
            interop.invalidate(current.access_token().secret()).await;
            herd(&interop, &client, &login).await;
            let stats = interop.stats(&login).await;
            eprintln!("herd round {round}: {stats:?}");
            assert_eq!(stats.refresh_calls, round, "round {round}: {stats:?}");
            assert_eq!(stats.refresh_success, round, "round {round}: {stats:?}");
            assert!(stats.refresh_errors.is_empty(), "round {round}: {stats:?}");
            assert!(
                stats.api_unauthorized >= 1,
                "round {round}: the revoked token was rejected at least once: {stats:?}"
            );
            assert_eq!(refreshes.load(Ordering::SeqCst) as u64, round);
            let rotated = manager.current_tokens().expect("tokens");
            let rotated = rotated.refresh_token().expect("rt").secret().to_owned();
            assert!(
                !refresh_tokens.contains(&rotated),
                "round {round}: the refresh token rotated"
            );
            refresh_tokens.push(rotated);
        }

        // The family is alive: a third rotation works too.
        manager.refresh().await.expect("a third refresh");
        let stats = interop.stats(&login).await;
        assert_eq!(stats.refresh_calls, 3, "{stats:?}");
        assert_eq!(stats.refresh_success, 3, "{stats:?}");
        assert!(stats.refresh_errors.is_empty(), "{stats:?}");
        interop.me(&client, &login).await;
        assert_eq!(interop.stats(&login).await.refresh_calls, 3);
    })
    .await;
}

/// `client_secret_basic` (with a secret that needs RFC 6749 §2.3.1
/// form-urlencoding), `client_secret_post` and a public client (`none`):
/// each refreshes after a 401, and the server saw only that client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_auth_method_refreshes() {
    let Some(interop) = Interop::start().await else {
        return;
    };
    bounded(async {
        for client_cfg in [BASIC, POST, PUBLIC] {
            let login = interop.login(client_cfg.method, 600);
            let first = interop.first_tokens(client_cfg, &login).await;
            let refreshes = Arc::new(AtomicUsize::new(0));
            let manager = interop
                .manager(
                    client_cfg,
                    TokenSet::new(&first.access).with_refresh_token(&first.refresh),
                    refreshes.clone(),
                )
                .build()
                .expect("manager");
            let client = interop.client(&manager);
            interop.invalidate(&first.access).await;
            interop.me(&client, &login).await;
            let stats = interop.stats(&login).await;
            assert_eq!(stats.refresh_calls, 1, "{}: {stats:?}", client_cfg.id);
            assert_eq!(stats.refresh_success, 1, "{}: {stats:?}", client_cfg.id);
            assert!(
                stats.refresh_errors.is_empty(),
                "{}: {stats:?}",
                client_cfg.id
            );
            assert_eq!(stats.clients, [client_cfg.id], "{stats:?}");
            assert_eq!(stats.token_auth, [client_cfg.method], "{stats:?}");
            assert_eq!(refreshes.load(Ordering::SeqCst), 1);
        }

        // Controls, with a refresh token that does not exist (nothing is
        // spent): with the §2.3.1 encoding the client authenticates and the
        // grant is what fails; without it, the client itself is rejected.
        // So the secret above really exercises the encoding.
        let (status, body) = interop.raw_refresh(BASIC, "no-such-token", false).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
        let (status, body) = interop.raw_refresh(BASIC, "no-such-token", true).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "invalid_client", "{body}");
    })
    .await;
}

/// Reuse detection is real: once the manager has rotated the refresh token,
/// spending the old one again (as an attacker with a stolen copy would)
/// makes the server revoke the whole grant, and the manager's next refresh
/// fails with `Error::InvalidGrant`, which sticks without hammering the
/// server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_spent_refresh_token_revokes_the_family() {
    let Some(interop) = Interop::start().await else {
        return;
    };
    bounded(async {
        let login = interop.login("reuse", 600);
        let first = interop.first_tokens(POST, &login).await;
        let refreshes = Arc::new(AtomicUsize::new(0));
        let manager = interop
            .manager(
                POST,
                TokenSet::new(&first.access).with_refresh_token(&first.refresh),
                refreshes.clone(),
            )
            .build()
            .expect("manager");
        let client = interop.client(&manager);

        interop.invalidate(&first.access).await;
        interop.me(&client, &login).await;
        let rotated = manager.current_tokens().expect("tokens");
        assert_ne!(rotated.refresh_token().expect("rt").secret(), first.refresh);
        assert_eq!(
            interop.raw_me(rotated.access_token().secret()).await,
            StatusCode::OK
        );

        // Spend the rotated-away refresh token behind the manager's back.
        let (status, body) = interop.raw_refresh(POST, &first.refresh, false).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
        let stats = interop.stats(&login).await;
        assert_eq!(stats.errors("invalid_grant"), 1, "{stats:?}");
        assert!(
            stats.refresh_error_descriptions[0].contains("already used"),
            "{stats:?}"
        );
        // The whole family is gone: the manager's current access token too.
        assert_eq!(
            interop.raw_me(rotated.access_token().secret()).await,
            StatusCode::UNAUTHORIZED
        );

        // The manager's next refresh: 401, then invalid_grant.
        let err = client
            .get(interop.api())
            .send()
            .await
            .expect_err("the session is over");
        assert!(
            matches!(our_error(&err), Error::InvalidGrant { .. }),
            "{err:?}"
        );
        let stats = interop.stats(&login).await;
        assert_eq!(stats.refresh_calls, 3, "{stats:?}");
        assert_eq!(stats.refresh_success, 1, "{stats:?}");
        assert_eq!(stats.errors("invalid_grant"), 2, "{stats:?}");

        // It sticks, without calling the token endpoint again.
        let err = client
            .get(interop.api())
            .send()
            .await
            .expect_err("still over");
        assert!(
            matches!(our_error(&err), Error::InvalidGrant { .. }),
            "{err:?}"
        );
        let stats = interop.stats(&login).await;
        eprintln!("after the double spend: {stats:?}");
        assert_eq!(stats.refresh_calls, 3, "{stats:?}");
        assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    })
    .await;
}

/// RFC 7009 revocation through the server's real revocation endpoint.
/// oidc-provider revokes the whole grant when an access token is revoked
/// (RFC 7009 §2.1 allows it), so the session ends: the middleware's refresh
/// after the 401 gets `Error::InvalidGrant`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_endpoint_ends_the_session() {
    let Some(interop) = Interop::start().await else {
        return;
    };
    bounded(async {
        let login = interop.login("revoked", 600);
        let first = interop.first_tokens(PUBLIC, &login).await;
        let manager = interop
            .manager(
                PUBLIC,
                TokenSet::new(&first.access).with_refresh_token(&first.refresh),
                Arc::new(AtomicUsize::new(0)),
            )
            .build()
            .expect("manager");
        let client = interop.client(&manager);
        interop.me(&client, &login).await;

        let response = interop
            .http
            .post(&interop.revocation_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("token", &first.access),
                ("token_type_hint", "access_token"),
                ("client_id", PUBLIC.id),
            ]))
            .send()
            .await
            .expect("the revocation endpoint answers");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            interop.raw_me(&first.access).await,
            StatusCode::UNAUTHORIZED
        );

        let err = client
            .get(interop.api())
            .send()
            .await
            .expect_err("the grant is revoked");
        assert!(
            matches!(our_error(&err), Error::InvalidGrant { .. }),
            "{err:?}"
        );
        let stats = interop.stats(&login).await;
        assert_eq!(stats.refresh_calls, 1, "{stats:?}");
        assert_eq!(stats.errors("invalid_grant"), 1, "{stats:?}");
    })
    .await;
}

// ---------------------------------------------------------------------------
// Discovery (RFC 8414, OpenID Connect Discovery)
// ---------------------------------------------------------------------------

/// `ServerMetadata::fetch` reads the real server's metadata: its token and
/// revocation endpoints and auth methods. oidc-provider 9 serves RFC 8414's
/// `/.well-known/oauth-authorization-server` for the root issuer, so that is
/// the one document fetched; for the issuer with a path (`/post-only`),
/// oidc-provider serves RFC 8414 appended to the path rather than inserted
/// before it (§3.1), so the crate's RFC 8414 URL is a 404 and it falls back
/// to OpenID's `/post-only/.well-known/openid-configuration`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_reads_the_real_metadata() {
    let Some(interop) = Interop::start().await else {
        return;
    };
    bounded(async {
        let get_json = |url: String| {
            let http = interop.http.clone();
            async move {
                let response = http.get(&url).send().await.expect("metadata answers");
                assert_eq!(response.status(), StatusCode::OK, "{url}");
                let body = response.text().await.expect("body");
                serde_json::from_str::<Value>(&body).expect("JSON metadata")
            }
        };
        let rfc8414 = get_json(format!(
            "{}/.well-known/oauth-authorization-server",
            interop.issuer
        ))
        .await;
        let openid = get_json(format!(
            "{}/.well-known/openid-configuration",
            interop.issuer
        ))
        .await;
        assert_eq!(rfc8414["issuer"], interop.issuer.as_str(), "{rfc8414}");
        assert_eq!(rfc8414, openid, "one document at both addresses");

        let tag = unique("discovery");
        let metadata = ServerMetadata::fetch(&interop.tagged_http(&tag), &interop.issuer)
            .await
            .expect("the real metadata");
        eprintln!("discovered: {metadata:?}");
        assert_eq!(metadata.issuer, interop.issuer);
        assert_eq!(metadata.token_endpoint, interop.token_endpoint);
        assert_eq!(
            metadata.revocation_endpoint.as_deref(),
            Some(interop.revocation_endpoint.as_str())
        );
        let methods = metadata
            .token_endpoint_auth_methods_supported
            .clone()
            .expect("auth methods listed");
        let listed: Vec<String> =
            serde_json::from_value(openid["token_endpoint_auth_methods_supported"].clone())
                .expect("a list");
        assert_eq!(methods, listed);
        for method in ["client_secret_basic", "client_secret_post", "none"] {
            assert!(methods.iter().any(|m| m == method), "{method}: {methods:?}");
        }
        let grants = metadata.grant_types_supported.clone().expect("grant types");
        for grant in ["authorization_code", "refresh_token", "client_credentials"] {
            assert!(grants.iter().any(|g| g == grant), "{grant}: {grants:?}");
        }
        assert_eq!(
            interop.requests(&tag).await,
            [Logged::new(
                "GET",
                "/.well-known/oauth-authorization-server",
                200
            )],
            "RFC 8414 first, and it is there"
        );

        let tag = unique("discovery-path");
        let post_only = &interop.post_only_issuer;
        let metadata = ServerMetadata::fetch(&interop.tagged_http(&tag), post_only)
            .await
            .expect("the post-only issuer's metadata");
        assert_eq!(&metadata.issuer, post_only);
        assert_eq!(metadata.token_endpoint, format!("{post_only}/token"));
        assert_eq!(
            metadata.revocation_endpoint,
            Some(format!("{post_only}/token/revocation"))
        );
        assert_eq!(
            metadata.token_endpoint_auth_methods_supported,
            Some(vec!["client_secret_post".to_owned()])
        );
        assert_eq!(
            interop.requests(&tag).await,
            [
                Logged::new(
                    "GET",
                    &format!("/.well-known/oauth-authorization-server{POST_ONLY_PATH}"),
                    404
                ),
                Logged::new(
                    "GET",
                    &format!("{POST_ONLY_PATH}/.well-known/openid-configuration"),
                    200
                ),
            ],
            "RFC 8414 §3.1 path insertion (404 at oidc-provider), then OpenID"
        );
    })
    .await;
}

/// RFC 8414 §3.3: the metadata's issuer must be identical to the one asked
/// for. The server serves its documents for these near misses (the request
/// log shows a 200), and discovery rejects them for their content, without
/// trying the OpenID address after a mismatch at the RFC 8414 one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_rejects_an_issuer_that_is_not_exact() {
    let Some(interop) = Interop::start().await else {
        return;
    };
    bounded(async {
        let rfc8414 = || {
            vec![Logged::new(
                "GET",
                "/.well-known/oauth-authorization-server",
                200,
            )]
        };
        let cases = [
            (format!("{}/", interop.issuer), rfc8414()),
            (
                interop.issuer.replacen("127.0.0.1", "localhost", 1),
                rfc8414(),
            ),
            (
                format!("{}/", interop.post_only_issuer),
                vec![
                    Logged::new(
                        "GET",
                        &format!("/.well-known/oauth-authorization-server{POST_ONLY_PATH}"),
                        404,
                    ),
                    Logged::new(
                        "GET",
                        &format!("{POST_ONLY_PATH}/.well-known/openid-configuration"),
                        200,
                    ),
                ],
            ),
        ];
        for (wrong, expected_requests) in cases {
            let tag = unique("wrong-issuer");
            let err = ServerMetadata::fetch(&interop.tagged_http(&tag), &wrong)
                .await
                .expect_err("not the exact issuer");
            eprintln!("{wrong}: {err}");
            assert!(
                matches!(err, Error::InvalidResponse { .. }),
                "{wrong}: {err:?}"
            );
            assert_eq!(interop.requests(&tag).await, expected_requests, "{wrong}");

            let err = TokenManager::discover(&wrong)
                .await
                .expect_err("discover checks the issuer too");
            assert!(
                matches!(err, Error::InvalidResponse { .. }),
                "{wrong}: {err:?}"
            );
        }

        // Not an issuer at all: both addresses are 404, and that is the
        // error.
        let tag = unique("no-issuer");
        let nowhere = format!("{}/nowhere", interop.issuer);
        let err = ServerMetadata::fetch(&interop.tagged_http(&tag), &nowhere)
            .await
            .expect_err("no metadata");
        eprintln!("{nowhere}: {err}");
        assert!(
            matches!(err, Error::HttpStatus { status } if status == StatusCode::NOT_FOUND),
            "{err:?}"
        );
        assert_eq!(
            interop.requests(&tag).await,
            [
                Logged::new(
                    "GET",
                    "/.well-known/oauth-authorization-server/nowhere",
                    404
                ),
                Logged::new("GET", "/nowhere/.well-known/openid-configuration", 404),
            ]
        );
    })
    .await;
}

/// A builder from `TokenManager::discover` works end to end: the 401 after
/// an invalidated token makes the middleware refresh at the discovered
/// token endpoint. With no `client_auth`, the default follows the server's
/// list: it lists `client_secret_basic`, so a client with a secret uses
/// Basic, `post-client` included (oidc-provider accepts Basic and the body
/// alike for any secret-based client; a server that holds a client to its
/// registered method needs `.client_auth(ClientAuth::SecretPost)` here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_manager_refreshes_through_the_middleware() {
    let Some(interop) = Interop::start().await else {
        return;
    };
    bounded(async {
        for (client_cfg, expected_auth) in [
            (BASIC, "client_secret_basic"),
            (POST, "client_secret_basic"),
            (PUBLIC, "none"),
        ] {
            let login = interop.login(&format!("discovered-{}", client_cfg.id), 600);
            let first = interop.first_tokens(client_cfg, &login).await;
            let refreshes = Arc::new(AtomicUsize::new(0));
            let counter = refreshes.clone();
            let mut builder = TokenManager::discover(&interop.issuer)
                .await
                .expect("discovery")
                .client_id(client_cfg.id)
                .tokens(TokenSet::new(&first.access).with_refresh_token(&first.refresh))
                .on_refresh(move |_| {
                    counter.fetch_add(1, Ordering::SeqCst);
                });
            if let Some(secret) = client_cfg.secret {
                builder = builder.client_secret(secret);
            }
            let manager = builder.build().expect("manager");
            let client = interop.client(&manager);

            interop.me(&client, &login).await;
            interop.invalidate(&first.access).await;
            interop.me(&client, &login).await;
            let stats = interop.stats(&login).await;
            assert_eq!(stats.refresh_calls, 1, "{}: {stats:?}", client_cfg.id);
            assert_eq!(stats.refresh_success, 1, "{}: {stats:?}", client_cfg.id);
            assert_eq!(stats.clients, [client_cfg.id], "{stats:?}");
            assert_eq!(stats.token_auth, [expected_auth], "{stats:?}");
            assert_eq!(refreshes.load(Ordering::SeqCst), 1);
            let now = manager.current_tokens().expect("tokens");
            assert_ne!(now.refresh_token().expect("rt").secret(), first.refresh);
        }
    })
    .await;
}

/// The issuer at `/post-only` lists only `client_secret_post`: the
/// discovered builder picks it without being told (the server saw the
/// secret in the body, not Basic), and its refreshes and revocation go to
/// that issuer's endpoints, through the client given to `discover_with`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_default_auth_is_one_the_server_lists() {
    let Some(interop) = Interop::start().await else {
        return;
    };
    bounded(async {
        let post_only = &interop.post_only_issuer;
        let login = interop.login("post-only", 600);
        let first = interop.first_tokens_from(post_only, POST, &login).await;
        let tag = unique("post-only");
        let manager = TokenManager::discover_with(&interop.tagged_http(&tag), post_only)
            .await
            .expect("discovery")
            .client_id(POST.id)
            .client_secret(POST_SECRET)
            .tokens(TokenSet::new(&first.access).with_refresh_token(&first.refresh))
            .build()
            .expect("manager");
        // `/api/me` accepts the tokens of both issuers.
        let client = interop.client(&manager);
        interop.me(&client, &login).await;
        interop.invalidate(&first.access).await;
        interop.me(&client, &login).await;

        let stats = interop.stats(&login).await;
        assert_eq!(stats.refresh_calls, 1, "{stats:?}");
        assert_eq!(stats.refresh_success, 1, "{stats:?}");
        assert_eq!(stats.clients, [POST.id], "{stats:?}");
        assert_eq!(stats.token_auth, ["client_secret_post"], "{stats:?}");

        manager.revoke().await.expect("revoked");
        let stats = interop.stats(&login).await;
        assert_eq!(
            stats.revocations,
            [Revocation::new(
                "refresh_token",
                POST.id,
                "client_secret_post",
                Some("RefreshToken")
            )],
            "{stats:?}"
        );
        assert!(matches!(manager.access_token().await, Err(Error::NoTokens)));
        assert_eq!(
            interop.requests(&tag).await,
            [
                Logged::new(
                    "GET",
                    &format!("/.well-known/oauth-authorization-server{POST_ONLY_PATH}"),
                    404
                ),
                Logged::new(
                    "GET",
                    &format!("{POST_ONLY_PATH}/.well-known/openid-configuration"),
                    200
                ),
                Logged::new("POST", &format!("{POST_ONLY_PATH}/token"), 200),
                Logged::new("POST", &format!("{POST_ONLY_PATH}/token/revocation"), 200),
            ]
        );
    })
    .await;
}

// ---------------------------------------------------------------------------
// Revocation (RFC 7009) through the crate
// ---------------------------------------------------------------------------

/// `revoke()` with the discovered revocation endpoint: the server is asked
/// to revoke the current (rotated) refresh token with
/// `token_type_hint=refresh_token`, and does: spending it afterwards is
/// `invalid_grant`, and the grant's access token is dead too. The manager
/// has no tokens afterwards (`Error::NoTokens`, through the middleware as
/// well, with no call to the token endpoint), and revoking again is fine:
/// with no tokens nothing is sent; a manager that still holds the revoked
/// tokens sends them and the server answers 200 (RFC 7009 §2.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_ends_the_session_at_the_server() {
    let Some(interop) = Interop::start().await else {
        return;
    };
    bounded(async {
        let login = interop.login("revoke", 600);
        let first = interop.first_tokens(BASIC, &login).await;
        let manager = TokenManager::discover(&interop.issuer)
            .await
            .expect("discovery")
            .client_id(BASIC.id)
            .client_secret(BASIC_SECRET)
            .tokens(TokenSet::new(&first.access).with_refresh_token(&first.refresh))
            .build()
            .expect("manager");
        let client = interop.client(&manager);
        interop.invalidate(&first.access).await;
        interop.me(&client, &login).await;
        let current = manager.current_tokens().expect("tokens");
        let refresh = current.refresh_token().expect("rt").secret().to_owned();
        assert_ne!(refresh, first.refresh, "rotated once");

        manager.revoke().await.expect("revoked");
        let stats = interop.stats(&login).await;
        assert_eq!(
            stats.revocations,
            [Revocation::new(
                "refresh_token",
                BASIC.id,
                "client_secret_basic",
                Some("RefreshToken")
            )],
            "{stats:?}"
        );
        let (status, body) = interop.raw_refresh(BASIC, &refresh, false).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
        assert_eq!(
            interop.raw_me(current.access_token().secret()).await,
            StatusCode::UNAUTHORIZED,
            "oidc-provider revokes the whole grant"
        );

        assert!(manager.current_tokens().is_none());
        let err = manager.access_token().await.expect_err("no tokens");
        assert!(matches!(err, Error::NoTokens), "{err:?}");
        let err = manager.refresh().await.expect_err("no tokens");
        assert!(matches!(err, Error::NoTokens), "{err:?}");
        let err = client
            .get(interop.api())
            .send()
            .await
            .expect_err("no tokens");
        assert!(matches!(our_error(&err), Error::NoTokens), "{err:?}");
        let calls_after_revoke = interop.stats(&login).await.refresh_calls;
        assert_eq!(calls_after_revoke, 2, "the raw spend only");

        manager.revoke().await.expect("revoking twice is fine");
        assert_eq!(
            interop.stats(&login).await.revocations.len(),
            1,
            "nothing to send the second time"
        );

        let stale = TokenManager::builder(&interop.token_endpoint)
            .client_id(BASIC.id)
            .client_secret(BASIC_SECRET)
            .revocation_url(&interop.revocation_endpoint)
            .tokens(current.clone())
            .build()
            .expect("manager");
        stale
            .revoke()
            .await
            .expect("an unknown token is revoked too");
        let stats = interop.stats(&login).await;
        assert_eq!(
            stats.revocations.get(1),
            Some(&Revocation::new(
                "refresh_token",
                BASIC.id,
                "client_secret_basic",
                None
            )),
            "the server no longer knew it: {stats:?}"
        );
        assert!(matches!(stale.access_token().await, Err(Error::NoTokens)));
        assert_eq!(interop.stats(&login).await.refresh_calls, 2);
    })
    .await;
}

/// `revoke()` with an explicit `.revocation_url(..)`, for the body-secret
/// and the public client: each authenticates the way it does at the token
/// endpoint, and the refresh token is gone. Without a revocation URL,
/// `revoke()` is a configuration error and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_with_an_explicit_revocation_url() {
    let Some(interop) = Interop::start().await else {
        return;
    };
    bounded(async {
        for client_cfg in [POST, PUBLIC] {
            let login = interop.login(&format!("revoke-{}", client_cfg.id), 600);
            let first = interop.first_tokens(client_cfg, &login).await;
            let tokens = TokenSet::new(&first.access).with_refresh_token(&first.refresh);

            let without_url = interop
                .manager(client_cfg, tokens.clone(), Arc::new(AtomicUsize::new(0)))
                .build()
                .expect("manager");
            let err = without_url.revoke().await.expect_err("no revocation URL");
            assert!(matches!(err, Error::Config(_)), "{err:?}");
            assert!(interop.stats(&login).await.revocations.is_empty());

            let manager = interop
                .manager(client_cfg, tokens, Arc::new(AtomicUsize::new(0)))
                .revocation_url(&interop.revocation_endpoint)
                .build()
                .expect("manager");
            let client = interop.client(&manager);
            interop.me(&client, &login).await;
            manager.revoke().await.expect("revoked");
            let stats = interop.stats(&login).await;
            assert_eq!(
                stats.revocations,
                [Revocation::new(
                    "refresh_token",
                    client_cfg.id,
                    client_cfg.method,
                    Some("RefreshToken")
                )],
                "{stats:?}"
            );
            let (status, body) = interop.raw_refresh(client_cfg, &first.refresh, false).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(body["error"], "invalid_grant", "{body}");
            assert_eq!(
                interop.raw_me(&first.access).await,
                StatusCode::UNAUTHORIZED
            );
            let err = manager.access_token().await.expect_err("no tokens");
            assert!(matches!(err, Error::NoTokens), "{err:?}");
            manager.revoke().await.expect("revoking twice is fine");
        }
    })
    .await;
}

/// `revoke_access_token()` sends the access token with
/// `token_type_hint=access_token`, and the API then answers 401 to it. The
/// crate keeps the refresh token, expecting the next request to refresh;
/// but oidc-provider 9 revokes the whole grant when one of its access
/// tokens is revoked (`lib/actions/revocation.js`: `revoke(ctx,
/// token.grantId)` for AccessToken and RefreshToken alike; RFC 7009 §2.1
/// allows it), so that refresh is `invalid_grant` and the request fails
/// with `Error::InvalidGrant`. (For a client-credentials token, which has no
/// grant, see `client_credentials_revocation`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_access_token_ends_the_grant_at_oidc_provider() {
    let Some(interop) = Interop::start().await else {
        return;
    };
    bounded(async {
        let login = interop.login("revoke-access", 600);
        let first = interop.first_tokens(BASIC, &login).await;
        let manager = interop
            .manager(
                BASIC,
                TokenSet::new(&first.access).with_refresh_token(&first.refresh),
                Arc::new(AtomicUsize::new(0)),
            )
            .revocation_url(&interop.revocation_endpoint)
            .build()
            .expect("manager");
        let client = interop.client(&manager);
        interop.me(&client, &login).await;

        manager.revoke_access_token().await.expect("revoked");
        let stats = interop.stats(&login).await;
        assert_eq!(
            stats.revocations,
            [Revocation::new(
                "access_token",
                BASIC.id,
                "client_secret_basic",
                Some("AccessToken")
            )],
            "{stats:?}"
        );
        assert_eq!(
            interop.raw_me(&first.access).await,
            StatusCode::UNAUTHORIZED
        );
        let kept = manager.current_tokens().expect("the crate keeps the set");
        assert_eq!(kept.access_token().secret(), first.access);
        assert_eq!(kept.refresh_token().expect("rt").secret(), first.refresh);

        let err = client
            .get(interop.api())
            .send()
            .await
            .expect_err("the grant is gone");
        assert!(
            matches!(our_error(&err), Error::InvalidGrant { .. }),
            "{err:?}"
        );
        let stats = interop.stats(&login).await;
        eprintln!("after revoke_access_token: {stats:?}");
        assert_eq!(stats.refresh_calls, 1, "{stats:?}");
        assert_eq!(stats.refresh_success, 0, "{stats:?}");
        assert_eq!(stats.errors("invalid_grant"), 1, "{stats:?}");
        // Only our raw check met the 401: the manager treats a revoked
        // access token as expired and gets a new one before sending.
        assert_eq!(stats.api_unauthorized, 1, "raw check only: {stats:?}");

        // Ending the session still works: the dead refresh token is sent
        // and the server answers 200.
        manager.revoke().await.expect("revoked");
        let stats = interop.stats(&login).await;
        assert_eq!(
            stats.revocations.get(1),
            Some(&Revocation::new(
                "refresh_token",
                BASIC.id,
                "client_secret_basic",
                None
            )),
            "{stats:?}"
        );
        assert!(matches!(manager.access_token().await, Err(Error::NoTokens)));
    })
    .await;
}

// ---------------------------------------------------------------------------
// Client credentials (RFC 6749 §4.4)
// ---------------------------------------------------------------------------

/// A client-credentials manager for `cc-client`, its token endpoint calls
/// tagged with `tag` (so the server counts them under it).
fn cc_manager(interop: &Interop, tag: &str, grants: Arc<AtomicUsize>) -> TokenManagerBuilder {
    TokenManager::builder(&interop.token_endpoint)
        .client_id(CC_CLIENT)
        .client_secret(CC_SECRET)
        .client_credentials()
        .http_client(interop.tagged_http(tag))
        .on_refresh(move |_| {
            grants.fetch_add(1, Ordering::SeqCst);
        })
}

/// Machine to machine: nothing is fetched when the manager is built; a
/// herd of 200 concurrent requests on a cold manager causes exactly one
/// client-credentials grant (with `scope` and RFC 8707 `resource`, so the
/// token has the audience and scope `/api/service` wants); after the token
/// is invalidated, each further herd causes exactly one new grant, and every
/// request succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_single_flight_from_cold_and_after_401() {
    let Some(interop) = Interop::start().await else {
        return;
    };
    bounded(async {
        let tag = unique("cc-herd");
        let grants = Arc::new(AtomicUsize::new(0));
        let manager = cc_manager(&interop, &tag, grants.clone())
            .scope(API_SCOPE)
            .resource(API_RESOURCE)
            .build()
            .expect("manager");
        assert!(manager.current_tokens().is_none());
        assert_eq!(interop.stats(&tag).await.cc_grants, 0, "lazy");
        assert!(interop.requests(&tag).await.is_empty(), "lazy");
        let client = interop.client(&manager);

        service_herd(&interop, &client).await;
        let stats = interop.stats(&tag).await;
        eprintln!("cold herd: {stats:?}");
        assert_eq!(stats.cc_grants, 1, "{stats:?}");
        assert!(stats.cc_errors.is_empty(), "{stats:?}");
        assert_eq!(stats.cc_scopes, [Some(API_SCOPE.to_owned())], "{stats:?}");
        assert_eq!(stats.clients, [CC_CLIENT], "{stats:?}");
        assert_eq!(stats.token_auth, ["client_secret_basic"], "{stats:?}");
        assert_eq!(stats.api_ok, HERD as u64, "{stats:?}");
        assert_eq!(stats.api_unauthorized, 0, "{stats:?}");
        assert_eq!(grants.load(Ordering::SeqCst), 1, "on_refresh saw it");
        let tokens = manager.current_tokens().expect("tokens");
        assert!(tokens.refresh_token().is_none());
        assert_eq!(tokens.expires_in(), Some(Duration::from_secs(600)));
        assert_eq!(tokens.scope(), Some(API_SCOPE));

        let mut seen = vec![tokens.access_token().secret().to_owned()];
        for round in 2..=3u64 {
            let old = manager.current_tokens().expect("tokens");
            let old = old.access_token().secret().to_owned();
            interop.invalidate_only(&old).await;
            assert_eq!(interop.raw_service(&old).await, StatusCode::UNAUTHORIZED);
            service_herd(&interop, &client).await;
            let stats = interop.stats(&tag).await;
            eprintln!("herd round {round}: {stats:?}");
            assert_eq!(stats.cc_grants, round, "round {round}: {stats:?}");
            assert!(stats.cc_errors.is_empty(), "round {round}: {stats:?}");
            assert!(
                stats.api_unauthorized >= round - 1,
                "round {round}: the invalidated token was rejected: {stats:?}"
            );
            assert_eq!(grants.load(Ordering::SeqCst) as u64, round);
            let new = manager.current_tokens().expect("tokens");
            let new = new.access_token().secret().to_owned();
            assert!(!seen.contains(&new), "round {round}: a new token");
            seen.push(new);
        }
        let token_calls = vec![Logged::new("POST", "/token", 200); 3];
        assert_eq!(
            interop.requests(&tag).await,
            token_calls,
            "one call a grant"
        );
    })
    .await;
}

/// Client-credentials tokens have no grant at oidc-provider, so revoking
/// one revokes just it: after `revoke_access_token()` the API answers 401
/// to it, and the next request gets a new token (one more grant) and
/// succeeds, as the crate documents. `revoke()` (no refresh token, so the
/// access token, hinted `access_token`) clears the set, but a
/// client-credentials manager then fetches a new token when next asked;
/// it never reports `NoTokens`. Without `resource`, oidc-provider issues a
/// token with no audience (and drops the non-OpenID scope): `/api/service`
/// answers 403 `insufficient_scope`, which the middleware passes through
/// without a new grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_revocation() {
    let Some(interop) = Interop::start().await else {
        return;
    };
    bounded(async {
        let tag = unique("cc-revoke");
        let grants = Arc::new(AtomicUsize::new(0));
        let manager = cc_manager(&interop, &tag, grants.clone())
            .scope(API_SCOPE)
            .resource(API_RESOURCE)
            .revocation_url(&interop.revocation_endpoint)
            .build()
            .expect("manager");
        let client = interop.client(&manager);
        interop.service_ok(&client).await;
        let first = manager.current_tokens().expect("tokens");
        let first = first.access_token().secret().to_owned();

        manager.revoke_access_token().await.expect("revoked");
        let revoked =
            |found| Revocation::new("access_token", CC_CLIENT, "client_secret_basic", found);
        let stats = interop.stats(&tag).await;
        assert_eq!(
            stats.revocations,
            [revoked(Some("ClientCredentials"))],
            "{stats:?}"
        );
        assert_eq!(interop.raw_service(&first).await, StatusCode::UNAUTHORIZED);

        interop.service_ok(&client).await;
        let stats = interop.stats(&tag).await;
        assert_eq!(stats.cc_grants, 2, "{stats:?}");
        // Only our raw check met the 401: the manager treats a revoked
        // access token as expired and gets a new one before sending.
        assert_eq!(stats.api_unauthorized, 1, "raw check only: {stats:?}");
        let second = manager.current_tokens().expect("tokens");
        let second = second.access_token().secret().to_owned();
        assert_ne!(second, first);

        manager.revoke().await.expect("revoked");
        let stats = interop.stats(&tag).await;
        assert_eq!(
            stats.revocations,
            [
                revoked(Some("ClientCredentials")),
                revoked(Some("ClientCredentials"))
            ],
            "{stats:?}"
        );
        assert_eq!(interop.raw_service(&second).await, StatusCode::UNAUTHORIZED);
        assert!(manager.current_tokens().is_none());
        let third = manager
            .access_token()
            .await
            .expect("a client-credentials manager gets a new token");
        assert_ne!(third.secret(), second);
        assert_eq!(interop.stats(&tag).await.cc_grants, 3);
        interop.service_ok(&client).await;
        assert_eq!(grants.load(Ordering::SeqCst), 3);

        // Control: no `resource`.
        let tag = unique("cc-no-resource");
        let manager = cc_manager(&interop, &tag, Arc::new(AtomicUsize::new(0)))
            .scope(API_SCOPE)
            .build()
            .expect("manager");
        let response = interop
            .client(&manager)
            .get(interop.service())
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let stats = interop.stats(&tag).await;
        assert_eq!(stats.cc_grants, 1, "{stats:?}");
        assert_eq!(stats.cc_scopes, [None], "{stats:?}");
        assert_eq!(stats.api_forbidden, 1, "{stats:?}");
    })
    .await;
}
