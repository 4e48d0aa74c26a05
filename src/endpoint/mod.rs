//! The token endpoint client: RFC 6749 §6 refresh and §4.4 client
//! credentials requests, RFC 7009 revocation, with bounded retries of
//! transient failures. Each attempt is prepared afresh
//! ([`TokenEndpoint::prepare`]), authenticated by [`client_auth`], and its
//! answer read by the pure functions of [`response`].

pub(crate) mod client_auth;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod retry;

use std::sync::Arc;

use reqwest::Url;
use reqwest::header::RETRY_AFTER;
use tracing::Instrument as _;

use crate::clock::Clock;
use crate::error::Error;
use crate::telemetry::{self, TokenAttempt};
use crate::token::TokenSet;
use crate::util::http::{ReadError, read_capped};
use crate::util::time::{deadline_after, ends_after};
use client_auth::{ClientAuth, ClientCredentials};
use request::{Call, Grant, RevokeHint, TokenRequest};
use response::{
    Answer, AttemptError, Failed, ResponsePolicy, interpret_revocation, interpret_token,
};
use retry::{RetryPolicy, parse_retry_after};

/// Everything the token client is built from.
pub(crate) struct EndpointConfig {
    pub(crate) url: Url,
    pub(crate) http: reqwest::Client,
    pub(crate) credentials: ClientCredentials,
    /// RFC 6749 §6 `scope`, for servers that want it on every request.
    pub(crate) scope: Option<String>,
    /// Provider-specific form parameters.
    pub(crate) extra_params: Vec<(String, String)>,
    pub(crate) retry: RetryPolicy,
    pub(crate) max_response_bytes: usize,
    /// What the provider's answers mean beyond RFC 6749.
    pub(crate) policy: ResponsePolicy,
}

/// The token client. It knows nothing of callers or stores.
#[derive(Debug)]
pub(crate) struct TokenEndpoint {
    url: Url,
    http: reqwest::Client,
    credentials: ClientCredentials,
    scope: Option<String>,
    extra_params: Vec<(String, String)>,
    retry: RetryPolicy,
    max_response_bytes: usize,
    policy: ResponsePolicy,
}

impl TokenEndpoint {
    pub(crate) fn new(config: EndpointConfig) -> Self {
        Self {
            url: config.url,
            http: config.http,
            credentials: config.credentials,
            scope: config.scope,
            extra_params: config.extra_params,
            retry: config.retry,
            max_response_bytes: config.max_response_bytes,
            policy: config.policy,
        }
    }

    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    pub(crate) fn client_id(&self) -> Option<&str> {
        self.credentials.id()
    }

    pub(crate) fn client_auth(&self) -> ClientAuth {
        self.credentials.method()
    }

    /// Asks the token endpoint for a new token set. Transient failures are
    /// retried with backoff while the budget lasts. `also_secret` names a
    /// secret the request does not carry but an answer might echo (the
    /// access token being replaced). A failure keeps the new refresh token
    /// of an answer that was unusable otherwise.
    pub(crate) async fn token(
        &self,
        grant: Grant<'_>,
        also_secret: Option<&str>,
        clock: &dyn Clock,
    ) -> Result<TokenSet, Failed> {
        let extra: Vec<&str> = also_secret.into_iter().collect();
        self.call(Call::Token(grant), &extra, clock, interpret_token)
            .await
    }

    /// Revokes a token at an RFC 7009 endpoint. 200 means revoked, also for
    /// a token the server does not know; 503 and other transient answers are
    /// retried.
    pub(crate) async fn revoke(
        &self,
        url: &Url,
        token: &str,
        hint: RevokeHint,
        clock: &dyn Clock,
    ) -> Result<(), Error> {
        let call = Call::Revoke { url, token, hint };
        self.call(call, &[], clock, interpret_revocation)
            .await
            .map_err(|failed| failed.error)
    }

    /// The request for attempt `attempt` (0 for the first) of `call`, built
    /// from nothing each time: what must be unique per attempt (a signed
    /// client assertion's `jti`, a DPoP proof) goes in here.
    pub(crate) async fn prepare(&self, call: Call<'_>, attempt: u32) -> TokenRequest {
        let _ = attempt;
        match call {
            Call::Token(grant) => {
                let mut request = TokenRequest::new(self.url.clone());
                request.grant(grant);
                if let Some(scope) = &self.scope {
                    request.field("scope", scope);
                }
                for (name, value) in &self.extra_params {
                    request.field(name, value);
                }
                self.credentials.apply(&mut request);
                request
            }
            Call::Revoke { url, token, hint } => {
                let mut request = TokenRequest::new(url.clone());
                request.revocation(token, hint);
                self.credentials.apply(&mut request);
                request
            }
        }
    }

