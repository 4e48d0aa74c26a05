//! Interop with a real, OpenID Certified authorization server: `oidc-provider`
//! (pinned in `tests/interop/package.json`), with refresh-token rotation on
//! for every client and its reuse detection (a rotated refresh token that is
//! presented again revokes the whole grant).
//!
//! The server: `OIDC_ISSUER` if set; otherwise `node tests/interop/server.mjs`,
//! started for each test. Its pinned packages are installed here when they
//! are missing or older than `package-lock.json` (`npm ci`, once, under a
//! lock that other test processes respect). Without `node` (or, to install,
//! `npm`) the tests are reported as ignored, with the reason printed once;
//! under CI (`CI=true` or `CI=1`) they fail instead. The first token pair of
//! each test comes from `tests/interop/get-tokens.mjs`, which drives the
//! real authorization code + PKCE flow through the server's login and
//! consent forms.
//!
//! Covered, each against the real server:
//! - refresh: after a real expiry (401), proactively within the leeway, once
//!   for a herd of 200 concurrent requests, with each client authentication
//!   method (the server records which one each call used), and reuse
//!   detection ending the session with a sticky `Error::InvalidGrant`;
//! - discovery: `ServerMetadata::fetch` and `TokenManager::discover` /
//!   `discover_with` read the token and revocation endpoints and auth
//!   methods (RFC 8414 first; the OpenID fallback for the issuer with a
//!   path), reject an issuer that is not exact (RFC 8414 §3.3), and give a
//!   builder that refreshes end to end, with a default auth method the
//!   server lists (`ISSUER/post-only` lists only `client_secret_post`);
//! - revocation (RFC 7009): `revoke()` with a discovered or explicit
//!   endpoint kills the refresh token at the server and leaves the manager
//!   with `Error::NoTokens`, twice is fine; `revoke_access_token()` makes the
//!   API answer 401, and since oidc-provider revokes the whole grant with an
//!   access token, the next refresh is `Error::InvalidGrant`;
//! - client credentials: lazy first token, exactly one grant per herd (cold
//!   or after a 401), `scope` and RFC 8707 `resource` reaching the token,
//!   revocation followed by a new grant;
//! - DPoP (RFC 9449), with nonces required at the token endpoint and at a
//!   resource server that verifies every proof and `cnf.jkt`: a herd under
//!   nonce rotation refreshes once per rotation, a family resumes from a
//!   `FileStore` with its key in new processes (the CLI, a worker), and a
//!   fleet of processes shares one bound family through one token file.
//!
//! Each test uses its own account (login), or its own tag (the
//! `x-interop-test` header) for client-credentials and discovery traffic,
//! and the server counts token endpoint calls per account or tag (`GET
//! /test/stats?account=..`) and logs tagged requests (`GET
//! /test/requests?tag=..`), so the tests can assert what really reached the
//! server, also when they share one.
//!
//! Layout: `harness` (can the server run, installing it, starting it, one
//! trial), `fixture` (a started server and what a test asks of it), `stats`
//! (what the server counted), and the scenarios by topic.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/process.rs"]
mod process;

mod client_credentials;
mod discovery;
mod dpop;
mod dpop_fleet;
mod fixture;
mod harness;
mod keys;
mod refresh;
mod revocation;
mod stats;

use std::process::ExitCode;

use common::service::Trials;
use harness::Scenario;

/// `module::test` names and their scenarios, as libtest would name them.
macro_rules! scenarios {
    ($($module:ident :: $test:ident),* $(,)?) => {
        [$((
            concat!(stringify!($module), "::", stringify!($test)),
            (|interop| Box::pin($module::$test(interop))) as Scenario,
        )),*]
    };
}

fn main() -> ExitCode {
    // A DPoP fleet or restart worker: this binary, run again by a scenario.
    if let Some(code) = dpop_fleet::worker_main() {
        return code;
    }
    let scenarios = scenarios![
        refresh::expired_token_401_refreshes_once_and_replays,
        refresh::proactive_refresh_before_expiry,
        refresh::concurrent_herd_refreshes_once_per_rotation,
        refresh::every_client_auth_method_refreshes,
        refresh::double_spent_refresh_token_revokes_the_family,
        discovery::discovery_reads_the_real_metadata,
        discovery::discovery_rejects_an_issuer_that_is_not_exact,
        discovery::discovered_manager_refreshes_through_the_middleware,
        discovery::discovered_default_auth_is_one_the_server_lists,
        revocation::revocation_endpoint_ends_the_session,
        revocation::revoke_ends_the_session_at_the_server,
        revocation::revoke_with_an_explicit_revocation_url,
        revocation::revoke_access_token_ends_the_grant_at_oidc_provider,
        client_credentials::client_credentials_single_flight_from_cold_and_after_401,
        client_credentials::client_credentials_revocation,
        keys::private_key_jwt_clients_refresh_under_concurrency_and_revoke,
        keys::jwt_bearer_grant_exchanges_once_per_herd,
        keys::google_service_account_key_file_gets_a_token,
        dpop::dpop_herd_refreshes_once_per_rotation_with_nonces_at_both_ends,
        dpop::dpop_family_resumes_after_a_restart_from_the_file_store,
        dpop_fleet::dpop_fleet_shares_one_family_through_a_file_store,
    ];
    let mut trials = Trials::from_args("interop");
    harness::show_notes(trials.nocapture());
    let any_runs = scenarios.iter().any(|(name, _)| trials.would_run(name));
    let missing = harness::missing(any_runs);
    for (name, scenario) in scenarios {
        trials.add(name, missing.as_deref(), move || {
            harness::run(name, scenario)
        });
    }
    trials.run()
}
