//! The spans and events the README's Observability section promises: their
//! names, their fields, and that no token or secret is ever in one.
//!
//! One global layer per test binary records every span and event, each on
//! the list of the thread that made it; the tests run on current-thread
//! runtimes, so all of a test's tasks record on its list (a thread-scoped
//! subscriber would lose call sites whose interest tracing cached on another
//! thread, see tests/common/logs.rs).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Mutex, Once};
use std::thread::ThreadId;
use std::time::Duration;

use common::gate::{Answer, Gate, GatedTokenEndpoint};
use common::{
    TestClock, builder, builder_at, client, token_body, token_endpoint_answers_first,
    token_endpoint_issues,
};
use reqwest_oauth2_refresh::TokenSet;
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use wiremock::matchers::{header, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ACCESS: &str = "at-secret-0001";
const REFRESH: &str = "rt-secret-0001";
const NEW_ACCESS: &str = "at-secret-0002";
const NEW_REFRESH: &str = "rt-secret-0002";
const CLIENT_SECRET: &str = "cs-secret-0001";

/// A span or an event, with its fields as text.
#[derive(Debug, Clone)]
struct Seen {
    kind: &'static str,
    name: String,
    fields: BTreeMap<String, String>,
    /// For an event, the names of the spans it happened in.
    scope: Vec<String>,
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
}

type Log = HashMap<ThreadId, Vec<Seen>>;
static LOG: Mutex<Option<Log>> = Mutex::new(None);
/// Where each span's record is in its thread's list.
static SPANS: Mutex<Option<HashMap<u64, (ThreadId, usize)>>> = Mutex::new(None);

struct Recorder;

fn push(seen: Seen) -> usize {
    let thread = std::thread::current().id();
    let mut log = LOG.lock().unwrap();
    let list = log
        .get_or_insert_with(HashMap::new)
        .entry(thread)
        .or_default();
    list.push(seen);
    list.len() - 1
}

impl<S> Layer<S> for Recorder
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let seen = Seen {
            kind: "span",
            name: attrs.metadata().name().into(),
            fields: fields.0,
            scope: Vec::new(),
        };
        let at = push(seen);
        let thread = std::thread::current().id();
        SPANS
            .lock()
            .unwrap()
            .get_or_insert_with(HashMap::new)
            .insert(id.into_u64(), (thread, at));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        let Some((thread, at)) = SPANS
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|s| s.get(&id.into_u64()).copied())
        else {
            return;
        };
        if let Some(seen) = LOG
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|l| l.get_mut(&thread))
            .and_then(|l| l.get_mut(at))
        {
            seen.fields.extend(fields.0);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let scope = ctx
            .event_scope(event)
            .map(|scope| scope.from_root().map(|s| s.name().to_owned()).collect())
            .unwrap_or_default();
        push(Seen {
            kind: "event",
            name: event.metadata().name().into(),
            fields: fields.0,
            scope,
        });
    }
}

/// Runs `test` on a current-thread runtime and returns what it recorded.
fn traced<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) -> Vec<Seen> {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::registry()
            .with(Recorder)
            .with(tracing_subscriber::filter::LevelFilter::TRACE);
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    });
    let thread = std::thread::current().id();
    LOG.lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .remove(&thread);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test());
    let seen = LOG
        .lock()
        .unwrap()
        .as_mut()
        .and_then(|l| l.remove(&thread))
        .unwrap_or_default();
    assert_no_secret(&seen);
    seen
}

fn assert_no_secret(seen: &[Seen]) {
    for s in seen {
        for (field, value) in &s.fields {
            for secret in [ACCESS, REFRESH, NEW_ACCESS, NEW_REFRESH, CLIENT_SECRET] {
                assert!(
                    !value.contains(secret),
                    "{secret} in {} {}.{field}: {value}",
                    s.kind,
                    s.name
                );
            }
        }
    }
}

fn find<'a>(seen: &'a [Seen], kind: &str, name: &str) -> Vec<&'a Seen> {
    seen.iter()
        .filter(|s| s.kind == kind && s.name == name)
        .collect()
}

fn one<'a>(seen: &'a [Seen], kind: &str, name: &str) -> &'a Seen {
    match find(seen, kind, name).as_slice() {
        [one] => one,
        other => panic!("{} {kind} {name}: {other:#?}", other.len()),
    }
}

fn field<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.fields
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {seen:#?}"))
}

fn tokens() -> TokenSet {
    TokenSet::new(ACCESS)
        .with_refresh_token(REFRESH)
        .with_expires_in(Duration::from_secs(3600))
}

