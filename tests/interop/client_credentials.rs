//! Client credentials (RFC 6749 §4.4) at the real server: a lazy first
//! token, one grant per herd, `scope` and RFC 8707 `resource`, revocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest_oauth2_refresh::{TokenManager, TokenManagerBuilder};

use crate::fixture::{
    API_RESOURCE, API_SCOPE, CC_CLIENT, CC_SECRET, HERD, Interop, service_herd, unique,
};
use crate::stats::{Logged, Revocation};

/// A client-credentials manager for `cc-client`, its token endpoint calls
/// tagged with `tag` (so the server counts them under it).
fn cc_manager(interop: &Interop, tag: &str, grants: Arc<AtomicUsize>) -> TokenManagerBuilder {
    TokenManager::builder(&interop.token_endpoint)
        .client_id(CC_CLIENT)
        .client_secret(CC_SECRET)
        .client_credentials()
        .http_client(interop.tagged_http(tag))
        .on_refresh(move |_| {
            grants.fetch_add(1, Ordering::SeqCst);
        })
}

/// Machine to machine: nothing is fetched when the manager is built; a
/// herd of 200 concurrent requests on a cold manager causes exactly one
/// client-credentials grant (with `scope` and RFC 8707 `resource`, so the
/// token has the audience and scope `/api/service` wants); after the token
/// is invalidated, each further herd causes exactly one new grant, and every
/// request succeeds.
pub async fn client_credentials_single_flight_from_cold_and_after_401(interop: Interop) {
    let tag = unique("cc-herd");
    let grants = Arc::new(AtomicUsize::new(0));
    let manager = cc_manager(&interop, &tag, grants.clone())
        .scope(API_SCOPE)
        .resource(API_RESOURCE)
        .build()
        .expect("manager");
    assert!(manager.cached_tokens().is_none());
    assert_eq!(interop.stats(&tag).await.cc_grants, 0, "lazy");
    assert!(interop.requests(&tag).await.is_empty(), "lazy");
    let client = interop.client(&manager);

    service_herd(&interop, &client).await;
    let stats = interop.stats(&tag).await;
    interop.note(format!("cold herd: {stats:?}"));
    assert_eq!(stats.cc_grants, 1, "{stats:?}");
    assert!(stats.cc_errors.is_empty(), "{stats:?}");
    assert_eq!(stats.cc_scopes, [Some(API_SCOPE.to_owned())], "{stats:?}");
    assert_eq!(stats.clients, [CC_CLIENT], "{stats:?}");
    assert_eq!(stats.token_auth, ["client_secret_basic"], "{stats:?}");
    assert_eq!(stats.api_ok, HERD as u64, "{stats:?}");
    assert_eq!(stats.api_unauthorized, 0, "{stats:?}");
    assert_eq!(grants.load(Ordering::SeqCst), 1, "on_refresh saw it");
    let tokens = manager.cached_tokens().expect("tokens");
    assert!(tokens.refresh_token().is_none());
    assert_eq!(tokens.expires_in(), Some(Duration::from_secs(600)));
    assert_eq!(tokens.scope(), Some(API_SCOPE));

    let mut seen = vec![tokens.access_token().secret().to_owned()];
    for round in 2..=3u64 {
        let old = manager.cached_tokens().expect("tokens");
        let old = old.access_token().secret().to_owned();
        interop.invalidate_only(&old).await;
        assert_eq!(interop.raw_service(&old).await, StatusCode::UNAUTHORIZED);
        service_herd(&interop, &client).await;
        let stats = interop.stats(&tag).await;
        interop.note(format!("herd round {round}: {stats:?}"));
        assert_eq!(stats.cc_grants, round, "round {round}: {stats:?}");
        assert!(stats.cc_errors.is_empty(), "round {round}: {stats:?}");
        assert!(
            stats.api_unauthorized >= round - 1,
            "round {round}: the invalidated token was rejected: {stats:?}"
        );
        assert_eq!(grants.load(Ordering::SeqCst) as u64, round);
        let new = manager.cached_tokens().expect("tokens");
        let new = new.access_token().secret().to_owned();
        assert!(!seen.contains(&new), "round {round}: a new token");
        seen.push(new);
    }
    let token_calls = vec![Logged::new("POST", "/token", 200); 3];
    assert_eq!(
        interop.requests(&tag).await,
        token_calls,
        "one call a grant"
    );
}