    /// The retry loop: prepare, send, interpret; again while the failure is
    /// transient, retries are left and the wait fits in the budget.
    async fn call<T>(
        &self,
        call: Call<'_>,
        extra_secrets: &[&str],
        clock: &dyn Clock,
        interpret: fn(Answer, &ResponsePolicy) -> Result<T, AttemptError>,
    ) -> Result<T, Failed> {
        let budget = self.retry.budget;
        let deadline = deadline_after(budget);
        let attempts = async {
            let mut retries = 0;
            loop {
                let request = self.prepare(call, retries).await;
                let attempt = TokenAttempt::start(call_label(call), retries);
                let (answer, secrets) = self
                    .attempt(request, clock)
                    .instrument(attempt.span())
                    .await;
                let interpreted = answer.and_then(|answer| interpret(answer, &self.policy));
                let result = interpreted.map_err(|failed| {
                    let mut known: Vec<&str> = secrets.iter().map(String::as_str).collect();
                    known.extend_from_slice(extra_secrets);
                    failed.redacted(&known)
                });
                attempt.finish(AttemptError::outcome(&result));
                let (error, retry_after) = match result {
                    Ok(value) => return Ok(value),
                    Err(AttemptError::Permanent(error)) => return Err(error.into()),
                    Err(AttemptError::Unusable {
                        error,
                        refresh_token,
                    }) => {
                        let rotated = Some(refresh_token);
                        return Err(Failed { error, rotated });
                    }
                    Err(AttemptError::Transient { error, retry_after }) => (error, retry_after),
                };
                if retries >= self.retry.max_retries {
                    return Err(error.into());
                }
                let delay = retry_after.unwrap_or_else(|| self.retry.backoff(retries));
                if ends_after(delay, deadline) {
                    tracing::warn!(?delay, error = %error,
                        "authorization server failed; no time left in the budget to retry");
                    return Err(error.into());
                }
                retries += 1;
                telemetry::token_retry(retries, delay, &error);
                tokio::time::sleep(delay).await;
            }
        };
        match tokio::time::timeout_at(deadline, attempts).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(budget).into()),
        }
    }

    /// One POST, its answer read within the size cap, and the secrets the
    /// request carried.
    async fn attempt(
        &self,
        request: TokenRequest,
        clock: &dyn Clock,
    ) -> (Result<Answer, AttemptError>, Vec<String>) {
        let (url, body, headers, secrets) = request.into_parts();
        (self.send(url, body, headers, clock).await, secrets)
    }

    async fn send(
        &self,
        url: Url,
        body: String,
        headers: reqwest::header::HeaderMap,
        clock: &dyn Clock,
    ) -> Result<Answer, AttemptError> {
        let sent = self
            .http
            .post(url.clone())
            .headers(headers)
            .timeout(self.retry.attempt_timeout)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) if e.is_builder() => {
                return Err(AttemptError::Permanent(Error::Transport(Arc::new(e))));
            }
            Err(e) => return Err(transient_transport(e)),
        };
        // A client that follows redirects (one the user gave us) may have
        // sent our secrets on to another URL: whatever it answered there is
        // not the token endpoint's answer.
        if response.url() != &url {
            return Err(AttemptError::Permanent(Error::invalid_response(
                "the answer came from a redirect to another URL, which is refused; \
                 give http_client a client that follows no redirects",
            )));
        }
        // Stamp the expiry when the answer arrives, not when it was asked for.
        let received_at = clock.now();
        let status = response.status();
        telemetry::token_status(status.as_u16());
        let retry_after = parse_retry_after(response.headers().get(RETRY_AFTER));
        let body = match read_capped(&mut response, self.max_response_bytes).await {
            Ok(body) => body,
            // The cap limits what is read, not what a status means: a load
            // balancer's large 503 page is still a 503.
            Err(ReadError::TooLarge) if !status.is_success() => Vec::new(),
            Err(ReadError::TooLarge) => {
                return Err(AttemptError::Permanent(Error::invalid_response(format!(
                    "the response exceeds {} bytes",
                    self.max_response_bytes
                ))));
            }
            Err(ReadError::Transport(e)) => return Err(transient_transport(e)),
        };
        Ok(Answer {
            status,
            retry_after,
            body,
            received_at,
        })
    }
}

impl AttemptError {
    /// The `outcome` label of an attempt that ended in `result`.
    fn outcome<T>(result: &Result<T, AttemptError>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(AttemptError::Transient { .. }) => "transient",
            Err(_) => "error",
        }
    }

    fn redacted(self, secrets: &[&str]) -> Self {
        match self {
            AttemptError::Transient { error, retry_after } => AttemptError::Transient {
                error: error.redacted(secrets),
                retry_after,
            },
            AttemptError::Permanent(error) => AttemptError::Permanent(error.redacted(secrets)),
            AttemptError::Unusable {
                error,
                refresh_token,
            } => AttemptError::Unusable {
                error: error.redacted(secrets),
                refresh_token,
            },
        }
    }
}

/// The `call` label of a token endpoint request's span and metrics.
fn call_label(call: Call<'_>) -> &'static str {
    match call {
        Call::Token(Grant::ClientCredentials) => "client_credentials",
        Call::Token(_) => "refresh_token",
        Call::Revoke { .. } => "revoke",
    }
}

fn transient_transport(error: reqwest::Error) -> AttemptError {
    AttemptError::Transient {
        error: Error::Transport(Arc::new(error.without_url())),
        retry_after: None,
    }
}
