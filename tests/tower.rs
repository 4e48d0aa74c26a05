//! The tower layer and the tonic interceptor against a real tonic server on
//! loopback: the health service (no protoc), a client-streaming service
//! written by hand, and in front of both a check of `authorization` that
//! answers `UNAUTHENTICATED` (trailers-only) for tokens it was told are
//! revoked.
#![cfg(feature = "tonic")]

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use common::gate::{Answer, Gate, GatedTokenEndpoint};
use common::{TestClock, builder, builder_at, token_body, token_endpoint_issues, until_published};
use futures_util::future::join_all;
use futures_util::stream;
use reqwest_oauth2_refresh::tower::{BufferBody, NoReplay, OAuth2Layer, OAuth2Service};
use reqwest_oauth2_refresh::{
    Error, OAuth2Interceptor, OAuth2Middleware, SkipOAuth2, TokenManager, TokenManagerBuilder,
    TokenSet,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_prost::ProstCodec;
use tower::{Layer, Service};
use wiremock::matchers::{header, path};
use wiremock::{Mock, MockServer, Request as WireRequest, Respond, ResponseTemplate};

const HERD: usize = 200;
const COLLECT: &str = "/test.Collector/Collect";
const CHECK: &str = "/grpc.health.v1.Health/Check";
/// Every wait on the server's counters is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The gRPC API: what it accepts, and what it has seen.

/// How the API answers a token.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rule {
    Accept,
    /// `UNAUTHENTICATED`, with no challenge: a new token may help.
    Revoked,
    /// `PERMISSION_DENIED`: the token is fine, the caller may not.
    Forbidden,
    /// `UNAUTHENTICATED` with `www-authenticate: Bearer error="insufficient_scope"`.
    InsufficientScope,
}

#[derive(Default)]
struct ApiState {
    /// By `authorization` value (`Bearer …`); anything else is refused.
    rules: Mutex<HashMap<String, Rule>>,
    /// Each call: its path and its `authorization`, in order of arrival.
    seen: Mutex<Vec<(String, Option<String>)>>,
    /// How many calls were refused.
    refused: watch::Sender<usize>,
}

impl ApiState {
    fn rule(&self, token: &str, rule: Rule) {
        let mut rules = self.rules.lock().unwrap();
        rules.insert(format!("Bearer {token}"), rule);
    }

    fn check(&self, path: &str, authorization: Option<String>) -> Result<(), Status> {
        self.seen
            .lock()
            .unwrap()
            .push((path.to_owned(), authorization.clone()));
        let rule = authorization.and_then(|a| self.rules.lock().unwrap().get(&a).copied());
        let refusal = match rule {
            Some(Rule::Accept) => return Ok(()),
            Some(Rule::Revoked) => Status::unauthenticated("token revoked"),
            Some(Rule::Forbidden) => Status::permission_denied("not for you"),
            Some(Rule::InsufficientScope) => {
                let mut status = Status::unauthenticated("insufficient scope");
                status.metadata_mut().insert(
                    "www-authenticate",
                    r#"Bearer error="insufficient_scope", scope="admin""#
                        .parse()
                        .unwrap(),
                );
                status
            }
            None => Status::unauthenticated("no token"),
        };
        self.refused.send_modify(|n| *n += 1);
        Err(refusal)
    }

    /// The `authorization` of each call to `path`, in order.
    fn seen(&self, path: &str) -> Vec<Option<String>> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, a)| a.clone())
            .collect()
    }

    fn count(&self, path: &str, authorization: &str) -> usize {
        self.seen(path)
            .iter()
            .filter(|a| a.as_deref() == Some(authorization))
            .count()
    }

    /// Waits (bounded) until `n` calls have been refused.
    async fn refused_at_least(&self, n: usize) {
        let mut refused = self.refused.subscribe();
        tokio::time::timeout(WAIT, refused.wait_for(|count| *count >= n))
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} calls refused within {WAIT:?}"))
            .unwrap();
    }
}

/// The check in front of every service: what the API says to the token,
/// before the request's body is read (a trailers-only answer).
#[derive(Clone)]
struct CheckLayer(Arc<ApiState>);

impl<S> Layer<S> for CheckLayer {
    type Service = Check<S>;
    fn layer(&self, inner: S) -> Check<S> {
        Check {
            inner,
            state: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct Check<S> {
    inner: S,
    state: Arc<ApiState>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> Service<http::Request<Body>> for Check<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let authorization = request
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        match self.state.check(request.uri().path(), authorization) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

/// `test.Collector/Collect`: a client-streaming call that answers how many
/// messages it received (in `status`), written without protoc.
#[derive(Clone)]
struct Collector;

impl Service<http::Request<Body>> for Collector {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            let codec = ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(grpc.client_streaming(Collect, request).await)
        })
    }
}

struct Collect;

impl tonic::server::ClientStreamingService<HealthCheckRequest> for Collect {
    type Response = HealthCheckResponse;
    type Future = BoxFuture<tonic::Response<HealthCheckResponse>, Status>;

