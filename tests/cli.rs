//! The `oauth2-refresh` binary against wiremock token, revocation and
//! metadata endpoints on loopback: what it prints, what it stores, and the
//! exit codes scripts rely on.
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const OLD_ACCESS: &str = "old-access-token-AAAA";
const OLD_REFRESH: &str = "old-refresh-token-RRRR";
/// 27 characters.
const NEW_ACCESS: &str = "new-access-token-0123456789";
const NEW_REFRESH: &str = "new-refresh-token-SSSS";
const CLIENT_ID: &str = "cli-test";

const INVALID_GRANT_HINT: &str =
    "hint: the refresh token is expired, revoked or already used: sign in again to get a new one\n";
const INVALID_CLIENT_HINT: &str = "hint: check --client-id, the client secret or --private-key, and --auth (basic, post, none, private-key-jwt)\n";

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Neither output holds any of `secrets`.
    fn assert_no_secret(&self, secrets: &[&str]) {
        for secret in secrets {
            assert!(
                !self.stdout.contains(secret),
                "{secret} in stdout: {self:?}"
            );
            assert!(
                !self.stderr.contains(secret),
                "{secret} in stderr: {self:?}"
            );
        }
    }
}

/// Runs the binary with `args`, `stdin` (or none), and `env` on top of an
/// environment without `OAUTH2_CLIENT_SECRET`.
async fn exec(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_oauth2-refresh"));
    command
        .args(args)
        .env_remove("OAUTH2_CLIENT_SECRET")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("the binary starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        // A binary that refuses its arguments exits without reading stdin:
        // a broken pipe here is its business, and its exit code says so.
        let _ = pipe.write_all(input.as_bytes()).await;
        drop(pipe);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the binary finishes within a minute")
        .unwrap();
    Run {
        code: output.status.code().expect("an exit code"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// A fresh private directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "oauth2-refresh-cli-{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_private(path: &Path, content: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap()
        .write_all(content.as_bytes())
        .unwrap();
}

/// A token file as the library's FileStore writes it.
fn token_file(dir: &Path) -> PathBuf {
    let file = dir.join("tokens.json");
    let json = json!({
        "access_token": OLD_ACCESS,
        "refresh_token": OLD_REFRESH,
        "expires_in": 3600,
        "issued_at": 1_700_000_000u64,
        "scope": "read",
    });
    write_private(&file, &json.to_string());
    file
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The new token set as the library stores it.
fn assert_new_set(stored: &Value, refresh: &str) {
    assert_eq!(stored["access_token"], NEW_ACCESS, "{stored}");
    assert_eq!(stored["refresh_token"], refresh, "{stored}");
    assert_eq!(stored["expires_in"], 3599, "{stored}");
    assert_eq!(stored["scope"], "read write", "{stored}");
    let issued_at = stored["issued_at"].as_u64().unwrap();
    assert!(issued_at.abs_diff(now_secs()) < 60, "{stored}");
}

fn rotated_response() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "access_token": NEW_ACCESS,
        "token_type": "Bearer",
        "refresh_token": NEW_REFRESH,
        "expires_in": 3599,
        "scope": "read write",
    }))
}

fn oauth_error(status: u16, error: &str, description: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({ "error": error, "error_description": description }))
}

fn no_authorization(request: &Request) -> bool {
    !request.headers.contains_key("authorization")
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// A refresh of `OLD_REFRESH` by the public client, answered with `response`.
async fn token_endpoint(response: ResponseTemplate, calls: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains(format!("refresh_token={OLD_REFRESH}")))
        .and(body_string_contains(format!("client_id={CLIENT_ID}")))
        .and(no_authorization)
        .respond_with(response)
        .expect(calls)
        .mount(&server)
        .await;
    server
}

/// `args` plus the token endpoint of `server`, the client id and the file.
fn refresh_args<'a>(
    command: &'a str,
    token_url: &'a str,
    file: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        command,
        "--token-url",
        token_url,
        "--client-id",
        CLIENT_ID,
        "--token-file",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

const ALL_TOKENS: [&str; 4] = [OLD_ACCESS, OLD_REFRESH, NEW_ACCESS, NEW_REFRESH];

#[tokio::test]
async fn refresh_saves_the_rotated_set_in_the_token_file_and_prints_no_secret() {
    let server = token_endpoint(rotated_response(), 1).await;
    let dir = temp_dir("refresh");
    let file = token_file(&dir);
    let token_url = format!("{}/token", server.uri());

    let run = exec(&refresh_args("refresh", &token_url, &file, &[]), None, &[]).await;

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "refreshed: access token (27 chars) expires in 3599 s; refresh token rotated: yes; scope: read write\nsaved: {}\n",
            file.display()
        )
    );
    assert_eq!(run.stderr, "");
    run.assert_no_secret(&ALL_TOKENS);
    assert_new_set(&read_json(&file), NEW_REFRESH);
    assert_eq!(mode(&file), 0o600);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn refresh_keeps_the_refresh_token_the_server_did_not_rotate() {
    let server = token_endpoint(
        ResponseTemplate::new(200)
            .set_body_json(json!({ "access_token": NEW_ACCESS, "token_type": "Bearer" })),
        1,
    )
    .await;
    let dir = temp_dir("not-rotated");
    let file = token_file(&dir);
    let token_url = format!("{}/token", server.uri());

    let run = exec(&refresh_args("refresh", &token_url, &file, &[]), None, &[]).await;

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "refreshed: access token (27 chars) expiry not given; refresh token rotated: no; scope: not given\nsaved: {}\n",
            file.display()
        )
    );
    let stored = read_json(&file);
    assert_eq!(stored["access_token"], NEW_ACCESS);
    assert_eq!(stored["refresh_token"], OLD_REFRESH);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn print_tokens_prints_the_new_set_with_its_secrets() {
    let server = token_endpoint(rotated_response(), 1).await;
    let dir = temp_dir("print");
    let file = token_file(&dir);
    let token_url = format!("{}/token", server.uri());

    let run = exec(
        &refresh_args("refresh", &token_url, &file, &["--print-tokens"]),
        None,
        &[],
    )
    .await;

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "");
    let printed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_new_set(&printed, NEW_REFRESH);
    assert_eq!(
        printed,
        read_json(&file),
        "what is printed is what is stored"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn refresh_a_bare_refresh_token_from_stdin() {
    let server = token_endpoint(rotated_response(), 1).await;
    let token_url = format!("{}/token", server.uri());

    let run = exec(
        &refresh_args("refresh", &token_url, Path::new("-"), &["--print-tokens"]),
        Some(&format!("{OLD_REFRESH}\n")),
        &[],
    )
    .await;

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "");
    assert_new_set(&serde_json::from_str(&run.stdout).unwrap(), NEW_REFRESH);
}

