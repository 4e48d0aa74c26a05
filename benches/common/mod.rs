//! Shared by the bench binaries: a loopback hyper server (API and token
//! endpoint), the comparison middlewares, and the peers' clients.
//!
//! Every client here talks plain HTTP/1.1 to 127.0.0.1, with no proxy, so the
//! figures measure middleware and client work, not the network.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use reqwest_oauth2_refresh::{OAuth2Middleware, TokenManager, TokenSet};

/// Token lifetime the token endpoint grants, and the benches seed with.
pub const LIFETIME: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------
// The server

/// What the loopback server does and counts.
///
/// Tokens are `gen-N`. `/api` answers 200 to `Bearer gen-N` with
/// `N >= min_valid` and 401 (`WWW-Authenticate: Bearer error="invalid_token"`)
/// to anything else, so raising `min_valid` revokes every token issued so
/// far. `/token` answers after `token_delay` with the next `gen-N`. `/hot`
/// answers 200 `ok` to anything, for the hot-path benches.
#[derive(Debug, Default)]
pub struct State {
    /// Calls to `/token` so far.
    pub token_calls: AtomicU64,
    /// The generation the next `/token` call issues.
    pub next_generation: AtomicU64,
    /// The lowest generation `/api` accepts.
    pub min_valid: AtomicU64,
    /// `/token`'s answer delay, in microseconds.
    pub token_delay_us: AtomicU64,
    /// Calls to `/api` so far.
    pub api_calls: AtomicU64,
    /// When the first `/token` call since the last `mark()` arrived, in µs
    /// since `epoch` (0: none yet).
    pub first_token_call_us: AtomicU64,
    /// When a client (through [`Probe`]) first saw a 401 since the last
    /// `mark()`, in µs since `epoch` (0: none yet).
    pub first_401_us: AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl State {
    pub fn set_token_delay(&self, delay: Duration) {
        self.token_delay_us
            .store(delay.as_micros() as u64, Ordering::SeqCst);
    }

    /// Revokes every token issued so far; returns the first valid generation.
    pub fn revoke_all(&self) -> u64 {
        let next = self.next_generation.load(Ordering::SeqCst);
        self.min_valid.store(next, Ordering::SeqCst);
        next
    }

    fn epoch(&self) -> Instant {
        *self.epoch.get_or_init(Instant::now)
    }

    /// Starts timing: returns now, and forgets the last `/token` arrival.
    pub fn mark(&self) -> Instant {
        self.first_token_call_us.store(0, Ordering::SeqCst);
        self.first_401_us.store(0, Ordering::SeqCst);
        let _ = self.epoch();
        Instant::now()
    }

    fn record(&self, slot: &AtomicU64) {
        let since = (self.epoch().elapsed().as_micros() as u64).max(1);
        let _ = slot.compare_exchange(0, since, Ordering::SeqCst, Ordering::SeqCst);
    }

    fn after(&self, slot: &AtomicU64, start: Instant) -> Option<Duration> {
        match slot.load(Ordering::SeqCst) {
            0 => None,
            us => {
                let at = self.epoch() + Duration::from_micros(us);
                Some(at.saturating_duration_since(start))
            }
        }
    }

    /// When the first `/token` call since `mark()` arrived, after `start`.
    pub fn first_token_call_after(&self, start: Instant) -> Option<Duration> {
        self.after(&self.first_token_call_us, start)
    }

    /// When a [`Probe`] first saw a 401 since `mark()`, after `start`.
    pub fn first_401_after(&self, start: Instant) -> Option<Duration> {
        self.after(&self.first_401_us, start)
    }

    /// A token `/api` currently accepts (not counted as a `/token` call).
    pub fn valid_token(&self) -> String {
        format!(
            "gen-{}",
            self.next_generation.fetch_add(1, Ordering::SeqCst)
        )
    }
}

/// A running loopback server; it lives until the process ends.
pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<State>,
}

impl Server {
    /// Starts the server on its own thread, with a current-thread runtime.
    pub fn start() -> Self {
        let state = Arc::new(State::default());
        state.next_generation.store(1, Ordering::SeqCst);
        Self::start_sharing(state)
    }

