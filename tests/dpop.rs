//! DPoP (RFC 9449) against wiremock: every claim and header of the proofs
//! at the token endpoint and the API, the nonce retries at both (never a
//! refresh, never the 401 replay), Bearer access tokens with a bound
//! refresh token, and the key kept with the tokens in a store.

mod common;
#[path = "common/jwt.rs"]
mod jwt;

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use common::{TestClock, builder, client, token_endpoint_issues, token_url};
use jwt::Jwt;
use reqwest_oauth2_refresh::Clock;
use reqwest_oauth2_refresh::{DpopKey, Error, MemoryStore, PublicJwk, TokenSet, TokenStore};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// The proof of a recorded request, checked: its signature verifies with
/// the key in its own header, which is `key`'s.
fn proof_of(request: &Request, key: &DpopKey) -> Jwt {
    let value = request
        .headers
        .get("dpop")
        .unwrap_or_else(|| panic!("no DPoP header on {} {}", request.method, request.url))
        .to_str()
        .unwrap();
    let jwt = Jwt::parse(value);
    assert_eq!(jwt.header["typ"], "dpop+jwt");
    assert_eq!(jwt.header["alg"], "ES256");
    let jwk = &jwt.header["jwk"];
    assert!(jwk.get("d").is_none(), "no private part in the proof");
    let public = PublicJwk::P256 {
        x: jwk["x"].as_str().unwrap().into(),
        y: jwk["y"].as_str().unwrap().into(),
    };
    assert_eq!(public, key.public_jwk());
    jwt.verify(&public);
    jwt
}

fn dpop_tokens(access: &str, refresh: Option<&str>, expires_in: u64) -> Value {
    let mut body = json!({"access_token": access, "token_type": "DPoP", "expires_in": expires_in});
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    body
}

async fn posts(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .collect()
}

fn bound_seed(key: &DpopKey) -> TokenSet {
    TokenSet::new("at-1")
        .with_refresh_token("rt-1")
        .with_expires_in(Duration::from_secs(3600))
        .with_dpop_key(key)
}

#[tokio::test]
async fn a_bound_refresh_sends_a_proof_and_keeps_the_key() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, dpop_tokens("at-2", Some("rt-2"), 3600), 1).await;
    let clock = TestClock::new();
    let key = DpopKey::generate().unwrap();
    let manager = builder(&server)
        .clock(clock.clone())
        .initial_tokens(bound_seed(&key))
        .build()
        .unwrap();
    let unix = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let before = unix(clock.now());
    let refreshed = manager.refresh().await.unwrap();
    let after = unix(clock.now());
    assert!(refreshed.is_dpop_bound() && refreshed.is_dpop_token());

    let sent = posts(&server).await;
    let proof = proof_of(&sent[0], &key);
    assert_eq!(proof.claims["htm"], "POST");
    assert_eq!(proof.claims["htu"], token_url(&server));
    let iat = proof.claims["iat"].as_u64().unwrap();
    assert!(
        (before..=after).contains(&iat),
        "iat {iat} is the clock's now"
    );
    assert!(proof.claims["jti"].as_str().unwrap().len() >= 16);
    assert!(
        proof.claims.get("ath").is_none(),
        "no ath at the token endpoint"
    );
    assert!(proof.claims.get("nonce").is_none());
}

#[tokio::test]
async fn the_token_endpoints_nonce_is_used_at_once_and_remembered() {
    let server = MockServer::start().await;
    // Okta and Descope answer the first DPoP token request like this.
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("DPoP-Nonce", "n-1")
                .set_body_json(json!({"error": "use_dpop_nonce", "error_description": "Authorization server requires nonce in DPoP proof"})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    token_endpoint_issues(&server, dpop_tokens("cc", None, 3600), 2).await;
    let key = DpopKey::generate().unwrap();
    let manager = builder(&server)
        .client_secret("s")
        .client_credentials()
        .dpop(key.clone())
        // The nonce retry is not a retry: none are allowed.
        .max_retries(0)
        .build()
        .unwrap();
    manager.access_token().await.unwrap();
    manager.refresh().await.unwrap();

    let sent = posts(&server).await;
    assert_eq!(sent.len(), 3);
    let proofs: Vec<Jwt> = sent.iter().map(|r| proof_of(r, &key)).collect();
    assert!(proofs[0].claims.get("nonce").is_none());
    assert_eq!(proofs[1].claims["nonce"], "n-1");
    assert_eq!(
        proofs[2].claims["nonce"], "n-1",
        "remembered for the next call"
    );
    assert_ne!(proofs[0].claims["jti"], proofs[1].claims["jti"]);
    assert!(manager.cached_tokens().unwrap().is_dpop_bound());
}

#[tokio::test]
async fn use_dpop_nonce_without_a_new_nonce_is_an_error_not_a_loop() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "use_dpop_nonce"})))
        .expect(1)
        .mount(&server)
        .await;
    let key = DpopKey::generate().unwrap();
    let manager = builder(&server)
        .initial_tokens(bound_seed(&key))
        .build()
        .unwrap();
    let err = manager.refresh().await.unwrap_err();
    assert!(
        matches!(&err, Error::OAuth { error, .. } if error == "use_dpop_nonce"),
        "{err:?}"
    );
}

