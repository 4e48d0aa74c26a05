//! The single flight's interleavings, driven step by step on one thread:
//! followers are spawned, run until they wait (the broadcast's receiver
//! count says when), then the leader ends its attempt one way or another.

use std::sync::Mutex as StdMutex;

use tokio::task::JoinHandle;

use super::*;

#[derive(Debug)]
struct ManualClock(StdMutex<SystemTime>);

impl ManualClock {
    fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

struct Fixture {
    flight: Arc<Flight>,
    clock: Arc<ManualClock>,
}

fn fixture() -> Fixture {
    let clock = Arc::new(ManualClock(StdMutex::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
    )));
    let published = Arc::new(Published::new(
        Duration::from_secs(60),
        false,
        Arc::new(crate::clock::SystemClock),
    ));
    let flight = Flight::new(
        published,
        clock.clone(),
        Duration::from_secs(5),
        Duration::from_secs(60),
    );
    Fixture {
        flight: Arc::new(flight),
        clock,
    }
}

fn tokens(access: &str) -> TokenSet {
    TokenSet::new(access).with_refresh_token("r")
}

async fn lead(flight: &Flight, generation: Generation, trigger: Trigger) -> FlightGuard {
    match flight.join(generation, trigger).await {
        Joined::Lead(guard) => guard,
        Joined::Follow(outcome) => panic!("expected to lead, followed {:?}", outcome.err()),
    }
}

/// What a follower got: the access token it follows, or the error.
type Followed = Result<String, String>;

fn follower(flight: &Arc<Flight>, generation: Generation) -> JoinHandle<Followed> {
    let flight = flight.clone();
    tokio::spawn(async move {
        match flight.join(generation, Trigger::Rejected).await {
            Joined::Follow(Ok(current)) => Ok(current.tokens().access_token().secret().to_owned()),
            Joined::Follow(Err(error)) => Err(error.to_string()),
            Joined::Lead(_) => Err("led instead of following".into()),
        }
    })
}

/// Spawns `n` followers and lets them run until every one of them waits.
async fn followers(
    flight: &Arc<Flight>,
    generation: Generation,
    n: usize,
) -> Vec<JoinHandle<Followed>> {
    let waiting = flight.ends.receiver_count();
    let handles: Vec<_> = (0..n).map(|_| follower(flight, generation)).collect();
    while flight.ends.receiver_count() < waiting + n {
        tokio::task::yield_now().await;
    }
    handles
}

async fn outcomes(handles: Vec<JoinHandle<Followed>>) -> Vec<Followed> {
    let mut all = Vec::new();
    for handle in handles {
        all.push(handle.await.expect("a follower does not panic"));
    }
    all
}

/// Publishes a first set through the flight, as the first load does.
async fn first(fx: &Fixture, access: &str) -> Generation {
    let guard = lead(&fx.flight, Generation::NONE, Trigger::Load).await;
    guard.publish(tokens(access), true).unwrap().generation()
}

#[tokio::test]
async fn followers_of_a_success_get_the_new_set() {
    let fx = fixture();
    let g1 = first(&fx, "a1").await;
    let guard = lead(&fx.flight, g1, Trigger::Rejected).await;
    let waiting = followers(&fx.flight, g1, 50).await;
    guard.publish(tokens("a2"), true).unwrap();
    for outcome in outcomes(waiting).await {
        assert_eq!(outcome.as_deref(), Ok("a2"));
    }
}

#[tokio::test]
async fn followers_of_a_failure_get_the_error() {
    let fx = fixture();
    let g1 = first(&fx, "a1").await;
    let guard = lead(&fx.flight, g1, Trigger::Expiry).await;
    let waiting = followers(&fx.flight, g1, 50).await;
    guard.fail(Error::HttpStatus {
        status: reqwest::StatusCode::BAD_GATEWAY,
    });
    for outcome in outcomes(waiting).await {
        let error = outcome.expect_err("the leader's failure");
        assert!(error.contains("502"), "{error}");
    }
}

#[tokio::test]
async fn a_panicking_leader_wakes_every_follower_with_an_error() {
    let fx = fixture();
    let g1 = first(&fx, "a1").await;
    let guard = lead(&fx.flight, g1, Trigger::Expiry).await;
    let waiting = followers(&fx.flight, g1, 20).await;
    let leader = tokio::spawn(async move {
        let _guard = guard;
        panic!("the leader panics mid-refresh");
    });
    assert!(leader.await.is_err());
    for outcome in outcomes(waiting).await {
        let error = outcome.expect_err("an error, not a hang");
        assert!(error.contains("abandoned"), "{error}");
    }
    // The next caller leads a new attempt: an aborted one is not cached.
    drop(lead(&fx.flight, g1, Trigger::Expiry).await);
}

