//! The token set: read from the token file or stdin, its refresh token
//! spent, and the new set stored (or, when that fails, handed to the user).

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest_oauth2_refresh::{
    DEFAULT_STORE_TIMEOUT, Error, FileStore, LockedSave, TokenManager, TokenSet, TokenStore as _,
};

use crate::args::{Common, is_stdin};
use crate::input;
use crate::manager::{Purpose, build, builder};
use crate::report::{self, Failure, Secrets};

/// Reads the token file through the library's FileStore, which refuses a
/// file that other users can read.
pub async fn load_token_file(store: &FileStore) -> Result<TokenSet, Failure> {
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

pub fn open_store(path: &Path) -> Result<FileStore, Failure> {
    FileStore::new(path).map_err(|e| Failure::from_error("invalid token file path", &e))
}

/// Tokens from stdin; errors are local problems.
pub fn stdin_tokens(secrets: &mut Secrets) -> Result<input::StdinTokens, Failure> {
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
pub struct Refreshed {
    pub old: TokenSet,
    pub new: TokenSet,
    pub saved_to: Option<PathBuf>,
}

/// Spends the refresh token and stores the new set: in the token file (the
/// library saves it before returning), or in `out` for stdin.
pub async fn spend(
    common: &Common,
    out: Option<&Path>,
    secrets: &mut Secrets,
) -> Result<Refreshed, Failure> {
    if is_stdin(&common.token_file) {
        spend_from_stdin(common, out, secrets).await
    } else {
        spend_from_file(common, secrets).await
    }
}

/// `spend` for `--token-file -`: the new set goes to `out`, if given.
async fn spend_from_stdin(
    common: &Common,
    out: Option<&Path>,
    secrets: &mut Secrets,
) -> Result<Refreshed, Failure> {
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
            .initial_tokens(input.tokens.clone()),
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
    Ok(Refreshed {
        old: input.tokens,
        new,
        saved_to,
    })
}

/// `spend` for a token file: the library's store saves the new set in it.
async fn spend_from_file(common: &Common, secrets: &mut Secrets) -> Result<Refreshed, Failure> {
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
    let new = match manager.refresh().await {
        Ok(new) => {
            secrets.add_tokens(&new);
            new
        }
        Err(
            error @ Error::Store {
                operation: "save", ..
            },
        ) => save_again(&manager, &error, &path, secrets).await?,
        Err(error) => return Err(Failure::from_error("refresh failed", &error)),
    };
    Ok(Refreshed {
        old,
        new,
        saved_to: Some(path),
    })
}

/// The library refreshed but could not save the new set (`error`).
async fn save_again(
    manager: &TokenManager,
    error: &Error,
    path: &Path,
    secrets: &mut Secrets,
) -> Result<TokenSet, Failure> {
    // The refresh token is spent and the new set lives only in this
    // process: one more try, then hand it to the user.
    let Some(new) = manager.cached_tokens() else {
        return Err(Failure::from_error("refresh failed", error));
    };
    secrets.add_tokens(&new);
    match open_store(path)?.save(&new).await {
        Ok(()) => Ok(new),
        Err(_) => Err(unsaved(&new, path, &report::chain(error))),
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

pub fn tokens_json(tokens: &TokenSet) -> String {
    serde_json::to_string_pretty(tokens).expect("a token set serializes")
}

/// An imported token set, and where it went.
pub struct Imported {
    pub tokens: TokenSet,
    /// False when stdin held only a refresh token.
    pub has_access_token: bool,
    pub saved_to: PathBuf,
    /// An existing token file was replaced (--force).
    pub replaced: bool,
}

/// Whether `path` holds a token file that `import` may replace: an error
/// without `--force`, and for anything that is not a file.
fn existing_file(path: &Path, force: bool) -> Result<bool, Failure> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => Err(Failure::local(format!(
            "--token-file {} is a directory",
            path.display()
        ))),
        Ok(_) if !force => Err(
            Failure::local(format!("the token file {} exists", path.display()))
                .with_hint("give --force to replace it (the tokens in it are lost)"),
        ),
        Ok(_) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(Failure::local(format!(
            "cannot use the token file {}: {error}",
            path.display()
        ))),
    }
}

/// `import`: the tokens on stdin saved to `path`, without calling any
/// server. The check for an existing file and the save happen under the
/// token file's lock: a library process that is refreshing finishes first,
/// and two imports cannot both find no file.
pub async fn import(path: &Path, force: bool, secrets: &mut Secrets) -> Result<Imported, Failure> {
    let store = open_store(path)?;
    let input = stdin_tokens(secrets)?;
    let mut tokens = input.tokens;
    if !input.has_access_token {
        // No access token to use: saved as expired, so that the first use
        // refreshes instead of sending an empty one.
        tokens = tokens.with_expires_in(Duration::ZERO);
    }
    // A library process holds the lock while it refreshes: wait for it as
    // long as the library waits for a store.
    let mut lock = match store.lock(DEFAULT_STORE_TIMEOUT).await {
        Ok(Some(lock)) => lock,
        Ok(None) => return Err(Failure::local("the token file store has no lock")),
        Err(error) => {
            return Err(Failure::local(format!(
                "cannot lock the token file: {}",
                report::chain(error.as_ref())
            )));
        }
    };
    let replaced = existing_file(path, force)?;
    match lock.save(&tokens).await {
        Ok(LockedSave::Saved) => {}
        Ok(_) => return Err(Failure::local("the token file was not saved")),
        Err(error) => {
            return Err(Failure::local(format!(
                "cannot save the token file: {}",
                report::chain(error.as_ref())
            )));
        }
    }
    // Saved: a failure to unlock changes nothing, and the lock goes with
    // the process anyway.
    let _ = lock.release().await;
    Ok(Imported {
        tokens,
        has_access_token: input.has_access_token,
        saved_to: path.to_path_buf(),
        replaced,
    })
}
