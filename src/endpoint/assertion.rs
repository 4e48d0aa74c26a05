//! Signed assertions for the token endpoint (RFC 7523): the client's
//! `private_key_jwt` authentication (§2.2) and the JWT-bearer grant (§2.1).
//! Each attempt gets a new one, with a new `jti`: servers remember `jti`s to
//! refuse replays, so a retry with the same assertion would be refused.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::jose::{self, Signer, b64};
use crate::util::jitter::random_u64;

/// RFC 7521 §4.2's `client_assertion_type` for a JWT.
pub(crate) const CLIENT_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// RFC 7523 §2.1's `grant_type`.
pub(crate) const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long a client assertion lives: long enough for clock skew and a slow
/// network, short enough that a leaked one is soon useless.
const CLIENT_ASSERTION_LIFETIME: Duration = Duration::from_secs(60);
/// RFC 7523 lets the server cap a grant assertion's life; Google's cap.
pub(crate) const MAX_GRANT_ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

/// Who a `private_key_jwt` client assertion is addressed to (its `aud`).
///
/// RFC 7523 §3 allows the token endpoint's URL; the 2025 update of RFC 7523
/// (after the audience-injection findings against several servers) wants
/// the issuer alone. Servers differ: Microsoft Entra and Okta want the URL
/// of the endpoint called, oidc-provider and Keycloak take either.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AssertionAudience {
    /// The authorization server's issuer identifier: the default when the
    /// issuer is known (discovery, or
    /// [`issuer`](crate::TokenManagerBuilder::issuer)).
    Issuer,
    /// The URL of the endpoint the request goes to: the token endpoint, or
    /// the revocation endpoint for a revocation. The default when the
    /// issuer is not known.
    Endpoint,
    /// This exact value.
    Custom(String),
}

/// A unique, unguessable `jti`: 128 bits.
fn jti() -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&random_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&random_u64().to_le_bytes());
    b64(bytes)
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A `private_key_jwt` assertion: `iss` = `sub` = the client id (RFC 7523
/// §3, OIDC Core §9).
pub(crate) async fn client_assertion(
    signer: &dyn Signer,
    client_id: &str,
    audience: &str,
    now: SystemTime,
) -> Result<String, Error> {
    let iat = unix(now);
    let claims = json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": jti(),
        "iat": iat,
        "exp": iat + CLIENT_ASSERTION_LIFETIME.as_secs(),
    });
    jose::compact(signer, Some("JWT"), Map::new(), &claims).await
}

/// The JWT-bearer grant (RFC 7523 §2.1): "refreshing" signs a new assertion
/// and exchanges it for an access token, the way service accounts work.
///
/// ```
/// # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
/// use reqwest_oauth2_refresh::{Algorithm, JwtBearerGrant, SigningKey, TokenManager};
/// # let key = SigningKey::generate(Algorithm::Es256)?;
/// let grant = JwtBearerGrant::new("robot@example.com", key)
///     .subject("alice@example.com")
///     .scope_claim("calendar.read");
/// let manager = TokenManager::builder("https://auth.example.com/token")
///     .jwt_bearer_grant(grant)
///     .build()?;
/// # let _ = manager; Ok(()) }
/// # run().unwrap();
/// ```
#[derive(Clone)]
pub struct JwtBearerGrant {
    issuer: String,
    signer: Arc<dyn Signer>,
    subject: Option<String>,
    audience: Option<String>,
    scope_claim: Option<String>,
    lifetime: Duration,
    claims: Map<String, Value>,
}

impl fmt::Debug for JwtBearerGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtBearerGrant")
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("audience", &self.audience)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl JwtBearerGrant {
    /// Assertions issued by `issuer` (a service account's email, a client
    /// id), signed by `signer`.
    pub fn new(issuer: impl Into<String>, signer: impl Signer) -> Self {
        Self::with_shared_signer(issuer, Arc::new(signer))
    }

    /// As [`new`](Self::new), with a signer that is shared already.
    pub fn with_shared_signer(issuer: impl Into<String>, signer: Arc<dyn Signer>) -> Self {
        Self {
            issuer: issuer.into(),
            signer,
            subject: None,
            audience: None,
            scope_claim: None,
            lifetime: MAX_GRANT_ASSERTION_LIFETIME,
            claims: Map::new(),
        }
    }

    /// The `sub` claim: the user to act for (Google's domain-wide
    /// delegation). Without it the issuer acts for itself.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The `aud` claim; the token endpoint's URL by default (RFC 7523 §3).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// A `scope` claim in the assertion itself (Google reads the scopes
    /// from there). [`scope`](crate::TokenManagerBuilder::scope) sends the
    /// RFC 6749 form parameter instead.
    pub fn scope_claim(mut self, scope: impl Into<String>) -> Self {
        self.scope_claim = Some(scope.into());
        self
    }

    /// How long each assertion is valid (`exp` - `iat`): at most an hour,
    /// the default.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Another claim, for servers that want one (a `target_audience`, say).
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.lifetime.is_zero() || self.lifetime > MAX_GRANT_ASSERTION_LIFETIME {
            return Err(Error::Config(
                "a JWT-bearer assertion must live between 1 s and 1 hour".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn set_subject(&mut self, subject: String) {
        self.subject = Some(subject);
    }

    /// A new assertion for the token endpoint at `token_url`.
    pub(crate) async fn assertion(
        &self,
        token_url: &str,
        now: SystemTime,
    ) -> Result<String, Error> {
        let iat = unix(now);
        let mut claims = self.claims.clone();
        claims.insert("iss".into(), self.issuer.clone().into());
        let audience = self.audience.as_deref().unwrap_or(token_url);
        claims.insert("aud".into(), audience.into());
        if let Some(subject) = &self.subject {
            claims.insert("sub".into(), subject.clone().into());
        }
        if let Some(scope) = &self.scope_claim {
            claims.insert("scope".into(), scope.clone().into());
        }
        claims.insert("jti".into(), jti().into());
        claims.insert("iat".into(), iat.into());
        claims.insert("exp".into(), (iat + self.lifetime.as_secs()).into());
        jose::compact(
            self.signer.as_ref(),
            Some("JWT"),
            Map::new(),
            &Value::Object(claims),
        )
        .await
    }
}
