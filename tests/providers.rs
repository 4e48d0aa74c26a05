//! Real providers' refresh answers, from their documentation (or, where it
//! says nothing, from what public clients report), replayed by a local
//! token endpoint: the documented success refreshes, and the documented
//! dead-refresh-token answer reaches the caller through `OAuth2Middleware`
//! as `Error::InvalidGrant`, the README's "sign in again" branch.
//!
//! One fixture per provider in `tests/providers/NAME.json`:
//!
//! - `provider`, `token_endpoint` (a concrete example URL; its path is
//!   the path the local server answers on), `client_auth` (`post` or
//!   `basic`, as the provider documents for a client with a secret),
//!   `rotation` (`rotates` or `keeps`, for the README table),
//!   `initial_refresh_token` (optional);
//! - `success` and `dead_token`: `status`, `body`, `source` (the URL the
//!   answer was taken from), `source_kind` (`documented` or `observed`: not
//!   in the provider's docs, as public clients report it) and `checked`
//!   (`read`: read in the source for this corpus; `partly`: its fields or
//!   code read there, some example values not the source's; `recalled`: the
//!   source was not re-read, the body follows what it is known to say).
//!
//! Nothing here was run against a live provider.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest_oauth2_refresh::{
    ClientAuth, Error, TokenManager, TokenManagerBuilder, TokenSet, providers,
};
use serde_json::Value;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::{client, form, our_error};

const CLIENT_ID: &str = "client-1";
const CLIENT_SECRET: &str = "secret-1";

/// A provider's fixture, parsed.
struct Fixture {
    name: &'static str,
    json: Value,
}

impl Fixture {
    fn new(name: &'static str, text: &str) -> Self {
        let json = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}.json: {e}"));
        Self { name, json }
    }

    fn text(&self, key: &str) -> &str {
        self.json[key]
            .as_str()
            .unwrap_or_else(|| panic!("{}.json: no `{key}`", self.name))
    }

    /// The path of the documented token endpoint, which the local server
    /// answers on.
    fn endpoint_path(&self) -> String {
        url::Url::parse(self.text("token_endpoint"))
            .expect("token_endpoint is a URL")
            .path()
            .to_owned()
    }

    /// The documented endpoint with its origin replaced by the server's.
    fn local_url(&self, server: &MockServer) -> String {
        format!("{}{}", server.uri(), self.endpoint_path())
    }

    fn initial_refresh_token(&self) -> &str {
        self.json["initial_refresh_token"]
            .as_str()
            .unwrap_or("rt-0")
    }

    fn answer(&self, which: &str) -> ResponseTemplate {
        let answer = &self.json[which];
        let status = answer["status"].as_u64().expect("status") as u16;
        ResponseTemplate::new(status).set_body_json(answer["body"].clone())
    }

    fn success_body(&self) -> &Value {
        &self.json["success"]["body"]
    }
}

/// Everything a provider's test runs against: its token endpoint and an
/// API that accepts the refreshed token once, then answers 401.
struct Provider {
    fixture: Fixture,
    token_server: MockServer,
    api: MockServer,
}

impl Provider {
    /// The token endpoint answers the documented success once, then the
    /// documented dead-token answer once (a second call would fail the
    /// test when the server is dropped).
    async fn start(fixture: Fixture) -> Self {
        let token_server = MockServer::start().await;
        let endpoint = fixture.endpoint_path();
        Mock::given(method("POST"))
            .and(path(endpoint.as_str()))
            .respond_with(fixture.answer("success"))
            .up_to_n_times(1)
            .expect(1)
            .mount(&token_server)
            .await;
        Mock::given(method("POST"))
            .and(path(endpoint.as_str()))
            .respond_with(fixture.answer("dead_token"))
            .expect(1)
            .mount(&token_server)
            .await;

        let api = MockServer::start().await;
        let new_access = fixture.success_body()["access_token"]
            .as_str()
            .expect("the success has an access_token");
        let bearer = format!("Bearer {new_access}");
        Mock::given(path("/data"))
            .and(header("authorization", bearer.as_str()))
            .respond_with(ResponseTemplate::new(200))
            .up_to_n_times(1)
            .expect(1)
            .mount(&api)
            .await;
        Mock::given(path("/data"))
            .and(header("authorization", bearer.as_str()))
            .respond_with(ResponseTemplate::new(401))
            .expect(2)
            .mount(&api)
            .await;
        Self {
            fixture,
            token_server,
            api,
        }
    }

