//! tonic: a synchronous interceptor over the manager's ready header, and
//! the body type the tower layer can buffer for a replay.

use std::fmt;

use http::header::AUTHORIZATION;
use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::error::Error;
use crate::manager::TokenManager;
use crate::middleware::SkipOAuth2;
use crate::tower::{Buffered, ReplayableBody};

/// A synchronous tonic [`Interceptor`] that puts the current token in each
/// call's `authorization` metadata, for those who want an interceptor
/// rather than the [`OAuth2Layer`](crate::tower::OAuth2Layer).
///
/// An interceptor cannot wait, so it never refreshes: it reads the ready
/// header ([`TokenManager::insert_authorization`]: no lock, no allocation
/// of ours) and relies on the manager's background refresh to keep it
/// fresh, which is why [`new`](Self::new) wants a manager built with
/// [`background_refresh(true)`](crate::TokenManagerBuilder::background_refresh).
/// A call made when no valid token is at hand (none loaded yet, or expired
/// with the refresh not done) fails at once with
/// `Status::unauthenticated`, whose message says which; it also starts the
/// refresh, so a later call can succeed. Load the token once before the
/// first call (`manager.access_token().await?`), and, since nobody awaits
/// the refreshes it starts, call
/// [`manager.shutdown().await`](crate::TokenManager::shutdown) before the
/// program exits.
///
/// Compared with the layer: no replay, and no reaction to an
/// `UNAUTHENTICATED` answer (an interceptor never sees the answer), and no
/// origin check (it cannot see where the channel goes: give it only to
/// channels of endpoints the token is meant for). Like the layer, it leaves
/// alone calls that carry their own `authorization` metadata or the
/// [`SkipOAuth2`] extension.
///
/// ```no_run
/// # async fn run(channel: tonic::transport::Channel) -> Result<(), Box<dyn std::error::Error>> {
/// use reqwest_oauth2_refresh::{OAuth2Interceptor, TokenManager, TokenSet};
/// use tonic::service::interceptor::InterceptedService;
///
/// let manager = TokenManager::builder("https://auth.example.com/oauth/token")
///     .client_id("my-app")
///     .initial_tokens(TokenSet::new("access").with_refresh_token("refresh"))
///     .background_refresh(true)
///     .build()?;
/// manager.access_token().await?; // loaded before the first call
/// let channel = InterceptedService::new(channel, OAuth2Interceptor::new(manager.clone())?);
/// // e.g. HealthClient::new(channel), or Client::with_interceptor(channel, interceptor)
/// # let _ = channel;
/// manager.shutdown().await?; // before the program exits
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OAuth2Interceptor {
    manager: TokenManager,
}

impl OAuth2Interceptor {
    /// An interceptor that takes its tokens from `manager`, which must
    /// refresh in the background ([`Error::Config`] otherwise: an
    /// interceptor would send an expired token's calls nowhere).
    pub fn new(manager: TokenManager) -> Result<Self, Error> {
        if !manager.refreshes_in_background() {
            return Err(Error::Config(
                "OAuth2Interceptor cannot wait for a refresh: build the manager with \
                 background_refresh(true)"
                    .into(),
            ));
        }
        Ok(Self { manager })
    }

    /// The manager this interceptor takes its tokens from.
    pub fn manager(&self) -> &TokenManager {
        &self.manager
    }
}

impl Interceptor for OAuth2Interceptor {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if request.extensions().get::<SkipOAuth2>().is_some()
            || request.metadata().contains_key(AUTHORIZATION.as_str())
        {
            return Ok(request);
        }
        // MetadataMap wraps a HeaderMap: moving it out and back copies
        // nothing.
        let (metadata, extensions, message) = request.into_parts();
        let mut headers = metadata.into_headers();
        if !self.manager.insert_authorization(&mut headers) {
            return Err(Status::unauthenticated(self.manager.missing_token_reason()));
        }
        let metadata = MetadataMap::from_headers(headers);
        Ok(Request::from_parts(metadata, extensions, message))
    }
}

impl fmt::Debug for OAuth2Interceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Interceptor")
            .field("manager", &self.manager)
            .finish()
    }
}

/// tonic's request body can carry a read-ahead body: the layer's
/// [`BufferBody`](crate::tower::BufferBody) replays unary tonic calls.
impl ReplayableBody for tonic::body::Body {
    fn from_buffered(body: Buffered<Self>) -> Self {
        tonic::body::Body::new(body)
    }
}
