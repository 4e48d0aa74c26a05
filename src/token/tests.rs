//! Secrets stay secret; the stored form round-trips and refuses junk.

use super::*;
use std::time::UNIX_EPOCH;

#[test]
fn debug_never_shows_secrets() {
    let tokens = TokenSet::new("the-access-secret")
        .with_refresh_token("the-refresh-secret")
        .with_expires_in(Duration::from_secs(60));
    let printed = format!("{tokens:?} {tokens:#?}");
    assert!(!printed.contains("the-access-secret"), "{printed}");
    assert!(!printed.contains("the-refresh-secret"), "{printed}");
    assert!(printed.contains("[redacted]"));
}

#[test]
fn serde_round_trip_keeps_lifetime_and_issue_time() {
    let issued = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let tokens = TokenSet::new("a")
        .with_refresh_token("r")
        .with_expires_in(Duration::from_secs(300))
        .with_issued_at(issued)
        .with_scope("read write");
    let json = serde_json::to_string(&tokens).unwrap();
    let back: TokenSet = serde_json::from_str(&json).unwrap();
    assert_eq!(back, tokens);
    assert_eq!(
        back.expires_at(),
        Some(issued + Duration::from_secs(300)),
        "{json}"
    );
}

#[test]
fn corrupt_times_are_errors_not_panics() {
    let huge = format!(r#"{{"access_token":"a","issued_at":{}}}"#, u64::MAX);
    let err = serde_json::from_str::<TokenSet>(&huge).unwrap_err();
    assert!(err.to_string().contains("issued_at"), "{err}");
    let lifetime = format!(
        r#"{{"access_token":"a","issued_at":5,"expires_in":{}}}"#,
        u64::MAX
    );
    let tokens: TokenSet = serde_json::from_str(&lifetime).unwrap();
    assert_eq!(tokens.expires_at(), None);
    for junk in [
        r#"{"access_token":"a","issued_at":-1}"#,
        r#"{"access_token":7,"issued_at":1}"#,
        r#"{"issued_at":1}"#,
        r#"{"access_token":"a","issued_at":1.5e300}"#,
    ] {
        assert!(serde_json::from_str::<TokenSet>(junk).is_err(), "{junk}");
    }
}

#[test]
fn the_issue_time_survives_to_the_nanosecond_and_old_files_still_load() {
    let issued = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    let tokens = TokenSet::new("a")
        .with_expires_in(Duration::from_secs(4))
        .with_issued_at(issued);
    let json = serde_json::to_string(&tokens).unwrap();
    let back: TokenSet = serde_json::from_str(&json).unwrap();
    assert_eq!(back.issued_at(), issued, "{json}");
    assert_eq!(back.expires_at(), tokens.expires_at());
    // A file written by 0.1: whole seconds only.
    let old: TokenSet =
        serde_json::from_str(r#"{"access_token":"a","expires_in":4,"issued_at":1700000000}"#)
            .unwrap();
    assert_eq!(
        old.issued_at(),
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    );
    let bad = r#"{"access_token":"a","issued_at":1,"issued_at_nanos":1000000000}"#;
    assert!(serde_json::from_str::<TokenSet>(bad).is_err());
}

#[test]
fn deserializes_minimal_form() {
    let back: TokenSet = serde_json::from_str(r#"{"access_token":"a","issued_at":5}"#).unwrap();
    assert_eq!(back.access_token().secret(), "a");
    assert!(back.refresh_token().is_none());
    assert!(back.expires_at().is_none());
}

#[test]
fn a_token_response_keeps_what_the_app_needs_and_hides_it_from_debug() {
    let body = br#"{"access_token":"at","token_type":"Bearer","expires_in":60,"scope":"a b",
        "refresh_token":"rt","id_token":"the-id-token","user_id":"u-1","x_secret":"hidden"}"#;
    let before = SystemTime::now();
    let tokens = TokenSet::from_token_response(body).unwrap();
    assert_eq!(tokens.token_type(), Some("Bearer"));
    assert_eq!(tokens.scope(), Some("a b"));
    assert_eq!(tokens.id_token().unwrap().secret(), "the-id-token");
    assert_eq!(tokens.extra()["user_id"], "u-1");
    assert!(tokens.extra().get("access_token").is_none());
    assert!(tokens.expires_at().unwrap() >= before + Duration::from_secs(60));
    let printed = format!("{tokens:?}");
    for secret in ["the-id-token", "hidden", "\"rt\"", "\"at\""] {
        assert!(!printed.contains(secret), "{printed}");
    }
    // All of it survives the store.
    let back: TokenSet = serde_json::from_str(&serde_json::to_string(&tokens).unwrap()).unwrap();
    assert_eq!(back, tokens);
}

#[test]
fn an_error_response_is_the_error_it_is() {
    let err = TokenSet::from_token_response(br#"{"error":"invalid_grant"}"#).unwrap_err();
    assert!(matches!(err, crate::Error::InvalidGrant { .. }), "{err:?}");
    assert!(TokenSet::from_token_response(b"<html>").is_err());
    assert!(TokenSet::from_token_response(br#"{"token_type":"Bearer"}"#).is_err());
}
