//! Building a manager from what the authorization server publishes about
//! itself: thin entry points over [`crate::discovery`].

use super::{TokenManager, TokenManagerBuilder};
use crate::discovery::{self, ServerMetadata};
use crate::error::Error;

impl TokenManager {
    /// A builder filled in from the issuer's metadata (see
    /// [`ServerMetadata::fetch`]): the token endpoint, the revocation
    /// endpoint, and a default client authentication method the server
    /// supports. Add the client and the tokens as usual.
    ///
    /// The default method, for a client with a secret: `client_secret_basic`
    /// (RFC 6749 §2.3.1 makes servers support it) unless the metadata lists
    /// `token_endpoint_auth_methods_supported` without it and with
    /// `client_secret_post`; a client without a secret is public. A server
    /// that lists several methods still accepts only the one the client was
    /// registered with: say it with
    /// [`client_auth`](TokenManagerBuilder::client_auth), which always wins.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
    /// use reqwest_oauth2_refresh::{TokenManager, TokenSet};
    /// let manager = TokenManager::discover("https://accounts.google.com")
    ///     .await?
    ///     .client_id("my-app")
    ///     .client_secret("…")
    ///     .initial_tokens(TokenSet::new("access").with_refresh_token("refresh"))
    ///     .build()?;
    /// # let _ = manager; Ok(()) }
    /// ```
    pub async fn discover(issuer: &str) -> Result<TokenManagerBuilder, Error> {
        discovery::discover(issuer).await
    }

    /// [`TokenManager::discover`] with your HTTP client (which is also used
    /// for the token endpoint). Give it a client that follows no redirects:
    /// a redirect would carry the refresh token and client secret to another
    /// host. Metadata or token answers that come from a URL other than the
    /// one asked are refused, whatever the client does.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
    /// use reqwest_oauth2_refresh::TokenManager;
    /// let http = reqwest::Client::builder()
    ///     .redirect(reqwest::redirect::Policy::none())
    ///     .user_agent("my-sdk/1.0")
    ///     .build()
    ///     .expect("a client");
    /// let manager = TokenManager::discover_with(&http, "https://accounts.google.com")
    ///     .await?
    ///     .client_id("my-app")
    ///     .build()?;
    /// # let _ = manager; Ok(()) }
    /// ```
    pub async fn discover_with(
        http: &reqwest::Client,
        issuer: &str,
    ) -> Result<TokenManagerBuilder, Error> {
        discovery::discover_with(http, issuer).await
    }

    /// A builder from metadata you fetched yourself (see
    /// [`ServerMetadata`] for an example), with the same defaults as
    /// [`discover`](Self::discover).
    pub fn from_metadata(metadata: &ServerMetadata) -> TokenManagerBuilder {
        discovery::builder_from(metadata)
    }
}
