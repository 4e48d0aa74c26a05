//! The crate's one error type.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;

/// A boxed error from a [`TokenStore`](crate::TokenStore) or a user hook.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong, one variant per thing a caller can act on.
///
/// `Error` is `Clone` because one refresh's outcome is handed to every caller
/// that waited for it; causes are shared, and [`std::error::Error::source`]
/// still walks the whole chain.
///
/// From [`OAuth2Middleware`](crate::OAuth2Middleware) these errors arrive as
/// [`reqwest_middleware::Error::Middleware`], perhaps wrapped by other
/// middleware (reqwest-retry wraps every error); get ours back with
/// [`Error::find_in`]:
///
/// ```
/// # fn handle(err: reqwest_middleware::Error) {
/// use reqwest_oauth2_refresh::Error;
/// if let Some(ours) = Error::find_in(&err)
///     && ours.needs_sign_in()
/// {
///     // The refresh token is dead: send the user through sign-in again.
/// }
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The authorization server rejected the refresh token (`invalid_grant`):
    /// it expired, was revoked or was already used. Only a new sign-in helps.
    #[error("the refresh token was rejected (invalid_grant){}", describe(.description))]
    InvalidGrant {
        /// The server's `error_description`, if any.
        description: Option<String>,
    },

    /// The authorization server (token or revocation endpoint) answered with
    /// an OAuth error other than `invalid_grant` (RFC 6749 §5.2), for example
    /// `invalid_client`.
    #[error("the authorization server answered {status} with error `{error}`{}", describe(.description))]
    OAuth {
        /// The HTTP status of the answer (200 when the error came inside a 200).
        status: StatusCode,
        /// The OAuth `error` code.
        error: String,
        /// The server's `error_description`, if any.
        description: Option<String>,
        /// The server's `error_uri`, if any.
        uri: Option<String>,
    },

    /// The authorization server (token, revocation or metadata endpoint)
    /// answered with an HTTP error status and no OAuth error body (after
    /// retries, for a transient status).
    #[error("the authorization server answered {status}")]
    HttpStatus {
        /// The HTTP status of the last answer.
        status: StatusCode,
    },

    /// The authorization server could not be reached, or its answer could
    /// not be read (after retries).
    #[error("could not reach the authorization server")]
    Transport(#[source] Arc<reqwest::Error>),

    /// The authorization server answered something unusable: not a token
    /// response, metadata for another issuer, a redirect, too large.
    #[error("unusable answer from the authorization server: {reason}")]
    InvalidResponse {
        /// What was wrong with it.
        reason: String,
        /// The parse error, if there was one.
        #[source]
        source: Option<Arc<serde_json::Error>>,
    },

    /// A token is needed but there is no refresh token to get one with.
    #[error("no refresh token to renew the access token with")]
    NoRefreshToken,

    /// The manager has no tokens: none were given with
    /// [`TokenManagerBuilder::tokens`](crate::TokenManagerBuilder::tokens) and
    /// the store holds none.
    #[error("no tokens: give a TokenSet to the builder or fill the store")]
    NoTokens,

    /// A refresh (retries included) did not finish within its time budget,
    /// or a caller waited longer than the refresh lock's wait for another
    /// task's refresh. A store that does not answer in time is an
    /// [`Error::Store`] instead.
    #[error("the token refresh did not finish within {0:?}")]
    Timeout(Duration),

    /// The [`TokenStore`](crate::TokenStore) failed, or did not answer within
    /// the store timeout, or panicked. Store failures are handed to the
    /// callers that waited for that refresh, but not remembered for the
    /// failure cooldown: the next caller tries again.
    ///
    /// When a save fails after a refresh, the new tokens are still used from
    /// memory (the old refresh token may already be spent) and a background
    /// task keeps trying to save them, until a newer set replaces them.
    #[error("the token store failed to {operation}: {source}")]
    Store {
        /// What failed: `"load"`, `"save"`, `"lock"`, `"release"`,
        /// `"clear"` or `"connect"`.
        operation: &'static str,
        /// The store's error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The builder's configuration is unusable, or the manager is used where
    /// it cannot work (no Tokio runtime to refresh on).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The [`Signer`](crate::Signer) could not sign a client assertion or a
    /// JWT-bearer grant (a KMS that did not answer, a key it refused).
    #[error("the signer failed: {0}")]
    Signing(#[source] Arc<dyn std::error::Error + Send + Sync + 'static>),

    /// A refresh was cut short before it ended: it panicked, or it was
    /// abandoned with no runtime left to finish it. Callers that waited for
    /// it get this; the next caller tries again.
    #[error("the token refresh was abandoned: {0}")]
    Aborted(String),
}

impl Error {
    pub(crate) fn store(operation: &'static str, source: BoxError) -> Self {
        Error::Store {
            operation,
            source: Arc::from(source),
        }
    }

    pub(crate) fn invalid_response(reason: impl Into<String>) -> Self {
        Error::InvalidResponse {
            reason: reason.into(),
            source: None,
        }
    }

    /// Whether trying again later may succeed (a transport failure, a timeout,
    /// a 5xx or 429), as opposed to needing a person (`InvalidGrant`, bad
    /// configuration).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport(_) | Error::Timeout(_) | Error::Aborted(_) => true,
            Error::HttpStatus { status } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            // A 5xx or 429 is transient whatever its body says (a
            // `server_error` behind a 503 included).
            Error::OAuth { status, error, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || error == "temporarily_unavailable"
            }
            Error::Store { source, .. } => store_failure_may_pass(source.as_ref()),
            _ => false,
        }
    }

    /// Whether only a new sign-in helps: the refresh token is dead
    /// ([`Error::InvalidGrant`], a provider's own word for it included) or
    /// there is nothing to refresh with. Then send the user through sign-in
    /// again and hand the new tokens to
    /// [`TokenManager::set_tokens`](crate::TokenManager::set_tokens).
    pub fn needs_sign_in(&self) -> bool {
        matches!(
            self,
            Error::InvalidGrant { .. } | Error::NoRefreshToken | Error::NoTokens
        )
    }

    /// This crate's error inside an error of a `reqwest-middleware` stack,
    /// whatever wraps it: `reqwest-retry`'s `RetryError`, another
    /// middleware's error with ours as its source, an `anyhow` chain. The
    /// README's recommended stack (tracing, retry, this middleware) needs
    /// this: a plain `downcast_ref` finds nothing behind `RetryError`.
    ///
    /// ```
    /// # async fn call(client: reqwest_middleware::ClientWithMiddleware) {
    /// use reqwest_oauth2_refresh::Error;
    /// match client.get("https://api.example.com/me").send().await {
    ///     Ok(_response) => { /* … */ }
    ///     Err(e) => match Error::find_in(&e) {
    ///         Some(ours) if ours.needs_sign_in() => { /* sign in again */ }
    ///         Some(ours) if ours.is_transient() => { /* try again later */ }
    ///         Some(_ours) => { /* configuration or protocol problem */ }
    ///         None => { /* not about tokens: the API call itself failed */ }
    ///     },
    /// }
    /// # }
    /// ```
    pub fn find_in(error: &reqwest_middleware::Error) -> Option<&Error> {
        match error {
            reqwest_middleware::Error::Middleware(inner) => {
                inner.chain().take(MAX_CHAIN).find_map(Self::find_in_one)
            }
            reqwest_middleware::Error::Reqwest(_) => None,
        }
    }

    /// [`find_in`](Self::find_in) for any error and its sources.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
        std::iter::successors(Some(error), |e| e.source())
            .take(MAX_CHAIN)
            .find_map(Self::find_in_one)
    }

    fn find_in_one<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
        if let Some(ours) = error.downcast_ref::<Error>() {
            return Some(ours);
        }
        // A middleware error inside another (reqwest-retry's RetryError
        // holds one); its own Display and source() skip the layer we need.
        error
            .downcast_ref::<reqwest_middleware::Error>()
            .and_then(Error::find_in)
    }
}

