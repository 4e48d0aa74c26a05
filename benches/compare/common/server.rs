//! The loopback hyper server: the API (`/api`, `/hot`) and the token
//! endpoint (`/token`), with the counters the benches read.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::LIFETIME;

/// What the loopback server does and counts.
///
/// Tokens are `gen-N`. `/api` answers 200 to `Bearer gen-N` with
/// `N >= min_valid` and 401 (`WWW-Authenticate: Bearer error="invalid_token"`)
/// to anything else, so raising `min_valid` revokes every token issued so
/// far. `/token` answers after `token_delay` with the next `gen-N`. `/hot`
/// answers 200 `ok` to anything, for the hot-path benches.
#[derive(Debug, Default)]
pub struct State {
    /// Calls to `/token` so far.
    pub token_calls: AtomicU64,
    /// The generation the next `/token` call issues.
    pub next_generation: AtomicU64,
    /// The lowest generation `/api` accepts.
    pub min_valid: AtomicU64,
    /// `/token`'s answer delay, in microseconds.
    pub token_delay_us: AtomicU64,
    /// Calls to `/api` so far.
    pub api_calls: AtomicU64,
    /// When the first `/token` call since the last `mark()` arrived, in µs
    /// since `epoch` (0: none yet).
    pub first_token_call_us: AtomicU64,
    /// When a client (through [`Probe`]) first saw a 401 since the last
    /// `mark()`, in µs since `epoch` (0: none yet).
    pub first_401_us: AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl State {
    pub fn set_token_delay(&self, delay: Duration) {
        self.token_delay_us
            .store(delay.as_micros() as u64, Ordering::SeqCst);
    }

    /// Revokes every token issued so far; returns the first valid generation.
    pub fn revoke_all(&self) -> u64 {
        let next = self.next_generation.load(Ordering::SeqCst);
        self.min_valid.store(next, Ordering::SeqCst);
        next
    }

    fn epoch(&self) -> Instant {
        *self.epoch.get_or_init(Instant::now)
    }

    /// Starts timing: returns now, and forgets the last `/token` arrival.
    pub fn mark(&self) -> Instant {
        self.first_token_call_us.store(0, Ordering::SeqCst);
        self.first_401_us.store(0, Ordering::SeqCst);
        let _ = self.epoch();
        Instant::now()
    }

    /// Records now in `slot`, unless it already holds a time.
    pub(super) fn record(&self, slot: &AtomicU64) {
        let since = (self.epoch().elapsed().as_micros() as u64).max(1);
        let _ = slot.compare_exchange(0, since, Ordering::SeqCst, Ordering::SeqCst);
    }

    fn after(&self, slot: &AtomicU64, start: Instant) -> Option<Duration> {
        match slot.load(Ordering::SeqCst) {
            0 => None,
            us => {
                let at = self.epoch() + Duration::from_micros(us);
                Some(at.saturating_duration_since(start))
            }
        }
    }

    /// When the first `/token` call since `mark()` arrived, after `start`.
    pub fn first_token_call_after(&self, start: Instant) -> Option<Duration> {
        self.after(&self.first_token_call_us, start)
    }

    /// When a [`Probe`] first saw a 401 since `mark()`, after `start`.
    pub fn first_401_after(&self, start: Instant) -> Option<Duration> {
        self.after(&self.first_401_us, start)
    }

    /// A token `/api` currently accepts (not counted as a `/token` call).
    pub fn valid_token(&self) -> String {
        format!(
            "gen-{}",
            self.next_generation.fetch_add(1, Ordering::SeqCst)
        )
    }
}

/// A running loopback server; it lives until the process ends.
pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<State>,
}

impl Server {
    /// Starts the server on its own thread, with a current-thread runtime.
    pub fn start() -> Self {
        let state = Arc::new(State::default());
        state.next_generation.store(1, Ordering::SeqCst);
        Self::start_sharing(state)
    }

    /// Starts a second server on its own thread that shares `state` (the
    /// tokens it issues and accepts, its counters) with another: the herd
    /// runs the token endpoint apart from the API, as an authorization
    /// server is, so that a refresh does not queue behind the API's work.
    pub fn start_sharing(state: Arc<State>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let served = state.clone();
        std::thread::Builder::new()
            .name("bench-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(serve(served, tx));
            })
            .expect("server thread");
        let addr = rx.recv().expect("server address");
        Self { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn serve(state: Arc<State>, tx: std::sync::mpsc::Sender<SocketAddr>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("reuseaddr");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    // A deep backlog: the herd opens ~1000 connections at once.
    let listener = socket.listen(4096).expect("listen");
    tx.send(listener.local_addr().expect("local addr"))
        .expect("send address");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/hot") => Response::new(Full::new(Bytes::from_static(b"ok"))),
        (&Method::GET, "/api") => {
            state.api_calls.fetch_add(1, Ordering::Relaxed);
            let generation = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer gen-"))
                .and_then(|n| n.parse::<u64>().ok());
            match generation {
                Some(n) if n >= state.min_valid.load(Ordering::SeqCst) => {
                    Response::new(Full::new(Bytes::from_static(b"ok")))
                }
                _ => Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header(
                        hyper::header::WWW_AUTHENTICATE,
                        r#"Bearer error="invalid_token""#,
                    )
                    .body(Full::new(Bytes::new()))
                    .expect("401"),
            }
        }
        (&Method::POST, "/token") => {
            state.token_calls.fetch_add(1, Ordering::SeqCst);
            state.record(&state.first_token_call_us);
            // Read the form, as a real server would.
            let _ = req.into_body().collect().await;
            let delay = Duration::from_micros(state.token_delay_us.load(Ordering::SeqCst));
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let generation = state.next_generation.fetch_add(1, Ordering::SeqCst);
            let body = format!(
                r#"{{"access_token":"gen-{generation}","token_type":"Bearer","expires_in":{}}}"#,
                LIFETIME.as_secs()
            );
            Response::builder()
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(hyper::header::CACHE_CONTROL, "no-store")
                .body(Full::new(Bytes::from(body)))
                .expect("token response")
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()))
            .expect("404"),
    };
    Ok(response)
}
