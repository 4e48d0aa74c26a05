//! What the server counted and logged (`GET /test/stats`, `GET
//! /test/requests`), as the tests compare it.

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // every field shows in assertion messages
pub struct Stats {
    pub refresh_calls: u64,
    pub refresh_success: u64,
    pub refresh_errors: HashMap<String, u64>,
    pub refresh_error_descriptions: Vec<String>,
    pub code_exchanges: u64,
    /// Successful client-credentials grants (counted under the tag).
    pub cc_grants: u64,
    pub cc_errors: HashMap<String, u64>,
    /// The `scope` of each client-credentials token response.
    pub cc_scopes: Vec<Option<String>>,
    pub api_ok: u64,
    pub api_unauthorized: u64,
    /// `/api/service`: a valid token for another audience or scope.
    pub api_forbidden: u64,
    pub clients: Vec<String>,
    /// How the client authenticated on each refresh and client-credentials
    /// call, as the server saw it (oidc-provider accepts Basic and the body
    /// alike, so only this shows what the crate sent).
    pub token_auth: Vec<String>,
    pub revocations: Vec<Revocation>,
}

/// One call to a revocation endpoint with one of an account's tokens.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct Revocation {
    pub hint: Option<String>,
    pub client: Option<String>,
    pub auth: String,
    /// The kind of token the server found (`RefreshToken`, `AccessToken`,
    /// `ClientCredentials`), or `None` for a token it did not know.
    pub found: Option<String>,
    pub status: u16,
}

impl Revocation {
    pub fn new(hint: &str, client: &str, auth: &str, found: Option<&str>) -> Self {
        Self {
            hint: Some(hint.to_owned()),
            client: Some(client.to_owned()),
            auth: auth.to_owned(),
            found: found.map(str::to_owned),
            status: 200,
        }
    }
}

/// One request that carried the tag header, as the server logged it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub status: Option<u16>,
}

impl Logged {
    pub fn new(method: &str, path: &str, status: u16) -> Self {
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            status: Some(status),
        }
    }
}

impl Stats {
    pub fn errors(&self, code: &str) -> u64 {
        self.refresh_errors.get(code).copied().unwrap_or(0)
    }
}