    /// Starts a second server on its own thread that shares `state` (the
    /// tokens it issues and accepts, its counters) with another: the herd
    /// runs the token endpoint apart from the API, as an authorization
    /// server is, so that a refresh does not queue behind the API's work.
    pub fn start_sharing(state: Arc<State>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let served = state.clone();
        std::thread::Builder::new()
            .name("bench-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(serve(served, tx));
            })
            .expect("server thread");
        let addr = rx.recv().expect("server address");
        Self { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn serve(state: Arc<State>, tx: std::sync::mpsc::Sender<SocketAddr>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("reuseaddr");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    // A deep backlog: the herd opens ~1000 connections at once.
    let listener = socket.listen(4096).expect("listen");
    tx.send(listener.local_addr().expect("local addr"))
        .expect("send address");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/hot") => Response::new(Full::new(Bytes::from_static(b"ok"))),
        (&Method::GET, "/api") => {
            state.api_calls.fetch_add(1, Ordering::Relaxed);
            let generation = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer gen-"))
                .and_then(|n| n.parse::<u64>().ok());
            match generation {
                Some(n) if n >= state.min_valid.load(Ordering::SeqCst) => {
                    Response::new(Full::new(Bytes::from_static(b"ok")))
                }
                _ => Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header(
                        hyper::header::WWW_AUTHENTICATE,
                        r#"Bearer error="invalid_token""#,
                    )
                    .body(Full::new(Bytes::new()))
                    .expect("401"),
            }
        }
        (&Method::POST, "/token") => {
            state.token_calls.fetch_add(1, Ordering::SeqCst);
            state.record(&state.first_token_call_us);
            // Read the form, as a real server would.
            let _ = req.into_body().collect().await;
            let delay = Duration::from_micros(state.token_delay_us.load(Ordering::SeqCst));
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let generation = state.next_generation.fetch_add(1, Ordering::SeqCst);
            let body = format!(
                r#"{{"access_token":"gen-{generation}","token_type":"Bearer","expires_in":{}}}"#,
                LIFETIME.as_secs()
            );
            Response::builder()
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(hyper::header::CACHE_CONTROL, "no-store")
                .body(Full::new(Bytes::from(body)))
                .expect("token response")
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()))
            .expect("404"),
    };
    Ok(response)
}

// ---------------------------------------------------------------------------
// Clients on reqwest 0.13 / reqwest-middleware 0.5 (this crate's stack)

/// The bare client: the floor.
pub fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

/// A trivial middleware: a fixed, precomputed `Authorization` header.
pub struct FixedBearer(pub reqwest::header::HeaderValue);

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for FixedBearer {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        req.headers_mut()
            .insert(reqwest::header::AUTHORIZATION, self.0.clone());
        next.run(req, extensions).await
    }
}

/// How [`CopyingBearer`] keeps a copy of the request for a replay.
#[derive(Clone, Copy)]
pub enum CopyMode {
    /// `Request::try_clone()` after inserting the header (what
    /// `OAuth2Middleware` does today).
    TryCloneAfter,
    /// `Request::try_clone()` before inserting the header: the header map
    /// of a plain GET is still empty then.
    TryCloneBefore,
    /// A hand-built copy before inserting the header (method, URL, headers,
    /// version, timeout; `try_clone()` only for a request with a body):
    /// skips the extension map that `try_clone()` allocates to copy the
    /// timeout.
    HandCopyBefore,
}

/// The trivial middleware plus a copy of the request kept for a replay and
/// then dropped: isolates what the copy costs, for the allocation and
/// instruction counts (allocs.rs). Not a real middleware.
pub struct CopyingBearer(pub reqwest::header::HeaderValue, pub CopyMode);

pub fn hand_copy(request: &reqwest::Request) -> Option<reqwest::Request> {
    if request.body().is_some() {
        return request.try_clone();
    }
    let mut copy = reqwest::Request::new(request.method().clone(), request.url().clone());
    *copy.headers_mut() = request.headers().clone();
    *copy.version_mut() = request.version();
    if let Some(timeout) = request.timeout() {
        *copy.timeout_mut() = Some(*timeout);
    }
    Some(copy)
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for CopyingBearer {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let early = match self.1 {
            CopyMode::TryCloneAfter => None,
            CopyMode::TryCloneBefore => req.try_clone(),
            CopyMode::HandCopyBefore => hand_copy(&req),
        };
        req.headers_mut()
            .insert(reqwest::header::AUTHORIZATION, self.0.clone());
        let copy = match self.1 {
            CopyMode::TryCloneAfter => req.try_clone(),
            _ => early,
        };
        let response = next.run(req, extensions).await;
        drop(std::hint::black_box(copy));
        response
    }
}

