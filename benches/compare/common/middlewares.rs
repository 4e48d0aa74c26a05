//! The comparison middlewares on this crate's stack (reqwest 0.13 /
//! reqwest-middleware 0.5): the bare client, a trivial one, the replay-copy
//! experiments, this crate's, and the naive one most apps write; and the
//! probe the herd puts inside them.

use std::sync::Arc;

use reqwest_oauth2_refresh::{OAuth2Middleware, TokenManager, TokenSet};

use super::{LIFETIME, Server, State};

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
        .initial_tokens(
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
