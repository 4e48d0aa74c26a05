//! `oauth2-refresh`: refresh, check and revoke OAuth 2.0 refresh tokens from
//! the command line, with the library's token endpoint client: client
//! authentication, rotation, retries of transient failures, and an atomic,
//! private token file. Secrets never go on the command line.

// The doc comments below are the tool's --help text, read in a terminal
// where a bare URL reads better than rustdoc's <link> syntax.
#![allow(rustdoc::bare_urls)]

mod input;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory as _, Parser, Subcommand, ValueEnum};

use reqwest_oauth2_refresh::{
    ClientAuth, Error, FileStore, ServerMetadata, TokenManager, TokenManagerBuilder, TokenSet,
    TokenStore as _,
};

use report::{EXIT_CODES, Failure, Secrets, code};

/// The environment variable read for the client secret when no
/// `--client-secret-*` option is given.
const DEFAULT_SECRET_ENV: &str = "OAUTH2_CLIENT_SECRET";

#[derive(Parser)]
#[command(
    name = "oauth2-refresh",
    version,
    about = "Refresh, check and revoke OAuth 2.0 refresh tokens, without secrets on the command line",
    after_help = EXIT_CODES,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Spend the refresh token and store the new (rotated) token set.
    ///
    /// With a token file, the new set replaces it atomically (mode 0600). With
    /// `--token-file -` there is no file to update: give --out PATH, or
    /// --print-tokens. Prints a summary without secrets, unless
    /// --print-tokens.
    #[command(after_help = EXIT_CODES)]
    Refresh(RefreshArgs),
    /// Tell whether the refresh token still works: prints `valid`, or
    /// `invalid: <error> <description>`, and the exit code says the same.
    ///
    /// This is a real refresh: the server may rotate the refresh token, so
    /// the new set is stored like `refresh` stores it (with `--token-file -`,
    /// give --out PATH).
    #[command(after_help = EXIT_CODES)]
    Check(CheckArgs),
    /// Revoke the refresh token (RFC 7009), or only the access token.
    ///
    /// Revoking the refresh token deletes the token file.
    #[command(after_help = EXIT_CODES)]
    Revoke(RevokeArgs),
    /// Show an authorization server's metadata (RFC 8414 / OpenID Connect
    /// Discovery).
    #[command(after_help = EXIT_CODES)]
    Discover(DiscoverArgs),
}

#[derive(Args)]
struct Common {
    /// The token endpoint.
    #[arg(long, value_name = "URL", conflicts_with = "issuer")]
    token_url: Option<String>,

    /// The issuer, to find the token and revocation endpoints by discovery.
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,

    /// The RFC 7009 revocation endpoint (found by --issuer when the server
    /// has one).
    #[arg(long, value_name = "URL")]
    revocation_url: Option<String>,

    /// The token file (as the library's FileStore writes it), or `-` to read
    /// stdin: a token file's JSON, a token endpoint response, or a bare
    /// refresh token on one line.
    #[arg(long, value_name = "PATH")]
    token_file: PathBuf,

    /// The client identifier.
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,

    /// Read the client secret from this environment variable [default:
    /// OAUTH2_CLIENT_SECRET, when it is set].
    #[arg(long, value_name = "NAME", conflicts_with = "client_secret_file")]
    client_secret_env: Option<String>,

    /// Read the client secret from this file (a trailing newline is ignored).
    #[arg(long, value_name = "PATH")]
    client_secret_file: Option<PathBuf>,

    /// Client authentication [default: basic with a client secret, none
    /// without; with --issuer, one the server supports].
    #[arg(long, value_enum, value_name = "METHOD")]
    auth: Option<AuthArg>,

    /// The scope to ask for on refresh (some providers want it every time).
    #[arg(long)]
    scope: Option<String>,

    /// An extra form parameter for the token request, such as
    /// `audience=https://api.example.com` (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
}

#[derive(Clone, Copy, ValueEnum)]
enum AuthArg {
    /// HTTP Basic (client_secret_basic).
    Basic,
    /// Client id and secret in the form body (client_secret_post).
    Post,
    /// A public client: only client_id in the form.
    None,
}

#[derive(Args)]
struct RefreshArgs {
    #[command(flatten)]
    common: Common,

    /// Print the new token set as JSON, secrets included (the token file
    /// format), instead of a summary.
    #[arg(long)]
    print_tokens: bool,

    /// With `--token-file -`: write the new token set to this file
    /// (atomically, mode 0600).
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    common: Common,

