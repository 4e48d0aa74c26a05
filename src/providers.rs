//! Builders preset for the authorization servers users name most, with
//! their token and revocation endpoints, and what each is known to do.
//!
//! Each function returns a [`TokenManagerBuilder`]: add the client id, the
//! secret (for confidential clients) and the tokens, then build.
//!
//! ```no_run
//! # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
//! use reqwest_oauth2_refresh::{providers, TokenSet};
//! let manager = providers::auth0("my-tenant.eu.auth0.com")
//!     .client_id("my-app")
//!     .initial_tokens(TokenSet::new("access").with_refresh_token("refresh"))
//!     .build()?;
//! # let _ = manager; Ok(()) }
//! ```
//!
//! | provider | rotates refresh tokens | needs `scope` on refresh | revocation | dead refresh token |
//! |---|---|---|---|---|
//! | Google | no (the refresh token stays) | no | yes | `invalid_grant` |
//! | Auth0 | when rotation is on for the app (reuse detection revokes the family) | no | yes | `invalid_grant` in a 403 |
//! | Microsoft Entra ID | yes, on every refresh | yes, for the resource wanted | no RFC 7009 endpoint | `invalid_grant` (AADSTS codes) |
//! | Amazon Cognito | when rotation is on for the app client | no | yes | `invalid_grant` |
//! | Okta | when rotation is on (with a grace period for reuse) | no | yes | `invalid_grant` |
//! | Keycloak | when "Revoke Refresh Token" is on for the realm | no | yes | `invalid_grant` |
//! | GitHub (App user tokens) | yes, on every refresh | no | no RFC 7009 endpoint | `bad_refresh_token` in a 200 |
//! | Slack | yes, on every refresh (token rotation) | no | no RFC 7009 endpoint | `invalid_refresh_token` in a 200 |
//! | Twitch | the answer carries a refresh token, which may change | no | yes | a 400 with `message` "Invalid refresh token" |
//! | HubSpot | no (the same refresh token comes back) | no | no RFC 7009 endpoint | a 400 with `status` `BAD_REFRESH_TOKEN` |
//! | Zoho | no (the answer carries none) | no | yes | `invalid_code` |
//! | Fitbit | yes, on every refresh | no | yes | a 400 with `errors[].errorType` `invalid_grant` |
//! | Strava | the answer carries a refresh token, which may change | no | no RFC 7009 endpoint | a 400 with `errors[]` naming `refresh_token` |
//!
//! Presets that take a host or base URL accept a full URL too (`http://` only
//! for loopback, like every URL here). The presets whose host is fixed also
//! have their settings alone, without the endpoints, in [`rules`]: for the
//! same provider behind another URL (a proxy, a test server).

use crate::endpoint::assertion::AssertionAudience;
use crate::endpoint::client_auth::ClientAuth;
use crate::manager::{TokenManager, TokenManagerBuilder};

/// For providers that document the secret in the body: with a secret the
/// default becomes `client_secret_post`, without one a public client.
fn prefers_post(builder: TokenManagerBuilder) -> TokenManagerBuilder {
    builder.default_secret_auth(ClientAuth::SecretPost)
}

/// `https://` + `host`, unless the caller gave a full URL already.
fn base(host: &str) -> String {
    let host = host.trim_end_matches('/');
    if host.starts_with("https://") || host.starts_with("http://") {
        host.to_owned()
    } else {
        format!("https://{host}")
    }
}

/// Google (`https://oauth2.googleapis.com/token`).
///
/// Google does not rotate refresh tokens: the response carries none, and
/// the old one is kept. Refresh tokens of apps in "testing" publishing status
/// expire after 7 days. Google accepts the client secret in the body and in
/// Basic; this preset sends it in the body, as Google documents.
pub fn google() -> TokenManagerBuilder {
    rules::google(
        TokenManager::builder("https://oauth2.googleapis.com/token")
            .revocation_url("https://oauth2.googleapis.com/revoke"),
    )
}

/// Auth0, for a tenant domain such as `my-tenant.eu.auth0.com` (or a custom
/// domain).
///
/// With refresh token rotation on, every refresh returns a new refresh token
/// and a reused one revokes the whole family (after the configured reuse
/// interval): share tokens between processes only through a store with a
/// lock. Auth0 applications default to `client_secret_post`, which this
/// preset uses when a secret is set (set
/// [`client_auth`](TokenManagerBuilder::client_auth) for an application
/// configured for Basic); public (native, SPA) applications use no secret.
pub fn auth0(domain: &str) -> TokenManagerBuilder {
    let base = base(domain);
    prefers_post(
        TokenManager::builder(&format!("{base}/oauth/token"))
            .revocation_url(&format!("{base}/oauth/revoke")),
    )
}

