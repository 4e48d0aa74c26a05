//! Reading a private key file: refused when others may read it, as a token
//! file is.

use std::io::Read as _;
use std::path::Path;

use crate::error::Error;

/// Key files, certificates and service-account JSON are small; a cap keeps
/// a wrong path (a log file, a device) from being read whole.
const MAX_KEY_FILE_BYTES: u64 = 256 * 1024;

/// The file's text, if it is a regular file that only its owner can read.
#[cfg_attr(
    not(any(feature = "crypto-ring", feature = "crypto-rustcrypto")),
    allow(dead_code)
)]
pub(crate) fn read_private_file(path: &Path) -> Result<String, Error> {
    let shown = path.display();
    // Before opening: opening a FIFO would wait for a writer, forever. The
    // open file is checked again below.
    match std::fs::metadata(path) {
        Ok(metadata) if !metadata.is_file() => {
            return Err(Error::Config(format!("the key file {shown} is not a file")));
        }
        _ => {}
    }
    let file = std::fs::File::open(path)
        .map_err(|e| Error::Config(format!("cannot open the key file {shown}: {e}")))?;
    // The open file's metadata, not the path's: no window between the check
    // and the read.
    let metadata = file
        .metadata()
        .map_err(|e| Error::Config(format!("cannot read the key file {shown}: {e}")))?;
    if !metadata.is_file() {
        return Err(Error::Config(format!("the key file {shown} is not a file")));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(Error::Config(format!(
                "the key file {shown} can be read by group or others (mode {:o}); \
                 run `chmod 600` on it",
                mode & 0o777
            )));
        }
    }
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::Config(format!("cannot read the key file {shown}: {e}")))?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(Error::Config(format!("the key file {shown} is too large")));
    }
    Ok(text)
}
