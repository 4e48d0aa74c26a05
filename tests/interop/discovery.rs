//! Discovery (RFC 8414, OpenID Connect Discovery) of the real server's
//! metadata, and managers built from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use reqwest_oauth2_refresh::{Error, ServerMetadata, TokenManager};
use serde_json::Value;

use crate::fixture::{BASIC, Interop, POST, POST_ONLY_PATH, POST_SECRET, PUBLIC, unique};
use crate::stats::{Logged, Revocation};

/// `ServerMetadata::fetch` reads the real server's metadata: its token and
/// revocation endpoints and auth methods. oidc-provider 9 serves RFC 8414's
/// `/.well-known/oauth-authorization-server` for the root issuer, so that is
/// the one document fetched; for the issuer with a path (`/post-only`),
/// oidc-provider serves RFC 8414 appended to the path rather than inserted
/// before it (§3.1), so the crate's RFC 8414 URL is a 404 and it falls back
/// to OpenID's `/post-only/.well-known/openid-configuration`.
pub async fn discovery_reads_the_real_metadata(interop: Interop) {
    let openid = root_documents_are_one(&interop).await;
    root_metadata_is_read(&interop, &openid).await;
    path_issuer_falls_back_to_openid(&interop).await;
}

/// The root issuer serves one document at the RFC 8414 and the OpenID
/// address; returns it.
async fn root_documents_are_one(interop: &Interop) -> Value {
    let get_json = |url: String| {
        let http = interop.http.clone();
        async move {
            let response = http.get(&url).send().await.expect("metadata answers");
            assert_eq!(response.status(), StatusCode::OK, "{url}");
            let body = response.text().await.expect("body");
            serde_json::from_str::<Value>(&body).expect("JSON metadata")
        }
    };
    let rfc8414 = get_json(format!(
        "{}/.well-known/oauth-authorization-server",
        interop.issuer
    ))
    .await;
    let openid = get_json(format!(
        "{}/.well-known/openid-configuration",
        interop.issuer
    ))
    .await;
    assert_eq!(rfc8414["issuer"], interop.issuer.as_str(), "{rfc8414}");
    assert_eq!(rfc8414, openid, "one document at both addresses");
    openid
}

/// `ServerMetadata::fetch` of the root issuer: what `openid` says, from
/// the RFC 8414 address alone.
async fn root_metadata_is_read(interop: &Interop, openid: &Value) {
    let tag = unique("discovery");
    let metadata = ServerMetadata::fetch(&interop.tagged_http(&tag), &interop.issuer)
        .await
        .expect("the real metadata");
    interop.note(format!("discovered: {metadata:?}"));
    assert_eq!(metadata.issuer, interop.issuer);
    assert_eq!(metadata.token_endpoint, interop.token_endpoint);
    assert_eq!(
        metadata.revocation_endpoint.as_deref(),
        Some(interop.revocation_endpoint.as_str())
    );
    let methods = metadata
        .token_endpoint_auth_methods_supported
        .clone()
        .expect("auth methods listed");
    let listed: Vec<String> =
        serde_json::from_value(openid["token_endpoint_auth_methods_supported"].clone())
            .expect("a list");
    assert_eq!(methods, listed);
    for method in ["client_secret_basic", "client_secret_post", "none"] {
        assert!(methods.iter().any(|m| m == method), "{method}: {methods:?}");
    }
    let grants = metadata.grant_types_supported.clone().expect("grant types");
    for grant in ["authorization_code", "refresh_token", "client_credentials"] {
        assert!(grants.iter().any(|g| g == grant), "{grant}: {grants:?}");
    }
    assert_eq!(
        interop.requests(&tag).await,
        root_discovery(),
        "RFC 8414 first, and it is there"
    );
}

