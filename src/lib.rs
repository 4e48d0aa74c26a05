//! Keeps OAuth 2.0 access tokens fresh for a [`reqwest`] client.
//!
//! Wrap your `reqwest::Client` once with [`OAuth2Middleware`] and stop
//! thinking about tokens: the middleware attaches the access token to the
//! origins you allow, refreshes it before it expires, and when an API still
//! answers 401 it refreshes **once for everyone** (single flight), stores any
//! rotated refresh token, and replays the original request.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use reqwest_oauth2_refresh::{OAuth2Middleware, TokenManager, TokenSet};
//!
//! let manager = TokenManager::builder("https://oauth2.googleapis.com/token")
//!     .client_id("my-app.apps.googleusercontent.com")
//!     .client_secret(std::env::var("GOOGLE_CLIENT_SECRET")?)
//!     .initial_tokens(
//!         TokenSet::new(std::env::var("ACCESS_TOKEN")?)
//!             .with_refresh_token(std::env::var("REFRESH_TOKEN")?)
//!             .with_expires_in(Duration::from_secs(3599)),
//!     )
//!     .on_refresh(|tokens| {
//!         // Persist the rotated refresh token before it is used.
//!         let _ = tokens.refresh_token();
//!     })
//!     .build()?;
//! let auth = OAuth2Middleware::builder(manager.clone())
//!     .allow_origin("https://www.googleapis.com")
//!     .build()?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(auth)
//!     .build();
//! let files = client
//!     .get("https://www.googleapis.com/drive/v3/files")
//!     .send()
//!     .await?;
//! # let _ = files; Ok(()) }
//! ```
//!
//! The parts:
//! - [`TokenSet`], [`AccessToken`], [`RefreshToken`]: the secrets, which
//!   never show in `Debug` output.
//! - [`TokenManager`]: the current tokens, single-flight refresh, rotation,
//!   persistence through a [`TokenStore`]. Useful on its own.
//! - [`OAuth2Middleware`]: the thin `reqwest-middleware` adapter.
//! - [`Error`]: what went wrong, one variant per thing you can act on.
//!
//! Features (none on by default):
//! - `tower`: `tower::OAuth2Layer`, the same rules for any
//!   `tower::Service<http::Request<B>>` (hyper, tonic channels), with the
//!   401 / gRPC `UNAUTHENTICATED` recovery. Adds no crate to the build
//!   (`tower-service`, `tower-layer`, `http-body` are reqwest's already).
//! - `tonic`: `tower`, plus `OAuth2Interceptor` (a synchronous tonic
//!   interceptor) and replay of buffered tonic request bodies by the
//!   layer; depends on `tonic` without its transport.
//! - `file-store`: `FileStore`, a token file shared by the processes of one
//!   host.
//! - `redis`: `RedisStore`, a token set in Redis shared by many hosts.
//! - `cli`: the `oauth2-refresh` command-line tool.
//!
//! TLS: this crate depends on `reqwest` without default features, so your own
//! `reqwest` dependency decides the TLS stack (the default `reqwest` features
//! include one).
//!
//! # How it is built
//!
//! One request, through the parts (each a module of its own):
//!
//! 1. **`auth_flow`**, transport-agnostic: does this request get the token
//!    (allowed origin, no `Authorization` of its own, no [`SkipOAuth2`])?
//!    The reqwest middleware is glue over it.
//! 2. **`manager`**: the lease of the published token, read with one atomic
//!    load (`manager/current.rs`); a stale one goes through the single flight
//!    (`manager/flight.rs`): one caller leads, holding a guard that ends in
//!    exactly one publish or failure, and every other caller follows its
//!    outcome. The leader spends the refresh token, or adopts the set a peer
//!    sharing the store refreshed (`manager/refresh.rs`), saving it through a
//!    store session that knows whether the store's lock is held
//!    (`manager/persist.rs`), before anyone uses it.
//! 3. **`endpoint`**: the token endpoint client builds every attempt afresh,
//!    authenticates it in one place (`endpoint/client_auth.rs`) and reads the
//!    answer with pure functions (`endpoint/response.rs`).
//! 4. Back in `auth_flow`: a 401 that a new token may fix (its
//!    `WWW-Authenticate` says so) refreshes once for every caller that saw the
//!    same token, and the request is replayed once.
//!
//! What always holds: N callers that see the same rejected or expired token
//! cause one call to the token endpoint; a rotated refresh token is stored
//! before any request uses the new access token; a request is replayed at
//! most once; the token goes only to allowed origins; a valid token costs no
//! lock and no allocation of ours; no input panics, and every wait is
//! bounded.
//!
//! # Features
//!
//! None is on by default: an SDK adds this crate without Redis, a CLI or
//! anything else it does not use.
//!
//! | feature | what it adds |
//! |---|---|
//! | `file-store` | `FileStore`: a token file shared by the processes of one host (`rustix` for `O_NOFOLLOW` and the owner check) |
//! | `redis` | `RedisStore`: a token set in Redis shared by many hosts (`redis`) |
//! | `oauth2` | `TokenSet::from_oauth2`: first tokens from the `oauth2` crate (`oauth2` without its HTTP clients) |
//! | `redis-cluster`, `redis-sentinel` | `RedisStore` on a Redis Cluster, or through Sentinel (the `redis` crate's own features) |
//! | `crypto-ring` | `SigningKey` and `DpopKey` on `ring`: ES256, EdDSA, RS256, PS256 (private_key_jwt, the JWT-bearer grant, Google service accounts, DPoP) |
//! | `crypto-rustcrypto` | the same in pure Rust (`p256`, `ed25519-dalek`): ES256 and EdDSA, no RSA |
//! | `tower`, `tonic` | `OAuth2Layer` for any tower service; `OAuth2Interceptor` and tonic body replay |
//! | `metrics` | counters and histograms through the `metrics` facade |
//! | `cli` | the `oauth2-refresh` command-line tool (`clap`, a TLS stack) |
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth_flow;
mod challenge;
mod clock;
mod discovery;
mod dpop;
mod endpoint;
mod error;
#[cfg(feature = "file-store")]
mod file_store;
mod jose;
mod manager;
mod middleware;
mod origin;
pub mod providers;
#[cfg(feature = "redis")]
mod redis_store;
mod store;
mod telemetry;
mod token;
#[cfg(feature = "tonic")]
mod tonic;
#[cfg(feature = "tower")]
pub mod tower;
mod util;

