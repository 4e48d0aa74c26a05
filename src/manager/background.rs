//! Stale-while-revalidate: one task refreshes while callers go on with the
//! still-valid token.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::TokenManager;
use super::current::Generation;
use super::flight::Trigger;

/// At most one background refresh at a time.
#[derive(Debug, Default)]
pub(crate) struct BackgroundRefresh {
    pending: Arc<AtomicBool>,
}

/// Clears the pending flag when the task ends, however it ends (a panic
/// included): a flag left set would stop background refresh for good.
struct Pending(Arc<AtomicBool>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl BackgroundRefresh {
    /// Starts a refresh of `generation` in a task of its own, unless one is
    /// under way. Without a Tokio runtime there is no task to start: the
    /// caller goes on with the valid token and a later call tries again.
    pub(crate) fn start(&self, manager: &TokenManager, generation: Generation) {
        if self
            .pending
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let pending = Pending(self.pending.clone());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "no Tokio runtime to refresh in the background; the valid token is used"
            );
            return;
        };
        let manager = manager.clone();
        runtime.spawn(async move {
            let _pending = pending;
            if let Err(error) = manager
                .refresh_generation(generation, Trigger::Background)
                .await
            {
                tracing::warn!(
                    error = %error,
                    "background refresh failed; the current token is used while it is valid"
                );
            }
        });
    }
}