/// `ServerMetadata::fetch` of the issuer with a path: RFC 8414's URL is a
/// 404 at oidc-provider, then OpenID's.
async fn path_issuer_falls_back_to_openid(interop: &Interop) {
    let tag = unique("discovery-path");
    let post_only = &interop.post_only_issuer;
    let metadata = ServerMetadata::fetch(&interop.tagged_http(&tag), post_only)
        .await
        .expect("the post-only issuer's metadata");
    assert_eq!(&metadata.issuer, post_only);
    assert_eq!(metadata.token_endpoint, format!("{post_only}/token"));
    assert_eq!(
        metadata.revocation_endpoint,
        Some(format!("{post_only}/token/revocation"))
    );
    assert_eq!(
        metadata.token_endpoint_auth_methods_supported,
        Some(vec!["client_secret_post".to_owned()])
    );
    assert_eq!(
        interop.requests(&tag).await,
        post_only_discovery(),
        "RFC 8414 §3.1 path insertion (404 at oidc-provider), then OpenID"
    );
}

/// The requests that discovery of the root issuer makes: RFC 8414's
/// address, found.
fn root_discovery() -> Vec<Logged> {
    vec![Logged::new(
        "GET",
        "/.well-known/oauth-authorization-server",
        200,
    )]
}

/// The requests that discovery of `ISSUER/post-only` makes: RFC 8414's
/// address with the path inserted (404 at oidc-provider), then OpenID's.
fn post_only_discovery() -> Vec<Logged> {
    vec![
        Logged::new(
            "GET",
            &format!("/.well-known/oauth-authorization-server{POST_ONLY_PATH}"),
            404,
        ),
        Logged::new(
            "GET",
            &format!("{POST_ONLY_PATH}/.well-known/openid-configuration"),
            200,
        ),
    ]
}

/// RFC 8414 §3.3: the metadata's issuer must be identical to the one asked
/// for. The server serves its documents for these near misses (the request
/// log shows a 200), and discovery rejects them for their content, without
/// trying the OpenID address after a mismatch at the RFC 8414 one.
pub async fn discovery_rejects_an_issuer_that_is_not_exact(interop: Interop) {
    let cases = [
        (format!("{}/", interop.issuer), root_discovery()),
        (
            interop.issuer.replacen("127.0.0.1", "localhost", 1),
            root_discovery(),
        ),
        (
            format!("{}/", interop.post_only_issuer),
            post_only_discovery(),
        ),
    ];
    for (wrong, expected_requests) in cases {
        let tag = unique("wrong-issuer");
        let err = ServerMetadata::fetch(&interop.tagged_http(&tag), &wrong)
            .await
            .expect_err("not the exact issuer");
        interop.note(format!("{wrong}: {err}"));
        assert!(
            matches!(err, Error::InvalidResponse { .. }),
            "{wrong}: {err:?}"
        );
        assert_eq!(interop.requests(&tag).await, expected_requests, "{wrong}");

        let err = TokenManager::discover(&wrong)
            .await
            .expect_err("discover checks the issuer too");
        assert!(
            matches!(err, Error::InvalidResponse { .. }),
            "{wrong}: {err:?}"
        );
    }
    not_an_issuer_is_a_404(&interop).await;
}

/// Not an issuer at all: both addresses are 404, and that is the error.
async fn not_an_issuer_is_a_404(interop: &Interop) {
    let tag = unique("no-issuer");
    let nowhere = format!("{}/nowhere", interop.issuer);
    let err = ServerMetadata::fetch(&interop.tagged_http(&tag), &nowhere)
        .await
        .expect_err("no metadata");
    interop.note(format!("{nowhere}: {err}"));
    assert!(
        matches!(err, Error::HttpStatus { status } if status == StatusCode::NOT_FOUND),
        "{err:?}"
    );
    assert_eq!(
        interop.requests(&tag).await,
        [
            Logged::new(
                "GET",
                "/.well-known/oauth-authorization-server/nowhere",
                404
            ),
            Logged::new("GET", "/nowhere/.well-known/openid-configuration", 404),
        ]
    );
}

