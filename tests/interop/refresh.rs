//! Refresh against the real server: after a real expiry (401), proactively
//! within the leeway, once for a herd, with each client authentication
//! method, and reuse detection ending the session.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest_oauth2_refresh::Error;

use crate::common::TestClock;
use crate::fixture::{BASIC, Interop, POST, PUBLIC, herd};

/// A token that really expired at the server: the API answers 401, the
/// middleware refreshes exactly once and replays; the refresh token rotates.
pub async fn expired_token_401_refreshes_once_and_replays(interop: Interop) {
    let login = interop.login("expiry", 3);
    let first = interop.first_tokens(BASIC, &login).await;
    assert_eq!(first.expires_in, Some(3), "the server's short TTL applies");
    let refreshes = Arc::new(AtomicUsize::new(0));
    // No expires_in: only the API's 401 can trigger the refresh.
    let manager = interop
        .manager(BASIC, first.tokens(), refreshes.clone())
        .build()
        .expect("manager");
    let client = interop.client(&manager);

    interop.me(&client, &login).await;
    // Normally the 3 s token is still valid here. On a loaded machine it
    // may have expired already (it started ticking in get-tokens.mjs),
    // and then this first request was the 401 and refresh this test is
    // about. Either way, from here on: wait until the server says the
    // current token expired, then expect exactly one more refresh.
    let before = interop.stats(&login).await;
    assert!(before.refresh_calls <= 1, "{before:?}");
    assert_eq!(before.refresh_success, before.refresh_calls, "{before:?}");
    if before.refresh_calls == 1 {
        interop.note(format!(
            "the first token expired before its first use: {before:?}"
        ));
    }
    let current = manager.cached_tokens().expect("tokens");

    until_expired_at_server(&interop, current.access_token().secret()).await;

    interop.me(&client, &login).await;
    let stats = interop.stats(&login).await;
    let expected = before.refresh_calls + 1;
    assert_eq!(stats.refresh_calls, expected, "{stats:?}");
    assert_eq!(stats.refresh_success, expected, "{stats:?}");
    assert_eq!(refreshes.load(Ordering::SeqCst) as u64, expected);
    let now = manager.cached_tokens().expect("tokens");
    assert_ne!(now.access_token().secret(), first.access);
    assert_ne!(now.access_token(), current.access_token());
    let rotated = now.refresh_token().expect("a refresh token");
    assert_ne!(
        rotated.secret(),
        first.refresh,
        "rotation is on for every client"
    );
    assert_ne!(Some(rotated), current.refresh_token(), "rotated again");
    assert_eq!(now.expires_in(), Some(Duration::from_secs(3)));
}

