//! The subcommands: each one runs with the parsed arguments and prints its
//! result; failures go back to `main` to be reported.

use std::process::ExitCode;
use std::time::SystemTime;

use reqwest_oauth2_refresh::ServerMetadata;

use crate::args::{
    CheckArgs, Command, DiscoverArgs, ImportArgs, RefreshArgs, RevokeArgs, is_stdin,
};
use crate::manager::{Purpose, build, builder, fetch_metadata};
use crate::report::{Failure, Secrets};
use crate::tokens::{
    Imported, Refreshed, load_token_file, open_store, spend, stdin_tokens, tokens_json,
};

pub async fn run(command: Command, secrets: &mut Secrets) -> Result<ExitCode, Failure> {
    match command {
        Command::Refresh(args) => refresh(args, secrets).await,
        Command::Import(args) => import(args, secrets).await,
        Command::Check(args) => check(args, secrets).await,
        Command::Revoke(args) => revoke(args, secrets).await,
        Command::Discover(args) => discover(args).await,
    }
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

/// `imported: access token (NN chars) expires in N s; refresh token: yes; scope: ...`
fn import_summary(imported: &Imported) -> String {
    let tokens = &imported.tokens;
    let access = if imported.has_access_token {
        let expiry = match tokens.expires_at() {
            None => "expiry not given".to_owned(),
            Some(at) => match at.duration_since(SystemTime::now()) {
                // To the nearest second: a lifetime stamped a few
                // milliseconds ago still reads as given.
                Ok(left) => format!("expires in {} s", (left.as_millis() + 500) / 1000),
                Err(past) => format!(
                    "expired {} s ago",
                    (past.duration().as_millis() + 500) / 1000
                ),
            },
        };
        format!(
            "access token ({} chars) {expiry}",
            tokens.access_token().secret().chars().count()
        )
    } else {
        "no access token (the first use refreshes)".to_owned()
    };
    let refresh = match tokens.refresh_token() {
        Some(_) => "refresh token: yes",
        None => "refresh token: none",
    };
    let scope = match tokens.scope() {
        Some(scope) => format!("scope: {scope}"),
        None => "scope: not given".to_owned(),
    };
    format!("imported: {access}; {refresh}; {scope}")
}

async fn import(args: ImportArgs, secrets: &mut Secrets) -> Result<ExitCode, Failure> {
    let imported = crate::tokens::import(&args.token_file, args.force, secrets).await?;
    println!("{}", secrets.redact(&import_summary(&imported)));
    let replaced = if imported.replaced {
        " (replaced the previous token file)"
    } else {
        ""
    };
    println!("saved: {}{replaced}", imported.saved_to.display());
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
        None => builder.initial_tokens(tokens.clone()),
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
