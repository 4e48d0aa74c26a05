//! Microsoft Entra ID (Azure AD): keep a Microsoft Graph access token fresh.
//!
//! ```sh
//! TENANT=contoso.onmicrosoft.com CLIENT_ID=... CLIENT_SECRET=... \
//! REFRESH_TOKEN=... cargo run --example entra
//! ```
//! `TENANT` is a tenant id or domain, or `organizations`/`common`/`consumers`.
//! `CLIENT_SECRET` is for confidential (web) apps; leave it out for public
//! clients ("Allow public client flows"). Optional: `ACCESS_TOKEN`. Refresh
//! tokens come only with the `offline_access` scope.
//!
//! Entra returns a new refresh token with every refresh; always keep the
//! newest (SPA refresh tokens live only 24 hours). Entra wants the `scope`
//! on refresh requests for the resource the new token is for; `SCOPE`
//! overrides the Graph default used here.
//!
//! TLS: this crate depends on reqwest without TLS features, and so do its
//! examples. Your own `reqwest` dependency must enable one (its default
//! features do) for `reqwest::Client::new()` to speak https.

use reqwest_oauth2_refresh::{ClientAuth, OAuth2Middleware, TokenManager, TokenSet};
use std::time::Duration;

const REQUIRED: [&str; 3] = ["TENANT", "CLIENT_ID", "REFRESH_TOKEN"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let missing: Vec<_> = REQUIRED.into_iter().filter(|n| var(n).is_none()).collect();
    if !missing.is_empty() {
        println!("set {} to run this example", missing.join(", "));
        println!("optional: CLIENT_SECRET (confidential clients), ACCESS_TOKEN, SCOPE");
        return Ok(());
    }
    let tenant = var("TENANT").unwrap_or_default();
    let refresh = var("REFRESH_TOKEN").unwrap_or_default();
    let tokens = match var("ACCESS_TOKEN") {
        // Expiry unknown: it is used until the API answers 401.
        Some(access) => TokenSet::new(access),
        // An already expired placeholder: the first request refreshes first.
        None => TokenSet::new("none").with_expires_in(Duration::ZERO),
    }
    .with_refresh_token(refresh.clone());

    let token_url = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token");
    let mut builder = TokenManager::builder(&token_url)
        .client_id(var("CLIENT_ID").unwrap_or_default())
        .scope(
            var("SCOPE")
                .unwrap_or_else(|| "https://graph.microsoft.com/.default offline_access".into()),
        )
        .initial_tokens(tokens);
    builder = match var("CLIENT_SECRET") {
        // Entra's samples send the secret in the body (client_secret_post).
        Some(secret) => builder
            .client_secret(secret)
            .client_auth(ClientAuth::SecretPost),
        // Public clients send only client_id.
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

    // A Graph token must go to Graph only.
    let auth = OAuth2Middleware::builder(manager)
        .allow_origin("https://graph.microsoft.com")
        .build()?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build();

    let url = "https://graph.microsoft.com/v1.0/me";
    let response = client.get(url).send().await?;
    println!("GET {url}: {}", response.status());
    println!("{}", response.text().await?);
    Ok(())
}
