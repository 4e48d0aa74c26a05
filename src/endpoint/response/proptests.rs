//! Property tests of the token and revocation endpoint answers: any bytes,
//! any JSON and broken valid responses give a token set that round-trips
//! through the stored form, or a typed error that quotes no secret and no
//! control character.

pub(crate) mod strategies;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use self::strategies::*;
use super::*;

fn answer(status: u16, body: Vec<u8>) -> Answer {
    Answer {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        retry_after: None,
        body,
        received_at: SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
    }
}

fn statuses() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => Just(200u16),
        1 => prop::sample::select(vec![201, 204, 301, 400, 401, 403, 429, 500, 503]),
        1 => 100u16..1000,
    ]
}

/// The string values of the fields that carry secrets.
fn secrets(map: Option<&Map<String, Value>>) -> Vec<String> {
    let Some(map) = map else { return Vec::new() };
    ["access_token", "refresh_token", "id_token"]
        .iter()
        .filter_map(|name| map.get(*name)?.as_str())
        .filter(|s| s.len() >= 16)
        .map(str::to_owned)
        .collect()
}

/// An error as a log would show it: no secret in it, no control character
/// that could forge a line or drive a terminal.
pub(crate) fn check_error(error: &Error, secrets: &[String]) -> Result<(), TestCaseError> {
    let shown = error.to_string();
    let debug = format!("{error:?}");
    prop_assert!(!shown.chars().any(char::is_control), "{shown:?}");
    for secret in secrets {
        prop_assert!(!shown.contains(secret.as_str()), "a secret in {shown:?}");
        prop_assert!(!debug.contains(secret.as_str()), "a secret in {debug}");
    }
    Ok(())
}

/// A token set the stored form (file, Redis) gives back equal.
pub(crate) fn check_round_trip(tokens: &TokenSet) -> Result<(), TestCaseError> {
    let json = serde_json::to_string(tokens).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: TokenSet = serde_json::from_str(&json)
        .map_err(|e| TestCaseError::fail(format!("the stored form does not read back: {e}")))?;
    let extra_back = Value::Object(back.extra().clone());
    prop_assert!(
        same_json(&extra_back, &Value::Object(tokens.extra().clone())),
        "the extra fields changed: {} became {}",
        Value::Object(tokens.extra().clone()),
        extra_back
    );
    // Equal in all else, to the nanosecond.
    let token_type = back.token_type().map(str::to_owned);
    let id_token = back.id_token().cloned();
    let back = back.with_response_fields(token_type, id_token, tokens.extra().clone());
    prop_assert_eq!(&back, tokens);
    Ok(())
}

/// Equal JSON, but for floats a few units in the last place apart:
/// serde_json without its `float_roundtrip` feature (this crate does not
/// enable it) may read a float back that much off what it wrote. Found by these tests;
/// it changes nothing the crate uses (extra fields are the application's).
pub(crate) fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            // Units in the last place, subnormals included: neighbouring
            // floats of one sign have neighbouring bit patterns. Two is
            // the most the long run saw.
            x == y || (x.signum() == y.signum() && x.to_bits().abs_diff(y.to_bits()) <= 2)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// What `interpret_token` may answer for `body` with `status`.