    /// With `--token-file -`: write the new token set to this file
    /// (atomically, mode 0600).
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct RevokeArgs {
    #[command(flatten)]
    common: Common,

    /// Revoke only the access token; the refresh token and the token file
    /// stay.
    #[arg(long)]
    access_token: bool,
}

#[derive(Args)]
struct DiscoverArgs {
    /// The issuer identifier, such as https://accounts.google.com.
    issuer: String,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| "expected NAME=VALUE".to_owned())?;
    if name.is_empty() {
        return Err("the parameter name is empty".into());
    }
    match name {
        "client_secret" | "refresh_token" | "token" | "client_assertion" => Err(format!(
            "`{name}` is a secret and is never taken on the command line"
        )),
        "client_id" => Err("use --client-id".into()),
        "scope" => Err("use --scope".into()),
        "grant_type" | "token_type_hint" => Err(format!("`{name}` is set by the tool")),
        _ => Ok((name.to_owned(), value.to_owned())),
    }
}

/// Exits with clap's usage error (exit 2), showing `subcommand`'s usage.
fn usage_error(subcommand: &str, message: impl std::fmt::Display) -> ! {
    let mut cli = Cli::command();
    cli.build();
    let command = match cli.find_subcommand_mut(subcommand) {
        Some(command) => command,
        None => &mut cli,
    };
    command.error(ErrorKind::ArgumentConflict, message).exit()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    check_usage(&cli.command);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(code::OTHER);
        }
    };
    let mut secrets = Secrets::default();
    let result = runtime.block_on(run(cli.command, &mut secrets));
    match result {
        Ok(code) => code,
        Err(failure) => failure.report(&secrets),
    }
}

/// The combinations clap cannot express, refused before any work is done.
fn check_usage(command: &Command) {
    let (name, common, out, print_tokens) = match command {
        Command::Refresh(args) => (
            "refresh",
            &args.common,
            args.out.as_ref(),
            args.print_tokens,
        ),
        Command::Check(args) => ("check", &args.common, args.out.as_ref(), false),
        Command::Revoke(args) => {
            let common = &args.common;
            if common.issuer.is_none() && common.revocation_url.is_none() {
                usage_error(
                    "revoke",
                    "revoke needs --revocation-url URL or --issuer URL",
                );
            }
            check_auth("revoke", common);
            return;
        }
        Command::Discover(_) => return,
    };
    if common.token_url.is_none() && common.issuer.is_none() {
        usage_error(
            name,
            "give the token endpoint: --token-url URL or --issuer URL",
        );
    }
    let stdin = is_stdin(&common.token_file);
    if stdin && out.is_none() && !print_tokens {
        usage_error(
            name,
            "with --token-file -, the new (possibly rotated) refresh token has nowhere to go: \
             give --out PATH, or --print-tokens",
        );
    }
    if !stdin && out.is_some() {
        usage_error(
            name,
            "--out is for --token-file -; with a token file, the new token set replaces it",
        );
    }
    check_auth(name, common);
}

fn check_auth(name: &str, common: &Common) {
    let explicit_secret = common.client_secret_env.is_some() || common.client_secret_file.is_some();
    if matches!(common.auth, Some(AuthArg::None)) && explicit_secret {
        usage_error(
            name,
            "--auth none sends no client secret: drop --client-secret-env/--client-secret-file",
        );
    }
}

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

async fn run(command: Command, secrets: &mut Secrets) -> Result<ExitCode, Failure> {
    match command {
        Command::Refresh(args) => refresh(args, secrets).await,
        Command::Check(args) => check(args, secrets).await,
        Command::Revoke(args) => revoke(args, secrets).await,
        Command::Discover(args) => discover(args).await,
    }
}

/// The client secret: from a file, a named environment variable, or
/// `OAUTH2_CLIENT_SECRET`.
fn client_secret(common: &Common) -> Result<Option<String>, Failure> {
    if let Some(path) = &common.client_secret_file {
        return input::read_secret_file(path)
            .map(Some)
            .map_err(Failure::local);
    }
    if let Some(name) = &common.client_secret_env {
        return match std::env::var(name) {
            Ok(secret) if !secret.is_empty() => Ok(Some(secret)),
            Ok(_) => Err(Failure::local(format!(
                "the environment variable {name} (--client-secret-env) is empty"
            ))),
            Err(_) => Err(Failure::local(format!(
                "the environment variable {name} (--client-secret-env) is not set"
            ))),
        };
    }
    if matches!(common.auth, Some(AuthArg::None)) {
        return Ok(None);
    }
    match std::env::var(DEFAULT_SECRET_ENV) {
        Ok(secret) if !secret.is_empty() => Ok(Some(secret)),
        _ => Ok(None),
    }
}

