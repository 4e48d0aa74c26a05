//! The token for any `tower::Service<http::Request<B>>` (a tonic `Channel`,
//! hyper-util's client), feature `tower`: [`OAuth2Layer`], and the
//! [`Replay`] policies that say how a rejected request is sent again.
//!
//! Glue, like the reqwest middleware, over the same transport-agnostic flow
//! (who gets the token, what a rejection means, when to replay) and the
//! same [`TokenManager`].

mod dpop;
mod future;
mod replay;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::{Request, Response, Uri};
use tower_layer::Layer;
use tower_service::Service;

use future::Replayable;
pub use future::ResponseFuture;
pub use replay::{BufferBody, Buffered, CloneBody, NoReplay, Replay, ReplayableBody};

use crate::auth_flow::{AuthFlow, Destination, OriginPolicy};
use crate::error::{BoxError, Error};
use crate::manager::{Applied, Lease, TokenManager};
use crate::middleware::SkipOAuth2;

/// A [`tower_layer::Layer`] that adds `Authorization: Bearer <token>` from a
/// [`TokenManager`] to the requests of any
/// `Service<http::Request<B>, Response = http::Response<_>>`: a hyper-util
/// client, a tonic `Channel`, anything in between. It follows the rules of
/// [`OAuth2Middleware`](crate::OAuth2Middleware), with the same manager:
/// one single flight and one store for every client of a program.
///
/// For each request:
/// - it passes through untouched (no token, no refresh) when it carries
///   [`SkipOAuth2`] in its extensions (for tonic:
///   `request.extensions_mut().insert(SkipOAuth2)`), when it already has an
///   `Authorization` header (the caller's wins), or when it does not go to
///   an allowed origin (below);
/// - otherwise it gets the token: with a fresh one, one atomic load and a
///   header clone, no lock and no allocation of ours; with a stale or
///   missing one, after an awaited refresh (single flight);
/// - when the answer rejects the token (HTTP 401, or a gRPC
///   `UNAUTHENTICATED`, status 16, in the headers of a trailers-only
///   response) and its `WWW-Authenticate`, if any, says a new token may
///   help, the token is refreshed once for every caller that saw it
///   rejected, before the answer is handed back. `PERMISSION_DENIED` (7),
///   403 and `insufficient_scope` never refresh.
/// - the rejected request is sent again with the new token only if a
///   [`Replay`] policy made a copy of it ([`OAuth2LayerBuilder::replay`];
///   none by default), and only once: the answer to the replay is returned
///   as it is.
///
/// # Where requests go: `allow_origin` and `channel_origin`
///
/// A request whose URI has a scheme and a host (what hyper-util's client
/// needs) gets the token only if they match an origin given to
/// [`allow_origin`](OAuth2LayerBuilder::allow_origin) exactly (scheme,
/// host, port; ASCII case aside, the host must be written as the origin's
/// URL prints it).
///
/// tonic's generated clients hand their channel URIs with a path only
/// (`/grpc.health.v1.Health/Check`); the `Channel` puts its endpoint's
/// origin in front of every request, whatever the URI says. From a
/// path-only URI the layer cannot see where the request goes, so by default
/// it sends no token with one (and logs a warning, once per layer). Tell it
/// what the wrapped service is bound to with
/// [`channel_origin`](OAuth2LayerBuilder::channel_origin): path-only
/// requests then go there, and that origin is allowed. Give it the origin
/// of the endpoint the channel connects to: the layer cannot check it.
///
/// # Errors
///
/// The service's error is a [`BoxError`]: the inner service's, or ours
/// (a failed refresh), which downcasts to [`Error`]. tonic turns it into a
/// `Status` (`Unknown`) whose `source()` is that error.
///
/// # Example: a tonic channel
///
/// ```no_run
/// # #[cfg(feature = "tonic")]
/// # async fn run(manager: reqwest_oauth2_refresh::TokenManager, channel: tonic::transport::Channel) -> Result<(), reqwest_oauth2_refresh::Error> {
/// use reqwest_oauth2_refresh::tower::{BufferBody, OAuth2Layer};
/// use tower_layer::Layer;
///
/// let auth = OAuth2Layer::builder(manager)
///     .channel_origin("https://pubsub.googleapis.com")
///     // Replay a rejected call whose request body was complete and at
///     // most 64 KiB when sent (unary calls; never a request stream).
///     .replay(BufferBody::up_to(64 * 1024))
///     .build()?;
/// let channel = auth.layer(channel); // give this to a generated client
/// # let _ = channel; Ok(()) }
/// ```
pub struct OAuth2Layer<R = NoReplay> {
    shared: Arc<Shared>,
    replay: R,
}

