//! Writing the token file: never half a file, never readable by others.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::{MAX_FILE_BYTES, io_error, private_options, refused};
use crate::error::BoxError;
use crate::token::TokenSet;

/// Write to a temporary file beside the target, sync, rename over it, sync
/// the directory: the file holds the old set or the new one, never half.
pub(super) fn write_tokens(path: &Path, tokens: &TokenSet) -> Result<(), BoxError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let json = file_bytes(tokens)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = private_options()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(io_error(format!("cannot create {}", temp.display())))?;
        file.write_all(&json)
            .and_then(|()| file.sync_all())
            .map_err(io_error(format!("cannot write {}", temp.display())))?;
        std::fs::rename(&temp, path)
            .map_err(io_error(format!("cannot replace {}", path.display())))?;
        Ok::<_, BoxError>(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    sync_dir(dir)?;
    sweep_orphans(dir, &name);
    Ok(())
}

/// A temporary file this old was left by a process that died between
/// creating it and renaming it: a live save renames within milliseconds.
const ORPHAN_AGE: Duration = Duration::from_secs(60);

/// The most directory entries looked at for orphans, so that a token file
/// kept in a crowded directory costs its saves little.
const SWEEP_ENTRIES: usize = 4096;

/// Removes the temporary files of saves whose process was killed before the
/// rename (`SIGKILL`, a power cut): each holds a copy of a token set, a
/// secret that should not outlive its purpose. Best effort: a file that
/// cannot be removed stays for the next save.
fn sweep_orphans(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.take(SWEEP_ENTRIES).flatten() {
        let is_orphan = entry
            .file_name()
            .to_str()
            .is_some_and(|file| is_temp_of(file, name))
            && entry.metadata().is_ok_and(|meta| {
                meta.is_file()
                    && meta
                        .modified()
                        .ok()
                        .and_then(|at| now.duration_since(at).ok())
                        .is_some_and(|age| age >= ORPHAN_AGE)
            });
        if is_orphan && std::fs::remove_file(entry.path()).is_ok() {
            tracing::debug!(file = %entry.path().display(), "removed a temporary token file left by a killed save");
        }
    }
}

/// Whether `file` is a name `write_tokens` gives the temporary files of
/// `name`: `.<name>.<pid>.<counter>.tmp`.
fn is_temp_of(file: &str, name: &str) -> bool {
    let middle = file
        .strip_prefix('.')
        .and_then(|rest| rest.strip_prefix(name))
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(".tmp"));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    middle
        .and_then(|middle| middle.split_once('.'))
        .is_some_and(|(pid, counter)| digits(pid) && digits(counter))
}

/// Pretty for the people who read it, compact when the indentation would
/// take it past what `read_tokens` accepts (deep extra fields multiply a
/// 64 KiB token response into megabytes), refused when even that would:
/// a file that no process could load back is worse than a failed save
/// (found by the property tests).
pub(super) fn file_bytes(tokens: &TokenSet) -> Result<Vec<u8>, BoxError> {
    let mut json = serde_json::to_vec_pretty(tokens)?;
    if json.len() as u64 > MAX_FILE_BYTES {
        json = serde_json::to_vec(tokens)?;
    }
    if json.len() as u64 > MAX_FILE_BYTES {
        return Err(refused(format!(
            "the token set takes {} bytes, more than a token file can hold ({MAX_FILE_BYTES})",
            json.len()
        )));
    }
    Ok(json)
}

#[cfg(unix)]
pub(super) fn sync_dir(dir: &Path) -> Result<(), BoxError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(format!("cannot sync {}", dir.display())))
}

#[cfg(not(unix))]
pub(super) fn sync_dir(_: &Path) -> Result<(), BoxError> {
    Ok(())
}
