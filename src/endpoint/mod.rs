//! The token endpoint client: RFC 6749 §6 refresh and §4.4 client
//! credentials requests, RFC 7009 revocation, with bounded retries of
//! transient failures. Each attempt is prepared afresh
//! ([`TokenEndpoint::prepare`]), authenticated by [`client_auth`], and its
//! answer read by the pure functions of [`response`].

pub(crate) mod assertion;
mod attempt;
pub(crate) mod client_auth;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod retry;

use std::sync::Arc;

use reqwest::Url;
use reqwest::header::RETRY_AFTER;
use tracing::Instrument as _;

use crate::clock::Clock;
use crate::dpop::{DPOP, NonceCache, ProofFor, nonce_of, origin};
use crate::error::Error;
use crate::telemetry::{self, TokenAttempt};
use crate::token::BoundKey;
use crate::token::TokenSet;
use crate::util::http::{ReadError, read_capped};
use crate::util::time::{deadline_after, ends_after};
use assertion::JwtBearerGrant;
use attempt::{call_label, transient_transport};
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
    /// The JWT-bearer grant's assertions, when that is the grant.
    pub(crate) jwt_bearer: Option<JwtBearerGrant>,
    /// The DPoP key for sets that are not bound to one of their own.
    pub(crate) dpop: Option<BoundKey>,
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
    jwt_bearer: Option<JwtBearerGrant>,
    dpop: Option<BoundKey>,
    /// The token endpoint's DPoP nonces (RFC 9449 §8), fed by every answer.
    nonces: NonceCache,
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
            jwt_bearer: config.jwt_bearer,
            dpop: config.dpop,
            nonces: NonceCache::default(),
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
    /// A set bound to a DPoP key (`bound`, or the configured key for one
    /// that is not) is asked for with a new proof on every attempt, with
    /// the server's latest nonce, and the new set is bound to the same key.
    pub(crate) async fn token(
        &self,
        grant: Grant<'_>,
        also_secret: Option<&str>,
        bound: Option<&BoundKey>,
        clock: &dyn Clock,
    ) -> Result<TokenSet, Failed> {
        let extra: Vec<&str> = also_secret.into_iter().collect();
        let key = bound.or(self.dpop.as_ref());
        let prover = key.map(BoundKey::prover).transpose()?;
        let call = Call::Token {
            grant,
            dpop: prover.as_deref(),
        };
        let mut tokens = self.call(call, &extra, clock, interpret_token).await?;
        match key {
            Some(key) => tokens.set_bound_key(Some(key.clone())),
            None if tokens.is_dpop_token() => {
                return Err(Error::invalid_response(
                    "a DPoP access token came back for a request without a DPoP proof",
                )
                .into());
            }
            None => {}
        }
        Ok(tokens)
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

    /// One attempt's request for `call`, built from nothing each time: what
    /// must be unique per attempt (a signed client assertion's `jti`, a
    /// JWT-bearer assertion, a DPoP proof) is made here, at `clock`'s now.
    pub(crate) async fn prepare(
        &self,
        call: Call<'_>,
        clock: &dyn Clock,
    ) -> Result<TokenRequest, Error> {
        let now = clock.now();
        let mut request = match call {
            Call::Token { grant, dpop } => {
                let mut request = TokenRequest::new(self.url.clone());
                if let Some(prover) = dpop {
                    let nonce = self.nonces.get(&origin(&self.url));
                    let what = ProofFor {
                        method: "POST",
                        url: &self.url,
                        ath: None,
                        nonce: nonce.as_deref(),
                    };
                    request.headers.insert(DPOP, prover.proof(what, now).await?);
                }
                request.grant(grant);
                if let (Grant::JwtBearer, Some(bearer)) = (grant, &self.jwt_bearer) {
                    let jwt = bearer.assertion(self.url.as_str(), now).await?;
                    request.secret_field("assertion", &jwt);
                }
                if let Some(scope) = &self.scope {
                    request.field("scope", scope);
                }
                for (name, value) in &self.extra_params {
                    request.field(name, value);
                }
                request
            }
            Call::Revoke { url, token, hint } => {
                let mut request = TokenRequest::new(url.clone());
                request.revocation(token, hint);
                request
            }
        };
        self.credentials.apply(&mut request, now).await?;
        Ok(request)
    }

    /// The retry loop: prepare, send, interpret; again while the failure is
    /// transient, retries are left and the wait fits in the budget. A DPoP
    /// call told to use a new nonce (`use_dpop_nonce`, RFC 9449 §8) is sent
    /// once more at once, with it: not a retry, and no backoff.
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
            let mut nonce_retried = false;
            loop {
                let nonce_sent = self.nonces.get(&origin(&self.url));
                let request = self.prepare(call, clock).await.map_err(Failed::from)?;
                let attempt = TokenAttempt::start(call_label(call), retries);
                let result = self
                    .attempt(request, extra_secrets, clock, interpret)
                    .instrument(attempt.span())
                    .await;
                attempt.finish(AttemptError::outcome(&result));
                let (error, retry_after) = match result {
                    Ok(value) => return Ok(value),
                    Err(AttemptError::Transient { error, retry_after }) => (error, retry_after),
                    Err(AttemptError::Permanent(error))
                        if !nonce_retried && self.wants_new_nonce(call, &error, nonce_sent) =>
                    {
                        nonce_retried = true;
                        telemetry::dpop_nonce_retry("token_endpoint");
                        continue;
                    }
                    Err(other) => return Err(other.into_failed()),
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

    /// Whether `error` asks a DPoP call for a nonce the server has now given
    /// (a `DPoP-Nonce` other than the one sent).
    fn wants_new_nonce(&self, call: Call<'_>, error: &Error, sent: Option<Arc<str>>) -> bool {
        let dpop = matches!(call, Call::Token { dpop: Some(_), .. });
        let asked = matches!(error, Error::OAuth { error, .. } if error == "use_dpop_nonce");
        let now = self.nonces.get(&origin(&self.url));
        dpop && asked && now.is_some() && now != sent
    }

    /// One attempt: send, interpret, and redact every secret it carried
    /// from what a failure says.
    async fn attempt<T>(
        &self,
        request: TokenRequest,
        extra_secrets: &[&str],
        clock: &dyn Clock,
        interpret: fn(Answer, &ResponsePolicy) -> Result<T, AttemptError>,
    ) -> Result<T, AttemptError> {
        let (url, body, headers, secrets) = request.into_parts();
        let answer = self.send(url, body, headers, clock).await;
        answer
            .and_then(|answer| interpret(answer, &self.policy))
            .map_err(|failed| {
                let mut known: Vec<&str> = secrets.iter().map(String::as_str).collect();
                known.extend_from_slice(extra_secrets);
                failed.redacted(&known)
            })
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
        if let Some(nonce) = nonce_of(response.headers()) {
            self.nonces.note(&origin(&url), nonce);
        }
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
