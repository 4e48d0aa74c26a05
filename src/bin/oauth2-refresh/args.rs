//! The command line: clap's types, whose doc comments are the tool's
//! `--help` text, and the checks clap cannot express.

// The doc comments below are the tool's --help text, read in a terminal
// where a bare URL reads better than rustdoc's <link> syntax.
#![allow(rustdoc::bare_urls)]

use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::{Args, CommandFactory as _, Parser, Subcommand, ValueEnum};

use reqwest_oauth2_refresh::AssertionAudience;

use crate::keys::KeyOptions;
use crate::report::EXIT_CODES;

#[derive(Parser)]
#[command(
    name = "oauth2-refresh",
    version,
    about = "Import, refresh, check and revoke OAuth 2.0 refresh tokens, without secrets on the command line",
    after_help = EXIT_CODES,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Spend the refresh token and store the new (rotated) token set.
    ///
    /// With a token file, the new set replaces it atomically (mode 0600). With
    /// `--token-file -` there is no file to update: give --out PATH, or
    /// --print-tokens. Prints a summary without secrets, unless
    /// --print-tokens.
    #[command(after_help = EXIT_CODES)]
    Refresh(RefreshArgs),
    /// Save a token response as a token file, without calling any server:
    /// the refresh token is not spent.
    ///
    /// Reads stdin: a token endpoint response (JSON), a token file's JSON,
    /// or a bare refresh token on one line. The access token's lifetime
    /// (`expires_in`) is counted from now, when the response arrives here,
    /// so pipe it in as soon as it is received; a token file keeps its
    /// `issued_at`. A bare refresh token is saved as an expired set: the
    /// first use refreshes it. The file is written atomically, mode 0600,
    /// under the token file's lock; an existing one is replaced only with
    /// --force. Prints a summary without secrets.
    #[command(after_help = EXIT_CODES)]
    Import(ImportArgs),
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
pub struct Common {
    /// The token endpoint.
    #[arg(long, value_name = "URL", conflicts_with = "issuer")]
    pub token_url: Option<String>,

    /// The issuer, to find the token and revocation endpoints by discovery.
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,

    /// The RFC 7009 revocation endpoint (found by --issuer when the server
    /// has one).
    #[arg(long, value_name = "URL")]
    pub revocation_url: Option<String>,

    /// The token file (as the library's FileStore writes it), or `-` to read
    /// stdin: a token file's JSON, a token endpoint response, or a bare
    /// refresh token on one line.
    #[arg(long, value_name = "PATH")]
    pub token_file: PathBuf,

    /// The client identifier.
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,

    /// Read the client secret from this environment variable [default:
    /// OAUTH2_CLIENT_SECRET, when it is set].
    #[arg(long, value_name = "NAME", conflicts_with = "client_secret_file")]
    pub client_secret_env: Option<String>,

    /// Read the client secret from this file (a trailing newline is ignored).
    #[arg(long, value_name = "PATH")]
    pub client_secret_file: Option<PathBuf>,

    /// Client authentication [default: private-key-jwt with --private-key,
    /// basic with a client secret, none without; with --issuer, one the
    /// server supports].
    #[arg(long, value_enum, value_name = "METHOD")]
    pub auth: Option<AuthArg>,

    /// The scope to ask for on refresh (some providers want it every time).
    #[arg(long)]
    pub scope: Option<String>,

    /// An extra form parameter for the token request, such as
    /// `audience=https://api.example.com` (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,

    #[command(flatten)]
    pub key: KeyOptions,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AuthArg {
    /// HTTP Basic (client_secret_basic).
    Basic,
    /// Client id and secret in the form body (client_secret_post).
    Post,
    /// A public client: only client_id in the form.
    None,
    /// A JWT signed with --private-key (private_key_jwt).
    PrivateKeyJwt,
}

#[derive(Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    pub common: Common,

    /// Print the new token set as JSON, secrets included (the token file
    /// format), instead of a summary.
    #[arg(long)]
    pub print_tokens: bool,

    /// With `--token-file -`: write the new token set to this file
    /// (atomically, mode 0600).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct ImportArgs {
    /// The token file to write (as the library's FileStore writes it); the
    /// tokens come from stdin.
    #[arg(long, value_name = "PATH")]
    pub token_file: PathBuf,

    /// Replace the token file if there is one (its tokens are lost).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub common: Common,

    /// With `--token-file -`: write the new token set to this file
    /// (atomically, mode 0600).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub common: Common,

    /// Revoke only the access token; the refresh token and the token file
    /// stay.
    #[arg(long)]
    pub access_token: bool,
}

#[derive(Args)]
pub struct DiscoverArgs {
    /// The issuer identifier, such as https://accounts.google.com.
    pub issuer: String,
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

/// The combinations clap cannot express, refused before any work is done.
pub fn check_usage(command: &Command) {
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
        Command::Import(args) => {
            if is_stdin(&args.token_file) {
                usage_error(
                    "import",
                    "import reads the tokens from stdin and writes them to --token-file PATH: \
                     give a path, not -",
                );
            }
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
    let key = common.key.private_key.is_some();
    match common.auth {
        Some(AuthArg::None) if explicit_secret => usage_error(
            name,
            "--auth none sends no client secret: drop --client-secret-env/--client-secret-file",
        ),
        Some(AuthArg::PrivateKeyJwt) if explicit_secret => usage_error(
            name,
            "--auth private-key-jwt sends no client secret: \
             drop --client-secret-env/--client-secret-file",
        ),
        Some(AuthArg::PrivateKeyJwt) if !key => {
            usage_error(name, "--auth private-key-jwt needs --private-key PATH")
        }
        Some(AuthArg::Basic | AuthArg::Post | AuthArg::None) if key => usage_error(
            name,
            "this --auth signs nothing: drop --private-key, or give --auth private-key-jwt",
        ),
        _ => {}
    }
    let issuer_audience = matches!(
        common.key.assertion_audience,
        Some(AssertionAudience::Issuer)
    );
    if issuer_audience && common.issuer.is_none() {
        usage_error(
            name,
            "--assertion-audience issuer needs --issuer URL (the issuer is not known otherwise)",
        );
    }
}

pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
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
