//! The future of [`OAuth2Service`](super::OAuth2Service): the inner
//! service's future, polled in place while the token is accepted (no
//! allocation of ours), and a boxed future for the cold paths (waiting for
//! a token, refreshing after a rejection, the replay).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;
use tracing::Instrument as _;

use super::{Shared, attach, dpop};
use crate::auth_flow::{AfterResponse, ReplayPlan, rejects_token};
use crate::error::BoxError;
use crate::manager::Applied;
use crate::telemetry;

type ColdFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// A copy of a request for its replay, with a clone of the service to send
/// it through. Boxed: the copy is large, and most calls have none.
pub(super) type Replayable<S, B> = Box<(S, Request<B>)>;

pin_project! {
    /// The response future of [`OAuth2Service`](super::OAuth2Service).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        // Not ours: the inner future, its error boxed.
        Passthrough {
            #[pin]
            future: S::Future,
        },
        // Sent with our token; `sent` is taken when the answer arrives.
        Sent {
            #[pin]
            future: S::Future,
            sent: Option<Sent<S, B>>,
        },
        // Waiting for a token, recovering from a rejection, or replaying.
        Cold {
            future: ColdFuture<S::Response>,
        },
    }
}

/// What a sent request leaves for its answer.
pub(super) struct Sent<S, B> {
    shared: Arc<Shared>,
    applied: Applied,
    plan: ReplayPlan<Replayable<S, B>>,
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(super) fn passthrough(future: S::Future) -> Self {
        Self {
            state: State::Passthrough { future },
        }
    }

    pub(super) fn sent(
        future: S::Future,
        shared: Arc<Shared>,
        applied: Applied,
        plan: ReplayPlan<Replayable<S, B>>,
    ) -> Self {
        Self {
            state: State::Sent {
                future,
                sent: Some(Sent {
                    shared,
                    applied,
                    plan,
                }),
            },
        }
    }

    pub(super) fn cold(future: ColdFuture<S::Response>) -> Self {
        Self {
            state: State::Cold { future },
        }
    }
}

impl<S, B, RB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
    RB: Send + 'static,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let recovery = match self.as_mut().project().state.project() {
                StateProj::Passthrough { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
                StateProj::Cold { future } => return future.as_mut().poll(cx),
                StateProj::Sent { future, sent } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    let mut sent = sent.take().expect("ResponseFuture polled after completion");
                    match sent.after(&response) {
                        AfterResponse::Return => return Poll::Ready(Ok(response)),
                        after => recover(sent.shared, sent.applied, response, after),
                    }
                }
            };
            // Boxed: the cold path's state stays out of every call's future.
            let span = telemetry::replay_span("tower");
            let future: ColdFuture<Response<RB>> = Box::pin(recovery.instrument(span));
            self.as_mut().project().state.set(State::Cold { future });
        }
    }
}

impl<S, B> Sent<S, B> {
    pub(super) fn new(
        shared: Arc<Shared>,
        applied: Applied,
        plan: ReplayPlan<Replayable<S, B>>,
    ) -> Self {
        Self {
            shared,
            applied,
            plan,
        }
    }

    pub(super) fn into_parts(self) -> (Arc<Shared>, Applied) {
        (self.shared, self.applied)
    }

    /// What the answer means for the token: the transport-agnostic flow
    /// decides, from where the answer came (the request went where the
    /// token may go, and tower services follow no redirects of their own:
    /// put a redirect layer outside this one, so that each hop is checked).
    pub(super) fn after<RB>(&mut self, response: &Response<RB>) -> AfterResponse<Replayable<S, B>> {
        if !rejects_token(response.status(), response.headers()) {
            return AfterResponse::Return;
        }
        let plan = std::mem::replace(&mut self.plan, ReplayPlan::Disabled);
        self.shared
            .flow
            .after_rejection(response.headers(), true, plan)
    }
}

/// After a rejection that a new token may fix: one refresh, shared with
/// every caller that saw the same token rejected, then the one replay if
/// there is a copy; its answer is returned as it is.
pub(super) async fn recover<S, B, RB>(
    shared: Arc<Shared>,
    applied: Applied,
    response: Response<RB>,
    after: AfterResponse<Replayable<S, B>>,
) -> Result<Response<RB>, BoxError>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    let replaying = matches!(after, AfterResponse::RefreshAndReplay(_));
    let renewed = shared
        .flow
        .refresh_after_rejection(applied, replaying)
        .await?;
    // Nothing to replay, or a token issued moments ago that is not refreshed
    // again (the storm bound): the token is renewed for the calls that
    // follow, and this answer goes back to the caller.
    let (Some(lease), AfterResponse::RefreshAndReplay(replay)) = (renewed, after) else {
        return Ok(response);
    };
    drop(response);
    let (mut inner, mut copy) = *replay;
    let sent = match lease.dpop().cloned() {
        None => attach(lease, &mut copy),
        Some(dpop) => {
            dpop::attach_with_proof(&shared, &dpop, lease, &mut copy)
                .await?
                .0
        }
    };
    std::future::poll_fn(|cx| inner.poll_ready(cx))
        .await
        .map_err(Into::into)?;
    let answer = inner.call(copy).await.map_err(Into::into)?;
    telemetry::replayed("tower", answer.status().as_u16());
    if rejects_token(answer.status(), answer.headers()) {
        // Even the new token is rejected: its next rejections are handed
        // back instead of refreshed while it is young.
        shared.flow.replay_rejected(sent);
    }
    Ok(answer)
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Passthrough { .. } => "passthrough",
            State::Sent { .. } => "sent",
            State::Cold { .. } => "cold",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
