//! The secrets: access and refresh tokens, and the set a token endpoint returns.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

secret_newtype!(AccessToken);
secret_newtype!(RefreshToken);

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
        }
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
            .finish()
    }
}

/// The stored form: plain fields, times in seconds since the Unix epoch.
#[derive(Serialize, Deserialize)]
struct StoredTokenSet {
    access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_in: Option<u64>,
    /// Unix seconds.
    issued_at: u64,
    /// The nanoseconds past `issued_at`: every process that shares the set
    /// must agree on its expiry to the instant, or one refreshes a set that
    /// another has just adopted. Absent in files written by 0.1 (readers
    /// that do not know it ignore it).
    #[serde(default, skip_serializing_if = "is_zero")]
    issued_at_nanos: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

fn is_zero(nanos: &u32) -> bool {
    *nanos == 0
}

impl Serialize for TokenSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let since_epoch = self
            .issued_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        StoredTokenSet {
            access_token: self.access_token.secret().to_owned(),
            refresh_token: self.refresh_token.as_ref().map(|t| t.secret().to_owned()),
            expires_in: self.expires_in.map(|d| d.as_secs()),
            issued_at: since_epoch.as_secs(),
            issued_at_nanos: since_epoch.subsec_nanos(),
            scope: self.scope.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TokenSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = StoredTokenSet::deserialize(deserializer)?;
        // Stored data may be corrupt or planted: a time past what the
        // platform can represent is an error, never an overflow panic.
        if stored.issued_at_nanos >= 1_000_000_000 {
            return Err(serde::de::Error::custom(
                "`issued_at_nanos` is out of range",
            ));
        }
        let issued_at = UNIX_EPOCH
            .checked_add(Duration::new(stored.issued_at, stored.issued_at_nanos))
            .ok_or_else(|| serde::de::Error::custom("`issued_at` is out of range"))?;
        Ok(Self {
            access_token: AccessToken::new(stored.access_token),
            refresh_token: stored.refresh_token.map(RefreshToken::new),
            expires_in: stored.expires_in.map(Duration::from_secs),
            issued_at,
            scope: stored.scope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let tokens = TokenSet::new("the-access-secret")
            .with_refresh_token("the-refresh-secret")
            .with_expires_in(Duration::from_secs(60));
        let printed = format!("{tokens:?} {tokens:#?}");
        assert!(!printed.contains("the-access-secret"), "{printed}");
        assert!(!printed.contains("the-refresh-secret"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn serde_round_trip_keeps_lifetime_and_issue_time() {
        let issued = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let tokens = TokenSet::new("a")
            .with_refresh_token("r")
            .with_expires_in(Duration::from_secs(300))
            .with_issued_at(issued)
            .with_scope("read write");
        let json = serde_json::to_string(&tokens).unwrap();
        let back: TokenSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, tokens);
        assert_eq!(
            back.expires_at(),
            Some(issued + Duration::from_secs(300)),
            "{json}"
        );
    }

    #[test]
    fn corrupt_times_are_errors_not_panics() {
        let huge = format!(r#"{{"access_token":"a","issued_at":{}}}"#, u64::MAX);
        let err = serde_json::from_str::<TokenSet>(&huge).unwrap_err();
        assert!(err.to_string().contains("issued_at"), "{err}");
        let lifetime = format!(
            r#"{{"access_token":"a","issued_at":5,"expires_in":{}}}"#,
            u64::MAX
        );
        let tokens: TokenSet = serde_json::from_str(&lifetime).unwrap();
        assert_eq!(tokens.expires_at(), None);
        for junk in [
            r#"{"access_token":"a","issued_at":-1}"#,
            r#"{"access_token":7,"issued_at":1}"#,
            r#"{"issued_at":1}"#,
            r#"{"access_token":"a","issued_at":1.5e300}"#,
        ] {
            assert!(serde_json::from_str::<TokenSet>(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn the_issue_time_survives_to_the_nanosecond_and_old_files_still_load() {
        let issued = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let tokens = TokenSet::new("a")
            .with_expires_in(Duration::from_secs(4))
            .with_issued_at(issued);
        let json = serde_json::to_string(&tokens).unwrap();
        let back: TokenSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back.issued_at(), issued, "{json}");
        assert_eq!(back.expires_at(), tokens.expires_at());
        // A file written by 0.1: whole seconds only.
        let old: TokenSet =
            serde_json::from_str(r#"{"access_token":"a","expires_in":4,"issued_at":1700000000}"#)
                .unwrap();
        assert_eq!(
            old.issued_at(),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        let bad = r#"{"access_token":"a","issued_at":1,"issued_at_nanos":1000000000}"#;
        assert!(serde_json::from_str::<TokenSet>(bad).is_err());
    }

    #[test]
    fn deserializes_minimal_form() {
        let back: TokenSet = serde_json::from_str(r#"{"access_token":"a","issued_at":5}"#).unwrap();
        assert_eq!(back.access_token().secret(), "a");
        assert!(back.refresh_token().is_none());
        assert!(back.expires_at().is_none());
    }
}
