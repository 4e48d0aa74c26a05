//! The single flight: one refresh at a time per manager, its outcome
//! broadcast to everyone who waited for it, and failures shared for a
//! cooldown.
//!
//! [`Flight::join`] answers either [`Joined::Lead`], a guard that must end
//! in exactly one [`FlightGuard::publish`] or [`FlightGuard::fail`] (its
//! `Drop` fails the attempt, so no follower waits forever on a leader that
//! panicked or was dropped), or [`Joined::Follow`], the outcome somebody
//! else produced. The first load joins like any refresh, for
//! [`Generation::NONE`].

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use super::current::{Current, Generation, Issued, Published};
use crate::clock::Clock;
use crate::error::Error;
use crate::telemetry;
use crate::token::TokenSet;

pub(crate) use super::trigger::Trigger;

/// The lock's contents: the last published generation and the last failure.
#[derive(Default)]
pub(crate) struct FlightState {
    generation: Generation,
    last_failure: Option<Failure>,
}

struct Failure {
    generation: Generation,
    at: SystemTime,
    error: Error,
}

impl Failure {
    /// Errors that no retry can fix until the tokens change.
    fn is_permanent(&self) -> bool {
        matches!(
            self.error,
            Error::InvalidGrant { .. } | Error::NoRefreshToken | Error::Config(_)
        )
    }

    /// Errors remembered for the cooldown. A store that is briefly down (a
    /// Redis restart, a slow disk) should not fail requests for a whole
    /// cooldown, nor should an empty store that another process is about to
    /// fill, nor an attempt that was cut short: those are shared only with
    /// the callers that waited for them.
    fn is_cached(&self) -> bool {
        !matches!(
            self.error,
            Error::Store { .. } | Error::NoTokens | Error::Aborted(_)
        )
    }
}

/// The attempts finished so far, and how the last one failed.
#[derive(Debug, Default)]
struct AttemptEnd {
    count: u64,
    /// The generation the failed attempt tried to replace, and its error.
    failure: Option<(Generation, Error)>,
}

/// The outcome of [`Flight::join`].
pub(crate) enum Joined {
    /// This caller holds the lock; the set of the generation it asked for
    /// is its to replace.
    Lead(FlightGuard),
    /// Another caller's attempt, or a newer published set, decided.
    Follow(Result<Arc<Current>, Error>),
}

pub(crate) struct Flight {
    published: Arc<Published>,
    state: Arc<Mutex<FlightState>>,
    ends: watch::Sender<AttemptEnd>,
    clock: Arc<dyn Clock>,
    cooldown: Duration,
    /// The longest a caller waits for the lock.
    wait: Duration,
}

impl Flight {
    pub(crate) fn new(
        published: Arc<Published>,
        clock: Arc<dyn Clock>,
        cooldown: Duration,
        wait: Duration,
    ) -> Self {
        Self {
            published,
            state: Arc::new(Mutex::new(FlightState::default())),
            ends: watch::Sender::new(AttemptEnd::default()),
            clock,
            cooldown,
            wait,
        }
    }

    /// Joins the attempt to replace the set of `generation`: leads it, or
    /// follows a newer set or the outcome of an attempt that ended while we
    /// waited (without queueing for the lock one caller after another).
    pub(crate) async fn join(&self, generation: Generation, trigger: Trigger) -> Joined {
        // A late 401 for a replaced token needs no lock at all.
        if let Some(newer) = self.newer_than(generation) {
            return Joined::Follow(Ok(newer));
        }
        let mut ends = self.ends.subscribe();
        let before = ends.borrow_and_update().count;
        let waiting = std::time::Instant::now();
        let state = match self.lock_or_outcome(&mut ends, before, generation).await {
            Ok(state) => state,
            Err(followed) => {
                telemetry::flight_waited(trigger.label(), followed.is_ok(), waiting.elapsed());
                return Joined::Follow(followed);
            }
        };
        let joined = self.decide(state, generation, before, trigger);
        // An attempt that ended while we waited for the lock decided for us.
        if let Joined::Follow(outcome) = &joined
            && self.ends.borrow().count != before
        {
            telemetry::flight_waited(trigger.label(), outcome.is_ok(), waiting.elapsed());
        }
        joined
    }