/// A builder from `TokenManager::discover` works end to end: the 401 after
/// an invalidated token makes the middleware refresh at the discovered
/// token endpoint. With no `client_auth`, the default follows the server's
/// list: it lists `client_secret_basic`, so a client with a secret uses
/// Basic, `post-client` included (oidc-provider accepts Basic and the body
/// alike for any secret-based client; a server that holds a client to its
/// registered method needs `.client_auth(ClientAuth::SecretPost)` here).
pub async fn discovered_manager_refreshes_through_the_middleware(interop: Interop) {
    for (client_cfg, expected_auth) in [
        (BASIC, "client_secret_basic"),
        (POST, "client_secret_basic"),
        (PUBLIC, "none"),
    ] {
        let login = interop.login(&format!("discovered-{}", client_cfg.id), 600);
        let first = interop.first_tokens(client_cfg, &login).await;
        let refreshes = Arc::new(AtomicUsize::new(0));
        let counter = refreshes.clone();
        let mut builder = TokenManager::discover(&interop.issuer)
            .await
            .expect("discovery")
            .client_id(client_cfg.id)
            .initial_tokens(first.tokens())
            .on_refresh(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            });
        if let Some(secret) = client_cfg.secret {
            builder = builder.client_secret(secret);
        }
        let manager = builder.build().expect("manager");
        let client = interop.client(&manager);

        interop.me(&client, &login).await;
        interop.invalidate(&first.access).await;
        interop.me(&client, &login).await;
        let stats = interop.stats(&login).await;
        assert_eq!(stats.refresh_calls, 1, "{}: {stats:?}", client_cfg.id);
        assert_eq!(stats.refresh_success, 1, "{}: {stats:?}", client_cfg.id);
        assert_eq!(stats.clients, [client_cfg.id], "{stats:?}");
        assert_eq!(stats.token_auth, [expected_auth], "{stats:?}");
        assert_eq!(refreshes.load(Ordering::SeqCst), 1);
        let now = manager.cached_tokens().expect("tokens");
        assert_ne!(now.refresh_token().expect("rt").secret(), first.refresh);
    }
}

/// The issuer at `/post-only` lists only `client_secret_post`: the
/// discovered builder picks it without being told (the server saw the
/// secret in the body, not Basic), and its refreshes and revocation go to
/// that issuer's endpoints, through the client given to `discover_with`.
pub async fn discovered_default_auth_is_one_the_server_lists(interop: Interop) {
    let post_only = &interop.post_only_issuer;
    let login = interop.login("post-only", 600);
    let first = interop.first_tokens_from(post_only, POST, &login).await;
    let tag = unique("post-only");
    let manager = TokenManager::discover_with(&interop.tagged_http(&tag), post_only)
        .await
        .expect("discovery")
        .client_id(POST.id)
        .client_secret(POST_SECRET)
        .initial_tokens(first.tokens())
        .build()
        .expect("manager");
    // `/api/me` accepts the tokens of both issuers.
    let client = interop.client(&manager);
    interop.me(&client, &login).await;
    interop.invalidate(&first.access).await;
    interop.me(&client, &login).await;

    let stats = interop.stats(&login).await;
    assert_eq!(stats.refresh_calls, 1, "{stats:?}");
    assert_eq!(stats.refresh_success, 1, "{stats:?}");
    assert_eq!(stats.clients, [POST.id], "{stats:?}");
    assert_eq!(stats.token_auth, ["client_secret_post"], "{stats:?}");

    manager.revoke().await.expect("revoked");
    let stats = interop.stats(&login).await;
    assert_eq!(
        stats.revocations,
        [Revocation::new(
            "refresh_token",
            POST.id,
            "client_secret_post",
            Some("RefreshToken")
        )],
        "{stats:?}"
    );
    assert!(matches!(manager.access_token().await, Err(Error::NoTokens)));
    let mut expected = post_only_discovery();
    expected.push(Logged::new("POST", &format!("{POST_ONLY_PATH}/token"), 200));
    expected.push(Logged::new(
        "POST",
        &format!("{POST_ONLY_PATH}/token/revocation"),
        200,
    ));
    assert_eq!(interop.requests(&tag).await, expected);
}
