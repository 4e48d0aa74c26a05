//! Property tests of the `WWW-Authenticate` reader: any text ends quickly
//! with at most one challenge per word; a generated well-formed header
//! parses to what was generated; and where the independent `http-auth`
//! parser (scottlamb's) accepts a header, both find the same challenges
//! and the same `error`.

use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use reqwest::header::HeaderValue;

use super::*;
use crate::endpoint::response::proptests::strategies::config;

/// One generated challenge: a scheme and a token68 or parameters.
#[derive(Debug, Clone)]
struct Generated {
    scheme: String,
    token68: Option<String>,
    params: Vec<(String, Value)>,
}

#[derive(Debug, Clone)]
enum Value {
    Token(String),
    Quoted(String),
}

fn tchars() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        tchars().prop_map(Value::Token),
        // qdtext and what must be escaped: any visible ASCII, space, tab.
        "[ \t!-~]{0,16}".prop_map(Value::Quoted),
    ]
}

fn param_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "error",
            "ERROR",
            "realm",
            "scope",
            "error_description"
        ])
        .prop_map(str::to_owned),
        tchars(),
    ]
}

fn challenge(token68: bool) -> impl Strategy<Value = Generated> {
    let body = if token68 {
        prop_oneof![Just(None), "[A-Za-z0-9._~+/-]{1,16}={0,2}".prop_map(Some),].boxed()
    } else {
        Just(None).boxed()
    };
    (tchars(), body, vec((param_name(), value()), 0..4)).prop_map(|(scheme, token68, params)| {
        // A challenge has a token68 or parameters, not both.
        let params = if token68.is_some() {
            Vec::new()
        } else {
            params
        };
        Generated {
            scheme,
            token68,
            params,
        }
    })
}

/// Optional whitespace, as RFC 9110 allows around `=` and `,`.
fn ows() -> impl Strategy<Value = String> {
    "[ \t]{0,2}"
}

/// `challenges` as header text, spaced by `gaps`.
fn render(challenges: &[Generated], gaps: &[String]) -> String {
    let mut gap = gaps.iter().cycle();
    let mut items = Vec::new();
    for c in challenges {
        let mut item = c.scheme.clone();
        if let Some(t) = &c.token68 {
            item.push(' ');
            item.push_str(t);
        }
        let params: Vec<String> = c
            .params
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    Value::Token(t) => t.clone(),
                    Value::Quoted(q) => {
                        format!("\"{}\"", q.replace('\\', "\\\\").replace('"', "\\\""))
                    }
                };
                let g = gap.next().map_or("", String::as_str);
                format!("{name}{g}={g}{value}")
            })
            .collect();
        if !params.is_empty() {
            item.push(' ');
            item.push_str(&params.join(&format!(",{}", gap.next().map_or("", String::as_str))));
        }
        items.push(item);
    }
    items.join(&format!(",{}", gaps.first().map_or("", String::as_str)))
}

/// What a challenge's `error` is: its last `error` parameter's value.
fn expected_error(c: &Generated) -> Option<String> {
    c.params
        .iter()
        .rev()
        .find(|(name, _)| name.eq_ignore_ascii_case("error"))
        .map(|(_, v)| match v {
            Value::Token(t) | Value::Quoted(t) => t.clone(),
        })
}

/// Ours, as (scheme, error) pairs.
fn ours(text: &str) -> Vec<(String, Option<String>)> {
    parse_challenges(text)
        .into_iter()
        .map(|c| (c.scheme.to_owned(), c.error))
        .collect()
}

/// http-auth's, as (scheme, error) pairs; `None` where it refuses the text.
fn theirs(text: &str) -> Option<Vec<(String, Option<String>)>> {
    let challenges = http_auth::parse_challenges(text).ok()?;
    Some(
        challenges
            .into_iter()
            .map(|c| {
                let error = c
                    .params
                    .iter()
                    .rev()
                    .find(|(name, _)| name.eq_ignore_ascii_case("error"))
                    .map(|(_, v)| v.to_unescaped());
                (c.scheme.to_owned(), error)
            })
            .collect(),
    )
}

