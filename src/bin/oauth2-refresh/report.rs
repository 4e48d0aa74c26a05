//! Exit codes, error messages, and keeping secrets out of both.

use std::process::ExitCode;

use reqwest_oauth2_refresh::{Error, TokenSet};

/// The exit codes, as `--help` documents them.
pub mod code {
    pub const OTHER: u8 = 1;
    /// clap's own code for usage errors; ours use it too.
    pub const USAGE: u8 = 2;
    pub const INVALID_GRANT: u8 = 3;
    pub const OAUTH_ERROR: u8 = 4;
    pub const TRANSIENT: u8 = 5;
    pub const LOCAL: u8 = 6;
}

/// The `--help` text on exit codes.
pub const EXIT_CODES: &str = "\
Exit status:
  0  success (check: the refresh token is valid)
  1  any other error (for example, the answer is not a token response)
  2  usage: missing or contradictory arguments
  3  invalid_grant: the refresh token is expired, revoked or already used;
     sign in again
  4  another OAuth error from the authorization server, for example
     invalid_client: check --client-id, the client secret or key, --auth
  5  transient: network error, timeout, HTTP 5xx or 429 (after retries);
     try again later, the token file is unchanged
  6  local problem: the token file is missing, unreadable or readable by
     others (import: it exists, and --force is not given), stdin holds no
     tokens, the client secret is not found, the --private-key file is
     unreadable, unusable or readable by others, or the configuration is
     invalid

Secrets are never taken on the command line: the client secret comes from
--client-secret-env NAME, --client-secret-file PATH or $OAUTH2_CLIENT_SECRET,
the client key from --private-key PATH, and tokens from --token-file (PATH,
or - for stdin) or, for import, stdin.";

/// An OAuth error from the server, as `check` reports it.
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub error: String,
    pub description: Option<String>,
}

/// Why a command failed, and the exit code that says so.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
    pub oauth: Option<OAuthError>,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
            oauth: None,
        }
    }

    /// A local problem (exit 6).
    pub fn local(message: impl Into<String>) -> Self {
        Self::new(code::LOCAL, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The library's error, with `context` (what was being done) in front.
    pub fn from_error(context: &str, error: &Error) -> Self {
        let code = exit_code(error);
        let mut failure = match error {
            Error::InvalidGrant { description } => {
                Self::new(code, format!("{context}: the authorization server rejected the refresh token: invalid_grant{}", describe(description)))
                    .with_hint("the refresh token is expired, revoked or already used: sign in again to get a new one")
            }
            Error::OAuth {
                status,
                error: oauth_error,
                description,
                uri,
            } => {
                let mut message = format!(
                    "{context}: the authorization server answered {status}: {oauth_error}{}",
                    describe(description)
                );
                if let Some(uri) = uri {
                    message.push_str(&format!(" (see {uri})"));
                }
                let failure = Self::new(code, message);
                match oauth_error.as_str() {
                    "invalid_client" | "unauthorized_client" => failure.with_hint(
                        "check --client-id, the client secret or --private-key, and --auth (basic, post, none, private-key-jwt)",
                    ),
                    "invalid_scope" => failure.with_hint("check --scope"),
                    _ => failure,
                }
            }
            Error::NoRefreshToken => Self::new(
                code,
                format!("{context}: the token set has no refresh token"),
            ),
            other => Self::new(code, format!("{context}: {}", chain(other))),
        };
        failure.oauth = match error {
            Error::InvalidGrant { description } => Some(OAuthError {
                error: "invalid_grant".into(),
                description: description.clone(),
            }),
            Error::OAuth {
                error, description, ..
            } if code == code::OAUTH_ERROR => Some(OAuthError {
                error: error.clone(),
                description: description.clone(),
            }),
            _ => None,
        };
        failure
    }

    /// Prints the failure to stderr, without secrets, and gives the exit code.
    pub fn report(&self, secrets: &Secrets) -> ExitCode {
        eprintln!("error: {}", secrets.redact(&self.message));
        if let Some(hint) = &self.hint {
            eprintln!("hint: {}", secrets.redact(hint));
        }
        ExitCode::from(self.code)
    }
}

/// The exit code for a library error.
pub fn exit_code(error: &Error) -> u8 {
    match error {
        Error::InvalidGrant { .. } => code::INVALID_GRANT,
        // A store error is the token file here: a local problem, even though
        // the library counts a store as possibly transient.
        Error::Store { .. } | Error::Config(_) | Error::NoTokens | Error::NoRefreshToken => {
            code::LOCAL
        }
        error if error.is_transient() => code::TRANSIENT,
        Error::OAuth { .. } => code::OAUTH_ERROR,
        _ => code::OTHER,
    }
}

fn describe(description: &Option<String>) -> String {
    match description {
        Some(d) => format!(": {d}"),
        None => String::new(),
    }
}

/// An error and its causes, one after the other.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The secrets this run has seen, to be cut out of anything it prints other
/// than `--print-tokens`: a server could echo one in an error description.
/// Control characters from servers are escaped, too.
#[derive(Default)]
pub struct Secrets {
    values: Vec<String>,
}

impl Secrets {
    pub fn add(&mut self, secret: &str) {
        // Very short values would mangle messages and protect nothing.
        if secret.len() >= 4 && !self.values.iter().any(|s| s == secret) {
            self.values.push(secret.to_owned());
            // Longest first, so that a secret containing another is cut whole.
            self.values.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn add_tokens(&mut self, tokens: &TokenSet) {
        self.add(tokens.access_token().secret());
        if let Some(refresh) = tokens.refresh_token() {
            self.add(refresh.secret());
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.values {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[redacted]");
            }
        }
        text.chars()
            .flat_map(|c| {
                if c.is_control() {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secrets_and_escapes_control_characters() {
        let mut secrets = Secrets::default();
        secrets.add("client-secret");
        secrets.add("client-secret-longer");
        secrets.add("ab");
        assert_eq!(
            secrets.redact("x client-secret-longer y client-secret ab\x1b[31m"),
            "x [redacted] y [redacted] ab\\u{1b}[31m"
        );
    }

    #[test]
    fn exit_codes() {
        use reqwest::StatusCode;
        let oauth = |status, error: &str| Error::OAuth {
            status,
            error: error.into(),
            description: None,
            uri: None,
        };
        assert_eq!(
            exit_code(&Error::InvalidGrant { description: None }),
            code::INVALID_GRANT
        );
        assert_eq!(
            exit_code(&oauth(StatusCode::UNAUTHORIZED, "invalid_client")),
            code::OAUTH_ERROR
        );
        assert_eq!(
            exit_code(&oauth(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable"
            )),
            code::TRANSIENT
        );
        assert_eq!(
            exit_code(&Error::HttpStatus {
                status: StatusCode::TOO_MANY_REQUESTS
            }),
            code::TRANSIENT
        );
        assert_eq!(
            exit_code(&Error::HttpStatus {
                status: StatusCode::NOT_FOUND
            }),
            code::OTHER
        );
        assert_eq!(exit_code(&Error::Config("x".into())), code::LOCAL);
        assert_eq!(exit_code(&Error::NoTokens), code::LOCAL);
    }
}
