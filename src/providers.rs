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
//!     .tokens(TokenSet::new("access").with_refresh_token("refresh"))
//!     .build()?;
//! # let _ = manager; Ok(()) }
//! ```
//!
//! | provider | rotates refresh tokens | needs `scope` on refresh | revocation |
//! |---|---|---|---|
//! | Google | no (the refresh token stays) | no | yes |
//! | Auth0 | when rotation is on for the app (reuse detection revokes the family) | no | yes |
//! | Microsoft Entra ID | yes, on every refresh | yes, for the resource wanted | no RFC 7009 endpoint |
//! | Amazon Cognito | when rotation is on for the app client | no | yes |
//! | Okta | when rotation is on (with a grace period for reuse) | no | yes |
//! | Keycloak | when "Revoke Refresh Token" is on for the realm | no | yes |

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
    prefers_post(
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
/// endpoint. Confidential clients send the secret in the body.
pub fn entra(tenant: &str) -> TokenManagerBuilder {
    prefers_post(TokenManager::builder(&format!(
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
/// treats reuse as theft.
pub fn okta(domain: &str, authorization_server: &str) -> TokenManagerBuilder {
    let base = format!("{}/oauth2/{authorization_server}/v1", base(domain));
    TokenManager::builder(&format!("{base}/token")).revocation_url(&format!("{base}/revoke"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn built(builder: TokenManagerBuilder) -> TokenManager {
        builder.client_id("id").client_secret("s").build().unwrap()
    }

    #[test]
    fn presets_build_the_documented_endpoints() {
        for (builder, url) in [
            (google(), "https://oauth2.googleapis.com/token"),
            (
                auth0("t.eu.auth0.com/"),
                "https://t.eu.auth0.com/oauth/token",
            ),
            (
                entra("contoso.onmicrosoft.com"),
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
            ),
            (
                cognito("https://auth.example.com"),
                "https://auth.example.com/oauth2/token",
            ),
            (
                okta("o.okta.com", "default"),
                "https://o.okta.com/oauth2/default/v1/token",
            ),
            (
                keycloak("https://sso.example.com", "demo"),
                "https://sso.example.com/realms/demo/protocol/openid-connect/token",
            ),
        ] {
            assert_eq!(built(builder).token_url().as_str(), url);
        }
    }

    #[test]
    fn presets_pick_the_documented_client_authentication() {
        assert_eq!(built(google()).client_auth(), ClientAuth::SecretPost);
        assert_eq!(
            built(auth0("t.auth0.com")).client_auth(),
            ClientAuth::SecretPost
        );
        assert_eq!(built(entra("common")).client_auth(), ClientAuth::SecretPost);
        assert_eq!(
            built(cognito("c.example.com")).client_auth(),
            ClientAuth::SecretBasic
        );
        let public = google().client_id("id").build().unwrap();
        assert_eq!(public.client_auth(), ClientAuth::None);
    }
}