/// Well-formed headers with up to three grammar characters inserted or
/// deleted: near misses, many of which http-auth still accepts.
fn grammar_soup() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec!["", "=", ",", " ", "\t", "\"", "\\", "x", "/"]);
    (
        vec(challenge(false), 1..4),
        vec(ows(), 1..3),
        vec((any::<usize>(), piece, any::<bool>()), 0..4),
    )
        .prop_map(|(challenges, gaps, edits)| {
            let mut text: Vec<char> = render(&challenges, &gaps).chars().collect();
            for (at, piece, delete) in edits {
                let at = at % (text.len() + 1);
                if delete && at < text.len() {
                    text.remove(at);
                } else {
                    text.splice(at..at, piece.chars());
                }
            }
            text.into_iter().collect()
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn www_authenticate_of_any_text(text in prop_oneof![any::<String>(), grammar_soup(), "[ -~]{0,64}"]) {
        let started = Instant::now();
        let parsed = parse_challenges(&text);
        if let Ok(value) = HeaderValue::from_str(&text) {
            let mut headers = HeaderMap::new();
            headers.insert(WWW_AUTHENTICATE, value);
            // The DPoP nonce question reads the same challenges.
            let asks = asks_for_dpop_nonce(&headers);
            prop_assert_eq!(asks, parsed.iter().any(|c| c.scheme.eq_ignore_ascii_case("dpop")
                && c.error.as_deref() == Some("use_dpop_nonce")));
        }
        prop_assert!(started.elapsed() < Duration::from_secs(1));
        // Each scheme is a run of token characters of its own.
        let runs = text.split(|c| !is_tchar(c)).filter(|w| !w.is_empty()).count();
        prop_assert!(parsed.len() <= runs);
        for c in &parsed {
            prop_assert!(text.contains(c.scheme) && !c.scheme.is_empty());
        }
        if let Ok(value) = HeaderValue::from_str(&text) {
            let mut headers = HeaderMap::new();
            headers.append(WWW_AUTHENTICATE, value);
            let _ = refresh_may_help(&headers);
        }
    }

    #[test]
    fn www_authenticate_of_any_bytes(values in vec(vec(any::<u8>(), 0..64), 1..4)) {
        let mut headers = HeaderMap::new();
        for bytes in values {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                headers.append(WWW_AUTHENTICATE, value);
            }
        }
        let _ = refresh_may_help(&headers);
    }

    /// A well-formed header, token68 challenges included, parses to the
    /// schemes and errors generated.
    #[test]
    fn www_authenticate_well_formed_parses_to_what_was_generated(
        challenges in vec(challenge(true), 1..5),
        gaps in vec(ows(), 1..4),
    ) {
        let text = render(&challenges, &gaps);
        let expected: Vec<_> = challenges.iter().map(|c| (c.scheme.clone(), expected_error(c))).collect();
        prop_assert_eq!(ours(&text), expected, "{}", text);
    }

    /// Differential: on generated param-form challenges (http-auth reads no
    /// token68), both parsers agree, and http-auth accepts them all.
    #[test]
    fn www_authenticate_agrees_with_http_auth_on_generated_challenges(
        challenges in vec(challenge(false), 1..5),
        gaps in vec(ows(), 1..4),
    ) {
        let text = render(&challenges, &gaps);
        prop_assert_eq!(theirs(&text), Some(ours(&text)), "{}", text);
    }

    /// Differential on soup: wherever http-auth accepts the text, ours
    /// reads the same.
    #[test]
    fn www_authenticate_agrees_with_http_auth_where_it_accepts(text in grammar_soup()) {
        if let Some(theirs) = theirs(&text) {
            prop_assert_eq!(ours(&text), theirs, "{:?}", text);
        }
    }
}

/// Long headers take linear time: a scheme followed by a long run of
/// token68 characters that is not a token68 must not be rescanned from
/// every position.
#[test]
fn www_authenticate_of_a_long_header_finishes_quickly() {
    let run = "b/".repeat(32 * 1024);
    for text in [
        format!("a {run}b x"),
        format!("a {}", "b ".repeat(64 * 1024)),
        format!("Bearer realm=\"{}", "\\\"".repeat(64 * 1024)),
        format!("a {}x", "=".repeat(128 * 1024)),
        ",".repeat(128 * 1024),
    ] {
        let started = Instant::now();
        let parsed = parse_challenges(&text);
        let taken = started.elapsed();
        assert!(
            taken < Duration::from_millis(500),
            "{} bytes: {taken:?} ({} challenges)",
            text.len(),
            parsed.len()
        );
    }
}

/// The differential test on soup is not vacuous: http-auth accepts a fair
/// share of it.
#[test]
fn http_auth_accepts_some_of_the_soup() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let soup = grammar_soup();
    let accepted = (0..1000)
        .filter(|_| {
            let text = soup.new_tree(&mut runner).unwrap().current();
            theirs(&text).is_some_and(|c| !c.is_empty())
        })
        .count();
    assert!(accepted >= 200, "{accepted} of 1000");
    eprintln!("http-auth accepted {accepted} of 1000 soups");
}