/// Microsoft Entra ID (Azure AD), for a tenant id, a domain, or
/// `organizations` / `common` / `consumers`.
///
/// Entra returns a new refresh token on every refresh (keep the newest).
/// It wants `scope` on refresh requests for the resource the new token is
/// for, e.g. `https://graph.microsoft.com/.default offline_access`: set it
/// with [`scope`](TokenManagerBuilder::scope). It has no RFC 7009 revocation
/// endpoint. Confidential clients send the secret in the body. Certificate
/// credentials are `private_key_jwt`: give the key with
/// [`client_signer`](TokenManagerBuilder::client_signer) and its
/// certificate with
/// [`SigningKey::with_certificate_der`](crate::SigningKey::with_certificate_der)
/// (the `x5t#S256` header Entra identifies it by); assertions go to the
/// token endpoint's URL, as Entra wants.
pub fn entra(tenant: &str) -> TokenManagerBuilder {
    rules::entra(TokenManager::builder(&format!(
        "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
    )))
}

/// Amazon Cognito, for a user pool domain such as
/// `my-app.auth.eu-west-1.amazoncognito.com` (or a custom domain).
///
/// App clients with a secret authenticate with Basic (the default when a
/// secret is set); app clients without one are public. Cognito's token
/// endpoint returns no new refresh token unless refresh token rotation is
/// on for the app client.
pub fn cognito(domain: &str) -> TokenManagerBuilder {
    let base = base(domain);
    TokenManager::builder(&format!("{base}/oauth2/token"))
        .revocation_url(&format!("{base}/oauth2/revoke"))
}

/// Okta, for an org domain such as `my-org.okta.com` and an authorization
/// server id (`default` for the default custom authorization server).
///
/// With rotation on, Okta returns a new refresh token on every refresh and
/// accepts the previous one for a grace period (30 s by default) before it
/// treats reuse as theft. Service apps authenticate with `private_key_jwt`
/// ([`client_signer`](TokenManagerBuilder::client_signer)); Okta wants each
/// assertion addressed to the URL of the endpoint called, which this preset
/// sets.
pub fn okta(domain: &str, authorization_server: &str) -> TokenManagerBuilder {
    let base = format!("{}/oauth2/{authorization_server}/v1", base(domain));
    TokenManager::builder(&format!("{base}/token"))
        .revocation_url(&format!("{base}/revoke"))
        .client_assertion_audience(AssertionAudience::Endpoint)
}

/// Keycloak, for its base URL (e.g. `https://sso.example.com`, with `/auth`
/// for Keycloak before 17) and a realm.
///
/// Keycloak rotates refresh tokens when the realm's "Revoke Refresh Token"
/// is on (a reused one then fails with `invalid_grant`); otherwise it still
/// returns a new refresh token with each refresh, and the old one stays
/// valid.
pub fn keycloak(base_url: &str, realm: &str) -> TokenManagerBuilder {
    let base = format!("{}/realms/{realm}/protocol/openid-connect", base(base_url));
    TokenManager::builder(&format!("{base}/token")).revocation_url(&format!("{base}/revoke"))
}

/// GitHub, for GitHub App user access tokens that expire
/// (`https://github.com/login/oauth/access_token`).
///
/// Every refresh returns a new refresh token and spends the old one (keep
/// the newest). GitHub answers a dead refresh token with
/// `bad_refresh_token` inside an HTTP 200, which this preset makes
/// [`Error::InvalidGrant`](crate::Error::InvalidGrant). The client id and
/// secret go in the body, as GitHub documents; tokens from the device flow
/// are refreshed without a secret (a public client). GitHub has no RFC 7009
/// revocation endpoint. OAuth Apps (not GitHub Apps) get tokens that do not
/// expire and no refresh token. For GitHub Enterprise Server see
/// [`github_enterprise`].
pub fn github() -> TokenManagerBuilder {
    rules::github(TokenManager::builder(
        "https://github.com/login/oauth/access_token",
    ))
}

/// GitHub Enterprise Server, for its host (e.g. `github.example.com`):
/// [`github`] at `https://{host}/login/oauth/access_token`.
pub fn github_enterprise(host: &str) -> TokenManagerBuilder {
    rules::github(TokenManager::builder(&format!(
        "{}/login/oauth/access_token",
        base(host)
    )))
}

