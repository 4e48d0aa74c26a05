//! A provider's own words for "this refresh token is dead" and for a bearer
//! token, given through the builder: each rule reaches the parser.

mod common;

use reqwest_oauth2_refresh::{Error, TokenSet};
use serde_json::json;
use wiremock::{MockServer, ResponseTemplate};

use common::{builder, token_endpoint_answers};

fn tokens() -> TokenSet {
    TokenSet::new("at-1").with_refresh_token("rt-1")
}

#[tokio::test]
async fn a_providers_own_dead_token_code_is_invalid_grant() {
    let server = MockServer::start().await;
    // GitHub answers a dead refresh token with an error inside a 200.
    token_endpoint_answers(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({"error": "bad_refresh_token"})),
        1,
    )
    .await;
    let manager = builder(&server)
        .invalid_grant_error("bad_refresh_token")
        .initial_tokens(tokens())
        .build()
        .unwrap();
    let err = manager.refresh().await.unwrap_err();
    assert!(matches!(err, Error::InvalidGrant { .. }), "{err:?}");
}

#[tokio::test]
async fn without_the_rule_the_same_answer_stays_an_oauth_error() {
    let server = MockServer::start().await;
    token_endpoint_answers(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({"error": "bad_refresh_token"})),
        1,
    )
    .await;
    let manager = builder(&server).initial_tokens(tokens()).build().unwrap();
    let err = manager.refresh().await.unwrap_err();
    assert!(
        matches!(&err, Error::OAuth { error, .. } if error == "bad_refresh_token"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_rule_of_your_own_recognises_an_answer_with_no_error_code() {
    let server = MockServer::start().await;
    let body = json!({"message": "Bad Request", "errors": [{"field": "refresh_token", "code": "invalid"}]});
    token_endpoint_answers(&server, ResponseTemplate::new(400).set_body_json(body), 1).await;
    let manager = builder(&server)
        .invalid_grant_when(|status, body| {
            status == 400 && body["errors"][0]["field"] == "refresh_token"
        })
        .initial_tokens(tokens())
        .build()
        .unwrap();
    let err = manager.refresh().await.unwrap_err();
    assert!(matches!(err, Error::InvalidGrant { .. }), "{err:?}");
}

#[tokio::test]
async fn a_bearer_token_under_another_name_is_accepted() {
    let server = MockServer::start().await;
    let body = json!({"access_token": "at-2", "token_type": "BearerToken", "expires_in": 60});
    token_endpoint_answers(&server, ResponseTemplate::new(200).set_body_json(body), 1).await;
    let manager = builder(&server)
        .bearer_token_type("bearertoken")
        .initial_tokens(tokens())
        .build()
        .unwrap();
    assert_eq!(
        manager.refresh().await.unwrap().access_token().secret(),
        "at-2"
    );
}

#[tokio::test]
async fn rules_add_up_and_a_message_describes_the_dead_token() {
    let server = MockServer::start().await;
    let body =
        json!({"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"});
    token_endpoint_answers(&server, ResponseTemplate::new(400).set_body_json(body), 1).await;
    let manager = builder(&server)
        .invalid_grant_when(|_, body| body["errors"].is_array())
        .invalid_grant_when(|status, body| status == 400 && body["status"] == "BAD_REFRESH_TOKEN")
        .initial_tokens(tokens())
        .build()
        .unwrap();
    let err = manager.refresh().await.unwrap_err();
    match err {
        Error::InvalidGrant { description } => {
            assert_eq!(
                description.as_deref(),
                Some("missing or unknown refresh token")
            );
        }
        other => panic!("not InvalidGrant: {other:?}"),
    }
}
