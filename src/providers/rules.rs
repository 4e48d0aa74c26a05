//! The settings of the presets whose host is fixed, without their
//! endpoints: for the same provider behind another URL, such as a proxy or
//! a test server.
//!
//! ```
//! # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
//! use reqwest_oauth2_refresh::{providers, TokenManager};
//! let manager = providers::rules::slack(TokenManager::builder(
//!     "https://slack-proxy.internal.example/api/oauth.v2.access",
//! ))
//! .client_id("123.456")
//! .client_secret("…")
//! .build()?;
//! # let _ = manager; Ok(()) }
//! ```
//!
//! Each rule set that recognises an answer with no OAuth error code (Twitch,
//! HubSpot, Fitbit, Strava) uses
//! [`invalid_grant_when`](TokenManagerBuilder::invalid_grant_when); rules
//! you add with that method come on top of the preset's.

use reqwest::StatusCode;
use serde_json::Value;

use super::prefers_post;
use crate::endpoint::assertion::AssertionAudience;
use crate::manager::TokenManagerBuilder;

/// [`google`](super::google)'s settings: the secret in the body.
pub fn google(builder: TokenManagerBuilder) -> TokenManagerBuilder {
    prefers_post(builder)
}

/// [`entra`](super::entra)'s settings: the secret in the body; client
/// assertions (certificate credentials) addressed to the token endpoint.
pub fn entra(builder: TokenManagerBuilder) -> TokenManagerBuilder {
    prefers_post(builder).client_assertion_audience(AssertionAudience::Endpoint)
}

/// [`github`](super::github)'s settings: `bad_refresh_token` is
/// `invalid_grant`; the secret in the body.
pub fn github(builder: TokenManagerBuilder) -> TokenManagerBuilder {
    prefers_post(builder).invalid_grant_error("bad_refresh_token")
}

/// [`slack`](super::slack)'s settings: `invalid_refresh_token` is
/// `invalid_grant`; `token_type` `bot` and `user` are bearer tokens.
pub fn slack(builder: TokenManagerBuilder) -> TokenManagerBuilder {
    builder
        .invalid_grant_error("invalid_refresh_token")
        .bearer_token_type("bot")
        .bearer_token_type("user")
}

/// [`twitch`](super::twitch)'s settings: its "Invalid refresh token"
/// answer is `invalid_grant`; the secret in the body.
pub fn twitch(builder: TokenManagerBuilder) -> TokenManagerBuilder {
    prefers_post(builder).invalid_grant_when(twitch_dead_token)
}

/// [`hubspot`](super::hubspot)'s settings: its `BAD_REFRESH_TOKEN`
/// answer is `invalid_grant`; the secret in the body.
pub fn hubspot(builder: TokenManagerBuilder) -> TokenManagerBuilder {
    prefers_post(builder).invalid_grant_when(hubspot_dead_token)
}

/// [`fitbit`](super::fitbit)'s settings: an `errorType` of
/// `invalid_grant` is `invalid_grant`.
pub fn fitbit(builder: TokenManagerBuilder) -> TokenManagerBuilder {
    builder.invalid_grant_when(fitbit_dead_token)
}

/// [`strava`](super::strava)'s settings: its "refresh_token invalid"
/// answer is `invalid_grant`; the secret in the body.
pub fn strava(builder: TokenManagerBuilder) -> TokenManagerBuilder {
    prefers_post(builder).invalid_grant_when(strava_dead_token)
}

/// `{"status": 400, "message": "Invalid refresh token"}` in a 400.
pub(super) fn twitch_dead_token(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::BAD_REQUEST && body["message"] == "Invalid refresh token"
}

/// `{"status": "BAD_REFRESH_TOKEN", ...}` in a 400.
pub(super) fn hubspot_dead_token(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::BAD_REQUEST && body["status"] == "BAD_REFRESH_TOKEN"
}

/// `{"errors": [{"errorType": "invalid_grant", ...}]}` in an error.
pub(super) fn fitbit_dead_token(status: StatusCode, body: &Value) -> bool {
    !status.is_success() && errors(body).any(|e| e["errorType"] == "invalid_grant")
}

/// `{"errors": [{"field": "refresh_token", "code": "invalid", ...}]}` in
/// a 400.
pub(super) fn strava_dead_token(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::BAD_REQUEST
        && errors(body).any(|e| e["field"] == "refresh_token" && e["code"] == "invalid")
}

/// The entries of an `errors` array, none if there is none.
fn errors(body: &Value) -> impl Iterator<Item = &Value> {
    body["errors"].as_array().into_iter().flatten()
}
