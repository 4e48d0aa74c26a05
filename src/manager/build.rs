//! Assembling a [`TokenManager`] from a builder's settings: every check
//! happens here, once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::background::BackgroundRefresh;
use super::budgets::Budgets;
use super::builder::TokenManagerBuilder;
use super::{GrantKind, Inner, Parts, RefreshMode, TokenManager};
use crate::endpoint::client_auth::{ClientCredentials, ClientSettings};
use crate::endpoint::response::is_header_safe;
use crate::endpoint::retry::RetryPolicy;
use crate::endpoint::{EndpointConfig, TokenEndpoint};
use crate::error::Error;
use crate::origin::parse_secure_url;
use crate::store::MemoryStore;
use crate::util::http::no_redirect_client;

impl TokenManagerBuilder {
    /// Checks the configuration and builds the manager.
    pub fn build(self) -> Result<TokenManager, Error> {
        let url = parse_secure_url("token URL", &self.token_url)?;
        let revocation_url = self
            .revocation_url
            .as_deref()
            .map(|url| parse_secure_url("revocation URL", url))
            .transpose()?;
        self.check_grant()?;
        let credentials = ClientCredentials::resolve(ClientSettings {
            id: self.client_id,
            secret: self.client_secret,
            explicit: self.client_auth,
            default_with_secret: self.default_secret_auth,
            signer: self.keys.signer,
            audience: self.keys.audience,
            issuer: self.keys.issuer,
            supported: self.keys.supported_auth,
        })?;
        check_timeouts(&self.retry, self.store_timeout)?;
        if let Some(tokens) = &self.tokens
            && !is_header_safe(tokens.access_token().secret())
        {
            return Err(Error::Config(
                "the access token cannot be sent in an HTTP header".into(),
            ));
        }
        let http = match self.http_client {
            Some(client) => client,
            None => no_redirect_client()?,
        };
        let budgets = Budgets::new(self.retry.budget, self.store_timeout);
        let endpoint = TokenEndpoint::new(EndpointConfig {
            url,
            http,
            credentials,
            scope: self.scope,
            extra_params: self.extra_params,
            retry: self.retry,
            max_response_bytes: self.max_response_bytes,
            policy: self.policy,
            jwt_bearer: self.keys.jwt_bearer,
            dpop: self.keys.dpop,
        });
        Ok(TokenManager::from_inner(Inner::new(Parts {
            endpoint,
            store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
            seed: self.tokens,
            grant: self.grant,
            revocation_url,
            events: self.events,
            clock: self.clock,
            leeway: self.leeway,
            background: (self.refresh_mode == RefreshMode::StaleWhileRevalidate)
                .then(|| BackgroundRefresh::new(budgets.flight_wait)),
            failure_cooldown: self.failure_cooldown,
            rejected_token_min_age: self.rejected_token_min_age,
            budgets,
        })))
    }
}

impl TokenManagerBuilder {
    /// A grant without a refresh token needs a way to ask for one.
    fn check_grant(&self) -> Result<(), Error> {
        if self.grant == GrantKind::ClientCredentials
            && self.client_secret.is_none()
            && self.keys.signer.is_none()
        {
            return Err(Error::Config(
                "the client credentials grant needs a client_secret or a client_signer".into(),
            ));
        }
        if let Some(grant) = &self.keys.jwt_bearer {
            grant.check()?;
        }
        Ok(())
    }
}

/// Zero would fail every call; anything larger works (sums saturate).
fn check_timeouts(retry: &RetryPolicy, store_timeout: Duration) -> Result<(), Error> {
    if retry.budget.is_zero() || retry.attempt_timeout.is_zero() || store_timeout.is_zero() {
        return Err(Error::Config("timeouts must be greater than zero".into()));
    }
    Ok(())
}

impl fmt::Debug for TokenManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManagerBuilder")
            .field("token_url", &crate::origin::redacted_url(&self.token_url))
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("client_auth", &self.client_auth)
            .field("tokens", &self.tokens)
            .field("leeway", &self.leeway)
            .field("refresh_mode", &self.refresh_mode)
            .finish_non_exhaustive()
    }
}
