//! The file store alone: permissions, refusals, the lock.
use super::*;
use std::io::Write as _;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "oauth2-refresh-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn saves_privately_and_loads_back() {
    let dir = temp_dir("roundtrip");
    let store = FileStore::new(dir.join("tokens.json")).unwrap();
    assert!(store.load().await.unwrap().is_none());
    let tokens = TokenSet::new("a")
        .with_refresh_token("r")
        .with_expires_in(Duration::from_secs(60));
    store.save(&tokens).await.unwrap();
    let back = store.load().await.unwrap().unwrap();
    assert_eq!(back.refresh_token().unwrap().secret(), "r");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["tokens.json"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn refuses_a_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir("perms");
    let path = dir.join("tokens.json");
    std::fs::write(&path, r#"{"access_token":"a","issued_at":0}"#).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = FileStore::new(&path).unwrap().load().await.unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn garbage_is_refused_without_quoting_it() {
    let dir = temp_dir("garbage");
    let path = dir.join("tokens.json");
    private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"access_token\": \"secret-value\"")
        .unwrap();
    let err = FileStore::new(&path).unwrap().load().await.unwrap_err();
    assert!(!err.to_string().contains("secret-value"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn lock_is_exclusive_and_bounded() {
    let dir = temp_dir("lock");
    let store = FileStore::new(dir.join("tokens.json")).unwrap();
    let held = store.lock(Duration::from_secs(1)).await.unwrap().unwrap();
    // The wait runs on tokio's clock: paused, a 10-minute wait passes at once.
    tokio::time::pause();
    let started = tokio::time::Instant::now();
    let err = store.lock(Duration::from_secs(600)).await.unwrap_err();
    assert!(err.to_string().contains("longer than"), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(600));
    tokio::time::resume();
    held.release().await.unwrap();
    let again = store.lock(Duration::from_millis(50)).await.unwrap();
    assert!(again.is_some());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_path_must_name_a_file() {
    assert!(FileStore::new("/").is_err());
    let store = FileStore::new("dir/tokens.json").unwrap();
    assert_eq!(store.lock_path, Path::new("dir/tokens.json.lock"));
}

#[cfg(unix)]
#[tokio::test]
async fn a_symlink_planted_as_the_lock_file_is_refused_and_creates_nothing() {
    let dir = temp_dir("planted-lock");
    let store = FileStore::new(dir.join("tokens.json")).unwrap();
    let target = dir.join("created-by-the-victim");
    std::os::unix::fs::symlink(&target, dir.join("tokens.json.lock")).unwrap();
    let err = store.lock(Duration::from_millis(10)).await.unwrap_err();
    assert!(err.to_string().contains("cannot open"), "{err}");
    assert!(
        !target.exists(),
        "the lock must not create the link's target"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn a_token_file_owned_by_another_user_is_refused() {
    use std::os::unix::fs::MetadataExt as _;
    let ours = rustix::process::geteuid().as_raw();
    let dir = temp_dir("foreign-owner");
    let file = dir.join("tokens.json");
    let path = if ours == 0 {
        // Root can make a private file that belongs to someone else.
        FileStore::new(&file)
            .unwrap()
            .save(&TokenSet::new("a"))
            .await
            .unwrap();
        std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
        file.clone()
    } else {
        // Anyone else finds a file owned by root.
        PathBuf::from("/etc/passwd")
    };
    assert_ne!(std::fs::metadata(&path).unwrap().uid(), ours);
    let err = FileStore::new(&path).unwrap().load().await.unwrap_err();
    assert!(err.to_string().contains("owned by user"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn a_fifo_in_place_of_the_token_file_is_refused_not_waited_on() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir("fifo");
    let file = dir.join("tokens.json");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &file,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // No writer ever opens it: a blocking open would never return.
    let store = FileStore::new(&file).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), store.load())
        .await
        .expect("load returns at once")
        .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_killed_saves_temporary_file_goes_with_the_next_save() {
    let dir = temp_dir("orphans");
    let store = FileStore::new(dir.join("tokens.json")).unwrap();
    let planted = |file: &str, age: Duration| {
        let path = dir.join(file);
        let handle = private_options()
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        handle
            .set_modified(std::time::SystemTime::now() - age)
            .unwrap();
        path
    };
    let hour = Duration::from_secs(3600);
    let orphan = planted(".tokens.json.4242.7.tmp", hour);
    let in_flight = planted(".tokens.json.4243.0.tmp", Duration::ZERO);
    let other_file = planted(".other.json.4242.7.tmp", hour);
    let not_ours = planted(".tokens.json.backup.tmp", hour);
    store.save(&TokenSet::new("a")).await.unwrap();
    assert!(!orphan.exists(), "an hour-old temporary file is an orphan");
    assert!(in_flight.exists(), "a fresh one may be a live save's");
    assert!(other_file.exists() && not_ours.exists());
    std::fs::remove_dir_all(dir).unwrap();
}
