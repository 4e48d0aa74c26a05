//! A token endpoint whose answers can wait for the test: the deterministic
//! way to keep a refresh in flight while callers pile up, or for as long as
//! a test runs, with no delay standing in for synchronisation.
//!
//! It is a small hyper server on the test's own runtime: a held answer is
//! a task waiting on a [`Gate`], so it blocks no thread (wiremock's
//! `Respond` is synchronous, and blocking in it would stall that whole mock
//! server).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// A held answer that nobody releases is sent as a 504 after this, and
/// the endpoint fails the test when dropped: a bound, not a timing.
const HOLD_LIMIT: Duration = Duration::from_secs(30);
/// How long [`GatedTokenEndpoint::arrived`] waits.
const ARRIVAL_LIMIT: Duration = Duration::from_secs(10);

/// Opened once, from any thread (a wiremock `Respond` included); it stays
/// open. Clones share it.
#[derive(Clone)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Gate {
    pub fn new() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }

    pub fn open(&self) {
        self.0.send_replace(true);
    }
}

/// What the endpoint answers to one call.
#[derive(Clone)]
pub struct Answer {
    status: u16,
    body: Option<Value>,
    held: bool,
}

impl Answer {
    /// 200 with `body` (JSON).
    pub fn ok(body: Value) -> Self {
        Self::status(200, Some(body))
    }

    /// `status`, with `body` (JSON) if there is one.
    pub fn status(status: u16, body: Option<Value>) -> Self {
        Self {
            status,
            body,
            held: false,
        }
    }

    /// Sent only once the endpoint's gate is open.
    pub fn held(self) -> Self {
        Self { held: true, ..self }
    }
}

struct Shared {
    answers: Vec<Answer>,
    /// A clone of the test's: while the endpoint lives the gate cannot
    /// close, so a gate the test drops unopened stays shut.
    gate: Gate,
    /// The body of each call, in order.
    bodies: Mutex<Vec<Bytes>>,
    calls: watch::Sender<usize>,
    /// A call that was not `POST /token`, or one more than `answers`.
    unexpected: AtomicBool,
    held_too_long: AtomicBool,
}

/// `POST /token` on a loopback port: call `i` gets `answers[i]`. Like
/// wiremock's `.expect(n)`, it checks when dropped that it was called
/// exactly `answers.len()` times (and only with `POST /token`).
pub struct GatedTokenEndpoint {
    url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl GatedTokenEndpoint {
    pub async fn start(gate: &Gate, answers: Vec<Answer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/token", listener.local_addr().expect("addr"));
        let shared = Arc::new(Shared {
            answers,
            gate: gate.clone(),
            bodies: Mutex::new(Vec::new()),
            calls: watch::channel(0).0,
            unexpected: AtomicBool::new(false),
            held_too_long: AtomicBool::new(false),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));
        Self {
            url,
            shared,
            server,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Waits (bounded) until `n` calls have arrived, answered or held.
    pub async fn arrived(&self, n: usize) {
        let mut calls = self.shared.calls.subscribe();
        tokio::time::timeout(ARRIVAL_LIMIT, calls.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| {
                panic!("{n} token endpoint calls did not arrive in {ARRIVAL_LIMIT:?}")
            })
            .expect("the endpoint lives");
    }

    /// The value of the form field `name` in each call, in order.
    pub fn form_values(&self, name: &str) -> Vec<Option<String>> {
        let bodies = self.shared.bodies.lock().unwrap();
        bodies
            .iter()
            .map(|body| {
                form_urlencoded::parse(body)
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            })
            .collect()
    }
}

impl Drop for GatedTokenEndpoint {
    fn drop(&mut self) {
        // Also ends every connection, and any answer still held.
        self.server.abort();
        if std::thread::panicking() {
            return;
        }
        let calls = *self.shared.calls.borrow();
        assert_eq!(
            calls,
            self.shared.answers.len(),
            "calls to the token endpoint"
        );
        assert!(
            !self.shared.unexpected.load(Ordering::SeqCst),
            "a call that was not POST /token"
        );
        assert!(
            !self.shared.held_too_long.load(Ordering::SeqCst),
            "a held token endpoint answer waited {HOLD_LIMIT:?} for its gate"
        );
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    // Owned by this task: aborting it aborts the connections.
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let shared = shared.clone();
        connections.spawn(async move {
            let service =
                hyper::service::service_fn(move |request| answer(shared.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let expected = request.method() == Method::POST && request.uri().path() == "/token";
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let call = {
        let mut bodies = shared.bodies.lock().unwrap();
        bodies.push(body);
        bodies.len() - 1
    };
    shared.calls.send_modify(|calls| *calls += 1);
    let answer = match shared.answers.get(call) {
        Some(answer) if expected => answer.clone(),
        _ => {
            shared.unexpected.store(true, Ordering::SeqCst);
            Answer::status(404, Some(json!({"error": "unexpected call"})))
        }
    };
    if answer.held {
        let mut open = shared.gate.0.subscribe();
        if tokio::time::timeout(HOLD_LIMIT, open.wait_for(|open| *open))
            .await
            .is_err()
        {
            shared.held_too_long.store(true, Ordering::SeqCst);
            return Ok(json_response(504, None));
        }
    }
    Ok(json_response(answer.status, answer.body))
}

fn json_response(status: u16, body: Option<Value>) -> Response<Full<Bytes>> {
    let response = Response::builder().status(status);
    match body {
        Some(body) => response
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string()))),
        None => response.body(Full::new(Bytes::new())),
    }
    .expect("a response")
}