/// What the builder is for: which endpoint it must have.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Refresh,
    Revoke,
}

/// A manager builder from the common options (discovery first, with
/// --issuer). The secret is added to `secrets`.
async fn builder(
    common: &Common,
    purpose: Purpose,
    secrets: &mut Secrets,
) -> Result<TokenManagerBuilder, Failure> {
    let secret = client_secret(common)?;
    if let Some(secret) = &secret {
        secrets.add(secret);
    }
    let needs_secret = matches!(common.auth, Some(AuthArg::Basic | AuthArg::Post));
    if needs_secret && secret.is_none() {
        return Err(Failure::local(format!(
            "--auth basic/post needs a client secret: --client-secret-env NAME, \
             --client-secret-file PATH, or {DEFAULT_SECRET_ENV}"
        )));
    }
    if secret.is_some() && common.client_id.is_none() {
        let from = match (&common.client_secret_file, &common.client_secret_env) {
            (Some(_), _) => "--client-secret-file".to_owned(),
            (None, Some(_)) => "--client-secret-env".to_owned(),
            (None, None) => format!("${DEFAULT_SECRET_ENV}"),
        };
        return Err(Failure::local(format!(
            "a client secret is given ({from}) but no --client-id"
        )));
    }

    let mut builder = match (&common.token_url, &common.issuer) {
        (Some(url), _) => TokenManager::builder(url),
        (None, Some(issuer)) => {
            let metadata = fetch_metadata(issuer).await?;
            if purpose == Purpose::Revoke
                && metadata.revocation_endpoint.is_none()
                && common.revocation_url.is_none()
            {
                return Err(Failure::local(format!(
                    "the metadata of {issuer} has no revocation_endpoint: give --revocation-url URL"
                )));
            }
            TokenManager::from_metadata(&metadata)
        }
        (None, None) => match (&common.revocation_url, purpose) {
            // Revocation only: the builder wants a token endpoint, which is
            // never called; the revocation endpoint stands in for it.
            (Some(url), Purpose::Revoke) => TokenManager::builder(url),
            _ => return Err(Failure::new(code::USAGE, "no --token-url or --issuer")),
        },
    };
    if let Some(id) = &common.client_id {
        builder = builder.client_id(id);
    }
    if let Some(secret) = secret {
        builder = builder.client_secret(secret);
    }
    if let Some(auth) = common.auth {
        builder = builder.client_auth(match auth {
            AuthArg::Basic => ClientAuth::SecretBasic,
            AuthArg::Post => ClientAuth::SecretPost,
            AuthArg::None => ClientAuth::None,
        });
    }
    if let Some(scope) = &common.scope {
        builder = builder.scope(scope);
    }
    for (name, value) in &common.params {
        builder = builder.extra_param(name, value);
    }
    if let Some(url) = &common.revocation_url {
        builder = builder.revocation_url(url);
    }
    Ok(builder)
}

fn build(builder: TokenManagerBuilder) -> Result<TokenManager, Failure> {
    builder.build().map_err(|e| match e {
        Error::Config(message) => Failure::local(format!("invalid configuration: {message}")),
        e => Failure::from_error("invalid configuration", &e),
    })
}

/// Reads the token file through the library's FileStore, which refuses a
/// file that other users can read.
async fn load_token_file(store: &FileStore) -> Result<TokenSet, Failure> {
    let path = store.path().display();
    match store.load().await {
        Ok(Some(tokens)) => Ok(tokens),
        Ok(None) => Err(
            Failure::local(format!("there is no token file at {path}")).with_hint(format!(
                "create it from a refresh token: \
                 `oauth2-refresh refresh --token-file - --out {path} ...` with the token on stdin"
            )),
        ),
        Err(error) => Err(Failure::local(format!(
            "cannot use the token file: {}",
            report::chain(error.as_ref())
        ))),
    }
}

fn open_store(path: &Path) -> Result<FileStore, Failure> {
    FileStore::new(path).map_err(|e| Failure::from_error("invalid token file path", &e))
}

/// Tokens from stdin; errors are local problems.
fn stdin_tokens(secrets: &mut Secrets) -> Result<input::StdinTokens, Failure> {
    let text = input::read_stdin().map_err(Failure::local)?;
    let tokens = input::parse_stdin(&text).map_err(Failure::local)?;
    secrets.add_tokens(&tokens.tokens);
    Ok(tokens)
}

/// Before spending a refresh token, makes sure the new set can be written
/// where --out says.
fn check_writable(out: &Path) -> Result<(), Failure> {
    if out.is_dir() {
        return Err(Failure::local(format!(
            "--out {} is a directory",
            out.display()
        )));
    }
    let dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let probe = dir.join(format!(".oauth2-refresh-probe.{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(error) => Err(Failure::local(format!(
            "cannot write to {} (for --out): {error}",
            dir.display()
        ))),
    }
}

