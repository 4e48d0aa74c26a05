//! Revocation (RFC 7009) at the real server: raw, and through the crate's
//! `revoke()` and `revoke_access_token()`.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use reqwest::StatusCode;
use reqwest_middleware::ClientWithMiddleware;
use reqwest_oauth2_refresh::{Error, TokenManager, TokenSet};

use crate::fixture::{BASIC, BASIC_SECRET, Interop, POST, PUBLIC, form};
use crate::stats::Revocation;

/// RFC 7009 revocation through the server's real revocation endpoint.
/// oidc-provider revokes the whole grant when an access token is revoked
/// (RFC 7009 §2.1 allows it), so the session ends: the middleware's refresh
/// after the 401 gets `Error::InvalidGrant`.
pub async fn revocation_endpoint_ends_the_session(interop: Interop) {
    let login = interop.login("revoked", 600);
    let first = interop.first_tokens(PUBLIC, &login).await;
    let manager = interop
        .manager(PUBLIC, first.tokens(), Arc::new(AtomicUsize::new(0)))
        .build()
        .expect("manager");
    let client = interop.client(&manager);
    interop.me(&client, &login).await;

    let response = interop
        .http
        .post(&interop.revocation_endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("token", &first.access),
            ("token_type_hint", "access_token"),
            ("client_id", PUBLIC.id),
        ]))
        .send()
        .await
        .expect("the revocation endpoint answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        interop.raw_me(&first.access).await,
        StatusCode::UNAUTHORIZED
    );

    let err = interop.me_fails(&client, "the grant is revoked").await;
    assert!(matches!(err, Error::InvalidGrant { .. }), "{err:?}");
    let stats = interop.stats(&login).await;
    assert_eq!(stats.refresh_calls, 1, "{stats:?}");
    assert_eq!(stats.errors("invalid_grant"), 1, "{stats:?}");
}

