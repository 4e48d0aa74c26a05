//! The token endpoint client: RFC 6749 §6 refresh requests, client
//! authentication (§2.3.1), and §5.1/§5.2 response parsing, with bounded
//! retries of transient failures.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::clock::Clock;
use crate::error::Error;
use crate::token::{AccessToken, RefreshToken, TokenSet};

/// How the client authenticates to the token endpoint (RFC 6749 §2.3).
///
/// The default is [`ClientAuth::SecretBasic`] when a client secret is set and
/// [`ClientAuth::None`] otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// A public client: sends only `client_id` in the form (if one is set).
    None,
    /// HTTP Basic with the form-urlencoded client id and secret
    /// (`client_secret_basic`).
    SecretBasic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    SecretPost,
}

/// The client secret. `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct ClientSecret(Arc<str>);

impl ClientSecret {
    pub(crate) fn new(secret: String) -> Self {
        Self(Arc::from(secret))
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Limits on one refresh: per-attempt timeout, retries and the overall budget.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    pub(crate) attempt_timeout: Duration,
    pub(crate) budget: Duration,
    pub(crate) max_retries: u32,
    pub(crate) base_delay: Duration,
}

#[derive(Debug)]
pub(crate) struct TokenEndpoint {
    pub(crate) url: Url,
    pub(crate) http: reqwest::Client,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<ClientSecret>,
    pub(crate) auth: ClientAuth,
    /// RFC 6749 §6 `scope`, for servers that want it on every refresh.
    pub(crate) scope: Option<String>,
    /// Provider-specific form parameters.
    pub(crate) extra_params: Vec<(String, String)>,
    pub(crate) retry: RetryPolicy,
    pub(crate) max_response_bytes: usize,
}

/// Why one attempt failed, and whether another may succeed.
enum AttemptError {
    Transient {
        error: Error,
        retry_after: Option<Duration>,
    },
    Permanent(Error),
}

/// What the token endpoint is asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Grant<'a> {
    /// RFC 6749 §6: spend a refresh token.
    Refresh(&'a RefreshToken),
    /// RFC 6749 §4.4: a new token for the client itself.
    ClientCredentials,
}

/// Which kind of token is revoked: RFC 7009 `token_type_hint`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TokenKind {
    Access,
    Refresh,
}

/// One answer, read and capped.
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Vec<u8>,
    received_at: SystemTime,
}

impl TokenEndpoint {
    /// Asks the token endpoint for a new token set. Transient failures are
    /// retried with backoff while the budget lasts.
    pub(crate) async fn token(
        &self,
        grant: Grant<'_>,
        clock: &dyn Clock,
    ) -> Result<TokenSet, Error> {
        let url = self.url.clone();
        self.call(&url, self.grant_form(grant), clock, interpret_token)
            .await
    }

