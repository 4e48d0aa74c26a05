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
//! Each test uses its own account (login), and the server counts token
//! endpoint calls per account (`GET /test/stats?account=..`), so the tests
//! can assert how many refreshes really reached the server.

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
use reqwest_oauth2_refresh::{ClientAuth, Error, OAuth2Middleware, TokenManager, TokenSet};
use serde::Deserialize;
use serde_json::Value;

use common::{TestClock, our_error};

/// The same secret as `basic-client`'s in `server.mjs`: reserved characters
/// that only survive RFC 6749 §2.3.1 form-urlencoding inside Basic.
const BASIC_SECRET: &str = r##"s3cr:t/+ %2B&=?#;@,~'""##;
const POST_SECRET: &str = "post-secret/+=&%";

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
    /// Starts the server and waits (bounded) for its ready line.
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
    api_ok: u64,
    api_unauthorized: u64,
    clients: Vec<String>,
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
            issuer,
            http,
            _server: server,
        })
    }

    /// A login no other test (or run, against a shared server) uses; access
    /// tokens issued to it live `ttl_secs` (see `ttlFor` in server.mjs).
    fn login(&self, name: &str, ttl_secs: u64) -> String {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = UNIQUE.fetch_add(1, Ordering::SeqCst);
        format!("{name}-{}-{nanos}-{n}-ttl{ttl_secs}", std::process::id())
    }

    /// The first token pair, through the real authorization code + PKCE flow
    /// (`get-tokens.mjs`).
    async fn first_tokens(&self, client: OAuthClient, login: &str) -> Issued {
        let mut command = Command::new("node");
        command
            .arg(interop_dir().join("get-tokens.mjs"))
            .arg(&self.issuer)
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
        assert_eq!(self.raw_me(access).await, StatusCode::UNAUTHORIZED);
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
    let tasks: Vec<_> = (0..HERD)
        .map(|_| {
            let client = client.clone();
            let url = interop.api();
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
            Ok((StatusCode::OK, body)) if body.contains(&format!(r#""sub":"{login}""#)) => {}
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
        assert_eq!(interop.stats(&login).await.refresh_calls, 0);

        // Wait, bounded, until the server itself says the token expired.
        let expired = async {
            let mut poll = tokio::time::interval(Duration::from_millis(100));
            loop {
                poll.tick().await;
                if interop.raw_me(&first.access).await == StatusCode::UNAUTHORIZED {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), expired)
            .await
            .expect("the 3 s token expires at the server within 30 s");

        interop.me(&client, &login).await;
        let stats = interop.stats(&login).await;
        assert_eq!(stats.refresh_calls, 1, "{stats:?}");
        assert_eq!(stats.refresh_success, 1, "{stats:?}");
        assert_eq!(refreshes.load(Ordering::SeqCst), 1);
        let now = manager.current_tokens().expect("tokens");
        assert_ne!(now.access_token().secret(), first.access);
        let rotated = now.refresh_token().expect("a refresh token").secret();
        assert_ne!(rotated, first.refresh, "rotation is on for every client");
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
