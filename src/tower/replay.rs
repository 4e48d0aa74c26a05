//! How [`OAuth2Layer`](super::OAuth2Layer) keeps a request for its one
//! replay after a rejected token: the [`Replay`] policies, and the
//! read-ahead body of [`BufferBody`].

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};

/// How a request is kept for its one replay after the API rejected its
/// token (see [`OAuth2LayerBuilder::replay`](super::OAuth2LayerBuilder::replay)).
///
/// Like `clone_request` in tower's retry `Policy`: the layer asks for a copy
/// before the token goes in, and replays the copy with the new token. A
/// request without a copy is never replayed; its rejection still renews the
/// token for the calls that follow.
pub trait Replay<B>: Clone + Send + Sync + 'static {
    /// A copy of `request` to send again if its token is rejected, or
    /// `None` if it cannot be replayed. It may replace `request`'s body
    /// (with one that sends the same bytes), as [`BufferBody`] does.
    fn copy(&self, request: &mut Request<B>) -> Option<Request<B>>;
}

/// No replay (the default): a rejected token is renewed, once for every
/// caller that saw it, and the rejection is handed back. Nothing is copied.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReplay;

impl<B> Replay<B> for NoReplay {
    #[inline]
    fn copy(&self, _: &mut Request<B>) -> Option<Request<B>> {
        None
    }
}

/// Replays with a clone of the request, for bodies that are `Clone`
/// (`http_body_util::Full<Bytes>`, `Empty`, `String`): the head (method,
/// URI, headers, extensions) and the body are cloned before each request is
/// sent, a few allocations per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneBody;

impl<B: Clone> Replay<B> for CloneBody {
    fn copy(&self, request: &mut Request<B>) -> Option<Request<B>> {
        Some(with_head_of(request, request.body().clone()))
    }
}

/// Replays a request whose body is complete when it is sent, and at most
/// `max_bytes` long: before the request goes out, the layer reads the
/// frames its body has ready (without waiting), keeps them, and sends them
/// followed by whatever the body still has. A body that is not complete
/// then (a stream still being fed: client-streaming and bidirectional gRPC
/// calls), that is longer, or that fails is sent all the same and never
/// replayed. A gRPC request (`content-type: application/grpc…`) is replayed
/// only if it holds at most one message, so that a request stream is never
/// sent twice; a server-streaming call's single request is replayed like a
/// unary one (its rejection came before any response message: the layer
/// reads only trailers-only rejections).
///
/// The body type must be able to carry the read-ahead body
/// ([`ReplayableBody`]: `tonic::body::Body` with the `tonic` feature).
/// Costs per request, with replay on: the frames are kept (reference
/// counts, not copies), the request head is cloned, and the body is boxed.
#[derive(Debug, Clone, Copy)]
pub struct BufferBody {
    max_bytes: usize,
}

impl BufferBody {
    /// Keeps request bodies of up to `max_bytes` for a replay.
    pub const fn up_to(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl<B: ReplayableBody> Replay<B> for BufferBody {
    fn copy(&self, request: &mut Request<B>) -> Option<Request<B>> {
        let placeholder = B::from_buffered(Buffered::empty());
        let body = std::mem::replace(request.body_mut(), placeholder);
        let (read, complete) = Buffered::read_ahead(body, self.max_bytes);
        let replayable =
            complete && (!is_grpc(request.headers()) || grpc_messages(&read.data) <= 1);
        let copy = replayable.then(|| with_head_of(request, B::from_buffered(read.replica())));
        *request.body_mut() = B::from_buffered(read);
        copy
    }
}

/// A request body type that can carry a [`Buffered`] body of its own
/// kind: what [`BufferBody`] needs to send the frames it read ahead, and a
/// copy of them. Boxed body types can: `tonic::body::Body` does with the
/// `tonic` feature; for your own type, wrap the body.
pub trait ReplayableBody: Body<Data = Bytes> + Unpin + Send + Sized + 'static {
    /// Wraps `body`.
    fn from_buffered(body: Buffered<Self>) -> Self;
}

/// A request body read ahead by [`BufferBody`]: the frames read so far,
/// then whatever the original body still has.
pub struct Buffered<B: Body> {
    data: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Rest<B>,
}

enum Rest<B: Body> {
    Body(B),
    /// The original body failed while read ahead: its error comes next.
    Error(B::Error),
    Ended,
}

impl<B: Body<Data = Bytes> + Unpin> Buffered<B> {
    fn empty() -> Self {
        Self {
            data: VecDeque::new(),
            trailers: None,
            rest: Rest::Ended,
        }
    }

