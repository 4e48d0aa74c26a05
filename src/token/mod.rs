//! The secrets: access and refresh tokens, and the set a token endpoint returns.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

pub(crate) use dpop::BoundKey;

/// An OAuth 2.0 access token.
///
/// Cloning is cheap (the secret is shared, not copied). `Debug` prints
/// `[redacted]`; the value comes out only through [`AccessToken::secret`].
///
/// ```
/// use reqwest_oauth2_refresh::AccessToken;
/// let token = AccessToken::new("s3cr3t");
/// assert_eq!(token.secret(), "s3cr3t");
/// assert_eq!(format!("{token:?}"), "AccessToken([redacted])");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<str>);

/// An OAuth 2.0 refresh token.
///
/// `Debug` prints `[redacted]`; the value comes out only through
/// [`RefreshToken::secret`].
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(Arc<str>);

macro_rules! secret_newtype {
    ($name:ident) => {
        impl $name {
            /// Wraps a secret value.
            pub fn new(secret: impl Into<String>) -> Self {
                Self(Arc::from(secret.into()))
            }

            /// The secret itself. Handle with care: never log it.
            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

/// An OpenID Connect ID token (a JWT about the user), as the token endpoint
/// returned it. `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct IdToken(Arc<str>);

secret_newtype!(AccessToken);
secret_newtype!(RefreshToken);
secret_newtype!(IdToken);

/// What a token endpoint issued: an access token, perhaps a refresh token, and
/// when the access token expires.
///
/// The expiry is kept as the time the tokens were issued (stamped when the
/// response arrived, or when [`TokenSet::with_expires_in`] was called) plus
/// their lifetime, so that the refresh leeway can be bounded by the lifetime
/// even for a token set that was loaded back from a store.
///
/// `TokenSet` is serde (de)serializable for [`TokenStore`](crate::TokenStore)s;
/// the serialized form contains the secrets in clear.
///
/// ```
/// use std::time::Duration;
/// use reqwest_oauth2_refresh::TokenSet;
///
/// let tokens = TokenSet::new("access")
///     .with_refresh_token("refresh")
///     .with_expires_in(Duration::from_secs(3600));
/// assert_eq!(tokens.access_token().secret(), "access");
/// assert_eq!(tokens.refresh_token().map(|t| t.secret()), Some("refresh"));
/// assert!(!format!("{tokens:?}").contains("access\""));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSet {
    access_token: AccessToken,
    refresh_token: Option<RefreshToken>,
    expires_in: Option<Duration>,
    issued_at: SystemTime,
    scope: Option<String>,
    /// What the response said the token is (`Bearer`, as sent); `None` when
    /// it said nothing or the set was not built from a response.
    token_type: Option<String>,
    id_token: Option<IdToken>,
    /// The response's other fields, as the server sent them.
    extra: Map<String, Value>,
    /// The DPoP key the tokens are bound to.
    dpop_key: Option<BoundKey>,
}

impl TokenSet {
    /// A token set with only an access token, issued now, with no known expiry
    /// (it is used until the API answers 401).
    pub fn new(access: impl Into<String>) -> Self {
        Self {
            access_token: AccessToken::new(access),
            refresh_token: None,
            expires_in: None,
            issued_at: SystemTime::now(),
            scope: None,
            token_type: None,
            id_token: None,
            extra: Map::new(),
            dpop_key: None,
        }
    }

    /// A token set from a token endpoint's success response (RFC 6749 §5.1,
    /// as JSON bytes), with the expiry counted from now: for the first tokens
    /// an app gets itself (an authorization code exchange, a device flow).
    /// Keeps `token_type`, `scope`, `id_token` and every other field the
    /// server sent ([`extra`](Self::extra)). An error response (§5.2) is
    /// returned as the error it is.
    ///
    /// ```
    /// use reqwest_oauth2_refresh::TokenSet;
    /// let body = br#"{"access_token":"at","token_type":"Bearer","expires_in":3600,
    ///     "refresh_token":"rt","id_token":"eyJ...","refresh_token_expires_in":86400}"#;
    /// let tokens = TokenSet::from_token_response(body)?;
    /// assert_eq!(tokens.refresh_token().unwrap().secret(), "rt");
    /// assert_eq!(tokens.token_type(), Some("Bearer"));
    /// assert_eq!(tokens.extra()["refresh_token_expires_in"], 86400);
    /// # Ok::<(), reqwest_oauth2_refresh::Error>(())
    /// ```
    pub fn from_token_response(body: &[u8]) -> Result<Self, crate::Error> {
        let value =
            serde_json::from_slice::<Value>(body).map_err(|e| crate::Error::InvalidResponse {
                reason: "the token response is not JSON".into(),
                source: Some(Arc::new(e)),
            })?;
        Self::from_token_response_json(&value)
    }

    /// A token set from an [`oauth2`](https://docs.rs/oauth2) crate token
    /// response (an authorization code exchange done with that crate, say),
    /// read like [`from_token_response`](Self::from_token_response): the
    /// expiry counted from now, the ID token and extra fields kept.
    ///
    /// ```
    /// use oauth2::basic::{BasicTokenResponse, BasicTokenType};
    /// use oauth2::{AccessToken, EmptyExtraTokenFields, RefreshToken};
    /// use reqwest_oauth2_refresh::TokenSet;
    ///
    /// let mut response = BasicTokenResponse::new(
    ///     AccessToken::new("at".into()),
    ///     BasicTokenType::Bearer,
    ///     EmptyExtraTokenFields {},
    /// );
    /// response.set_refresh_token(Some(RefreshToken::new("rt".into())));
    /// response.set_expires_in(Some(&std::time::Duration::from_secs(3600)));
    /// let tokens = TokenSet::from_oauth2(&response)?;
    /// assert_eq!(tokens.refresh_token().unwrap().secret(), "rt");
    /// # Ok::<(), reqwest_oauth2_refresh::Error>(())
    /// ```
    #[cfg(feature = "oauth2")]
    #[cfg_attr(docsrs, doc(cfg(feature = "oauth2")))]
    pub fn from_oauth2(response: &impl oauth2::TokenResponse) -> Result<Self, crate::Error> {
        let value = serde_json::to_value(response).map_err(|e| crate::Error::InvalidResponse {
            reason: "the oauth2 token response does not serialize".into(),
            source: Some(Arc::new(e)),
        })?;
        Self::from_token_response_json(&value)
    }

    /// [`from_token_response`](Self::from_token_response) for a response you
    /// parsed already.
    pub fn from_token_response_json(response: &Value) -> Result<Self, crate::Error> {
        crate::endpoint::response::token_set_from_json(response, SystemTime::now())
    }

    /// Adds the refresh token that renews this set.
    pub fn with_refresh_token(mut self, refresh: impl Into<String>) -> Self {
        self.refresh_token = Some(RefreshToken::new(refresh));
        self
    }

    /// Sets the access token's lifetime, counted from now (like a token
    /// response's `expires_in`).
    pub fn with_expires_in(mut self, expires_in: Duration) -> Self {
        self.expires_in = Some(expires_in);
        self.issued_at = SystemTime::now();
        self
    }

    /// Sets when the tokens were issued, for a set whose `expires_in` was
    /// received earlier (call it after [`TokenSet::with_expires_in`]).
    pub fn with_issued_at(mut self, issued_at: SystemTime) -> Self {
        self.issued_at = issued_at;
        self
    }

    /// Sets the scope the tokens were granted for.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The access token.
    pub fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    /// The refresh token, if the set has one.
    pub fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    /// The access token's lifetime as issued, if known.
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_in
    }

    /// When the tokens were issued.
    pub fn issued_at(&self) -> SystemTime {
        self.issued_at
    }

    /// When the access token expires, if known.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_in
            .and_then(|ttl| self.issued_at.checked_add(ttl))
    }

    /// The granted scope, if the server said.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The `token_type` the token endpoint gave, if the set came from a
    /// response that had one.
    pub fn token_type(&self) -> Option<&str> {
        self.token_type.as_deref()
    }

    /// The OpenID Connect ID token, if the token endpoint returned one (a
    /// refresh that returns none keeps the one before).
    pub fn id_token(&self) -> Option<&IdToken> {
        self.id_token.as_ref()
    }

    /// The token response's fields beyond RFC 6749's and the ID token, as
    /// the server sent them (a provider's `refresh_token_expires_in`, a
    /// user id). May hold what the server considers sensitive: `Debug`
    /// shows only their names.
    pub fn extra(&self) -> &Map<String, Value> {
        &self.extra
    }

    /// Makes the access token count as expired from `now` on.
    pub(crate) fn expire_at(&mut self, now: SystemTime) {
        self.issued_at = now;
        self.expires_in = Some(Duration::ZERO);
    }

    pub(crate) fn set_refresh_token(&mut self, refresh: Option<RefreshToken>) {
        self.refresh_token = refresh;
    }

    pub(crate) fn from_parts(
        access_token: AccessToken,
        refresh_token: Option<RefreshToken>,
        expires_in: Option<Duration>,
        issued_at: SystemTime,
        scope: Option<String>,
    ) -> Self {
        Self {
            access_token,
            refresh_token,
            expires_in,
            issued_at,
            scope,
            token_type: None,
            id_token: None,
            extra: Map::new(),
            dpop_key: None,
        }
    }

    /// What else a token response said.
    pub(crate) fn with_response_fields(
        mut self,
        token_type: Option<String>,
        id_token: Option<IdToken>,
        extra: Map<String, Value>,
    ) -> Self {
        self.token_type = token_type;
        self.id_token = id_token;
        self.extra = extra;
        self
    }

    /// Keeps `previous`'s ID token when this (refreshed) set has none.
    pub(crate) fn keep_id_token_of(&mut self, previous: &TokenSet) {
        if self.id_token.is_none() {
            self.id_token = previous.id_token.clone();
        }
    }
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("expires_in", &self.expires_in)
            .field("issued_at", &self.issued_at)
            .field("scope", &self.scope)
            .field("token_type", &self.token_type)
            .field("id_token", &self.id_token)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .field("dpop_key", &self.dpop_key)
            .finish()
    }
}

mod dpop;
mod stored;

#[cfg(test)]
mod tests;
