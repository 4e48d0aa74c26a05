//! DPoP through the tower layer: hyper-util's client against a wiremock
//! API (the proof, the API's nonce retry, the refresh and replay after a
//! rejected DPoP token), and a path-only URI with the channel's origin.
#![cfg(all(
    feature = "tower",
    any(feature = "crypto-ring", feature = "crypto-rustcrypto")
))]

mod common;
#[path = "common/jwt.rs"]
mod jwt;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::builder;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jwt::Jwt;
use reqwest_oauth2_refresh::tower::{CloneBody, OAuth2Layer};
use reqwest_oauth2_refresh::{BoxError, DpopKey, TokenSet};
use serde_json::json;
use tower::{Layer, Service, ServiceExt};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn dpop_seed(key: &DpopKey, access: &str) -> TokenSet {
    TokenSet::from_token_response_json(
        &json!({"access_token": access, "token_type": "DPoP", "expires_in": 3600, "refresh_token": "rt-1"}),
    )
    .unwrap()
    .with_dpop_key(key)
}

fn proof(headers: &http::HeaderMap) -> Jwt {
    Jwt::parse(
        headers
            .get("dpop")
            .expect("a DPoP header")
            .to_str()
            .unwrap(),
    )
}

type Layered =
    reqwest_oauth2_refresh::tower::OAuth2Service<Client<HttpConnector, Full<Bytes>>, CloneBody>;

/// hyper-util's client under our layer, with a DPoP-bound `at-1` from `key`,
/// allowed to send it to `api`.
fn layered_client(auth: &MockServer, api: &MockServer, key: &DpopKey) -> Layered {
    let manager = builder(auth)
        .initial_tokens(dpop_seed(key, "at-1"))
        .build()
        .unwrap();
    OAuth2Layer::builder(manager)
        .allow_origin(&api.uri())
        .replay(CloneBody)
        .build()
        .unwrap()
        .layer(Client::builder(TokioExecutor::new()).build_http())
}

fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test]
async fn the_layer_sends_proofs_and_retries_once_for_the_apis_nonce() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/me"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("WWW-Authenticate", r#"DPoP error="use_dpop_nonce""#)
                .insert_header("DPoP-Nonce", "rs-1"),
        )
        .up_to_n_times(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/me"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&api)
        .await;
    let key = DpopKey::generate().unwrap();
    let mut service = layered_client(&auth, &api, &key);
    let url = format!("{}/me?x=1", api.uri());
    let response = service
        .ready()
        .await
        .unwrap()
        .call(get(&url))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let seen = api.received_requests().await.unwrap();
    assert_eq!(seen.len(), 2, "one nonce retry");
    let (first, retry) = (
        Jwt::parse(seen[0].headers["dpop"].to_str().unwrap()),
        Jwt::parse(seen[1].headers["dpop"].to_str().unwrap()),
    );
    first.verify(&key.public_jwk());
    retry.verify(&key.public_jwk());
    assert_eq!(seen[1].headers["authorization"], "DPoP at-1");
    assert_eq!(first.claims["htu"], format!("{}/me", api.uri()));
    assert!(first.claims.get("nonce").is_none());
    assert_eq!(retry.claims["nonce"], "rs-1");
    assert_ne!(first.claims["jti"], retry.claims["jti"]);
    assert!(
        auth.received_requests().await.unwrap().is_empty(),
        "no refresh"
    );
}

#[tokio::test]
async fn a_rejected_dpop_token_is_refreshed_and_replayed_with_a_new_proof() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "at-2", "token_type": "DPoP", "expires_in": 3600, "refresh_token": "rt-2"}),
        ))
        .expect(1)
        .mount(&auth)
        .await;
    Mock::given(header("authorization", "DPoP at-1"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("WWW-Authenticate", r#"DPoP error="invalid_token""#),
        )
        .mount(&api)
        .await;
    Mock::given(header("authorization", "DPoP at-2"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&api)
        .await;
    let key = DpopKey::generate().unwrap();
    let mut service = layered_client(&auth, &api, &key);
    let response = service
        .ready()
        .await
        .unwrap()
        .call(get(&format!("{}/items", api.uri())))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = api.received_requests().await.unwrap();
    assert_eq!(seen.len(), 2);
    let replay = Jwt::parse(seen[1].headers["dpop"].to_str().unwrap());
    replay.verify(&key.public_jwk());
    let first = Jwt::parse(seen[0].headers["dpop"].to_str().unwrap());
    assert_ne!(
        first.claims["ath"], replay.claims["ath"],
        "ath follows the new token"
    );
    let token_call = &auth.received_requests().await.unwrap()[0];
    assert!(
        token_call.headers.get("dpop").is_some(),
        "the refresh had a proof"
    );
}

#[tokio::test]
async fn a_path_only_uri_is_proven_for_the_channels_origin() {
    let auth = MockServer::start().await;
    let key = DpopKey::generate().unwrap();
    let manager = builder(&auth)
        .initial_tokens(dpop_seed(&key, "at-1"))
        .build()
        .unwrap();
    let seen: Arc<Mutex<Vec<http::HeaderMap>>> = Arc::default();
    let record = seen.clone();
    let inner = tower::service_fn(move |request: Request<Full<Bytes>>| {
        record.lock().unwrap().push(request.headers().clone());
        async { Ok::<_, BoxError>(Response::new(Full::new(Bytes::new()))) }
    });
    let mut service = OAuth2Layer::builder(manager)
        .channel_origin("http://127.0.0.1:50051")
        .build()
        .unwrap()
        .layer(inner);
    let request = Request::post("/pkg.Service/Method")
        .body(Full::new(Bytes::new()))
        .unwrap();
    service.ready().await.unwrap().call(request).await.unwrap();
    let headers = seen.lock().unwrap()[0].clone();
    let jwt = proof(&headers);
    assert_eq!(
        jwt.claims["htu"],
        "http://127.0.0.1:50051/pkg.Service/Method"
    );
    assert_eq!(jwt.claims["htm"], "POST");
}
