//! The reqwest middleware: glue between `reqwest-middleware` and the
//! transport-agnostic [`auth_flow`](crate::auth_flow), which decides who gets
//! the token, what a 401 means and when to replay.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use tracing::Instrument as _;

use crate::auth_flow::{AfterResponse, AuthFlow, OriginPolicy};
use crate::dpop::ResourceProof;
use crate::error::Error;
use crate::manager::TokenManager;
use crate::manager::{Applied, Lease};
use crate::telemetry;

/// Sends a request without the token: put it in the request's extensions.
///
/// ```no_run
/// # async fn run(client: reqwest_middleware::ClientWithMiddleware) -> reqwest_middleware::Result<()> {
/// use reqwest_oauth2_refresh::SkipOAuth2;
/// client
///     .get("https://api.example.com/public/health")
///     .with_extension(SkipOAuth2)
///     .send()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SkipOAuth2;

/// Marks a call whose token was already refreshed after a 401, so that an
/// outer layer that runs the call again (reqwest-retry) does not cause a
/// second refresh and replay.
#[derive(Debug, Clone, Copy)]
struct RefreshedAfter401;

/// Adds `Authorization: Bearer <token>` from a [`TokenManager`] to requests
/// for allowed origins, and recovers from an expired or revoked token.
///
/// For each request:
/// - it passes through untouched (no token, no refresh) when its origin is
///   not allowed, when it already has an `Authorization` header, or when it
///   carries the [`SkipOAuth2`] extension;
/// - otherwise it gets a valid token (refreshed first if within the leeway of
///   expiry), marked sensitive;
/// - on a 401 that a new token may fix (no `WWW-Authenticate`, or a Bearer
///   challenge with `error="invalid_token"` or no error), the token is
///   refreshed, single flight, and the request is replayed once. A 401 for a
///   token that has been replaced already is replayed with the new one, with
///   no second refresh. A 401 on the replay is returned as is, unless a peer
///   sharing the store superseded the token while the replay was in flight:
///   then it is sent once more with the peer's token (adopted, not
///   refreshed). A 401 from a redirect target never refreshes, and a token
///   the API rejects right after it was issued is not refreshed again for a
///   while ([`rejected_token_min_age`](crate::TokenManagerBuilder::rejected_token_min_age)).
///
/// Replaying needs a copy of the request made before sending it. A request
/// with a streaming body cannot be copied: it is sent all the same, and a 401
/// for it is returned as is (the token is still refreshed for the next call
/// only if another request hits the 401).
///
/// Errors of ours (a failed refresh) reach the caller as
/// [`reqwest_middleware::Error::Middleware`]; [`Error::find_in`] finds them,
/// also behind other middleware's wrappers.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use reqwest_oauth2_refresh::{OAuth2Middleware, TokenManager, TokenSet};
///
/// let manager = TokenManager::builder("https://auth.example.com/oauth/token")
///     .client_id("my-app")
///     .initial_tokens(TokenSet::new("access").with_refresh_token("refresh"))
///     .build()?;
/// let auth = OAuth2Middleware::builder(manager)
///     .allow_origin("https://api.example.com")
///     .build()?;
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(auth)
///     .build();
/// let response = client.get("https://api.example.com/me").send().await?;
/// # let _ = response; Ok(()) }
/// ```
#[derive(Clone)]
pub struct OAuth2Middleware {
    flow: AuthFlow,
}

impl OAuth2Middleware {
    /// Starts building a middleware that takes its tokens from `manager`.
    pub fn builder(manager: TokenManager) -> OAuth2MiddlewareBuilder {
        OAuth2MiddlewareBuilder {
            manager,
            origins: Vec::new(),
            replay: true,
        }
    }

    /// The manager this middleware takes its tokens from.
    pub fn manager(&self) -> &TokenManager {
        self.flow.manager()
    }
}

