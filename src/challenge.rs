//! Reading `WWW-Authenticate` (RFC 9110 §11.6.1, RFC 6750 §3): does a 401
//! say that a new access token could help?

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};

/// Whether a 401 with these headers is worth a refresh: no challenge at all
/// (many APIs send none), or a Bearer (or DPoP, RFC 9449 §7.1) challenge
/// whose `error` is absent or `invalid_token`. Not `insufficient_scope` or `invalid_request`, and not a
/// challenge for another scheme only: a new token fixes none of those.
pub(crate) fn refresh_may_help(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(WWW_AUTHENTICATE).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    let mut saw_any = false;
    for value in values {
        let Ok(text) = value.to_str() else { continue };
        for challenge in parse_challenges(text) {
            saw_any = true;
            let ours = challenge.scheme.eq_ignore_ascii_case("bearer")
                || challenge.scheme.eq_ignore_ascii_case("dpop");
            if ours
                && challenge
                    .error
                    .as_deref()
                    .is_none_or(|e| e.eq_ignore_ascii_case("invalid_token"))
            {
                return true;
            }
        }
    }
    // A header we could not read at all says nothing either way; the 401
    // itself is the signal, as with no header.
    !saw_any
}

/// Whether an API asks for a DPoP proof with its nonce (RFC 9449 §9): a
/// `DPoP` challenge whose `error` is `use_dpop_nonce`, read with the
/// challenge parser (a quoted comma in `error_description` cannot fool it).
pub(crate) fn asks_for_dpop_nonce(headers: &HeaderMap) -> bool {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(parse_challenges)
        .any(|c| {
            c.scheme.eq_ignore_ascii_case("dpop")
                && c.error.as_deref().is_some_and(|e| e == "use_dpop_nonce")
        })
}

#[derive(Debug, PartialEq, Eq)]
struct Challenge<'a> {
    scheme: &'a str,
    error: Option<String>,
}

/// Splits a header value into challenges: `scheme [token68 | param, ...]`,
/// separated by commas, with quoted strings that may contain commas.
fn parse_challenges(text: &str) -> Vec<Challenge<'_>> {
    let mut challenges: Vec<Challenge<'_>> = Vec::new();
    let mut lexer = Lexer {
        text,
        pos: 0,
        not_token68_before: 0,
    };
    loop {
        lexer.skip_separators();
        let Some(name) = lexer.token() else {
            // Not a token: skip one character so that junk cannot loop.
            if lexer.at_end() {
                break;
            }
            lexer.pos += lexer.text[lexer.pos..]
                .chars()
                .next()
                .map_or(1, char::len_utf8);
            continue;
        };
        lexer.skip_spaces();
        if lexer.peek() == Some('=') {
            // `name = value`: a parameter of the current challenge.
            lexer.pos += 1;
            lexer.skip_spaces();
            let value = lexer.value();
            if let Some(current) = challenges.last_mut()
                && name.eq_ignore_ascii_case("error")
            {
                current.error = value;
            }
        } else {
            // A new challenge: `scheme`, maybe followed by a token68.
            challenges.push(Challenge {
                scheme: name,
                error: None,
            });
            lexer.skip_spaces();
            if lexer.token68_ahead() {
                lexer.token68();
            }
        }
    }
    challenges
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    /// The end of the last run of token68 characters found not to be a
    /// token68: asked again from inside it, the answer is the same.
    not_token68_before: usize,
}

