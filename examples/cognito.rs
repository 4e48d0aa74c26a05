//! Amazon Cognito user pools: keep an access token for your API fresh.
//!
//! ```sh
//! DOMAIN=my-prefix REGION=eu-west-1 CLIENT_ID=... CLIENT_SECRET=... \
//! REFRESH_TOKEN=... API_URL=https://api.example.com/me cargo run --example cognito
//! ```
//! `DOMAIN` and `REGION` name the prefix domain
//! `https://{DOMAIN}.auth.{REGION}.amazoncognito.com`; with a custom domain set
//! `TOKEN_URL=https://auth.example.com/oauth2/token` instead. `CLIENT_SECRET`
//! only for app clients that have one. Optional: `ACCESS_TOKEN`, `API_URL`
//! (default: the pool's `/oauth2/userInfo`, which needs the `openid` scope).
//!
//! Without refresh token rotation (the default) Cognito returns no new refresh
//! token and the manager keeps the old one. With rotation enabled on the app
//! client, a refresh returns a new one and the old one dies after a grace
//! period of at most 60 s (AWS documents rotation for its
//! GetTokensFromRefreshToken API; check that your `/oauth2/token` rotates).
//!
//! TLS: this crate depends on reqwest without TLS features, and so do its
//! examples. Your own `reqwest` dependency must enable one (its default
//! features do) for `reqwest::Client::new()` to speak https.

use reqwest_oauth2_refresh::{ClientAuth, OAuth2Middleware, TokenManager, TokenSet};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let token_url = var("TOKEN_URL").or_else(|| {
        let (domain, region) = (var("DOMAIN")?, var("REGION")?);
        Some(format!(
            "https://{domain}.auth.{region}.amazoncognito.com/oauth2/token"
        ))
    });
    let missing: Vec<_> = ["CLIENT_ID", "REFRESH_TOKEN"]
        .into_iter()
        .filter(|n| var(n).is_none())
        .chain(
            token_url
                .is_none()
                .then_some("DOMAIN and REGION (or TOKEN_URL)"),
        )
        .collect();
    if !missing.is_empty() {
        println!("set {} to run this example", missing.join(", "));
        println!("optional: CLIENT_SECRET (app clients with a secret), ACCESS_TOKEN, API_URL");
        return Ok(());
    }
    let token_url = token_url.unwrap_or_default();
    let refresh = var("REFRESH_TOKEN").unwrap_or_default();
    let tokens = match var("ACCESS_TOKEN") {
        // Expiry unknown: it is used until the API answers 401.
        Some(access) => TokenSet::new(access),
        // An already expired placeholder: the first request refreshes first.
        None => TokenSet::new("none").with_expires_in(Duration::ZERO),
    }
    .with_refresh_token(refresh.clone());

    let mut builder = TokenManager::builder(&token_url)
        .client_id(var("CLIENT_ID").unwrap_or_default())
        .initial_tokens(tokens);
    builder = match var("CLIENT_SECRET") {
        // Cognito's documented form for app clients with a secret.
        Some(secret) => builder
            .client_secret(secret)
            .client_auth(ClientAuth::SecretBasic),
        // Public app clients send only client_id.
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
    let default_api = url::Url::parse(&token_url)?.join("/oauth2/userInfo")?;
    let url = var("API_URL").unwrap_or_else(|| default_api.to_string());
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