/// Waits, bounded, until the server itself says `access` expired: a real
/// expiry, on the server's clock (the 3 s token of the test above).
async fn until_expired_at_server(interop: &Interop, access: &str) {
    let expired = async {
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        loop {
            poll.tick().await;
            if interop.raw_me(access).await == StatusCode::UNAUTHORIZED {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), expired)
        .await
        .expect("the 3 s token expires at the server within 30 s");
}

/// With `expires_in` known, the manager refreshes once the token is within
/// the leeway of expiry (time moved by an injected clock), in the
/// background: the API never sees the old token rejected, and the old token
/// is in fact still valid at the server.
pub async fn proactive_refresh_before_expiry(interop: Interop) {
    let login = interop.login("proactive", 600);
    let first = interop.first_tokens(POST, &login).await;
    let lifetime = Duration::from_secs(first.expires_in.expect("expires_in"));
    assert_eq!(lifetime, Duration::from_secs(600));
    let clock = TestClock::new();
    let refreshes = Arc::new(AtomicUsize::new(0));
    let manager = interop
        .manager(
            POST,
            first.tokens().with_expires_in(lifetime),
            refreshes.clone(),
        )
        .clock(clock.clone())
        .build()
        .expect("manager");
    let client = interop.client(&manager);

    interop.me(&client, &login).await;
    assert_eq!(interop.stats(&login).await.refresh_calls, 0);

    // 590 s later, within the default 60 s leeway of expiry: the request
    // goes out with the still-valid token while one refresh runs.
    clock.advance(lifetime - Duration::from_secs(10));
    interop.me(&client, &login).await;
    let renewed = async {
        while manager
            .cached_tokens()
            .is_none_or(|t| t.access_token().secret() == first.access)
        {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), renewed)
        .await
        .expect("the background refresh lands within 10 s");
    let stats = interop.stats(&login).await;
    assert_eq!(stats.refresh_calls, 1, "{stats:?}");
    assert_eq!(stats.refresh_success, 1, "{stats:?}");
    assert_eq!(
        stats.api_unauthorized, 0,
        "the refresh came before expiry, not after a 401: {stats:?}"
    );
    assert_eq!(stats.api_ok, 2, "{stats:?}");
    assert_eq!(
        interop.raw_me(&first.access).await,
        StatusCode::OK,
        "the old token is still valid at the server: the refresh was proactive"
    );
    let now = manager.cached_tokens().expect("tokens");
    assert_ne!(now.access_token().secret(), first.access);
    assert_ne!(now.refresh_token().expect("rt").secret(), first.refresh);

    // The new token is fresh: no further refresh.
    interop.me(&client, &login).await;
    assert_eq!(interop.stats(&login).await.refresh_calls, 1);
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
}

/// 200 concurrent requests meet a revoked token: one refresh at the server,
/// no invalid_grant, all 200 succeed. Twice, so two rotations in a row: had
/// any refresh token been spent twice, the server would have revoked the
/// whole family and the second round (and the forced third refresh) would
/// fail.
pub async fn concurrent_herd_refreshes_once_per_rotation(interop: Interop) {
    let login = interop.login("herd", 600);
    let first = interop.first_tokens(BASIC, &login).await;
    let refreshes = Arc::new(AtomicUsize::new(0));
    let manager = interop
        .manager(
            BASIC,
            first
                .tokens()
                .with_expires_in(Duration::from_secs(first.expires_in.expect("expires_in"))),
            refreshes.clone(),
        )
        .build()
        .expect("manager");
    let client = interop.client(&manager);
    interop.me(&client, &login).await;

    let mut refresh_tokens = vec![first.refresh.clone()];
    for round in 1..=2u64 {
        let current = manager.cached_tokens().expect("tokens");
        interop.invalidate(current.access_token().secret()).await;
        herd(&interop, &client, &login).await;
        let stats = interop.stats(&login).await;
        interop.note(format!("herd round {round}: {stats:?}"));
        assert_eq!(stats.refresh_calls, round, "round {round}: {stats:?}");
        assert_eq!(stats.refresh_success, round, "round {round}: {stats:?}");
        assert!(stats.refresh_errors.is_empty(), "round {round}: {stats:?}");
        assert!(
            stats.api_unauthorized >= 1,
            "round {round}: the revoked token was rejected at least once: {stats:?}"
        );
        assert_eq!(refreshes.load(Ordering::SeqCst) as u64, round);
        let rotated = manager.cached_tokens().expect("tokens");
        let rotated = rotated.refresh_token().expect("rt").secret().to_owned();
        assert!(
            !refresh_tokens.contains(&rotated),
            "round {round}: the refresh token rotated"
        );
        refresh_tokens.push(rotated);
    }

    // The family is alive: a third rotation works too.
    manager.refresh().await.expect("a third refresh");
    let stats = interop.stats(&login).await;
    assert_eq!(stats.refresh_calls, 3, "{stats:?}");
    assert_eq!(stats.refresh_success, 3, "{stats:?}");
    assert!(stats.refresh_errors.is_empty(), "{stats:?}");
    interop.me(&client, &login).await;
    assert_eq!(interop.stats(&login).await.refresh_calls, 3);
}

/// `client_secret_basic` (with a secret that needs RFC 6749 §2.3.1
/// form-urlencoding), `client_secret_post` and a public client (`none`):
/// each refreshes after a 401, and the server saw only that client.
pub async fn every_client_auth_method_refreshes(interop: Interop) {
    for client_cfg in [BASIC, POST, PUBLIC] {
        let login = interop.login(client_cfg.method, 600);
        let first = interop.first_tokens(client_cfg, &login).await;
        let refreshes = Arc::new(AtomicUsize::new(0));
        let manager = interop
            .manager(client_cfg, first.tokens(), refreshes.clone())
            .build()
            .expect("manager");
        let client = interop.client(&manager);
        interop.invalidate(&first.access).await;
        interop.me(&client, &login).await;
        let stats = interop.stats(&login).await;
        assert_eq!(stats.refresh_calls, 1, "{}: {stats:?}", client_cfg.id);
        assert_eq!(stats.refresh_success, 1, "{}: {stats:?}", client_cfg.id);
        assert!(
            stats.refresh_errors.is_empty(),
            "{}: {stats:?}",
            client_cfg.id
        );
        assert_eq!(stats.clients, [client_cfg.id], "{stats:?}");
        assert_eq!(stats.token_auth, [client_cfg.method], "{stats:?}");
        assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    }

    // Controls, with a refresh token that does not exist (nothing is
    // spent): with the §2.3.1 encoding the client authenticates and the
    // grant is what fails; without it, the client itself is rejected.
    // So the secret above really exercises the encoding.
    let (status, body) = interop.raw_refresh(BASIC, "no-such-token", false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let (status, body) = interop.raw_refresh(BASIC, "no-such-token", true).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");
}

/// Reuse detection is real: once the manager has rotated the refresh token,
/// spending the old one again (as an attacker with a stolen copy would)
/// makes the server revoke the whole grant, and the manager's next refresh
/// fails with `Error::InvalidGrant`, which sticks without hammering the
/// server.
pub async fn double_spent_refresh_token_revokes_the_family(interop: Interop) {
    let login = interop.login("reuse", 600);
    let first = interop.first_tokens(POST, &login).await;
    let refreshes = Arc::new(AtomicUsize::new(0));
    let manager = interop
        .manager(POST, first.tokens(), refreshes.clone())
        .build()
        .expect("manager");
    let client = interop.client(&manager);

    interop.invalidate(&first.access).await;
    interop.me(&client, &login).await;
    let rotated = manager.cached_tokens().expect("tokens");
    assert_ne!(rotated.refresh_token().expect("rt").secret(), first.refresh);
    assert_eq!(
        interop.raw_me(rotated.access_token().secret()).await,
        StatusCode::OK
    );

    // Spend the rotated-away refresh token behind the manager's back.
    let (status, body) = interop.raw_refresh(POST, &first.refresh, false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let stats = interop.stats(&login).await;
    assert_eq!(stats.errors("invalid_grant"), 1, "{stats:?}");
    assert!(
        stats.refresh_error_descriptions[0].contains("already used"),
        "{stats:?}"
    );
    // The whole family is gone: the manager's current access token too.
    assert_eq!(
        interop.raw_me(rotated.access_token().secret()).await,
        StatusCode::UNAUTHORIZED
    );

    // The manager's next refresh: 401, then invalid_grant.
    let err = interop.me_fails(&client, "the session is over").await;
    assert!(matches!(err, Error::InvalidGrant { .. }), "{err:?}");
    let stats = interop.stats(&login).await;
    assert_eq!(stats.refresh_calls, 3, "{stats:?}");
    assert_eq!(stats.refresh_success, 1, "{stats:?}");
    assert_eq!(stats.errors("invalid_grant"), 2, "{stats:?}");

    // It sticks, without calling the token endpoint again.
    let err = interop.me_fails(&client, "still over").await;
    assert!(matches!(err, Error::InvalidGrant { .. }), "{err:?}");
    let stats = interop.stats(&login).await;
    interop.note(format!("after the double spend: {stats:?}"));
    assert_eq!(stats.refresh_calls, 3, "{stats:?}");
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
}
