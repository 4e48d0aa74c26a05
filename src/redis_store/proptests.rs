//! Property tests of reading the Redis hash: any HMGET reply (any RESP
//! value, wrong types, wrong lengths, corrupt JSON) is a version and maybe
//! a token set, or an error that quotes no secret.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use redis::Value as Resp;

use super::*;
use crate::endpoint::response::proptests::check_round_trip;
use crate::endpoint::response::proptests::strategies::*;

/// Any RESP value, nested up to four deep.
fn resp() -> BoxedStrategy<Resp> {
    let leaf = prop_oneof![
        Just(Resp::Nil),
        Just(Resp::Okay),
        any::<i64>().prop_map(Resp::Int),
        prop::collection::vec(any::<u8>(), 0..32).prop_map(Resp::BulkString),
        "[0-9]{1,20}".prop_map(|s| Resp::BulkString(s.into_bytes())),
        nasty_text().prop_map(Resp::SimpleString),
        any::<f64>().prop_map(Resp::Double),
        any::<bool>().prop_map(Resp::Boolean),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Resp::Array),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Resp::Set),
            prop::collection::vec((inner.clone(), inner), 0..3).prop_map(Resp::Map),
        ]
    })
    .boxed()
}

/// A `tokens` field: a stored token set whose access token is `secret`,
/// edited or not, or anything else.
fn tokens_field(secret: String) -> BoxedStrategy<Resp> {
    let stored = token_set()
        .prop_map(move |tokens| {
            let json = serde_json::to_string(&tokens).unwrap_or_default();
            let access = serde_json::to_string(tokens.access_token().secret()).unwrap_or_default();
            json.replacen(&access, &format!("\"{}\"", secret), 1)
        })
        .boxed();
    prop_oneof![
        2 => stored.clone().prop_map(|json| Resp::BulkString(json.into_bytes())),
        2 => (stored, edits()).prop_map(|(json, edits)| Resp::BulkString(apply(json.into_bytes(), &edits))),
        1 => resp(),
    ]
    .boxed()
}

/// An HMGET reply: mostly two fields, as Redis sends, sometimes not.
fn reply() -> impl Strategy<Value = (String, Resp)> {
    token().prop_flat_map(|secret| {
        let version = prop_oneof![
            Just(Resp::Nil),
            any::<u64>().prop_map(|n| Resp::BulkString(n.to_string().into_bytes())),
            resp(),
        ]
        .boxed();
        let tokens = tokens_field(secret.clone());
        let reply = prop_oneof![
            4 => (version.clone(), tokens.clone()).prop_map(|(v, t)| Resp::Array(vec![v, t])),
            1 => (version, tokens, resp()).prop_map(|(v, t, x)| Resp::Array(vec![v, t, x])),
            1 => tokens_field(secret.clone()).prop_map(|t| Resp::Array(vec![t])),
            1 => resp(),
        ];
        (Just(secret), reply)
    })
}

fn check(secret: &str, reply: Resp) -> Result<(), TestCaseError> {
    let expected_tokens = match &reply {
        Resp::Array(fields) if fields.len() == 2 => match &fields[1] {
            Resp::BulkString(bytes) => Some(serde_json::from_slice::<TokenSet>(bytes).ok()),
            Resp::Nil => Some(None),
            _ => None,
        },
        _ => None,
    };
    match from_hash("app:tokens", reply) {
        Ok((_, tokens)) => {
            if let Some(tokens) = &tokens {
                check_round_trip(tokens)?;
            }
            if let Some(expected) = expected_tokens {
                prop_assert_eq!(tokens, expected);
            }
        }
        Err(error) => {
            let shown = error.to_string();
            prop_assert!(!shown.contains(secret), "a secret in {shown:?}");
            prop_assert!(
                !format!("{error:?}").contains(secret),
                "a secret in {error:?}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn redis_hash_of_any_reply((secret, reply) in reply()) {
        check(&secret, reply)?;
    }

    /// What the store writes reads back equal, with its version.
    #[test]
    fn redis_hash_round_trips(tokens in token_set(), version in any::<u64>()) {
        let json = serde_json::to_string(&tokens).unwrap();
        let reply = Resp::Array(vec![
            Resp::BulkString(version.to_string().into_bytes()),
            Resp::BulkString(json.into_bytes()),
        ]);
        let (read_version, back) = from_hash("k", reply).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(read_version, version);
        let back = back.ok_or_else(|| TestCaseError::fail("no tokens"))?;
        check_round_trip(&back)?;
        prop_assert_eq!(back.access_token(), tokens.access_token());
    }
}

/// Regression: a reply of the wrong shape (three fields, a version that is
/// no number) made an error that quoted the whole reply, tokens included.
#[test]
fn a_wrong_reply_quotes_nothing() {
    let json = r#"{"access_token":"s3cr3t-s3cr3t-s3cr3t","issued_at":1}"#;
    for reply in [
        Resp::Array(vec![Resp::Nil, Resp::BulkString(json.into()), Resp::Nil]),
        Resp::Array(vec![
            Resp::SimpleString("x".into()),
            Resp::BulkString(json.into()),
        ]),
        Resp::BulkString(json.into()),
    ] {
        let error = from_hash("app:tokens", reply).unwrap_err();
        assert!(!format!("{error} {error:?}").contains("s3cr3t"), "{error}");
        let store = error.downcast_ref::<StoreError>().unwrap();
        assert!(store.is_permanent());
    }
    let (version, tokens) = from_hash(
        "app:tokens",
        Resp::Array(vec![
            Resp::BulkString(b"7".to_vec()),
            Resp::BulkString(json.into()),
        ]),
    )
    .unwrap();
    assert_eq!(
        (version, tokens.unwrap().access_token().secret()),
        (7, "s3cr3t-s3cr3t-s3cr3t")
    );
}