    fn call(
        &mut self,
        request: tonic::Request<tonic::Streaming<HealthCheckRequest>>,
    ) -> Self::Future {
        Box::pin(async move {
            let mut messages = request.into_inner();
            let mut count = 0;
            while messages.message().await?.is_some() {
                count += 1;
            }
            Ok(tonic::Response::new(HealthCheckResponse { status: count }))
        })
    }
}

/// The two services by path (tonic's router needs axum; this does not).
#[derive(Clone)]
struct Routes<H> {
    health: H,
    collector: Collector,
}

impl<H> Service<http::Request<Body>> for Routes<H>
where
    H: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    H::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.health.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path().starts_with("/test.Collector/") {
            self.collector.call(request)
        } else {
            Box::pin(self.health.call(request))
        }
    }
}

/// A tonic server on 127.0.0.1:0 with the health and collector services
/// behind the check; stopped when dropped.
struct GrpcApi {
    addr: SocketAddr,
    state: Arc<ApiState>,
    task: JoinHandle<()>,
}

impl GrpcApi {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ApiState::default());
        let (_reporter, health) = tonic_health::server::health_reporter();
        let routes = Routes {
            health,
            collector: Collector,
        };
        let server = Server::builder().layer(CheckLayer(state.clone()));
        let task = tokio::spawn(async move {
            server
                .serve_with_incoming(routes, TcpIncoming::from(listener))
                .await
                .unwrap();
        });
        Self { addr, state, task }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn channel(&self) -> Channel {
        Endpoint::from_shared(self.origin()).unwrap().connect_lazy()
    }
}

impl Drop for GrpcApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------
// Clients.

type Layered = OAuth2Service<Channel, BufferBody>;

/// The layer for `api`'s channel, replaying buffered unary calls.
fn layered(manager: &TokenManager, api: &GrpcApi) -> Layered {
    OAuth2Layer::builder(manager.clone())
        .channel_origin(&api.origin())
        .replay(BufferBody::up_to(64 * 1024))
        .build()
        .unwrap()
        .layer(api.channel())
}

async fn check<T>(client: &mut HealthClient<T>) -> Result<ServingStatus, Status>
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let request = HealthCheckRequest {
        service: String::new(),
    };
    let response = client.check(request).await?;
    Ok(response.into_inner().status())
}

/// `Collect` with `messages` as the request stream.
async fn collect<S>(service: Layered, messages: S) -> Result<i32, Status>
where
    S: futures_util::Stream<Item = HealthCheckRequest> + Send + 'static,
{
    let mut grpc = tonic::client::Grpc::new(service);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let codec = ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    let path = http::uri::PathAndQuery::from_static(COLLECT);
    let response = grpc
        .client_streaming(tonic::Request::new(messages), path, codec)
        .await?;
    Ok(response.into_inner().status)
}

fn message() -> HealthCheckRequest {
    HealthCheckRequest {
        service: "x".into(),
    }
}

fn old_tokens() -> TokenSet {
    TokenSet::new("old")
        .with_refresh_token("r1")
        .with_expires_in(Duration::from_secs(3600))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A token endpoint that issues `new` to exactly `refreshes` calls, the
/// gRPC API with `rules`, and a clock the test moves.
struct Setup {
    auth: MockServer,
    api: GrpcApi,
    clock: Arc<TestClock>,
}

async fn setup(refreshes: u64, rules: &[(&str, Rule)]) -> Setup {
    let auth = MockServer::start().await;
    token_endpoint_issues(&auth, token_body("new", Some("r2"), Some(3600)), refreshes).await;
    let api = GrpcApi::start().await;
    for (token, rule) in rules {
        api.state.rule(token, *rule);
    }
    Setup {
        auth,
        api,
        clock: TestClock::new(),
    }
}

impl Setup {
    /// A manager for the token endpoint on the test's clock, seeded with
    /// `old`.
    fn manager(&self) -> TokenManagerBuilder {
        builder(&self.auth)
            .clock(self.clock.clone())
            .initial_tokens(old_tokens())
    }

    /// A health client through the layer ([`layered`]).
    fn client(&self, manager: &TokenManager) -> HealthClient<Layered> {
        HealthClient::new(layered(manager, &self.api))
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.api.state.seen(CHECK)
    }
}

/// The code of a health check that fails.
async fn refused<T>(client: &mut HealthClient<T>) -> Code
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    check(client).await.expect_err("the call is refused").code()
}

