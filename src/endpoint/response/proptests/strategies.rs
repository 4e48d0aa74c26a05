//! Generators shared by the parsers' property tests: any JSON, text that no
//! server should send, and valid token responses to break.

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Number, Value};

use crate::token::{IdToken, TokenSet};

/// `cases` per property unless `PROPTEST_CASES` asks for another count (the
/// long run): the defaults keep all the property tests together well under
/// 30 s in a debug build. No regression files: what a run finds becomes a
/// named regression test beside the parser instead.
pub(crate) fn config(cases: u32) -> Config {
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// Text as servers should not send it, mostly: any Unicode, control
/// characters, bidi overrides, and now and then a very long run.
pub(crate) fn nasty_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        3 => "[ -~]{0,24}",
        2 => "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{2028}\\u{202e}a\"\\\\]{1,8}",
        1 => (any::<char>(), 1usize..20_000).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
    ]
}

/// A token as a real server sends one: header-safe, and long enough that
/// finding it inside an error message cannot be a coincidence.
pub(crate) fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~+/=-]{16,48}"
}

/// Numbers at and past the edges: what `expires_in` should survive.
pub(crate) fn odd_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            Number::from_f64(f).map(Value::Number)
        }),
        prop::sample::select(vec![
            u64::MAX as f64,
            1e300,
            -0.0,
            0.0,
            0.5,
            0.999_999,
            1.0,
            1.5,
            -1.0,
            f64::MIN_POSITIVE,
            18_446_744_073_709_551_616.0,
        ])
        .prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
    ]
}

/// Strings some servers send for numbers, and strings that only look like
/// numbers.
pub(crate) fn numeric_text() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| format!(" {n}\t")),
        any::<f64>().prop_map(|f| f.to_string()),
        prop::sample::select(vec![
            "",
            " ",
            "NaN",
            "inf",
            "-inf",
            "1e400",
            "0x10",
            "+7",
            "1_000",
            "３６００",
            "٣٦٠٠",
            "3600s",
            "1e-400",
            "-0",
        ])
        .prop_map(str::to_owned),
    ]
    .prop_map(Value::String)
}

/// Any JSON value, nested up to eight deep.
pub(crate) fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        odd_number(),
        numeric_text(),
        nasty_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(8, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(field_name(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// The names a token response uses, and any other.
pub(crate) fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "access_token",
            "token_type",
            "expires_in",
            "refresh_token",
            "scope",
            "id_token",
            "error",
            "error_description",
            "error_uri",
            "message",
        ])
        .prop_map(str::to_owned),
        1 => nasty_text(),
    ]
}

/// An array nested `depth` deep, as JSON text: past serde_json's recursion
/// limit (128) for most depths.
pub(crate) fn deep_json(depth: usize) -> String {
    let mut text = "[".repeat(depth);
    text.push_str(&"]".repeat(depth));
    text
}

/// A well-formed RFC 6749 §5.1 success response.
pub(crate) fn valid_response() -> impl Strategy<Value = Map<String, Value>> {
    let standard = (
        token(),
        option::of(token()),
        option::of(prop_oneof![
            (1u64..10_000_000).prop_map(Value::from),
            (1u64..10_000_000).prop_map(|n| Value::String(n.to_string())),
            (1.0f64..1e7).prop_map(Value::from),
        ]),
        option::of("[!#-\\[\\]-~]{1,20}( [!#-\\[\\]-~]{1,20}){0,3}"),
        option::of(prop::sample::select(vec!["Bearer", "bearer", "BEARER"])),
        option::of(token()),
    );
    let extra = btree_map("x_[a-z_]{1,12}", json_value(), 0..4);
    (standard, extra).prop_map(
        |((access, refresh, expires_in, scope, token_type, id_token), extra)| {
            let mut map = Map::new();
            map.insert("access_token".into(), access.into());
            let optional = [
                ("refresh_token", refresh.map(Value::from)),
                ("expires_in", expires_in),
                ("scope", scope.map(Value::from)),
                ("token_type", token_type.map(Value::from)),
                ("id_token", id_token.map(Value::from)),
            ];
            for (name, value) in optional {
                if let Some(value) = value {
                    map.insert(name.into(), value);
                }
            }
            map.extend(extra);
            map
        },
    )
}

/// A value of the wrong kind for a field: any JSON, an edge number, a
/// number in a string, control characters, a very long string.
pub(crate) fn wrong_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_value(),
        odd_number(),
        numeric_text(),
        nasty_text().prop_map(Value::String),
    ]
}

/// A valid response with one to three fields replaced or added.
pub(crate) fn mutated_response() -> impl Strategy<Value = Map<String, Value>> {
    (valid_response(), vec((field_name(), wrong_value()), 1..4)).prop_map(|(mut map, changes)| {
        map.extend(changes);
        map
    })
}

/// A byte-level edit of a text.
#[derive(Debug, Clone)]
pub(crate) enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

pub(crate) fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, bit)| Edit::Flip(at, bit)),
        (
            any::<usize>(),
            prop_oneof![
                vec(any::<u8>(), 1..8),
                prop::sample::select(vec![
                    "\"", "{", "}", "[", "]", ",", ":", "\\", "\\u", "\\ud800", "1e999", "-"
                ])
                .prop_map(|s| s.as_bytes().to_vec()),
            ]
        )
            .prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), 1usize..16).prop_map(|(at, n)| Edit::Delete(at, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ];
    vec(edit, 1..4)
}

/// `bytes` with `edits` applied; positions wrap around its length.
pub(crate) fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len().max(1);
        match edit {
            Edit::Flip(at, bit) if !bytes.is_empty() => bytes[at % len] ^= bit | 1,
            Edit::Flip(..) => {}
            Edit::Insert(at, insert) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, insert.iter().copied());
            }
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            Edit::Truncate(at) => bytes.truncate(at % len),
        }
    }
    bytes
}

/// Any token set: any text in every field (the stored form is not only
/// for header-safe tokens), any lifetime, any issue time from 1970 on.
pub(crate) fn token_set() -> impl Strategy<Value = TokenSet> {
    let parts = (
        nasty_text(),
        option::of(nasty_text()),
        option::of(any::<Duration>()),
        // Issue times up to 2100, and up to what a SystemTime holds on
        // Linux (i64 seconds): few are filtered out.
        (
            prop_oneof![0u64..4_102_444_800, 0..=i64::MAX as u64],
            0u32..1_000_000_000,
        ),
        option::of(nasty_text()),
        option::of(nasty_text()),
        option::of(nasty_text()),
    );
    let extra = prop::collection::btree_map(field_name(), json_value(), 0..4);
    (parts, extra).prop_filter_map(
        "an issue time the platform holds",
        |((access, refresh, lifetime, (secs, nanos), scope, token_type, id_token), extra)| {
            let issued_at = UNIX_EPOCH.checked_add(Duration::new(secs, nanos))?;
            let mut tokens = TokenSet::new(access);
            if let Some(refresh) = refresh {
                tokens = tokens.with_refresh_token(refresh);
            }
            if let Some(lifetime) = lifetime {
                tokens = tokens.with_expires_in(lifetime);
            }
            if let Some(scope) = scope {
                tokens = tokens.with_scope(scope);
            }
            let extra: Map<String, Value> = extra.into_iter().collect();
            Some(tokens.with_issued_at(issued_at).with_response_fields(
                token_type,
                id_token.map(IdToken::new),
                extra,
            ))
        },
    )
}