/// How deep a chain of causes is searched: deep enough for any stack, and
/// bounded for a chain that loops.
const MAX_CHAIN: usize = 32;

/// Whether a store's failure may pass by itself: not when the store says it
/// will not ([`StoreError::permanent`](crate::StoreError::permanent)), nor for
/// I/O errors of a kind that retrying cannot fix, nor for data that does not
/// parse.
fn store_failure_may_pass(source: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    for cause in std::iter::successors(Some(source), |e| e.source()).take(MAX_CHAIN) {
        if let Some(store) = cause.downcast_ref::<crate::StoreError>() {
            return !store.is_permanent();
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return !matches!(
                io.kind(),
                ErrorKind::PermissionDenied
                    | ErrorKind::InvalidInput
                    | ErrorKind::InvalidData
                    | ErrorKind::Unsupported
                    | ErrorKind::NotADirectory
                    | ErrorKind::IsADirectory
                    | ErrorKind::ReadOnlyFilesystem
            );
        }
        if cause.is::<serde_json::Error>() {
            return false;
        }
    }
    true
}

impl Error {
    /// The same error with every occurrence of `secrets` in the server's
    /// words replaced by `[redacted]`: servers do echo a refresh token or a
    /// client secret in `error_description`, and errors end in logs.
    pub(crate) fn redacted(self, secrets: &[&str]) -> Self {
        let clean = |text: String| redact(text, secrets);
        match self {
            Error::InvalidGrant { description } => Error::InvalidGrant {
                description: description.map(clean),
            },
            Error::OAuth {
                status,
                error,
                description,
                uri,
            } => Error::OAuth {
                status,
                error: clean(error),
                description: description.map(clean),
                uri: uri.map(clean),
            },
            other => other,
        }
    }
}

/// Secrets shorter than this are not searched for: replacing every "a" of a
/// message would say nothing, and a secret that short is guessable anyway.
const MIN_REDACTED_LEN: usize = 6;

fn redact(mut text: String, secrets: &[&str]) -> String {
    for secret in secrets.iter().filter(|s| s.len() >= MIN_REDACTED_LEN) {
        if text.contains(secret) {
            text = text.replace(secret, "[redacted]");
        }
    }
    text
}

fn describe(description: &Option<String>) -> String {
    match description {
        Some(d) => format!(": {d}"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