impl<'a> Lexer<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | ',')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.text[start..self.pos])
    }

    /// Right after a scheme: is what follows a token68 (`abc==`) rather
    /// than the first `name=value` parameter? A token68 runs to a comma or
    /// the end; a parameter has a value after its `=`.
    fn token68_ahead(&mut self) -> bool {
        // Without this, `a b/b/b/…/b x` rescanned the run from each `b`:
        // quadratic, a minute of CPU for a 64 KiB header (found by the
        // property tests).
        if self.pos < self.not_token68_before {
            return false;
        }
        let rest = &self.text[self.pos..];
        let body_len = rest.chars().take_while(|c| is_token68_char(*c)).count();
        if body_len == 0 {
            return false;
        }
        let after = rest[body_len..]
            .trim_start_matches('=')
            .trim_start_matches([' ', '\t']);
        let ahead = after.is_empty() || after.starts_with(',');
        if !ahead {
            self.not_token68_before = self.pos + body_len;
        }
        ahead
    }

    fn token68(&mut self) {
        while self.peek().is_some_and(|c| is_token68_char(c) || c == '=') {
            self.pos += 1;
        }
    }

    /// A token or a quoted string (with `\` escapes).
    fn value(&mut self) -> Option<String> {
        if self.peek() == Some('"') {
            self.pos += 1;
            let mut out = String::new();
            while let Some(c) = self.peek() {
                self.pos += c.len_utf8();
                match c {
                    '"' => return Some(out),
                    '\\' => {
                        if let Some(escaped) = self.peek() {
                            self.pos += escaped.len_utf8();
                            out.push(escaped);
                        }
                    }
                    c => out.push(c),
                }
            }
            Some(out)
        } else {
            self.token().map(str::to_owned)
        }
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_token68_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~+/".contains(c)
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(WWW_AUTHENTICATE, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn no_header_means_refresh() {
        assert!(refresh_may_help(&HeaderMap::new()));
    }

    #[test]
    fn bearer_without_error_or_with_invalid_token_means_refresh() {
        assert!(refresh_may_help(&headers(&["Bearer"])));
        assert!(refresh_may_help(&headers(&[r#"Bearer realm="example""#])));
        assert!(refresh_may_help(&headers(&[
            r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#
        ])));
        assert!(refresh_may_help(&headers(&[
            r#"bearer error=invalid_token"#
        ])));
    }

    #[test]
    fn insufficient_scope_and_invalid_request_do_not() {
        assert!(!refresh_may_help(&headers(&[
            r#"Bearer realm="example", error="insufficient_scope", scope="admin""#
        ])));
        assert!(!refresh_may_help(&headers(&[
            r#"Bearer error="invalid_request""#
        ])));
    }

    #[test]
    fn other_schemes_only_do_not() {
        assert!(!refresh_may_help(&headers(&[r#"Basic realm="x""#])));
        assert!(!refresh_may_help(&headers(&["Negotiate"])));
        assert!(!refresh_may_help(&headers(&["Negotiate abc123=="])));
    }

    #[test]
    fn bearer_among_several_challenges_is_found() {
        assert!(refresh_may_help(&headers(&[
            r#"Basic realm="a, b", Bearer realm="c", error="invalid_token""#
        ])));
        assert!(refresh_may_help(&headers(&[r#"Negotiate abc==, Bearer"#])));
        assert!(refresh_may_help(&headers(&[
            r#"Basic realm="x""#,
            "Bearer"
        ])));
        // The error belongs to the Bearer challenge, not to Basic's.
        assert!(!refresh_may_help(&headers(&[
            r#"Basic realm="x", Bearer error="insufficient_scope""#
        ])));
    }

    #[test]
    fn quoted_commas_and_escapes_do_not_split_challenges() {
        let parsed = parse_challenges(
            r#"Bearer realm="a, error=\"x\", Basic", error="invalid_token", DPoP algs="ES256""#,
        );
        assert_eq!(
            parsed,
            vec![
                Challenge {
                    scheme: "Bearer",
                    error: Some("invalid_token".into())
                },
                Challenge {
                    scheme: "DPoP",
                    error: None
                },
            ]
        );
    }

    #[test]
    fn junk_ends_with_at_most_one_challenge_per_word() {
        // Each case runs on its own thread with a deadline, so that a lexer
        // that loops fails the test instead of hanging the suite.
        for junk in [
            "",
            ",,,",
            "=",
            "\"",
            "Bearer error=",
            "Bearer error=\"unterminated",
            "@@@ ;;;",
            "Bearer ,=,=,= \\\\\"",
        ] {
            let (done, parsed) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let challenges: Vec<String> = parse_challenges(junk)
                    .into_iter()
                    .map(|c| c.scheme.to_owned())
                    .collect();
                let _ = done.send(challenges);
            });
            let schemes = parsed
                .recv_timeout(std::time::Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("the lexer did not finish on {junk:?}"));
            assert!(
                schemes.len() <= junk.split_whitespace().count(),
                "{junk:?}: {schemes:?}"
            );
            assert!(
                schemes.iter().all(|s| junk.contains(s.as_str())),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn dpop_challenges_are_read_like_bearer_ones() {
        assert!(refresh_may_help(&headers(&[
            r#"DPoP error="invalid_token", algs="ES256""#
        ])));
        assert!(!refresh_may_help(&headers(&[
            r#"DPoP error="use_dpop_nonce""#
        ])));
        assert!(asks_for_dpop_nonce(&headers(&[
            r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#
        ])));
        // Two challenges in one header, and one in a second header.
        assert!(asks_for_dpop_nonce(&headers(&[
            r#"Bearer realm="api", DPoP algs="ES256", error="use_dpop_nonce""#
        ])));
        assert!(asks_for_dpop_nonce(&headers(&[
            "Bearer",
            r#"dpop error="use_dpop_nonce""#
        ])));
    }

    #[test]
    fn the_nonce_error_is_not_found_by_substring() {
        // The words appear, but in another parameter or scheme.
        assert!(!asks_for_dpop_nonce(&headers(&[
            r#"DPoP error="invalid_token", error_description="not error=\"use_dpop_nonce\", really""#
        ])));
        assert!(!asks_for_dpop_nonce(&headers(&[
            r#"Bearer error="use_dpop_nonce""#
        ])));
        assert!(!asks_for_dpop_nonce(&headers(&[
            r#"DPoP error_description="use_dpop_nonce""#
        ])));
        assert!(!asks_for_dpop_nonce(&HeaderMap::new()));
    }
}
