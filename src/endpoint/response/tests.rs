//! The parsers alone: no HTTP, no clock.

use super::*;

static STANDARD: std::sync::LazyLock<ResponsePolicy> =
    std::sync::LazyLock::new(ResponsePolicy::default);

fn map(json: &str) -> Map<String, Value> {
    match serde_json::from_str(json).unwrap() {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status: StatusCode::from_u16(status).unwrap(),
        retry_after: Some(Duration::from_secs(3)),
        body: body.as_bytes().to_vec(),
        received_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1000),
    }
}

#[test]
fn parses_success_with_extra_fields_and_mixed_case_type() {
    let now = SystemTime::now();
    let tokens = parse_token_response(
        &map(r#"{"access_token":"a","token_type":"bEaReR","expires_in":"3600","refresh_token":"r","id_token":"x","ext":{"n":1}}"#),
        now,
        &STANDARD,
    )
    .unwrap();
    assert_eq!(tokens.access_token().secret(), "a");
    assert_eq!(tokens.refresh_token().unwrap().secret(), "r");
    assert_eq!(tokens.expires_at(), Some(now + Duration::from_secs(3600)));
}

#[test]
fn rejects_non_bearer_and_missing_access_token() {
    let now = SystemTime::now();
    for body in [
        r#"{"access_token":"a","token_type":"mac"}"#,
        r#"{"token_type":"Bearer"}"#,
        r#"{"access_token":"a\nb"}"#,
        r#"{"access_token":"a","expires_in":-5}"#,
        r#"{"access_token":"a","token_type":7}"#,
    ] {
        assert!(
            matches!(
                parse_token_response(&map(body), now, &STANDARD),
                Err(Error::InvalidResponse { .. })
            ),
            "{body}"
        );
    }
}

#[test]
fn empty_refresh_token_counts_as_none() {
    let tokens = parse_token_response(
        &map(r#"{"access_token":"a","token_type":"Bearer","refresh_token":""}"#),
        SystemTime::now(),
        &STANDARD,
    )
    .unwrap();
    assert!(tokens.refresh_token().is_none());
}

#[test]
fn expires_in_as_servers_send_it() {
    let secs = |v: &str| seconds_field(Some(&serde_json::from_str(v).unwrap()));
    assert_eq!(secs("3600").unwrap(), Some(Duration::from_secs(3600)));
    assert_eq!(secs("\"60\"").unwrap(), Some(Duration::from_secs(60)));
    assert_eq!(secs("59.9").unwrap(), Some(Duration::from_secs(59)));
    assert_eq!(secs("0").unwrap(), None);
    assert_eq!(secs("1e300").unwrap(), Some(Duration::from_secs(u64::MAX)));
    assert!(secs("\"soon\"").is_err());
    assert!(secs("[1]").is_err());
    assert_eq!(seconds_field(None).unwrap(), None);
}

#[test]
fn oauth_errors_map_to_variants() {
    let e = oauth_error(
        &map(r#"{"error":"invalid_grant","error_description":"expired"}"#),
        StatusCode::BAD_REQUEST,
        &STANDARD,
    );
    assert!(matches!(e, Some(Error::InvalidGrant { description: Some(d) }) if d == "expired"));
    let e = oauth_error(
        &map(r#"{"error":"invalid_client"}"#),
        StatusCode::UNAUTHORIZED,
        &STANDARD,
    );
    assert!(
        matches!(e, Some(Error::OAuth { status, error, .. }) if status == 401 && error == "invalid_client")
    );
    assert!(oauth_error(&map(r#"{"access_token":"a"}"#), StatusCode::OK, &STANDARD).is_none());
}

#[test]
fn an_error_inside_a_200_is_an_error() {
    let result = interpret_token(answer(200, r#"{"error":"invalid_grant"}"#), &STANDARD);
    assert!(matches!(
        result,
        Err(AttemptError::Permanent(Error::InvalidGrant { .. }))
    ));
}

#[test]
fn server_errors_are_transient_and_keep_retry_after() {
    match interpret_token(answer(503, ""), &STANDARD) {
        Err(AttemptError::Transient { error, retry_after }) => {
            assert!(matches!(error, Error::HttpStatus { status } if status == 503));
            assert_eq!(retry_after, Some(Duration::from_secs(3)));
        }
        _ => panic!("a 503 is transient"),
    }
    assert!(matches!(
        interpret_token(
            answer(400, r#"{"error":"temporarily_unavailable"}"#),
            &STANDARD
        ),
        Err(AttemptError::Transient { .. })
    ));
}

#[test]
fn redirects_and_junk_are_permanent() {
    assert!(matches!(
        interpret_token(answer(307, ""), &STANDARD),
        Err(AttemptError::Permanent(Error::InvalidResponse { .. }))
    ));
    assert!(matches!(
        interpret_token(answer(200, "<html>"), &STANDARD),
        Err(AttemptError::Permanent(Error::InvalidResponse { .. }))
    ));
    assert!(matches!(
        interpret_token(answer(200, "[]"), &STANDARD),
        Err(AttemptError::Permanent(Error::InvalidResponse { .. }))
    ));
}

#[test]
fn the_expiry_is_stamped_at_arrival() {
    let tokens = interpret_token(
        answer(200, r#"{"access_token":"a","expires_in":60}"#),
        &STANDARD,
    )
    .ok()
    .unwrap();
    assert_eq!(
        tokens.expires_at(),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1060))
    );
}

#[test]
fn revocation_is_any_2xx() {
    assert!(interpret_revocation(answer(200, ""), &STANDARD).is_ok());
    assert!(matches!(
        interpret_revocation(
            answer(400, r#"{"error":"unsupported_token_type"}"#),
            &STANDARD
        ),
        Err(AttemptError::Permanent(Error::OAuth { .. }))
    ));
    assert!(matches!(
        interpret_revocation(answer(503, ""), &STANDARD),
        Err(AttemptError::Transient { .. })
    ));
}

#[test]
fn control_characters_in_the_servers_words_are_escaped() {
    let forged = r#"{"error":"invalid_client\u001b[2J","error_description":"no\n2026-12-01T00:00:00Z INFO forged line\r"}"#;
    let e = oauth_error(&map(forged), StatusCode::UNAUTHORIZED, &STANDARD).unwrap();
    let shown = e.to_string();
    assert!(
        !shown.contains('\n') && !shown.contains('\r') && !shown.contains('\u{1b}'),
        "{shown:?}"
    );
    assert!(shown.contains("no\\n2026"), "{shown}");
    assert_eq!(escape_controls("plain é text"), "plain é text");
}
