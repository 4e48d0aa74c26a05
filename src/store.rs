//! Where token sets live between refreshes (and between runs).

use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::BoxError;
use crate::token::TokenSet;

/// Loads and saves the current [`TokenSet`].
///
/// The manager calls [`TokenStore::save`] after every refresh and waits for
/// it before any request uses the new access token, so that a rotated refresh
/// token is never used before it is durable. It calls [`TokenStore::load`]
/// once, before the first token is needed: a store that already holds tokens
/// wins over the ones given to the builder.
///
/// Implementations must be cheap to call concurrently; the manager never
/// calls `save` for the same manager twice at once.
///
/// ```
/// use async_trait::async_trait;
/// use reqwest_oauth2_refresh::{BoxError, TokenSet, TokenStore};
///
/// #[derive(Debug)]
/// struct Keychain;
///
/// #[async_trait]
/// impl TokenStore for Keychain {
///     async fn load(&self) -> Result<Option<TokenSet>, BoxError> {
///         Ok(None) // read from the OS keychain here
///     }
///     async fn save(&self, tokens: &TokenSet) -> Result<(), BoxError> {
///         let _json = serde_json::to_string(tokens)?; // and write it
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait TokenStore: Send + Sync + fmt::Debug + 'static {
    /// The stored token set, or `None` when the store is empty.
    async fn load(&self) -> Result<Option<TokenSet>, BoxError>;

    /// Replaces the stored token set. Return only once it is durable.
    async fn save(&self, tokens: &TokenSet) -> Result<(), BoxError>;
}

/// The default store: keeps the token set in memory, for one process.
#[derive(Default)]
pub struct MemoryStore {
    tokens: Mutex<Option<TokenSet>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that already holds `tokens`.
    pub fn with_tokens(tokens: TokenSet) -> Self {
        Self {
            tokens: Mutex::new(Some(tokens)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<TokenSet>> {
        // The critical sections cannot panic, but a poisoned lock must not
        // take the tokens down with it.
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("tokens", &*self.lock())
            .finish()
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn load(&self) -> Result<Option<TokenSet>, BoxError> {
        Ok(self.lock().clone())
    }

    async fn save(&self, tokens: &TokenSet) -> Result<(), BoxError> {
        *self.lock() = Some(tokens.clone());
        Ok(())
    }
}

/// A shared store: keep a handle to inspect or reuse it.
#[async_trait]
impl<S: TokenStore> TokenStore for std::sync::Arc<S> {
    async fn load(&self) -> Result<Option<TokenSet>, BoxError> {
        (**self).load().await
    }

    async fn save(&self, tokens: &TokenSet) -> Result<(), BoxError> {
        (**self).save(tokens).await
    }
}