/// What every service of one layer shares.
struct Shared {
    flow: AuthFlow,
    /// Whether a request with a path-only URI goes to the (allowed) origin
    /// given to `channel_origin`.
    channel: bool,
    /// Whether the "path-only URI, no channel origin" warning was logged.
    warned_path_only: AtomicBool,
    /// The channel's origin, for the URL a DPoP proof names.
    channel_origin: Option<url::Url>,
}

impl OAuth2Layer {
    /// Starts building a layer that takes its tokens from `manager`.
    pub fn builder(manager: TokenManager) -> OAuth2LayerBuilder {
        OAuth2LayerBuilder {
            manager,
            origins: Vec::new(),
            channel: None,
            replay: NoReplay,
        }
    }
}

impl<R> OAuth2Layer<R> {
    /// The manager this layer takes its tokens from.
    pub fn manager(&self) -> &TokenManager {
        self.shared.flow.manager()
    }
}

impl<R: Clone> Clone for OAuth2Layer<R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            replay: self.replay.clone(),
        }
    }
}

impl<S, R: Clone> Layer<S> for OAuth2Layer<R> {
    type Service = OAuth2Service<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        OAuth2Service {
            inner,
            shared: self.shared.clone(),
            replay: self.replay.clone(),
        }
    }
}

impl<R: fmt::Debug> fmt::Debug for OAuth2Layer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Layer")
            .field("manager", self.shared.flow.manager())
            .field("origins", self.shared.flow.origins())
            .field("channel_origin", &self.shared.channel)
            .field("replay", &self.replay)
            .finish()
    }
}

/// The service [`OAuth2Layer`] wraps around `S`; see the layer for what it
/// does.
pub struct OAuth2Service<S, R = NoReplay> {
    inner: S,
    shared: Arc<Shared>,
    replay: R,
}

impl<S: Clone, R: Clone> Clone for OAuth2Service<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            replay: self.replay.clone(),
        }
    }
}

impl<S: fmt::Debug, R: fmt::Debug> fmt::Debug for OAuth2Service<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Service")
            .field("inner", &self.inner)
            .field("manager", self.shared.flow.manager())
            .field("origins", self.shared.flow.origins())
            .field("replay", &self.replay)
            .finish()
    }
}

/// Where a tower request goes: its URI's origin, or, for a path-only URI,
/// the channel origin if one was given.
struct Target<'a> {
    uri: &'a Uri,
    shared: &'a Shared,
}

impl Destination for Target<'_> {
    #[inline]
    fn allowed_by(&self, origins: &OriginPolicy) -> bool {
        if self.uri.authority().is_some() {
            return self.uri.allowed_by(origins);
        }
        if !self.shared.channel && !self.shared.warned_path_only.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "a request with a path-only URI (a tonic channel's) gets no token: \
                 give the layer the channel's origin with channel_origin"
            );
        }
        self.shared.channel
    }
}

impl<S, R, B, RB> Service<Request<B>> for OAuth2Service<S, R>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    R: Replay<B>,
    B: Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = &self.shared;
        let opted_out = request.extensions().get::<SkipOAuth2>().is_some();
        let target = Target {
            uri: request.uri(),
            shared,
        };
        if !shared.flow.applies(&target, request.headers(), opted_out) {
            return ResponseFuture::passthrough(self.inner.call(request));
        }
        match shared.flow.fresh_lease() {
            Some(lease) if lease.dpop().is_none() => {
                send(shared, &mut self.inner, &self.replay, request, lease)
            }
            fresh => {
                // The slow path awaits a refresh (or a DPoP proof) before
                // sending: it takes the service that poll_ready made ready
                // and leaves a clone.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::cold(Box::pin(lease_then_send(
                    shared.clone(),
                    ready,
                    self.replay.clone(),
                    request,
                    fresh,
                )))
            }
        }
    }
}