#[tokio::test]
async fn refresh_a_token_response_from_stdin_into_a_new_token_file() {
    let server = token_endpoint(rotated_response(), 1).await;
    let token_url = format!("{}/token", server.uri());
    let dir = temp_dir("stdin-out");
    let out = dir.join("new-tokens.json");
    let response = json!({
        "access_token": OLD_ACCESS,
        "token_type": "Bearer",
        "refresh_token": OLD_REFRESH,
        "expires_in": 3600,
        "id_token": "ignored",
    });

    let run = exec(
        &refresh_args(
            "refresh",
            &token_url,
            Path::new("-"),
            &["--out", out.to_str().unwrap()],
        ),
        Some(&response.to_string()),
        &[],
    )
    .await;

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "refreshed: access token (27 chars) expires in 3599 s; refresh token rotated: yes; scope: read write\nsaved: {}\n",
            out.display()
        )
    );
    assert_eq!(run.stderr, "");
    run.assert_no_secret(&ALL_TOKENS);
    assert_new_set(&read_json(&out), NEW_REFRESH);
    assert_eq!(mode(&out), 0o600);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn stdin_without_out_or_print_tokens_is_a_usage_error() {
    let server = token_endpoint(rotated_response(), 0).await;
    let token_url = format!("{}/token", server.uri());

    let run = exec(
        &refresh_args("refresh", &token_url, Path::new("-"), &[]),
        Some(OLD_REFRESH),
        &[],
    )
    .await;

    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.starts_with(
            "error: with --token-file -, the new (possibly rotated) refresh token has nowhere to go: give --out PATH, or --print-tokens\n"
        ),
        "{run:?}"
    );
}

