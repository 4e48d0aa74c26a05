//! The time source for token expiry.

use std::fmt;
use std::time::SystemTime;

/// Where the manager reads the time for token expiry decisions.
///
/// Token lifetimes are wall-clock facts (the server stamps them), so this is
/// [`SystemTime`]. The default is [`SystemClock`]; tests inject their own to
/// move time forward without sleeping.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::{Duration, SystemTime};
/// use reqwest_oauth2_refresh::Clock;
///
/// #[derive(Debug, Default)]
/// struct TestClock(AtomicU64);
///
/// impl TestClock {
///     fn advance(&self, by: Duration) {
///         self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
///     }
/// }
///
/// impl Clock for TestClock {
///     fn now(&self) -> SystemTime {
///         SystemTime::now() + Duration::from_secs(self.0.load(Ordering::SeqCst))
///     }
/// }
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The real clock: [`SystemTime::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl<C: Clock> Clock for std::sync::Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}
