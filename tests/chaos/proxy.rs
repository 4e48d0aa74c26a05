//! The fault proxies, on loopback: one in front of the token endpoint
//! (HTTP: it reads each call, so it can hold a refresh in flight for the
//! driver to kill its sender, tell when a token response went out, and
//! keep the ledger of which refresh token was spent for which), and one in
//! front of Redis (TCP: it delays, drops and resets connections, and cuts
//! the live ones on demand).
//!
//! Faults are injected only *before* a call reaches the server: a call the
//! server answered and whose answer is then lost is a rotation no client
//! can recover (the refresh token is spent, its successor gone), which is
//! what a kill between the server's answer and the save does too; the
//! driver handles that case on its own (see `driver.rs`).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use crate::faults::{FaultLog, Rng};

/// The header each worker's token requests carry: its index.
pub const WORKER_HEADER: &str = "x-chaos-worker";

/// How often each fault hits a new connection, in thousandths.
#[derive(Debug, Clone, Copy)]
pub struct Shares {
    pub drop: u64,
    pub reset: u64,
    pub unavailable: u64,
    pub delay: u64,
}

/// A token response the server gave, through the proxy.
#[derive(Debug, Clone)]
pub struct Issued {
    pub worker: usize,
    pub presented: String,
    pub refresh: String,
    pub body: Vec<u8>,
    pub at: SystemTime,
}

/// What the driver asked the proxy to do with the next refresh.
enum Arm {
    /// Hold it before it reaches the server and hand the driver its sender,
    /// the token it presents, and a switch: `true` forwards it (the server
    /// spends the token after its sender died), `false` drops it.
    Hold(oneshot::Sender<Held>),
    /// Forward it, and tell the driver once its answer has been written.
    AfterDelivery(oneshot::Sender<usize>),
}

/// A refresh the proxy holds for the driver.
pub struct Held {
    pub worker: usize,
    pub presented: String,
    pub forward: oneshot::Sender<bool>,
}

#[derive(Default)]
struct Ledger {
    /// Refresh tokens forwarded to the server, by sender: each is spent.
    presented: Vec<(usize, String)>,
    issued: Vec<Issued>,
    /// Workers marked for a kill: what they send from now on is spent for
    /// good, whatever they do.
    killed: HashSet<usize>,
    /// Spent tokens whose sender died: not forwarded again (a 503), and how
    /// often someone presented each.
    quarantine: HashMap<String, u64>,
    in_flight: HashMap<usize, usize>,
}

struct TokenState {
    upstream: String,
    http: reqwest::Client,
    rng: Mutex<Rng>,
    faults_on: AtomicBool,
    shares: Shares,
    faults: FaultLog,
    ledger: Mutex<Ledger>,
    arm: Mutex<Option<Arm>>,
}

/// The fault proxy in front of the token endpoint.
#[derive(Clone)]
pub struct TokenProxy {
    pub addr: SocketAddr,
    state: Arc<TokenState>,
}

type Answer = Response<Signalled>;

impl TokenProxy {
    pub async fn start(upstream: &str, shares: Shares, seed: u64, faults: FaultLog) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let state = Arc::new(TokenState {
            upstream: upstream.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a client"),
            rng: Mutex::new(Rng::new(seed)),
            faults_on: AtomicBool::new(true),
            shares,
            faults,
            ledger: Mutex::default(),
            arm: Mutex::new(None),
        });
        let accept = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(accept.clone().connection(stream));
            }
        });
        Self { addr, state }
    }

    /// The token endpoint's URL, through the proxy.
    pub fn url(&self) -> String {
        let path = reqwest::Url::parse(&self.state.upstream)
            .map(|u| u.path().to_owned())
            .unwrap_or_default();
        format!("http://{}{path}", self.addr)
    }

    pub fn set_faults(&self, on: bool) {
        self.state.faults_on.store(on, Ordering::SeqCst);
    }

    /// Holds the next refresh; see [`Arm::Hold`].
    pub fn hold_next(&self) -> oneshot::Receiver<Held> {
        let (tx, rx) = oneshot::channel();
        *self.state.arm.lock().unwrap() = Some(Arm::Hold(tx));
        rx
    }

    /// Signals the next refresh answer written; see [`Arm::AfterDelivery`].
    pub fn after_next_delivery(&self) -> oneshot::Receiver<usize> {
        let (tx, rx) = oneshot::channel();
        *self.state.arm.lock().unwrap() = Some(Arm::AfterDelivery(tx));
        rx
    }

    pub fn disarm(&self) {
        self.state.arm.lock().unwrap().take();
    }

    /// Before `worker` is killed: every token it sent, or sends until it
    /// is dead, is spent for good.
    pub fn mark_killed(&self, worker: usize) {
        let mut ledger = self.state.ledger.lock().unwrap();
        ledger.killed.insert(worker);
        let spent: Vec<String> = ledger
            .presented
            .iter()
            .filter(|(w, _)| *w == worker)
            .map(|(_, rt)| rt.clone())
            .collect();
        for rt in spent {
            ledger.quarantine.entry(rt).or_default();
        }
    }

    /// `refresh` is spent for good (a held call that is going to reach the
    /// server after its sender died): no one else's use of it is forwarded.
    pub fn quarantine(&self, refresh: &str) {
        let mut ledger = self.state.ledger.lock().unwrap();
        ledger.quarantine.entry(refresh.to_owned()).or_default();
    }

    /// A restarted `worker` (a new process under the same index).
    pub fn mark_restarted(&self, worker: usize) {
        self.state.ledger.lock().unwrap().killed.remove(&worker);
    }

    /// Calls of `worker` that are at the server now.
    pub fn in_flight(&self, worker: usize) -> usize {
        let ledger = self.state.ledger.lock().unwrap();
        ledger.in_flight.get(&worker).copied().unwrap_or_default()
    }

    /// The last token response the server gave.
    pub fn head(&self) -> Option<Issued> {
        self.state.ledger.lock().unwrap().issued.last().cloned()
    }

    pub fn forwarded(&self) -> usize {
        self.state.ledger.lock().unwrap().presented.len()
    }

    /// How often each quarantined token was presented again.
    pub fn quarantine_hits(&self) -> HashMap<String, u64> {
        self.state.ledger.lock().unwrap().quarantine.clone()
    }
}

