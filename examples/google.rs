//! Google APIs: keep a Google OAuth 2.0 access token fresh.
//!
//! ```sh
//! CLIENT_ID=... CLIENT_SECRET=... REFRESH_TOKEN=... cargo run --example google
//! ```
//! Optional: `ACCESS_TOKEN` (a current one). The example calls the OpenID
//! userinfo endpoint, which needs the `openid`, `email` or `profile` scope.
//!
//! Google issues a refresh token only for `access_type=offline` consents, and
//! does not usually rotate it: a refresh answer carries no new refresh token,
//! so the manager keeps the old one. Refresh tokens of apps whose consent
//! screen is in "Testing" expire after 7 days (then: `invalid_grant`).
//!
//! TLS: this crate depends on reqwest without TLS features, and so do its
//! examples. Your own `reqwest` dependency must enable one (its default
//! features do) for `reqwest::Client::new()` to speak https.

use reqwest_oauth2_refresh::{ClientAuth, OAuth2Middleware, TokenManager, TokenSet};
use std::time::Duration;

const REQUIRED: [&str; 3] = ["CLIENT_ID", "CLIENT_SECRET", "REFRESH_TOKEN"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let missing: Vec<_> = REQUIRED.into_iter().filter(|n| var(n).is_none()).collect();
    if !missing.is_empty() {
        println!("set {} to run this example", missing.join(", "));
        println!("optional: ACCESS_TOKEN");
        return Ok(());
    }
    let refresh = var("REFRESH_TOKEN").unwrap_or_default();
    let tokens = match var("ACCESS_TOKEN") {
        // Expiry unknown: it is used until the API answers 401.
        Some(access) => TokenSet::new(access),
        // An already expired placeholder: the first request refreshes first.
        None => TokenSet::new("none").with_expires_in(Duration::ZERO),
    }
    .with_refresh_token(refresh.clone());

    let manager = TokenManager::builder("https://oauth2.googleapis.com/token")
        .client_id(var("CLIENT_ID").unwrap_or_default())
        .client_secret(var("CLIENT_SECRET").unwrap_or_default())
        // Google documents client_secret_post; it accepts HTTP Basic too.
        .client_auth(ClientAuth::SecretPost)
        .initial_tokens(tokens)
        .on_refresh(move |t: &TokenSet| {
            // Persist a new refresh token here (keychain, database); never
            // log token values. With Google this rarely fires.
            if t.refresh_token().is_some_and(|r| r.secret() != refresh) {
                println!("rotated refresh token received; store it securely");
            }
        })
        .build()?;

    // The token goes only to allowed origins. Many APIs have their own host
    // (gmail.googleapis.com, ...): allow each one you call.
    let auth = OAuth2Middleware::builder(manager)
        .allow_origin("https://www.googleapis.com")
        .build()?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build();

    let url = "https://www.googleapis.com/oauth2/v3/userinfo";
    let response = client.get(url).send().await?;
    println!("GET {url}: {}", response.status());
    println!("{}", response.text().await?);
    Ok(())
}