#[tokio::test]
async fn invalid_grant_exits_3_with_the_servers_description() {
    let server = token_endpoint(
        oauth_error(400, "invalid_grant", "Token has been expired or revoked."),
        1,
    )
    .await;
    let dir = temp_dir("invalid-grant");
    let file = token_file(&dir);
    let before = std::fs::read(&file).unwrap();
    let token_url = format!("{}/token", server.uri());

    let run = exec(&refresh_args("refresh", &token_url, &file, &[]), None, &[]).await;

    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!(
            "error: refresh failed: the authorization server rejected the refresh token: invalid_grant: Token has been expired or revoked.\n{INVALID_GRANT_HINT}"
        )
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "the file is untouched"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn invalid_client_exits_4_and_never_shows_the_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header("authorization", basic(CLIENT_ID, "env-secret-5678")))
        .respond_with(oauth_error(
            401,
            "invalid_client",
            "Client authentication failed.",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let dir = temp_dir("invalid-client");
    let file = token_file(&dir);
    let token_url = format!("{}/token", server.uri());

    let run = exec(
        &refresh_args("refresh", &token_url, &file, &[]),
        None,
        &[("OAUTH2_CLIENT_SECRET", "env-secret-5678")],
    )
    .await;

    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!(
            "error: refresh failed: the authorization server answered 401 Unauthorized: invalid_client: Client authentication failed.\n{INVALID_CLIENT_HINT}"
        )
    );
    run.assert_no_secret(&["env-secret-5678", OLD_ACCESS, OLD_REFRESH]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_secret_echoed_by_the_server_is_redacted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(oauth_error(
            401,
            "invalid_client",
            "bad secret env-secret-5678 for old-refresh-token-RRRR\u{1b}[2J",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let dir = temp_dir("echo");
    let file = token_file(&dir);
    let token_url = format!("{}/token", server.uri());

    let run = exec(
        &refresh_args("refresh", &token_url, &file, &[]),
        None,
        &[("OAUTH2_CLIENT_SECRET", "env-secret-5678")],
    )
    .await;

    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "error: refresh failed: the authorization server answered 401 Unauthorized: invalid_client: bad secret [redacted] for [redacted]\\u{{1b}}[2J\n{INVALID_CLIENT_HINT}"
        )
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_server_error_exits_5_after_the_retries() {
    let server = token_endpoint(ResponseTemplate::new(503), 3).await;
    let dir = temp_dir("unavailable");
    let file = token_file(&dir);
    let before = std::fs::read(&file).unwrap();
    let token_url = format!("{}/token", server.uri());

    let run = exec(&refresh_args("refresh", &token_url, &file, &[]), None, &[]).await;

    assert_eq!(run.code, 5, "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "error: refresh failed: the authorization server answered 503 Service Unavailable\n"
    );
    assert_eq!(std::fs::read(&file).unwrap(), before);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn an_unreachable_server_exits_5() {
    // A loopback port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = temp_dir("unreachable");
    let file = token_file(&dir);
    let token_url = format!("http://127.0.0.1:{port}/token");

    let run = exec(&refresh_args("refresh", &token_url, &file, &[]), None, &[]).await;

    assert_eq!(run.code, 5, "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: refresh failed: could not reach the authorization server"),
        "{run:?}"
    );
    run.assert_no_secret(&ALL_TOKENS);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_token_file_others_can_read_exits_6_with_the_chmod_hint() {
    use std::os::unix::fs::PermissionsExt as _;
    let server = token_endpoint(rotated_response(), 0).await;
    let dir = temp_dir("world-readable");
    let file = token_file(&dir);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let token_url = format!("{}/token", server.uri());

    for command in ["refresh", "check", "revoke"] {
        let mut args = refresh_args(command, &token_url, &file, &[]);
        args.extend(["--revocation-url", &token_url]);
        let run = exec(&args, None, &[]).await;

        assert_eq!(run.code, 6, "{command}: {run:?}");
        assert_eq!(run.stdout, "", "{command}");
        assert!(
            run.stderr.starts_with("error: cannot use the token file: "),
            "{command}: {run:?}"
        );
        assert!(
            run.stderr
                .contains(&format!("run `chmod 600 {}`", file.display())),
            "{command}: {run:?}"
        );
        assert_eq!(run.stderr.lines().count(), 1, "{command}: {run:?}");
        run.assert_no_secret(&ALL_TOKENS);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_missing_token_file_exits_6() {
    let server = token_endpoint(rotated_response(), 0).await;
    let dir = temp_dir("missing");
    let file = dir.join("absent.json");
    let token_url = format!("{}/token", server.uri());

    let run = exec(&refresh_args("refresh", &token_url, &file, &[]), None, &[]).await;

    assert_eq!(run.code, 6, "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "error: there is no token file at {0}\nhint: create it from a refresh token: `oauth2-refresh refresh --token-file - --out {0} ...` with the token on stdin\n",
            file.display()
        )
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn check_says_valid_and_keeps_the_rotated_token() {
    let server = token_endpoint(rotated_response(), 1).await;
    let dir = temp_dir("check-valid");
    let file = token_file(&dir);
    let token_url = format!("{}/token", server.uri());

    let run = exec(&refresh_args("check", &token_url, &file, &[]), None, &[]).await;

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "valid\n");
    assert_eq!(run.stderr, "");
    assert_new_set(&read_json(&file), NEW_REFRESH);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn check_says_invalid_with_the_oauth_error() {
    let cases = [
        (
            oauth_error(400, "invalid_grant", "Token has been expired or revoked."),
            3,
            "invalid: invalid_grant Token has been expired or revoked.\n",
        ),
        (
            oauth_error(401, "invalid_client", "Client authentication failed."),
            4,
            "invalid: invalid_client Client authentication failed.\n",
        ),
        (
            ResponseTemplate::new(400).set_body_json(json!({ "error": "invalid_grant" })),
            3,
            "invalid: invalid_grant\n",
        ),
    ];
    for (response, code, stdout) in cases {
        let server = token_endpoint(response, 1).await;
        let dir = temp_dir("check-invalid");
        let file = token_file(&dir);
        let token_url = format!("{}/token", server.uri());

        let run = exec(&refresh_args("check", &token_url, &file, &[]), None, &[]).await;

        assert_eq!(run.code, code, "{run:?}");
        assert_eq!(run.stdout, stdout);
        assert_eq!(run.stderr, "");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[tokio::test]
async fn discover_prints_the_endpoints() {
    let server = MockServer::start().await;
    let issuer = server.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-authorization-server"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/token"),
            "revocation_endpoint": format!("{issuer}/revoke"),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
        })))
        .expect(1)
        .mount(&server)
        .await;

    let run = exec(&["discover", &issuer], None, &[]).await;

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "issuer: {issuer}\n\
             token_endpoint: {issuer}/token\n\
             revocation_endpoint: {issuer}/revoke\n\
             token_endpoint_auth_methods_supported: client_secret_basic client_secret_post\n\
             grant_types_supported: authorization_code refresh_token\n\
             scopes_supported: (not given)\n"
        )
    );
    assert_eq!(run.stderr, "");
}

#[tokio::test]
async fn discover_of_an_unknown_issuer_fails() {
    let server = MockServer::start().await;
    let run = exec(&["discover", &server.uri()], None, &[]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "error: discovery of {} failed: the authorization server answered 404 Not Found\n",
            server.uri()
        )
    );
}

#[tokio::test]
async fn revoke_found_by_discovery_revokes_the_refresh_token_and_deletes_the_file() {
    let server = MockServer::start().await;
    let issuer = server.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-authorization-server"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/token"),
            "revocation_endpoint": format!("{issuer}/revoke"),
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .and(body_string_contains(format!("token={OLD_REFRESH}")))
        .and(body_string_contains("token_type_hint=refresh_token"))
        .and(body_string_contains(format!("client_id={CLIENT_ID}")))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let dir = temp_dir("revoke");
    let file = token_file(&dir);

    let run = exec(
        &[
            "revoke",
            "--issuer",
            &issuer,
            "--client-id",
            CLIENT_ID,
            "--token-file",
            file.to_str().unwrap(),
        ],
        None,
        &[],
    )
    .await;

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!("revoked: refresh token\ndeleted: {}\n", file.display())
    );
    assert_eq!(run.stderr, "");
    run.assert_no_secret(&ALL_TOKENS);
    assert!(!file.exists(), "the token file is deleted");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn revoke_access_token_keeps_the_token_file() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .and(body_string_contains(format!("token={OLD_ACCESS}")))
        .and(body_string_contains("token_type_hint=access_token"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let dir = temp_dir("revoke-access");
    let file = token_file(&dir);
    let before = std::fs::read(&file).unwrap();
    let revocation_url = format!("{}/revoke", server.uri());

    let run = exec(
        &[
            "revoke",
            "--access-token",
            "--revocation-url",
            &revocation_url,
            "--client-id",
            CLIENT_ID,
            "--token-file",
            file.to_str().unwrap(),
        ],
        None,
        &[],
    )
    .await;

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "revoked: access token\n");
    assert_eq!(run.stderr, "");
    assert_eq!(std::fs::read(&file).unwrap(), before);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn the_client_secret_reaches_the_server_from_a_file_or_the_environment() {
    let dir = temp_dir("secrets");
    let secret_file = dir.join("client-secret");
    write_private(&secret_file, "file-secret-1234\n");
    let secret_file = secret_file.to_str().unwrap().to_owned();

    /// Extra args, environment, the secret, whether it goes as Basic.
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str, bool);
    let cases: [Case<'_>; 4] = [
        (
            vec!["--client-secret-file", &secret_file],
            vec![],
            "file-secret-1234",
            true,
        ),
        (
            vec!["--client-secret-env", "MY_CLI_SECRET"],
            vec![("MY_CLI_SECRET", "named-env-secret-5678")],
            "named-env-secret-5678",
            true,
        ),
        (
            vec![],
            vec![("OAUTH2_CLIENT_SECRET", "default-env-secret-9012")],
            "default-env-secret-9012",
            true,
        ),
        (
            vec!["--auth", "post", "--client-secret-file", &secret_file],
            vec![],
            "file-secret-1234",
            false,
        ),
    ];
    for (extra, env, secret, as_basic) in cases {
        let server = MockServer::start().await;
        let mock = Mock::given(method("POST"))
            .and(path("/token"))
            .and(body_string_contains(format!("refresh_token={OLD_REFRESH}")));
        let mock = if as_basic {
            mock.and(header("authorization", basic(CLIENT_ID, secret)))
                .and(|request: &Request| {
                    !String::from_utf8_lossy(&request.body).contains("client_secret")
                })
        } else {
            mock.and(no_authorization)
                .and(body_string_contains(format!("client_id={CLIENT_ID}")))
                .and(body_string_contains(format!("client_secret={secret}")))
        };
        mock.respond_with(rotated_response())
            .expect(1)
            .mount(&server)
            .await;
        let file = token_file(&dir);
        let token_url = format!("{}/token", server.uri());

        let run = exec(
            &refresh_args("refresh", &token_url, &file, &extra),
            None,
            &env,
        )
        .await;

        assert_eq!(run.code, 0, "{extra:?}: {run:?}");
        assert_eq!(run.stderr, "", "{extra:?}");
        run.assert_no_secret(&[secret, OLD_ACCESS, OLD_REFRESH, NEW_ACCESS, NEW_REFRESH]);
        assert_new_set(&read_json(&file), NEW_REFRESH);
        server.verify().await;
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_missing_secret_is_a_local_problem() {
    let server = token_endpoint(rotated_response(), 0).await;
    let dir = temp_dir("no-secret");
    let file = token_file(&dir);
    let token_url = format!("{}/token", server.uri());

    let run = exec(
        &refresh_args(
            "refresh",
            &token_url,
            &file,
            &["--client-secret-env", "OAUTH2_CLI_TEST_UNSET"],
        ),
        None,
        &[],
    )
    .await;
    assert_eq!(run.code, 6, "{run:?}");
    assert_eq!(
        run.stderr,
        "error: the environment variable OAUTH2_CLI_TEST_UNSET (--client-secret-env) is not set\n"
    );

    let absent = dir.join("absent-secret");
    let run = exec(
        &refresh_args(
            "refresh",
            &token_url,
            &file,
            &["--client-secret-file", absent.to_str().unwrap()],
        ),
        None,
        &[],
    )
    .await;
    assert_eq!(run.code, 6, "{run:?}");
    assert!(
        run.stderr.starts_with(&format!(
            "error: cannot open the client secret file {}: ",
            absent.display()
        )),
        "{run:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn secrets_are_not_taken_on_the_command_line() {
    let run = exec(
        &[
            "refresh",
            "--token-url",
            "https://auth.example.com/token",
            "--token-file",
            "tokens.json",
            "--client-secret",
            "typed-secret",
        ],
        None,
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: unexpected argument '--client-secret' found"),
        "{run:?}"
    );

    let run = exec(
        &[
            "refresh",
            "--token-url",
            "https://auth.example.com/token",
            "--token-file",
            "tokens.json",
            "--param",
            "client_secret=typed-secret",
        ],
        None,
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("`client_secret` is a secret and is never taken on the command line"),
        "{run:?}"
    );
}

#[tokio::test]
async fn help_documents_the_exit_codes() {
    let run = exec(&["--help"], None, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    for line in [
        "  0  success (check: the refresh token is valid)",
        "  2  usage: missing or contradictory arguments",
        "  3  invalid_grant: the refresh token is expired, revoked or already used;",
        "  4  another OAuth error from the authorization server, for example",
        "  5  transient: network error, timeout, HTTP 5xx or 429 (after retries);",
        "  6  local problem: the token file is missing, unreadable or readable by",
    ] {
        assert!(run.stdout.contains(line), "{line:?} in {}", run.stdout);
    }
}

#[tokio::test]
async fn revoke_a_refresh_token_from_stdin() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .and(body_string_contains(format!("token={OLD_REFRESH}")))
        .and(body_string_contains("token_type_hint=refresh_token"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let revocation_url = format!("{}/revoke", server.uri());

    let run = exec(
        &[
            "revoke",
            "--revocation-url",
            &revocation_url,
            "--client-id",
            CLIENT_ID,
            "--token-file",
            "-",
        ],
        Some(&format!("{OLD_REFRESH}\n")),
        &[],
    )
    .await;

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "revoked: refresh token\n");
    assert_eq!(run.stderr, "");

    // Only an access token can be revoked without one, and stdin had none.
    let run = exec(
        &[
            "revoke",
            "--access-token",
            "--revocation-url",
            &revocation_url,
            "--token-file",
            "-",
        ],
        Some(OLD_REFRESH),
        &[],
    )
    .await;
    assert_eq!(run.code, 6, "{run:?}");
    assert_eq!(
        run.stderr,
        "error: the tokens on stdin have no access token\n"
    );
}

#[tokio::test]
async fn configuration_problems() {
    let dir = temp_dir("config");
    let file = token_file(&dir);

    // Revocation needs its endpoint, not the token endpoint.
    let run = exec(
        &refresh_args("revoke", "https://auth.example.com/token", &file, &[]),
        None,
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .starts_with("error: revoke needs --revocation-url URL or --issuer URL\n"),
        "{run:?}"
    );

    // Plain http only to loopback: nothing is sent elsewhere.
    let run = exec(
        &refresh_args("refresh", "http://auth.example.com/token", &file, &[]),
        None,
        &[],
    )
    .await;
    assert_eq!(run.code, 6, "{run:?}");
    assert_eq!(
        run.stderr,
        "error: invalid configuration: the token URL must use https (http only for loopback)\n"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A token endpoint response, as an authorization code exchange returns it.
fn fresh_response() -> Value {
    json!({
        "access_token": OLD_ACCESS,
        "token_type": "Bearer",
        "refresh_token": OLD_REFRESH,
        "expires_in": 3600,
        "scope": "read",
        "id_token": "ignored",
    })
}

/// A server standing in for every proxy: a request the binary made would
/// reach it, and it expects none.
async fn no_request_expected() -> (MockServer, Vec<(&'static str, String)>) {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .named("any request")
        .mount(&server)
        .await;
    let proxy = server.uri();
    let env = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
    ]
    .into_iter()
    .map(|name| (name, proxy.clone()))
    .collect();
    (server, env)
}

async fn load_with_file_store(path: &Path) -> reqwest_oauth2_refresh::TokenSet {
    use reqwest_oauth2_refresh::{FileStore, TokenStore as _};
    FileStore::new(path)
        .unwrap()
        .load()
        .await
        .expect("the library's FileStore reads the file")
        .expect("there is a token set")
}

async fn import(file: &Path, extra: &[&str], stdin: &str, env: &[(&str, String)]) -> Run {
    let mut args = vec!["import", "--token-file", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    exec(&args, Some(stdin), &env).await
}

#[tokio::test]
async fn import_saves_a_token_response_without_calling_any_server() {
    let (proxy, env) = no_request_expected().await;
    let dir = temp_dir("import");
    let file = dir.join("tokens.json");

    let run = import(&file, &[], &fresh_response().to_string(), &env).await;

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "imported: access token (21 chars) expires in 3600 s; refresh token: yes; scope: read\nsaved: {}\n",
            file.display()
        )
    );
    assert_eq!(run.stderr, "");
    run.assert_no_secret(&[OLD_ACCESS, OLD_REFRESH]);
    assert_eq!(mode(&file), 0o600);
    let tokens = load_with_file_store(&file).await;
    assert_eq!(tokens.access_token().secret(), OLD_ACCESS);
    assert_eq!(tokens.refresh_token().unwrap().secret(), OLD_REFRESH);
    assert_eq!(tokens.scope(), Some("read"));
    assert_eq!(tokens.expires_in(), Some(Duration::from_secs(3600)));
    // The lifetime counts from the import: the response carries no time.
    let expires_at = tokens.expires_at().unwrap();
    let from_now = expires_at
        .duration_since(SystemTime::now())
        .expect("expires in the future");
    assert!(
        from_now > Duration::from_secs(3540) && from_now <= Duration::from_secs(3600),
        "{from_now:?}"
    );
    proxy.verify().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn import_refuses_to_replace_a_token_file_without_force() {
    let (proxy, env) = no_request_expected().await;
    let dir = temp_dir("import-exists");
    let file = token_file(&dir);
    let before = std::fs::read(&file).unwrap();
    let response = json!({
        "access_token": NEW_ACCESS,
        "token_type": "Bearer",
        "refresh_token": NEW_REFRESH,
        "expires_in": 3599,
        "scope": "read write",
    })
    .to_string();

    let run = import(&file, &[], &response, &env).await;

    assert_eq!(run.code, 6, "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!(
            "error: the token file {} exists\nhint: give --force to replace it (the tokens in it are lost)\n",
            file.display()
        )
    );
    run.assert_no_secret(&ALL_TOKENS);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "the file is untouched"
    );

    let run = import(&file, &["--force"], &response, &env).await;

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "imported: access token (27 chars) expires in 3599 s; refresh token: yes; scope: read write\nsaved: {} (replaced the previous token file)\n",
            file.display()
        )
    );
    assert_eq!(run.stderr, "");
    run.assert_no_secret(&ALL_TOKENS);
    assert_new_set(&read_json(&file), NEW_REFRESH);
    assert_eq!(mode(&file), 0o600);
    proxy.verify().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn import_a_bare_refresh_token_or_a_token_file() {
    let (proxy, env) = no_request_expected().await;
    let dir = temp_dir("import-forms");

    // A bare refresh token: saved expired, so the first use refreshes.
    let bare = dir.join("bare.json");
    let run = import(&bare, &[], &format!("{OLD_REFRESH}\n"), &env).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "imported: no access token (the first use refreshes); refresh token: yes; scope: not given\nsaved: {}\n",
            bare.display()
        )
    );
    run.assert_no_secret(&[OLD_REFRESH]);
    let tokens = load_with_file_store(&bare).await;
    assert_eq!(tokens.refresh_token().unwrap().secret(), OLD_REFRESH);
    assert!(tokens.expires_at().unwrap() <= SystemTime::now(), "expired");

    // A token file's JSON keeps the time it was issued.
    let copy = dir.join("copy.json");
    let stored = std::fs::read_to_string(token_file(&dir)).unwrap();
    let run = import(&copy, &[], &stored, &env).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .starts_with("imported: access token (21 chars) expired "),
        "{run:?}"
    );
    run.assert_no_secret(&[OLD_ACCESS, OLD_REFRESH]);
    let tokens = load_with_file_store(&copy).await;
    assert_eq!(
        tokens.expires_at(),
        Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 3600))
    );
    assert_eq!(tokens.access_token().secret(), OLD_ACCESS);
    proxy.verify().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn import_of_bad_input_exits_6_and_writes_nothing() {
    let (proxy, env) = no_request_expected().await;
    let dir = temp_dir("import-bad");
    let file = dir.join("tokens.json");
    for (input, message) in [
        (
            "",
            "error: stdin is empty: pipe in a token file, a token response (JSON) or a refresh token\n",
        ),
        (
            r#"{"access_token": "old-access-token-AAAA""#,
            "error: stdin is not valid JSON (error at line 1, column 40)\n",
        ),
        (
            r#"{"error": "invalid_grant", "error_description": "old-refresh-token-RRRR"}"#,
            "error: stdin holds an OAuth error response (`invalid_grant`), not tokens\n",
        ),
        (
            r#"{"id_token": "old-access-token-AAAA"}"#,
            "error: the JSON on stdin has neither `access_token` nor `refresh_token`\n",
        ),
    ] {
        let run = import(&file, &[], input, &env).await;
        assert_eq!(run.code, 6, "{input}: {run:?}");
        assert_eq!(run.stdout, "", "{input}");
        assert_eq!(run.stderr, message, "{input}");
        run.assert_no_secret(&[OLD_ACCESS, OLD_REFRESH]);
        assert!(!file.exists(), "{input}: nothing is written");
    }

    // Stdin is the input: `--token-file -` has nowhere to write.
    let run = exec(
        &["import", "--token-file", "-"],
        Some(&fresh_response().to_string()),
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.starts_with(
            "error: import reads the tokens from stdin and writes them to --token-file PATH: give a path, not -\n"
        ),
        "{run:?}"
    );
    proxy.verify().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn help_documents_import() {
    let run = exec(&["--help"], None, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(
            "import    Save a token response as a token file, without calling any server"
        ),
        "{}",
        run.stdout
    );
    let run = exec(&["import", "--help"], None, &[]).await;
    assert_eq!(run.code, 0, "{run:?}");
    for text in [
        "--token-file <PATH>",
        "--force",
        "the refresh token is not spent",
    ] {
        assert!(run.stdout.contains(text), "{text:?} in {}", run.stdout);
    }
}

// --- The client's private key (private_key_jwt) ---

#[path = "common/jwt.rs"]
#[allow(dead_code)]
mod jwt;

use jwt::Jwt;
use reqwest_oauth2_refresh::PublicJwk;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed to make test keys");
    assert!(out.status.success(), "openssl {args:?} failed");
    out.stdout
}

