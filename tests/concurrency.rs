//! Single flight: however many callers need a new token at once, the token
//! endpoint is called once and everyone gets its outcome.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::gate::{Answer, Gate, GatedTokenEndpoint};
use common::{
    TestClock, builder, builder_at, client, our_error, token_body, token_endpoint_issues,
};
use futures_util::future::join_all;
use http::Extensions;
use reqwest_middleware::{Middleware, Next};
use reqwest_oauth2_refresh::{Error, OAuth2Middleware, TokenSet};
use serde_json::json;
use tokio::sync::{Notify, mpsc};
use wiremock::matchers::{header, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const HERD: usize = 1000;

fn old_tokens() -> TokenSet {
    TokenSet::new("old-access").with_refresh_token("r1")
}

async fn api_accepting_only_new_token(api: &MockServer) {
    api_accepting_new_token(api).await;
    Mock::given(path("/data"))
        .respond_with(invalid_token())
        .mount(api)
        .await;
}

async fn api_accepting_new_token(api: &MockServer) {
    Mock::given(path("/data"))
        .and(header("authorization", "Bearer new-access"))
        .respond_with(ResponseTemplate::new(200))
        .mount(api)
        .await;
}

/// A 401 whose challenge says a new token may fix it.
fn invalid_token() -> ResponseTemplate {
    ResponseTemplate::new(401).insert_header("www-authenticate", r#"Bearer error="invalid_token""#)
}

async fn send_herd(
    client: &reqwest_middleware::ClientWithMiddleware,
    url: &str,
) -> Vec<reqwest_middleware::Result<reqwest::Response>> {
    let tasks: Vec<_> = (0..HERD)
        .map(|_| {
            let client = client.clone();
            let url = url.to_owned();
            tokio::spawn(async move { client.get(url).send().await })
        })
        .collect();
    join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.expect("no task panics"))
        .collect()
}

/// The API for a herd: 401 to the old token, and once it has said so to
/// all `HERD` requests it opens `gate`, which holds the token endpoint's
/// answer. So every caller has met the old token's 401 before the refresh
/// can end, and each replays once with the new token.
async fn api_rejecting_the_herd(api: &MockServer, gate: &Gate) {
    api_accepting_new_token(api).await;
    Mock::given(path("/data"))
        .and(header("authorization", "Bearer old-access"))
        .respond_with(RejectsTheHerd {
            rejected: AtomicUsize::new(0),
            gate: gate.clone(),
        })
        .expect(HERD as u64)
        .mount(api)
        .await;
}

struct RejectsTheHerd {
    rejected: AtomicUsize,
    gate: Gate,
}

impl Respond for RejectsTheHerd {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        if self.rejected.fetch_add(1, Ordering::SeqCst) + 1 == HERD {
            self.gate.open();
        }
        invalid_token()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_401s_cause_one_refresh() {
    let gate = Gate::new();
    let token = GatedTokenEndpoint::start(
        &gate,
        vec![Answer::ok(token_body("new-access", Some("r2"), Some(3600))).held()],
    )
    .await;
    let api = MockServer::start().await;
    api_rejecting_the_herd(&api, &gate).await;
    let manager = builder_at(&token.url())
        .initial_tokens(old_tokens())
        .build()
        .unwrap();
    let client = client(&manager, &api);

    let responses = send_herd(&client, &format!("{}/data", api.uri())).await;
    for response in responses {
        assert_eq!(response.unwrap().status(), 200);
    }
    assert_eq!(
        manager
            .cached_tokens()
            .unwrap()
            .refresh_token()
            .unwrap()
            .secret(),
        "r2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_of_an_expired_token_refresh_once() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    let clock = TestClock::new();
    token_endpoint_issues(&auth, token_body("new-access", None, Some(3600)), 1).await;
    Mock::given(path("/data"))
        .and(header("authorization", "Bearer old-access"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&api)
        .await;
    api_accepting_only_new_token(&api).await;
    let manager = builder(&auth)
        .clock(clock.clone())
        .initial_tokens(old_tokens().with_expires_in(Duration::from_secs(60)))
        .build()
        .unwrap();
    clock.advance(Duration::from_secs(61));
    let client = client(&manager, &api);

    for response in send_herd(&client, &format!("{}/data", api.uri())).await {
        assert_eq!(response.unwrap().status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_failure() {
    for (answer, transient) in [
        (Answer::status(500, None), true),
        (
            Answer::status(400, Some(json!({"error": "invalid_grant"}))),
            false,
        ),
    ] {
        let gate = Gate::new();
        let token = GatedTokenEndpoint::start(&gate, vec![answer.held()]).await;
        let api = MockServer::start().await;
        api_rejecting_the_herd(&api, &gate).await;
        let manager = builder_at(&token.url())
            .max_retries(0)
            .initial_tokens(old_tokens())
            .build()
            .unwrap();
        let client = client(&manager, &api);

        for response in send_herd(&client, &format!("{}/data", api.uri())).await {
            let err = response.unwrap_err();
            assert_eq!(our_error(&err).is_transient(), transient, "{err:?}");
        }
    }
}

/// Holds responses to requests marked `x-gate` until the test releases them,
/// and says when one arrived: a way to order a 401 after a refresh.
struct HoldMarked401 {
    arrived: mpsc::UnboundedSender<()>,
    release: Arc<Notify>,
}

#[async_trait]
impl Middleware for HoldMarked401 {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let gated = req.headers().contains_key("x-gate");
        let response = next.run(req, extensions).await;
        if gated && response.as_ref().is_ok_and(|r| r.status() == 401) {
            self.arrived.send(()).unwrap();
            self.release.notified().await;
        }
        response
    }
}

#[tokio::test]
async fn late_401_for_a_replaced_token_is_replayed_without_refreshing() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_issues(&auth, token_body("new-access", Some("r2"), None), 1).await;
    api_accepting_only_new_token(&api).await;
    let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(
            OAuth2Middleware::builder(manager.clone())
                .allow_origin(&api.uri())
                .build()
                .unwrap(),
        )
        .with(HoldMarked401 {
            arrived: arrived_tx,
            release: release.clone(),
        })
        .build();
    let url = format!("{}/data", api.uri());

    // The slow request has its 401 for the old token, held back.
    let slow = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.get(url).header("x-gate", "1").send().await }
    });
    arrived.recv().await.unwrap();
    // Meanwhile another request meets the 401 and refreshes.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    // Now the old 401 comes back: replayed with the new token, no refresh.
    release.notify_one();
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn forced_refreshes_at_the_same_time_share_one_call() {
    let auth = MockServer::start().await;
    token_endpoint_issues(&auth, token_body("new-access", Some("r2"), None), 1).await;
    let manager = builder(&auth).initial_tokens(old_tokens()).build().unwrap();
    manager.access_token().await.unwrap();
    // One task polls them all before the refresh can finish: they all ask
    // while the first one's refresh is in flight.
    let results = join_all((0..50).map(|_| manager.refresh())).await;
    for result in results {
        assert_eq!(result.unwrap().access_token().secret(), "new-access");
    }
}

#[tokio::test]
async fn caller_that_gives_up_does_not_lose_the_rotated_token() {
    let gate = Gate::new();
    let token = GatedTokenEndpoint::start(
        &gate,
        vec![
            Answer::ok(token_body("new-access", Some("r2"), Some(3600))).held(),
            Answer::ok(token_body("third-access", Some("r3"), None)),
        ],
    )
    .await;
    let saved = Arc::new(Notify::new());
    let on_saved = saved.clone();
    let manager = builder_at(&token.url())
        .initial_tokens(old_tokens())
        .on_refresh(move |t| {
            if t.refresh_token().unwrap().secret() == "r2" {
                on_saved.notify_one();
            }
        })
        .build()
        .unwrap();
    manager.access_token().await.unwrap();

    // The caller is dropped once the server holds the spent refresh token.
    tokio::select! {
        _ = manager.refresh() => panic!("the refresh cannot finish before its answer"),
        _ = token.arrived(1) => {}
    }
    gate.open();
    tokio::time::timeout(Duration::from_secs(10), saved.notified())
        .await
        .expect("the abandoned refresh completes");
    common::until_published(&manager, "new-access").await;
    assert_eq!(manager.access_token().await.unwrap().secret(), "new-access");
    // And the next refresh spends the rotated token, not the spent one.
    assert_eq!(
        manager.refresh().await.unwrap().access_token().secret(),
        "third-access"
    );
    assert_eq!(
        token.form_values("refresh_token"),
        [Some("r1".to_owned()), Some("r2".to_owned())]
    );
}

/// The API answers 200 to the new token only if the store already has it.
struct RequiresSaved {
    saved: Arc<AtomicBool>,
    checked: Arc<AtomicUsize>,
}

impl Respond for RequiresSaved {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.checked.fetch_add(1, Ordering::SeqCst);
        if self.saved.load(Ordering::SeqCst) {
            ResponseTemplate::new(200)
        } else {
            ResponseTemplate::new(500)
        }
    }
}

#[derive(Debug)]
struct FlagStore(Arc<AtomicBool>);

#[async_trait]
impl reqwest_oauth2_refresh::TokenStore for FlagStore {
    async fn load(&self) -> Result<Option<TokenSet>, reqwest_oauth2_refresh::BoxError> {
        Ok(None)
    }
    async fn save(&self, tokens: &TokenSet) -> Result<(), reqwest_oauth2_refresh::BoxError> {
        if tokens.refresh_token().is_some_and(|t| t.secret() == "r2") {
            self.0.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_token_is_used_only_after_it_is_saved() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    let saved = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicUsize::new(0));
    token_endpoint_issues(&auth, token_body("new-access", Some("r2"), None), 1).await;
    Mock::given(path("/data"))
        .and(header("authorization", "Bearer new-access"))
        .respond_with(RequiresSaved {
            saved: saved.clone(),
            checked: checked.clone(),
        })
        .mount(&api)
        .await;
    api_accepting_only_new_token(&api).await;
    let manager = builder(&auth)
        .store(FlagStore(saved))
        .initial_tokens(old_tokens())
        .build()
        .unwrap();
    let client = client(&manager, &api);
    let responses =
        join_all((0..100).map(|_| client.get(format!("{}/data", api.uri())).send())).await;
    for response in responses {
        assert_eq!(response.unwrap().status(), 200);
    }
    assert_eq!(checked.load(Ordering::SeqCst), 100);
}

#[tokio::test]
async fn failed_save_keeps_the_new_tokens_and_reports_it() {
    #[derive(Debug)]
    struct BrokenStore;
    #[async_trait]
    impl reqwest_oauth2_refresh::TokenStore for BrokenStore {
        async fn load(&self) -> Result<Option<TokenSet>, reqwest_oauth2_refresh::BoxError> {
            Ok(Some(old_tokens()))
        }
        async fn save(&self, _: &TokenSet) -> Result<(), reqwest_oauth2_refresh::BoxError> {
            Err("disk full".into())
        }
    }
    let auth = MockServer::start().await;
    token_endpoint_issues(&auth, token_body("new-access", Some("r2"), None), 1).await;
    let manager = builder(&auth).store(BrokenStore).build().unwrap();
    manager.access_token().await.unwrap();
    let err = manager.refresh().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store {
                operation: "save",
                ..
            }
        ),
        "{err:?}"
    );
    // The old refresh token is spent: the new set must not be dropped.
    let current = manager.cached_tokens().unwrap();
    assert_eq!(current.access_token().secret(), "new-access");
    assert_eq!(current.refresh_token().unwrap().secret(), "r2");
}