    /// Revokes a token at an RFC 7009 endpoint. 200 means revoked, also for
    /// a token the server does not know; 503 and other transient answers are
    /// retried.
    pub(crate) async fn revoke(
        &self,
        url: &Url,
        token: &str,
        kind: TokenKind,
        clock: &dyn Clock,
    ) -> Result<(), Error> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token);
        form.append_pair(
            "token_type_hint",
            match kind {
                TokenKind::Access => "access_token",
                TokenKind::Refresh => "refresh_token",
            },
        );
        self.append_client_auth(&mut form);
        self.call(url, form.finish(), clock, interpret_revocation)
            .await
    }

    async fn call<T>(
        &self,
        url: &Url,
        body: String,
        clock: &dyn Clock,
        interpret: fn(Answer) -> Result<T, AttemptError>,
    ) -> Result<T, Error> {
        let budget = self.retry.budget;
        let deadline = tokio::time::Instant::now() + budget;
        let attempts = async {
            let mut retries = 0;
            loop {
                let result = match self.attempt(url, &body, clock).await {
                    Ok(answer) => interpret(answer),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(value) => return Ok(value),
                    Err(AttemptError::Permanent(error)) => return Err(error),
                    Err(AttemptError::Transient { error, retry_after }) => {
                        if retries >= self.retry.max_retries {
                            return Err(error);
                        }
                        let delay = retry_after.unwrap_or_else(|| self.backoff(retries));
                        if tokio::time::Instant::now() + delay >= deadline {
                            tracing::warn!(
                                ?delay,
                                error = %error,
                                "authorization server failed; no time left in the budget to retry"
                            );
                            return Err(error);
                        }
                        retries += 1;
                        tracing::warn!(
                            retry = retries,
                            ?delay,
                            error = %error,
                            "authorization server failed transiently; retrying"
                        );
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        };
        match tokio::time::timeout_at(deadline, attempts).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(budget)),
        }
    }

    /// Exponential backoff with jitter in [50 %, 100 %] of the step, so that
    /// many clients that failed together do not retry together.
    fn backoff(&self, retries: u32) -> Duration {
        let step = self
            .retry
            .base_delay
            .saturating_mul(2u32.saturating_pow(retries));
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let fraction = 0.5 + f64::from(nanos % 1000) / 2000.0;
        step.mul_f64(fraction)
    }

    fn grant_form(&self, grant: Grant<'_>) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        match grant {
            Grant::Refresh(refresh_token) => {
                form.append_pair("grant_type", "refresh_token");
                form.append_pair("refresh_token", refresh_token.secret());
            }
            Grant::ClientCredentials => {
                form.append_pair("grant_type", "client_credentials");
            }
        }
        if let Some(scope) = &self.scope {
            form.append_pair("scope", scope);
        }
        for (name, value) in &self.extra_params {
            form.append_pair(name, value);
        }
        self.append_client_auth(&mut form);
        form.finish()
    }

    /// Client authentication in the body: both for `client_secret_post`,
    /// the id alone for a public client, nothing for Basic.
    fn append_client_auth(&self, form: &mut form_urlencoded::Serializer<'_, String>) {
        match self.auth {
            ClientAuth::SecretPost => {
                if let Some(id) = &self.client_id {
                    form.append_pair("client_id", id);
                }
                if let Some(secret) = &self.client_secret {
                    form.append_pair("client_secret", &secret.0);
                }
            }
            ClientAuth::None => {
                if let Some(id) = &self.client_id {
                    form.append_pair("client_id", id);
                }
            }
            ClientAuth::SecretBasic => {}
        }
    }

    /// `Basic base64(urlencode(id) ":" urlencode(secret))`: RFC 6749 §2.3.1
    /// encodes both parts with application/x-www-form-urlencoded first, which
    /// matters for secrets with reserved characters.
    fn basic_credentials(&self) -> Option<HeaderValue> {
        if self.auth != ClientAuth::SecretBasic {
            return None;
        }
        let id = self.client_id.as_deref().unwrap_or("");
        let secret = self.client_secret.as_ref().map(|s| &*s.0).unwrap_or("");
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let raw = format!("{}:{}", encode(id), encode(secret));
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        let mut value = HeaderValue::try_from(format!("Basic {encoded}")).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// One POST, its answer read within the size cap.
    async fn attempt(
        &self,
        url: &Url,
        body: &str,
        clock: &dyn Clock,
    ) -> Result<Answer, AttemptError> {
        let mut request = self
            .http
            .post(url.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .timeout(self.retry.attempt_timeout)
            .body(body.to_owned());
        if let Some(basic) = self.basic_credentials() {
            request = request.header(AUTHORIZATION, basic);
        }

        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_builder() => {
                return Err(AttemptError::Permanent(Error::Transport(Arc::new(e))));
            }
            Err(e) => {
                return Err(AttemptError::Transient {
                    error: Error::Transport(Arc::new(e.without_url())),
                    retry_after: None,
                });
            }
        };
        // Stamp the expiry when the answer arrives, not when it was asked for.
        let received_at = clock.now();
        let status = response.status();
        let retry_after = parse_retry_after(response.headers().get(RETRY_AFTER));
        match read_capped(&mut response, self.max_response_bytes).await {
            Ok(body) => Ok(Answer {
                status,
                retry_after,
                body,
                received_at,
            }),
            Err(ReadError::TooLarge) => Err(AttemptError::Permanent(Error::invalid_response(
                format!("the response exceeds {} bytes", self.max_response_bytes),
            ))),
            Err(ReadError::Transport(e)) => Err(AttemptError::Transient {
                error: Error::Transport(Arc::new(e.without_url())),
                retry_after: None,
            }),
        }
    }
}

