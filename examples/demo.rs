//! A self-contained tour: an in-process authorization server that rotates
//! refresh tokens (and detects reuse), a protected API, and three waves of 50
//! concurrent requests through the middleware. Doubles as a smoke test: it
//! exits non-zero if the numbers are not the expected ones.
//!
//! Run with `cargo run --example demo`.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::future::join_all;
use reqwest_oauth2_refresh::{OAuth2Middleware, TokenManager, TokenSet};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const LIFETIME: Duration = Duration::from_secs(2);
const PAUSE: Duration = Duration::from_millis(2500); // longer than LIFETIME
const WAVES: usize = 3;
const PER_WAVE: usize = 50;

/// The authorization server's memory, shared with the API it protects.
#[derive(Default)]
struct Server {
    state: Mutex<State>,
    token_calls: AtomicUsize,
    invalid_grants: AtomicUsize,
    api_401s: AtomicUsize,
}

#[derive(Default)]
struct State {
    access: Option<(String, Instant)>,
    refresh: String,
    serial: u32,
}

struct TokenEndpoint(Arc<Server>, String);

impl Respond for TokenEndpoint {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.0.token_calls.fetch_add(1, SeqCst);
        let error = |status, code: &str| {
            ResponseTemplate::new(status).set_body_json(serde_json::json!({ "error": code }))
        };
        if authorization(req) != Some(self.1.as_str()) {
            return error(401, "invalid_client");
        }
        let form: Vec<(String, String)> = form_urlencoded::parse(&req.body).into_owned().collect();
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if field("grant_type") != Some("refresh_token") {
            return error(400, "unsupported_grant_type");
        }
        let presented = field("refresh_token").unwrap_or_default();
        let mut s = self.0.state.lock().unwrap();
        if presented != s.refresh {
            // Only the latest refresh token is live: a spent one coming back
            // means two refreshes raced (or it leaked), which real servers
            // punish by revoking the whole token family.
            self.0.invalid_grants.fetch_add(1, SeqCst);
            return error(400, "invalid_grant");
        }
        s.serial += 1;
        s.refresh = format!("rt-{}", s.serial);
        let access = format!("at-{}", s.serial);
        s.access = Some((access.clone(), Instant::now() + LIFETIME));
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": LIFETIME.as_secs(),
            "refresh_token": s.refresh,
        }))
    }
}

struct Api(Arc<Server>);

impl Respond for Api {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let token = authorization(req).and_then(|h| h.strip_prefix("Bearer "));
        let access = self.0.state.lock().unwrap().access.clone();
        if matches!((access, token), (Some((a, until)), Some(t)) if a == t && Instant::now() < until)
        {
            return ResponseTemplate::new(200).set_body_json(serde_json::json!({ "data": 42 }));
        }
        self.0.api_401s.fetch_add(1, SeqCst);
        ResponseTemplate::new(401)
            .insert_header("www-authenticate", r#"Bearer error="invalid_token""#)
    }
}