/// Client-credentials tokens have no grant at oidc-provider, so revoking
/// one revokes just it: after `revoke_access_token()` the API answers 401
/// to it, and the next request gets a new token (one more grant) and
/// succeeds, as the crate documents. `revoke()` (no refresh token, so the
/// access token, hinted `access_token`) clears the set, but a
/// client-credentials manager then fetches a new token when next asked;
/// it never reports `NoTokens`. Without `resource`, oidc-provider issues a
/// token with no audience (and drops the non-OpenID scope): `/api/service`
/// answers 403 `insufficient_scope`, which the middleware passes through
/// without a new grant.
pub async fn client_credentials_revocation(interop: Interop) {
    let tag = unique("cc-revoke");
    let grants = Arc::new(AtomicUsize::new(0));
    let manager = cc_manager(&interop, &tag, grants.clone())
        .scope(API_SCOPE)
        .resource(API_RESOURCE)
        .revocation_url(&interop.revocation_endpoint)
        .build()
        .expect("manager");
    let client = interop.client(&manager);
    interop.service_ok(&client).await;
    let first = manager.cached_tokens().expect("tokens");
    let first = first.access_token().secret().to_owned();

    manager.revoke_access_token().await.expect("revoked");
    let revoked = |found| Revocation::new("access_token", CC_CLIENT, "client_secret_basic", found);
    let stats = interop.stats(&tag).await;
    assert_eq!(
        stats.revocations,
        [revoked(Some("ClientCredentials"))],
        "{stats:?}"
    );
    assert_eq!(interop.raw_service(&first).await, StatusCode::UNAUTHORIZED);

    interop.service_ok(&client).await;
    let stats = interop.stats(&tag).await;
    assert_eq!(stats.cc_grants, 2, "{stats:?}");
    // Only our raw check met the 401: the manager treats a revoked
    // access token as expired and gets a new one before sending.
    assert_eq!(stats.api_unauthorized, 1, "raw check only: {stats:?}");
    let second = manager.cached_tokens().expect("tokens");
    let second = second.access_token().secret().to_owned();
    assert_ne!(second, first);

    manager.revoke().await.expect("revoked");
    let stats = interop.stats(&tag).await;
    assert_eq!(
        stats.revocations,
        [
            revoked(Some("ClientCredentials")),
            revoked(Some("ClientCredentials"))
        ],
        "{stats:?}"
    );
    assert_eq!(interop.raw_service(&second).await, StatusCode::UNAUTHORIZED);
    assert!(manager.cached_tokens().is_none());
    let third = manager
        .access_token()
        .await
        .expect("a client-credentials manager gets a new token");
    assert_ne!(third.secret(), second);
    assert_eq!(interop.stats(&tag).await.cc_grants, 3);
    interop.service_ok(&client).await;
    assert_eq!(grants.load(Ordering::SeqCst), 3);
    without_resource_the_api_forbids(&interop).await;
}

/// Control: no `resource`, so no audience: a 403 passed through, with no
/// new grant.
async fn without_resource_the_api_forbids(interop: &Interop) {
    let tag = unique("cc-no-resource");
    let manager = cc_manager(interop, &tag, Arc::new(AtomicUsize::new(0)))
        .scope(API_SCOPE)
        .build()
        .expect("manager");
    let response = interop
        .client(&manager)
        .get(interop.service())
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let stats = interop.stats(&tag).await;
    assert_eq!(stats.cc_grants, 1, "{stats:?}");
    assert_eq!(stats.cc_scopes, [None], "{stats:?}");
    assert_eq!(stats.api_forbidden, 1, "{stats:?}");
}