/// A finished refresh: the set before and after, and where it was saved.
struct Refreshed {
    old: TokenSet,
    new: TokenSet,
    saved_to: Option<PathBuf>,
}

/// Spends the refresh token and stores the new set: in the token file (the
/// library saves it before returning), or in `out` for stdin.
async fn spend(
    common: &Common,
    out: Option<&Path>,
    secrets: &mut Secrets,
) -> Result<Refreshed, Failure> {
    if is_stdin(&common.token_file) {
        let input = stdin_tokens(secrets)?;
        if input.tokens.refresh_token().is_none() {
            return Err(Failure::local("the tokens on stdin have no refresh token"));
        }
        let out = match out {
            Some(out) => {
                check_writable(out)?;
                Some((open_store(out)?, out.to_path_buf()))
            }
            None => None,
        };
        let manager = build(
            builder(common, Purpose::Refresh, secrets)
                .await?
                .tokens(input.tokens.clone()),
        )?;
        let new = manager
            .refresh()
            .await
            .map_err(|e| Failure::from_error("refresh failed", &e))?;
        secrets.add_tokens(&new);
        let saved_to = match out {
            Some((store, path)) => {
                if let Err(error) = store.save(&new).await {
                    return Err(unsaved(&new, &path, &report::chain(error.as_ref())));
                }
                Some(path)
            }
            None => None,
        };
        return Ok(Refreshed {
            old: input.tokens,
            new,
            saved_to,
        });
    }

    let path = common.token_file.clone();
    let store = open_store(&path)?;
    let old = load_token_file(&store).await?;
    secrets.add_tokens(&old);
    if old.refresh_token().is_none() {
        return Err(Failure::local(format!(
            "the token file {} has no refresh token",
            path.display()
        )));
    }
    let manager = build(
        builder(common, Purpose::Refresh, secrets)
            .await?
            .store(store),
    )?;
    match manager.refresh().await {
        Ok(new) => {
            secrets.add_tokens(&new);
            Ok(Refreshed {
                old,
                new,
                saved_to: Some(path),
            })
        }
        Err(
            error @ Error::Store {
                operation: "save", ..
            },
        ) => {
            // The refresh token is spent and the new set lives only in this
            // process: one more try, then hand it to the user.
            let Some(new) = manager.current_tokens() else {
                return Err(Failure::from_error("refresh failed", &error));
            };
            secrets.add_tokens(&new);
            match open_store(&path)?.save(&new).await {
                Ok(()) => Ok(Refreshed {
                    old,
                    new,
                    saved_to: Some(path),
                }),
                Err(_) => Err(unsaved(&new, &path, &report::chain(&error))),
            }
        }
        Err(error) => Err(Failure::from_error("refresh failed", &error)),
    }
}

/// The refresh token was spent but the new set could not be saved: print it
/// (the only copy), and fail.
fn unsaved(new: &TokenSet, path: &Path, why: &str) -> Failure {
    println!("{}", tokens_json(new));
    Failure::local(format!(
        "the refresh token was spent, but the new token set could not be saved to {}: {why}",
        path.display()
    ))
    .with_hint("the new token set is printed on stdout: it is the only copy, save it now")
}

fn tokens_json(tokens: &TokenSet) -> String {
    serde_json::to_string_pretty(tokens).expect("a token set serializes")
}

/// `refreshed: access token (NN chars) expires in N s; refresh token rotated: yes; scope: ...`
fn summary(refreshed: &Refreshed) -> String {
    let new = &refreshed.new;
    let expiry = match new.expires_in() {
        Some(lifetime) => format!("expires in {} s", lifetime.as_secs()),
        None => "expiry not given".to_owned(),
    };
    let rotated = match (refreshed.old.refresh_token(), new.refresh_token()) {
        (_, None) => "refresh token: none",
        (Some(old), Some(new)) if old == new => "refresh token rotated: no",
        _ => "refresh token rotated: yes",
    };
    let scope = match new.scope() {
        Some(scope) => format!("scope: {scope}"),
        None => "scope: not given".to_owned(),
    };
    format!(
        "refreshed: access token ({} chars) {expiry}; {rotated}; {scope}",
        new.access_token().secret().chars().count()
    )
}