#[cfg(feature = "tonic")]
pub use crate::tonic::OAuth2Interceptor;
/// The attribute for implementing [`TokenStore`] and [`StoreLock`], re-exported
/// so that a store of your own needs no `async-trait` dependency.
pub use async_trait::async_trait;
pub use clock::{Clock, SystemClock};
pub use discovery::ServerMetadata;
#[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
pub use dpop::DpopKey;
pub use endpoint::assertion::{AssertionAudience, JwtBearerGrant};
pub use endpoint::client_auth::ClientAuth;
pub use error::{BoxError, Error};
#[cfg(feature = "file-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "file-store")))]
pub use file_store::FileStore;
pub use jose::{Algorithm, PublicJwk, Signer};
#[cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "crypto-ring", feature = "crypto-rustcrypto")))
)]
pub use jose::{CryptoBackend, SigningKey};
pub use manager::RefreshMode;
pub use manager::{
    DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_FAILURE_COOLDOWN, DEFAULT_LEEWAY, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES, DEFAULT_REFRESH_TIMEOUT, DEFAULT_REJECTED_TOKEN_MIN_AGE,
    DEFAULT_RETRY_BASE_DELAY, DEFAULT_STORE_TIMEOUT, SessionEnd, TokenManager, TokenManagerBuilder,
};
pub use middleware::{OAuth2Middleware, OAuth2MiddlewareBuilder, SkipOAuth2};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_store::{DEFAULT_LOCK_TTL, RedisStore};
pub use store::{LockedSave, MemoryStore, StoreError, StoreLock, TokenStore};
pub use token::{AccessToken, IdToken, RefreshToken, TokenSet};

/// Compiles the README's code blocks as doctests, so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