/// A P-256 key made by openssl as PKCS#8 PEM in `dir` (mode 0600), and its
/// public key as openssl reads it, independently of the library.
fn es256_pem_file(dir: &Path) -> (PathBuf, PublicJwk) {
    let pem = openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ]);
    let file = dir.join("client-key.pem");
    write_private(&file, std::str::from_utf8(&pem).unwrap());
    // The SubjectPublicKeyInfo ends with the uncompressed point 04‖x‖y.
    let spki = openssl(&[
        "pkey",
        "-in",
        file.to_str().unwrap(),
        "-pubout",
        "-outform",
        "DER",
    ]);
    let point = &spki[spki.len() - 65..];
    assert_eq!(point[0], 4);
    let public = PublicJwk::P256 {
        x: b64(&point[1..33]),
        y: b64(&point[33..]),
    };
    (file, public)
}

/// An Ed25519 private JWK with `kid`, made with ring, in `dir` (mode 0600).
fn ed25519_jwk_file(dir: &Path, kid: &str) -> (PathBuf, PublicJwk) {
    use ring::signature::KeyPair as _;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    // ring's PKCS#8 v2 document: a 16-byte prefix, then the 32-byte seed.
    let seed = &pkcs8.as_ref()[16..48];
    let x = b64(pair.public_key().as_ref());
    let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "d": b64(seed), "x": x, "kid": kid });
    let file = dir.join("client-key.jwk");
    write_private(&file, &jwk.to_string());
    (file, PublicJwk::Ed25519 { x })
}

