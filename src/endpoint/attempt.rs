//! One attempt's outcome, as the call loop and telemetry see it.

use std::sync::Arc;

use super::request::{Call, Grant};
use super::response::{AttemptError, Failed};
use crate::error::Error;

impl AttemptError {
    /// A failure that ends the call (not a transient one).
    pub(super) fn into_failed(self) -> Failed {
        match self {
            AttemptError::Transient { error, .. } | AttemptError::Permanent(error) => error.into(),
            AttemptError::Unusable {
                error,
                refresh_token,
            } => Failed {
                error,
                rotated: Some(refresh_token),
            },
        }
    }

    /// The `outcome` label of an attempt that ended in `result`.
    pub(super) fn outcome<T>(result: &Result<T, AttemptError>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(AttemptError::Transient { .. }) => "transient",
            Err(_) => "error",
        }
    }

    pub(super) fn redacted(self, secrets: &[&str]) -> Self {
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
pub(super) fn call_label(call: Call<'_>) -> &'static str {
    match call {
        Call::Token {
            grant: Grant::ClientCredentials,
            ..
        } => "client_credentials",
        Call::Token {
            grant: Grant::JwtBearer,
            ..
        } => "jwt_bearer",
        Call::Token { .. } => "refresh_token",
        Call::Revoke { .. } => "revoke",
    }
}

pub(super) fn transient_transport(error: reqwest::Error) -> AttemptError {
    AttemptError::Transient {
        error: Error::Transport(Arc::new(error.without_url())),
        retry_after: None,
    }
}
