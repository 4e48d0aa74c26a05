//! The presets and their rules, without a network.

use super::*;

fn built(builder: TokenManagerBuilder) -> TokenManager {
    builder.client_id("id").client_secret("s").build().unwrap()
}

#[test]
fn presets_build_the_documented_endpoints() {
    for (builder, url) in [
        (google(), "https://oauth2.googleapis.com/token"),
        (
            auth0("t.eu.auth0.com/"),
            "https://t.eu.auth0.com/oauth/token",
        ),
        (
            entra("contoso.onmicrosoft.com"),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
        ),
        (
            cognito("https://auth.example.com"),
            "https://auth.example.com/oauth2/token",
        ),
        (
            okta("o.okta.com", "default"),
            "https://o.okta.com/oauth2/default/v1/token",
        ),
        (
            keycloak("https://sso.example.com", "demo"),
            "https://sso.example.com/realms/demo/protocol/openid-connect/token",
        ),
        (github(), "https://github.com/login/oauth/access_token"),
        (
            github_enterprise("ghe.example.com"),
            "https://ghe.example.com/login/oauth/access_token",
        ),
        (slack(), "https://slack.com/api/oauth.v2.access"),
        (twitch(), "https://id.twitch.tv/oauth2/token"),
        (hubspot(), "https://api.hubapi.com/oauth/v1/token"),
        (
            zoho("accounts.zoho.eu"),
            "https://accounts.zoho.eu/oauth/v2/token",
        ),
        (fitbit(), "https://api.fitbit.com/oauth2/token"),
        (strava(), "https://www.strava.com/oauth/token"),
    ] {
        assert_eq!(built(builder).token_url().as_str(), url);
    }
}

#[test]
fn presets_pick_the_documented_client_authentication() {
    assert_eq!(built(google()).client_auth(), ClientAuth::SecretPost);
    assert_eq!(
        built(auth0("t.auth0.com")).client_auth(),
        ClientAuth::SecretPost
    );
    assert_eq!(built(entra("common")).client_auth(), ClientAuth::SecretPost);
    assert_eq!(
        built(cognito("c.example.com")).client_auth(),
        ClientAuth::SecretBasic
    );
    let public = google().client_id("id").build().unwrap();
    assert_eq!(public.client_auth(), ClientAuth::None);
}

#[test]
fn new_presets_pick_the_documented_client_authentication() {
    for (name, builder, method) in [
        ("github", github(), ClientAuth::SecretPost),
        ("slack", slack(), ClientAuth::SecretBasic),
        ("twitch", twitch(), ClientAuth::SecretPost),
        ("hubspot", hubspot(), ClientAuth::SecretPost),
        ("zoho", zoho("accounts.zoho.com"), ClientAuth::SecretPost),
        ("fitbit", fitbit(), ClientAuth::SecretBasic),
        ("strava", strava(), ClientAuth::SecretPost),
    ] {
        assert_eq!(built(builder).client_auth(), method, "{name}");
    }
    // GitHub's device-flow tokens are refreshed without a secret.
    let device = github().client_id("Iv1.app").build().unwrap();
    assert_eq!(device.client_auth(), ClientAuth::None);
}

use reqwest::StatusCode;
use serde_json::json;

const BAD: StatusCode = StatusCode::BAD_REQUEST;

#[test]
fn twitch_rule_matches_only_the_invalid_refresh_token_answer() {
    let dead = json!({"error": "Bad Request", "status": 400, "message": "Invalid refresh token"});
    assert!(rules::twitch_dead_token(BAD, &dead));
    // The answer as some clients saw it, without `error`.
    let bare = json!({"status": 400, "message": "Invalid refresh token"});
    assert!(rules::twitch_dead_token(BAD, &bare));
    let secret = json!({"status": 403, "message": "invalid client secret"});
    assert!(!rules::twitch_dead_token(StatusCode::FORBIDDEN, &secret));
    assert!(!rules::twitch_dead_token(StatusCode::OK, &dead));
}

#[test]
fn hubspot_rule_matches_only_bad_refresh_token() {
    let dead =
        json!({"status": "BAD_REFRESH_TOKEN", "message": "missing or invalid refresh token"});
    assert!(rules::hubspot_dead_token(BAD, &dead));
    let client = json!({"status": "BAD_CLIENT_ID", "message": "missing or invalid client id"});
    assert!(!rules::hubspot_dead_token(BAD, &client));
    assert!(!rules::hubspot_dead_token(StatusCode::OK, &dead));
}

#[test]
fn fitbit_rule_matches_only_invalid_grant_in_its_errors() {
    let dead = json!({"errors": [{"errorType": "invalid_grant", "message": "Refresh token invalid: x"}], "success": false});
    assert!(rules::fitbit_dead_token(BAD, &dead));
    assert!(rules::fitbit_dead_token(StatusCode::UNAUTHORIZED, &dead));
    let client = json!({"errors": [{"errorType": "invalid_client", "message": "Invalid authorization header"}], "success": false});
    assert!(!rules::fitbit_dead_token(StatusCode::UNAUTHORIZED, &client));
    assert!(!rules::fitbit_dead_token(
        BAD,
        &json!({"errors": "invalid_grant"})
    ));
    assert!(!rules::fitbit_dead_token(StatusCode::OK, &dead));
}

#[test]
fn strava_rule_matches_only_an_invalid_refresh_token_field() {
    let dead = json!({"message": "Bad Request", "errors": [{"resource": "RefreshToken", "field": "refresh_token", "code": "invalid"}]});
    assert!(rules::strava_dead_token(BAD, &dead));
    let secret = json!({"message": "Bad Request", "errors": [{"resource": "Application", "field": "client_secret", "code": "invalid"}]});
    assert!(!rules::strava_dead_token(BAD, &secret));
    let missing = json!({"message": "Bad Request", "errors": [{"resource": "RefreshToken", "field": "refresh_token", "code": "missing"}]});
    assert!(!rules::strava_dead_token(BAD, &missing));
    assert!(!rules::strava_dead_token(StatusCode::UNAUTHORIZED, &dead));
}