    /// The server's origin, for presets that take a host or base URL.
    fn origin(&self) -> String {
        self.token_server.uri()
    }

    /// The documented token endpoint on the local server, for presets with
    /// a fixed host (through `providers::rules`) and plain builders.
    fn token_url(&self) -> String {
        self.fixture.local_url(&self.token_server)
    }

    /// What every test adds to the builder the README tells users to write:
    /// credentials, an expired access token, and fast retries.
    fn finish(&self, builder: TokenManagerBuilder) -> TokenManager {
        builder
            .client_id(CLIENT_ID)
            .client_secret(CLIENT_SECRET)
            .initial_tokens(
                TokenSet::new("at-0")
                    .with_refresh_token(self.fixture.initial_refresh_token())
                    .with_expires_in(Duration::ZERO),
            )
            .retry_base_delay(Duration::from_millis(1))
            .attempt_timeout(Duration::from_secs(5))
            // No cooldown: a dead token must stay dead on its own.
            .failure_cooldown(Duration::ZERO)
            .build()
            .unwrap_or_else(|e| panic!("{}: {e}", self.fixture.name))
    }

    /// The documented success refreshes and its token is used; the
    /// documented dead-token answer reaches the caller as
    /// `Error::InvalidGrant` and is not asked for again.
    async fn check(self, manager: TokenManager) {
        let name = self.fixture.name;
        let success = self.fixture.success_body().clone();
        let client = client(&manager, &self.api);
        let url = format!("{}/data", self.api.uri());

        // 1. The expired token is refreshed before the request; the API
        //    accepts the new one.
        let response =
            client.get(&url).send().await.unwrap_or_else(|e| {
                panic!("{name}: the documented success did not refresh: {e:?}")
            });
        assert_eq!(response.status(), 200, "{name}");
        let tokens = manager.cached_tokens().expect("tokens");
        assert_eq!(
            tokens.access_token().secret(),
            success["access_token"].as_str().unwrap(),
            "{name}"
        );
        let kept = self.fixture.initial_refresh_token();
        let expected_refresh = success["refresh_token"].as_str().unwrap_or(kept);
        assert_eq!(
            tokens.refresh_token().map(|r| r.secret().to_owned()),
            Some(expected_refresh.to_owned()),
            "{name}: a rotated refresh token is kept, or the old one when none comes back"
        );

        // 2. The API rejects the token; the refresh meets the dead-token
        //    answer, which the caller sees as InvalidGrant.
        let err = client
            .get(&url)
            .send()
            .await
            .expect_err("the dead refresh token must fail the request");
        let ours = our_error(&err);
        assert!(
            matches!(ours, Error::InvalidGrant { .. }),
            "{name}: the documented dead-token answer is {ours:?}, not InvalidGrant"
        );

        // 3. Dead stays dead without another call to the token endpoint
        //    (it expects 2), even with no cooldown, until the tokens change.
        let err = client.get(&url).send().await.expect_err("still dead");
        let again = our_error(&err);
        assert!(
            matches!(again, Error::InvalidGrant { .. }),
            "{name}: {again:?}"
        );

        // 4. What was sent: grant, refresh tokens in order, client
        //    authentication as documented.
        let requests = self.token_server.received_requests().await.unwrap();
        assert_eq!(requests.len(), 2, "{name}");
        let sent: Vec<_> = requests
            .iter()
            .map(|r| field(&form(&r.body), "refresh_token"))
            .collect();
        assert_eq!(
            sent,
            [Some(kept.to_owned()), Some(expected_refresh.to_owned())],
            "{name}: the refresh tokens spent"
        );
        for request in &requests {
            let fields = form(&request.body);
            assert_eq!(
                field(&fields, "grant_type").as_deref(),
                Some("refresh_token")
            );
            let accept = request.headers.get("accept").map(|v| v.to_str().unwrap());
            assert_eq!(accept, Some("application/json"), "{name}");
            let basic = request
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            match self.fixture.text("client_auth") {
                "post" => {
                    assert_eq!(basic, None, "{name}: no Basic header");
                    assert_eq!(field(&fields, "client_id").as_deref(), Some(CLIENT_ID));
                    assert_eq!(
                        field(&fields, "client_secret").as_deref(),
                        Some(CLIENT_SECRET),
                        "{name}: the secret in the body"
                    );
                }
                "basic" => {
                    let expected = STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
                    assert_eq!(basic, Some(format!("Basic {expected}")), "{name}");
                    assert_eq!(field(&fields, "client_secret"), None, "{name}");
                }
                other => panic!("{name}.json: client_auth `{other}`"),
            }
        }
    }
}

