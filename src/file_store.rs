//! A token file shared by the processes of one host.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{BoxError, Error};
use crate::store::{LockedSave, StoreError, StoreLock, TokenStore, poll_lock};
use crate::token::TokenSet;

/// The largest token file read; a token set is a few KiB at most.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Stores the token set in a JSON file, for one or many processes on a host.
///
/// - Writes are atomic: a temporary file in the same directory, `fsync`,
///   `rename`, `fsync` of the directory. A process killed at any moment
///   leaves the old or the new token set, never a torn file.
/// - The file is created with mode `0600`, and a token file that other users
///   can read (or write) is refused with a clear error.
/// - Refreshes are coordinated between processes through an advisory lock on
///   a sidecar file, `<path>.lock`: the process that takes it re-reads the
///   file and refreshes only if nobody else has. The OS releases the lock of
///   a process that dies. The lock file stays (empty) beside the token file:
///   deleting it while a process waits on it would split the lock in two.
///
/// What it protects: the tokens from other users of the machine (file
/// permissions), and the session from torn writes and double-spent refresh
/// tokens. What it does not: the tokens are in clear on disk, readable by
/// this user, by root and by anyone with the disk or its backups. Use an
/// encrypted volume, or a [`TokenStore`] of your own that encrypts, if that
/// matters.
///
/// ```no_run
/// # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
/// use reqwest_oauth2_refresh::{FileStore, TokenManager};
///
/// let manager = TokenManager::builder("https://auth.example.com/oauth/token")
///     .client_id("my-app")
///     .store(FileStore::new("/var/lib/my-app/tokens.json")?)
///     .build()?;
/// # let _ = manager; Ok(()) }
/// ```
pub struct FileStore {
    path: PathBuf,
    lock_path: PathBuf,
}

impl FileStore {
    /// A store for the token file at `path`, which need not exist yet (its
    /// directory must, by the time tokens are saved).
    pub fn new(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let Some(name) = path.file_name() else {
            return Err(Error::Config(format!(
                "the token file path `{}` names no file",
                path.display()
            )));
        };
        let mut lock_name = name.to_os_string();
        lock_name.push(".lock");
        let lock_path = path.with_file_name(lock_name);
        Ok(Self { path, lock_path })
    }

    /// The token file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .finish()
    }
}

/// An I/O failure with the file it concerns.
#[derive(Debug)]
struct FileError {
    what: String,
    source: io::Error,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A file the store will not use as it is: retrying does not help.
fn refused(message: String) -> BoxError {
    Box::new(StoreError::permanent(message))
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> BoxError {
    let what = what.into();
    move |source| Box::new(FileError { what, source })
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BoxError> + Send + 'static,
) -> Result<T, BoxError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| BoxError::from("the file store's worker thread panicked"))?
}

fn read_tokens(path: &Path) -> Result<Option<TokenSet>, BoxError> {
    let mut options = OpenOptions::new();
    options.read(true);
    // Opening a FIFO for reading waits for a writer, forever: without
    // blocking, the open returns and `check_private` refuses what is not a
    // regular file. A regular file reads as ever.
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(format!("cannot open {}", path.display()))(e)),
    };
    check_private(&file, path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(format!("cannot read {}", path.display())))?;
    parse_token_file(&bytes, path).map(Some)
}

/// A token file's content. Bytes, not a `String`: a file that is not UTF-8
/// is corrupt like any other bad content (a permanent refusal), not an I/O
/// error to retry.
fn parse_token_file(bytes: &[u8], path: &Path) -> Result<TokenSet, BoxError> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(refused(format!(
            "{} is larger than a token file can be",
            path.display()
        )));
    }
    // The parse error would quote the file's content: keep only its place.
    serde_json::from_slice(bytes).map_err(|e| {
        refused(format!(
            "{} is not a token file (JSON error at line {}, column {})",
            path.display(),
            e.line(),
            e.column()
        ))
    })
}

