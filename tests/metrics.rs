//! Each metric of the feature `metrics` moves when its event happens, and
//! counts it once (a refresh once, not once per caller that waited).
//!
//! Every test runs on a current-thread runtime inside
//! `metrics::with_local_recorder`: the manager's tasks run on that thread,
//! so each test reads its own recorder, whatever runs beside it.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use common::gate::{Answer, Gate, GatedTokenEndpoint};
use common::{TestClock, builder, builder_at, client, token_body, token_endpoint_answers_first};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use reqwest_oauth2_refresh::{FileStore, TokenSet};
use serde_json::json;
use wiremock::matchers::{header, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// What a test recorded: `name{label=value,...}` (labels sorted) → value.
struct Recorded(HashMap<String, DebugValue>);

impl Recorded {
    fn counter(&self, key: &str) -> u64 {
        match self.0.get(key) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            Some(other) => panic!("{key} is not a counter: {other:?}"),
        }
    }

    /// How many values a histogram got; each is checked to be a duration.
    fn observations(&self, key: &str) -> usize {
        match self.0.get(key) {
            Some(DebugValue::Histogram(values)) => {
                assert!(
                    values.iter().all(|v| v.0 >= 0.0 && v.0 < 60.0),
                    "{values:?}"
                );
                values.len()
            }
            None => 0,
            Some(other) => panic!("{key} is not a histogram: {other:?}"),
        }
    }
}

impl std::fmt::Debug for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<_> = self.0.keys().collect();
        keys.sort();
        f.debug_list().entries(keys).finish()
    }
}

/// Runs `test` with a recorder of its own and returns what it recorded.
fn recorded<F: Future<Output = ()>>(test: impl FnOnce() -> F) -> Recorded {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(test()));
    let values = snapshotter.snapshot().into_vec().into_iter();
    Recorded(
        values
            .map(|(key, _, _, value)| {
                let key = key.key();
                let mut labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                labels.sort();
                (format!("{}{{{}}}", key.name(), labels.join(",")), value)
            })
            .collect(),
    )
}

fn tokens(expires_in: u64) -> TokenSet {
    TokenSet::new("at-1")
        .with_refresh_token("rt-1")
        .with_expires_in(Duration::from_secs(expires_in))
}

#[test]
fn a_refresh_counts_once_with_its_trigger_outcome_and_duration() {
    let m = recorded(|| async {
        let auth = MockServer::start().await;
        common::token_endpoint_issues(&auth, token_body("at-2", None, Some(3600)), 1).await;
        let manager = builder(&auth).initial_tokens(tokens(3600)).build().unwrap();
        manager.load_tokens().await.unwrap();
        manager.refresh().await.unwrap();
    });
    assert_eq!(
        m.counter("oauth2_refresh_total{outcome=loaded,trigger=load}"),
        1,
        "{m:?}"
    );
    assert_eq!(
        m.counter("oauth2_refresh_total{outcome=refreshed,trigger=forced}"),
        1,
        "{m:?}"
    );
    assert_eq!(
        m.observations("oauth2_refresh_duration_seconds{trigger=forced}"),
        1
    );
    assert_eq!(
        m.counter("oauth2_token_endpoint_attempts_total{call=refresh_token,outcome=ok}"),
        1
    );
    assert_eq!(m.counter("oauth2_token_endpoint_retries_total{}"), 0);
    // The memory store: the seed saved, then the new set; one load.
    assert_eq!(
        m.counter("oauth2_store_operations_total{op=save,outcome=ok}"),
        2
    );
    assert_eq!(
        m.counter("oauth2_store_operations_total{op=load,outcome=ok}"),
        1
    );
    assert_eq!(
        m.counter("oauth2_store_operations_total{op=lock,outcome=ok}"),
        1
    );
}

#[test]
fn a_transient_failure_counts_an_attempt_and_a_retry() {
    let m = recorded(|| async {
        let auth = MockServer::start().await;
        token_endpoint_answers_first(&auth, ResponseTemplate::new(503), 1).await;
        common::token_endpoint_issues(&auth, token_body("at-2", None, Some(3600)), 1).await;
        let manager = builder(&auth).initial_tokens(tokens(3600)).build().unwrap();
        manager.refresh().await.unwrap();
    });
    let attempts = "oauth2_token_endpoint_attempts_total{call=refresh_token,outcome=";
    assert_eq!(m.counter(&format!("{attempts}transient}}")), 1, "{m:?}");
    assert_eq!(m.counter(&format!("{attempts}ok}}")), 1, "{m:?}");
    assert_eq!(m.counter("oauth2_token_endpoint_retries_total{}"), 1);
    assert_eq!(
        m.counter("oauth2_refresh_total{outcome=refreshed,trigger=forced}"),
        1
    );
}