/// Attaches the token and sends: the copy for a replay (if the policy makes
/// one) is taken first, without the token.
fn send<S, R, B, RB>(
    shared: &Arc<Shared>,
    inner: &mut S,
    replay: &R,
    mut request: Request<B>,
    lease: Lease,
) -> ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    R: Replay<B>,
{
    let plan = shared.flow.renewing_plan(|| {
        let copy = replay.copy(&mut request)?;
        Some(Box::new((inner.clone(), copy)))
    });
    let applied = attach(lease, &mut request);
    ResponseFuture::sent(inner.call(request), shared.clone(), applied, plan)
}

/// The slow path: a token first (loading or refreshing) unless `fresh` is
/// one, then as [`send`], or with a proof for a DPoP token.
async fn lease_then_send<S, R, B, RB>(
    shared: Arc<Shared>,
    mut inner: S,
    replay: R,
    request: Request<B>,
    fresh: Option<Lease>,
) -> Result<Response<RB>, BoxError>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    R: Replay<B>,
    B: Send + 'static,
    RB: Send + 'static,
{
    let (lease, started) = match fresh {
        Some(lease) => (lease, None),
        None => shared.flow.lease().await?,
    };
    let response = match lease.dpop().cloned() {
        None => send(&shared, &mut inner, &replay, request, lease).await,
        Some(proof) => dpop::send(shared, inner, replay, request, lease, proof).await,
    };
    // The request that started a background refresh answers once it has
    // ended (see `RefreshInFlight`).
    if let Some(started) = started {
        started.finish().await;
    }
    response
}

/// Puts the lease's token on `request`: the one place where a token goes
/// onto a tower request, first send and replay alike (a DPoP call adds its
/// proof after it: see `dpop::attach_with_proof`).
#[inline]
fn attach<B>(lease: Lease, request: &mut Request<B>) -> Applied {
    lease.apply(request.headers_mut())
}

/// Configures an [`OAuth2Layer`]; start with [`OAuth2Layer::builder`].
#[derive(Debug)]
pub struct OAuth2LayerBuilder<R = NoReplay> {
    manager: TokenManager,
    origins: Vec<String>,
    channel: Option<String>,
    replay: R,
}

impl<R> OAuth2LayerBuilder<R> {
    /// Allows sending the token to `origin` (`https://host[:port]`; http
    /// only for loopback hosts), for requests whose URI names it: scheme,
    /// host and port must match exactly; subdomains are not included. Call
    /// it once per origin.
    pub fn allow_origin(mut self, origin: &str) -> Self {
        self.origins.push(origin.to_owned());
        self
    }

    /// The origin the wrapped service sends every request to, whatever its
    /// URI says: a tonic `Channel`'s endpoint (`https://host[:port]`; http
    /// only for loopback hosts). Requests with a path-only URI, which is
    /// what tonic's generated clients make, are taken to go there and get
    /// the token; the origin is allowed as by
    /// [`allow_origin`](Self::allow_origin). Without it, path-only requests
    /// get no token.
    pub fn channel_origin(mut self, origin: &str) -> Self {
        self.channel = Some(origin.to_owned());
        self
    }

    /// How a request is kept for its one replay after the API rejects its
    /// token: [`NoReplay`] (the default: the rejection renews the token for
    /// the calls that follow and is handed back), [`CloneBody`] (for
    /// `Clone` bodies such as `http_body_util::Full<Bytes>`),
    /// [`BufferBody`] (reads a request body that is complete when sent, up
    /// to a size, and replays it; for tonic), or a [`Replay`] of your own.
    pub fn replay<P>(self, policy: P) -> OAuth2LayerBuilder<P> {
        OAuth2LayerBuilder {
            manager: self.manager,
            origins: self.origins,
            channel: self.channel,
            replay: policy,
        }
    }

    /// Checks the origins and builds the layer. At least one origin
    /// (allowed or channel) is required: a token with nowhere to go is a
    /// configuration mistake.
    pub fn build(self) -> Result<OAuth2Layer<R>, Error> {
        let channel = self.channel.is_some();
        let channel_origin = self
            .channel
            .as_deref()
            .and_then(|c| url::Url::parse(c).ok());
        let mut origins = self.origins;
        origins.extend(self.channel);
        let origins = OriginPolicy::parse(&origins)?;
        Ok(OAuth2Layer {
            shared: Arc::new(Shared {
                flow: AuthFlow::new(self.manager, origins, true),
                channel,
                warned_path_only: AtomicBool::new(false),
                channel_origin,
            }),
            replay: self.replay,
        })
    }
}
