//! A worker process: this test binary run again with `CHAOS_WORKER` set.
//! It has one `TokenManager` on the shared store (the token file, or the
//! Redis key through the Redis proxy), whose token endpoint is the fault
//! proxy, and an `OAuth2Middleware` client for the server's `/api/me`. Its
//! tasks send requests in a loop until its stdin closes, and it prints one
//! line per request: `@@req <unix ms at the send> <ms it took> <outcome>
//! end`. The ` end` lets the driver tell a line from the partial one a
//! SIGKILL may leave.

use std::process::ExitCode;
use std::time::Duration;

use reqwest_oauth2_refresh::{
    ClientAuth, Error, FileStore, OAuth2Middleware, RedisStore, TokenManager,
};
use tokio::io::AsyncReadExt as _;

use crate::faults::unix_ms;
use crate::proxy::WORKER_HEADER;

pub const WORKER_ENV: &str = "CHAOS_WORKER";
/// Concurrent request loops per worker, and the pause each makes.
const LOOPS: usize = 2;
const PAUSE: Duration = Duration::from_millis(150);

/// The knobs every worker shares, chosen for 2-second access tokens: a
/// refresh must fail fast enough under faults to let the next one try.
pub const REFRESH_TIMEOUT: Duration = Duration::from_millis(2500);
pub const STORE_TIMEOUT: Duration = Duration::from_millis(800);
/// Longer than a refresh can take (its budget plus its store operations),
/// as `RedisStore::with_lock_ttl` asks; a killed holder blocks this long.
pub const LOCK_TTL: Duration = Duration::from_secs(6);

pub fn main(index: &str) -> ExitCode {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    // The library's warnings and errors go to the worker's log file (the
    // crate never logs a token); the driver counts some of them.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .init();
    let runtime = crate::common::service::multi_thread(2);
    runtime.block_on(async {
        let Ok(manager) = manager(index, &var).await else {
            eprintln!("worker {index}: the manager did not build");
            return ExitCode::FAILURE;
        };
        let api = var("CHAOS_API_URL");
        let origin = reqwest::Url::parse(&api)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        let auth = OAuth2Middleware::builder(manager)
            .allow_origin(&origin)
            .build()
            .expect("the API is on loopback");
        // Idle connections go before Node's keep-alive timeout (5 s) closes
        // them: a request written to a connection the server is closing
        // fails with no error of ours, and requests that waited out a dead
        // holder's Redis lock (about 5 s) left theirs idle that long.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .expect("a client");
        let client = reqwest_middleware::ClientBuilder::new(http)
            .with(auth)
            .build();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut loops = tokio::task::JoinSet::new();
        for _ in 0..LOOPS {
            let (client, api, mut stop) = (client.clone(), api.clone(), stop_rx.clone());
            loops.spawn(async move {
                while !*stop.borrow() {
                    let sent = unix_ms();
                    let outcome = outcome(client.get(&api).send().await);
                    println!("@@req {sent} {} {outcome} end", unix_ms() - sent);
                    let _ = tokio::time::timeout(PAUSE, stop.changed()).await;
                }
            });
        }
        // The driver closes our stdin to stop us.
        let mut sink = [0u8; 64];
        while !matches!(tokio::io::stdin().read(&mut sink).await, Ok(0) | Err(_)) {}
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(30), async {
            while loops.join_next().await.is_some() {}
        })
        .await;
        println!("@@done");
        ExitCode::SUCCESS
    })
}

async fn manager(index: &str, var: &impl Fn(&str) -> String) -> Result<TokenManager, Error> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(WORKER_HEADER, index.parse().expect("a header value"));
    // A new connection per call, so that every call meets the proxy's
    // per-connection faults.
    let token_http = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let builder = TokenManager::builder(&var("CHAOS_TOKEN_URL"))
        .client_id(var("CHAOS_CLIENT_ID"))
        .client_secret(var("CHAOS_CLIENT_SECRET"))
        .client_auth(ClientAuth::SecretBasic)
        .http_client(token_http)
        .refresh_timeout(REFRESH_TIMEOUT)
        .attempt_timeout(Duration::from_millis(1500))
        .retry_base_delay(Duration::from_millis(100))
        .failure_cooldown(Duration::from_millis(300))
        .store_timeout(STORE_TIMEOUT)
        // 2-second tokens: a 401 for a token a second old is an expiry in
        // flight, not a misconfigured API.
        .rejected_token_min_age(Duration::ZERO);
    let store = var("CHAOS_STORE");
    let builder = if let Some(path) = store.strip_prefix("file:") {
        builder.store(FileStore::new(path)?)
    } else {
        let url = store.strip_prefix("redis:").unwrap_or_default();
        let key = var("CHAOS_REDIS_KEY");
        builder.store(
            RedisStore::connect(url, &key)
                .await?
                .with_lock_ttl(LOCK_TTL),
        )
    };
    builder.build()
}

/// `ok`, `status:<code>`, `transient:<kind>`, `error:<kind>` or
/// `transport` (the API call failed with no error of ours).
fn outcome(result: Result<reqwest::Response, reqwest_middleware::Error>) -> String {
    match result {
        Ok(response) if response.status().is_success() => "ok".to_owned(),
        Ok(response) => format!("status:{}", response.status().as_u16()),
        Err(e) => match Error::find_in(&e) {
            Some(ours) if ours.is_transient() => format!("transient:{}", kind(ours)),
            Some(ours) => format!("error:{}", kind(ours)),
            None => {
                // The worker's log (stderr) says why: the report has only
                // the kind.
                eprintln!("the API call failed: {e:?}");
                "transport".to_owned()
            }
        },
    }
}

fn kind(error: &Error) -> String {
    match error {
        Error::InvalidGrant { .. } => "InvalidGrant".to_owned(),
        Error::OAuth { status, error, .. } => format!("OAuth-{}-{error}", status.as_u16()),
        Error::HttpStatus { status } => format!("HttpStatus-{}", status.as_u16()),
        Error::Transport(_) => "Transport".to_owned(),
        Error::InvalidResponse { .. } => "InvalidResponse".to_owned(),
        Error::NoRefreshToken => "NoRefreshToken".to_owned(),
        Error::NoTokens => "NoTokens".to_owned(),
        Error::Timeout(_) => "Timeout".to_owned(),
        Error::Store { operation, .. } => format!("Store-{operation}"),
        Error::Config(_) => "Config".to_owned(),
        Error::Aborted(_) => "Aborted".to_owned(),
        _ => "Other".to_owned(),
    }
}
