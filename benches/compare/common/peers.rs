//! The peers compared in the README's Performance section, on their stack
//! (reqwest 0.12 / reqwest-middleware 0.4): their bare client and trivial
//! middleware (their floor), aliri_reqwest, and reqwest-auth.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest_012 as reqwest;
use reqwest_middleware_04 as reqwest_middleware;

use super::{LIFETIME, Server};

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
    use aliri_tokens::sources::oauth2::{RefreshTokenSource, dto::RefreshTokenCredentialsSource};
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