pub fn copying(mode: CopyMode) -> reqwest_middleware::ClientWithMiddleware {
    let mut value = reqwest::header::HeaderValue::from_static("Bearer x");
    value.set_sensitive(true);
    reqwest_middleware::ClientBuilder::new(bare())
        .with(CopyingBearer(value, mode))
        .build()
}

/// Placed after (inside) the middleware under test: records when the first
/// 401 from the API reaches the client, so the herd can tell how long the
/// middleware took from that 401 to its token-endpoint call.
pub struct Probe(pub Arc<State>);

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Probe {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let response = next.run(req, extensions).await;
        if let Ok(r) = &response
            && r.status() == reqwest::StatusCode::UNAUTHORIZED
        {
            self.0.record(&self.0.first_401_us);
        }
        response
    }
}

pub fn trivial(inner: reqwest::Client) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(inner)
        .with(FixedBearer(reqwest::header::HeaderValue::from_static(
            "Bearer x",
        )))
        .build()
}

/// A manager seeded with `access` (valid for an hour) and a refresh token,
/// for the server's `/token`.
pub fn manager(server: &Server, access: &str, token_client: reqwest::Client) -> TokenManager {
    TokenManager::builder(&server.url("/token"))
        .client_id("bench")
        .tokens(
            TokenSet::new(access)
                .with_refresh_token("refresh")
                .with_expires_in(LIFETIME),
        )
        .http_client(token_client)
        .build()
        .expect("token manager")
}

/// This crate: `OAuth2Middleware` over `inner`.
pub fn ours(
    manager: TokenManager,
    server: &Server,
    inner: reqwest::Client,
) -> reqwest_middleware::ClientWithMiddleware {
    ours_with(manager, server, inner, true)
}

/// This crate, with or without the replay copy (`replay_on_401`).
pub fn ours_with(
    manager: TokenManager,
    server: &Server,
    inner: reqwest::Client,
    replay: bool,
) -> reqwest_middleware::ClientWithMiddleware {
    let auth = OAuth2Middleware::builder(manager)
        .allow_origin(&server.origin())
        .replay_on_401(replay)
        .build()
        .expect("middleware");
    reqwest_middleware::ClientBuilder::new(inner)
        .with(auth)
        .build()
}

/// The middleware most apps write by hand: the token in a
/// `tokio::sync::Mutex<String>`, read on every request; on every 401 it
/// refreshes (no check whether someone else already did) and replays once.
/// The lock guards only the string, not the refresh: holding it across the
/// refresh would serialize a herd of N into N token round trips.
pub struct Naive {
    token: tokio::sync::Mutex<String>,
    token_url: String,
    http: reqwest::Client,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
}

impl Naive {
    pub fn new(access: &str, server: &Server, http: reqwest::Client) -> Self {
        Self {
            token: tokio::sync::Mutex::new(access.to_owned()),
            token_url: server.url("/token"),
            http,
        }
    }

    async fn refresh(&self) -> Result<String, reqwest::Error> {
        let response = self
            .http
            .post(&self.token_url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body("grant_type=refresh_token&refresh_token=refresh&client_id=bench")
            .send()
            .await?
            .error_for_status()?;
        let bytes = response.bytes().await?;
        let parsed: TokenResponse = serde_json::from_slice(&bytes).expect("token response");
        Ok(parsed.access_token)
    }
}

fn bearer_header(token: &str) -> reqwest::header::HeaderValue {
    reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header value")
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Naive {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let token = self.token.lock().await.clone();
        req.headers_mut()
            .insert(reqwest::header::AUTHORIZATION, bearer_header(&token));
        let replay = req.try_clone();
        let response = next.clone().run(req, extensions).await?;
        if response.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let Some(mut replay) = replay else {
            return Ok(response);
        };
        let fresh = self
            .refresh()
            .await
            .map_err(reqwest_middleware::Error::Reqwest)?;
        *self.token.lock().await = fresh.clone();
        replay
            .headers_mut()
            .insert(reqwest::header::AUTHORIZATION, bearer_header(&fresh));
        next.run(replay, extensions).await
    }
}

pub fn naive(
    middleware: Naive,
    inner: reqwest::Client,
) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(inner)
        .with(middleware)
        .build()
}

