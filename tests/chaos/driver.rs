//! The driver of one phase: it kills workers (at random moments, with a
//! refresh held in flight, right after a token response went out), starts
//! them again, restarts Redis and cuts its connections, and reads the store
//! all along.
//!
//! A kill can land after the server rotated the refresh token and before
//! the killed process saved the successor: the old token is spent, the new
//! one died with the process. No client can recover that; a user would sign
//! in again. The driver tells that case from every other one (the proxy's
//! ledger says who got the last token response; the store says whether it
//! was saved), writes the lost set into the store itself, standing in for
//! that sign-in, and counts it. Before each kill the proxy marks what the
//! process spent, so that a peer presenting the spent token afterwards is
//! answered 503 instead of revoking the family; at the end, such a
//! presentation is allowed only for a token whose successor was lost.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest_oauth2_refresh::{FileStore, RedisStore, StoreError, TokenSet, TokenStore};
use tokio::sync::watch;

use crate::faults::{FaultLog, Rng};
use crate::fleet::Fleet;
use crate::proxy::{RedisProxy, TokenProxy};
use crate::redis::Redis;

/// Where the phase's token set lives, as the driver reads it: the raw file
/// (so that a torn one shows), or Redis itself (not through the proxy).
#[derive(Clone)]
pub enum StoreView {
    File(PathBuf),
    Redis(RedisStore),
}

/// One read of the store.
pub enum Read {
    Tokens(TokenSet),
    Missing,
    Torn(String),
    Unreachable,
}

impl StoreView {
    pub async fn read(&self) -> Read {
        match self {
            StoreView::File(path) => match std::fs::read(path) {
                Ok(bytes) => match serde_json::from_slice::<TokenSet>(&bytes) {
                    Ok(tokens) => Read::Tokens(tokens),
                    Err(e) => Read::Torn(format!("{} bytes that do not parse: {e}", bytes.len())),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Read::Missing,
                Err(e) => Read::Torn(format!("unreadable: {e}")),
            },
            StoreView::Redis(store) => match store.load().await {
                Ok(Some(tokens)) => Read::Tokens(tokens),
                Ok(None) => Read::Missing,
                Err(e) => match e.downcast_ref::<StoreError>() {
                    Some(e) if e.is_permanent() => Read::Torn(e.to_string()),
                    _ => Read::Unreachable,
                },
            },
        }
    }

    pub async fn refresh_token(&self) -> Option<String> {
        match self.read().await {
            Read::Tokens(tokens) => tokens.refresh_token().map(|t| t.secret().to_owned()),
            _ => None,
        }
    }

    pub async fn save(&self, tokens: &TokenSet) -> Result<(), String> {
        let saved = match self {
            StoreView::File(path) => FileStore::new(path)
                .map_err(|e| e.to_string())?
                .save(tokens)
                .await
                .map_err(|e| e.to_string()),
            StoreView::Redis(store) => store.save(tokens).await.map_err(|e| e.to_string()),
        };
        saved.map_err(|e| format!("the driver's save: {e}"))
    }
}

/// The store reads of a phase.
#[derive(Debug, Default, Clone)]
pub struct Reads {
    pub parsed: u64,
    pub missing: u64,
    pub torn: Vec<String>,
    pub unreachable: u64,
}

impl Reads {
    fn add(&mut self, read: &Read) {
        match read {
            Read::Tokens(_) => self.parsed += 1,
            Read::Missing => self.missing += 1,
            Read::Torn(why) => self.torn.push(why.clone()),
            Read::Unreachable => self.unreachable += 1,
        }
    }
}

/// Reads the store every `every` until `stop`; returns the reads.
pub fn watch_store(
    view: StoreView,
    every: Duration,
    reads: Arc<Mutex<Reads>>,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        while !*stopped.borrow() {
            let read = view.read().await;
            reads.lock().unwrap().add(&read);
            let _ = tokio::time::timeout(every, stopped.changed()).await;
        }
    });
    (stop, task)
}

/// What the driver did in a phase.
#[derive(Debug, Default)]
pub struct Actions {
    pub kills_random: u64,
    pub kills_mid_refresh_dropped: u64,
    pub kills_mid_refresh_forwarded: u64,
    pub kills_mid_save: u64,
    pub redis_restarts: u64,
    pub redis_cuts: u64,
    /// Kills that came between the server's rotation and the save.
    pub lost_rotations: u64,
    /// The spent tokens whose successors were lost that way.
    pub lost_after: HashSet<String>,
    /// What should not happen: the store missing a set a live worker got.
    pub anomalies: Vec<String>,
}

impl Actions {
    pub fn kills(&self) -> u64 {
        self.kills_random
            + self.kills_mid_refresh_dropped
            + self.kills_mid_refresh_forwarded
            + self.kills_mid_save
    }
}

pub struct Driver<'a> {
    pub view: StoreView,
    pub proxy: TokenProxy,
    pub redis: Option<(&'a mut Redis, RedisProxy)>,
    pub fleet: Fleet,
    pub rng: Rng,
    pub faults: FaultLog,
    pub actions: Actions,
    pub reads: Arc<Mutex<Reads>>,
}

