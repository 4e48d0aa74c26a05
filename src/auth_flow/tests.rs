//! The flow's decisions alone: no transport, no token endpoint.

use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};

use http::Uri;

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