// ---------------------------------------------------------------------------
// Peers, on reqwest 0.12 / reqwest-middleware 0.4

pub mod peers {
    use super::*;
    use reqwest_012 as reqwest;
    use reqwest_middleware_04 as reqwest_middleware;

    pub type Client = reqwest_middleware::ClientWithMiddleware;

    pub fn bare() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("reqwest 0.12 client")
    }

    pub struct FixedBearer(pub reqwest::header::HeaderValue);

    #[async_trait::async_trait]
    impl reqwest_middleware::Middleware for FixedBearer {
        async fn handle(
            &self,
            mut req: reqwest::Request,
            extensions: &mut http::Extensions,
            next: reqwest_middleware::Next<'_>,
        ) -> reqwest_middleware::Result<reqwest::Response> {
            req.headers_mut()
                .insert(reqwest::header::AUTHORIZATION, self.0.clone());
            next.run(req, extensions).await
        }
    }

    /// The trivial middleware on the peers' stack: their floor.
    pub fn trivial(inner: reqwest::Client) -> Client {
        reqwest_middleware::ClientBuilder::new(inner)
            .with(FixedBearer(reqwest::header::HeaderValue::from_static(
                "Bearer x",
            )))
            .build()
    }

    /// aliri_reqwest's `AccessTokenMiddleware` over an aliri_tokens
    /// `TokenWatcher` fed by its OAuth 2.0 refresh-token source (background
    /// refresh at 75 % of the lifetime). The watcher fetches its first token
    /// from `/token` before this returns.
    pub async fn aliri(server: &Server, inner: reqwest::Client) -> Client {
        use aliri_tokens::sources::oauth2::{
            RefreshTokenSource, dto::RefreshTokenCredentialsSource,
        };
        use aliri_tokens::{ClientId, RefreshToken, TokenLifetimeConfig, TokenWatcher};

        let source = RefreshTokenSource::new(
            bare(),
            server.url("/token").parse().expect("token url"),
            RefreshTokenCredentialsSource {
                client_id: ClientId::new("bench".to_owned()),
                client_secret: None,
                refresh_token: RefreshToken::new("refresh".to_owned()).into_boxed_ref(),
            },
            TokenLifetimeConfig::default(),
        )
        .using_form_data();
        let watcher = TokenWatcher::spawn_from_token_source(
            source,
            aliri_tokens::jitter::NullJitter,
            aliri_tokens::backoff::ErrorBackoffConfig::default(),
        )
        .await
        .expect("aliri token watcher");
        // The default predicate is https-only; the server is on loopback.
        let auth = aliri_reqwest::AccessTokenMiddleware::new(watcher)
            .with_predicate(aliri_reqwest::ExactHostMatch::new("127.0.0.1"));
        reqwest_middleware::ClientBuilder::new(inner)
            .with(auth)
            .build()
    }

    /// A `token_source::TokenSource` written the usual way for
    /// reqwest-auth: the `Bearer` string cached with its expiry in a
    /// `tokio::sync::Mutex`, refreshed from `/token` (holding the lock, so
    /// single flight) when it has expired. reqwest-auth never sees the
    /// API's 401s, so a revoked token is not refreshed.
    #[derive(Debug)]
    pub struct CachedSource {
        cached: tokio::sync::Mutex<(String, Instant)>,
        token_url: String,
        http: reqwest::Client,
    }

    impl CachedSource {
        pub fn new(access: &str, server: &Server, http: reqwest::Client) -> Self {
            Self {
                cached: tokio::sync::Mutex::new((
                    format!("Bearer {access}"),
                    Instant::now() + LIFETIME,
                )),
                token_url: server.url("/token"),
                http,
            }
        }

        /// Marks the cached token expired.
        pub fn expire(&mut self) {
            self.cached.get_mut().1 = Instant::now();
        }
    }

    #[derive(serde::Deserialize)]
    struct TokenResponse {
        access_token: String,
        expires_in: u64,
    }

    #[async_trait::async_trait]
    impl token_source::TokenSource for CachedSource {
        async fn token(&self) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
            let mut cached = self.cached.lock().await;
            if Instant::now() >= cached.1 {
                let bytes = self
                    .http
                    .post(&self.token_url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body("grant_type=refresh_token&refresh_token=refresh&client_id=bench")
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                let parsed: TokenResponse = serde_json::from_slice(&bytes)?;
                *cached = (
                    format!("Bearer {}", parsed.access_token),
                    Instant::now() + Duration::from_secs(parsed.expires_in),
                );
            }
            Ok(cached.0.clone())
        }
    }

    pub fn reqwest_auth(source: CachedSource, inner: reqwest::Client) -> Client {
        let source: Arc<dyn token_source::TokenSource> = Arc::new(source);
        reqwest_middleware::ClientBuilder::new(inner)
            .with(reqwest_auth::AuthorizationHeaderMiddleware::from(source))
            .build()
    }

    /// Sends one GET and reads the body; the status.
    pub async fn get(client: &Client, url: &str) -> u16 {
        let response = client.get(url).send().await.expect("request");
        let status = response.status().as_u16();
        let _ = response.bytes().await.expect("body");
        status
    }

    pub async fn get_bare(client: &reqwest::Client, url: &str) -> u16 {
        let response = client.get(url).send().await.expect("request");
        let status = response.status().as_u16();
        let _ = response.bytes().await.expect("body");
        status
    }
}

