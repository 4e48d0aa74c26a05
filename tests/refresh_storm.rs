//! An API that rejects every token (a wrong audience, its own skewed clock,
//! a misconfigured gateway) must not make the client refresh, and rotate the
//! refresh token, once per request: a token issued moments ago that the API
//! rejects as new is not refreshed again; the 401 is handed back and logged
//! once.

mod common;

use std::time::Duration;

use reqwest_oauth2_refresh::{OAuth2Middleware, TokenSet};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::{TestClock, builder, logs, token_body};

const STORM_WARNING: &str = "rejected a token issued moments ago";

async fn api_always_rejecting(api: &MockServer, requests: u64) {
    Mock::given(path("/data"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("www-authenticate", r#"Bearer error="invalid_token""#),
        )
        .expect(requests)
        .mount(api)
        .await;
}

async fn token_endpoint_rotating(auth: &MockServer, times: u64) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body(
            "at-new",
            Some("rt-new"),
            Some(3600),
        )))
        .expect(times)
        .mount(auth)
        .await;
}

fn client(
    manager: &reqwest_oauth2_refresh::TokenManager,
    api: &MockServer,
    replay: bool,
) -> reqwest_middleware::ClientWithMiddleware {
    let auth = OAuth2Middleware::builder(manager.clone())
        .allow_origin(&api.uri())
        .replay_on_401(replay)
        .build()
        .unwrap();
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build()
}

fn tokens() -> TokenSet {
    TokenSet::new("at-old")
        .with_refresh_token("rt-old")
        .with_expires_in(Duration::from_secs(3600))
}

#[tokio::test]
async fn twenty_requests_to_an_api_that_rejects_everything_cause_one_refresh() {
    let (captured, _guard) = logs::capture();
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_rotating(&auth, 1).await;
    // The first request and its replay, then one call each.
    api_always_rejecting(&api, 21).await;
    let clock = TestClock::new();
    let manager = builder(&auth)
        .clock(clock.clone())
        .initial_tokens(tokens())
        .build()
        .unwrap();
    let client = client(&manager, &api, true);
    for _ in 0..20 {
        let response = client
            .get(format!("{}/data", api.uri()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let warned = captured.text().matches(STORM_WARNING).count();
    assert_eq!(warned, 1, "logged once: {}", captured.text());
}

#[tokio::test]
async fn once_the_token_is_older_than_the_bound_a_401_refreshes_again() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_rotating(&auth, 2).await;
    api_always_rejecting(&api, 5).await;
    let clock = TestClock::new();
    let manager = builder(&auth)
        .clock(clock.clone())
        .rejected_token_min_age(Duration::from_secs(30))
        .initial_tokens(tokens())
        .build()
        .unwrap();
    let client = client(&manager, &api, true);
    let url = format!("{}/data", api.uri());
    client.get(&url).send().await.unwrap(); // refresh + replay: 2 calls
    client.get(&url).send().await.unwrap(); // handed back: 1 call
    clock.advance(Duration::from_secs(31));
    client.get(&url).send().await.unwrap(); // old enough: refresh + replay
}

#[tokio::test]
async fn without_replays_the_bound_holds_too() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_rotating(&auth, 1).await;
    api_always_rejecting(&api, 20).await;
    let manager = builder(&auth).initial_tokens(tokens()).build().unwrap();
    let client = client(&manager, &api, false);
    for _ in 0..20 {
        let response = client
            .get(format!("{}/data", api.uri()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
}