impl TokenState {
    async fn connection(self: Arc<Self>, stream: TcpStream) {
        if self.faults_on.load(Ordering::SeqCst) {
            let (drop_share, reset_share) = (self.shares.drop, self.shares.reset);
            let roll = self.rng.lock().unwrap().below(1000);
            if roll < drop_share {
                self.faults.record("token: dropped");
                return;
            }
            if roll < drop_share + reset_share {
                self.faults.record("token: reset");
                let _ = stream.set_zero_linger();
                return;
            }
        }
        let service = hyper::service::service_fn(move |request| self.clone().answer(request));
        // One call per connection: every call meets the faults above.
        let _ = hyper::server::conn::http1::Builder::new()
            .keep_alive(false)
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }

    /// The answer a fault gives instead of the server's, if one does: a
    /// 503 for a token quarantined after its sender's death, or one of the
    /// share; a delay is served here, and the call goes on after it.
    async fn fault_before(&self, presented: Option<&str>) -> Option<Answer> {
        if let Some(rt) = presented
            && let Some(hits) = self.ledger.lock().unwrap().quarantine.get_mut(rt)
        {
            *hits += 1;
            self.faults
                .record("token: spent token of a killed process, 503");
            return Some(status(StatusCode::SERVICE_UNAVAILABLE));
        }
        if self.faults_on.load(Ordering::SeqCst) {
            let (roll, delay) = {
                let mut rng = self.rng.lock().unwrap();
                (rng.below(1000), rng.between(100, 1200))
            };
            if roll < self.shares.unavailable {
                self.faults.record("token: 503");
                return Some(status(StatusCode::SERVICE_UNAVAILABLE));
            }
            if roll < self.shares.unavailable + self.shares.delay {
                self.faults.record("token: delayed");
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
        }
        None
    }

    async fn answer(self: Arc<Self>, request: Request<Incoming>) -> Result<Answer, String> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        let worker = parts
            .headers
            .get(WORKER_HEADER)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(usize::MAX);
        let presented = form_urlencoded::parse(&body)
            .find(|(name, _)| name == "refresh_token")
            .map(|(_, value)| value.into_owned());
        if let Some(answer) = self.fault_before(presented.as_deref()).await {
            return Ok(answer);
        }
        let arm = match presented {
            Some(_) => self.arm.lock().unwrap().take(),
            None => None,
        };
        let (hold, delivered) = match arm {
            Some(Arm::Hold(driver)) => (Some(driver), None),
            Some(Arm::AfterDelivery(driver)) => (None, Some(driver)),
            None => (None, None),
        };
        // On a task of its own: hyper drops this future when the worker's
        // connection dies (a kill), but a call that left for the server
        // goes on, as it would on a network.
        let state = self.clone();
        let (code, answer) = tokio::spawn(async move {
            if let Some(driver) = hold {
                let (forward_tx, forward_rx) = oneshot::channel();
                let _ = driver.send(Held {
                    worker,
                    presented: presented.clone().unwrap_or_default(),
                    forward: forward_tx,
                });
                let forward = tokio::time::timeout(Duration::from_secs(15), forward_rx).await;
                if !matches!(forward, Ok(Ok(true))) {
                    return Err("held, then dropped".to_owned());
                }
            }
            state.forward(&parts, body, worker, presented).await
        })
        .await
        .map_err(|e| e.to_string())??;
        Ok(Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .header("cache-control", "no-store")
            .body(Signalled {
                body: Full::new(Bytes::from(answer)),
                written: delivered.map(|tx| (tx, worker)),
            })
            .expect("a response"))
    }