#[test]
fn a_refresh_with_a_retry_shows_its_span_its_attempts_and_its_store_calls() {
    let seen = traced(|| async {
        let auth = MockServer::start().await;
        token_endpoint_answers_first(&auth, ResponseTemplate::new(503), 1).await;
        token_endpoint_issues(
            &auth,
            token_body(NEW_ACCESS, Some(NEW_REFRESH), Some(3600)),
            1,
        )
        .await;
        let manager = builder(&auth)
            .client_secret(CLIENT_SECRET)
            .initial_tokens(tokens())
            .build()
            .unwrap();
        manager.load_tokens().await.unwrap();
        manager.refresh().await.unwrap();
    });
    let refreshes = find(&seen, "span", "oauth2_refresh");
    assert_eq!(refreshes.len(), 2, "the first load and the forced refresh");
    let forced = refreshes[1];
    assert_eq!(field(forced, "trigger"), "forced");
    assert_eq!(field(forced, "attempts"), "2");
    assert_eq!(field(forced, "outcome"), "refreshed");
    assert!(field(forced, "duration_ms").parse::<u64>().is_ok());
    assert_eq!(field(refreshes[0], "outcome"), "loaded");

    let ends = find(&seen, "event", "oauth2_refresh");
    assert_eq!(ends.len(), 2);
    assert_eq!(field(ends[1], "outcome"), "refreshed");
    assert_eq!(field(ends[1], "trigger"), "forced");

    let attempts = find(&seen, "span", "oauth2_token_request");
    assert_eq!(attempts.len(), 2);
    for (n, (attempt, status)) in attempts.iter().zip(["503", "200"]).enumerate() {
        assert_eq!(field(attempt, "call"), "refresh_token");
        assert_eq!(field(attempt, "attempt"), n.to_string());
        assert_eq!(field(attempt, "status"), status);
    }
    let answered = find(&seen, "event", "oauth2_token_request");
    let outcomes: Vec<_> = answered.iter().map(|e| field(e, "outcome")).collect();
    assert_eq!(outcomes, ["transient", "ok"]);
    assert!(
        answered
            .iter()
            .all(|e| e.scope.contains(&"oauth2_refresh".to_owned()))
    );
    let retry = one(&seen, "event", "oauth2_token_retry");
    assert_eq!(field(retry, "retry"), "1");
    assert!(field(retry, "delay_ms").parse::<u64>().is_ok());

    let store: Vec<_> = find(&seen, "event", "oauth2_store")
        .iter()
        .map(|e| (field(e, "op").to_owned(), field(e, "outcome").to_owned()))
        .collect();
    for op in ["load", "save", "lock"] {
        assert!(store.contains(&(op.into(), "ok".into())), "{op}: {store:?}");
    }
    assert!(
        find(&seen, "span", "oauth2_store")
            .iter()
            .all(|s| s.fields.contains_key("op"))
    );
}

#[test]
fn a_replay_a_wait_and_the_end_of_the_session_are_seen() {
    let seen = traced(|| async {
        let gate = Gate::new();
        let dead = json!({"error": "invalid_grant"});
        let answers = vec![
            Answer::ok(token_body(NEW_ACCESS, None, Some(3600))),
            Answer::ok(token_body("at-3", None, Some(3600))).held(),
            Answer::status(400, Some(dead)),
        ];
        let token = GatedTokenEndpoint::start(&gate, answers).await;
        let api = MockServer::start().await;
        for (token, status) in [(ACCESS, 401), (NEW_ACCESS, 200)] {
            Mock::given(path("/data"))
                .and(header("authorization", format!("Bearer {token}").as_str()))
                .respond_with(ResponseTemplate::new(status))
                .expect(1)
                .mount(&api)
                .await;
        }
        let clock = TestClock::new();
        let manager = builder_at(&token.url())
            .clock(clock.clone())
            .initial_tokens(tokens())
            .build()
            .unwrap();
        let response = client(&manager, &api)
            .get(format!("{}/data", api.uri()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "replayed with the new token");
        // Expired: two callers, one refreshes (held), the other waits.
        clock.advance(Duration::from_secs(3601));
        let callers = futures_util::future::join(manager.access_token(), manager.access_token());
        let open = async {
            token.arrived(2).await;
            gate.open();
        };
        let ((a, b), ()) = tokio::join!(callers, open);
        assert_eq!(a.unwrap().secret(), "at-3");
        assert_eq!(b.unwrap().secret(), "at-3");
        assert!(manager.refresh().await.is_err());
    });
    let replay = one(&seen, "span", "oauth2_replay");
    assert_eq!(field(replay, "transport"), "reqwest");
    assert_eq!(field(replay, "status"), "200");
    assert_eq!(field(one(&seen, "event", "oauth2_replay"), "status"), "200");
    let triggers: Vec<_> = find(&seen, "span", "oauth2_refresh")
        .iter()
        .map(|s| {
            (
                field(s, "trigger").to_owned(),
                field(s, "outcome").to_owned(),
            )
        })
        .collect();
    let expected = [
        ("load", "loaded"),
        ("rejected", "refreshed"),
        ("expiry", "refreshed"),
        ("forced", "invalid_grant"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(t, o)| (t.to_string(), o.to_string()))
        .collect();
    assert_eq!(triggers, expected);
    let waited = one(&seen, "event", "oauth2_flight_wait");
    assert_eq!(field(waited, "trigger"), "expiry");
    assert_eq!(field(waited, "outcome"), "ok");
    let end = one(&seen, "event", "oauth2_session_end");
    assert_eq!(field(end, "reason"), "invalid_grant");
}