/// A token file is ours alone: owned by this process's user (whoever owns
/// it can read and rewrite the tokens), and closed to group and others.
#[cfg(unix)]
fn check_private(file: &File, path: &Path) -> Result<(), BoxError> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let metadata = file
        .metadata()
        .map_err(io_error(format!("cannot stat {}", path.display())))?;
    if !metadata.is_file() {
        return Err(refused(format!(
            "refusing to use the token file {}: it is not a regular file",
            path.display()
        )));
    }
    let ours = rustix::process::geteuid().as_raw();
    if metadata.uid() != ours {
        return Err(refused(format!(
            "refusing to use the token file {}: it is owned by user {}, not by this process's \
             user {ours}",
            path.display(),
            metadata.uid()
        )));
    }
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(refused(format!(
            "refusing to use the token file {}: other users can access it (mode {:o}); \
             run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &File, _: &Path) -> Result<(), BoxError> {
    Ok(())
}

fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
}

/// Options for the sidecar lock file, which is created if missing: never
/// through a symlink, or a link planted there would make this process
/// create (or truncate the mode of) a file wherever it points.
fn lock_file_options() -> OpenOptions {
    let mut options = private_options();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    options
}

use write::{sync_dir, write_tokens};

#[async_trait]
impl TokenStore for FileStore {
    async fn load(&self) -> Result<Option<TokenSet>, BoxError> {
        let path = self.path.clone();
        blocking(move || read_tokens(&path)).await
    }

    async fn save(&self, tokens: &TokenSet) -> Result<(), BoxError> {
        let path = self.path.clone();
        let tokens = tokens.clone();
        blocking(move || write_tokens(&path, &tokens)).await
    }

    async fn clear(&self) -> Result<(), BoxError> {
        let path = self.path.clone();
        blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_error(format!("cannot remove {}", path.display()))(e)),
            }
            match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
                _ => sync_dir(Path::new(".")),
            }
        })
        .await
    }

    async fn lock(&self, wait: Duration) -> Result<Option<Box<dyn StoreLock>>, BoxError> {
        let lock_path = self.lock_path.clone();
        let file = blocking(move || {
            lock_file_options()
                .open(&lock_path)
                .map_err(io_error(format!("cannot open {}", lock_path.display())))
        })
        .await?;
        // Poll rather than block a thread: the wait stays bounded and the
        // runtime keeps its threads.
        let acquired = poll_lock(
            wait,
            Duration::from_millis(2),
            Duration::from_millis(50),
            || async {
                match file.try_lock() {
                    Ok(()) => Ok(true),
                    Err(TryLockError::WouldBlock) => Ok(false),
                    Err(TryLockError::Error(e)) => Err(io_error(format!(
                        "cannot lock {}",
                        self.lock_path.display()
                    ))(e)),
                }
            },
        )
        .await?;
        if !acquired {
            return Err(format!(
                "another process held {} for longer than {wait:?}",
                self.lock_path.display()
            )
            .into());
        }
        Ok(Some(Box::new(FileLock {
            file,
            path: self.path.clone(),
        })))
    }
}

/// The held sidecar lock. Closing the file (drop, or the process dying)
/// releases it.
struct FileLock {
    file: File,
    path: PathBuf,
}

impl fmt::Debug for FileLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileLock")
            .field("path", &self.path)
            .finish()
    }
}

#[async_trait]
impl StoreLock for FileLock {
    async fn load(&mut self) -> Result<Option<TokenSet>, BoxError> {
        let path = self.path.clone();
        blocking(move || read_tokens(&path)).await
    }

    /// An OS lock cannot expire while its holder lives, so no fencing.
    async fn save(&mut self, tokens: &TokenSet) -> Result<LockedSave, BoxError> {
        let path = self.path.clone();
        let tokens = tokens.clone();
        blocking(move || write_tokens(&path, &tokens)).await?;
        Ok(LockedSave::Saved)
    }

    async fn release(self: Box<Self>) -> Result<(), BoxError> {
        self.file.unlock().map_err(io_error(format!(
            "cannot unlock {}.lock",
            self.path.display()
        )))
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
mod write;
