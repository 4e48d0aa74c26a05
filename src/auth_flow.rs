//! What every transport does with a request, whatever the transport: does
//! it get the token (origin policy), can it be replayed (the replay plan),
//! what a 401 (or a gRPC `UNAUTHENTICATED`) means, and the refresh after a
//! rejection. Transport adapters (the reqwest middleware, the tower layer)
//! are glue over this. No I/O here beyond asking the [`TokenManager`].

use reqwest::header::{AUTHORIZATION, HeaderMap};
use reqwest::{StatusCode, Url};

use crate::challenge;
use crate::error::Error;
use crate::manager::{Applied, Lease, RefreshInFlight, TokenManager};

mod origins;
pub(crate) use origins::{Destination, OriginPolicy};

#[cfg(feature = "tower")]
const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// Whether a response rejects the token it carried: HTTP 401, or a gRPC
/// answer whose `grpc-status` is `UNAUTHENTICATED` (16). A gRPC call
/// rejected before any message is a *trailers-only* response, whose status
/// is in the headers; a status in real trailers comes after messages the
/// caller may already have, and is not read here. `PERMISSION_DENIED` (7)
/// and HTTP 403 are not rejections of the token: a new one would not help.
#[cfg(feature = "tower")]
#[inline]
pub(crate) fn rejects_token(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::UNAUTHORIZED
        || headers
            .get(&GRPC_STATUS)
            .is_some_and(|code| code.as_bytes() == b"16")
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Whether (and how) a request that met a 401 can be sent again.
pub(crate) enum ReplayPlan<R> {
    /// No replay for this call, and nothing was copied: a rejection renews
    /// the token for the requests that follow. `replay_on_401(false)`, or a
    /// transport that renews for every request it cannot replay (the tower
    /// layer, see [`AuthFlow::renewing_plan`]).
    Disabled,
    /// The request could not be copied (a streaming body): the reqwest
    /// middleware hands its 401 back without a refresh.
    Uncloneable,
    /// This call was already refreshed after a 401 (an outer layer runs it
    /// again): no second refresh, no second replay.
    AlreadyRefreshed,
    /// A copy, made before the token went in.
    Ready(R),
}

/// What to do with a response.
pub(crate) enum AfterResponse<R> {
    /// Hand it back as it is.
    Return,
    /// Renew the token for the requests that follow; hand this one back.
    RefreshOnly,
    /// Renew the token and send the copy again.
    RefreshAndReplay(R),
}

/// The transport-agnostic flow over one [`TokenManager`].
#[derive(Debug, Clone)]
pub(crate) struct AuthFlow {
    manager: TokenManager,
    origins: OriginPolicy,
    replay: bool,
}

impl AuthFlow {
    pub(crate) fn new(manager: TokenManager, origins: OriginPolicy, replay: bool) -> Self {
        Self {
            manager,
            origins,
            replay,
        }
    }

    pub(crate) fn manager(&self) -> &TokenManager {
        &self.manager
    }

    pub(crate) fn origins(&self) -> &OriginPolicy {
        &self.origins
    }

    pub(crate) fn replays(&self) -> bool {
        self.replay
    }

    /// Whether this request gets our token: not when the caller opted out,
    /// not when it carries its own `Authorization` (the caller's wins), and
    /// only for an allowed origin.
    #[inline]
    pub(crate) fn applies(
        &self,
        to: &(impl Destination + ?Sized),
        headers: &HeaderMap,
        opted_out: bool,
    ) -> bool {
        !opted_out && !headers.contains_key(AUTHORIZATION) && to.allowed_by(&self.origins)
    }

    /// The fresh token, without waiting: the hot path.
    #[inline]
    pub(crate) fn fresh_lease(&self) -> Option<Lease> {
        self.manager.fresh_lease()
    }

    /// A valid token, loading or refreshing first.
    /// With the background refresh this call started, if any: wait for it
    /// before handing back the request's response.
    pub(crate) async fn lease(&self) -> Result<(Lease, Option<RefreshInFlight>), Error> {
        self.manager.lease().await
    }

    /// The replay plan for a request about to be sent; `copy` is called only
    /// when a replay is possible at all.
    #[inline]
    pub(crate) fn replay_plan<R>(
        &self,
        already_refreshed: bool,
        copy: impl FnOnce() -> Option<R>,
    ) -> ReplayPlan<R> {
        if already_refreshed {
            ReplayPlan::AlreadyRefreshed
        } else if !self.replay {
            ReplayPlan::Disabled
        } else {
            copy().map_or(ReplayPlan::Uncloneable, ReplayPlan::Ready)
        }
    }

    /// The plan of a transport that cannot tell an outer layer's second run
    /// of a call from a new call, and renews the token for every rejected
    /// request it cannot replay (the tower layer: a body that cannot be
    /// copied, or no replay asked for). `copy` decides; without a copy the
    /// rejection still renews the token, once for everyone.
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn renewing_plan<R>(&self, copy: impl FnOnce() -> Option<R>) -> ReplayPlan<R> {
        copy().map_or(ReplayPlan::Disabled, ReplayPlan::Ready)
    }

    /// What a response means: only a 401 whose challenge a new token may fix
    /// (see [`challenge::refresh_may_help`]) leads to a refresh, only once
    /// per call, and only when it comes from where the token went: the
    /// response's final URL (`answered_by`, after any redirects the client
    /// followed) must be of the origin the request was sent to (`sent_to`
    /// gives it from the copy; without a copy, an allowed origin). A 401 from
    /// a redirect target says nothing about our token (the client does not
    /// forward it across origins), and refreshing for it would let any
    /// redirect target burn a refresh per request and run a POST twice.
    pub(crate) fn after_response<R>(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        answered_by: &Url,
        plan: ReplayPlan<R>,
        sent_to: impl FnOnce(&R) -> &Url,
    ) -> AfterResponse<R> {
        if status != StatusCode::UNAUTHORIZED {
            return AfterResponse::Return;
        }
        let from_where_it_went = match &plan {
            ReplayPlan::AlreadyRefreshed => return AfterResponse::Return,
            ReplayPlan::Ready(copy) => same_origin(sent_to(copy), answered_by),
            _ => self.origins.allows(answered_by),
        };
        self.after_rejection(headers, from_where_it_went, plan)
    }

    /// What a rejection of the token means, whatever the transport and
    /// however it said so (a 401, a gRPC `UNAUTHENTICATED`: see
    /// [`rejects_token`]): a refresh only when the rejection came from where
    /// the token went and its challenge says a new token may help, at most
    /// once per call; then a replay if the plan has a copy.
    pub(crate) fn after_rejection<R>(
        &self,
        headers: &HeaderMap,
        from_where_it_went: bool,
        plan: ReplayPlan<R>,
    ) -> AfterResponse<R> {
        if matches!(plan, ReplayPlan::AlreadyRefreshed) {
            return AfterResponse::Return;
        }
        if !from_where_it_went {
            tracing::debug!("token rejected by a redirect target; returned as is, no refresh");
            return AfterResponse::Return;
        }
        if !challenge::refresh_may_help(headers) {
            tracing::debug!(
                "token rejected with a challenge a new token cannot fix; returned as is"
            );
            return AfterResponse::Return;
        }
        match plan {
            ReplayPlan::Ready(copy) => AfterResponse::RefreshAndReplay(copy),
            ReplayPlan::Disabled => AfterResponse::RefreshOnly,
            ReplayPlan::Uncloneable => {
                tracing::debug!("401 for a request with a streaming body; it cannot be replayed");
                AfterResponse::Return
            }
            ReplayPlan::AlreadyRefreshed => AfterResponse::Return,
        }
    }

    /// One refresh for every caller that saw this token rejected; a caller
    /// whose token was already replaced gets the newer one. `None`: the 401
    /// stands (a token issued moments ago is not refreshed again).
    pub(crate) async fn refresh_after_rejection(
        &self,
        sent: Applied,
        replaying: bool,
    ) -> Result<Option<Lease>, Error> {
        self.manager.refresh_after_rejection(sent, replaying).await
    }

    /// The replay with a new token met a 401 as well (and no newer token
    /// exists): remembered, so that this token's next 401s do not refresh.
    pub(crate) fn replay_rejected(&self, sent: Applied) {
        self.manager.replay_rejected(sent);
    }

    /// After the replay: a 401 again, refreshable and from where the replay
    /// went, may mean that a peer rotated the tokens while it was in flight
    /// (servers that revoke the old access token on rotation do this to a
    /// fleet). Then `copy` is worth one more send, if
    /// [`newer_after_rejection`](Self::newer_after_rejection) finds a newer
    /// token; never more than once, and never after a second refresh.
    pub(crate) fn after_replay<R>(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        answered_by: &Url,
        copy: Option<R>,
        sent_to: impl FnOnce(&R) -> &Url,
    ) -> Option<R> {
        let copy = copy?;
        let again = status == StatusCode::UNAUTHORIZED
            && same_origin(sent_to(&copy), answered_by)
            && challenge::refresh_may_help(headers);
        again.then_some(copy)
    }

    /// A newer token than the one `sent` carried, adopted from this process
    /// or the store; `None` when there is none (the 401 stands).
    pub(crate) async fn newer_after_rejection(&self, sent: Applied) -> Option<Lease> {
        self.manager.newer_after_rejection(sent).await
    }
}

#[cfg(test)]
mod tests;
