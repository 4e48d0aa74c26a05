//! The library's `TokenManager`, configured from the common options: the
//! client secret or key, the endpoints (by discovery with --issuer), and the
//! token request's client authentication, scope and extra parameters.

use reqwest_oauth2_refresh::{
    ClientAuth, Error, ServerMetadata, SigningKey, TokenManager, TokenManagerBuilder,
};

use crate::args::{AuthArg, Common};
use crate::input;
use crate::keys;
use crate::report::{self, Failure, Secrets, code};

/// The environment variable read for the client secret when no
/// `--client-secret-*` option is given.
const DEFAULT_SECRET_ENV: &str = "OAUTH2_CLIENT_SECRET";

/// The client secret: from a file, a named environment variable, or
/// `OAUTH2_CLIENT_SECRET`.
fn client_secret(common: &Common) -> Result<Option<String>, Failure> {
    if let Some(path) = &common.client_secret_file {
        return input::read_secret_file(path)
            .map(Some)
            .map_err(Failure::local);
    }
    if let Some(name) = &common.client_secret_env {
        return match std::env::var(name) {
            Ok(secret) if !secret.is_empty() => Ok(Some(secret)),
            Ok(_) => Err(Failure::local(format!(
                "the environment variable {name} (--client-secret-env) is empty"
            ))),
            Err(_) => Err(Failure::local(format!(
                "the environment variable {name} (--client-secret-env) is not set"
            ))),
        };
    }
    // Methods that send no secret do not pick up one from the environment.
    if matches!(common.auth, Some(AuthArg::None | AuthArg::PrivateKeyJwt)) {
        return Ok(None);
    }
    match std::env::var(DEFAULT_SECRET_ENV) {
        Ok(secret) if !secret.is_empty() => Ok(Some(secret)),
        _ => Ok(None),
    }
}

/// What the builder is for: which endpoint it must have.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Refresh,
    Revoke,
}

/// A manager builder from the common options (discovery first, with
/// --issuer). The secret is added to `secrets`.
pub async fn builder(
    common: &Common,
    purpose: Purpose,
    secrets: &mut Secrets,
) -> Result<TokenManagerBuilder, Failure> {
    // The secret and the key are checked first: a missing or unreadable
    // one is refused before any request, discovery included.
    let secret = checked_secret(common, secrets)?;
    let key = keys::signing_key(&common.key)?;
    let builder = endpoint_builder(common, purpose).await?;
    Ok(with_key(with_options(builder, common, secret), common, key))
}

/// The client secret, added to `secrets`, and refused where it does not go
/// with the options: --auth basic/post without one, or one without
/// --client-id.
fn checked_secret(common: &Common, secrets: &mut Secrets) -> Result<Option<String>, Failure> {
    let secret = client_secret(common)?;
    if let Some(secret) = &secret {
        secrets.add(secret);
    }
    let needs_secret = matches!(common.auth, Some(AuthArg::Basic | AuthArg::Post));
    if needs_secret && secret.is_none() {
        return Err(Failure::local(format!(
            "--auth basic/post needs a client secret: --client-secret-env NAME, \
             --client-secret-file PATH, or {DEFAULT_SECRET_ENV}"
        )));
    }
    if secret.is_some() && common.client_id.is_none() {
        let from = match (&common.client_secret_file, &common.client_secret_env) {
            (Some(_), _) => "--client-secret-file".to_owned(),
            (None, Some(_)) => "--client-secret-env".to_owned(),
            (None, None) => format!("${DEFAULT_SECRET_ENV}"),
        };
        return Err(Failure::local(format!(
            "a client secret is given ({from}) but no --client-id"
        )));
    }
    Ok(secret)
}

/// A builder for the token endpoint: --token-url, or the issuer's metadata.
async fn endpoint_builder(
    common: &Common,
    purpose: Purpose,
) -> Result<TokenManagerBuilder, Failure> {
    match (&common.token_url, &common.issuer) {
        (Some(url), _) => Ok(TokenManager::builder(url)),
        (None, Some(issuer)) => {
            let metadata = fetch_metadata(issuer).await?;
            if purpose == Purpose::Revoke
                && metadata.revocation_endpoint.is_none()
                && common.revocation_url.is_none()
            {
                return Err(Failure::local(format!(
                    "the metadata of {issuer} has no revocation_endpoint: give --revocation-url URL"
                )));
            }
            Ok(TokenManager::from_metadata(&metadata))
        }
        (None, None) => match (&common.revocation_url, purpose) {
            // Revocation only: the builder wants a token endpoint, which is
            // never called; the revocation endpoint stands in for it.
            (Some(url), Purpose::Revoke) => Ok(TokenManager::builder(url)),
            _ => Err(Failure::new(code::USAGE, "no --token-url or --issuer")),
        },
    }
}

/// The client and token request options, on top of the endpoint.
fn with_options(
    mut builder: TokenManagerBuilder,
    common: &Common,
    secret: Option<String>,
) -> TokenManagerBuilder {
    if let Some(id) = &common.client_id {
        builder = builder.client_id(id);
    }
    if let Some(secret) = secret {
        builder = builder.client_secret(secret);
    }
    if let Some(auth) = common.auth {
        builder = builder.client_auth(match auth {
            AuthArg::Basic => ClientAuth::SecretBasic,
            AuthArg::Post => ClientAuth::SecretPost,
            AuthArg::None => ClientAuth::None,
            AuthArg::PrivateKeyJwt => ClientAuth::PrivateKeyJwt,
        });
    }
    if let Some(scope) = &common.scope {
        builder = builder.scope(scope);
    }
    for (name, value) in &common.params {
        builder = builder.extra_param(name, value);
    }
    if let Some(url) = &common.revocation_url {
        builder = builder.revocation_url(url);
    }
    builder
}

/// The client key for `private_key_jwt`; without --auth, the library picks
/// it (or, with --issuer and a secret too, what the server lists).
fn with_key(
    mut builder: TokenManagerBuilder,
    common: &Common,
    key: Option<SigningKey>,
) -> TokenManagerBuilder {
    if let Some(key) = key {
        builder = builder.client_signer(key);
    }
    if let Some(audience) = &common.key.assertion_audience {
        builder = builder.client_assertion_audience(audience.clone());
    }
    builder
}

pub fn build(builder: TokenManagerBuilder) -> Result<TokenManager, Failure> {
    builder.build().map_err(|e| match e {
        Error::Config(message) => Failure::local(format!("invalid configuration: {message}")),
        e => Failure::from_error("invalid configuration", &e),
    })
}

/// The issuer's metadata, fetched without following redirects.
pub async fn fetch_metadata(issuer: &str) -> Result<ServerMetadata, Failure> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Failure::new(code::OTHER, report::chain(&e)))?;
    ServerMetadata::fetch(&http, issuer)
        .await
        .map_err(|e| Failure::from_error(&format!("discovery of {issuer} failed"), &e))
}