    /// Reads the frames `body` has ready, up to a little past `max_bytes`
    /// (a frame is not split), without waiting; and whether that was all
    /// of it. Polled with a no-op waker: whoever sends the body polls it
    /// again with theirs.
    fn read_ahead(mut body: B, max_bytes: usize) -> (Self, bool) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut data = VecDeque::new();
        let mut len = 0usize;
        let (trailers, rest, complete) = loop {
            if len > max_bytes {
                break (None, Rest::Body(body), false);
            }
            if body.is_end_stream() {
                break (None, Rest::Ended, true);
            }
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(None) => break (None, Rest::Ended, true),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(bytes) => {
                        len = len.saturating_add(bytes.len());
                        data.push_back(bytes);
                    }
                    // Trailers end a body.
                    Err(frame) => break (frame.into_trailers().ok(), Rest::Ended, true),
                },
                Poll::Ready(Some(Err(error))) => break (None, Rest::Error(error), false),
                Poll::Pending => break (None, Rest::Body(body), false),
            }
        };
        let read = Self {
            data,
            trailers,
            rest,
        };
        (read, complete)
    }

    /// The same frames again, for the replay (only of a complete body).
    fn replica(&self) -> Self {
        Self {
            data: self.data.clone(),
            trailers: self.trailers.clone(),
            rest: Rest::Ended,
        }
    }
}

impl<B> Body for Buffered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match std::mem::replace(&mut this.rest, Rest::Ended) {
            Rest::Body(mut body) => {
                let poll = Pin::new(&mut body).poll_frame(cx);
                this.rest = Rest::Body(body);
                poll
            }
            Rest::Error(error) => Poll::Ready(Some(Err(error))),
            Rest::Ended => Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
            && self.trailers.is_none()
            && match &self.rest {
                Rest::Body(body) => body.is_end_stream(),
                Rest::Error(_) => false,
                Rest::Ended => true,
            }
    }

    fn size_hint(&self) -> SizeHint {
        let buffered = self
            .data
            .iter()
            .fold(0u64, |sum, d| sum.saturating_add(d.len() as u64));
        let Rest::Body(body) = &self.rest else {
            return SizeHint::with_exact(buffered);
        };
        let rest = body.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(buffered));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(buffered));
        }
        hint
    }
}

impl<B: Body> fmt::Debug for Buffered<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rest = match &self.rest {
            Rest::Body(_) => "body",
            Rest::Error(_) => "error",
            Rest::Ended => "ended",
        };
        f.debug_struct("Buffered")
            .field("frames", &self.data.len())
            .field("trailers", &self.trailers.is_some())
            .field("rest", &rest)
            .finish()
    }
}

/// A request with `request`'s head (method, URI, version, headers,
/// extensions) and `body`.
fn with_head_of<A, B>(request: &Request<A>, body: B) -> Request<B> {
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    copy
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// How many gRPC messages (a flag byte, a big-endian `u32` length, the
/// message) `data` holds; a message cut short counts as one.
fn grpc_messages(data: &VecDeque<Bytes>) -> usize {
    let total = data
        .iter()
        .map(Bytes::len)
        .fold(0usize, usize::saturating_add);
    let byte_at = |mut at: usize| {
        for chunk in data {
            if at < chunk.len() {
                return Some(chunk[at]);
            }
            at -= chunk.len();
        }
        None
    };
    let (mut at, mut count) = (0usize, 0usize);
    while at < total {
        count += 1;
        let length = (1..5).try_fold(0u32, |length, i| {
            byte_at(at.saturating_add(i)).map(|b| length << 8 | u32::from(b))
        });
        let Some(length) = length else { break };
        at = at
            .saturating_add(5)
            .saturating_add(usize::try_from(length).unwrap_or(usize::MAX));
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u32) -> Vec<u8> {
        let mut m = vec![0];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend(std::iter::repeat_n(7, len as usize));
        m
    }

    fn chunks(parts: &[&[u8]]) -> VecDeque<Bytes> {
        parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
    }

    #[test]
    fn grpc_messages_are_counted_across_chunks() {
        assert_eq!(grpc_messages(&VecDeque::new()), 0);
        let one = message(3);
        assert_eq!(grpc_messages(&chunks(&[&one])), 1);
        assert_eq!(grpc_messages(&chunks(&[&one[..2], &one[2..]])), 1);
        let two = [message(0), message(300)].concat();
        assert_eq!(grpc_messages(&chunks(&[&two])), 2);
        assert_eq!(
            grpc_messages(&chunks(&[&two[..4], &two[4..9], &two[9..]])),
            2
        );
        // A cut header or body still counts: never zero for some bytes.
        assert_eq!(grpc_messages(&chunks(&[&[0, 0]])), 1);
        assert_eq!(grpc_messages(&chunks(&[&message(10)[..7]])), 1);
        let huge = [0, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(grpc_messages(&chunks(&[&huge])), 1);
    }
}