/// `revoke()` with the discovered revocation endpoint: the server is asked
/// to revoke the current (rotated) refresh token with
/// `token_type_hint=refresh_token`, and does: spending it afterwards is
/// `invalid_grant`, and the grant's access token is dead too. The manager
/// has no tokens afterwards (`Error::NoTokens`, through the middleware as
/// well, with no call to the token endpoint), and revoking again is fine:
/// with no tokens nothing is sent; a manager that still holds the revoked
/// tokens sends them and the server answers 200 (RFC 7009 §2.2).
pub async fn revoke_ends_the_session_at_the_server(interop: Interop) {
    let login = interop.login("revoke", 600);
    let first = interop.first_tokens(BASIC, &login).await;
    let manager = TokenManager::discover(&interop.issuer)
        .await
        .expect("discovery")
        .client_id(BASIC.id)
        .client_secret(BASIC_SECRET)
        .initial_tokens(first.tokens())
        .build()
        .expect("manager");
    let client = interop.client(&manager);
    interop.invalidate(&first.access).await;
    interop.me(&client, &login).await;
    let current = manager.cached_tokens().expect("tokens");
    let refresh = current.refresh_token().expect("rt").secret().to_owned();
    assert_ne!(refresh, first.refresh, "rotated once");

    manager.revoke().await.expect("revoked");
    let stats = interop.stats(&login).await;
    assert_eq!(
        stats.revocations,
        [by_basic("refresh_token", Some("RefreshToken"))],
        "{stats:?}"
    );
    let (status, body) = interop.raw_refresh(BASIC, &refresh, false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert_eq!(
        interop.raw_me(current.access_token().secret()).await,
        StatusCode::UNAUTHORIZED,
        "oidc-provider revokes the whole grant"
    );

    no_tokens_after_revoke(&manager, &interop, &client).await;
    let calls_after_revoke = interop.stats(&login).await.refresh_calls;
    assert_eq!(calls_after_revoke, 2, "the raw spend only");

    manager.revoke().await.expect("revoking twice is fine");
    assert_eq!(
        interop.stats(&login).await.revocations.len(),
        1,
        "nothing to send the second time"
    );
    stale_manager_revokes_what_the_server_forgot(&interop, &login, current).await;
}

/// After `revoke()`: no tokens, for every way of asking, through the
/// middleware too.
async fn no_tokens_after_revoke(
    manager: &TokenManager,
    interop: &Interop,
    client: &ClientWithMiddleware,
) {
    assert!(manager.cached_tokens().is_none());
    let err = manager.access_token().await.expect_err("no tokens");
    assert!(matches!(err, Error::NoTokens), "{err:?}");
    let err = manager.refresh().await.expect_err("no tokens");
    assert!(matches!(err, Error::NoTokens), "{err:?}");
    let err = interop.me_fails(client, "no tokens").await;
    assert!(matches!(err, Error::NoTokens), "{err:?}");
}

/// A manager that still holds the revoked `tokens` sends them when told to
/// revoke, and the server answers 200 for a token it no longer knows
/// (RFC 7009 §2.2).
async fn stale_manager_revokes_what_the_server_forgot(
    interop: &Interop,
    login: &str,
    tokens: TokenSet,
) {
    let stale = TokenManager::builder(&interop.token_endpoint)
        .client_id(BASIC.id)
        .client_secret(BASIC_SECRET)
        .revocation_url(&interop.revocation_endpoint)
        .initial_tokens(tokens)
        .build()
        .expect("manager");
    stale
        .revoke()
        .await
        .expect("an unknown token is revoked too");
    let stats = interop.stats(login).await;
    assert_eq!(
        stats.revocations.get(1),
        Some(&by_basic("refresh_token", None)),
        "the server no longer knew it: {stats:?}"
    );
    assert!(matches!(stale.access_token().await, Err(Error::NoTokens)));
    assert_eq!(interop.stats(login).await.refresh_calls, 2);
}

/// `revoke()` with an explicit `.revocation_url(..)`, for the body-secret
/// and the public client: each authenticates the way it does at the token
/// endpoint, and the refresh token is gone. Without a revocation URL,
/// `revoke()` is a configuration error and sends nothing.
pub async fn revoke_with_an_explicit_revocation_url(interop: Interop) {
    for client_cfg in [POST, PUBLIC] {
        let login = interop.login(&format!("revoke-{}", client_cfg.id), 600);
        let first = interop.first_tokens(client_cfg, &login).await;
        let tokens = first.tokens();

        let without_url = interop
            .manager(client_cfg, tokens.clone(), Arc::new(AtomicUsize::new(0)))
            .build()
            .expect("manager");
        let err = without_url.revoke().await.expect_err("no revocation URL");
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(interop.stats(&login).await.revocations.is_empty());

        let manager = interop
            .manager(client_cfg, tokens, Arc::new(AtomicUsize::new(0)))
            .revocation_url(&interop.revocation_endpoint)
            .build()
            .expect("manager");
        let client = interop.client(&manager);
        interop.me(&client, &login).await;
        manager.revoke().await.expect("revoked");
        let stats = interop.stats(&login).await;
        assert_eq!(
            stats.revocations,
            [Revocation::new(
                "refresh_token",
                client_cfg.id,
                client_cfg.method,
                Some("RefreshToken")
            )],
            "{stats:?}"
        );
        let (status, body) = interop.raw_refresh(client_cfg, &first.refresh, false).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
        assert_eq!(
            interop.raw_me(&first.access).await,
            StatusCode::UNAUTHORIZED
        );
        let err = manager.access_token().await.expect_err("no tokens");
        assert!(matches!(err, Error::NoTokens), "{err:?}");
        manager.revoke().await.expect("revoking twice is fine");
    }
}

/// `revoke_access_token()` sends the access token with
/// `token_type_hint=access_token`, and the API then answers 401 to it. The
/// crate keeps the refresh token, expecting the next request to refresh;
/// but oidc-provider 9 revokes the whole grant when one of its access
/// tokens is revoked (`lib/actions/revocation.js`: `revoke(ctx,
/// token.grantId)` for AccessToken and RefreshToken alike; RFC 7009 §2.1
/// allows it), so that refresh is `invalid_grant` and the request fails
/// with `Error::InvalidGrant`. (For a client-credentials token, which has no
/// grant, see `client_credentials_revocation`.)
pub async fn revoke_access_token_ends_the_grant_at_oidc_provider(interop: Interop) {
    let login = interop.login("revoke-access", 600);
    let first = interop.first_tokens(BASIC, &login).await;
    let manager = interop
        .manager(BASIC, first.tokens(), Arc::new(AtomicUsize::new(0)))
        .revocation_url(&interop.revocation_endpoint)
        .build()
        .expect("manager");
    let client = interop.client(&manager);
    interop.me(&client, &login).await;

    manager.revoke_access_token().await.expect("revoked");
    let stats = interop.stats(&login).await;
    assert_eq!(
        stats.revocations,
        [by_basic("access_token", Some("AccessToken"))],
        "{stats:?}"
    );
    assert_eq!(
        interop.raw_me(&first.access).await,
        StatusCode::UNAUTHORIZED
    );
    let kept = manager.cached_tokens().expect("the crate keeps the set");
    assert_eq!(kept.access_token().secret(), first.access);
    assert_eq!(kept.refresh_token().expect("rt").secret(), first.refresh);

    let err = interop.me_fails(&client, "the grant is gone").await;
    assert!(matches!(err, Error::InvalidGrant { .. }), "{err:?}");
    let stats = interop.stats(&login).await;
    interop.note(format!("after revoke_access_token: {stats:?}"));
    assert_eq!(stats.refresh_calls, 1, "{stats:?}");
    assert_eq!(stats.refresh_success, 0, "{stats:?}");
    assert_eq!(stats.errors("invalid_grant"), 1, "{stats:?}");
    // Only our raw check met the 401: the manager treats a revoked
    // access token as expired and gets a new one before sending.
    assert_eq!(stats.api_unauthorized, 1, "raw check only: {stats:?}");

    // Ending the session still works: the dead refresh token is sent
    // and the server answers 200.
    manager.revoke().await.expect("revoked");
    let stats = interop.stats(&login).await;
    assert_eq!(
        stats.revocations.get(1),
        Some(&by_basic("refresh_token", None)),
        "{stats:?}"
    );
    assert!(matches!(manager.access_token().await, Err(Error::NoTokens)));
}

/// A revocation by `basic-client`, authenticated with Basic.
fn by_basic(hint: &str, found: Option<&str>) -> Revocation {
    Revocation::new(hint, BASIC.id, "client_secret_basic", found)
}