/// A health check with `authorization: Bearer mine` of its own.
fn with_own_authorization() -> tonic::Request<HealthCheckRequest> {
    let mut own = tonic::Request::new(HealthCheckRequest::default());
    own.metadata_mut()
        .insert("authorization", "Bearer mine".parse().unwrap());
    own
}

// ---------------------------------------------------------------------------
// The layer.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_calls_on_a_revoked_token_cause_one_refresh() {
    let gate = Gate::new();
    // One call to the token endpoint (checked when it is dropped), held
    // until every call has met the revoked token.
    let token = GatedTokenEndpoint::start(
        &gate,
        vec![Answer::ok(token_body("new", Some("r2"), Some(3600))).held()],
    )
    .await;
    let api = GrpcApi::start().await;
    api.state.rule("old", Rule::Revoked);
    api.state.rule("new", Rule::Accept);
    let manager = builder_at(&token.url())
        .initial_tokens(old_tokens())
        .build()
        .unwrap();
    let client = HealthClient::new(layered(&manager, &api));

    let opener = {
        let state = api.state.clone();
        tokio::spawn(async move {
            state.refused_at_least(HERD).await;
            gate.open();
        })
    };
    let calls = (0..HERD).map(|_| {
        let mut client = client.clone();
        tokio::spawn(async move { check(&mut client).await })
    });
    for outcome in join_all(calls).await {
        assert_eq!(outcome.unwrap().unwrap(), ServingStatus::Serving);
    }
    opener.await.unwrap();
    assert_eq!(api.state.count(CHECK, &bearer("old")), HERD);
    assert_eq!(
        api.state.count(CHECK, &bearer("new")),
        HERD,
        "each replayed once"
    );
    token.arrived(1).await;
}

/// Counts the API's 401s for the old token, and opens the gate once it and
/// the gRPC server together have refused everyone.
struct Rejects {
    state: Arc<ApiState>,
}