    /// Under the lock: lead, or follow what exists already.
    fn decide(
        &self,
        state: OwnedMutexGuard<FlightState>,
        generation: Generation,
        before: u64,
        trigger: Trigger,
    ) -> Joined {
        // Double check under the lock: someone may have refreshed already.
        if let Some(newer) = self.newer_than(generation) {
            tracing::debug!(?trigger, "a newer token exists; not refreshing");
            return Joined::Follow(Ok(newer));
        }
        if generation != Generation::NONE && self.published.get().is_none() {
            return Joined::Follow(Err(Error::NoTokens));
        }
        if let Some(error) = self.shared_failure(&state, generation, before, trigger) {
            return Joined::Follow(Err(error));
        }
        Joined::Lead(self.guard(state, Some(generation)))
    }

    /// The lock for work that is no refresh attempt (`set_tokens`, revoke, a
    /// save retry): nothing is broadcast unless it publishes or clears.
    pub(crate) async fn exclusive(&self) -> Result<FlightGuard, Error> {
        Ok(self.guard(self.lock().await?, None))
    }

    fn guard(
        &self,
        state: OwnedMutexGuard<FlightState>,
        attempt: Option<Generation>,
    ) -> FlightGuard {
        FlightGuard {
            state,
            published: self.published.clone(),
            ends: self.ends.clone(),
            clock: self.clock.clone(),
            attempt,
            ended: false,
        }
    }

    async fn lock(&self) -> Result<OwnedMutexGuard<FlightState>, Error> {
        tokio::time::timeout(self.wait, self.state.clone().lock_owned())
            .await
            .map_err(|_| Error::Timeout(self.wait))
    }

    fn newer_than(&self, generation: Generation) -> Option<Arc<Current>> {
        self.published
            .get()
            .filter(|current| current.generation() != generation)
    }

    /// Waits for the lock, or for the attempt in flight to end: its outcome
    /// is ours too. `Err` carries an outcome to follow.
    async fn lock_or_outcome(
        &self,
        ends: &mut watch::Receiver<AttemptEnd>,
        before: u64,
        generation: Generation,
    ) -> Result<OwnedMutexGuard<FlightState>, Result<Arc<Current>, Error>> {
        let mut lock = std::pin::pin!(self.lock());
        let mut ended = std::pin::pin!(ends.wait_for(|end| end.count != before));
        let first = std::future::poll_fn(|cx| {
            if let Poll::Ready(locked) = lock.as_mut().poll(cx) {
                return Poll::Ready(Ok(locked));
            }
            ended
                .as_mut()
                .poll(cx)
                .map(|end| Err(end.ok().and_then(|end| end.failure.clone())))
        })
        .await;
        match first {
            Ok(locked) => locked.map_err(Err),
            Err(failure) => {
                // The attempt's failure first: an attempt that failed may
                // still have published a set (one kept for its refresh token).
                if let Some((failed, error)) = failure
                    && failed == generation
                {
                    return Err(Err(error));
                }
                if let Some(newer) = self.newer_than(generation) {
                    return Err(Ok(newer));
                }
                lock.await.map_err(Err)
            }
        }
    }

    /// The error a caller gets instead of a new attempt for `generation`:
    /// the outcome of an attempt that ended while it waited for the lock, or
    /// a recent (or permanent) failure. Forced refreshes only share the
    /// former.
    fn shared_failure(
        &self,
        state: &FlightState,
        generation: Generation,
        before: u64,
        trigger: Trigger,
    ) -> Option<Error> {
        let failure = state
            .last_failure
            .as_ref()
            .filter(|f| f.generation == generation)?;
        let ended_while_waiting = self.ends.borrow().count != before;
        let cooling_down = failure.is_cached()
            && self
                .clock
                .now()
                .duration_since(failure.at)
                .map_or(true, |elapsed| elapsed < self.cooldown);
        let cached = trigger.takes_cached_failures() && (failure.is_permanent() || cooling_down);
        (ended_while_waiting || cached).then(|| failure.error.clone())
    }
}

