//! Servers that revoke the old access token when they rotate the refresh
//! token (Django OAuth Toolkit does) make a fleet's in-flight requests meet
//! 401s whenever a peer rotates. What must hold: a set a peer stored is
//! adopted while it is valid, even inside the leeway, instead of being
//! refreshed again; and a replay whose token was superseded while it was in
//! flight follows the newer token, once, without a second refresh.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use reqwest_oauth2_refresh::{BoxError, TokenSet, TokenStore};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use common::{builder, client, token_body, token_endpoint_issues};

/// A store shared with a "peer" that the test plays.
#[derive(Debug, Default)]
struct Shared(Mutex<Option<TokenSet>>);

impl Shared {
    fn put(&self, tokens: TokenSet) {
        *self.0.lock().unwrap() = Some(tokens);
    }
}

#[async_trait]
impl TokenStore for Shared {
    async fn load(&self) -> Result<Option<TokenSet>, BoxError> {
        Ok(self.0.lock().unwrap().clone())
    }
    async fn save(&self, tokens: &TokenSet) -> Result<(), BoxError> {
        self.put(tokens.clone());
        Ok(())
    }
}

/// The API: only the newest token works. When the token our refresh got
/// (`at-2`) arrives, a peer has just rotated again: it stored `at-3`, and the
/// server revoked `at-2`.
struct Api {
    store: Arc<Shared>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Respond for Api {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let token = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim_start_matches("Bearer ")
            .to_owned();
        self.seen.lock().unwrap().push(token.clone());
        match token.as_str() {
            "at-3" => ResponseTemplate::new(200),
            "at-2" => {
                let peer = TokenSet::new("at-3")
                    .with_refresh_token("rt-3")
                    .with_expires_in(Duration::from_secs(3600));
                self.store.put(peer);
                ResponseTemplate::new(401)
            }
            _ => ResponseTemplate::new(401),
        }
    }
}

fn first_set() -> TokenSet {
    TokenSet::new("at-1")
        .with_refresh_token("rt-1")
        .with_expires_in(Duration::from_secs(3600))
}

#[tokio::test]
async fn a_replay_whose_token_a_peer_superseded_in_flight_follows_the_newer_one() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_issues(&auth, token_body("at-2", Some("rt-2"), Some(3600)), 1).await;
    let store = Arc::new(Shared::default());
    let seen = Arc::new(Mutex::new(Vec::new()));
    Mock::given(path("/orders"))
        .respond_with(Api {
            store: store.clone(),
            seen: seen.clone(),
        })
        .mount(&api)
        .await;
    let manager = builder(&auth)
        .store(store.clone())
        .initial_tokens(first_set())
        .build()
        .unwrap();
    let response = client(&manager, &api)
        .post(format!("{}/orders", api.uri()))
        .body("one order")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(*seen.lock().unwrap(), ["at-1", "at-2", "at-3"]);
    let current = manager.cached_tokens().unwrap();
    assert_eq!(
        current.refresh_token().unwrap().secret(),
        "rt-3",
        "the peer's set is ours now"
    );
}

#[tokio::test]
async fn a_replay_401_with_nothing_newer_stands_and_causes_no_second_refresh() {
    let auth = MockServer::start().await;
    let api = MockServer::start().await;
    token_endpoint_issues(&auth, token_body("at-2", Some("rt-2"), Some(3600)), 1).await;
    Mock::given(path("/orders"))
        .respond_with(ResponseTemplate::new(401))
        .expect(2)
        .mount(&api)
        .await;
    let manager = builder(&auth).initial_tokens(first_set()).build().unwrap();
    let response = client(&manager, &api)
        .post(format!("{}/orders", api.uri()))
        .body("one order")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        401,
        "handed back after one refresh and one replay"
    );
}

#[cfg(feature = "file-store")]
#[tokio::test]
async fn a_peers_newer_set_inside_the_leeway_is_adopted_not_refreshed_again() {
    let auth = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body(
            "at-2",
            Some("rt-2"),
            Some(4),
        )))
        .expect(1)
        .mount(&auth)
        .await;
    let Peers {
        dir,
        peer,
        late,
        clock,
    } = peers_on_one_file(&auth, "rotation", 4).await;
    // The peer rotates; then this process's clock reaches the peer's set's
    // leeway (4 s tokens: the last 2 s) while it is still valid.
    assert_eq!(
        peer.refresh().await.unwrap().access_token().secret(),
        "at-2"
    );
    clock.advance(Duration::from_millis(2500));
    // The still-valid at-1 is used while the background refresh looks.
    late.access_token().await.unwrap();
    common::until_published(&late, "at-2").await;
    let token = late.access_token().await.unwrap();
    assert_eq!(
        token.secret(),
        "at-2",
        "adopted from the file, no second refresh"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Servers count a token's life in whole seconds, so a set with under a
/// second left by our clock may be dead at the server: the refresh spends
/// the peer's newer refresh token instead of adopting its access token.
#[cfg(feature = "file-store")]
#[tokio::test]
async fn a_peers_set_in_its_last_second_is_refreshed_from_not_adopted() {
    let auth = MockServer::start().await;
    let issued = |access, refresh| {
        ResponseTemplate::new(200).set_body_json(token_body(access, Some(refresh), Some(10)))
    };
    common::token_endpoint_answers_first(&auth, issued("at-2", "rt-2"), 1).await;
    common::token_endpoint_answers(&auth, issued("at-3", "rt-3"), 1).await;
    let Peers {
        dir,
        peer,
        late,
        clock,
    } = peers_on_one_file(&auth, "last-second", 10).await;
    peer.refresh().await.unwrap();
    // By this process's clock the peer's at-2 has about 0.7 s to live.
    clock.advance(Duration::from_millis(9300));
    late.access_token().await.unwrap();
    common::until_published(&late, "at-3").await;
    let spent: Vec<_> = auth
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| common::form(&request.body))
        .filter_map(|form| form.into_iter().find(|(name, _)| name == "refresh_token"))
        .map(|(_, value)| value)
        .collect();
    assert_eq!(spent, ["rt-1", "rt-2"], "each refresh token spent once");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Two managers sharing a token file in a fresh directory: `peer` seeded it
/// with `at-1`/`rt-1` (living `lifetime` seconds), and `late`, on a clock of
/// the test's, has loaded that set.
#[cfg(feature = "file-store")]
struct Peers {
    dir: std::path::PathBuf,
    peer: reqwest_oauth2_refresh::TokenManager,
    late: reqwest_oauth2_refresh::TokenManager,
    clock: Arc<common::TestClock>,
}

#[cfg(feature = "file-store")]
async fn peers_on_one_file(auth: &MockServer, name: &str, lifetime: u64) -> Peers {
    use reqwest_oauth2_refresh::FileStore;
    let dir = std::env::temp_dir().join(format!("oauth2-refresh-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens.json");
    let seed = TokenSet::new("at-1")
        .with_refresh_token("rt-1")
        .with_expires_in(Duration::from_secs(lifetime));
    let peer = builder(auth)
        .store(FileStore::new(&file).unwrap())
        .initial_tokens(seed)
        .build()
        .unwrap();
    peer.load_tokens().await.unwrap(); // seeds the file
    let clock = common::TestClock::new();
    let late = builder(auth)
        .store(FileStore::new(&file).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(
        late.load_tokens().await.unwrap().access_token().secret(),
        "at-1"
    );
    Peers {
        dir,
        peer,
        late,
        clock,
    }
}
