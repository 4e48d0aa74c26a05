//! A program that exits must not leave a rotation half way: the server has
//! spent the old refresh token, and the new one would die with the process.
//! The request that starts a background refresh (middleware, tower layer)
//! answers once the refresh has saved its tokens; `shutdown` waits for a
//! refresh nobody else waits for. The token endpoint holds its answer on a
//! gate and a log records the order of events: nothing depends on timing.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::gate::{Answer, Gate, GatedTokenEndpoint};
use common::{TestClock, builder_at, token_body};
use reqwest_oauth2_refresh::{BoxError, TokenManager, TokenSet, TokenStore};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A store that logs each save; the test logs its own events beside them.
#[derive(Debug, Default)]
struct LoggingStore {
    tokens: Mutex<Option<TokenSet>>,
    log: Log,
}

type Log = Arc<Mutex<Vec<String>>>;

fn note(log: &Log, event: impl Into<String>) {
    log.lock().unwrap().push(event.into());
}

#[async_trait]
impl TokenStore for LoggingStore {
    async fn load(&self) -> Result<Option<TokenSet>, BoxError> {
        Ok(self.tokens.lock().unwrap().clone())
    }
    async fn save(&self, tokens: &TokenSet) -> Result<(), BoxError> {
        note(
            &self.log,
            format!("saved {}", tokens.access_token().secret()),
        );
        *self.tokens.lock().unwrap() = Some(tokens.clone());
        Ok(())
    }
}

/// A manager on `token` whose hour-long tokens are 10 s from expiry: inside
/// the leeway, valid.
async fn due_manager(token: &GatedTokenEndpoint, log: &Log) -> (TokenManager, Arc<TestClock>) {
    let clock = TestClock::new();
    let manager = builder_at(&token.url())
        .clock(clock.clone())
        .store(LoggingStore {
            tokens: Mutex::default(),
            log: log.clone(),
        })
        .initial_tokens(
            TokenSet::new("old-access")
                .with_refresh_token("r1")
                .with_expires_in(Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    manager.load_tokens().await.unwrap();
    log.lock().unwrap().clear(); // the seed's save
    clock.advance(Duration::from_secs(3590));
    (manager, clock)
}

async fn api() -> MockServer {
    let api = MockServer::start().await;
    Mock::given(path("/orders"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&api)
        .await;
    api
}

/// A due manager whose refresh the token endpoint holds until `gate`
/// opens, and the API it calls.
struct Held {
    gate: Gate,
    token: GatedTokenEndpoint,
    log: Log,
    manager: TokenManager,
    api: MockServer,
}

async fn held_refresh() -> Held {
    let gate = Gate::new();
    let answer = Answer::ok(token_body("new-access", Some("r2"), Some(3600))).held();
    let token = GatedTokenEndpoint::start(&gate, vec![answer]).await;
    let log = Log::default();
    let (manager, _clock) = due_manager(&token, &log).await;
    Held {
        gate,
        token,
        log,
        manager,
        api: api().await,
    }
}

/// Sends a request that starts the refresh the token endpoint holds, then
/// another, then opens the gate: the first must answer after the save, the
/// second before it.
async fn starter_answers_after_the_save<F, R>(
    gate: &Gate,
    token: &GatedTokenEndpoint,
    log: &Log,
    send: F,
) where
    F: Fn() -> R,
    R: std::future::Future<Output = http::StatusCode> + Send + 'static,
{
    let first = tokio::spawn({
        let (request, log) = (send(), log.clone());
        async move {
            let status = request.await;
            note(&log, "first answered");
            status
        }
    });
    token.arrived(1).await; // the refresh it started is held
    // Every other request goes on with the valid token, refresh or not.
    assert_eq!(send().await, 200);
    note(log, "second answered");
    gate.open();
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(
        *log.lock().unwrap(),
        ["second answered", "saved new-access", "first answered"],
        "the request that started the refresh answered after its tokens were saved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_that_starts_a_background_refresh_answers_once_it_is_saved() {
    let Held {
        gate,
        token,
        log,
        manager,
        api,
    } = held_refresh().await;
    let client = common::client(&manager, &api);
    let url = format!("{}/orders", api.uri());

    let send = move || {
        let (client, url) = (client.clone(), url.clone());
        async move { client.get(&url).send().await.unwrap().status() }
    };
    starter_answers_after_the_save(&gate, &token, &log, send).await;
    let sent: Vec<_> = api
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent, ["Bearer old-access", "Bearer old-access"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_the_background_refresh_then_refreshes_in_the_foreground() {
    let gate = Gate::new();
    let answers = vec![
        Answer::ok(token_body("second-access", Some("r2"), Some(3600))).held(),
        Answer::ok(token_body("third-access", Some("r3"), Some(3600))),
    ];
    let token = GatedTokenEndpoint::start(&gate, answers).await;
    let log = Log::default();
    let (manager, clock) = due_manager(&token, &log).await;

    // `access_token` starts the refresh and returns at once: nobody waits.
    let stale = manager.access_token().await.unwrap();
    assert_eq!(stale.secret(), "old-access");
    token.arrived(1).await;
    let shutdown = tokio::spawn({
        let (manager, log) = (manager.clone(), log.clone());
        async move {
            let done = manager.shutdown().await;
            note(&log, "shut down");
            done
        }
    });
    note(&log, "gate opened");
    gate.open();
    shutdown.await.unwrap().unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["gate opened", "saved second-access", "shut down"]
    );

    // Shut down, the manager still works, with no task left behind: a
    // token inside the leeway is refreshed before the call returns.
    clock.advance(Duration::from_secs(3590));
    assert_eq!(
        manager.access_token().await.unwrap().secret(),
        "third-access"
    );
    assert_eq!(
        token.form_values("refresh_token"),
        [Some("r1".into()), Some("r2".into())]
    );
}

#[tokio::test]
async fn shutdown_with_nothing_in_flight_returns_at_once() {
    let gate = Gate::new();
    let token = GatedTokenEndpoint::start(&gate, Vec::new()).await;
    let log = Log::default();
    let (manager, _clock) = due_manager(&token, &log).await;
    manager.shutdown().await.unwrap();
    manager.shutdown().await.unwrap();
    assert!(log.lock().unwrap().is_empty(), "nothing to save");
}

#[cfg(feature = "tower")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_tower_layer_too() {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use reqwest_oauth2_refresh::tower::OAuth2Layer;
    use tower::{Layer as _, ServiceExt as _};

    let Held {
        gate,
        token,
        log,
        manager,
        api,
    } = held_refresh().await;
    let service = OAuth2Layer::builder(manager.clone())
        .allow_origin(&api.uri())
        .build()
        .unwrap()
        .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let url = format!("{}/orders", api.uri());
    let request = move || http::Request::get(&url).body(Full::default()).unwrap();

    let send = move || {
        let (service, request) = (service.clone(), request());
        async move { service.oneshot(request).await.unwrap().status() }
    };
    starter_answers_after_the_save(&gate, &token, &log, send).await;
}
