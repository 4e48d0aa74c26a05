//! Authorization server metadata: RFC 8414 and OpenID Connect Discovery.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::endpoint::client_auth::ClientAuth;
use crate::error::Error;
use crate::manager::{TokenManager, TokenManagerBuilder};
use crate::origin::parse_secure_url;
use crate::util::http::{ReadError, no_redirect_client, read_capped};

/// The largest metadata document read.
const MAX_METADATA_BYTES: usize = 256 * 1024;
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// What an authorization server says about itself (the fields this crate
/// uses; RFC 8414 §2).
///
/// ```no_run
/// # async fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
/// use reqwest_oauth2_refresh::{ServerMetadata, TokenManager};
/// let http = reqwest::Client::builder()
///     .redirect(reqwest::redirect::Policy::none())
///     .build()
///     .expect("a client");
/// let metadata = ServerMetadata::fetch(&http, "https://sso.example.com/realms/demo").await?;
/// println!("token endpoint: {}", metadata.token_endpoint);
/// let manager = TokenManager::from_metadata(&metadata).client_id("my-app").build()?;
/// # let _ = manager; Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ServerMetadata {
    /// The issuer identifier; discovery checks it is exactly the one asked
    /// for (RFC 8414 §3.3).
    pub issuer: String,
    /// The token endpoint.
    pub token_endpoint: String,
    /// The RFC 7009 revocation endpoint, if the server has one.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// Client authentication methods the token endpoint accepts (absent:
    /// `client_secret_basic` only).
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// Grant types the server supports (absent: `authorization_code` and
    /// `implicit`).
    #[serde(default)]
    pub grant_types_supported: Option<Vec<String>>,
    /// Scopes the server supports, if it says.
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
}

impl ServerMetadata {
    /// Fetches the metadata of `issuer`: first RFC 8414's
    /// `/.well-known/oauth-authorization-server` (inserted between the host
    /// and the issuer's path), then OpenID Connect's
    /// `/.well-known/openid-configuration` (appended to the issuer). The
    /// issuer in the document must be identical to `issuer`, and the issuer
    /// must be https (http only for loopback). Redirects are not followed.
    pub async fn fetch(http: &reqwest::Client, issuer: &str) -> Result<Self, Error> {
        let shown = crate::origin::redacted_url(issuer);
        let url = parse_secure_url(&format!("issuer `{shown}`"), issuer)?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::Config(format!(
                "the issuer `{issuer}` must have no query or fragment"
            )));
        }
        let mut last_error = None;
        for candidate in well_known_urls(&url) {
            match fetch_document(http, &candidate).await {
                Ok(metadata) => {
                    if metadata.issuer != issuer {
                        return Err(Error::invalid_response(format!(
                            "the metadata at {candidate} is for issuer `{}`, not `{issuer}` (RFC 8414 §3.3)",
                            metadata.issuer
                        )));
                    }
                    return Ok(metadata);
                }
                Err(error) => {
                    tracing::debug!(url = %candidate, error = %error, "no metadata here");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::invalid_response("no metadata URL to try")))
    }
}

/// RFC 8414 §3.1 (path insertion), then OpenID Connect Discovery §4.
fn well_known_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let mut rfc8414 = issuer.clone();
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    let mut oidc = issuer.clone();
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    vec![rfc8414, oidc]
}

async fn fetch_document(http: &reqwest::Client, url: &Url) -> Result<ServerMetadata, Error> {
    let mut response = http
        .get(url.clone())
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .timeout(METADATA_TIMEOUT)
        .send()
        .await
        .map_err(|e| Error::Transport(Arc::new(e.without_url())))?;
    // A client that follows redirects (discover_with's) could have fetched
    // the document from anywhere: only the URL we asked counts.
    if response.url() != url {
        return Err(Error::invalid_response(format!(
            "the metadata request for {url} was redirected; redirects are refused"
        )));
    }
    let status = response.status();
    if status != StatusCode::OK {
        return Err(Error::HttpStatus { status });
    }
    let body = match read_capped(&mut response, MAX_METADATA_BYTES).await {
        Ok(body) => body,
        Err(ReadError::TooLarge) => {
            return Err(Error::invalid_response(
                "the metadata document is too large",
            ));
        }
        Err(ReadError::Transport(e)) => {
            return Err(Error::Transport(Arc::new(e.without_url())));
        }
    };
    parse_document(&body, url)
}

/// The document's fields, or why it is unusable (a pure function: the
/// property tests give it any bytes).
fn parse_document(body: &[u8], url: &Url) -> Result<ServerMetadata, Error> {
    serde_json::from_slice(body).map_err(|e| Error::InvalidResponse {
        reason: format!("the metadata at {url} is not usable"),
        source: Some(Arc::new(e)),
    })
}

/// [`TokenManager::discover`]: metadata through a client that follows no
/// redirects.
pub(crate) async fn discover(issuer: &str) -> Result<TokenManagerBuilder, Error> {
    discover_with(&no_redirect_client()?, issuer).await
}

/// [`TokenManager::discover_with`].
pub(crate) async fn discover_with(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<TokenManagerBuilder, Error> {
    let metadata = ServerMetadata::fetch(http, issuer).await?;
    Ok(builder_from(&metadata).http_client(http.clone()))
}

/// [`TokenManager::from_metadata`]: the endpoints, and a default client
/// authentication the server lists (Basic unless it lists only the body).
pub(crate) fn builder_from(metadata: &ServerMetadata) -> TokenManagerBuilder {
    let methods = metadata.token_endpoint_auth_methods_supported.as_deref();
    tracing::debug!(
        issuer = %metadata.issuer,
        supported = ?methods,
        picked = ?ClientAuth::default_for(methods),
        "client authentication for a client with a secret (client_auth(..) overrides it)"
    );
    let mut builder = TokenManager::builder(&metadata.token_endpoint)
        .default_secret_auth(ClientAuth::default_for(methods))
        .discovered(&metadata.issuer, methods);
    if let Some(revocation) = &metadata.revocation_endpoint {
        builder = builder.revocation_url(revocation);
    }
    builder
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(issuer: &str) -> Vec<String> {
        well_known_urls(&Url::parse(issuer).unwrap())
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn rfc8414_inserts_the_well_known_path_before_the_issuers_path() {
        assert_eq!(
            urls("https://example.com/issuer1"),
            [
                "https://example.com/.well-known/oauth-authorization-server/issuer1",
                "https://example.com/issuer1/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            urls("https://example.com/realms/demo/"),
            [
                "https://example.com/.well-known/oauth-authorization-server/realms/demo",
                "https://example.com/realms/demo/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            urls("https://example.com"),
            [
                "https://example.com/.well-known/oauth-authorization-server",
                "https://example.com/.well-known/openid-configuration",
            ]
        );
    }
}
