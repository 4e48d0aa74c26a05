//! The tower layer over plain HTTP: hyper-util's client against a wiremock
//! API, and a recording service for what no client sends (path-only URIs).
#![cfg(feature = "tower")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{builder, token_body, token_endpoint_issues};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reqwest_oauth2_refresh::tower::{CloneBody, OAuth2Layer, OAuth2Service};
use reqwest_oauth2_refresh::{BoxError, SkipOAuth2, TokenManager, TokenSet};
use tower::{Layer, Service, ServiceExt};
use wiremock::matchers::{body_string, header, header_exists, method, path};
use wiremock::{Match, Mock, MockServer, ResponseTemplate};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn old_tokens() -> TokenSet {
    TokenSet::new("old")
        .with_refresh_token("r1")
        .with_expires_in(Duration::from_secs(3600))
}

fn post(url: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(url)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

async fn send<S>(service: &mut S, request: Request<Full<Bytes>>) -> StatusCode
where
    S: Service<Request<Full<Bytes>>, Response = Response<hyper::body::Incoming>, Error = BoxError>,
{
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

/// A token endpoint that issues `new` to exactly `refreshes` calls, an API,
/// and a manager seeded with `old`.
struct Setup {
    _auth: MockServer,
    api: MockServer,
    manager: TokenManager,
}

async fn setup(refreshes: u64) -> Setup {
    let auth = MockServer::start().await;
    token_endpoint_issues(&auth, token_body("new", Some("r2"), Some(3600)), refreshes).await;
    let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();
    Setup {
        _auth: auth,
        api: MockServer::start().await,
        manager,
    }
}

impl Setup {
    /// hyper-util's client through the layer, allowed to the API,
    /// replaying with a clone of the request.
    fn service(&self) -> OAuth2Service<HttpClient, CloneBody> {
        OAuth2Layer::builder(self.manager.clone())
            .allow_origin(&self.api.uri())
            .replay(CloneBody)
            .build()
            .unwrap()
            .layer(http_client())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api.uri())
    }
}

/// `server` answers `status` to exactly `times` requests that `matcher`
/// matches.
async fn answers(server: &MockServer, matcher: impl Match + 'static, status: u16, times: u64) {
    Mock::given(matcher)
        .respond_with(ResponseTemplate::new(status))
        .expect(times)
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_401_refreshes_once_and_replays_a_cloned_body_once() {
    let s = setup(1).await;
    answers(&s.api, header("authorization", "Bearer old"), 401, 1).await;
    Mock::given(method("POST"))
        .and(header("authorization", "Bearer new"))
        .and(body_string("one order"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&s.api)
        .await;

    let status = send(&mut s.service(), post(&s.url("/orders"), "one order")).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn a_replayed_request_meets_a_401_again_and_it_is_returned() {
    let s = setup(1).await;
    answers(&s.api, path("/data"), 401, 2).await;

    assert_eq!(send(&mut s.service(), get(&s.url("/data"))).await, 401);
}

#[tokio::test]
async fn a_403_or_an_insufficient_scope_401_never_refreshes() {
    let s = setup(0).await;
    answers(&s.api, path("/forbidden"), 403, 1).await;
    Mock::given(path("/admin"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("www-authenticate", r#"Bearer error="insufficient_scope""#),
        )
        .expect(1)
        .mount(&s.api)
        .await;

    let mut service = s.service();
    assert_eq!(send(&mut service, get(&s.url("/forbidden"))).await, 403);
    assert_eq!(send(&mut service, get(&s.url("/admin"))).await, 401);
}

#[tokio::test]
async fn only_allowed_origins_without_their_own_authorization_get_the_token() {
    let s = setup(0).await;
    let elsewhere = MockServer::start().await;
    answers(&elsewhere, header_exists("authorization"), 500, 0).await;
    answers(&elsewhere, path("/x"), 401, 1).await;
    answers(&s.api, header("authorization", "Bearer old"), 500, 0).await;
    answers(&s.api, header("authorization", "Basic bWU6cHc="), 200, 1).await;
    answers(&s.api, path("/public"), 200, 1).await;
    let mut service = s.service();

    // Another origin: no token, and its 401 refreshes nothing.
    let other = get(&format!("{}/x", elsewhere.uri()));
    assert_eq!(send(&mut service, other).await, 401);
    // The caller's own Authorization wins.
    let mut own = get(&s.url("/own"));
    own.headers_mut()
        .insert("authorization", "Basic bWU6cHc=".parse().unwrap());
    assert_eq!(send(&mut service, own).await, 200);
    // The opt-out.
    let mut public = get(&s.url("/public"));
    public.extensions_mut().insert(SkipOAuth2);
    assert_eq!(send(&mut service, public).await, 200);
}

/// An inner service that records the `authorization` of each request and
/// answers 200: for what no client sends.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Option<String>>>>);

impl Service<Request<Full<Bytes>>> for Recorder {
    type Response = Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        let authorization = request
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        self.0.lock().unwrap().push(authorization);
        std::future::ready(Ok(Response::new(Full::default())))
    }
}

async fn call(service: &mut OAuth2Service<Recorder, CloneBody>, uri: &str) {
    let request = Request::get(uri).body(Full::default()).unwrap();
    service.ready().await.unwrap().call(request).await.unwrap();
}

#[tokio::test]
async fn a_path_only_uri_gets_the_token_only_with_a_channel_origin() {
    let auth = MockServer::start().await;
    token_endpoint_issues(&auth, token_body("unused", None, None), 0).await;
    let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();
    let without = OAuth2Layer::builder(manager.clone())
        .allow_origin("https://api.example.com")
        .replay(CloneBody)
        .build()
        .unwrap();
    let with = OAuth2Layer::builder(manager.clone())
        .channel_origin("https://api.example.com")
        .replay(CloneBody)
        .build()
        .unwrap();
    let recorded = Recorder::default();

    let mut service = without.layer(recorded.clone());
    call(&mut service, "/pkg.Service/Method").await;
    call(&mut service, "https://api.example.com/v1").await;
    let mut service = with.layer(recorded.clone());
    call(&mut service, "/pkg.Service/Method").await;
    call(&mut service, "https://api.example.com:443/v1").await;
    call(&mut service, "https://other.example.com/v1").await;
    call(&mut service, "http://api.example.com/v1").await;

    let token = Some("Bearer old".to_owned());
    assert_eq!(
        *recorded.0.lock().unwrap(),
        [None, token.clone(), token.clone(), token, None, None]
    );
}

#[test]
fn a_layer_needs_an_origin_and_refuses_insecure_ones() {
    let manager = || {
        TokenManager::builder("https://as.example/token")
            .build()
            .unwrap()
    };
    assert!(OAuth2Layer::builder(manager()).build().is_err());
    assert!(
        OAuth2Layer::builder(manager())
            .channel_origin("http://api.example.com")
            .build()
            .is_err()
    );
    assert!(
        OAuth2Layer::builder(manager())
            .allow_origin("https://api.example.com/path")
            .build()
            .is_err()
    );
    assert!(
        OAuth2Layer::builder(manager())
            .channel_origin("http://127.0.0.1:50051")
            .build()
            .is_ok()
    );
}