#[tokio::test]
async fn a_cancelled_leader_wakes_every_follower_with_an_error() {
    let fx = fixture();
    let g1 = first(&fx, "a1").await;
    let guard = lead(&fx.flight, g1, Trigger::Expiry).await;
    let waiting = followers(&fx.flight, g1, 20).await;
    drop(guard);
    for outcome in outcomes(waiting).await {
        assert!(outcome.is_err(), "{outcome:?}");
    }
}

#[tokio::test]
async fn a_late_401_for_an_older_generation_takes_no_lock() {
    let fx = fixture();
    let g1 = first(&fx, "a1").await;
    let guard = lead(&fx.flight, g1, Trigger::Rejected).await;
    let g2 = guard.publish(tokens("a2"), true).unwrap().generation();
    // Someone holds the lock now; a 401 for g1 still answers at once.
    let held = fx.flight.exclusive().await.unwrap();
    match fx.flight.join(g1, Trigger::Rejected).await {
        Joined::Follow(Ok(current)) => assert_eq!(current.generation(), g2),
        _ => panic!("a 401 for a replaced set follows the newer one"),
    }
    drop(held);
}

#[tokio::test]
async fn a_herd_on_a_never_loaded_manager_waits_for_one_load() {
    let fx = fixture();
    let guard = lead(&fx.flight, Generation::NONE, Trigger::Load).await;
    let waiting = followers(&fx.flight, Generation::NONE, 1000).await;
    guard.publish(tokens("first"), true).unwrap();
    for outcome in outcomes(waiting).await {
        assert_eq!(outcome.as_deref(), Ok("first"));
    }
}

#[tokio::test]
async fn failures_are_shared_for_the_cooldown_except_with_a_forced_refresh() {
    let fx = fixture();
    let g1 = first(&fx, "a1").await;
    lead(&fx.flight, g1, Trigger::Expiry)
        .await
        .fail(Error::Timeout(Duration::from_secs(1)));
    assert!(matches!(
        fx.flight.join(g1, Trigger::Expiry).await,
        Joined::Follow(Err(Error::Timeout(_)))
    ));
    drop(lead(&fx.flight, g1, Trigger::Forced).await);
    fx.clock.advance(Duration::from_secs(5));
    drop(lead(&fx.flight, g1, Trigger::Expiry).await);
}

#[tokio::test]
async fn invalid_grant_sticks_until_the_tokens_change() {
    let fx = fixture();
    let g1 = first(&fx, "a1").await;
    lead(&fx.flight, g1, Trigger::Expiry)
        .await
        .fail(Error::InvalidGrant { description: None });
    fx.clock.advance(Duration::from_secs(3600));
    assert!(matches!(
        fx.flight.join(g1, Trigger::Rejected).await,
        Joined::Follow(Err(Error::InvalidGrant { .. }))
    ));
    let g2 = fx
        .flight
        .exclusive()
        .await
        .unwrap()
        .publish(tokens("a2"), true)
        .unwrap()
        .generation();
    drop(lead(&fx.flight, g2, Trigger::Expiry).await);
}

#[tokio::test]
async fn store_failures_reach_the_waiters_but_are_not_cached() {
    let fx = fixture();
    let g1 = first(&fx, "a1").await;
    let guard = lead(&fx.flight, g1, Trigger::Expiry).await;
    let waiting = followers(&fx.flight, g1, 5).await;
    guard.fail(Error::store("lock", "redis is restarting".into()));
    for outcome in outcomes(waiting).await {
        assert!(outcome.is_err());
    }
    drop(lead(&fx.flight, g1, Trigger::Expiry).await);
}

#[tokio::test]
async fn after_a_clear_a_refresh_finds_no_tokens_and_generations_go_on() {
    let fx = fixture();
    let g1 = first(&fx, "a1").await;
    fx.flight.exclusive().await.unwrap().clear();
    assert!(matches!(
        fx.flight.join(g1, Trigger::Rejected).await,
        Joined::Follow(Err(Error::NoTokens))
    ));
    let g2 = first(&fx, "a2").await;
    assert!(g2.get() > g1.get());
}