/// Slack, for apps with token rotation on
/// (`https://slack.com/api/oauth.v2.access`).
///
/// Every refresh returns a new refresh token (keep the newest) and an access
/// token that lasts 12 hours. Slack names the token `bot` or `user` in
/// `token_type`, which this preset accepts as bearer tokens, and answers a
/// dead refresh token with `{"ok": false, "error": "invalid_refresh_token"}`
/// in an HTTP 200, which this preset makes
/// [`Error::InvalidGrant`](crate::Error::InvalidGrant). Slack asks for the
/// client id and secret in HTTP Basic rather than the body (the default with
/// a secret). A bot token and a user token have refresh tokens of their
/// own: use one manager for each.
pub fn slack() -> TokenManagerBuilder {
    rules::slack(TokenManager::builder(
        "https://slack.com/api/oauth.v2.access",
    ))
}

/// Twitch (`https://id.twitch.tv/oauth2/token`).
///
/// The answer carries a refresh token, which may differ from the one sent
/// (keep the newest). Twitch answers a dead refresh token with a 400 whose
/// body is `{"status": 400, "message": "Invalid refresh token"}` (with
/// `"error": "Bad Request"`), not an OAuth error code; this preset
/// recognises that answer as [`Error::InvalidGrant`](crate::Error::InvalidGrant).
/// The client id and secret go in the body. Revocation at
/// `https://id.twitch.tv/oauth2/revoke`.
pub fn twitch() -> TokenManagerBuilder {
    rules::twitch(
        TokenManager::builder("https://id.twitch.tv/oauth2/token")
            .revocation_url("https://id.twitch.tv/oauth2/revoke"),
    )
}

/// HubSpot (`https://api.hubapi.com/oauth/v1/token`, the v1 OAuth API).
///
/// HubSpot returns the same refresh token with every refresh and an access
/// token that lasts 30 minutes. It answers a dead refresh token with a 400
/// whose body is `{"status": "BAD_REFRESH_TOKEN", "message": ...}`, without
/// an OAuth `error` code; this preset recognises that answer as
/// [`Error::InvalidGrant`](crate::Error::InvalidGrant). The client id and
/// secret go in the body.
pub fn hubspot() -> TokenManagerBuilder {
    rules::hubspot(TokenManager::builder(
        "https://api.hubapi.com/oauth/v1/token",
    ))
}

/// Zoho, for the accounts server of the user's data centre, such as
/// `accounts.zoho.com`, `accounts.zoho.eu` or `accounts.zoho.in`.
///
/// Zoho keeps the refresh token (the answer carries none) and answers a dead
/// one with the error code `invalid_code`, which this preset makes
/// [`Error::InvalidGrant`](crate::Error::InvalidGrant). The client id and
/// secret go in the body. Revocation at `/oauth/v2/token/revoke`.
pub fn zoho(accounts_server: &str) -> TokenManagerBuilder {
    let base = format!("{}/oauth/v2/token", base(accounts_server));
    prefers_post(TokenManager::builder(&base))
        .revocation_url(&format!("{base}/revoke"))
        .invalid_grant_error("invalid_code")
}

/// Fitbit (`https://api.fitbit.com/oauth2/token`).
///
/// Every refresh returns a new refresh token and spends the old one (keep
/// the newest). Fitbit reports errors in its own shape,
/// `{"errors": [{"errorType": ..., "message": ...}], "success": false}`;
/// this preset makes an answer whose `errorType` is `invalid_grant`
/// [`Error::InvalidGrant`](crate::Error::InvalidGrant). Server apps send the
/// client id and secret in HTTP Basic (the default with a secret); client
/// apps send only the client id. Revocation at
/// `https://api.fitbit.com/oauth2/revoke`.
pub fn fitbit() -> TokenManagerBuilder {
    rules::fitbit(
        TokenManager::builder("https://api.fitbit.com/oauth2/token")
            .revocation_url("https://api.fitbit.com/oauth2/revoke"),
    )
}

/// Strava (`https://www.strava.com/oauth/token`).
///
/// The answer carries a refresh token, which may differ from the one sent
/// (keep the newest); access tokens last six hours. Strava answers a dead
/// refresh token with a 400 whose `errors` name the field `refresh_token`
/// as `invalid`, without an OAuth `error` code; this preset recognises that
/// answer as [`Error::InvalidGrant`](crate::Error::InvalidGrant). The client
/// id and secret go in the body. Strava has no RFC 7009 revocation endpoint.
pub fn strava() -> TokenManagerBuilder {
    rules::strava(TokenManager::builder("https://www.strava.com/oauth/token"))
}

#[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
mod google_sa;
pub mod rules;
#[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
pub use google_sa::{google_service_account, google_service_account_file};

#[cfg(test)]
mod tests;
