//! DPoP through the tower layer: the same proofs, nonces and one nonce
//! retry as the reqwest middleware. A DPoP call takes the boxed path: its
//! proof is signed (asynchronously) before the request can go.

use std::sync::Arc;

use http::{Request, Response, Uri};
use tower_service::Service;
use url::Url;

use super::future::{Sent, recover};
use super::{Replayable, Shared, attach};
use crate::auth_flow::AfterResponse;
use crate::dpop::ResourceProof;
use crate::error::{BoxError, Error};
use crate::manager::Lease;
use crate::tower::Replay;

/// The URL a proof names (`htu`): the request's URI, or for a path-only
/// URI (a tonic channel's) the channel's origin with its path.
pub(super) fn proof_url(shared: &Shared, uri: &Uri) -> Result<Url, Error> {
    let text = match (uri.scheme(), &shared.channel_origin) {
        (Some(_), _) => uri.to_string(),
        (None, Some(origin)) => {
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            format!("{}{path}", origin.as_str().trim_end_matches('/'))
        }
        (None, None) => {
            return Err(Error::Config(
                "a DPoP request needs an absolute URI, or the layer's channel_origin".into(),
            ));
        }
    };
    Url::parse(&text).map_err(|e| Error::Config(format!("a DPoP request's URI: {e}")))
}

/// Puts the token and a new proof on `request`; the nonce the proof
/// carries, if any.
pub(super) async fn attach_with_proof<B>(
    shared: &Shared,
    dpop: &ResourceProof,
    lease: Lease,
    request: &mut Request<B>,
) -> Result<(crate::manager::Applied, Option<Arc<str>>), Error> {
    let url = proof_url(shared, request.uri())?;
    let method = request.method().clone();
    let applied = attach(lease, request);
    let nonce = dpop.attach(&method, &url, request.headers_mut()).await?;
    Ok((applied, nonce))
}

/// Sends a call whose token is a DPoP token: the replay copy first (without
/// the token), a copy for one nonce retry, then the proof; a 401 asking for
/// a new nonce (RFC 9449 §9) is sent once more at once, which neither
/// counts as the replay nor refreshes; then as any call.
pub(super) async fn send<S, R, B, RB>(
    shared: Arc<Shared>,
    mut inner: S,
    replay: R,
    mut request: Request<B>,
    lease: Lease,
    dpop: Arc<ResourceProof>,
) -> Result<Response<RB>, BoxError>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    R: Replay<B>,
    B: Send + 'static,
    RB: Send + 'static,
{
    let plan = shared.flow.renewing_plan(|| {
        let copy = replay.copy(&mut request)?;
        Some(Box::new((inner.clone(), copy)) as Replayable<S, B>)
    });
    let nonce_retry = replay.copy(&mut request);
    let url = proof_url(&shared, request.uri())?;
    let (applied, sent) = attach_with_proof(&shared, &dpop, lease.clone(), &mut request).await?;
    let mut response = inner.call(request).await.map_err(Into::into)?;
    // A tower service follows no redirects: the answer is from `url`.
    let retry = dpop.wants_new_nonce(
        &url,
        sent.as_deref(),
        response.status(),
        &url,
        response.headers(),
    );
    if retry && let Some(mut copy) = nonce_retry {
        drop(response);
        crate::telemetry::dpop_nonce_retry("api");
        attach_with_proof(&shared, &dpop, lease, &mut copy).await?;
        let mut again = inner.clone();
        std::future::poll_fn(|cx| again.poll_ready(cx))
            .await
            .map_err(Into::into)?;
        response = again.call(copy).await.map_err(Into::into)?;
        dpop.note_nonce(&url, response.headers());
    }
    let mut sent = Sent::new(shared, applied, plan);
    match sent.after(&response) {
        AfterResponse::Return => Ok(response),
        after => {
            let (shared, applied) = sent.into_parts();
            recover(shared, applied, response, after).await
        }
    }
}
