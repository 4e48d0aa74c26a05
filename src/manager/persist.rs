//! The store, as the refresh protocol uses it: every call bounded by the
//! store timeout and run in a task of its own (so that a store that panics
//! or hangs cannot take a refresh, and its spent refresh token, down), and
//! the store session of one refresh: no lock, a held lock, or a lock lost.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use super::Inner;
use super::budgets::Budgets;
use super::current::Generation;
use crate::error::{BoxError, Error};
use crate::store::{LockedSave, StoreLock, TokenStore};
use crate::telemetry;
use crate::token::TokenSet;

/// The waits before each background retry of a failed save; then it gives
/// up (the set lives in memory until the next refresh saves).
const SAVE_RETRY_DELAYS: [Duration; 8] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(32),
    Duration::from_secs(60),
    Duration::from_secs(60),
];

/// The waits before each new try of a save under the lock, after a refresh
/// spent the refresh token; then the lock is released with the save failed
/// (and [`retry_save`] goes on in the background).
const SPENT_SAVE_RETRY_DELAYS: [Duration; 2] =
    [Duration::from_millis(200), Duration::from_millis(800)];

/// Runs one store call in its own task, within `timeout`. A timeout or a
/// panic is a store failure like any other (`Error::Store`), which the
/// failure cooldown does not remember.
async fn isolated<T: Send + 'static>(
    operation: &'static str,
    timeout: Duration,
    call: impl Future<Output = Result<T, BoxError>> + Send + 'static,
) -> Result<T, Error> {
    let span = telemetry::store_span(operation);
    let started = Instant::now();
    let result = bounded(operation, timeout, call)
        .instrument(span.clone())
        .await;
    span.in_scope(|| telemetry::store_finished(operation, result.is_ok(), started.elapsed()));
    result
}

async fn bounded<T: Send + 'static>(
    operation: &'static str,
    timeout: Duration,
    call: impl Future<Output = Result<T, BoxError>> + Send + 'static,
) -> Result<T, Error> {
    let mut task = tokio::spawn(call);
    match tokio::time::timeout(timeout, &mut task).await {
        Err(_) => {
            task.abort();
            Err(Error::store(
                operation,
                format!("no answer within {timeout:?}").into(),
            ))
        }
        Ok(Err(_)) => Err(Error::store(operation, "the store panicked".into())),
        Ok(Ok(result)) => result.map_err(|e| Error::store(operation, e)),
    }
}

/// The manager's store with its budgets.
#[derive(Debug)]
pub(crate) struct StoreOps {
    store: Arc<dyn TokenStore>,
    budgets: Budgets,
}

impl StoreOps {
    pub(crate) fn new(store: Arc<dyn TokenStore>, budgets: Budgets) -> Self {
        Self { store, budgets }
    }

    pub(crate) fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    pub(crate) async fn load(&self) -> Result<Option<TokenSet>, Error> {
        let store = self.store.clone();
        isolated("load", self.budgets.store_timeout, async move {
            store.load().await
        })
        .await
    }

    pub(crate) async fn save(&self, tokens: &TokenSet) -> Result<(), Error> {
        let (store, tokens) = (self.store.clone(), tokens.clone());
        let timeout = self.budgets.store_timeout;
        isolated("save", timeout, async move { store.save(&tokens).await }).await
    }

    pub(crate) async fn clear(&self) -> Result<(), Error> {
        let store = self.store.clone();
        isolated("clear", self.budgets.store_timeout, async move {
            store.clear().await
        })
        .await
    }

    /// Starts a refresh's store session: takes the store's lock, if it has
    /// one, waiting as long as another process's refresh may take.
    pub(crate) async fn session(&self) -> Result<StoreSession<'_>, Error> {
        self.session_waiting(self.budgets.store_lock_wait).await
    }

    async fn session_waiting(&self, wait: Duration) -> Result<StoreSession<'_>, Error> {
        let store = self.store.clone();
        let call_timeout = Budgets::lock_call(wait);
        let started = Instant::now();
        let lock = isolated("lock", call_timeout, async move { store.lock(wait).await }).await?;
        if lock.is_some() {
            telemetry::store_lock_waited(started.elapsed());
            tracing::debug!("holding the store's refresh lock");
        }
        Ok(StoreSession {
            ops: self,
            held: lock.map_or(Held::Shared, Held::Locked),
        })
    }

    /// A save outside a refresh, under the store's lock when it has one
    /// (read first: a lock that can expire fences the save on that read).
    /// It waits for the lock only one store timeout: a peer that holds it
    /// is refreshing, and will store a newer set than ours anyway.
    pub(crate) async fn save_coordinated(&self, tokens: &TokenSet) -> Result<LockedSave, Error> {
        let mut session = self.session_waiting(self.budgets.store_timeout).await?;
        let saved = match session.reread().await {
            Ok(_) => session.save(tokens).await,
            Err(error) => Err(error),
        };
        session.finish().await;
        saved
    }
}

enum Held {
    /// The store has no lock: coordination stays within the process.
    Shared,
    /// The store's lock, held.
    Locked(Box<dyn StoreLock>),
    /// The lock went down with a store call that panicked or hung.
    Lost,
}

type LockCall<T> = Pin<Box<dyn Future<Output = (Box<dyn StoreLock>, Result<T, BoxError>)> + Send>>;