/// The held refresh lock. An attempt's guard ends in exactly one
/// [`publish`](Self::publish) or [`fail`](Self::fail), both of which consume
/// it; dropped without either (a panic, a leader abandoned with no runtime
/// to finish it), it fails the attempt for everyone who waits.
pub(crate) struct FlightGuard {
    state: OwnedMutexGuard<FlightState>,
    published: Arc<Published>,
    ends: watch::Sender<AttemptEnd>,
    clock: Arc<dyn Clock>,
    /// The generation this attempt replaces; `None` for exclusive work.
    attempt: Option<Generation>,
    ended: bool,
}

impl FlightGuard {
    /// The published set, as seen under the lock.
    pub(crate) fn current(&self) -> Option<Arc<Current>> {
        self.published.get()
    }

    /// Makes `tokens` the published set. `persisted` says whether the store
    /// has them.
    pub(crate) fn publish(self, tokens: TokenSet, persisted: bool) -> Result<Arc<Current>, Error> {
        self.publish_as(tokens, persisted, Issued::Unknown)
    }

    /// [`publish`](Self::publish) for a set the token endpoint has just
    /// issued (to us, or to a peer whose rotation we adopt);
    /// `after_rejection` when a 401 caused the refresh.
    pub(crate) fn publish_new(
        self,
        tokens: TokenSet,
        persisted: bool,
        after_rejection: bool,
    ) -> Result<Arc<Current>, Error> {
        let at = self.clock.now();
        let issued = Issued::At {
            at,
            after_rejection,
        };
        self.publish_as(tokens, persisted, issued)
    }

    fn publish_as(
        mut self,
        tokens: TokenSet,
        persisted: bool,
        issued: Issued,
    ) -> Result<Arc<Current>, Error> {
        let generation = self.state.generation.next();
        let prepared = self
            .published
            .prepare(generation, tokens, persisted, issued);
        let current = match prepared {
            Ok(current) => Arc::new(current),
            Err(error) => return Err(self.fail(error)),
        };
        self.state.generation = generation;
        self.state.last_failure = None;
        self.published.set(current.clone());
        self.end(None);
        Ok(current)
    }

    /// Publishes `tokens`, a set kept only for its refresh token (its access
    /// token counts as expired), and still fails the attempt with `error`:
    /// every follower gets the error, and the failure is remembered for the
    /// new set, so that the cooldown holds instead of a refresh per call.
    pub(crate) fn publish_failed(
        mut self,
        tokens: TokenSet,
        persisted: bool,
        error: Error,
    ) -> Result<Arc<Current>, Error> {
        let generation = self.state.generation.next();
        let issued = Issued::At {
            at: self.clock.now(),
            after_rejection: false,
        };
        let current = match self
            .published
            .prepare(generation, tokens, persisted, issued)
        {
            Ok(current) => Arc::new(current),
            Err(_) => return Err(self.fail(error)),
        };
        self.state.generation = generation;
        self.published.set(current.clone());
        self.state.last_failure = Some(Failure {
            generation,
            at: self.clock.now(),
            error: error.clone(),
        });
        let replaced = self.attempt.unwrap_or(generation);
        self.end(Some((replaced, error)));
        Ok(current)
    }

    /// Ends the attempt with `error`, for this caller and every follower;
    /// remembered for the cooldown where [`Failure::is_cached`] says so.
    pub(crate) fn fail(mut self, error: Error) -> Error {
        self.record(error.clone());
        error
    }

    /// Forgets the published set and any failure (after a revocation).
    pub(crate) fn clear(mut self) {
        self.published.clear();
        self.state.last_failure = None;
        self.end(None);
    }

    fn record(&mut self, error: Error) {
        let Some(generation) = self.attempt else {
            self.ended = true;
            return;
        };
        self.state.last_failure = Some(Failure {
            generation,
            at: self.clock.now(),
            error: error.clone(),
        });
        self.end(Some((generation, error)));
    }

    /// Tells waiting callers that an attempt ended, after its outcome is
    /// published (or recorded, for a failure).
    fn end(&mut self, failure: Option<(Generation, Error)>) {
        self.ended = true;
        self.ends.send_modify(|end| {
            end.count += 1;
            end.failure = failure;
        });
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if !self.ended && self.attempt.is_some() {
            self.record(Error::Aborted(
                "the refresh was abandoned before it finished".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
