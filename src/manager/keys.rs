//! The builder's key settings: `private_key_jwt` client authentication and
//! the JWT-bearer grant (RFC 7523).

use std::sync::Arc;

use super::builder::TokenManagerBuilder;
use crate::endpoint::assertion::{AssertionAudience, JwtBearerGrant};
use crate::jose::Signer;
use crate::token::BoundKey;

/// How the manager gets a new token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GrantKind {
    /// Spend the refresh token (RFC 6749 §6).
    RefreshToken,
    /// Ask for a new token for the client itself (RFC 6749 §4.4).
    ClientCredentials,
    /// Exchange a newly signed assertion (RFC 7523 §2.1).
    JwtBearer,
}

impl GrantKind {
    /// Whether a new token needs no refresh token: the client (or its key)
    /// can always ask for one.
    pub(super) fn needs_no_refresh_token(self) -> bool {
        matches!(self, GrantKind::ClientCredentials | GrantKind::JwtBearer)
    }
}

/// What the builder holds for signed assertions.
#[derive(Default)]
pub(super) struct KeySettings {
    pub(super) signer: Option<Arc<dyn Signer>>,
    pub(super) audience: Option<AssertionAudience>,
    pub(super) issuer: Option<String>,
    /// The server's `token_endpoint_auth_methods_supported`, from discovery.
    pub(super) supported_auth: Option<Vec<String>>,
    pub(super) jwt_bearer: Option<JwtBearerGrant>,
    /// The DPoP key for new token families.
    pub(super) dpop: Option<BoundKey>,
}

impl TokenManagerBuilder {
    /// Authenticates the client with a JWT signed by `signer`
    /// (`private_key_jwt`, RFC 7523 §2.2) instead of a secret: a new
    /// assertion, with a new `jti`, for every token-endpoint and revocation
    /// attempt, retries included. It becomes the client authentication
    /// unless [`client_auth`](Self::client_auth) says otherwise (or a
    /// secret is set too and the discovered server does not list
    /// `private_key_jwt`).
    ///
    /// The assertion's `aud` is the issuer when it is known
    /// ([`issuer`](Self::issuer), discovery), else the endpoint's URL; see
    /// [`client_assertion_audience`](Self::client_assertion_audience).
    ///
    /// ```
    /// # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
    /// use reqwest_oauth2_refresh::{Algorithm, SigningKey, TokenManager};
    /// # let key = SigningKey::generate(Algorithm::Es256)?;
    /// // let key = SigningKey::from_pem_file("client-key.pem")?.with_key_id("key-1");
    /// let manager = TokenManager::builder("https://auth.example.com/token")
    ///     .client_id("my-service")
    ///     .client_signer(key)
    ///     .issuer("https://auth.example.com")
    ///     .client_credentials()
    ///     .build()?;
    /// # let _ = manager; Ok(()) }
    /// # run().unwrap();
    /// ```
    pub fn client_signer(self, signer: impl Signer) -> Self {
        self.client_shared_signer(Arc::new(signer))
    }

    /// As [`client_signer`](Self::client_signer), with a signer that is
    /// shared already.
    pub fn client_shared_signer(mut self, signer: Arc<dyn Signer>) -> Self {
        self.keys.signer = Some(signer);
        self
    }

    /// Who client assertions are addressed to: Microsoft Entra and Okta
    /// want [`AssertionAudience::Endpoint`].
    pub fn client_assertion_audience(mut self, audience: AssertionAudience) -> Self {
        self.keys.audience = Some(audience);
        self
    }

    /// The authorization server's issuer identifier, for client assertions'
    /// `aud`; discovery sets it.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.keys.issuer = Some(issuer.into());
        self
    }

    /// Gets tokens with the JWT-bearer grant (RFC 7523 §2.1) instead of a
    /// refresh token: each "refresh" signs a new assertion and exchanges it,
    /// with the same single flight, proactive refresh and 401 recovery.
    /// Service accounts work this way;
    /// [`providers::google_service_account`](crate::providers::google_service_account)
    /// sets it up for Google.
    pub fn jwt_bearer_grant(mut self, grant: JwtBearerGrant) -> Self {
        self.grant = GrantKind::JwtBearer;
        self.keys.jwt_bearer = Some(grant);
        self
    }

    /// The JWT-bearer grant's `sub`: the user a service account acts for
    /// (Google's domain-wide delegation). Needs
    /// [`jwt_bearer_grant`](Self::jwt_bearer_grant) first.
    pub fn jwt_bearer_subject(mut self, subject: impl Into<String>) -> Self {
        if let Some(grant) = &mut self.keys.jwt_bearer {
            grant.set_subject(subject.into());
        }
        self
    }

    /// Binds tokens to `key` with DPoP (RFC 9449): every token-endpoint
    /// call carries a new proof signed by it (with the server's nonce when
    /// it asks for one), and API requests with a `DPoP` access token carry
    /// `Authorization: DPoP` and a proof. Sets bound to a key of their own
    /// ([`TokenSet::with_dpop_key`](crate::TokenSet::with_dpop_key), or
    /// loaded from a store) keep using theirs; new families (client
    /// credentials, JWT-bearer grants, a set given without a key) are bound
    /// to this one, and every store saves the key with the tokens.
    ///
    /// ```
    /// # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
    /// use reqwest_oauth2_refresh::{DpopKey, TokenManager};
    /// let manager = TokenManager::builder("https://auth.example.com/token")
    ///     .client_id("service")
    ///     .client_secret("s3cret")
    ///     .client_credentials()
    ///     .dpop(DpopKey::generate()?)
    ///     .build()?;
    /// # let _ = manager; Ok(()) }
    /// # run().unwrap();
    /// ```
    #[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
    pub fn dpop(mut self, key: crate::DpopKey) -> Self {
        self.keys.dpop = Some(BoundKey::of(&key));
        self
    }

    /// What discovery learnt: the issuer and the auth methods it lists.
    pub(crate) fn discovered(mut self, issuer: &str, supported: Option<&[String]>) -> Self {
        self.keys.issuer = Some(issuer.to_owned());
        self.keys.supported_auth = supported.map(<[String]>::to_vec);
        self
    }
}