    /// The call, to the server; the ledger learns what it spent and gave.
    async fn forward(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        worker: usize,
        presented: Option<String>,
    ) -> Result<(StatusCode, Vec<u8>), String> {
        {
            let mut ledger = self.ledger.lock().unwrap();
            if let Some(rt) = &presented {
                ledger.presented.push((worker, rt.clone()));
                if ledger.killed.contains(&worker) {
                    ledger.quarantine.entry(rt.clone()).or_default();
                }
            }
            *ledger.in_flight.entry(worker).or_default() += 1;
        }
        let mut call = self.http.post(&self.upstream).body(body);
        for name in ["authorization", "content-type", "accept"] {
            if let Some(value) = parts.headers.get(name) {
                call = call.header(name, value);
            }
        }
        let answered = async {
            let response = call.send().await?;
            let code = response.status();
            Ok::<_, reqwest::Error>((code, response.bytes().await?.to_vec()))
        }
        .await;
        let mut ledger = self.ledger.lock().unwrap();
        if let Some(n) = ledger.in_flight.get_mut(&worker) {
            *n -= 1;
        }
        let (code, answer) = answered.map_err(|e| format!("the server: {e}"))?;
        let code = StatusCode::from_u16(code.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let refresh = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v["refresh_token"].as_str().map(str::to_owned));
        if let (Some(presented), Some(refresh), true) = (presented, refresh, code.is_success()) {
            ledger.issued.push(Issued {
                worker,
                presented,
                refresh,
                body: answer.clone(),
                at: SystemTime::now(),
            });
        }
        Ok((code, answer))
    }
}

fn status(code: StatusCode) -> Answer {
    Response::builder()
        .status(code)
        .body(Signalled {
            body: Full::new(Bytes::new()),
            written: None,
        })
        .expect("a response")
}

/// A response body that tells the driver when hyper is done with it: the
/// answer has been written to the worker's socket.
pub struct Signalled {
    body: Full<Bytes>,
    written: Option<(oneshot::Sender<usize>, usize)>,
}

impl Drop for Signalled {
    fn drop(&mut self) {
        if let Some((tx, worker)) = self.written.take() {
            let _ = tx.send(worker);
        }
    }
}

impl Body for Signalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The fault proxy in front of Redis: TCP only.
#[derive(Clone)]
pub struct RedisProxy {
    pub addr: SocketAddr,
    cut: Arc<watch::Sender<u64>>,
    faults_on: Arc<AtomicBool>,
}

impl RedisProxy {
    pub async fn start(upstream: SocketAddr, shares: Shares, seed: u64, faults: FaultLog) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let (cut, _) = watch::channel(0u64);
        let cut = Arc::new(cut);
        let faults_on = Arc::new(AtomicBool::new(true));
        let rng = Arc::new(Mutex::new(Rng::new(seed)));
        let (accept_cut, accept_on) = (cut.clone(), faults_on.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let roll = if accept_on.load(Ordering::SeqCst) {
                    let mut rng = rng.lock().unwrap();
                    Some((rng.below(1000), rng.between(100, 800)))
                } else {
                    None
                };
                let cut = accept_cut.subscribe();
                tokio::spawn(relay(client, upstream, roll, shares, cut, faults.clone()));
            }
        });
        Self {
            addr,
            cut,
            faults_on,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Resets every live connection.
    pub fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn set_faults(&self, on: bool) {
        self.faults_on.store(on, Ordering::SeqCst);
    }
}

async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    roll: Option<(u64, u64)>,
    shares: Shares,
    mut cut: watch::Receiver<u64>,
    faults: FaultLog,
) {
    if let Some((roll, delay)) = roll {
        if roll < shares.drop {
            faults.record("redis: dropped");
            return;
        }
        if roll < shares.drop + shares.reset {
            faults.record("redis: reset");
            let _ = client.set_zero_linger();
            return;
        }
        if roll < shares.drop + shares.reset + shares.delay {
            faults.record("redis: delayed");
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        // Redis is restarting: the client sees its connection refused.
        let _ = client.set_zero_linger();
        return;
    };
    cut.mark_unchanged();
    let was_cut = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        _ = cut.changed() => true,
    };
    if was_cut {
        let _ = client.set_zero_linger();
    }
}
