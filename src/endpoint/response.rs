//! Reading what the token and revocation endpoints answer (RFC 6749 §5.1,
//! §5.2; RFC 7009 §2.2): pure functions of an [`Answer`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use serde_json::{Map, Value};

use super::retry::is_transient_status;
use crate::error::Error;
use crate::token::{AccessToken, IdToken, RefreshToken, TokenSet};

/// One answer, read and capped.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Vec<u8>,
    pub(crate) received_at: SystemTime,
}

/// Why one attempt failed, and whether another may succeed.
pub(crate) enum AttemptError {
    Transient {
        error: Error,
        retry_after: Option<Duration>,
    },
    Permanent(Error),
    /// A success status whose answer is unusable, but which carries a new
    /// refresh token: the server may have spent the old one already.
    Unusable {
        error: Error,
        refresh_token: RefreshToken,
    },
}

/// How a call ended badly: its error, and the new refresh token an unusable
/// answer carried, if it carried one.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) error: Error,
    pub(crate) rotated: Option<RefreshToken>,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Failed {
            error,
            rotated: None,
        }
    }
}

/// A user's rule for "this answer means the refresh token is dead".
pub(crate) type DeadTokenRule = Arc<dyn Fn(StatusCode, &Value) -> bool + Send + Sync>;

/// What a provider's answers mean beyond RFC 6749.
#[derive(Clone, Default)]
pub(crate) struct ResponsePolicy {
    /// `error` codes that mean the refresh token is dead, besides
    /// `invalid_grant` (GitHub's `bad_refresh_token`, say).
    pub(crate) invalid_grant_errors: Vec<String>,
    /// `token_type`s that are bearer tokens under another name.
    pub(crate) bearer_types: Vec<String>,
    /// Rules of the user's or a preset's, for answers with no `error` code
    /// at all; any one that matches decides.
    pub(crate) dead_token: Vec<DeadTokenRule>,
}

impl std::fmt::Debug for ResponsePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponsePolicy")
            .field("invalid_grant_errors", &self.invalid_grant_errors)
            .field("bearer_types", &self.bearer_types)
            .field("dead_token_rules", &self.dead_token.len())
            .finish()
    }
}

impl ResponsePolicy {
    fn means_invalid_grant(&self, error: &str) -> bool {
        error == "invalid_grant" || self.invalid_grant_errors.iter().any(|e| e == error)
    }

    fn is_bearer(&self, token_type: &str) -> bool {
        token_type.eq_ignore_ascii_case("bearer")
            || self
                .bearer_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(token_type))
    }

    /// `InvalidGrant` if a rule says the refresh token is dead, described by
    /// the answer's `error_description`, or its `message` (what providers
    /// with their own shape tend to say).
    fn dead_token(&self, status: StatusCode, body: Option<&Value>) -> Option<Error> {
        let body = body?;
        if !self.dead_token.iter().any(|rule| rule(status, body)) {
            return None;
        }
        let map = body.as_object();
        let description = map.and_then(|map| {
            text_field(map, "error_description").or_else(|| text_field(map, "message"))
        });
        Some(Error::InvalidGrant { description })
    }
}