async fn api_with_dpop_nonce(api: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/me"))
        .and(header("dpop-nonce-test", "first"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("WWW-Authenticate", r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#)
                .insert_header("DPoP-Nonce", "api-n1"),
        )
        .up_to_n_times(1)
        .mount(api)
        .await;
    Mock::given(method("GET"))
        .and(path("/me"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("DPoP-Nonce", "api-n2")
                .set_body_string("me"),
        )
        .mount(api)
        .await;
}

#[tokio::test]
async fn api_requests_carry_a_proof_with_ath_and_the_apis_nonce() {
    let server = MockServer::start().await;
    let api = MockServer::start().await;
    api_with_dpop_nonce(&api).await;
    let key = DpopKey::generate().unwrap();
    let seed = TokenSet::from_token_response_json(&dpop_tokens("at-1", Some("rt-1"), 3600))
        .unwrap()
        .with_dpop_key(&key);
    let manager = builder(&server).initial_tokens(seed).build().unwrap();
    let http = client(&manager, &api);
    let url = format!("{}/me?q=1#frag", api.uri());
    let response = http
        .get(&url)
        .header("dpop-nonce-test", "first")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let second = http.get(&url).send().await.unwrap();
    assert_eq!(second.status(), 200);

    let seen = api.received_requests().await.unwrap();
    assert_eq!(
        seen.len(),
        3,
        "one nonce retry, then a request with the remembered nonce"
    );
    let ath = b64(&sha256(b"at-1"));
    let proofs: Vec<Jwt> = seen.iter().map(|r| proof_of(r, &key)).collect();
    for (request, proof) in seen.iter().zip(&proofs) {
        assert_eq!(request.headers["authorization"], "DPoP at-1");
        assert_eq!(proof.claims["htm"], "GET");
        assert_eq!(proof.claims["htu"], format!("{}/me", api.uri()));
        assert_eq!(proof.claims["ath"], ath.as_str());
    }
    assert!(proofs[0].claims.get("nonce").is_none());
    assert_eq!(proofs[1].claims["nonce"], "api-n1");
    assert_eq!(
        proofs[2].claims["nonce"], "api-n2",
        "the nonce of the last answer"
    );
    assert_ne!(proofs[0].claims["jti"], proofs[1].claims["jti"]);
    assert!(
        posts(&server).await.is_empty(),
        "a nonce retry refreshes nothing"
    );
}

#[tokio::test]
async fn a_rejected_dpop_token_is_refreshed_and_the_replay_has_a_new_proof() {
    let server = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_issues(&server, dpop_tokens("at-2", Some("rt-2"), 3600), 1).await;
    Mock::given(method("POST"))
        .and(path("/items"))
        .and(header("authorization", "DPoP at-1"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("WWW-Authenticate", r#"DPoP error="invalid_token""#),
        )
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path("/items"))
        .and(header("authorization", "DPoP at-2"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&api)
        .await;
    let key = DpopKey::generate().unwrap();
    let seed = TokenSet::from_token_response_json(&dpop_tokens("at-1", Some("rt-1"), 3600))
        .unwrap()
        .with_dpop_key(&key);
    let manager = builder(&server).initial_tokens(seed).build().unwrap();
    let response = client(&manager, &api)
        .post(format!("{}/items", api.uri()))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let seen = api.received_requests().await.unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body, b"payload");
    let (first, replay) = (proof_of(&seen[0], &key), proof_of(&seen[1], &key));
    assert_ne!(first.claims["jti"], replay.claims["jti"]);
    assert_eq!(replay.claims["ath"], b64(&sha256(b"at-2")).as_str());
    // The token endpoint got a proof from the same key.
    proof_of(&posts(&server).await[0], &key);
}

#[tokio::test]
async fn bearer_access_tokens_with_a_bound_refresh_token_go_without_proofs() {
    let server = MockServer::start().await;
    let api = MockServer::start().await;
    let bearer = json!({"access_token": "at-2", "token_type": "Bearer", "expires_in": 3600});
    token_endpoint_issues(&server, bearer, 1).await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&api)
        .await;
    let key = DpopKey::generate().unwrap();
    let clock = TestClock::new();
    let manager = builder(&server)
        .clock(clock.clone())
        .initial_tokens(bound_seed(&key))
        .build()
        .unwrap();
    clock.advance(Duration::from_secs(3600));
    client(&manager, &api).get(api.uri()).send().await.unwrap();

    proof_of(&posts(&server).await[0], &key);
    let seen = api.received_requests().await.unwrap();
    assert_eq!(seen[0].headers["authorization"], "Bearer at-2");
    assert!(seen[0].headers.get("dpop").is_none());
    let tokens = manager.cached_tokens().unwrap();
    assert!(tokens.is_dpop_bound() && !tokens.is_dpop_token());
    assert_eq!(tokens.refresh_token().unwrap().secret(), "rt-1", "kept");
}

#[tokio::test]
async fn the_key_is_saved_with_the_tokens_and_a_new_manager_refreshes_with_it() {
    let server = MockServer::start().await;
    token_endpoint_issues(&server, dpop_tokens("at-2", Some("rt-2"), 3600), 2).await;
    let store = std::sync::Arc::new(MemoryStore::new());
    let key = DpopKey::generate().unwrap();
    let first = builder(&server)
        .store(store.clone())
        .initial_tokens(bound_seed(&key))
        .build()
        .unwrap();
    first.refresh().await.unwrap();
    // What a file or Redis holds: the JSON form, the key in it.
    let saved = store.load().await.unwrap().unwrap();
    let json = serde_json::to_value(&saved).unwrap();
    assert!(json["dpop_key"].as_str().unwrap().contains("PRIVATE KEY"));
    let restored: TokenSet = serde_json::from_value(json).unwrap();
    assert!(restored.is_dpop_bound());
    assert!(
        !format!("{restored:?}").contains("PRIVATE KEY"),
        "Debug hides the key"
    );

    let other = MemoryStore::new();
    other.save(&restored).await.unwrap();
    let second = builder(&server).store(other).build().unwrap();
    second.refresh().await.unwrap();
    let sent = posts(&server).await;
    let (a, b) = (proof_of(&sent[0], &key), proof_of(&sent[1], &key));
    assert_eq!(
        a.header["jwk"], b.header["jwk"],
        "the same key after a restart"
    );
}

#[test]
fn a_token_file_of_0_1_still_loads() {
    let old =
        r#"{"access_token":"a","refresh_token":"r","expires_in":3600,"issued_at":1700000000}"#;
    let tokens: TokenSet = serde_json::from_str(old).unwrap();
    assert!(!tokens.is_dpop_bound());
    let back = serde_json::to_value(&tokens).unwrap();
    assert!(back.get("dpop_key").is_none());
}

#[test]
fn the_thumbprint_is_rfc_7638s() {
    let key = DpopKey::generate().unwrap();
    let PublicJwk::P256 { x, y } = key.public_jwk() else {
        panic!("ES256 by default")
    };
    let input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    assert_eq!(key.thumbprint(), b64(&sha256(input.as_bytes())));
}

#[tokio::test]
async fn a_dpop_token_is_never_written_without_a_proof() {
    let server = MockServer::start().await;
    let key = DpopKey::generate().unwrap();
    let seed = TokenSet::from_token_response_json(&dpop_tokens("at-1", Some("rt-1"), 3600))
        .unwrap()
        .with_dpop_key(&key);
    let manager = builder(&server).initial_tokens(seed).build().unwrap();
    manager.access_token().await.unwrap();
    let mut headers = http::HeaderMap::new();
    assert!(!manager.insert_authorization(&mut headers));
    assert!(headers.is_empty());
}

/// The API's nonce as a responder: a proof without `n-1` gets the
/// `use_dpop_nonce` challenge and the nonce.
struct NonceApi;

impl wiremock::Respond for NonceApi {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let proof = Jwt::parse(request.headers["dpop"].to_str().unwrap());
        if proof.claims["nonce"] == "n-1" {
            ResponseTemplate::new(200)
        } else {
            ResponseTemplate::new(401)
                .insert_header("WWW-Authenticate", r#"DPoP error="use_dpop_nonce""#)
                .insert_header("DPoP-Nonce", "n-1")
        }
    }
}

/// A herd that starts without the API's nonce: every request is challenged
/// (the first answers teach the cache the nonce before the others come
/// back), and every one is sent once more with it, whatever the cache
/// already knew.
#[tokio::test]
async fn a_herd_without_the_apis_nonce_retries_every_request_once() {
    let server = MockServer::start().await;
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(NonceApi)
        .mount(&api)
        .await;
    let key = DpopKey::generate().unwrap();
    let seed = TokenSet::from_token_response_json(&dpop_tokens("at-1", Some("rt-1"), 3600))
        .unwrap()
        .with_dpop_key(&key);
    let manager = builder(&server).initial_tokens(seed).build().unwrap();
    let http = client(&manager, &api);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let herd = (0..50).map(|_| {
        let (http, barrier, url) = (http.clone(), barrier.clone(), api.uri());
        tokio::spawn(async move {
            barrier.wait().await;
            http.get(url).send().await.unwrap().status()
        })
    });
    for status in futures_util::future::join_all(herd).await {
        assert_eq!(status.unwrap(), 200);
    }
    let seen = api.received_requests().await.unwrap().len();
    assert!((50..=100).contains(&seen), "at most one retry each: {seen}");
    assert!(posts(&server).await.is_empty(), "no refresh");
}
