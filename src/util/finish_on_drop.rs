//! A future that runs in its caller's task, and finishes in a task of its
//! own if the caller gives up: a refresh that has spent its refresh token
//! must get to save and publish the new one.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::Error;

/// Polls `future` in the caller's task (so that the token request goes out
/// at once, not behind every other task of a busy runtime). Dropped before
/// it is done, it hands the future to the runtime to finish. A panic inside
/// the future ends it (dropping its state, which wakes anyone waiting on
/// it) and comes out as [`Error::Aborted`], never as a panic of the caller.
pub(crate) struct FinishOnDrop<T: Send + 'static> {
    future: Option<BoxedRefresh<T>>,
}

type BoxedRefresh<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send>>;

impl<T: Send + 'static> FinishOnDrop<T> {
    pub(crate) fn new(future: impl Future<Output = Result<T, Error>> + Send + 'static) -> Self {
        Self {
            future: Some(Box::pin(future)),
        }
    }
}

impl<T: Send + 'static> Future for FinishOnDrop<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(future) = this.future.as_mut() else {
            return Poll::Ready(Err(Error::Aborted("polled after it finished".into())));
        };
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)));
        let output = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => output,
            Err(_) => {
                tracing::error!("a token refresh panicked; waiting callers get an error");
                Err(Error::Aborted("the refresh panicked".into()))
            }
        };
        this.future = None;
        Poll::Ready(output)
    }
}

impl<T: Send + 'static> Drop for FinishOnDrop<T> {
    fn drop(&mut self) {
        let Some(future) = self.future.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = (FinishOnDrop {
                        future: Some(future),
                    })
                    .await
                    {
                        tracing::debug!(error = %error, "a refresh its caller gave up on failed");
                    }
                });
            }
            Err(_) => tracing::error!(
                "a token refresh was abandoned with no Tokio runtime to finish it; \
                 a rotated refresh token may be lost"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::sync::oneshot;

    use super::*;

    #[tokio::test]
    async fn a_dropped_caller_leaves_the_future_to_finish() {
        let (release, released) = oneshot::channel::<()>();
        let (finished, done) = oneshot::channel::<()>();
        let mut task = FinishOnDrop::new(async move {
            let _ = released.await;
            let _ = finished.send(());
            Ok(())
        });
        // Poll once, so that it is mid-way, then give up on it.
        let waker = futures_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut task).poll(&mut cx).is_pending());
        drop(task);
        release.send(()).unwrap();
        done.await
            .expect("the future finished in a task of its own");
    }

    #[tokio::test]
    async fn a_panic_becomes_an_error_and_drops_the_state() {
        let dropped = Arc::new(AtomicBool::new(false));
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let flag = Flag(dropped.clone());
        let result: Result<(), Error> = FinishOnDrop::new(async move {
            let _flag = flag;
            panic!("boom");
        })
        .await;
        assert!(matches!(result, Err(Error::Aborted(_))), "{result:?}");
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn dropped_without_a_runtime_it_does_not_panic() {
        let mut task = FinishOnDrop::new(std::future::pending::<Result<(), Error>>());
        let waker = futures_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut task).poll(&mut cx).is_pending());
        drop(task);
    }

    fn futures_waker() -> std::task::Waker {
        std::task::Waker::noop().clone()
    }
}