// ---------------------------------------------------------------------------
// Sending

/// Sends one GET through a middleware client and reads the body; the status.
pub async fn get(client: &reqwest_middleware::ClientWithMiddleware, url: &str) -> u16 {
    let response = client.get(url).send().await.expect("request");
    let status = response.status().as_u16();
    let _ = response.bytes().await.expect("body");
    status
}

/// The same with the bare client.
pub async fn get_bare(client: &reqwest::Client, url: &str) -> u16 {
    let response = client.get(url).send().await.expect("request");
    let status = response.status().as_u16();
    let _ = response.bytes().await.expect("body");
    status
}

/// Every client variant the hot-path benches compare, behind one enum so a
/// bench can loop over them.
pub enum Variant {
    Bare(reqwest::Client),
    Trivial(reqwest_middleware::ClientWithMiddleware),
    /// The trivial middleware plus a replay copy (allocs.rs only).
    Copying(CopyMode, reqwest_middleware::ClientWithMiddleware),
    Ours(reqwest_middleware::ClientWithMiddleware),
    /// Ours with `replay_on_401(false)`: no copy of the request.
    OursNoReplay(reqwest_middleware::ClientWithMiddleware),
    Naive(reqwest_middleware::ClientWithMiddleware),
    Bare012(reqwest_012::Client),
    Trivial04(peers::Client),
    Aliri(peers::Client),
    ReqwestAuth(peers::Client),
}

