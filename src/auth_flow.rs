//! What every transport does with a request, whatever the transport: does
//! it get the token (origin policy), can it be replayed (the replay plan),
//! what a 401 (or a gRPC `UNAUTHENTICATED`) means, and the refresh after a
//! rejection. Transport adapters (the reqwest middleware, the tower layer)
//! are glue over this. No I/O here beyond asking the [`TokenManager`].

use http::Uri;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use reqwest::{StatusCode, Url};

use crate::challenge;
use crate::error::Error;
use crate::manager::{Applied, Lease, TokenManager};
use crate::origin::Origin;

/// The origins a token may go to, compared exactly (scheme, host, port).
#[derive(Clone)]
pub(crate) struct OriginPolicy {
    origins: Vec<Origin>,
    /// The same origins in the form an `http::Uri` is compared with, for
    /// transports that hand over a `Uri` rather than a `Url` (parsing each
    /// request's `Uri` into a `Url` would allocate on the hot path).
    uri_forms: Vec<UriOrigin>,
}

/// An allowed origin as [`Url`] spells it: scheme and host in lower case
/// (IDNA names in their `xn--` form, IPv6 in brackets, compressed), and the
/// port, explicit or the scheme's default.
#[derive(Clone, Debug)]
struct UriOrigin {
    scheme: String,
    host: String,
    port: u16,
}

impl UriOrigin {
    /// Compared as written, but for ASCII case: a `Uri` is not normalised,
    /// so another spelling of the same host (`0x7f.0.0.1`, `[0::1]`, a
    /// trailing dot) does not match. That only ever withholds the token.
    fn matches(&self, uri: &Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        let port = uri.port_u16().or(match scheme {
            s if s.eq_ignore_ascii_case("https") => Some(443),
            s if s.eq_ignore_ascii_case("http") => Some(80),
            _ => None,
        });
        port == Some(self.port)
            && scheme.eq_ignore_ascii_case(&self.scheme)
            && host.eq_ignore_ascii_case(&self.host)
    }
}

impl std::fmt::Debug for OriginPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.origins).finish()
    }
}

impl OriginPolicy {
    /// At least one origin is required: a token with nowhere to go is a
    /// configuration mistake.
    pub(crate) fn parse(origins: &[String]) -> Result<Self, Error> {
        if origins.is_empty() {
            return Err(Error::Config(
                "allow at least one origin with allow_origin".into(),
            ));
        }
        let mut parsed = Vec::with_capacity(origins.len());
        let mut uri_forms = Vec::with_capacity(origins.len());
        for origin in origins {
            parsed.push(Origin::parse(origin)?);
            // Origin::parse has checked that this is a URL with a host and
            // a port.
            let url = Url::parse(origin).map_err(|e| Error::Config(e.to_string()))?;
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                return Err(Error::Config(format!("`{origin}` has no host")));
            };
            uri_forms.push(UriOrigin {
                scheme: url.scheme().to_owned(),
                host: host.to_owned(),
                port,
            });
        }
        Ok(Self {
            origins: parsed,
            uri_forms,
        })
    }

    #[inline]
    pub(crate) fn allows(&self, url: &Url) -> bool {
        self.origins.iter().any(|o| o.matches(url))
    }

    /// Whether `uri` names an allowed origin. A `Uri` without scheme and
    /// host (path only) names none: where it goes is up to the transport.
    #[inline]
    pub(crate) fn allows_uri(&self, uri: &Uri) -> bool {
        self.uri_forms.iter().any(|o| o.matches(uri))
    }
}

/// Where a request goes, as its transport names it: the origin policy
/// decides whether that may carry the token.
pub(crate) trait Destination {
    fn allowed_by(&self, origins: &OriginPolicy) -> bool;
}

/// reqwest: the request's URL.
impl Destination for Url {
    #[inline]
    fn allowed_by(&self, origins: &OriginPolicy) -> bool {
        origins.allows(self)
    }
}