fn field(fields: &[(String, String)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

macro_rules! fixture {
    ($name:literal) => {
        Fixture::new($name, include_str!(concat!("providers/", $name, ".json")))
    };
}

/// Every fixture, for the corpus-wide checks.
fn all_fixtures() -> Vec<Fixture> {
    vec![
        fixture!("google"),
        fixture!("entra"),
        fixture!("auth0"),
        fixture!("okta"),
        fixture!("keycloak"),
        fixture!("cognito"),
        fixture!("github"),
        fixture!("slack"),
        fixture!("twitch"),
        fixture!("hubspot"),
        fixture!("zoho"),
        fixture!("fitbit"),
        fixture!("strava"),
        fixture!("dropbox"),
        fixture!("spotify"),
        fixture!("salesforce"),
        fixture!("xero"),
        fixture!("intuit"),
        fixture!("box"),
        fixture!("atlassian"),
    ]
}

// --- Presets -------------------------------------------------------------

/// Google. Success: https://developers.google.com/identity/protocols/oauth2/web-server#offline
/// Dead token: https://developers.google.com/google-ads/api/docs/get-started/common-errors
#[tokio::test]
async fn google() {
    let p = Provider::start(fixture!("google")).await;
    let manager = p.finish(providers::rules::google(TokenManager::builder(
        &p.token_url(),
    )));
    p.check(manager).await;
}

/// Microsoft Entra ID. Success: https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow#refresh-the-access-token
/// Dead token: https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes (AADSTS70008)
#[tokio::test]
async fn entra() {
    let p = Provider::start(fixture!("entra")).await;
    let manager = p.finish(
        providers::rules::entra(TokenManager::builder(&p.token_url()))
            .scope("https://graph.microsoft.com/mail.read offline_access"),
    );
    p.check(manager).await;
}

/// Auth0. Success: https://auth0.com/docs/secure/tokens/refresh-tokens/use-refresh-tokens
/// Dead token (a 403): https://support.auth0.com/center/s/article/troubleshoot-refresh-token-unknown-or-invalid-before-expiry-403-unknown-or-invalid-refresh-token
#[tokio::test]
async fn auth0() {
    let p = Provider::start(fixture!("auth0")).await;
    let manager = p.finish(providers::auth0(&p.origin()));
    p.check(manager).await;
}

/// Okta. Success and dead token: https://developer.okta.com/docs/guides/refresh-tokens/main/
#[tokio::test]
async fn okta() {
    let p = Provider::start(fixture!("okta")).await;
    let manager = p.finish(providers::okta(&p.origin(), "default"));
    p.check(manager).await;
}

/// Keycloak. Success: https://www.keycloak.org/securing-apps/oidc-layers#_token_endpoint
/// Dead token: Keycloak's TokenManager ("Token is not active").
#[tokio::test]
async fn keycloak() {
    let p = Provider::start(fixture!("keycloak")).await;
    let manager = p.finish(providers::keycloak(&p.origin(), "demo"));
    p.check(manager).await;
}

/// Amazon Cognito. Success and dead token: https://docs.aws.amazon.com/cognito/latest/developerguide/token-endpoint.html
#[tokio::test]
async fn cognito() {
    let p = Provider::start(fixture!("cognito")).await;
    let manager = p.finish(providers::cognito(&p.origin()));
    p.check(manager).await;
}

/// GitHub App user tokens. Success: https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens
/// Dead token (`bad_refresh_token` in a 200, observed): https://github.com/interlink-hq/interLink/pull/262
#[tokio::test]
async fn github() {
    let p = Provider::start(fixture!("github")).await;
    let manager = p.finish(providers::rules::github(TokenManager::builder(
        &p.token_url(),
    )));
    p.check(manager).await;
}

/// GitHub Enterprise Server: the same answers at the host's own endpoint.
#[tokio::test]
async fn github_enterprise() {
    let p = Provider::start(fixture!("github")).await;
    let manager = p.finish(providers::github_enterprise(&p.origin()));
    p.check(manager).await;
}

/// Slack with token rotation. Success: https://docs.slack.dev/authentication/using-token-rotation
/// Dead token (`invalid_refresh_token` in a 200): https://docs.slack.dev/reference/methods/oauth.v2.access
#[tokio::test]
async fn slack() {
    let p = Provider::start(fixture!("slack")).await;
    let manager = p.finish(providers::rules::slack(TokenManager::builder(
        &p.token_url(),
    )));
    p.check(manager).await;
}

/// Twitch. Success and dead token: https://dev.twitch.tv/docs/authentication/refresh-tokens/
#[tokio::test]
async fn twitch() {
    let p = Provider::start(fixture!("twitch")).await;
    let manager = p.finish(providers::rules::twitch(TokenManager::builder(
        &p.token_url(),
    )));
    p.check(manager).await;
}

/// HubSpot. Success: https://developers.hubspot.com/docs/api-reference/legacy/authentication/oauth-tokens/v1/guide
/// Dead token (observed): https://integrate.hubspot.com/t/what-to-do-when-you-suddenly-get-bad-refresh-token-when-trying-to-refresh-an-access-token/5490
#[tokio::test]
async fn hubspot() {
    let p = Provider::start(fixture!("hubspot")).await;
    let manager = p.finish(providers::rules::hubspot(TokenManager::builder(
        &p.token_url(),
    )));
    p.check(manager).await;
}

/// Zoho. Success: https://www.zoho.com/accounts/protocol/oauth/web-apps/access-token-expiry.html
/// Dead token (observed): https://help.zoho.com/portal/en/community/topic/oauth-grant-type-refresh-token-error-invalid-code
#[tokio::test]
async fn zoho() {
    let p = Provider::start(fixture!("zoho")).await;
    let manager = p.finish(providers::zoho(&p.origin()));
    p.check(manager).await;
}

/// Fitbit. Success: https://dev.fitbit.com/build/reference/web-api/authorization/refresh-token/
/// Dead token: https://dev.fitbit.com/build/reference/web-api/troubleshooting-guide/error-messages/
#[tokio::test]
async fn fitbit() {
    let p = Provider::start(fixture!("fitbit")).await;
    let manager = p.finish(providers::rules::fitbit(TokenManager::builder(
        &p.token_url(),
    )));
    p.check(manager).await;
}

/// Strava. Success: https://developers.strava.com/docs/authentication/#refreshingexpiredaccesstokens
/// Dead token (observed, not in Strava's docs).
#[tokio::test]
async fn strava() {
    let p = Provider::start(fixture!("strava")).await;
    let manager = p.finish(providers::rules::strava(TokenManager::builder(
        &p.token_url(),
    )));
    p.check(manager).await;
}

// --- Builder options alone ------------------------------------------------

/// Dropbox: standard, secret in Basic. Success: https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token
/// Dead token (observed): https://www.volcengine.com/article/3179500
#[tokio::test]
async fn dropbox() {
    let p = Provider::start(fixture!("dropbox")).await;
    let manager = p.finish(TokenManager::builder(&p.token_url()));
    p.check(manager).await;
}

/// Spotify: standard, secret in Basic. Success: https://developer.spotify.com/documentation/web-api/tutorials/refreshing-tokens
/// Dead token: https://developer.spotify.com/blog/2026-06-18-refresh-token-expiration
#[tokio::test]
async fn spotify() {
    let p = Provider::start(fixture!("spotify")).await;
    let manager = p.finish(TokenManager::builder(&p.token_url()));
    p.check(manager).await;
}

/// Salesforce: secret in the body; no `expires_in`. Success: https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_refresh_token_flow.htm
/// Dead token: https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_flow_errors.htm
#[tokio::test]
async fn salesforce() {
    let p = Provider::start(fixture!("salesforce")).await;
    let manager =
        p.finish(TokenManager::builder(&p.token_url()).client_auth(ClientAuth::SecretPost));
    p.check(manager).await;
}

/// Xero: standard, secret in Basic. Success: https://developer.xero.com/documentation/guides/oauth2/auth-flow/#refreshing-access-and-refresh-tokens
/// Dead token: https://developer.xero.com/documentation/guides/oauth2/troubleshooting
#[tokio::test]
async fn xero() {
    let p = Provider::start(fixture!("xero")).await;
    let manager = p.finish(TokenManager::builder(&p.token_url()));
    p.check(manager).await;
}

/// Intuit QuickBooks: standard, secret in Basic. Success: https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/oauth-2.0#refresh-the-token
/// Dead token (observed): https://github.com/intuit/oauth-jsclient/issues/128
#[tokio::test]
async fn intuit() {
    let p = Provider::start(fixture!("intuit")).await;
    let manager = p.finish(TokenManager::builder(&p.token_url()));
    p.check(manager).await;
}

/// Box: secret in the body. Success: https://developer.box.com/guides/authentication/tokens/access-tokens/
/// Dead token: https://support.box.com/hc/en-us/community/posts/360049133654-What-is-the-error-code-return-by-box-API-for-a-token-that-is-expired
#[tokio::test]
async fn box_() {
    let p = Provider::start(fixture!("box")).await;
    let manager =
        p.finish(TokenManager::builder(&p.token_url()).client_auth(ClientAuth::SecretPost));
    p.check(manager).await;
}

/// Atlassian: secret in the body; no `token_type`; dead token in a 403.
/// Success: https://developer.atlassian.com/cloud/oauth/getting-started/refresh-tokens
/// Dead token: https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/
#[tokio::test]
async fn atlassian() {
    let p = Provider::start(fixture!("atlassian")).await;
    let manager =
        p.finish(TokenManager::builder(&p.token_url()).client_auth(ClientAuth::SecretPost));
    p.check(manager).await;
}

// --- Why the presets are needed ------------------------------------------

/// The providers whose dead-token answer is not standard: with a plain
/// builder, their answer is some other error, so the preset's rule is what
/// makes it `InvalidGrant`.
#[tokio::test]
async fn without_their_preset_nonstandard_answers_are_not_invalid_grant() {
    for fixture in all_fixtures() {
        if fixture.json["dead_token"]["body"]["error"] == "invalid_grant" {
            continue;
        }
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(fixture.answer("dead_token"))
            .mount(&server)
            .await;
        let manager = TokenManager::builder(&fixture.local_url(&server))
            .client_id(CLIENT_ID)
            .initial_tokens(TokenSet::new("at-0").with_refresh_token("rt-0"))
            .max_retries(0)
            .build()
            .unwrap();
        let err = manager.refresh().await.unwrap_err();
        assert!(
            !matches!(err, Error::InvalidGrant { .. }),
            "{}: a plain builder already sees InvalidGrant, the preset is not needed",
            fixture.name
        );
    }
}

/// Slack's `token_type` `bot` is refused without the preset.
#[tokio::test]
async fn without_its_preset_slacks_token_type_is_refused() {
    let fixture = fixture!("slack");
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(fixture.answer("success"))
        .mount(&server)
        .await;
    let manager = TokenManager::builder(&fixture.local_url(&server))
        .client_id(CLIENT_ID)
        .initial_tokens(TokenSet::new("at-0").with_refresh_token("rt-0"))
        .build()
        .unwrap();
    let err = manager.refresh().await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
}

/// A Slack user token (`token_type` `user`) refreshes with the preset too.
#[tokio::test]
async fn slack_user_tokens_refresh() {
    let server = MockServer::start().await;
    let body = serde_json::json!({
        "ok": true, "access_token": "xoxe.xoxp-1-new", "refresh_token": "xoxe-1-user",
        "expires_in": 43200, "token_type": "user"
    });
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    let manager = providers::rules::slack(TokenManager::builder(&format!(
        "{}/api/oauth.v2.access",
        server.uri()
    )))
    .client_id(CLIENT_ID)
    .client_secret(CLIENT_SECRET)
    .initial_tokens(TokenSet::new("at-0").with_refresh_token("xoxe-1-old"))
    .build()
    .unwrap();
    let tokens = manager.refresh().await.unwrap();
    assert_eq!(tokens.access_token().secret(), "xoxe.xoxp-1-new");
    assert_eq!(tokens.refresh_token().unwrap().secret(), "xoxe-1-user");
}

// --- The corpus itself -----------------------------------------------------

/// Every fixture file is tested, cites https sources, and says how it was
/// checked; the README's provider table has a row for each provider.
#[test]
fn the_corpus_is_complete_and_cited() {
    let fixtures = all_fixtures();
    assert!(fixtures.len() >= 15, "at least 15 providers");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/providers");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let mut listed: Vec<String> = fixtures
        .iter()
        .map(|f| format!("{}.json", f.name))
        .collect();
    listed.sort();
    assert_eq!(files, listed, "every fixture file is in all_fixtures()");

    let readme = include_str!("../README.md");
    for fixture in &fixtures {
        let name = fixture.name;
        for which in ["success", "dead_token"] {
            let answer = &fixture.json[which];
            let source = answer["source"].as_str().unwrap_or_default();
            assert!(source.starts_with("https://"), "{name} {which}: source");
            assert!(
                ["read", "partly", "recalled"].contains(&answer["checked"].as_str().unwrap_or("")),
                "{name} {which}: checked"
            );
            assert!(
                answer["status"].is_u64() && answer["body"].is_object(),
                "{name} {which}"
            );
        }
        assert!(
            ["documented", "observed"].contains(
                &fixture.json["dead_token"]["source_kind"]
                    .as_str()
                    .unwrap_or("")
            ),
            "{name}: source_kind"
        );
        assert!(
            ["rotates", "keeps"].contains(&fixture.text("rotation")),
            "{name}: rotation"
        );
        let body = &fixture.json["success"]["body"];
        let initial = fixture.initial_refresh_token();
        let rotates = body["refresh_token"].as_str().is_some_and(|r| r != initial);
        assert_eq!(
            fixture.text("rotation") == "rotates",
            rotates,
            "{name}: `rotation` disagrees with the success body"
        );
        let row = format!("| {} |", fixture.text("provider"));
        assert!(readme.contains(&row), "{name}: no README row `{row}`");
    }
}