fn check_token_outcome(
    status: StatusCode,
    body: &[u8],
    outcome: Result<TokenSet, AttemptError>,
) -> Result<(), TestCaseError> {
    let parsed: Option<Map<String, Value>> = match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    let secrets = secrets(parsed.as_ref());
    match outcome {
        Ok(tokens) => {
            prop_assert!(status.is_success());
            let map = parsed.as_ref();
            prop_assert!(map.is_some(), "a token set from a body that is no object");
            let sent = map
                .and_then(|m| m.get("access_token"))
                .and_then(Value::as_str);
            prop_assert_eq!(Some(tokens.access_token().secret()), sent);
            prop_assert!(is_header_safe(tokens.access_token().secret()));
            check_round_trip(&tokens)?;
        }
        Err(AttemptError::Transient { error, .. }) => {
            prop_assert!(is_transient_status(status) || is_transient_oauth_error(&error));
            check_error(&error, &secrets)?;
        }
        Err(AttemptError::Permanent(error)) => check_error(&error, &secrets)?,
        Err(AttemptError::Unusable {
            error,
            refresh_token,
        }) => {
            prop_assert!(status.is_success());
            let sent = parsed
                .as_ref()
                .and_then(|m| m.get("refresh_token"))
                .and_then(Value::as_str);
            prop_assert_eq!(Some(refresh_token.secret()), sent);
            check_error(&error, &secrets)?;
        }
    }
    Ok(())
}