/// Written out rather than through `async_trait`, so that the future boxed
/// per request is the one path it takes (an async body that awaits another
/// async fn keeps its own copy of the arguments beside the callee's).
impl Middleware for OAuth2Middleware {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        request: Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> HandleFuture<'async_trait>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        let opted_out = extensions.get::<SkipOAuth2>().is_some();
        if !self
            .flow
            .applies(request.url(), request.headers(), opted_out)
        {
            return Box::pin(next.run(request, extensions));
        }
        match self.flow.fresh_lease() {
            Some(lease) => Box::pin(self.send_leased(lease, request, extensions, next)),
            None => Box::pin(self.send_after_lease(request, extensions, next)),
        }
    }
}

/// What [`Middleware::handle`] returns.
type HandleFuture<'a> =
    Pin<Box<dyn Future<Output = reqwest_middleware::Result<Response>> + Send + 'a>>;

impl OAuth2Middleware {
    /// The slow path: a token first (loading, or refreshing it if it has
    /// expired); should this request start a background refresh, its
    /// response is handed back once that refresh has ended.
    async fn send_after_lease(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let (lease, started) = self.flow.lease().await.map_err(middleware_error)?;
        let response = self.send_leased(lease, request, extensions, next).await;
        if let Some(started) = started {
            started.finish().await;
        }
        response
    }

    /// Sends with `lease`'s token, and after a refreshable 401 refreshes
    /// and replays.
    async fn send_leased(
        &self,
        lease: Lease,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        // Copy before the header goes in: the copy gets the new token on
        // replay anyway, and a smaller header map clones more cheaply.
        let already_refreshed = extensions.get::<RefreshedAfter401>().is_some();
        let plan = self
            .flow
            .replay_plan(already_refreshed, || request.try_clone());
        let dpop = lease.dpop().cloned();
        let sent = lease.apply(request.headers_mut());
        let response = match dpop {
            None => next.clone().run(request, extensions).await?,
            Some(dpop) => {
                Box::pin(send_with_proof(request, &dpop, extensions, next.clone())).await?
            }
        };
        let replay = match self.flow.after_response(
            response.status(),
            response.headers(),
            response.url(),
            plan,
            Request::url,
        ) {
            AfterResponse::Return => return Ok(response),
            AfterResponse::RefreshOnly => None,
            AfterResponse::RefreshAndReplay(copy) => Some(copy),
        };
        // Boxed: the cold path's state stays out of every request's future.
        let recover = self.recover(sent, response, replay, extensions, next);
        Box::pin(recover.instrument(telemetry::replay_span("reqwest"))).await
    }

    /// After a refreshable 401: one refresh (shared with every caller that
    /// saw the same token), one replay, and, only when the replay meets a 401
    /// because its token was superseded in flight, one send with the newer
    /// token (adopted, not refreshed).
    async fn recover(
        &self,
        sent: Applied,
        response: Response,
        replay: Option<Request>,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        extensions.insert(RefreshedAfter401);
        let renewed = self
            .flow
            .refresh_after_rejection(sent, replay.is_some())
            .await
            .map_err(middleware_error)?;
        // replay_on_401(false): the token is renewed for the requests that
        // follow, and this 401 goes back to the caller; so it does when the
        // rejected token was too young to refresh again.
        let (Some(lease), Some(mut replay)) = (renewed, replay) else {
            return Ok(response);
        };
        drop(response);
        let follow = replay.try_clone();
        let dpop = lease.dpop().cloned();
        let sent = lease.apply(replay.headers_mut());
        let response = send(replay, dpop.as_deref(), extensions, next.clone()).await?;
        let (status, answered_by) = (response.status(), response.url());
        telemetry::replayed("reqwest", status.as_u16());
        let again = self.flow.after_replay(
            status,
            response.headers(),
            answered_by,
            follow,
            Request::url,
        );
        let Some(mut again) = again else {
            return Ok(response);
        };
        let Some(lease) = self.flow.newer_after_rejection(sent).await else {
            self.flow.replay_rejected(sent);
            return Ok(response);
        };
        drop(response);
        let dpop = lease.dpop().cloned();
        lease.apply(again.headers_mut());
        tracing::debug!("the token was superseded in flight; sending once more with the newer one");
        send(again, dpop.as_deref(), extensions, next).await
    }
}