impl Respond for Rejects {
    fn respond(&self, _: &WireRequest) -> ResponseTemplate {
        self.state.refused.send_modify(|n| *n += 1);
        ResponseTemplate::new(401)
            .insert_header("www-authenticate", r#"Bearer error="invalid_token""#)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_manager_for_reqwest_and_tonic_refreshes_once_for_both() {
    const EACH: usize = 50;
    let gate = Gate::new();
    let token = GatedTokenEndpoint::start(
        &gate,
        vec![Answer::ok(token_body("new", Some("r2"), Some(3600))).held()],
    )
    .await;
    let grpc = GrpcApi::start().await;
    grpc.state.rule("old", Rule::Revoked);
    grpc.state.rule("new", Rule::Accept);
    let rest = MockServer::start().await;
    Mock::given(path("/data"))
        .and(header("authorization", "Bearer new"))
        .respond_with(ResponseTemplate::new(200))
        .expect(EACH as u64)
        .mount(&rest)
        .await;
    Mock::given(path("/data"))
        .and(header("authorization", "Bearer old"))
        .respond_with(Rejects {
            state: grpc.state.clone(),
        })
        .expect(EACH as u64)
        .mount(&rest)
        .await;

    let manager = builder_at(&token.url())
        .initial_tokens(old_tokens())
        .build()
        .unwrap();
    let auth = OAuth2Middleware::builder(manager.clone())
        .allow_origin(&rest.uri())
        .build()
        .unwrap();
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build();
    let channel = HealthClient::new(layered(&manager, &grpc));

    let opener = {
        let state = grpc.state.clone();
        tokio::spawn(async move {
            state.refused_at_least(2 * EACH).await;
            gate.open();
        })
    };
    let url = format!("{}/data", rest.uri());
    let rest_calls = (0..EACH).map(|_| {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move { http.get(url).send().await.unwrap().status() })
    });
    let grpc_calls = (0..EACH).map(|_| {
        let mut channel = channel.clone();
        tokio::spawn(async move { check(&mut channel).await })
    });
    let (rest_outcomes, grpc_outcomes) = tokio::join!(join_all(rest_calls), join_all(grpc_calls));
    for status in rest_outcomes {
        assert_eq!(status.unwrap(), 200);
    }
    for outcome in grpc_outcomes {
        assert_eq!(outcome.unwrap().unwrap(), ServingStatus::Serving);
    }
    opener.await.unwrap();
    assert_eq!(grpc.state.count(CHECK, &bearer("new")), EACH);
    token.arrived(1).await;
}

#[tokio::test]
async fn a_streaming_call_is_never_replayed() {
    // A refresh for each rejected stream, and no replay of either. The
    // second rejection comes moments after the first refresh, for a call that
    // cannot replay: the storm bound would hand it back without a refresh
    // (tests/refresh_storm.rs), so it is off here, where each rejection is
    // a new revocation.
    let s = setup(2, &[("old", Rule::Revoked), ("new", Rule::Accept)]).await;
    let manager = s
        .manager()
        .rejected_token_min_age(std::time::Duration::ZERO)
        .build()
        .unwrap();
    let service = layered(&manager, &s.api);

    // A request stream still being fed when the call goes out.
    let (feed, fed) = mpsc::unbounded_channel::<HealthCheckRequest>();
    feed.send(message()).unwrap();
    let messages = stream::unfold(
        fed,
        |mut fed| async move { fed.recv().await.map(|m| (m, fed)) },
    );
    let outcome = collect(service.clone(), messages).await;
    assert_eq!(outcome.unwrap_err().code(), Code::Unauthenticated);
    drop(feed);
    assert_eq!(
        s.api.state.seen(COLLECT),
        [Some(bearer("old"))],
        "sent once"
    );
    assert_eq!(
        manager.cached_tokens().unwrap().access_token().secret(),
        "new"
    );

    // A request stream complete at once, but of two messages: a stream, not
    // sent twice either (it goes with the new token: revoke that one too).
    s.api.state.rule("new", Rule::Revoked);
    let outcome = collect(service, stream::iter([message(), message()])).await;
    assert_eq!(outcome.unwrap_err().code(), Code::Unauthenticated);
    let seen = s.api.state.seen(COLLECT);
    assert_eq!(
        seen,
        [Some(bearer("old")), Some(bearer("new"))],
        "sent once"
    );
}

#[tokio::test]
async fn a_stream_goes_through_with_a_valid_token() {
    let s = setup(0, &[("old", Rule::Accept)]).await;
    let manager = s.manager().build().unwrap();

    let messages = stream::iter([message(), message(), message()]);
    assert_eq!(
        collect(layered(&manager, &s.api), messages).await.unwrap(),
        3
    );
    assert_eq!(s.api.state.seen(COLLECT), [Some(bearer("old"))]);
}

#[tokio::test]
async fn wrong_origin_requests_get_nothing() {
    let s = setup(0, &[("old", Rule::Accept)]).await;
    let manager = s.manager().build().unwrap();

    // Allowed elsewhere, and no channel origin: tonic's path-only URIs name
    // no origin, so they get no token (and their refusal no refresh).
    let elsewhere = OAuth2Layer::builder(manager.clone())
        .allow_origin("https://api.example.com")
        .build()
        .unwrap();
    let mut client = HealthClient::new(elsewhere.layer(s.api.channel()));
    assert_eq!(refused(&mut client).await, Code::Unauthenticated);

    // A URI that names another origin gets nothing either, even though the
    // channel would take it to its own endpoint.
    let bound = OAuth2Layer::builder(manager.clone())
        .channel_origin(&s.api.origin())
        .build()
        .unwrap();
    let other: http::Uri = "http://127.0.0.2:1".parse().unwrap();
    let mut client = HealthClient::with_origin(bound.layer(s.api.channel()), other);
    assert_eq!(refused(&mut client).await, Code::Unauthenticated);
    assert_eq!(s.seen(), [None, None]);

    // The channel's own origin, by path or in full, gets the token.
    let mut client = HealthClient::new(bound.layer(s.api.channel()));
    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);
    let own: http::Uri = s.api.origin().parse().unwrap();
    let mut client = HealthClient::with_origin(bound.layer(s.api.channel()), own);
    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);
    assert_eq!(s.seen()[2..], [Some(bearer("old")), Some(bearer("old"))]);
}

#[tokio::test]
async fn permission_denied_and_insufficient_scope_never_refresh() {
    let s = setup(0, &[("old", Rule::Forbidden)]).await;
    let manager = s.manager().build().unwrap();
    let mut client = s.client(&manager);

    assert_eq!(refused(&mut client).await, Code::PermissionDenied);
    s.api.state.rule("old", Rule::InsufficientScope);
    assert_eq!(refused(&mut client).await, Code::Unauthenticated);
    assert_eq!(s.seen().len(), 2, "no replay");
    assert_eq!(
        manager.cached_tokens().unwrap().access_token().secret(),
        "old"
    );
}