fn authorization(req: &Request) -> Option<&str> {
    req.headers.get("authorization")?.to_str().ok()
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .init();
    let server = Arc::new(Server::default());
    server.state.lock().unwrap().refresh = "rt-initial".into();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("demo-client:demo-secret")
    );

    let (auth_server, api_server) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(TokenEndpoint(server.clone(), basic))
        .mount(&auth_server)
        .await;
    Mock::given(method("GET"))
        .and(path("/data"))
        .respond_with(Api(server.clone()))
        .mount(&api_server)
        .await;

    // A real app persists the rotated refresh token in this hook; here we
    // count rotations (a refresh token unlike the last one seen).
    let (hook_calls, rotations) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let last_seen = Arc::new(Mutex::new(String::from("rt-initial")));
    let (calls, rotated) = (hook_calls.clone(), rotations.clone());
    let manager = TokenManager::builder(&format!("{}/token", auth_server.uri()))
        .client_id("demo-client")
        .client_secret("demo-secret")
        // The API no longer accepts this access token and it has no known
        // expiry, so the first wave learns it is dead from 401s.
        .initial_tokens(TokenSet::new("at-revoked").with_refresh_token("rt-initial"))
        .on_refresh(move |tokens: &TokenSet| {
            calls.fetch_add(1, SeqCst);
            let refresh = tokens
                .refresh_token()
                .map(|t| t.secret())
                .unwrap_or_default();
            let mut last = last_seen.lock().unwrap();
            if *last != refresh {
                rotated.fetch_add(1, SeqCst);
                println!(
                    "  on_refresh: rotated refresh token saved ({} chars, [redacted])",
                    refresh.len()
                );
                *last = refresh.to_owned();
            }
        })
        .build()
        .expect("manager");
    let auth = OAuth2Middleware::builder(manager)
        .allow_origin(&api_server.uri())
        .build()
        .expect("middleware");
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build();
    let url = format!("{}/data", api_server.uri());

    let (mut sent, mut ok, mut wave_401s) = (0, 0, Vec::new());
    let started = Instant::now();
    for wave in 1..=WAVES {
        if wave > 1 {
            tokio::time::sleep(PAUSE).await; // let the access token expire
        }
        let (refreshes_before, rejected_before) = (
            server.token_calls.load(SeqCst),
            server.api_401s.load(SeqCst),
        );
        let results = join_all((0..PER_WAVE).map(|_| client.get(&url).send())).await;
        let good = results
            .iter()
            .filter(|r| matches!(r, Ok(resp) if resp.status().is_success()))
            .count();
        for err in results.iter().filter_map(|r| r.as_ref().err()) {
            eprintln!("  request failed: {err}");
        }
        let rejected = server.api_401s.load(SeqCst) - rejected_before;
        let refreshes = server.token_calls.load(SeqCst) - refreshes_before;
        let plural = if refreshes == 1 { "" } else { "es" };
        println!(
            "wave {wave}: {PER_WAVE} requests, {good} ok, API sent {rejected} x 401, {refreshes} refresh{plural}"
        );
        (sent, ok) = (sent + PER_WAVE, ok + good);
        wave_401s.push(rejected);
    }

    let token_calls = server.token_calls.load(SeqCst);
    let invalid_grants = server.invalid_grants.load(SeqCst);
    let rotations = rotations.load(SeqCst);
    println!("--- summary ({:.1} s) ---", started.elapsed().as_secs_f64());
    println!("requests sent:                  {sent}");
    println!("requests succeeded:             {ok}");
    println!(
        "401s the API returned:          {} (per wave: {wave_401s:?})",
        wave_401s.iter().sum::<usize>()
    );
    println!("token-endpoint calls:           {token_calls}");
    let hook_calls = hook_calls.load(SeqCst);
    println!("on_refresh calls:               {hook_calls}");
    println!("rotated refresh tokens saved:   {rotations}");
    println!("invalid_grant (reuse detected): {invalid_grants}");

    // Wave 1 replays after one shared refresh; later waves start with an
    // expired token, refresh before sending, and so see no 401 at all.
    let checks = [
        (ok == sent, "every request succeeded"),
        (token_calls == WAVES, "exactly one refresh per wave"),
        (hook_calls == WAVES, "on_refresh saw each refresh"),
        (rotations == WAVES, "every rotation reached on_refresh"),
        (invalid_grants == 0, "no spent refresh token reused"),
        ((1..=PER_WAVE).contains(&wave_401s[0]), "wave 1 got 401s"),
        (wave_401s[1..].iter().all(|&n| n == 0), "no 401s later"),
    ];
    let failed: Vec<_> = checks
        .iter()
        .filter(|(pass, _)| !pass)
        .map(|(_, what)| *what)
        .collect();
    if !failed.is_empty() {
        eprintln!("FAILED: {}", failed.join("; "));
        std::process::exit(1);
    }
    println!("all checks passed");
}