/// A bounded poll of a condition of the proxy's or the store's state (the
/// other processes tell nothing else).
async fn until(limit: Duration, mut done: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Driver<'_> {
    /// The chaos, for `length`: first one of each kind of kill (and, with
    /// Redis, a connection cut), a Redis restart half-way, random actions
    /// in between. With Redis the actions come less often: a worker killed
    /// holding the Redis lock blocks the fleet for the lock's TTL.
    pub async fn run(&mut self, length: Duration) {
        let started = Instant::now();
        let redis = self.redis.is_some();
        let mut planned = vec![0u64, 3, 6];
        if redis {
            planned.push(9);
        }
        let (low, high) = if redis { (800, 2500) } else { (300, 1200) };
        while started.elapsed() < length {
            let pause = self.rng.between(low, high);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            if redis && self.actions.redis_restarts == 0 && started.elapsed() > length / 2 {
                self.restart_redis().await;
                continue;
            }
            let action = if planned.is_empty() {
                self.rng.below(if redis { 12 } else { 9 })
            } else {
                planned.remove(0)
            };
            match action {
                0..=2 => self.random_kill().await,
                3..=5 => self.kill_mid_refresh().await,
                6..=8 => self.kill_mid_save().await,
                9 | 10 => self.cut_redis(),
                _ => self.restart_redis().await,
            }
        }
    }

    async fn random_kill(&mut self) {
        let index = self.rng.below(self.fleet.size() as u64) as usize;
        self.actions.kills_random += 1;
        self.kill(index, "kill: at random").await;
        self.settle(index).await;
        self.restart(index).await;
    }

    /// Kills the sender of a refresh that the proxy holds before the server
    /// sees it (it holds the store's lock then); the call is then dropped,
    /// or forwarded (the server spends the token of a dead process).
    async fn kill_mid_refresh(&mut self) {
        let held = self.proxy.hold_next();
        let Ok(Ok(held)) = tokio::time::timeout(Duration::from_secs(10), held).await else {
            self.proxy.disarm();
            return self.random_kill().await;
        };
        let index = held.worker;
        if self.rng.chance(500) {
            // As if the call were in the kernel's buffers when the process
            // died: it reaches the server, and the token it spends must not
            // be spent again by the peer that takes the lock next.
            self.actions.kills_mid_refresh_forwarded += 1;
            self.proxy.quarantine(&held.presented);
            self.kill(index, "kill: mid-refresh").await;
            let before = self.proxy.forwarded();
            let _ = held.forward.send(true);
            let proxy = self.proxy.clone();
            until(Duration::from_secs(5), async || proxy.forwarded() > before).await;
        } else {
            self.actions.kills_mid_refresh_dropped += 1;
            self.kill(index, "kill: mid-refresh").await;
            let _ = held.forward.send(false);
        }
        self.settle(index).await;
        self.restart(index).await;
    }

    /// Kills a worker 0-5 ms after the proxy wrote it a token response: it
    /// is parsing it, or saving it.
    async fn kill_mid_save(&mut self) {
        let delivered = self.proxy.after_next_delivery();
        let Ok(Ok(index)) = tokio::time::timeout(Duration::from_secs(10), delivered).await else {
            self.proxy.disarm();
            return self.random_kill().await;
        };
        let after = self.rng.below(6);
        tokio::time::sleep(Duration::from_millis(after)).await;
        self.actions.kills_mid_save += 1;
        self.kill(index, "kill: mid-save").await;
        self.settle(index).await;
        self.restart(index).await;
    }

    /// SIGKILL, after the proxy has marked what the process spent; then a
    /// read of the store, which must parse.
    async fn kill(&mut self, index: usize, how: &'static str) {
        self.proxy.mark_killed(index);
        self.faults.record(how);
        self.fleet.kill(index).await;
        self.read_store().await;
    }

    async fn read_store(&mut self) {
        let read = self.view.read().await;
        self.reads.lock().unwrap().add(&read);
    }

    /// The wait for the calls a killed worker left at the server, and the
    /// check that its rotation (if it had one) is in the store.
    async fn settle(&mut self, index: usize) {
        let proxy = self.proxy.clone();
        if !until(Duration::from_secs(12), async || {
            proxy.in_flight(index) == 0
        })
        .await
        {
            self.actions.anomalies.push(format!(
                "worker {index}'s call stayed at the server for 12 s"
            ));
        }
        let Some(head) = self.proxy.head() else {
            return;
        };
        let view = self.view.clone();
        let mine = head.worker == index;
        // A live worker may be saving the last set still (its store slow
        // under faults); a dead one is done.
        let wait = Duration::from_secs(if mine { 1 } else { 10 });
        let saved = until(wait, async || {
            view.refresh_token().await.as_deref() == Some(head.refresh.as_str())
        })
        .await;
        if saved {
            return;
        }
        if !mine {
            self.actions.anomalies.push(format!(
                "the last token response went to worker {}, alive, and the store lacks it",
                head.worker
            ));
            return;
        }
        self.actions.lost_rotations += 1;
        self.actions.lost_after.insert(head.presented.clone());
        let lost = TokenSet::from_token_response(&head.body)
            .expect("the proxy kept a token response")
            .with_issued_at(head.at);
        if let Err(e) = self.view.save(&lost).await {
            self.actions.anomalies.push(e);
        }
    }

    async fn restart(&mut self, index: usize) {
        self.proxy.mark_restarted(index);
        self.fleet.spawn(index);
        self.faults.record("restart");
        self.read_store().await;
    }

    async fn restart_redis(&mut self) {
        let Some((redis, _)) = &mut self.redis else {
            return;
        };
        self.faults.record("redis: restart");
        redis.restart().await;
        self.actions.redis_restarts += 1;
    }

    fn cut_redis(&mut self) {
        if let Some((_, proxy)) = &self.redis {
            self.faults.record("redis: connections cut");
            proxy.cut_all();
            self.actions.redis_cuts += 1;
        }
    }
}
