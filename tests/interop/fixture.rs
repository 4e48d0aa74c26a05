//! A started interop server and what a test asks of it: the first token
//! pair (through `get-tokens.mjs`), managers and clients wired to it, its
//! API, its test-only counters and request log, raw calls that bypass the
//! crate, and herds of concurrent requests.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;

use base64::Engine as _;
use futures_util::future::join_all;
use reqwest::StatusCode;
use reqwest_middleware::ClientWithMiddleware;
use reqwest_oauth2_refresh::{
    ClientAuth, Error, OAuth2Middleware, TokenManager, TokenManagerBuilder, TokenSet,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::common::our_error;
use crate::harness::{
    DRIVER_LIMIT, Notes, ServerProcess, interop_dir, issuer_from_env, run_bounded,
};
use crate::stats::{Logged, Stats};

/// The same secret as `basic-client`'s in `server.mjs`: reserved characters
/// that only survive RFC 6749 §2.3.1 form-urlencoding inside Basic.
pub const BASIC_SECRET: &str = r##"s3cr:t/+ %2B&=?#;@,~'""##;
pub const POST_SECRET: &str = "post-secret/+=&%";
/// `cc-client`'s secret in `server.mjs`.
pub const CC_SECRET: &str = "cc-secret:/+ %2B&=?";
pub const CC_CLIENT: &str = "cc-client";
/// The resource server (RFC 8707 indicator) client-credentials tokens are
/// issued for, and the scope `/api/service` wants.
pub const API_RESOURCE: &str = "urn:interop:api";
pub const API_SCOPE: &str = "api:read";
/// `server.mjs` logs requests that carry this header under its value.
const TAG_HEADER: &str = "x-interop-test";
/// The path of the second issuer of `server.mjs` (client_secret_post only).
pub const POST_ONLY_PATH: &str = "/post-only";

/// Concurrent requests that meet one revoked token.
pub const HERD: usize = 200;

#[derive(Debug, Clone, Copy)]
pub struct OAuthClient {
    pub id: &'static str,
    pub secret: Option<&'static str>,
    pub auth: ClientAuth,
    /// The `token_endpoint_auth_method`, for the driver.
    pub method: &'static str,
}

pub const BASIC: OAuthClient = OAuthClient {
    id: "basic-client",
    secret: Some(BASIC_SECRET),
    auth: ClientAuth::SecretBasic,
    method: "client_secret_basic",
};
pub const POST: OAuthClient = OAuthClient {
    id: "post-client",
    secret: Some(POST_SECRET),
    auth: ClientAuth::SecretPost,
    method: "client_secret_post",
};
pub const PUBLIC: OAuthClient = OAuthClient {
    id: "public-client",
    secret: None,
    auth: ClientAuth::None,
    method: "none",
};
/// What a token endpoint issued, as JSON.
pub struct Issued {
    pub access: String,
    pub refresh: String,
    pub expires_in: Option<u64>,
}

impl Issued {
    /// The access and refresh token, without `expires_in`.
    pub fn tokens(&self) -> TokenSet {
        TokenSet::new(&self.access).with_refresh_token(&self.refresh)
    }
}

pub struct Interop {
    pub issuer: String,
    /// The second issuer, `ISSUER/post-only`, whose metadata lists only
    /// `client_secret_post`.
    pub post_only_issuer: String,
    pub token_endpoint: String,
    pub revocation_endpoint: String,
    /// A plain client for the test's own calls (no middleware, no redirects).
    pub http: reqwest::Client,
    notes: Notes,
    _server: Option<ServerProcess>,
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

impl Interop {
    /// The server from `OIDC_ISSUER`, or one started for this test. The
    /// harness has checked that one can be (`harness::missing`), so a
    /// failure here fails the test.
    pub async fn start(notes: Notes) -> Self {
        let (issuer, server) = match issuer_from_env() {
            Some(issuer) => (issuer, None),
            None => {
                let (server, issuer) = tokio::task::spawn_blocking(ServerProcess::start)
                    .await
                    .expect("the server start does not panic")
                    .unwrap_or_else(|reason| panic!("the interop server did not start: {reason}"));
                (issuer, Some(server))
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
        Self {
            token_endpoint: endpoint("token_endpoint"),
            revocation_endpoint: endpoint("revocation_endpoint"),
            post_only_issuer: format!("{issuer}{POST_ONLY_PATH}"),
            issuer,
            http,
            notes,
            _server: server,
        }
    }

    /// Says something about this run, shown if the test fails.
    pub fn note(&self, note: impl std::fmt::Display) {
        self.notes.add(note);
    }

    /// A login no other test (or run, against a shared server) uses; access
    /// tokens issued to it live `ttl_secs` (see `ttlFor` in server.mjs).
    pub fn login(&self, name: &str, ttl_secs: u64) -> String {
        format!("{}-ttl{ttl_secs}", unique(name))
    }

    /// A plain client (no redirects) whose requests carry `TAG_HEADER: tag`:
    /// the server logs them (`GET /test/requests`) and counts their
    /// client-credentials grants under `tag`.
    pub fn tagged_http(&self, tag: &str) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(TAG_HEADER, tag.parse().expect("a header value"));
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .expect("client")
    }

    /// The requests that carried `TAG_HEADER: tag`, in order.
    pub async fn requests(&self, tag: &str) -> Vec<Logged> {
        self.test_route("requests", ("tag", tag)).await
    }

    /// `GET ISSUER/test/ROUTE?NAME=VALUE`, a test-only route of
    /// `server.mjs`, read as JSON.
    pub async fn test_route<T: DeserializeOwned>(&self, route: &str, query: (&str, &str)) -> T {
        let url = format!("{}/test/{route}?{}", self.issuer, form(&[query]));
        let body = self
            .http
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("/test/{route} answers: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("/test/{route} body: {e}"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/test/{route} ({e}): {body}"))
    }

    /// The first token pair, through the real authorization code + PKCE flow
    /// (`get-tokens.mjs`).
    pub async fn first_tokens(&self, client: OAuthClient, login: &str) -> Issued {
        self.first_tokens_from(&self.issuer, client, login).await
    }

    /// [`first_tokens`](Self::first_tokens) from another issuer.
    pub async fn first_tokens_from(
        &self,
        issuer: &str,
        client: OAuthClient,
        login: &str,
    ) -> Issued {
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

    pub fn manager(
        &self,
        client: OAuthClient,
        tokens: TokenSet,
        refreshes: Arc<AtomicUsize>,
    ) -> TokenManagerBuilder {
        let mut builder = TokenManager::builder(&self.token_endpoint)
            .client_id(client.id)
            .client_auth(client.auth)
            .initial_tokens(tokens)
            .on_refresh(move |_| {
                refreshes.fetch_add(1, Ordering::SeqCst);
            });
        if let Some(secret) = client.secret {
            builder = builder.client_secret(secret);
        }
        builder
    }

    pub fn client(&self, manager: &TokenManager) -> ClientWithMiddleware {
        let auth = OAuth2Middleware::builder(manager.clone())
            .allow_origin(&self.issuer)
            .build()
            .expect("loopback http is an allowed origin");
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(auth)
            .build()
    }

    pub fn api(&self) -> String {
        format!("{}/api/me", self.issuer)
    }

    pub fn service(&self) -> String {
        format!("{}/api/service", self.issuer)
    }

    /// `GET /api/service` through the middleware; asserts a 200 for
    /// `cc-client`, audience `urn:interop:api`, scope `api:read`.
    pub async fn service_ok(&self, client: &ClientWithMiddleware) {
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
    pub async fn raw_service(&self, access: &str) -> StatusCode {
        self.http
            .get(self.service())
            .bearer_auth(access)
            .send()
            .await
            .expect("the API answers")
            .status()
    }

    /// `GET /api/me` through the middleware; asserts a 200 for `login`.
    pub async fn me(&self, client: &ClientWithMiddleware, login: &str) {
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

    /// `GET /api/me` through the middleware, which must fail (`why`);
    /// returns the crate's error.
    pub async fn me_fails(&self, client: &ClientWithMiddleware, why: &str) -> Error {
        let err = client.get(self.api()).send().await.expect_err(why);
        our_error(&err).clone()
    }

    /// `GET /api/me` with `access` and no middleware.
    pub async fn raw_me(&self, access: &str) -> StatusCode {
        self.http
            .get(self.api())
            .bearer_auth(access)
            .send()
            .await
            .expect("the API answers")
            .status()
    }

    /// What the server counted for an account (a login) or a tag.
    pub async fn stats(&self, login: &str) -> Stats {
        self.test_route("stats", ("account", login)).await
    }

    /// Deletes one access token at the server, as if it had expired: the
    /// deterministic way to make the API answer 401 (the revocation endpoint
    /// of oidc-provider would revoke the refresh tokens too).
    pub async fn invalidate(&self, access: &str) {
        self.invalidate_only(access).await;
        assert_eq!(self.raw_me(access).await, StatusCode::UNAUTHORIZED);
    }

    /// [`invalidate`](Self::invalidate) without asking `/api/me` (for a
    /// client-credentials token, which `/api/me` never accepts).
    pub async fn invalidate_only(&self, access: &str) {
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
    pub async fn raw_refresh(
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

pub fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A name no other test (or run, against a shared server) uses.
pub fn unique(name: &str) -> String {
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

/// `HERD` concurrent `GET /api/me` through the middleware; all must be 200.
pub async fn herd(interop: &Interop, client: &ClientWithMiddleware, login: &str) {
    herd_at(client, &interop.api(), &format!(r#""sub":"{login}""#)).await;
}

/// `HERD` concurrent `GET /api/service` through the middleware; all must be
/// 200 for `cc-client`.
pub async fn service_herd(interop: &Interop, client: &ClientWithMiddleware) {
    herd_at(
        client,
        &interop.service(),
        &format!(r#""client_id":"{CC_CLIENT}","aud":"{API_RESOURCE}","scope":"{API_SCOPE}""#),
    )
    .await;
}

/// `HERD` concurrent `GET url`: all must be 200 with `expected` in the body.
pub async fn herd_at(client: &ClientWithMiddleware, url: &str, expected: &str) {
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
