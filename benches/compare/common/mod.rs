//! Shared by the bench binaries: a loopback hyper server (API and token
//! endpoint), the comparison middlewares, and the peers' clients.
//!
//! Every client here talks plain HTTP/1.1 to 127.0.0.1, with no proxy, so the
//! figures measure middleware and client work, not the network.
//!
//! - `server`: the loopback server and its counters ([`State`]);
//! - `middlewares`: the clients on this crate's stack (reqwest 0.13 /
//!   reqwest-middleware 0.5);
//! - `peers`: the peers' clients, on reqwest 0.12 / reqwest-middleware 0.4;
//! - `variants`: all of them behind one enum, for the hot-path benches;
//! - here: the small helpers the bench binaries share.
#![allow(dead_code)]

mod middlewares;
pub mod peers;
mod server;
mod variants;

use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

// The benches name everything as `common::…`, as when this was one file.
// Each bench binary uses only part of it, hence the allows (as for
// `dead_code` above).
#[allow(unused_imports)]
pub use middlewares::*;
#[allow(unused_imports)]
pub use server::{Server, State};
#[allow(unused_imports)]
pub use variants::*;

/// Token lifetime the token endpoint grants, and the benches seed with.
pub const LIFETIME: Duration = Duration::from_secs(3600);

/// Polls a pinned future once with a no-op waker and returns its output;
/// panics if it is not ready (the benches use it only on fast paths that
/// never wait). Use it through [`ready!`], which pins the future where it is
/// made: moving a future (as passing it by value does) copies all of it.
pub fn poll_ready<F: Future>(future: std::pin::Pin<&mut F>) -> F::Output {
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("expected a ready future (fast path)"),
    }
}

/// `ready!(future)`: the output of a future that is ready at once, polled
/// in place as an `.await` would.
#[allow(unused_macros)]
macro_rules! ready {
    ($future:expr) => {
        $crate::common::poll_ready(std::pin::pin!($future))
    };
}
#[allow(unused_imports)]
pub(crate) use ready;

#[path = "../../util/mod.rs"]
mod util;
#[allow(unused_imports)] // each bench uses a part
pub use util::{median, selected};

/// A duration for tables: µs below 10 ms, ms above.
pub fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}
