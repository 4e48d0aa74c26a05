//! The stored form of a [`TokenSet`]: plain fields, times in seconds since
//! the Unix epoch; what files and Redis hold.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::dpop::BoundKey;
use super::{AccessToken, IdToken, RefreshToken, TokenSet};

#[derive(Serialize, Deserialize)]
struct StoredTokenSet {
    access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_in: Option<u64>,
    /// The nanoseconds past `expires_in`, for the same reason as
    /// `issued_at_nanos` (a lifetime set with `with_expires_in` may have
    /// them; a server's never does). Absent in files written before it.
    #[serde(default, skip_serializing_if = "is_zero")]
    expires_in_nanos: u32,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    extra: Map<String, Value>,
    /// The private key of a DPoP-bound set (PKCS#8 PEM or a private JWK):
    /// a bound refresh token is useless without it. Absent before 0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dpop_key: Option<String>,
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
            expires_in_nanos: self.expires_in.map_or(0, |d| d.subsec_nanos()),
            issued_at: since_epoch.as_secs(),
            issued_at_nanos: since_epoch.subsec_nanos(),
            scope: self.scope.clone(),
            token_type: self.token_type.clone(),
            id_token: self.id_token.as_ref().map(|t| t.secret().to_owned()),
            extra: self.extra.clone(),
            dpop_key: self.dpop_key.as_ref().map(|k| k.saved().to_owned()),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TokenSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = StoredTokenSet::deserialize(deserializer)?;
        // Stored data may be corrupt or planted: a time past what the
        // platform can represent is an error, never an overflow panic.
        if stored.issued_at_nanos >= 1_000_000_000 || stored.expires_in_nanos >= 1_000_000_000 {
            return Err(serde::de::Error::custom("nanoseconds out of range"));
        }
        let issued_at = UNIX_EPOCH
            .checked_add(Duration::new(stored.issued_at, stored.issued_at_nanos))
            .ok_or_else(|| serde::de::Error::custom("`issued_at` is out of range"))?;
        Ok(Self {
            access_token: AccessToken::new(stored.access_token),
            refresh_token: stored.refresh_token.map(RefreshToken::new),
            expires_in: stored
                .expires_in
                .map(|secs| Duration::new(secs, stored.expires_in_nanos)),
            issued_at,
            scope: stored.scope,
            token_type: stored.token_type,
            id_token: stored.id_token.map(IdToken::new),
            extra: stored.extra,
            dpop_key: stored.dpop_key.map(BoundKey::from_saved),
        })
    }
}

#[cfg(test)]
mod proptests;
