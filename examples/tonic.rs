//! A gRPC client whose token is kept fresh by the tower layer, against an
//! in-process tonic server (the health service from `tonic-health`: no
//! protoc) that accepts only the authorization server's latest access
//! token, and the synchronous interceptor for comparison. Exits non-zero if
//! the numbers are not the expected ones.
//!
//! Run with `cargo run --example tonic --features tonic`.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use futures_util::future::join_all;
use reqwest_oauth2_refresh::tower::{BufferBody, OAuth2Layer};
use reqwest_oauth2_refresh::{OAuth2Interceptor, TokenManager, TokenSet};
use tonic::service::InterceptorLayer;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::Layer as _;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

const CONCURRENT: usize = 20;

/// The authorization server: every refresh issues `at-<n>`, and from then
/// on the API accepts only that one.
#[derive(Default)]
struct Issuer {
    current: Mutex<String>,
    refreshes: AtomicUsize,
}

struct TokenEndpoint(Arc<Issuer>);

impl Respond for TokenEndpoint {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        let n = self.0.refreshes.fetch_add(1, SeqCst) + 1;
        let access = format!("at-{n}");
        *self.0.current.lock().unwrap() = format!("Bearer {access}");
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 3600,
        }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = Arc::new(Issuer::default());
    // The session's first token, at-0, is revoked already.
    *issuer.current.lock().unwrap() = "revoked".into();
    let auth = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(TokenEndpoint(issuer.clone()))
        .mount(&auth)
        .await;

    // The gRPC API, checking each call's token before it reaches the
    // health service: UNAUTHENTICATED for anything but the latest.
    let rejected = Arc::new(AtomicUsize::new(0));
    let check = {
        let (issuer, rejected) = (issuer.clone(), rejected.clone());
        move |request: Request<()>| {
            let token = request.metadata().get("authorization");
            let current = issuer.current.lock().unwrap().clone();
            if token.and_then(|t| t.to_str().ok()) == Some(current.as_str()) {
                Ok(request)
            } else {
                rejected.fetch_add(1, SeqCst);
                Err(Status::unauthenticated("token revoked"))
            }
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let origin = format!("http://{}", listener.local_addr()?);
    let (_reporter, health) = tonic_health::server::health_reporter();
    let server = Server::builder().layer(InterceptorLayer::new(check));
    tokio::spawn(server.serve_with_incoming(health, TcpIncoming::from(listener)));

    // One manager; the layer on the channel. Its first token is already
    // revoked by the server: the first call is rejected, refreshed for, and
    // replayed.
    let manager = TokenManager::builder(&format!("{}/token", auth.uri()))
        .client_id("grpc-demo")
        .initial_tokens(TokenSet::new("at-0").with_refresh_token("rt"))
        .background_refresh(true)
        .build()?;
    let channel = Endpoint::from_shared(origin.clone())?.connect_lazy();
    let layer = OAuth2Layer::builder(manager.clone())
        .channel_origin(&origin)
        .replay(BufferBody::up_to(64 * 1024))
        .build()?;
    let client = HealthClient::new(layer.layer(channel.clone()));

    let status = client.clone().check(HealthCheckRequest::default()).await?;
    println!("first call: {:?}", status.into_inner().status());
    report("after the first call", &issuer, &rejected);

    // The server revokes the token (it accepts none until the next
    // refresh); many calls meet that at once, and share one refresh.
    *issuer.current.lock().unwrap() = "revoked".into();
    let calls = (0..CONCURRENT).map(|_| {
        let mut client = client.clone();
        async move { client.check(HealthCheckRequest::default()).await }
    });
    let served = join_all(calls)
        .await
        .into_iter()
        .filter(Result::is_ok)
        .count();
    println!("{served} of {CONCURRENT} concurrent calls served");
    report("after the revocation", &issuer, &rejected);

    // The interceptor: no waiting, no replay; the ready header of the same
    // manager.
    let interceptor = OAuth2Interceptor::new(manager.clone())?;
    let mut intercepted = HealthClient::new(InterceptedService::new(channel, interceptor));
    let status = intercepted.check(HealthCheckRequest::default()).await?;
    println!(
        "through the interceptor: {:?}",
        status.into_inner().status()
    );

    // The interceptor's refreshes run in the background, which nobody
    // awaits: before exiting, let one under way finish and save.
    manager.shutdown().await?;

    let refreshes = issuer.refreshes.load(SeqCst);
    // One refresh for the first call, one for the whole herd.
    if served != CONCURRENT || refreshes != 2 {
        let got = format!("{served} served, {refreshes} refreshes");
        return Err(format!("expected {CONCURRENT} served and 2 refreshes; {got}").into());
    }
    Ok(())
}

fn report(when: &str, issuer: &Issuer, rejected: &AtomicUsize) {
    println!(
        "  {when}: {} refreshes, {} calls rejected by the server",
        issuer.refreshes.load(SeqCst),
        rejected.load(SeqCst)
    );
}
