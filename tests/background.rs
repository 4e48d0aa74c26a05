//! Background refresh (stale-while-revalidate): no request is held back
//! for a refresh it did not need.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::gate::{Answer, Gate, GatedTokenEndpoint};
use common::{TestClock, builder_at, client, token_body};
use futures_util::future::join_all;
use reqwest_oauth2_refresh::TokenSet;
use tokio::sync::watch;
use wiremock::matchers::{header, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

struct Setup {
    clock: Arc<TestClock>,
    manager: reqwest_oauth2_refresh::TokenManager,
    client: reqwest_middleware::ClientWithMiddleware,
    url: String,
    /// Opens the token endpoint's answer, when it is held.
    gate: Gate,
    token: GatedTokenEndpoint,
    _api: MockServer,
}

/// A token endpoint that gives `answer` to one call, and an API that takes
/// both the old and the new token.
async fn setup(answer: Answer) -> Setup {
    let gate = Gate::new();
    let token = GatedTokenEndpoint::start(&gate, vec![answer]).await;
    let api = MockServer::start().await;
    for token in ["old-access", "new-access"] {
        Mock::given(path("/data"))
            .and(header("authorization", format!("Bearer {token}").as_str()))
            .respond_with(ResponseTemplate::new(200))
            .mount(&api)
            .await;
    }
    let clock = TestClock::new();
    let manager = builder_at(&token.url())
        .clock(clock.clone())
        .background_refresh(true)
        .initial_tokens(
            TokenSet::new("old-access")
                .with_refresh_token("r1")
                .with_expires_in(Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    let client = client(&manager, &api);
    Setup {
        clock,
        manager,
        client,
        url: format!("{}/data", api.uri()),
        gate,
        token,
        _api: api,
    }
}

fn new_tokens() -> Answer {
    Answer::ok(token_body("new-access", None, Some(3600)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_token_is_used_while_one_task_refreshes() {
    // The token endpoint holds its answer until 99 of the 100 requests have
    // returned: had they waited for the refresh, none would. The one that
    // started it answers once it has ended (its tokens saved), so that a
    // program awaiting its requests never exits mid-rotation.
    let s = setup(new_tokens().held()).await;
    s.clock.advance(Duration::from_secs(3590)); // inside the leeway, still valid
    let (answered, mut count) = watch::channel(0usize);
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let (client, url, answered) = (s.client.clone(), s.url.clone(), answered.clone());
            tokio::spawn(async move {
                let status = client.get(&url).send().await.unwrap().status();
                answered.send_modify(|n| *n += 1);
                status
            })
        })
        .collect();
    let ninety_nine = count.wait_for(|n| *n == 99);
    tokio::time::timeout(Duration::from_secs(10), ninety_nine)
        .await
        .expect("99 requests answered while the refresh is held")
        .unwrap();
    // The refresh is under way (its call is at the token endpoint), and
    // all 100 went out with the old token.
    s.token.arrived(1).await;
    assert_eq!(
        s.manager.cached_tokens().unwrap().access_token().secret(),
        "old-access"
    );
    s.gate.open();
    for response in join_all(requests).await {
        assert_eq!(response.unwrap(), 200);
    }
    // The last one answered after the refresh had published its set.
    assert_eq!(
        s.manager.cached_tokens().unwrap().access_token().secret(),
        "new-access"
    );
}

#[tokio::test]
async fn an_expired_token_is_still_refreshed_before_the_request() {
    let s = setup(new_tokens()).await;
    s.clock.advance(Duration::from_secs(3601));
    assert_eq!(s.client.get(&s.url).send().await.unwrap().status(), 200);
    assert_eq!(
        s.manager.cached_tokens().unwrap().access_token().secret(),
        "new-access"
    );
}