/// The body as a JSON object, if it is one.
fn object(parsed: &Result<Value, serde_json::Error>) -> Option<&Map<String, Value>> {
    match parsed {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// A token endpoint answer: a token set, or why not.
pub(crate) fn interpret_token(
    answer: Answer,
    policy: &ResponsePolicy,
) -> Result<TokenSet, AttemptError> {
    let parsed = serde_json::from_slice::<Value>(&answer.body);
    if let Some(dead) = policy.dead_token(answer.status, parsed.as_ref().ok()) {
        return Err(AttemptError::Permanent(dead));
    }
    let map = object(&parsed);
    // An error object is an error even inside a 200.
    let has_error = map.is_some_and(|m| oauth_error(m, answer.status, policy).is_some());
    if !answer.status.is_success() || has_error {
        return Err(error_answer(&answer, map, policy));
    }
    let map = match parsed {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(AttemptError::Permanent(Error::invalid_response(
                "the body is not a JSON object",
            )));
        }
        Err(e) => {
            return Err(AttemptError::Permanent(Error::InvalidResponse {
                reason: "the body is not JSON".into(),
                source: Some(Arc::new(e)),
            }));
        }
    };
    parse_token_response(&map, answer.received_at, policy).map_err(|error| {
        // Unusable, but the server may have rotated the refresh token all
        // the same: it must not be thrown away.
        match string_field(&map, "refresh_token") {
            Some(refresh) => AttemptError::Unusable {
                error,
                refresh_token: RefreshToken::new(refresh),
            },
            None => AttemptError::Permanent(error),
        }
    })
}

/// A revocation endpoint answer: 200 means revoked (also for a token the
/// server does not know).
pub(crate) fn interpret_revocation(
    answer: Answer,
    policy: &ResponsePolicy,
) -> Result<(), AttemptError> {
    if answer.status.is_success() {
        return Ok(());
    }
    let parsed = serde_json::from_slice::<Value>(&answer.body);
    Err(error_answer(&answer, object(&parsed), policy))
}

/// An error answer: its OAuth error if it has one, else its status;
/// transient for 5xx, 429 and `temporarily_unavailable`.
fn error_answer(
    answer: &Answer,
    parsed: Option<&Map<String, Value>>,
    policy: &ResponsePolicy,
) -> AttemptError {
    if answer.status.is_redirection() {
        return AttemptError::Permanent(Error::invalid_response(format!(
            "the server answered {}; redirects are not followed",
            answer.status
        )));
    }
    let transient = is_transient_status(answer.status);
    let error = parsed
        .and_then(|map| oauth_error(map, answer.status, policy))
        .unwrap_or(Error::HttpStatus {
            status: answer.status,
        });
    if transient || is_transient_oauth_error(&error) {
        AttemptError::Transient {
            error,
            retry_after: answer.retry_after,
        }
    } else {
        AttemptError::Permanent(error)
    }
}

fn is_transient_oauth_error(error: &Error) -> bool {
    matches!(error, Error::OAuth { error, .. } if error == "temporarily_unavailable")
}

/// A non-empty string field.
pub(crate) fn string_field(map: &Map<String, Value>, name: &str) -> Option<String> {
    match map.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// A field of the server's own words, for errors and logs: control
/// characters (a newline that would forge a log line, an escape sequence
/// for a terminal) are escaped. RFC 6749 §5.2 allows only printable ASCII
/// there anyway.
fn text_field(map: &Map<String, Value>, name: &str) -> Option<String> {
    string_field(map, name).map(|text| escape_controls(&text))
}

pub(crate) fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// An RFC 6749 §5.2 error object, which some servers also send with a 200.
pub(crate) fn oauth_error(
    map: &Map<String, Value>,
    status: StatusCode,
    policy: &ResponsePolicy,
) -> Option<Error> {
    let error = text_field(map, "error")?;
    let description = text_field(map, "error_description");
    if policy.means_invalid_grant(&error) {
        return Some(Error::InvalidGrant { description });
    }
    Some(Error::OAuth {
        status,
        error,
        description,
        uri: text_field(map, "error_uri"),
    })
}

/// `expires_in` as servers really send it: an integer, a float, or a numeric
/// string (older Azure AD).
pub(crate) fn seconds_field(value: Option<&Value>) -> Result<Option<Duration>, Error> {
    let seconds = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match seconds {
        Some(s) if s.is_finite() && s >= 0.0 => {
            // A lifetime of zero means nothing usable; treat it as unknown
            // rather than refreshing on every request.
            if s < 1.0 {
                Ok(None)
            } else {
                Ok(Some(Duration::from_secs(s.min(u64::MAX as f64) as u64)))
            }
        }
        _ => Err(Error::invalid_response(
            "`expires_in` is not a number of seconds",
        )),
    }
}

/// Whether an access token can go in an `Authorization` header.
pub(crate) fn is_header_safe(access_token: &str) -> bool {
    HeaderValue::try_from(format!("Bearer {access_token}")).is_ok()
}

/// An RFC 6749 §5.1 success response. Extra fields are ignored.
pub(crate) fn parse_token_response(
    map: &Map<String, Value>,
    received_at: SystemTime,
    policy: &ResponsePolicy,
) -> Result<TokenSet, Error> {
    let access = string_field(map, "access_token")
        .ok_or_else(|| Error::invalid_response("no `access_token`"))?;
    if !is_header_safe(&access) {
        return Err(Error::invalid_response(
            "the `access_token` cannot be sent in an HTTP header",
        ));
    }
    check_token_type(map.get("token_type"), policy)?;
    let expires_in = seconds_field(map.get("expires_in"))?;
    let refresh = string_field(map, "refresh_token").map(RefreshToken::new);
    let scope = string_field(map, "scope");
    let token_type = string_field(map, "token_type");
    let id_token = string_field(map, "id_token").map(IdToken::new);
    let extra = map
        .iter()
        .filter(|(name, _)| !STANDARD_FIELDS.contains(&name.as_str()))
        .filter(|(name, value)| storable(name, value))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let tokens = TokenSet::from_parts(
        AccessToken::new(access),
        refresh,
        expires_in,
        received_at,
        scope,
    );
    Ok(tokens.with_response_fields(token_type, id_token, extra))
}

/// How deep an extra field may nest. The stored form puts it two levels
/// down and serde_json reads 128 levels at most: a deeper field made a token
/// file or Redis hash no process could load (found by the property tests).
const MAX_EXTRA_DEPTH: usize = 64;

fn storable(name: &str, value: &Value) -> bool {
    let deep = nests_deeper_than(value, MAX_EXTRA_DEPTH);
    if deep {
        tracing::debug!(field = %escape_controls(name), "dropped an extra field nested too deep to store");
    }
    !deep
}

/// Recursion bounded by `levels`, whatever the value's depth.
fn nests_deeper_than(value: &Value, levels: usize) -> bool {
    match value {
        Value::Array(items) => {
            levels == 0 || items.iter().any(|v| nests_deeper_than(v, levels - 1))
        }
        Value::Object(map) => levels == 0 || map.values().any(|v| nests_deeper_than(v, levels - 1)),
        _ => false,
    }
}

/// The fields a [`TokenSet`] keeps in fields of its own.
const STANDARD_FIELDS: [&str; 6] = [
    "access_token",
    "token_type",
    "expires_in",
    "refresh_token",
    "scope",
    "id_token",
];

/// A token response the application got itself, stamped `received_at`: the
/// same reading as the refresh path's, errors included.
pub(crate) fn token_set_from_json(
    response: &Value,
    received_at: SystemTime,
) -> Result<TokenSet, Error> {
    let policy = ResponsePolicy::default();
    let Some(map) = response.as_object() else {
        return Err(Error::invalid_response(
            "the token response is not a JSON object",
        ));
    };
    if let Some(error) = oauth_error(map, StatusCode::OK, &policy) {
        return Err(error);
    }
    parse_token_response(map, received_at, &policy)
}

/// Lenient: a few servers omit `token_type`; everything we get is sent as
/// Bearer, or DPoP (RFC 9449 §5; the token client checks that it sent a
/// proof), so any other type is refused unless the provider's policy names
/// it as a bearer token under another name.
fn check_token_type(value: Option<&Value>, policy: &ResponsePolicy) -> Result<(), Error> {
    match value {
        None | Some(Value::Null) => {
            tracing::debug!("token response has no token_type; assuming Bearer");
            Ok(())
        }
        Some(Value::String(t)) if policy.is_bearer(t) || t.eq_ignore_ascii_case("dpop") => Ok(()),
        // The server's words, escaped like all the others (the property
        // tests found a `token_type` with a newline forging a log line).
        Some(Value::String(t)) => Err(Error::invalid_response(format!(
            "unsupported token_type `{}` (only Bearer and DPoP)",
            escape_controls(t)
        ))),
        Some(_) => Err(Error::invalid_response("`token_type` is not a string")),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod proptests;