#[test]
fn a_dead_refresh_token_counts_invalid_grant_and_the_end_of_the_session() {
    let m = recorded(|| async {
        let auth = MockServer::start().await;
        let dead = ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"}));
        common::token_endpoint_answers(&auth, dead, 1).await;
        let manager = builder(&auth).initial_tokens(tokens(3600)).build().unwrap();
        assert!(manager.refresh().await.is_err());
    });
    assert_eq!(
        m.counter("oauth2_refresh_total{outcome=invalid_grant,trigger=forced}"),
        1,
        "{m:?}"
    );
    assert_eq!(
        m.counter("oauth2_session_ends_total{reason=invalid_grant}"),
        1
    );
    assert_eq!(
        m.counter("oauth2_token_endpoint_attempts_total{call=refresh_token,outcome=error}"),
        1
    );
}

#[test]
fn callers_that_wait_for_the_refresh_in_flight_are_counted_the_refresh_once() {
    const CALLERS: usize = 20;
    let m = recorded(|| async {
        let gate = Gate::new();
        let answer = Answer::ok(token_body("at-2", None, Some(3600))).held();
        let token = GatedTokenEndpoint::start(&gate, vec![answer]).await;
        let clock = TestClock::new();
        let manager = builder_at(&token.url())
            .clock(clock.clone())
            .initial_tokens(tokens(3600))
            .build()
            .unwrap();
        manager.load_tokens().await.unwrap();
        clock.advance(Duration::from_secs(3601)); // expired: everyone waits
        let calls = futures_util::future::join_all((0..CALLERS).map(|_| manager.access_token()));
        let open = async {
            token.arrived(1).await;
            gate.open();
        };
        let (tokens, ()) = tokio::join!(calls, open);
        assert!(
            tokens
                .iter()
                .all(|t| t.as_ref().unwrap().secret() == "at-2")
        );
    });
    assert_eq!(
        m.counter("oauth2_refresh_total{outcome=refreshed,trigger=expiry}"),
        1,
        "{m:?}"
    );
    assert_eq!(
        m.counter("oauth2_refresh_waiters_total{trigger=expiry}"),
        CALLERS as u64 - 1
    );
}

#[test]
fn a_refresh_inside_the_leeway_counts_as_background() {
    let m = recorded(|| async {
        let gate = Gate::new();
        gate.open();
        let answer = Answer::ok(token_body("at-2", None, Some(3600)));
        let token = GatedTokenEndpoint::start(&gate, vec![answer]).await;
        let clock = TestClock::new();
        let manager = builder_at(&token.url())
            .clock(clock.clone())
            .initial_tokens(tokens(3600))
            .build()
            .unwrap();
        manager.load_tokens().await.unwrap();
        clock.advance(Duration::from_secs(3590));
        assert_eq!(manager.access_token().await.unwrap().secret(), "at-1");
        common::until_published(&manager, "at-2").await;
    });
    assert_eq!(
        m.counter("oauth2_refresh_total{outcome=refreshed,trigger=background}"),
        1,
        "{m:?}"
    );
}

#[test]
fn a_replay_after_a_401_is_counted() {
    let m = recorded(|| async {
        let auth = MockServer::start().await;
        common::token_endpoint_issues(&auth, token_body("at-2", None, Some(3600)), 1).await;
        let api = MockServer::start().await;
        for (token, status) in [("at-1", 401), ("at-2", 200)] {
            Mock::given(path("/data"))
                .and(header("authorization", format!("Bearer {token}").as_str()))
                .respond_with(ResponseTemplate::new(status))
                .expect(1)
                .mount(&api)
                .await;
        }
        let manager = builder(&auth).initial_tokens(tokens(3600)).build().unwrap();
        let response = client(&manager, &api)
            .get(format!("{}/data", api.uri()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    });
    assert_eq!(
        m.counter("oauth2_replays_total{transport=reqwest}"),
        1,
        "{m:?}"
    );
    assert_eq!(
        m.counter("oauth2_refresh_total{outcome=refreshed,trigger=rejected}"),
        1
    );
}

#[test]
fn store_calls_failures_and_the_lock_wait_are_recorded() {
    let dir = std::env::temp_dir().join(format!("oauth2-refresh-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens.json");
    let m = recorded(|| async {
        let auth = MockServer::start().await;
        common::token_endpoint_issues(&auth, token_body("at-2", None, Some(3600)), 1).await;
        let manager = builder(&auth)
            .store(FileStore::new(&file).unwrap())
            .initial_tokens(tokens(3600))
            .build()
            .unwrap();
        manager.refresh().await.unwrap();
        // A directory where the file should be: every load fails.
        let broken = builder(&auth)
            .store(FileStore::new(&dir).unwrap())
            .build()
            .unwrap();
        assert!(broken.load_tokens().await.is_err());
    });
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        m.counter("oauth2_store_operations_total{op=lock,outcome=ok}"),
        1,
        "{m:?}"
    );
    assert_eq!(
        m.counter("oauth2_store_operations_total{op=release,outcome=ok}"),
        1
    );
    assert!(m.counter("oauth2_store_operations_total{op=save,outcome=ok}") >= 1);
    assert_eq!(
        m.counter("oauth2_store_operations_total{op=load,outcome=error}"),
        1
    );
    assert_eq!(m.observations("oauth2_store_lock_wait_seconds{}"), 1);
}
