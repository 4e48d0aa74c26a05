//! The whole SDK pattern in one file: an SDK type that owns one client, keeps
//! its tokens in a file shared by the app's processes, maps our errors to its
//! own (found behind the recommended middleware stack), and tells the app
//! when the user must sign in again.
//!
//! It runs against an in-process authorization server and API, so it needs
//! nothing else: `cargo run --example sdk --features file-store`. It exits
//! non-zero if the story does not go as told.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest_middleware::ClientWithMiddleware;
use reqwest_oauth2_refresh::{
    Error, FileStore, OAuth2Middleware, SessionEnd, TokenManager, TokenSet,
};
use reqwest_retry::{RetryTransientMiddleware, policies::ExponentialBackoff};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// What the SDK's callers see: no OAuth details, just what to do.
#[derive(Debug)]
enum SdkError {
    /// Show the sign-in screen.
    SignInRequired,
    /// Try again later.
    Unavailable(String),
    /// A bug or a misconfiguration.
    Other(String),
}

impl std::fmt::Display for SdkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SdkError::SignInRequired => f.write_str("sign in again"),
            SdkError::Unavailable(why) => write!(f, "unavailable, try again later: {why}"),
            SdkError::Other(why) => write!(f, "{why}"),
        }
    }
}

impl From<reqwest_middleware::Error> for SdkError {
    fn from(error: reqwest_middleware::Error) -> Self {
        match Error::find_in(&error) {
            Some(ours) if ours.needs_sign_in() => SdkError::SignInRequired,
            Some(ours) if ours.is_transient() => SdkError::Unavailable(ours.to_string()),
            Some(ours) => SdkError::Other(ours.to_string()),
            None => SdkError::Unavailable(error.to_string()),
        }
    }
}

/// The SDK: one client for the program's lifetime.
struct Photos {
    client: ClientWithMiddleware,
    api: String,
}

impl Photos {
    fn new(
        token_url: &str,
        api: &str,
        store: FileStore,
        signed_out: Arc<AtomicBool>,
    ) -> Result<Self, Error> {
        let manager = TokenManager::builder(token_url)
            .client_id("photos-sdk")
            .store(store)
            .on_session_end(move |end| {
                if matches!(end, SessionEnd::RefreshTokenRejected(_)) {
                    signed_out.store(true, Ordering::SeqCst);
                }
            })
            .build()?;
        let auth = OAuth2Middleware::builder(manager)
            .allow_origin(api)
            .build()?;
        let retry = ExponentialBackoff::builder().build_with_max_retries(2);
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(reqwest_tracing::TracingMiddleware::default())
            .with(RetryTransientMiddleware::new_with_policy(retry))
            .with(auth)
            .build();
        Ok(Self {
            client,
            api: api.to_owned(),
        })
    }

    async fn albums(&self) -> Result<String, SdkError> {
        let response = self
            .client
            .get(format!("{}/albums", self.api))
            .send()
            .await?;
        response
            .text()
            .await
            .map_err(|e| SdkError::Unavailable(e.to_string()))
    }
}

/// The authorization server: one refresh works, then the refresh token dies
/// (the user revoked the app's access elsewhere).
async fn authorization_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "at-2", "token_type": "Bearer", "expires_in": 3600,
            "refresh_token": "rt-2"
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .mount(&server)
        .await;
    server
}

/// The API: takes `at-2` until it is revoked, then nothing.
async fn api() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/albums"))
        .and(header("authorization", "Bearer at-2"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[\"holidays\"]"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/albums"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    server
}

#[tokio::main]
async fn main() -> Result<(), reqwest_oauth2_refresh::BoxError> {
    let (auth, api) = (authorization_server().await, api().await);
    let dir = std::env::temp_dir().join(format!("photos-sdk-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("tokens.json");
    // What the app's sign-in stored: an access token that has expired.
    let signed_in = TokenSet::new("at-1")
        .with_refresh_token("rt-1")
        .with_expires_in(Duration::from_secs(60))
        .with_issued_at(std::time::SystemTime::now() - Duration::from_secs(3600));
    reqwest_oauth2_refresh::TokenStore::save(&FileStore::new(&file)?, &signed_in).await?;

    let signed_out = Arc::new(AtomicBool::new(false));
    let photos = Photos::new(
        &format!("{}/token", auth.uri()),
        &api.uri(),
        FileStore::new(&file)?,
        signed_out.clone(),
    )?;

    let albums = photos.albums().await.map_err(|e| e.to_string())?;
    println!(
        "albums: {albums} (the expired token was refreshed first; the new one is in {})",
        file.display()
    );

    // The API now rejects at-2; the refresh that follows meets a dead token.
    match photos.albums().await {
        Err(SdkError::SignInRequired) if signed_out.load(Ordering::SeqCst) => {
            println!("signed out elsewhere: the SDK says SignInRequired, and the app was told");
        }
        Ok(albums) => return Err(format!("expected SignInRequired, got {albums}").into()),
        Err(other) => return Err(format!("expected SignInRequired, got: {other}").into()),
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