/// An RSA key made by openssl, and its public key as openssl prints it.
fn rsa_pem_file(dir: &Path) -> (PathBuf, PublicJwk) {
    let file = dir.join("client-rsa.pem");
    write_private(&file, &jwt::rsa_pkcs8_pem());
    let modulus = openssl(&["rsa", "-in", file.to_str().unwrap(), "-noout", "-modulus"]);
    let hex = std::str::from_utf8(&modulus)
        .unwrap()
        .trim()
        .strip_prefix("Modulus=")
        .unwrap()
        .to_owned();
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .skip_while(|b| *b == 0)
        .collect();
    // openssl genpkey's default public exponent, 65537.
    let public = PublicJwk::Rsa {
        n: b64(&n),
        e: "AQAB".into(),
    };
    (file, public)
}

fn form_field(request: &Request, name: &str) -> Option<String> {
    form_urlencoded::parse(&request.body)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The client assertion of `request`: its type, no other client
/// credential, a signature that verifies with `public`, and the claims of
/// RFC 7523 §3 for `aud`.
fn assert_client_assertion(request: &Request, public: &PublicJwk, aud: &str) -> Jwt {
    assert_eq!(
        form_field(request, "client_assertion_type").as_deref(),
        Some(ASSERTION_TYPE)
    );
    assert_eq!(form_field(request, "client_secret"), None);
    assert!(no_authorization(request), "no Basic header with a key");
    let jwt = Jwt::parse(&form_field(request, "client_assertion").expect("an assertion"));
    jwt.verify(public);
    assert_eq!(jwt.claims["iss"], CLIENT_ID);
    assert_eq!(jwt.claims["sub"], CLIENT_ID);
    assert_eq!(jwt.claims["aud"], aud);
    let iat = jwt.claims["iat"].as_u64().unwrap();
    assert!(iat.abs_diff(now_secs()) < 60, "{}", jwt.claims);
    assert!(jwt.claims["exp"].as_u64().unwrap() > iat);
    jwt
}

/// A token endpoint that answers every refresh of `OLD_REFRESH` (however
/// the client authenticates) with `rotated_response`.
async fn any_client_token_endpoint(server: &MockServer, calls: u64) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains(format!("refresh_token={OLD_REFRESH}")))
        .respond_with(rotated_response())
        .expect(calls)
        .mount(server)
        .await;
}

