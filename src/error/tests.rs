//! What errors say, and how they are classified.

use super::*;

#[test]
fn display_carries_the_servers_words() {
    let e = Error::OAuth {
        status: StatusCode::UNAUTHORIZED,
        error: "invalid_client".into(),
        description: Some("unknown client".into()),
        uri: None,
    };
    assert_eq!(
        e.to_string(),
        "the authorization server answered 401 Unauthorized with error `invalid_client`: unknown client"
    );
    let e = Error::InvalidGrant { description: None };
    assert_eq!(
        e.to_string(),
        "the refresh token was rejected (invalid_grant)"
    );
}

#[test]
fn known_secrets_are_redacted_from_the_servers_words() {
    let e = Error::OAuth {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_request".into(),
        description: Some("refresh token rt-secret-1 unknown for s3cr3t-client".into()),
        uri: Some("https://as.example/e?t=rt-secret-1".into()),
    }
    .redacted(&["rt-secret-1", "s3cr3t-client", "x"]);
    let shown = format!("{e} {e:?}");
    assert!(
        !shown.contains("rt-secret-1") && !shown.contains("s3cr3t-client"),
        "{shown}"
    );
    assert!(
        shown.contains("[redacted] unknown for [redacted]"),
        "{shown}"
    );
    let e = Error::InvalidGrant {
        description: Some("grant rt-secret-1 was revoked".into()),
    }
    .redacted(&["rt-secret-1"]);
    assert_eq!(
        e.to_string(),
        "the refresh token was rejected (invalid_grant): grant [redacted] was revoked"
    );
}

#[test]
fn a_5xx_is_transient_whatever_its_body_says() {
    let oauth = |status: u16, error: &str| Error::OAuth {
        status: StatusCode::from_u16(status).unwrap(),
        error: error.into(),
        description: None,
        uri: None,
    };
    assert!(oauth(503, "server_error").is_transient());
    assert!(oauth(429, "slow_down").is_transient());
    assert!(oauth(400, "temporarily_unavailable").is_transient());
    assert!(!oauth(400, "invalid_client").is_transient());
    assert!(!oauth(200, "server_error").is_transient());
}

#[test]
fn errors_are_send_sync_static() {
    fn assert_bounds<T: Send + Sync + 'static + std::error::Error>() {}
    assert_bounds::<Error>();
}