/// tower: the request's URI, when it has an origin.
impl Destination for Uri {
    #[inline]
    fn allowed_by(&self, origins: &OriginPolicy) -> bool {
        origins.allows_uri(self)
    }
}

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
    pub(crate) async fn lease(&self) -> Result<Lease, Error> {
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
mod tests {
    use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};

    use super::*;

    fn flow(replay: bool) -> AuthFlow {
        let manager = TokenManager::builder("https://as.example/token")
            .build()
            .unwrap();
        let origins = OriginPolicy::parse(&["https://api.example".into()]).unwrap();
        AuthFlow::new(manager, origins, replay)
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn only_allowed_origins_without_their_own_authorization_get_the_token() {
        let flow = flow(true);
        let mut headers = HeaderMap::new();
        assert!(flow.applies(&url("https://api.example/x"), &headers, false));
        assert!(!flow.applies(&url("https://api.example/x"), &headers, true));
        assert!(!flow.applies(&url("https://other.example/x"), &headers, false));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(!flow.applies(&url("https://api.example/x"), &headers, false));
        assert!(OriginPolicy::parse(&[]).is_err());
    }

    #[test]
    fn the_replay_plan_names_each_case() {
        let plan = flow(true).replay_plan(false, || Some(1));
        assert!(matches!(plan, ReplayPlan::Ready(1)));
        let plan = flow(true).replay_plan(false, || None::<u8>);
        assert!(matches!(plan, ReplayPlan::Uncloneable));
        let plan = flow(false).replay_plan(false, || -> Option<u8> { panic!("no copy") });
        assert!(matches!(plan, ReplayPlan::Disabled));
        let plan = flow(true).replay_plan(true, || -> Option<u8> { panic!("no copy") });
        assert!(matches!(plan, ReplayPlan::AlreadyRefreshed));
    }

    #[test]
    fn only_a_refreshable_401_refreshes_and_only_once_per_call() {
        let flow = flow(true);
        let none = HeaderMap::new();
        let api = url("https://api.example/x");
        let after = |status: u16, headers: &HeaderMap, plan: ReplayPlan<Url>| {
            let status = StatusCode::from_u16(status).unwrap();
            flow.after_response(status, headers, &api, plan, |sent| sent)
        };
        let copy = || ReplayPlan::Ready(api.clone());
        assert!(matches!(after(200, &none, copy()), AfterResponse::Return));
        assert!(matches!(after(403, &none, copy()), AfterResponse::Return));
        assert!(matches!(
            after(401, &none, copy()),
            AfterResponse::RefreshAndReplay(_)
        ));
        assert!(matches!(
            after(401, &none, ReplayPlan::Disabled),
            AfterResponse::RefreshOnly
        ));
        assert!(matches!(
            after(401, &none, ReplayPlan::Uncloneable),
            AfterResponse::Return
        ));
        assert!(matches!(
            after(401, &none, ReplayPlan::AlreadyRefreshed),
            AfterResponse::Return
        ));
        let mut scope = HeaderMap::new();
        scope.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="insufficient_scope""#),
        );
        assert!(matches!(after(401, &scope, copy()), AfterResponse::Return));
    }

    #[test]
    fn a_uri_gets_the_token_only_for_an_allowed_origin_spelled_as_its_url() {
        let origins = OriginPolicy::parse(&[
            "https://API.example".into(),
            "http://127.0.0.1:8080".into(),
            "http://[::1]:9000".into(),
        ])
        .unwrap();
        let allows = |uri: &str| origins.allows_uri(&uri.parse::<Uri>().unwrap());
        assert!(allows("https://api.example/v1/x?y=1"));
        assert!(allows("HTTPS://Api.Example:443/"));
        assert!(allows("http://127.0.0.1:8080/pkg.Svc/Call"));
        assert!(allows("http://[::1]:9000/"));
        assert!(!allows("http://api.example/"));
        assert!(!allows("https://api.example:8443/"));
        assert!(!allows("https://api.example.evil.net/"));
        assert!(!allows("https://x.api.example/"));
        assert!(!allows("https://api.example./"));
        assert!(!allows("http://127.0.0.1/"));
        assert!(!allows("http://0x7f.0.0.1:8080/"));
        assert!(!allows("http://[0:0::1]:9000/"));
        // Path only: no origin, nothing allowed.
        assert!(!allows("/pkg.Svc/Call"));
        let flow = flow(true);
        let uri: Uri = "https://api.example/x".parse().unwrap();
        assert!(flow.applies(&uri, &HeaderMap::new(), false));
        assert!(!flow.applies(&uri, &HeaderMap::new(), true));
    }

    #[cfg(feature = "tower")]
    #[test]
    fn a_rejection_is_a_401_or_grpc_unauthenticated_in_the_headers() {
        let grpc = |code: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-status", HeaderValue::from_static(code));
            headers
        };
        let none = HeaderMap::new();
        assert!(rejects_token(StatusCode::UNAUTHORIZED, &none));
        assert!(rejects_token(StatusCode::OK, &grpc("16")));
        assert!(!rejects_token(StatusCode::OK, &grpc("7")));
        assert!(!rejects_token(StatusCode::OK, &grpc("0")));
        assert!(!rejects_token(StatusCode::OK, &grpc("160")));
        assert!(!rejects_token(StatusCode::FORBIDDEN, &none));
        assert!(!rejects_token(StatusCode::OK, &none));
    }

    #[cfg(feature = "tower")]
    #[test]
    fn a_renewing_plan_renews_for_what_it_cannot_replay() {
        let flow = flow(false);
        let none = HeaderMap::new();
        let plan = flow.renewing_plan(|| None::<u8>);
        assert!(matches!(plan, ReplayPlan::Disabled));
        assert!(matches!(
            flow.after_rejection(&none, true, plan),
            AfterResponse::RefreshOnly
        ));
        let plan = flow.renewing_plan(|| Some(1));
        assert!(matches!(
            flow.after_rejection(&none, true, plan),
            AfterResponse::RefreshAndReplay(1)
        ));
        let mut scope = HeaderMap::new();
        scope.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="insufficient_scope""#),
        );
        let plan = flow.renewing_plan(|| Some(1));
        assert!(matches!(
            flow.after_rejection(&scope, true, plan),
            AfterResponse::Return
        ));
        let plan = flow.renewing_plan(|| Some(1));
        assert!(matches!(
            flow.after_rejection(&none, false, plan),
            AfterResponse::Return
        ));
    }

    #[test]
    fn a_401_from_a_redirect_target_never_refreshes() {
        let flow = flow(true);
        let none = HeaderMap::new();
        let (sent, elsewhere) = (url("https://api.example/x"), url("https://evil.example/y"));
        let status = StatusCode::UNAUTHORIZED;
        let plan = || ReplayPlan::Ready(sent.clone());
        let after = flow.after_response(status, &none, &elsewhere, plan(), |s| s);
        assert!(matches!(after, AfterResponse::Return));
        let disabled = ReplayPlan::<Url>::Disabled;
        let after = flow.after_response(status, &none, &elsewhere, disabled, |s| s);
        assert!(matches!(after, AfterResponse::Return));
        let same = url("https://api.example/moved");
        let after = flow.after_response(status, &none, &same, plan(), |s| s);
        assert!(matches!(after, AfterResponse::RefreshAndReplay(_)));
    }
}