#[tokio::test]
async fn refresh_and_check_with_a_pem_key_send_a_signed_assertion_for_the_endpoint() {
    let server = MockServer::start().await;
    any_client_token_endpoint(&server, 2).await;
    let dir = temp_dir("pem-key");
    let (key, public) = es256_pem_file(&dir);
    let key_text = std::fs::read_to_string(&key).unwrap();
    let token_url = format!("{}/token", server.uri());

    for (command, expected) in [("refresh", "refreshed: "), ("check", "valid\n")] {
        let file = token_file(&dir);
        let extra = ["--private-key", key.to_str().unwrap(), "--key-id", "key-1"];
        // A secret in the environment is not picked up: the key wins.
        let env = [("OAUTH2_CLIENT_SECRET", "unused-secret-9876")];
        let run = exec(
            &refresh_args(command, &token_url, &file, &extra),
            None,
            &env,
        )
        .await;

        assert_eq!(run.code, 0, "{command}: {run:?}");
        assert!(run.stdout.starts_with(expected), "{command}: {run:?}");
        assert_eq!(run.stderr, "", "{command}");
        run.assert_no_secret(&ALL_TOKENS);
        run.assert_no_secret(&key_text.lines().skip(1).take(2).collect::<Vec<_>>());
        assert_new_set(&read_json(&file), NEW_REFRESH);
    }

    let requests = server.received_requests().await.unwrap();
    let jwts: Vec<Jwt> = requests
        .iter()
        .map(|request| {
            assert_eq!(form_field(request, "client_id").as_deref(), Some(CLIENT_ID));
            // No issuer is known: the assertion is for the endpoint's URL.
            assert_client_assertion(request, &public, &token_url)
        })
        .collect();
    assert_eq!(jwts[0].header["alg"], "ES256");
    assert_eq!(jwts[0].header["kid"], "key-1");
    assert_ne!(
        jwts[0].claims["jti"], jwts[1].claims["jti"],
        "a new jti each time"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A discovery document for `server` that lists `methods`.
async fn metadata_listing(server: &MockServer, methods: &[&str]) {
    let issuer = server.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-authorization-server"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/token"),
            "revocation_endpoint": format!("{issuer}/revoke"),
            "token_endpoint_auth_methods_supported": methods,
        })))
        .mount(server)
        .await;
}