fn is_transient_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// An error answer: its OAuth error if it has one, else its status;
/// transient for 5xx, 429 and `temporarily_unavailable`.
fn error_answer(answer: &Answer, parsed: Option<&serde_json::Map<String, Value>>) -> AttemptError {
    if answer.status.is_redirection() {
        return AttemptError::Permanent(Error::invalid_response(format!(
            "the server answered {}; redirects are not followed",
            answer.status
        )));
    }
    let transient = is_transient_status(answer.status);
    let error = parsed
        .and_then(|map| oauth_error(map, answer.status))
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

fn interpret_token(answer: Answer) -> Result<TokenSet, AttemptError> {
    let parsed = serde_json::from_slice::<Value>(&answer.body);
    let map = match &parsed {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    // An error object is an error even inside a 200.
    let has_error = map.is_some_and(|m| oauth_error(m, answer.status).is_some());
    if !answer.status.is_success() || has_error {
        return Err(error_answer(&answer, map));
    }
    match parsed {
        Ok(Value::Object(map)) => {
            parse_token_response(&map, answer.received_at).map_err(AttemptError::Permanent)
        }
        Ok(_) => Err(AttemptError::Permanent(Error::invalid_response(
            "the body is not a JSON object",
        ))),
        Err(e) => Err(AttemptError::Permanent(Error::InvalidResponse {
            reason: "the body is not JSON".into(),
            source: Some(Arc::new(e)),
        })),
    }
}

fn interpret_revocation(answer: Answer) -> Result<(), AttemptError> {
    if answer.status.is_success() {
        return Ok(());
    }
    let parsed = serde_json::from_slice::<Value>(&answer.body);
    let map = match &parsed {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    Err(error_answer(&answer, map))
}

pub(crate) enum ReadError {
    TooLarge,
    Transport(reqwest::Error),
}

/// Reads the body, refusing to buffer more than `cap` bytes.
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|len| len > cap as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `Retry-After` in delay-seconds. An HTTP-date falls back to our backoff.
fn parse_retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let seconds: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

fn is_transient_oauth_error(error: &Error) -> bool {
    matches!(error, Error::OAuth { error, .. } if error == "temporarily_unavailable")
}

fn string_field(map: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    match map.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// An RFC 6749 §5.2 error object, which some servers also send with a 200.
fn oauth_error(map: &serde_json::Map<String, Value>, status: StatusCode) -> Option<Error> {
    let error = string_field(map, "error")?;
    let description = string_field(map, "error_description");
    if error == "invalid_grant" {
        return Some(Error::InvalidGrant { description });
    }
    Some(Error::OAuth {
        status,
        error,
        description,
        uri: string_field(map, "error_uri"),
    })
}

/// `expires_in` as servers really send it: an integer, a float, or a numeric
/// string (older Azure AD).
fn seconds_field(value: Option<&Value>) -> Result<Option<Duration>, Error> {
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

/// An RFC 6749 §5.1 success response. Extra fields are ignored.
fn parse_token_response(
    map: &serde_json::Map<String, Value>,
    received_at: SystemTime,
) -> Result<TokenSet, Error> {
    let access = string_field(map, "access_token")
        .ok_or_else(|| Error::invalid_response("no `access_token`"))?;
    if HeaderValue::try_from(format!("Bearer {access}")).is_err() {
        return Err(Error::invalid_response(
            "the `access_token` cannot be sent in an HTTP header",
        ));
    }
    match map.get("token_type") {
        // Lenient: a few servers omit it; everything we get is sent as Bearer.
        None | Some(Value::Null) => {
            tracing::debug!("token response has no token_type; assuming Bearer")
        }
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(Value::String(t)) => {
            return Err(Error::invalid_response(format!(
                "unsupported token_type `{t}` (only Bearer)"
            )));
        }
        Some(_) => return Err(Error::invalid_response("`token_type` is not a string")),
    }
    let expires_in = seconds_field(map.get("expires_in"))?;
    let refresh = string_field(map, "refresh_token").map(RefreshToken::new);
    let scope = string_field(map, "scope");
    Ok(TokenSet::from_parts(
        AccessToken::new(access),
        refresh,
        expires_in,
        received_at,
        scope,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(json: &str) -> serde_json::Map<String, Value> {
        match serde_json::from_str(json).unwrap() {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn parses_success_with_extra_fields_and_mixed_case_type() {
        let now = SystemTime::now();
        let tokens = parse_token_response(
            &map(r#"{"access_token":"a","token_type":"bEaReR","expires_in":"3600","refresh_token":"r","id_token":"x","ext":{"n":1}}"#),
            now,
        )
        .unwrap();
        assert_eq!(tokens.access_token().secret(), "a");
        assert_eq!(tokens.refresh_token().unwrap().secret(), "r");
        assert_eq!(tokens.expires_at(), Some(now + Duration::from_secs(3600)));
    }

    #[test]
    fn rejects_non_bearer_and_missing_access_token() {
        let now = SystemTime::now();
        assert!(matches!(
            parse_token_response(&map(r#"{"access_token":"a","token_type":"mac"}"#), now),
            Err(Error::InvalidResponse { .. })
        ));
        assert!(matches!(
            parse_token_response(&map(r#"{"token_type":"Bearer"}"#), now),
            Err(Error::InvalidResponse { .. })
        ));
        assert!(matches!(
            parse_token_response(&map(r#"{"access_token":"a\nb"}"#), now),
            Err(Error::InvalidResponse { .. })
        ));
        assert!(matches!(
            parse_token_response(&map(r#"{"access_token":"a","expires_in":-5}"#), now),
            Err(Error::InvalidResponse { .. })
        ));
    }

    #[test]
    fn empty_refresh_token_counts_as_none() {
        let tokens = parse_token_response(
            &map(r#"{"access_token":"a","token_type":"Bearer","refresh_token":""}"#),
            SystemTime::now(),
        )
        .unwrap();
        assert!(tokens.refresh_token().is_none());
    }

    #[test]
    fn oauth_errors_map_to_variants() {
        let e = oauth_error(
            &map(r#"{"error":"invalid_grant","error_description":"expired"}"#),
            StatusCode::BAD_REQUEST,
        );
        assert!(matches!(e, Some(Error::InvalidGrant { description: Some(d) }) if d == "expired"));
        let e = oauth_error(
            &map(r#"{"error":"invalid_client"}"#),
            StatusCode::UNAUTHORIZED,
        );
        assert!(
            matches!(e, Some(Error::OAuth { status, error, .. }) if status == 401 && error == "invalid_client")
        );
        assert!(oauth_error(&map(r#"{"access_token":"a"}"#), StatusCode::OK).is_none());
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("7"))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static(
                "Wed, 21 Oct 2015 07:28:00 GMT"
            ))),
            None
        );
    }
}
