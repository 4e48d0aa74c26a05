//! Google service accounts: the JWT-bearer grant with the key file Google
//! issues.

use std::path::Path;

use serde::Deserialize;

use crate::endpoint::assertion::JwtBearerGrant;
use crate::error::Error;
use crate::jose::{SigningKey, read_private_file};
use crate::manager::{TokenManager, TokenManagerBuilder};

/// The members of a service-account key file that matter here. The
/// private key is never printed: `Debug` is not derived.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: String,
    private_key_id: Option<String>,
    private_key: String,
    token_uri: Option<String>,
}

const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// A builder for a Google service account, from the text of its JSON key
/// file (`"type": "service_account"`): the JWT-bearer grant (RFC 7523 §2.1)
/// with assertions signed RS256 by the file's key, `kid` = its
/// `private_key_id`, `iss` = its `client_email`, `aud` = its `token_uri`,
/// and `scopes` in the assertion's `scope` claim, as Google documents. For
/// domain-wide delegation add
/// [`jwt_bearer_subject`](TokenManagerBuilder::jwt_bearer_subject).
///
/// ```no_run
/// # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
/// use reqwest_oauth2_refresh::providers;
/// let manager = providers::google_service_account_file(
///     "service-account.json",
///     &["https://www.googleapis.com/auth/cloud-platform"],
/// )?
/// .build()?;
/// # let _ = manager; Ok(()) }
/// ```
pub fn google_service_account(json: &str, scopes: &[&str]) -> Result<TokenManagerBuilder, Error> {
    let file: KeyFile = serde_json::from_str(json).map_err(|e| {
        // serde_json's message names a line and column, never the values.
        Error::Config(format!("not a service-account key file: {e}"))
    })?;
    if file.kind != "service_account" {
        return Err(Error::Config(format!(
            "the key file's type is {:?}, not \"service_account\"",
            file.kind
        )));
    }
    let mut key = SigningKey::from_pem(&file.private_key)?;
    if let Some(id) = file.private_key_id {
        key = key.with_key_id(id);
    }
    let token_url = file.token_uri.as_deref().unwrap_or(GOOGLE_TOKEN_URL);
    let mut grant = JwtBearerGrant::new(file.client_email, key).audience(token_url);
    if !scopes.is_empty() {
        grant = grant.scope_claim(scopes.join(" "));
    }
    Ok(super::rules::google(TokenManager::builder(token_url)).jwt_bearer_grant(grant))
}

/// [`google_service_account`] from the key file at `path`, which only its
/// owner may read.
pub fn google_service_account_file(
    path: impl AsRef<Path>,
    scopes: &[&str],
) -> Result<TokenManagerBuilder, Error> {
    google_service_account(&read_private_file(path.as_ref())?, scopes)
}
