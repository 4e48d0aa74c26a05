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
/// [`reqwest_middleware::Error::Middleware`]; get ours back with a downcast:
///
/// ```
/// # fn handle(err: reqwest_middleware::Error) {
/// use reqwest_oauth2_refresh::Error;
/// if let reqwest_middleware::Error::Middleware(e) = &err {
///     if let Some(Error::InvalidGrant { .. }) = e.downcast_ref::<Error>() {
///         // The refresh token is dead: send the user through sign-in again.
///     }
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
    #[error("the token store failed to {operation}")]
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
            Error::Store { .. } => true,
            _ => false,
        }
    }
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
mod tests {
    use super::*;

    #[test]
    fn display_carries_the_servers_words() {
        let e = Error::OAuth {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client".into(),
            description: Some("unknown client".into()),
            uri: None,
        };
        assert_eq!(
            e.to_string(),
            "the authorization server answered 401 Unauthorized with error `invalid_client`: unknown client"
        );
        let e = Error::InvalidGrant { description: None };
        assert_eq!(
            e.to_string(),
            "the refresh token was rejected (invalid_grant)"
        );
    }

    #[test]
    fn known_secrets_are_redacted_from_the_servers_words() {
        let e = Error::OAuth {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request".into(),
            description: Some("refresh token rt-secret-1 unknown for s3cr3t-client".into()),
            uri: Some("https://as.example/e?t=rt-secret-1".into()),
        }
        .redacted(&["rt-secret-1", "s3cr3t-client", "x"]);
        let shown = format!("{e} {e:?}");
        assert!(
            !shown.contains("rt-secret-1") && !shown.contains("s3cr3t-client"),
            "{shown}"
        );
        assert!(
            shown.contains("[redacted] unknown for [redacted]"),
            "{shown}"
        );
        let e = Error::InvalidGrant {
            description: Some("grant rt-secret-1 was revoked".into()),
        }
        .redacted(&["rt-secret-1"]);
        assert_eq!(
            e.to_string(),
            "the refresh token was rejected (invalid_grant): grant [redacted] was revoked"
        );
    }

    #[test]
    fn a_5xx_is_transient_whatever_its_body_says() {
        let oauth = |status: u16, error: &str| Error::OAuth {
            status: StatusCode::from_u16(status).unwrap(),
            error: error.into(),
            description: None,
            uri: None,
        };
        assert!(oauth(503, "server_error").is_transient());
        assert!(oauth(429, "slow_down").is_transient());
        assert!(oauth(400, "temporarily_unavailable").is_transient());
        assert!(!oauth(400, "invalid_client").is_transient());
        assert!(!oauth(200, "server_error").is_transient());
    }

    #[test]
    fn errors_are_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static + std::error::Error>() {}
        assert_bounds::<Error>();
    }
}
