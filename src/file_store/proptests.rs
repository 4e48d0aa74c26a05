//! Property tests of what the FileStore reads back: any bytes are a token
//! set or a permanent refusal that quotes nothing of the file; every token
//! set it writes, through the real file, reads back equal; whatever a token
//! response of the default size cap holds fits the file.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::write::file_bytes;
use super::*;
use crate::endpoint::response::proptests::check_round_trip;
use crate::endpoint::response::proptests::strategies::*;
use crate::manager::DEFAULT_MAX_RESPONSE_BYTES;
use std::sync::atomic::{AtomicU64, Ordering};

fn private_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "oauth2-refresh-proptests-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Read back: a token set, or a permanent refusal that names the file and
/// quotes none of its content.
fn check_read(bytes: &[u8], secret: Option<&str>) -> Result<(), TestCaseError> {
    match parse_token_file(bytes, Path::new("/x/tokens.json")) {
        Ok(tokens) => check_round_trip(&tokens)?,
        Err(error) => {
            let store = error.downcast_ref::<StoreError>();
            prop_assert!(store.is_some_and(StoreError::is_permanent), "{error}");
            let shown = error.to_string();
            prop_assert!(shown.contains("/x/tokens.json"), "{shown}");
            if let Some(secret) = secret {
                prop_assert!(!shown.contains(secret), "{shown}");
            }
        }
    }
    Ok(())
}

/// A response of at most the default cap, read as the refresh path reads it.
fn capped_response_set() -> impl Strategy<Value = TokenSet> {
    valid_response().prop_filter_map("within the default cap", |map| {
        let body = serde_json::to_vec(&map).ok()?;
        if body.len() > DEFAULT_MAX_RESPONSE_BYTES {
            return None;
        }
        TokenSet::from_token_response(&body).ok()
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn token_file_of_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_read(&bytes, None)?;
    }

    #[test]
    fn token_file_edited(tokens in token_set(), edits in edits()) {
        let bytes = apply(serde_json::to_vec_pretty(&tokens).unwrap(), &edits);
        let secret = Some(tokens.access_token().secret()).filter(|s| s.len() >= 8);
        check_read(&bytes, secret)?;
    }

    #[test]
    fn token_file_of_any_json(value in json_value()) {
        check_read(&serde_json::to_vec(&value).unwrap(), None)?;
    }

    /// What any response within the default cap held is written, and read
    /// back equal.
    #[test]
    fn token_file_holds_any_capped_response(tokens in capped_response_set()) {
        let bytes = file_bytes(&tokens).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = parse_token_file(&bytes, Path::new("t"))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_round_trip(&back)?;
        prop_assert_eq!(back.access_token(), tokens.access_token());
    }
}

proptest! {
    // Real files, each written with two fsyncs: fewer cases.
    #![proptest_config(config(24))]

    #[test]
    fn token_file_round_trips_through_the_disk(tokens in token_set()) {
        let dir = private_dir();
        let path = dir.join("tokens.json");
        let written = write_tokens(&path, &tokens);
        let read = read_tokens(&path);
        let _ = std::fs::remove_dir_all(&dir);
        written.map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = read.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(back.is_some());
        if let Some(back) = back {
            check_round_trip(&back)?;
            prop_assert_eq!(back.access_token(), tokens.access_token());
        }
    }
}

/// Regression: a 64 KiB response whose extra field nests 60 deep was
/// accepted, but its pretty-printed file (4 MB of indentation) was past
/// what the reader takes: no process could load the tokens again.
#[test]
fn a_deep_capped_response_still_fits_the_file() {
    let depth = 60;
    let zeros = "0,".repeat((DEFAULT_MAX_RESPONSE_BYTES - 200) / 2);
    let body = format!(
        r#"{{"access_token":"abcdefghijklmnopq","x":{}{}0{}}}"#,
        "[".repeat(depth),
        zeros,
        "]".repeat(depth)
    );
    assert!(body.len() <= DEFAULT_MAX_RESPONSE_BYTES);
    let tokens = TokenSet::from_token_response(body.as_bytes()).unwrap();
    assert!(serde_json::to_vec_pretty(&tokens).unwrap().len() as u64 > MAX_FILE_BYTES);
    let bytes = file_bytes(&tokens).unwrap();
    assert_eq!(parse_token_file(&bytes, Path::new("t")).unwrap(), tokens);
}

/// A set too large even for a compact file is refused when saved, not
/// written for every reader to refuse.
#[test]
fn a_set_larger_than_a_file_is_refused_on_save() {
    let tokens = TokenSet::new("a".repeat(MAX_FILE_BYTES as usize));
    let error = file_bytes(&tokens).unwrap_err();
    assert!(error.downcast_ref::<StoreError>().unwrap().is_permanent());
    assert!(!error.to_string().contains("aaaa"), "{error}");
}

/// Megabytes of content are refused or read in bounded time.
#[test]
fn megabyte_token_files_finish_quickly() {
    let limit = MAX_FILE_BYTES as usize;
    for bytes in [
        vec![b'['; limit],
        vec![b'{'; limit + 1],
        format!(
            r#"{{"access_token":"{}","issued_at":1}}"#,
            "\\u00e9".repeat(limit / 7)
        )
        .into_bytes(),
        vec![0xff; limit],
    ] {
        let started = std::time::Instant::now();
        let _ = parse_token_file(&bytes, Path::new("t"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