fn check_token_body(status: u16, body: Vec<u8>) -> Result<(), TestCaseError> {
    let answer = answer(status, body.clone());
    let status = answer.status;
    let outcome = interpret_token(answer, &ResponsePolicy::default());
    check_token_outcome(status, &body, outcome)?;
    // The public reading of a response the application got itself.
    match TokenSet::from_token_response(&body) {
        Ok(tokens) => check_round_trip(&tokens)?,
        Err(error) => check_error(
            &error,
            &secrets(serde_json::from_slice(&body).ok().as_ref()),
        )?,
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn token_answer_of_any_bytes(status in statuses(), body in prop::collection::vec(any::<u8>(), 0..256)) {
        check_token_body(status, body)?;
    }

    #[test]
    fn token_answer_of_any_json(status in statuses(), body in json_value()) {
        check_token_body(status, serde_json::to_vec(&body).unwrap())?;
    }

    #[test]
    fn token_answer_of_a_broken_valid_response(status in statuses(), map in mutated_response()) {
        check_token_body(status, serde_json::to_vec(&map).unwrap())?;
    }

    #[test]
    fn token_answer_of_an_edited_valid_response(map in valid_response(), edits in edits()) {
        let body = apply(serde_json::to_vec(&map).unwrap(), &edits);
        check_token_body(200, body)?;
    }

    #[test]
    fn token_answer_with_a_deep_field(depth in 1usize..5000, name in field_name()) {
        let body = format!(r#"{{"access_token":"abcdefghijklmnopq",{:?}:{}}}"#, name, deep_json(depth));
        check_token_body(200, body.into_bytes())?;
    }

    /// A well-formed response reads as exactly what it said.
    #[test]
    fn token_answer_of_a_valid_response_is_what_it_said(map in valid_response()) {
        let body = serde_json::to_vec(&map).unwrap();
        let received_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let tokens = match interpret_token(Answer { received_at, ..answer(200, body) }, &ResponsePolicy::default()) {
            Ok(tokens) => tokens,
            Err(_) => return Err(TestCaseError::fail("a valid response was refused")),
        };
        let text = |name: &str| map.get(name).and_then(Value::as_str);
        prop_assert_eq!(Some(tokens.access_token().secret()), text("access_token"));
        prop_assert_eq!(tokens.refresh_token().map(RefreshToken::secret), text("refresh_token"));
        prop_assert_eq!(tokens.id_token().map(IdToken::secret), text("id_token"));
        prop_assert_eq!(tokens.scope(), text("scope"));
        prop_assert_eq!(tokens.token_type(), text("token_type"));
        let seconds = map.get("expires_in").map(|v| match v {
            Value::String(s) => s.parse::<f64>().unwrap(),
            v => v.as_f64().unwrap(),
        });
        prop_assert_eq!(tokens.expires_in(), seconds.map(|s| Duration::from_secs(s as u64)));
        prop_assert_eq!(tokens.issued_at(), received_at);
        let extra: Map<String, Value> = map
            .iter()
            .filter(|(name, _)| name.starts_with("x_"))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        prop_assert!(same_json(&Value::Object(tokens.extra().clone()), &Value::Object(extra)));
        check_round_trip(&tokens)?;
    }

    #[test]
    fn revocation_answer_of_any_body(status in statuses(), body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]) {
        let answer = answer(status, body.clone());
        let status = answer.status;
        match interpret_revocation(answer, &ResponsePolicy::default()) {
            Ok(()) => prop_assert!(status.is_success()),
            Err(AttemptError::Transient { error, .. }) => {
                prop_assert!(is_transient_status(status) || is_transient_oauth_error(&error));
                check_error(&error, &[])?;
            }
            Err(AttemptError::Permanent(error)) => check_error(&error, &[])?,
            Err(AttemptError::Unusable { .. }) => prop_assert!(false, "a revocation has no tokens"),
        }
    }

    /// `expires_in` in whole seconds, as sent; below one second unknown;
    /// anything else an error.
    #[test]
    fn expires_in_of_any_value(value in prop_oneof![odd_number(), numeric_text(), json_value()]) {
        let seconds = match &value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match (seconds_field(Some(&value)), seconds) {
            (Ok(None), Some(s)) => prop_assert!((0.0..1.0).contains(&s)),
            (Ok(Some(d)), Some(s)) => {
                prop_assert!(s >= 1.0);
                prop_assert_eq!(d.as_secs(), s.min(u64::MAX as f64) as u64);
                prop_assert_eq!(d.subsec_nanos(), 0);
            }
            (Err(_), Some(s)) => prop_assert!(!s.is_finite() || s < 0.0),
            (Ok(_), None) => prop_assert!(value.is_null()),
            (Err(_), None) => {}
        }
    }
}

/// Megabytes of input take a bounded time: serde_json stops deep nesting at
/// its recursion limit, and nothing is quadratic in the length.
#[test]
fn megabyte_token_answers_finish_quickly() {
    let long = "a".repeat(1 << 20);
    let bodies = [
        deep_json(1 << 20),
        format!(r#"{{"access_token":"{long}"}}"#),
        format!(r#"{{"access_token":"abcdefghijklmnopq","token_type":"{long}"}}"#),
        format!(
            r#"{{"error":"{long}","error_description":"{}"}}"#,
            "\\n".repeat(1 << 19)
        ),
        format!("[{}0]", "0,".repeat(1 << 19)),
    ];
    for body in bodies {
        let started = std::time::Instant::now();
        let _ = check_token_body(200, body.into_bytes());
        let taken = started.elapsed();
        assert!(taken < Duration::from_secs(10), "{taken:?}");
    }
}

/// Regression: the `token_type` of a refused response reached the error
/// (and the logs) with its control characters.
#[test]
fn refused_token_type_is_escaped_in_the_error() {
    let body = br#"{"access_token":"abcdefghijklmnopq","token_type":"mac\n2026 INFO forged"}"#;
    let error = TokenSet::from_token_response(body).unwrap_err();
    let shown = error.to_string();
    assert!(shown.contains(r"mac\n2026 INFO forged"), "{shown}");
    assert!(!shown.contains('\n'), "{shown}");
}

/// Every nesting depth around serde_json's recursion limit (128): an
/// accepted response must still read back from the stored form, which nests
/// the extra fields two levels deeper.
#[test]
fn deep_extra_fields_round_trip_at_every_depth() {
    for depth in 100..140 {
        let body = format!(
            r#"{{"access_token":"abcdefghijklmnopq","x_deep":{}}}"#,
            deep_json(depth)
        );
        if let Ok(tokens) = TokenSet::from_token_response(body.as_bytes()) {
            check_round_trip(&tokens).unwrap_or_else(|e| panic!("depth {depth}: {e}"));
            // Regression: kept up to 64 levels, dropped beyond.
            assert_eq!(
                tokens.extra().contains_key("x_deep"),
                depth <= 64,
                "{depth}"
            );
        }
    }
}