/// Sends `request`, with a DPoP proof when its token needs one.
async fn send(
    request: Request,
    dpop: Option<&ResourceProof>,
    extensions: &mut Extensions,
    next: Next<'_>,
) -> reqwest_middleware::Result<Response> {
    match dpop {
        None => next.run(request, extensions).await,
        Some(dpop) => send_with_proof(request, dpop, extensions, next).await,
    }
}

/// Sends `request` with a new DPoP proof, learning the API's nonce from the
/// answer; when the API asks for a nonce (a 401 whose `DPoP` challenge says
/// `use_dpop_nonce`, RFC 9449 §9, with a `DPoP-Nonce` other than the one
/// this proof carried), once more at once
/// with a new proof. That retry is not the 401 replay and refreshes
/// nothing. A 401 from another origin (a redirect target) earns no retry:
/// its nonce is not the API's.
async fn send_with_proof(
    mut request: Request,
    dpop: &ResourceProof,
    extensions: &mut Extensions,
    next: Next<'_>,
) -> reqwest_middleware::Result<Response> {
    // One copy: the retry's. The second answer is returned whatever it is.
    let mut again = request.try_clone();
    let (method, url) = (request.method().clone(), request.url().clone());
    loop {
        let sent = dpop
            .attach(&method, &url, request.headers_mut())
            .await
            .map_err(middleware_error)?;
        let response = next.clone().run(request, extensions).await?;
        let (status, answered_by) = (response.status(), response.url());
        let retry = dpop.wants_new_nonce(
            &url,
            sent.as_deref(),
            status,
            answered_by,
            response.headers(),
        );
        // One retry per request bounds a server that keeps asking.
        match (retry, again.take()) {
            (true, Some(copy)) => {
                telemetry::dpop_nonce_retry("api");
                request = copy;
            }
            _ => return Ok(response),
        }
    }
}

/// Our error as a `reqwest-middleware` error. The context (our own message
/// again) keeps it findable through wrappers whose `source()` skips a
/// transparent layer, as reqwest-retry's `RetryError` does; a direct
/// `downcast_ref::<Error>()` still finds it too.
fn middleware_error(error: Error) -> reqwest_middleware::Error {
    let context = error.to_string();
    reqwest_middleware::Error::Middleware(anyhow::Error::new(error).context(context))
}

impl fmt::Debug for OAuth2Middleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Middleware")
            .field("manager", self.flow.manager())
            .field("origins", self.flow.origins())
            .field("replay", &self.flow.replays())
            .finish()
    }
}

/// Configures an [`OAuth2Middleware`]; start with
/// [`OAuth2Middleware::builder`].
#[derive(Debug)]
pub struct OAuth2MiddlewareBuilder {
    manager: TokenManager,
    origins: Vec<String>,
    replay: bool,
}

impl OAuth2MiddlewareBuilder {
    /// Allows sending the token to `origin` (`https://host[:port]`; http only
    /// for loopback hosts). Scheme, host and port must match a request's URL
    /// exactly; subdomains are not included. Call it once per origin.
    pub fn allow_origin(mut self, origin: &str) -> Self {
        self.origins.push(origin.to_owned());
        self
    }

    /// Whether a request that met a refreshable 401 is replayed with the new
    /// token (default `true`). Replaying needs a copy of every request made
    /// before it is sent (a few allocations: its URL, headers and
    /// extensions). With `false` nothing is copied; a refreshable 401 still
    /// renews the token, for the requests that follow, and is returned to
    /// the caller.
    pub fn replay_on_401(mut self, replay: bool) -> Self {
        self.replay = replay;
        self
    }

    /// Checks the origins and builds the middleware. At least one origin is
    /// required: a token with nowhere to go is a configuration mistake.
    pub fn build(self) -> Result<OAuth2Middleware, Error> {
        let origins = OriginPolicy::parse(&self.origins)?;
        Ok(OAuth2Middleware {
            flow: AuthFlow::new(self.manager, origins, self.replay),
        })
    }
}
