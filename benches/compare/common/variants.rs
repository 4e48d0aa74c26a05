//! Every client the hot-path benches compare, behind one enum, and sending
//! one GET through each.

use super::middlewares::{
    CopyMode, Naive, bare, copying, manager, naive, ours, ours_with, trivial,
};
use super::{Server, peers};

/// Sends one GET through a middleware client and reads the body; the status.
pub async fn get(client: &reqwest_middleware::ClientWithMiddleware, url: &str) -> u16 {
    let response = client.get(url).send().await.expect("request");
    let status = response.status().as_u16();
    let _ = response.bytes().await.expect("body");
    status
}

/// The same with the bare client.
pub async fn get_bare(client: &reqwest::Client, url: &str) -> u16 {
    let response = client.get(url).send().await.expect("request");
    let status = response.status().as_u16();
    let _ = response.bytes().await.expect("body");
    status
}

/// Every client variant the hot-path benches compare, behind one enum so a
/// bench can loop over them.
pub enum Variant {
    Bare(reqwest::Client),
    Trivial(reqwest_middleware::ClientWithMiddleware),
    /// The trivial middleware plus a replay copy (allocs.rs only).
    Copying(CopyMode, reqwest_middleware::ClientWithMiddleware),
    Ours(reqwest_middleware::ClientWithMiddleware),
    /// Ours with `replay_on_401(false)`: no copy of the request.
    OursNoReplay(reqwest_middleware::ClientWithMiddleware),
    Naive(reqwest_middleware::ClientWithMiddleware),
    Bare012(reqwest_012::Client),
    Trivial04(peers::Client),
    Aliri(peers::Client),
    ReqwestAuth(peers::Client),
}

impl Variant {
    pub fn name(&self) -> &'static str {
        match self {
            Variant::Bare(_) => "bare reqwest 0.13 (floor)",
            Variant::Trivial(_) => "trivial middleware (rm 0.5)",
            Variant::Copying(CopyMode::TryCloneAfter, _) => "trivial + try_clone() after insert",
            Variant::Copying(CopyMode::TryCloneBefore, _) => "trivial + try_clone() before insert",
            Variant::Copying(CopyMode::HandCopyBefore, _) => "trivial + hand copy before insert",
            Variant::Ours(_) => "reqwest-oauth2-refresh",
            Variant::OursNoReplay(_) => "reqwest-oauth2-refresh, replay_on_401(false)",
            Variant::Naive(_) => "naive Mutex<String> middleware",
            Variant::Bare012(_) => "bare reqwest 0.12 (peers' floor)",
            Variant::Trivial04(_) => "trivial middleware (rm 0.4)",
            Variant::Aliri(_) => "aliri_reqwest 0.5",
            Variant::ReqwestAuth(_) => "reqwest-auth 1.0",
        }
    }

    /// A short id for criterion and for `BENCH_VARIANT`.
    pub fn id(&self) -> &'static str {
        match self {
            Variant::Bare(_) => "bare",
            Variant::Trivial(_) => "trivial",
            Variant::Copying(CopyMode::TryCloneAfter, _) => "copy_try_clone_after",
            Variant::Copying(CopyMode::TryCloneBefore, _) => "copy_try_clone_before",
            Variant::Copying(CopyMode::HandCopyBefore, _) => "copy_hand_before",
            Variant::Ours(_) => "ours",
            Variant::OursNoReplay(_) => "ours_no_replay",
            Variant::Naive(_) => "naive",
            Variant::Bare012(_) => "bare012",
            Variant::Trivial04(_) => "trivial04",
            Variant::Aliri(_) => "aliri",
            Variant::ReqwestAuth(_) => "reqwest_auth",
        }
    }

    /// One GET to `url`, body read; the status.
    pub async fn get(&self, url: &str) -> u16 {
        match self {
            Variant::Bare(c) => get_bare(c, url).await,
            Variant::Trivial(c)
            | Variant::Copying(_, c)
            | Variant::Ours(c)
            | Variant::OursNoReplay(c)
            | Variant::Naive(c) => get(c, url).await,
            Variant::Bare012(c) => peers::get_bare(c, url).await,
            Variant::Trivial04(c) | Variant::Aliri(c) | Variant::ReqwestAuth(c) => {
                peers::get(c, url).await
            }
        }
    }
}

/// All hot-path variants against `server`, each with its own connection
/// pool, all holding a valid token. Needs a Tokio runtime (aliri spawns its
/// watcher).
pub async fn hot_variants(server: &Server) -> Vec<Variant> {
    let token = server.state.valid_token();
    vec![
        Variant::Bare(bare()),
        Variant::Trivial(trivial(bare())),
        Variant::Ours(ours(manager(server, &token, bare()), server, bare())),
        Variant::OursNoReplay(ours_with(
            manager(server, &token, bare()),
            server,
            bare(),
            false,
        )),
        Variant::Naive(naive(Naive::new(&token, server, bare()), bare())),
        Variant::Bare012(peers::bare()),
        Variant::Trivial04(peers::trivial(peers::bare())),
        Variant::Aliri(peers::aliri(server, peers::bare()).await),
        Variant::ReqwestAuth(peers::reqwest_auth(
            peers::CachedSource::new(&token, server, peers::bare()),
            peers::bare(),
        )),
    ]
}

/// The replay-copy experiments, for allocs.rs.
pub fn copy_variants() -> Vec<Variant> {
    [
        CopyMode::TryCloneAfter,
        CopyMode::TryCloneBefore,
        CopyMode::HandCopyBefore,
    ]
    .into_iter()
    .map(|mode| Variant::Copying(mode, copying(mode)))
    .collect()
}
