//! Where tokens and the client secret come from: never the command line.

use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

use reqwest_oauth2_refresh::TokenSet;

/// The most read from stdin or a secret file; a token set is a few KiB.
const MAX_INPUT_BYTES: u64 = 1024 * 1024;

/// Tokens read from stdin.
pub struct StdinTokens {
    pub tokens: TokenSet,
    /// False when stdin held only a refresh token: the set's access token is
    /// an empty placeholder that is never sent.
    pub has_access_token: bool,
}

/// Reads stdin whole (bounded).
pub fn read_stdin() -> Result<String, String> {
    read_bounded(std::io::stdin().lock(), "stdin")
}

/// Reads a client secret file; trailing line ends are not part of the secret.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot open the client secret file {}: {e}", path.display()))?;
    let text = read_bounded(file, &format!("the client secret file {}", path.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(format!(
            "the client secret file {} is empty",
            path.display()
        ));
    }
    Ok(secret.to_owned())
}

fn read_bounded(reader: impl std::io::Read, what: &str) -> Result<String, String> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {what}: {e}"))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(format!("{what} is larger than {MAX_INPUT_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8 text"))
}

/// Parses what was piped in: a token file's JSON (`issued_at` in Unix
/// seconds), a token endpoint's JSON response, a JSON string, or a bare
/// refresh token on one line. Error messages never quote the input.
pub fn parse_stdin(text: &str) -> Result<StdinTokens, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(
            "stdin is empty: pipe in a token file, a token response (JSON) or a refresh token"
                .into(),
        );
    }
    if text.starts_with(['{', '[', '"']) {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            format!(
                "stdin is not valid JSON (error at line {}, column {})",
                e.line(),
                e.column()
            )
        })?;
        return match value {
            Value::Object(map) => from_object(&map),
            Value::String(refresh) => bare_refresh_token(&refresh),
            _ => Err("stdin holds JSON that is neither an object nor a string".into()),
        };
    }
    bare_refresh_token(text)
}

fn bare_refresh_token(token: &str) -> Result<StdinTokens, String> {
    let token = token.trim();
    if token.is_empty() {
        return Err("stdin holds an empty refresh token".into());
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(
            "stdin must hold JSON or a single refresh token on one line (found whitespace inside)"
                .into(),
        );
    }
    Ok(StdinTokens {
        tokens: TokenSet::new("").with_refresh_token(token),
        has_access_token: false,
    })
}

fn from_object(map: &serde_json::Map<String, Value>) -> Result<StdinTokens, String> {
    if let Some(Value::String(error)) = map.get("error") {
        return Err(format!(
            "stdin holds an OAuth error response (`{error}`), not tokens"
        ));
    }
    let access = string_field(map, "access_token")?;
    let refresh = string_field(map, "refresh_token")?;
    if access.is_none() && refresh.is_none() {
        return Err("the JSON on stdin has neither `access_token` nor `refresh_token`".into());
    }
    let expires_in = match map.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(seconds(n.as_f64())?),
        Some(Value::String(s)) => Some(seconds(s.trim().parse::<f64>().ok())?),
        Some(_) => return Err("`expires_in` on stdin is not a number of seconds".into()),
    };
    let issued_at = match map.get("issued_at") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .ok_or("`issued_at` on stdin is not Unix seconds")?,
        ),
        Some(_) => return Err("`issued_at` on stdin is not Unix seconds".into()),
    };
    let has_access_token = access.is_some();
    let mut tokens = TokenSet::new(access.unwrap_or_default());
    if let Some(refresh) = refresh {
        tokens = tokens.with_refresh_token(refresh);
    }
    if let Some(expires_in) = expires_in.flatten() {
        tokens = tokens.with_expires_in(expires_in);
        if let Some(issued_at) = issued_at {
            let issued_at = UNIX_EPOCH
                .checked_add(Duration::from_secs(issued_at))
                .ok_or("`issued_at` on stdin is out of range")?;
            tokens = tokens.with_issued_at(issued_at);
        }
    }
    if let Some(scope) = string_field(map, "scope")? {
        tokens = tokens.with_scope(scope);
    }
    Ok(StdinTokens {
        tokens,
        has_access_token,
    })
}

/// A lifetime in seconds; zero means unknown, like the library's parser.
fn seconds(value: Option<f64>) -> Result<Option<Duration>, String> {
    match value {
        Some(s) if s.is_finite() && s >= 1.0 => Ok(Some(Duration::from_secs(s as u64))),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(None),
        _ => Err("`expires_in` on stdin is not a number of seconds".into()),
    }
}

/// A string field; absent, null and "" are all "none".
fn string_field(
    map: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<String>, String> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("`{name}` on stdin is not a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_at_out_of_range_is_an_error_not_a_panic() {
        let huge = format!(
            r#"{{"access_token":"a","refresh_token":"r","expires_in":60,"issued_at":{}}}"#,
            u64::MAX
        );
        let err = parse_stdin(&huge).err().expect("refused");
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn accepts_the_three_forms() {
        let bare = parse_stdin("  1//refresh-token \n").unwrap();
        assert!(!bare.has_access_token);
        assert_eq!(
            bare.tokens.refresh_token().unwrap().secret(),
            "1//refresh-token"
        );

        let file = parse_stdin(
            r#"{"access_token":"a","refresh_token":"r","expires_in":60,"issued_at":1700000000,"scope":"s"}"#,
        )
        .unwrap();
        assert!(file.has_access_token);
        assert_eq!(
            file.tokens.expires_at(),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_060))
        );
        assert_eq!(file.tokens.scope(), Some("s"));

        let response = parse_stdin(
            r#"{"access_token":"a","token_type":"Bearer","refresh_token":"r","expires_in":"3600"}"#,
        )
        .unwrap();
        assert_eq!(
            response.tokens.expires_in(),
            Some(Duration::from_secs(3600))
        );

        let quoted = parse_stdin("\"r\"\n").unwrap();
        assert_eq!(quoted.tokens.refresh_token().unwrap().secret(), "r");
    }

    #[test]
    fn errors_never_quote_the_input() {
        for input in [
            "",
            "two tokens-secret",
            r#"{"access_token": "tokens-secret""#,
            r#"{"access_token": 5, "refresh_token": "tokens-secret"}"#,
            r#"{"refresh_token": "tokens-secret", "expires_in": "soon"}"#,
            r#"{"id_token": "tokens-secret"}"#,
            "[\"tokens-secret\"]",
        ] {
            let Err(error) = parse_stdin(input) else {
                panic!("accepted {input:?}");
            };
            assert!(!error.contains("tokens-secret"), "{error}");
        }
    }
}