/// The store as one refresh sees it, from "lock" to "release".
pub(crate) struct StoreSession<'a> {
    ops: &'a StoreOps,
    held: Held,
}

impl StoreSession<'_> {
    /// The stored set, re-read under the lock; `None` without a lock (the
    /// unlocked path spends the set it has, as before).
    pub(crate) async fn reread(&mut self) -> Result<Option<TokenSet>, Error> {
        match self.held {
            Held::Locked(_) => {
                self.with_lock("load", |mut lock| {
                    Box::pin(async move {
                        let loaded = lock.load().await;
                        (lock, loaded)
                    })
                })
                .await
            }
            Held::Shared | Held::Lost => Ok(None),
        }
    }

    /// The newest stored set, lock or not; `None` once the lock is lost.
    pub(crate) async fn latest(&mut self) -> Result<Option<TokenSet>, Error> {
        match self.held {
            Held::Shared => self.ops.load().await,
            Held::Locked(_) => self.reread().await,
            Held::Lost => Ok(None),
        }
    }

    /// Saves, fenced under the lock when there is one.
    pub(crate) async fn save(&mut self, tokens: &TokenSet) -> Result<LockedSave, Error> {
        match self.held {
            Held::Shared => self.ops.save(tokens).await.map(|()| LockedSave::Saved),
            Held::Locked(_) => {
                let tokens = tokens.clone();
                self.with_lock("save", |mut lock| {
                    Box::pin(async move {
                        let saved = lock.save(&tokens).await;
                        (lock, saved)
                    })
                })
                .await
            }
            Held::Lost => Err(Error::store("save", "the store's lock was lost".into())),
        }
    }

    /// Saves the set a refresh just got, trying again (twice, while the
    /// lock is still ours) when the store fails: the refresh token the
    /// store holds is spent, and a peer that takes the lock after we
    /// release it spends it again, which makes a server with reuse
    /// detection revoke the whole family. A store that hiccups (a Redis
    /// connection reset, a restart) usually answers the next try.
    pub(crate) async fn save_spent(&mut self, tokens: &TokenSet) -> Result<LockedSave, Error> {
        let mut saved = self.save(tokens).await;
        for delay in SPENT_SAVE_RETRY_DELAYS {
            let Err(error) = &saved else { break };
            if !matches!(self.held, Held::Locked(_)) {
                break;
            }
            tracing::warn!(error = %error, retry_in = ?delay,
                "could not save the refreshed tokens under the lock; trying again before releasing it");
            tokio::time::sleep(delay).await;
            saved = self.save(tokens).await;
        }
        saved
    }

    /// Releases the lock; a failure is logged (the lock expires on its own).
    pub(crate) async fn finish(self) {
        let Held::Locked(lock) = self.held else {
            return;
        };
        let released = isolated("release", self.ops.budgets.store_timeout, lock.release()).await;
        if let Err(error) = released {
            tracing::warn!(error = %error, "could not release the store's refresh lock; it expires on its own");
        }
    }

    /// Runs `call` on the held lock in a task of its own; the lock comes back
    /// unless the call panicked or hung.
    async fn with_lock<T: Send + 'static>(
        &mut self,
        operation: &'static str,
        call: impl FnOnce(Box<dyn StoreLock>) -> LockCall<T>,
    ) -> Result<T, Error> {
        let Held::Locked(lock) = std::mem::replace(&mut self.held, Held::Lost) else {
            return Err(Error::store(
                operation,
                "the store's lock is not held".into(),
            ));
        };
        let future = call(lock);
        let (lock, result) = isolated(operation, self.ops.budgets.store_timeout, async move {
            Ok::<_, BoxError>(future.await)
        })
        .await?;
        self.held = Held::Locked(lock);
        result.map_err(|e| Error::store(operation, e))
    }
}

/// After a refresh whose save failed: retries saving generation
/// `generation` in the background until it succeeds, a newer set supersedes
/// it, or the manager is dropped. Each try holds the refresh lock for four
/// store timeouts and a second at most (lock, re-read, save, release), so a
/// store that hangs delays a refresh by no more than that.
pub(crate) async fn retry_save(inner: Weak<Inner>, generation: Generation) {
    for delay in SAVE_RETRY_DELAYS {
        tokio::time::sleep(delay).await;
        let Some(inner) = inner.upgrade() else { return };
        let Ok(guard) = inner.flight.exclusive().await else {
            continue;
        };
        let Some(current) = guard.current().filter(|c| c.generation() == generation) else {
            return;
        };
        match inner.store.save_coordinated(current.tokens()).await {
            Ok(saved) => {
                if saved == LockedSave::Saved {
                    tracing::info!(
                        generation = generation.get(),
                        "saved the refreshed tokens on retry"
                    );
                } else {
                    tracing::warn!(
                        generation = generation.get(),
                        "a newer token set was stored meanwhile; not overwriting it"
                    );
                }
                current.mark_persisted();
                return;
            }
            Err(error) => tracing::error!(error = %error, generation = generation.get(),
                "saving the refreshed tokens failed again"),
        }
    }
    tracing::error!(
        generation = generation.get(),
        "gave up saving the refreshed tokens; they live only in memory until the next refresh"
    );
}
