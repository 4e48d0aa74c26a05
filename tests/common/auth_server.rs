//! A stateful authorization server and API for fleet tests: it rotates the
//! refresh token on every refresh, revokes the whole family when a spent
//! refresh token comes back (reuse detection, RFC 9700 §4.14.2), and lets the
//! test revoke the current access token to start a new "expiry".

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

#[derive(Debug, Default)]
pub struct State {
    pub generation: u64,
    pub access: String,
    pub access_valid: bool,
    pub refresh: String,
    pub spent: HashSet<String>,
    pub family_revoked: bool,
    pub refreshes: u64,
    pub invalid_grants: u64,
    pub api_ok: u64,
    pub api_401: u64,
}

#[derive(Clone)]
pub struct AuthServer {
    pub server: Arc<MockServer>,
    pub state: Arc<Mutex<State>>,
}

impl AuthServer {
    /// Starts with access token `at-0` and refresh token `rt-0`.
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            access: "at-0".into(),
            access_valid: true,
            refresh: "rt-0".into(),
            ..State::default()
        }));
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(TokenEndpoint(state.clone()))
            .mount(&server)
            .await;
        Mock::given(path("/api"))
            .respond_with(Api(state.clone()))
            .mount(&server)
            .await;
        Self {
            server: Arc::new(server),
            state,
        }
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.server.uri())
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.server.uri())
    }

    /// The current access token stops working, as if it expired.
    pub fn expire_access_token(&self) {
        self.state.lock().unwrap().access_valid = false;
    }

    pub fn snapshot(&self) -> (u64, u64, bool) {
        let s = self.state.lock().unwrap();
        (s.refreshes, s.invalid_grants, s.family_revoked)
    }
}

struct TokenEndpoint(Arc<Mutex<State>>);

impl Respond for TokenEndpoint {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let presented = form_urlencoded::parse(&request.body)
            .find(|(k, _)| k == "refresh_token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let mut s = self.0.lock().unwrap();
        if s.family_revoked || presented != s.refresh {
            if s.spent.contains(&presented) {
                s.family_revoked = true;
            }
            s.invalid_grants += 1;
            return ResponseTemplate::new(400)
                .set_body_json(serde_json::json!({"error": "invalid_grant"}));
        }
        s.spent.insert(presented);
        s.generation += 1;
        s.refreshes += 1;
        s.access = format!("at-{}", s.generation);
        s.access_valid = true;
        s.refresh = format!("rt-{}", s.generation);
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": s.access,
            "token_type": "Bearer",
            "refresh_token": s.refresh,
            "expires_in": 3600,
        }))
    }
}

struct Api(Arc<Mutex<State>>);

impl Respond for Api {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut s = self.0.lock().unwrap();
        let expected = format!("Bearer {}", s.access);
        let ok = s.access_valid
            && !s.family_revoked
            && request
                .headers
                .get("authorization")
                .is_some_and(|v| v.as_bytes() == expected.as_bytes());
        if ok {
            s.api_ok += 1;
            ResponseTemplate::new(200)
        } else {
            s.api_401 += 1;
            ResponseTemplate::new(401)
                .insert_header("www-authenticate", r#"Bearer error="invalid_token""#)
        }
    }
}
