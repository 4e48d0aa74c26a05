//! HTTP plumbing shared by the token client and discovery.

use std::sync::Arc;

use crate::error::Error;

/// Why a body could not be read.
pub(crate) enum ReadError {
    TooLarge,
    Transport(reqwest::Error),
}

/// Reads the body, refusing to buffer more than `cap` bytes.
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|len| len > cap as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The client the crate builds when the user gives none: it follows no
/// redirects, so a token endpoint or metadata URL cannot send our secrets to
/// another host.
pub(crate) fn no_redirect_client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Transport(Arc::new(e)))
}
