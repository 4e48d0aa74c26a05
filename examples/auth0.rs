//! Auth0: keep an access token for your API fresh, with refresh token rotation.
//!
//! ```sh
//! DOMAIN=your-tenant.us.auth0.com CLIENT_ID=... CLIENT_SECRET=... \
//! REFRESH_TOKEN=... API_URL=https://api.example.com/me cargo run --example auth0
//! ```
//! `DOMAIN` is the tenant domain or your custom domain. `CLIENT_SECRET` is for
//! Regular Web Applications; leave it out for Native apps and SPAs (public
//! clients). Optional: `ACCESS_TOKEN`, `API_URL` (default: `/userinfo` on the
//! tenant, which needs the `openid` scope). Refresh tokens come only with the
//! `offline_access` scope and "Allow Offline Access" on the API.
//!
//! With Refresh Token Rotation on, every refresh returns a new refresh token
//! and the old one is spent: presenting it again (after the reuse interval)
//! revokes the whole family and answers `invalid_grant`. So persist the new
//! one in `on_refresh` before anything else uses it.
//!
//! TLS: this crate depends on reqwest without TLS features, and so do its
//! examples. Your own `reqwest` dependency must enable one (its default
//! features do) for `reqwest::Client::new()` to speak https.

use reqwest_oauth2_refresh::{ClientAuth, OAuth2Middleware, TokenManager, TokenSet};
use std::time::Duration;

const REQUIRED: [&str; 3] = ["DOMAIN", "CLIENT_ID", "REFRESH_TOKEN"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let missing: Vec<_> = REQUIRED.into_iter().filter(|n| var(n).is_none()).collect();
    if !missing.is_empty() {
        println!("set {} to run this example", missing.join(", "));
        println!("optional: CLIENT_SECRET (confidential apps), ACCESS_TOKEN, API_URL");
        return Ok(());
    }
    let domain = var("DOMAIN").unwrap_or_default();
    let refresh = var("REFRESH_TOKEN").unwrap_or_default();
    let tokens = match var("ACCESS_TOKEN") {
        // Expiry unknown: it is used until the API answers 401.
        Some(access) => TokenSet::new(access),
        // An already expired placeholder: the first request refreshes first.
        None => TokenSet::new("none").with_expires_in(Duration::ZERO),
    }
    .with_refresh_token(refresh.clone());

    let mut builder = TokenManager::builder(&format!("https://{domain}/oauth/token"))
        .client_id(var("CLIENT_ID").unwrap_or_default())
        .initial_tokens(tokens);
    builder = match var("CLIENT_SECRET") {
        // "Post" is the default token endpoint auth method of Auth0 apps.
        Some(secret) => builder
            .client_secret(secret)
            .client_auth(ClientAuth::SecretPost),
        None => builder.client_auth(ClientAuth::None),
    };
    let manager = builder
        .on_refresh(move |t: &TokenSet| {
            // Persist it here (keychain, database); never log token values.
            if t.refresh_token().is_some_and(|r| r.secret() != refresh) {
                println!("rotated refresh token received; store it securely");
            }
        })
        .build()?;

    // The token goes only to the API's origin (scheme, host and port).
    let url = var("API_URL").unwrap_or_else(|| format!("https://{domain}/userinfo"));
    let origin = url::Url::parse(&url)?.origin().ascii_serialization();
    let auth = OAuth2Middleware::builder(manager)
        .allow_origin(&origin)
        .build()?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build();

    let response = client.get(&url).send().await?;
    println!("GET {url}: {}", response.status());
    println!("{}", response.text().await?);
    Ok(())
}
