//! Where token sets live between refreshes (and between runs).

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::BoxError;
use crate::token::TokenSet;

/// Loads and saves the current [`TokenSet`], and optionally coordinates
/// refreshes between processes or hosts that share it.
///
/// The manager calls [`TokenStore::save`] after every refresh and waits for
/// it before any request uses the new access token, so that a rotated refresh
/// token is never used before it is durable. It calls [`TokenStore::load`]
/// once, before the first token is needed: a store that already holds tokens
/// wins over the ones given to the builder.
///
/// A store shared by several processes should also implement
/// [`TokenStore::lock`]: the manager then refreshes with the protocol
/// "lock, re-read, refresh only if nobody else has, save, release", so that a
/// refresh token is never spent twice across the fleet.
///
/// Implement it with the re-exported [`async_trait`](crate::async_trait)
/// attribute (no dependency of your own needed). The methods read, desugared:
/// `fn load(&self) -> Pin<Box<dyn Future<Output = Result<Option<TokenSet>, BoxError>> + Send + '_>>`,
/// and so on; with the attribute you write plain `async fn`s, as here:
///
/// ```
/// use reqwest_oauth2_refresh::{BoxError, TokenSet, TokenStore, async_trait};
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

    /// Deletes the stored token set (after [`TokenManager::revoke`](crate::TokenManager::revoke)).
    /// The default refuses: a store that cannot forget must say so rather
    /// than keep revoked secrets silently.
    async fn clear(&self) -> Result<(), BoxError> {
        Err(StoreError::permanent("this token store does not support clearing").into())
    }

    /// Takes the store's refresh lock, shared by every process that uses
    /// this store, waiting at most `wait`. `Ok(None)` (the default) means the
    /// store has no such lock and coordination stays within the process.
    ///
    /// A lock must be released if its holder dies (an OS file lock, a lock
    /// with an expiry).
    async fn lock(&self, wait: Duration) -> Result<Option<Box<dyn StoreLock>>, BoxError> {
        let _ = wait;
        Ok(None)
    }
}

/// A held refresh lock of a [`TokenStore`]: load and save through it while
/// it is held. Dropping it without [`StoreLock::release`] must release it
/// too (perhaps later, when a lock with an expiry expires).
#[async_trait]
pub trait StoreLock: Send + Sync + fmt::Debug {
    /// Re-reads the stored token set under the lock.
    async fn load(&mut self) -> Result<Option<TokenSet>, BoxError>;

    /// Saves under the lock. A lock that can expire must fence: save only if
    /// the stored set is still the one [`StoreLock::load`] read, and answer
    /// [`LockedSave::Superseded`] otherwise.
    async fn save(&mut self, tokens: &TokenSet) -> Result<LockedSave, BoxError>;

    /// Releases the lock.
    async fn release(self: Box<Self>) -> Result<(), BoxError>;
}

/// A store failure that says whether trying again can help, for
/// [`Error::is_transient`](crate::Error::is_transient): return it (boxed,
/// with `?` or `.into()`) from a [`TokenStore`] of your own. Any other error
/// a store returns counts as transient, except I/O errors whose kind says
/// otherwise (permission denied, invalid data, unsupported) and parse errors.
///
/// ```
/// use reqwest_oauth2_refresh::{BoxError, StoreError};
/// fn read_only() -> Result<(), BoxError> {
///     Err(StoreError::permanent("the keychain is read-only for this app").into())
/// }
/// assert!(read_only().is_err());
/// ```
#[derive(Debug)]
pub struct StoreError {
    message: String,
    permanent: bool,
    source: Option<BoxError>,
}

impl StoreError {
    /// A failure that trying again will not fix: a file the store refuses
    /// to use, an operation the store cannot do.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
            source: None,
        }
    }

    /// A failure that may pass (a connection that dropped, a full disk).
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
            source: None,
        }
    }

    /// The underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Whether trying again will not fix it.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// The outcome of [`StoreLock::save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockedSave {
    /// Saved.
    Saved,
    /// Not saved: another holder wrote a newer set after the lock expired.
    Superseded,
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

    async fn clear(&self) -> Result<(), BoxError> {
        *self.lock() = None;
        Ok(())
    }
}

/// Tries `try_once` until it succeeds or `wait` has passed, pausing from
/// `first_pause` up to `max_pause` between tries: how a store without a
/// blocking lock call waits for one without holding a thread. Deadlines are
/// tokio's, so paused test time drives them; `Ok(false)` means the wait ran
/// out.
#[cfg(feature = "file-store")]
pub(crate) async fn poll_lock<F, Fut>(
    wait: Duration,
    first_pause: Duration,
    max_pause: Duration,
    mut try_once: F,
) -> Result<bool, BoxError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, BoxError>>,
{
    let deadline = crate::util::time::deadline_after(wait);
    let mut pause = first_pause;
    loop {
        if try_once().await? {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause).await;
        pause = pause.saturating_mul(2).min(max_pause);
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

    async fn clear(&self) -> Result<(), BoxError> {
        (**self).clear().await
    }

    async fn lock(&self, wait: Duration) -> Result<Option<Box<dyn StoreLock>>, BoxError> {
        (**self).lock(wait).await
    }
}
