//! GitHub: keep a GitHub App's user access token fresh.
//!
//! ```sh
//! CLIENT_ID=Iv1... CLIENT_SECRET=... REFRESH_TOKEN=ghr_... cargo run --example github
//! ```
//! Optional: `ACCESS_TOKEN` (a current `ghu_` token). Leave `CLIENT_SECRET`
//! empty for tokens from the device flow, which GitHub refreshes without one.
//!
//! User access tokens of GitHub Apps expire after 8 hours, and every refresh
//! returns a new refresh token and spends the old one: persist each new one
//! (`on_refresh`). A dead refresh token (expired after 6 months, revoked, or
//! already spent) comes back from GitHub as `bad_refresh_token` inside an
//! HTTP 200; the `providers::github()` preset makes it `Error::InvalidGrant`,
//! the "sign in again" branch below.
//!
//! TLS: this crate depends on reqwest without TLS features, and so do its
//! examples. Your own `reqwest` dependency must enable one (its default
//! features do) for `reqwest::Client::new()` to speak https.

use reqwest_oauth2_refresh::{Error, OAuth2Middleware, TokenSet, providers};
use std::time::Duration;

const REQUIRED: [&str; 2] = ["CLIENT_ID", "REFRESH_TOKEN"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let missing: Vec<_> = REQUIRED.into_iter().filter(|n| var(n).is_none()).collect();
    if !missing.is_empty() {
        println!("set {} to run this example", missing.join(", "));
        println!("optional: CLIENT_SECRET, ACCESS_TOKEN");
        return Ok(());
    }
    let tokens = match var("ACCESS_TOKEN") {
        Some(access) => TokenSet::new(access),
        // An already expired placeholder: the first request refreshes first.
        None => TokenSet::new("none").with_expires_in(Duration::ZERO),
    }
    .with_refresh_token(var("REFRESH_TOKEN").unwrap_or_default());

    let mut builder = providers::github()
        .client_id(var("CLIENT_ID").unwrap_or_default())
        .initial_tokens(tokens)
        .on_refresh(|_: &TokenSet| {
            // GitHub rotates on every refresh: store the new refresh token
            // now (keychain, database), or the next refresh fails. Never log
            // token values.
            println!("new tokens received; store the refresh token securely");
        });
    if let Some(secret) = var("CLIENT_SECRET") {
        builder = builder.client_secret(secret);
    }
    let manager = builder.build()?;

    let auth = OAuth2Middleware::builder(manager)
        .allow_origin("https://api.github.com")
        .build()?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build();

    let url = "https://api.github.com/user";
    let sent = client
        .get(url)
        .header("accept", "application/vnd.github+json")
        // GitHub's API refuses requests without a User-Agent.
        .header("user-agent", "reqwest-oauth2-refresh-example")
        .send()
        .await;
    match sent {
        Ok(response) => {
            println!("GET {url}: {}", response.status());
            println!("{}", response.text().await?);
        }
        Err(reqwest_middleware::Error::Middleware(e))
            if matches!(e.downcast_ref::<Error>(), Some(Error::InvalidGrant { .. })) =>
        {
            println!("the refresh token is dead: the user must authorize the app again");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