impl Variant {
    pub fn name(&self) -> &'static str {
        match self {
            Variant::Bare(_) => "bare reqwest 0.13 (floor)",
            Variant::Trivial(_) => "trivial middleware (rm 0.5)",
            Variant::Copying(CopyMode::TryCloneAfter, _) => "trivial + try_clone() after insert",
            Variant::Copying(CopyMode::TryCloneBefore, _) => "trivial + try_clone() before insert",
            Variant::Copying(CopyMode::HandCopyBefore, _) => "trivial + hand copy before insert",
            Variant::Ours(_) => "reqwest-oauth2-refresh",
            Variant::OursNoReplay(_) => "reqwest-oauth2-refresh, replay_on_401(false)",
            Variant::Naive(_) => "naive Mutex<String> middleware",
            Variant::Bare012(_) => "bare reqwest 0.12 (peers' floor)",
            Variant::Trivial04(_) => "trivial middleware (rm 0.4)",
            Variant::Aliri(_) => "aliri_reqwest 0.5",
            Variant::ReqwestAuth(_) => "reqwest-auth 1.0",
        }
    }

    /// A short id for criterion and for `BENCH_VARIANT`.
    pub fn id(&self) -> &'static str {
        match self {
            Variant::Bare(_) => "bare",
            Variant::Trivial(_) => "trivial",
            Variant::Copying(CopyMode::TryCloneAfter, _) => "copy_try_clone_after",
            Variant::Copying(CopyMode::TryCloneBefore, _) => "copy_try_clone_before",
            Variant::Copying(CopyMode::HandCopyBefore, _) => "copy_hand_before",
            Variant::Ours(_) => "ours",
            Variant::OursNoReplay(_) => "ours_no_replay",
            Variant::Naive(_) => "naive",
            Variant::Bare012(_) => "bare012",
            Variant::Trivial04(_) => "trivial04",
            Variant::Aliri(_) => "aliri",
            Variant::ReqwestAuth(_) => "reqwest_auth",
        }
    }

    /// One GET to `url`, body read; the status.
    pub async fn get(&self, url: &str) -> u16 {
        match self {
            Variant::Bare(c) => get_bare(c, url).await,
            Variant::Trivial(c)
            | Variant::Copying(_, c)
            | Variant::Ours(c)
            | Variant::OursNoReplay(c)
            | Variant::Naive(c) => get(c, url).await,
            Variant::Bare012(c) => peers::get_bare(c, url).await,
            Variant::Trivial04(c) | Variant::Aliri(c) | Variant::ReqwestAuth(c) => {
                peers::get(c, url).await
            }
        }
    }
}

/// All hot-path variants against `server`, each with its own connection
/// pool, all holding a valid token. Needs a Tokio runtime (aliri spawns its
/// watcher).
pub async fn hot_variants(server: &Server) -> Vec<Variant> {
    let token = server.state.valid_token();
    vec![
        Variant::Bare(bare()),
        Variant::Trivial(trivial(bare())),
        Variant::Ours(ours(manager(server, &token, bare()), server, bare())),
        Variant::OursNoReplay(ours_with(
            manager(server, &token, bare()),
            server,
            bare(),
            false,
        )),
        Variant::Naive(naive(Naive::new(&token, server, bare()), bare())),
        Variant::Bare012(peers::bare()),
        Variant::Trivial04(peers::trivial(peers::bare())),
        Variant::Aliri(peers::aliri(server, peers::bare()).await),
        Variant::ReqwestAuth(peers::reqwest_auth(
            peers::CachedSource::new(&token, server, peers::bare()),
            peers::bare(),
        )),
    ]
}

/// The replay-copy experiments, for allocs.rs.
pub fn copy_variants() -> Vec<Variant> {
    [
        CopyMode::TryCloneAfter,
        CopyMode::TryCloneBefore,
        CopyMode::HandCopyBefore,
    ]
    .into_iter()
    .map(|mode| Variant::Copying(mode, copying(mode)))
    .collect()
}

// ---------------------------------------------------------------------------
// Small helpers

/// Polls a pinned future once with a no-op waker and returns its output;
/// panics if it is not ready (the benches use it only on fast paths that
/// never wait). Use it through [`ready!`], which pins the future where it is
/// made: moving a future (as passing it by value does) copies all of it.
pub fn poll_ready<F: Future>(future: std::pin::Pin<&mut F>) -> F::Output {
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("expected a ready future (fast path)"),
    }
}

/// `ready!(future)`: the output of a future that is ready at once, polled
/// in place as an `.await` would.
#[allow(unused_macros)]
macro_rules! ready {
    ($future:expr) => {
        $crate::common::poll_ready(std::pin::pin!($future))
    };
}
#[allow(unused_imports)]
pub(crate) use ready;

/// For the harness=false binaries: false when `cargo bench -- FILTER` was
/// given filters and none of them is part of `name`, so that such a run
/// skips this binary as criterion skips benches that do not match.
pub fn selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// The median of `samples` (sorted in place).
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    let n = samples.len();
    if n == 0 {
        Duration::ZERO
    } else if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2
    }
}

/// A duration for tables: µs below 10 ms, ms above.
pub fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}