#[tokio::test]
async fn without_replay_a_rejection_renews_the_token_for_the_next_call() {
    let s = setup(1, &[("old", Rule::Revoked), ("new", Rule::Accept)]).await;
    let manager = s.manager().build().unwrap();
    let layer: OAuth2Layer<NoReplay> = OAuth2Layer::builder(manager.clone())
        .channel_origin(&s.api.origin())
        .build()
        .unwrap();
    let mut client = HealthClient::new(layer.layer(s.api.channel()));

    assert_eq!(refused(&mut client).await, Code::Unauthenticated);
    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);
    assert_eq!(s.seen(), [Some(bearer("old")), Some(bearer("new"))]);
}

#[tokio::test]
async fn a_replay_rejected_again_is_returned_as_it_is() {
    let s = setup(1, &[("old", Rule::Revoked), ("new", Rule::Revoked)]).await;
    let manager = s.manager().build().unwrap();

    assert_eq!(
        refused(&mut s.client(&manager)).await,
        Code::Unauthenticated
    );
    assert_eq!(s.seen(), [Some(bearer("old")), Some(bearer("new"))]);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_before_the_call() {
    let s = setup(1, &[("new", Rule::Accept)]).await;
    let manager = s.manager().build().unwrap();
    s.clock.advance(Duration::from_secs(3601));

    let status = check(&mut s.client(&manager)).await.unwrap();
    assert_eq!(status, ServingStatus::Serving);
    assert_eq!(s.seen(), [Some(bearer("new"))]);
}

#[tokio::test]
async fn the_callers_own_authorization_and_the_opt_out_are_left_alone() {
    let s = setup(0, &[("mine", Rule::Accept)]).await;
    let manager = s.manager().build().unwrap();
    let mut client = s.client(&manager);

    assert!(client.check(with_own_authorization()).await.is_ok());
    let mut skipped = tonic::Request::new(HealthCheckRequest::default());
    skipped.extensions_mut().insert(SkipOAuth2);
    let outcome = client.check(skipped).await;
    assert_eq!(outcome.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(s.seen(), [Some(bearer("mine")), None]);
}

#[tokio::test]
async fn a_failed_refresh_reaches_the_caller_as_our_error() {
    let s = setup(0, &[("old", Rule::Revoked)]).await;
    Mock::given(path("/token"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": "invalid_grant"})),
        )
        .with_priority(1) // before setup's mock, which expects no call
        .expect(1)
        .mount(&s.auth)
        .await;
    let manager = s.manager().build().unwrap();

    let status = check(&mut s.client(&manager)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unknown);
    let source = std::error::Error::source(&status).expect("our error as the source");
    let ours = source
        .downcast_ref::<Error>()
        .expect("reqwest_oauth2_refresh::Error");
    assert!(matches!(ours, Error::InvalidGrant { .. }), "{ours:?}");
}

// ---------------------------------------------------------------------------
// The interceptor.

#[tokio::test]
async fn the_interceptor_needs_a_manager_that_refreshes_in_the_background() {
    let manager = TokenManager::builder("https://as.example/token")
        .refresh_mode(reqwest_oauth2_refresh::RefreshMode::Blocking)
        .initial_tokens(old_tokens())
        .build()
        .unwrap();
    assert!(matches!(
        OAuth2Interceptor::new(manager),
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn the_interceptor_sends_the_ready_token_and_refuses_without_one() {
    let s = setup(
        1,
        &[
            ("old", Rule::Accept),
            ("new", Rule::Accept),
            ("mine", Rule::Accept),
        ],
    )
    .await;
    let manager = s.manager().background_refresh(true).build().unwrap();
    let interceptor = OAuth2Interceptor::new(manager.clone()).unwrap();
    let mut client = HealthClient::new(InterceptedService::new(s.api.channel(), interceptor));

    // Nothing loaded yet: refused at once, and the load starts.
    let refusal = check(&mut client).await.unwrap_err();
    assert_eq!(refusal.code(), Code::Unauthenticated);
    assert!(
        refusal.message().contains("loaded"),
        "{}",
        refusal.message()
    );
    until_published(&manager, "old").await;
    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);

    // Expired: refused, and the background refresh replaces it.
    s.clock.advance(Duration::from_secs(3601));
    let refusal = check(&mut client).await.unwrap_err();
    assert_eq!(refusal.code(), Code::Unauthenticated);
    assert!(
        refusal.message().contains("expired"),
        "{}",
        refusal.message()
    );
    until_published(&manager, "new").await;
    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);

    // The caller's own authorization wins.
    assert!(client.check(with_own_authorization()).await.is_ok());

    // Only the calls with a token reached the server.
    let tokens = [
        Some(bearer("old")),
        Some(bearer("new")),
        Some(bearer("mine")),
    ];
    assert_eq!(s.seen(), tokens);
}