#[tokio::test]
async fn with_issuer_a_jwk_key_addresses_the_issuer_when_the_server_takes_keys() {
    let dir = temp_dir("jwk-key");
    let (key, public) = ed25519_jwk_file(&dir, "jwk-kid");
    let secret = ("OAUTH2_CLIENT_SECRET", "env-secret-5678");

    // The server lists private_key_jwt: the key, though a secret is given;
    // --key-id overrides the JWK's own kid.
    let server = MockServer::start().await;
    metadata_listing(&server, &["client_secret_basic", "private_key_jwt"]).await;
    any_client_token_endpoint(&server, 2).await;
    let issuer = server.uri();
    for (kid, expected) in [(None, "jwk-kid"), (Some("override-kid"), "override-kid")] {
        let file = token_file(&dir);
        let mut args = vec![
            "refresh",
            "--issuer",
            &issuer,
            "--client-id",
            CLIENT_ID,
            "--token-file",
            file.to_str().unwrap(),
            "--private-key",
            key.to_str().unwrap(),
        ];
        if let Some(kid) = kid {
            args.extend(["--key-id", kid]);
        }
        let run = exec(&args, None, &[secret]).await;
        assert_eq!(run.code, 0, "{run:?}");
        run.assert_no_secret(&ALL_TOKENS);
        let requests = server.received_requests().await.unwrap();
        let post = requests
            .iter()
            .rfind(|r| r.method.as_str() == "POST")
            .unwrap();
        let jwt = assert_client_assertion(post, &public, &issuer);
        assert_eq!(jwt.header["alg"], "EdDSA");
        assert_eq!(jwt.header["kid"], expected);
    }

    // It does not: the secret, in Basic, and no assertion.
    let server = MockServer::start().await;
    metadata_listing(&server, &["client_secret_basic"]).await;
    any_client_token_endpoint(&server, 1).await;
    let issuer = server.uri();
    let file = token_file(&dir);
    let run = exec(
        &[
            "refresh",
            "--issuer",
            &issuer,
            "--client-id",
            CLIENT_ID,
            "--token-file",
            file.to_str().unwrap(),
            "--private-key",
            key.to_str().unwrap(),
        ],
        None,
        &[secret],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let requests = server.received_requests().await.unwrap();
    let post = requests
        .iter()
        .find(|r| r.method.as_str() == "POST")
        .unwrap();
    assert_eq!(form_field(post, "client_assertion"), None);
    assert_eq!(
        post.headers.get("authorization").unwrap(),
        basic(CLIENT_ID, secret.1).as_str()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn revoke_with_an_rsa_key_signs_ps256_for_the_revocation_endpoint() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .and(body_string_contains(format!("token={OLD_REFRESH}")))
        .and(body_string_contains("client_assertion="))
        .respond_with(ResponseTemplate::new(200))
        .expect(2)
        .mount(&server)
        .await;
    let dir = temp_dir("revoke-key");
    let (key, public) = rsa_pem_file(&dir);
    let revocation_url = format!("{}/revoke", server.uri());

    for (audience, expected) in [
        (None, revocation_url.as_str()),
        (Some("https://aud.example.com/"), "https://aud.example.com/"),
    ] {
        let file = token_file(&dir);
        let mut args = vec![
            "revoke",
            "--revocation-url",
            &revocation_url,
            "--client-id",
            CLIENT_ID,
            "--token-file",
            file.to_str().unwrap(),
            "--private-key",
            key.to_str().unwrap(),
            "--key-alg",
            "PS256",
            "--auth",
            "private-key-jwt",
        ];
        if let Some(audience) = audience {
            args.extend(["--assertion-audience", audience]);
        }
        let run = exec(&args, None, &[]).await;

        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(
            run.stdout,
            format!("revoked: refresh token\ndeleted: {}\n", file.display())
        );
        let requests = server.received_requests().await.unwrap();
        let jwt = assert_client_assertion(requests.last().unwrap(), &public, expected);
        assert_eq!(jwt.header["alg"], "PS256");
        assert!(jwt.header.get("kid").is_none(), "{}", jwt.header);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_key_file_others_can_read_exits_6_naming_the_path_never_the_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let dir = temp_dir("key-readable");
    let (key, _) = es256_pem_file(&dir);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let key_text = std::fs::read_to_string(&key).unwrap();
    let token_url = format!("{}/token", server.uri());
    let file = token_file(&dir);

    for command in ["refresh", "check", "revoke"] {
        let mut args = refresh_args(command, &token_url, &file, &[]);
        args.extend(["--revocation-url", &token_url]);
        args.extend(["--private-key", key.to_str().unwrap()]);
        let run = exec(&args, None, &[]).await;

        assert_eq!(run.code, 6, "{command}: {run:?}");
        assert_eq!(run.stdout, "", "{command}");
        assert_eq!(
            run.stderr,
            format!(
                "error: the key file {0} can be read by group or others (mode 644); run `chmod 600 {0}`\n",
                key.display()
            ),
            "{command}"
        );
        for line in key_text.lines().filter(|l| !l.starts_with("-----")) {
            run.assert_no_secret(&[line]);
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn key_options_that_cannot_work_are_refused_before_any_request() {
    let dir = temp_dir("key-usage");
    let file = token_file(&dir);
    let (key, _) = es256_pem_file(&dir);
    let key = key.to_str().unwrap();
    let not_a_key = dir.join("not-a-key.txt");
    write_private(&not_a_key, "key-material-XYZ\n");
    // A FIFO nobody writes to: refused, not waited on.
    let fifo = dir.join("key-fifo");
    let made = std::process::Command::new("mkfifo")
        .args(["-m", "600", fifo.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(made.success());
    let url = "https://auth.example.com/token";

    for (extra, code, message) in [
        (
            vec!["--auth", "private-key-jwt"],
            2,
            "error: --auth private-key-jwt needs --private-key PATH\n",
        ),
        (
            vec![
                "--auth",
                "private-key-jwt",
                "--private-key",
                key,
                "--client-secret-env",
                "SOME_SECRET",
            ],
            2,
            "error: --auth private-key-jwt sends no client secret: drop --client-secret-env/--client-secret-file\n",
        ),
        (
            vec!["--auth", "basic", "--private-key", key],
            2,
            "error: this --auth signs nothing: drop --private-key, or give --auth private-key-jwt\n",
        ),
        (
            vec!["--private-key", key, "--assertion-audience", "issuer"],
            2,
            "error: --assertion-audience issuer needs --issuer URL (the issuer is not known otherwise)\n",
        ),
        (
            vec!["--key-id", "k"],
            2,
            "error: the following required arguments were not provided:\n  --private-key <PATH>\n",
        ),
        (
            vec!["--private-key", key, "--key-alg", "RS256"],
            6,
            "an EC P-256 key cannot sign RS256",
        ),
        (
            vec!["--private-key", not_a_key.to_str().unwrap()],
            6,
            "(--private-key) is not usable: it holds neither a PEM private key",
        ),
        (
            vec!["--private-key", fifo.to_str().unwrap()],
            6,
            "is not a file",
        ),
    ] {
        let run = exec(&refresh_args("refresh", url, &file, &extra), None, &[]).await;
        assert_eq!(run.code, code, "{extra:?}: {run:?}");
        assert!(run.stderr.contains(message), "{extra:?}: {run:?}");
        run.assert_no_secret(&["key-material-XYZ"]);
    }

    // The key's iss and sub is the client id.
    let run = exec(
        &[
            "refresh",
            "--token-url",
            url,
            "--token-file",
            file.to_str().unwrap(),
            "--private-key",
            key,
        ],
        None,
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--client-id <ID>"), "{run:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn help_lists_the_key_options() {
    for command in ["refresh", "check", "revoke"] {
        let run = exec(&[command, "--help"], None, &[]).await;
        assert_eq!(run.code, 0, "{run:?}");
        for text in [
            "Client key (private_key_jwt):",
            "--private-key <PATH>",
            "--key-id <KID>",
            "--key-alg <ALG>",
            "- PS256",
            "--assertion-audience <AUDIENCE>",
            "- private-key-jwt:",
            "chmod 600",
        ] {
            assert!(
                run.stdout.contains(text),
                "{command}: {text:?} in {}",
                run.stdout
            );
        }
    }
}

/// A DPoP-bound token file (the key kept in it, as the library's stores
/// write it): `refresh` proves possession of that key at the token
/// endpoint, and the rotated set is saved with the same key.
#[tokio::test]
async fn refresh_of_a_dpop_bound_token_file_sends_a_proof_and_keeps_the_key() {
    use reqwest_oauth2_refresh::{DpopKey, TokenSet};
    let server = token_endpoint(
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": NEW_ACCESS, "token_type": "DPoP", "expires_in": 3599,
            "refresh_token": NEW_REFRESH,
        })),
        1,
    )
    .await;
    let dir = temp_dir("dpop");
    let file = dir.join("tokens.json");
    let key = DpopKey::generate().unwrap();
    let bound = TokenSet::new(OLD_ACCESS)
        .with_refresh_token(OLD_REFRESH)
        .with_dpop_key(&key);
    write_private(&file, &serde_json::to_string(&bound).unwrap());
    let saved_key = read_json(&file)["dpop_key"].as_str().unwrap().to_owned();
    let token_url = format!("{}/token", server.uri());

    let run = exec(&refresh_args("refresh", &token_url, &file, &[]), None, &[]).await;

    assert_eq!(run.code, 0, "{run:?}");
    run.assert_no_secret(&[&saved_key, "PRIVATE KEY", OLD_REFRESH, NEW_REFRESH]);
    let requests = server.received_requests().await.unwrap();
    let proof = requests[0]
        .headers
        .get("dpop")
        .expect("a DPoP proof")
        .to_str()
        .unwrap();
    let proof = jwt::Jwt::parse(proof);
    proof.verify(&key.public_jwk());
    assert_eq!(proof.claims["htu"], token_url.as_str());
    let stored = read_json(&file);
    assert_eq!(stored["refresh_token"], NEW_REFRESH);
    assert_eq!(stored["token_type"], "DPoP");
    assert_eq!(stored["dpop_key"], saved_key.as_str(), "the same key, kept");
    std::fs::remove_dir_all(dir).unwrap();
}
