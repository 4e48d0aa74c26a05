//! One request to the token or revocation endpoint, as data (sans-IO): built
//! afresh for every attempt, so that whatever must be new each time (a
//! signed client assertion, a DPoP proof) can be.

use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};

use crate::token::RefreshToken;

/// What the token endpoint is asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Grant<'a> {
    /// RFC 6749 §6: spend a refresh token.
    Refresh(&'a RefreshToken),
    /// RFC 6749 §4.4: a new token for the client itself.
    ClientCredentials,
    /// RFC 7523 §2.1: a new token for a signed assertion (which
    /// [`TokenEndpoint::prepare`](super::TokenEndpoint::prepare) adds).
    JwtBearer,
}

/// Which kind of token is revoked: RFC 7009 `token_type_hint`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RevokeHint {
    Access,
    Refresh,
}

impl RevokeHint {
    fn as_str(self) -> &'static str {
        match self {
            RevokeHint::Access => "access_token",
            RevokeHint::Refresh => "refresh_token",
        }
    }
}

/// What one call to an endpoint asks; each attempt of it is prepared from
/// this.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call<'a> {
    /// A token request; with `dpop`, each attempt carries a proof.
    Token {
        grant: Grant<'a>,
        dpop: Option<&'a crate::dpop::Prover>,
    },
    Revoke {
        url: &'a Url,
        token: &'a str,
        hint: RevokeHint,
    },
}

/// A form POST: its URL, its encoded form, and headers, and the secrets it
/// carries (so that an answer that echoes one can be redacted).
pub(crate) struct TokenRequest {
    pub(crate) url: Url,
    body: String,
    pub(crate) headers: HeaderMap,
    secrets: Vec<String>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl TokenRequest {
    pub(crate) fn new(url: Url) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        Self {
            url,
            body: String::new(),
            headers,
            secrets: Vec::new(),
        }
    }

    /// Appends a form field whose value is a secret.
    pub(crate) fn secret_field(&mut self, name: &str, value: &str) {
        self.field(name, value);
        self.carries_secret(value);
    }

    /// Notes a secret the request carries elsewhere (a header).
    pub(crate) fn carries_secret(&mut self, value: &str) {
        self.secrets.push(value.to_owned());
    }

    /// Appends a form field (RFC 6749 Appendix B encoding).
    pub(crate) fn field(&mut self, name: &str, value: &str) {
        let mut form = form_urlencoded::Serializer::for_suffix(std::mem::take(&mut self.body), 0);
        form.append_pair(name, value);
        self.body = form.finish();
    }

    /// The grant's own fields.
    pub(crate) fn grant(&mut self, grant: Grant<'_>) {
        match grant {
            Grant::Refresh(refresh_token) => {
                self.field("grant_type", "refresh_token");
                self.secret_field("refresh_token", refresh_token.secret());
            }
            Grant::ClientCredentials => self.field("grant_type", "client_credentials"),
            Grant::JwtBearer => self.field("grant_type", super::assertion::JWT_BEARER_GRANT),
        }
    }

    /// RFC 7009 §2.1's fields.
    pub(crate) fn revocation(&mut self, token: &str, hint: RevokeHint) {
        self.secret_field("token", token);
        self.field("token_type_hint", hint.as_str());
    }

    /// The encoded body.
    #[cfg(test)]
    pub(crate) fn body(&self) -> &str {
        &self.body
    }

    /// The URL, body and headers to send, and the secrets to keep for
    /// redacting the answer.
    pub(crate) fn into_parts(self) -> (Url, String, HeaderMap, Vec<String>) {
        (self.url, self.body, self.headers, self.secrets)
    }
}
