//! hyper-util's client with the tower layer: the token on every request to
//! the allowed origin, and a 401 for a revoked token answered by one
//! refresh and one replay of the request (its `Full` body is cloned). An
//! in-process authorization server and API; exits non-zero if the numbers
//! are not the expected ones.
//!
//! Run with `cargo run --example hyper --features tower`.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use reqwest_oauth2_refresh::tower::{CloneBody, OAuth2Layer};
use reqwest_oauth2_refresh::{BoxError, TokenManager, TokenSet};
use tower::{Layer as _, Service as _, ServiceExt as _};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The authorization server issues "new"; the API has revoked "old".
    let auth = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "new", "token_type": "Bearer", "expires_in": 3600,
        })))
        .expect(1)
        .mount(&auth)
        .await;
    let api = MockServer::start().await;
    Mock::given(path("/orders"))
        .and(header("authorization", "Bearer new"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&api)
        .await;
    Mock::given(path("/orders"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&api)
        .await;

    let manager = TokenManager::builder(&format!("{}/token", auth.uri()))
        .client_id("hyper-demo")
        .initial_tokens(
            TokenSet::new("old")
                .with_refresh_token("rt")
                .with_expires_in(Duration::from_secs(3600)),
        )
        .build()?;
    let layer = OAuth2Layer::builder(manager)
        .allow_origin(&api.uri())
        .replay(CloneBody)
        .build()?;
    let mut client = layer.layer(Client::builder(TokioExecutor::new()).build_http());

    let order = Request::post(format!("{}/orders", api.uri()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"item":"book"}"#)))?;
    let response = client.ready().await?.call(order).await?;
    let status = response.status();
    response.into_body().collect().await?;
    let calls = api.received_requests().await.unwrap_or_default().len();
    println!("POST /orders: {status} after {calls} requests to the API (the 401, the replay)");
    if status != 201 || calls != 2 {
        return Err(format!("expected 201 after 2 requests, got {status} after {calls}").into());
    }
    Ok(())
}