async fn refresh(args: RefreshArgs, secrets: &mut Secrets) -> Result<ExitCode, Failure> {
    let refreshed = spend(&args.common, args.out.as_deref(), secrets).await?;
    if args.print_tokens {
        println!("{}", tokens_json(&refreshed.new));
    } else {
        println!("{}", secrets.redact(&summary(&refreshed)));
        if let Some(path) = &refreshed.saved_to {
            println!("saved: {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn check(args: CheckArgs, secrets: &mut Secrets) -> Result<ExitCode, Failure> {
    match spend(&args.common, args.out.as_deref(), secrets).await {
        Ok(_) => {
            println!("valid");
            Ok(ExitCode::SUCCESS)
        }
        Err(Failure {
            code,
            oauth: Some(oauth),
            ..
        }) => {
            let mut line = format!("invalid: {}", oauth.error);
            if let Some(description) = &oauth.description {
                line.push(' ');
                line.push_str(description);
            }
            println!("{}", secrets.redact(&line));
            Ok(ExitCode::from(code))
        }
        Err(failure) => Err(failure),
    }
}

async fn revoke(args: RevokeArgs, secrets: &mut Secrets) -> Result<ExitCode, Failure> {
    let common = &args.common;
    let (tokens, has_access_token, store) = if is_stdin(&common.token_file) {
        let input = stdin_tokens(secrets)?;
        (input.tokens, input.has_access_token, None)
    } else {
        let store = open_store(&common.token_file)?;
        let tokens = load_token_file(&store).await?;
        secrets.add_tokens(&tokens);
        (tokens, true, Some(store))
    };
    if args.access_token && !has_access_token {
        return Err(Failure::local("the tokens on stdin have no access token"));
    }
    let mut builder = builder(common, Purpose::Revoke, secrets).await?;
    let path = store.as_ref().map(|store| store.path().to_path_buf());
    builder = match store {
        Some(store) => builder.store(store),
        None => builder.tokens(tokens.clone()),
    };
    let manager = build(builder)?;
    if args.access_token {
        manager
            .revoke_access_token()
            .await
            .map_err(|e| Failure::from_error("revocation failed", &e))?;
        println!("revoked: access token");
        return Ok(ExitCode::SUCCESS);
    }
    manager
        .revoke()
        .await
        .map_err(|e| Failure::from_error("revocation failed", &e))?;
    if tokens.refresh_token().is_some() {
        println!("revoked: refresh token");
    } else {
        println!("revoked: access token (the token set has no refresh token)");
    }
    if let Some(path) = path {
        println!("deleted: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The issuer's metadata, fetched without following redirects.
async fn fetch_metadata(issuer: &str) -> Result<ServerMetadata, Failure> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Failure::new(code::OTHER, report::chain(&e)))?;
    ServerMetadata::fetch(&http, issuer)
        .await
        .map_err(|e| Failure::from_error(&format!("discovery of {issuer} failed"), &e))
}

async fn discover(args: DiscoverArgs) -> Result<ExitCode, Failure> {
    let metadata = fetch_metadata(&args.issuer).await?;
    let secrets = Secrets::default();
    for line in metadata_lines(&metadata) {
        println!("{}", secrets.redact(&line));
    }
    Ok(ExitCode::SUCCESS)
}

fn metadata_lines(metadata: &ServerMetadata) -> Vec<String> {
    let list = |values: &Option<Vec<String>>, absent: &str| match values {
        Some(values) if !values.is_empty() => values.join(" "),
        _ => absent.to_owned(),
    };
    vec![
        format!("issuer: {}", metadata.issuer),
        format!("token_endpoint: {}", metadata.token_endpoint),
        format!(
            "revocation_endpoint: {}",
            metadata.revocation_endpoint.as_deref().unwrap_or("(none)")
        ),
        format!(
            "token_endpoint_auth_methods_supported: {}",
            list(
                &metadata.token_endpoint_auth_methods_supported,
                "(not given: client_secret_basic)"
            )
        ),
        format!(
            "grant_types_supported: {}",
            list(
                &metadata.grant_types_supported,
                "(not given: authorization_code implicit)"
            )
        ),
        format!(
            "scopes_supported: {}",
            list(&metadata.scopes_supported, "(not given)")
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn there_is_no_secret_option() {
        let result = Cli::try_parse_from([
            "oauth2-refresh",
            "refresh",
            "--token-url",
            "https://a.example/token",
            "--token-file",
            "t.json",
            "--client-secret",
            "s",
        ]);
        assert!(result.is_err());
        assert!(parse_param("client_secret=s").is_err());
        assert!(parse_param("refresh_token=s").is_err());
        assert_eq!(
            parse_param("audience=https://api.example.com/?a=b").unwrap(),
            ("audience".into(), "https://api.example.com/?a=b".into())
        );
    }
}
