//! Property tests of the stored form (the token file's and the Redis hash's
//! JSON): any token set reads back equal, to the nanosecond; any JSON, and
//! stored forms with wrong-typed or out-of-range fields, give a typed error.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::endpoint::response::proptests::check_round_trip;
use crate::endpoint::response::proptests::strategies::*;
use crate::token::TokenSet;

/// A stored form with some fields replaced by values of any kind.
fn mutated_stored() -> impl Strategy<Value = Map<String, Value>> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "access_token",
            "refresh_token",
            "expires_in",
            "expires_in_nanos",
            "issued_at",
            "issued_at_nanos",
            "scope",
            "token_type",
            "id_token",
            "extra",
        ])
        .prop_map(str::to_owned),
        nasty_text(),
    ];
    (
        token_set(),
        prop::collection::vec((name, wrong_value()), 1..4),
    )
        .prop_map(|(tokens, changes)| {
            let Ok(Value::Object(mut map)) = serde_json::to_value(&tokens) else {
                unreachable!("a token set serializes to an object")
            };
            map.extend(changes);
            map
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn stored_form_round_trips(tokens in token_set()) {
        check_round_trip(&tokens)?;
    }

    #[test]
    fn stored_form_of_any_json(value in prop_oneof![json_value(), mutated_stored().prop_map(Value::Object)]) {
        let text = serde_json::to_string(&value).unwrap();
        if let Ok(tokens) = serde_json::from_str::<TokenSet>(&text) {
            // What reads is what was written: nothing invented, nothing lost.
            let map = value.as_object().unwrap();
            prop_assert_eq!(Some(tokens.access_token().secret()), map["access_token"].as_str());
            let expires_at = tokens.expires_at();
            prop_assert!(expires_at.is_none_or(|at| at >= tokens.issued_at()));
            check_round_trip(&tokens)?;
        }
    }

    #[test]
    fn stored_form_of_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256), edits in edits()) {
        let _ = serde_json::from_slice::<TokenSet>(&bytes);
        let valid = br#"{"access_token":"a","refresh_token":"r","expires_in":60,"expires_in_nanos":5,"issued_at":1,"issued_at_nanos":2,"extra":{"x":[1]}}"#;
        let _ = serde_json::from_slice::<TokenSet>(&apply(valid.to_vec(), &edits));
    }
}

/// Regression: a lifetime with a fraction of a second came back without
/// it, so two processes disagreed on the expiry by up to a second.
#[test]
fn a_lifetime_with_nanoseconds_round_trips() {
    let tokens = TokenSet::new("a")
        .with_expires_in(Duration::new(3599, 999_999_999))
        .with_issued_at(UNIX_EPOCH + Duration::from_secs(1));
    let back: TokenSet = serde_json::from_str(&serde_json::to_string(&tokens).unwrap()).unwrap();
    assert_eq!(back.expires_at(), tokens.expires_at());
    // The largest lifetime, and an out-of-range fraction, are no panic.
    let max = TokenSet::new("a").with_expires_in(Duration::MAX);
    let back: TokenSet = serde_json::from_str(&serde_json::to_string(&max).unwrap()).unwrap();
    assert_eq!(back.expires_in(), Some(Duration::MAX));
    let bad = r#"{"access_token":"a","issued_at":1,"expires_in":18446744073709551615,"expires_in_nanos":1000000000}"#;
    assert!(serde_json::from_str::<TokenSet>(bad).is_err());
    // Files without the field (every file before it) read as whole seconds.
    let old: TokenSet =
        serde_json::from_str(r#"{"access_token":"a","issued_at":1,"expires_in":60}"#).unwrap();
    assert_eq!(
        old.expires_at(),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(61))
    );
}
