//! Everything around the scenarios: whether the server can run here,
//! installing its pinned packages, starting `node server.mjs`, running
//! child processes within a limit, and running one scenario as a trial.

use std::fmt::Display;
use std::future::Future;
use std::io::ErrorKind;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt as _;

pub use crate::process::run_bounded;
use crate::process::{collect, first_line_then_collect, with_file_lock};
use serde_json::Value;

use crate::common::service::multi_thread;
use crate::fixture::Interop;

/// Every bounded wait of these tests.
pub const TEST_LIMIT: Duration = Duration::from_secs(120);
pub const SERVER_START_LIMIT: Duration = Duration::from_secs(30);
pub const DRIVER_LIMIT: Duration = Duration::from_secs(45);
/// `npm ci` (a few seconds with a warm cache), and the wait for another
/// test process's `npm ci` to end.
pub const INSTALL_LIMIT: Duration = Duration::from_secs(300);

/// One scenario: an async test given its own server.
pub type Scenario = fn(Interop) -> Pin<Box<dyn Future<Output = ()>>>;

pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The server to use instead of starting one: `OIDC_ISSUER`, if set.
pub fn issuer_from_env() -> Option<String> {
    std::env::var("OIDC_ISSUER")
        .ok()
        .filter(|issuer| !issuer.is_empty())
        .map(|issuer| issuer.trim_end_matches('/').to_owned())
}

/// Why the scenarios cannot run here, if they cannot. `install`: some
/// scenario is going to run, so install the server's packages if needed
/// (`npm ci`, once, under a lock shared with other test processes).
pub fn missing(install: bool) -> Option<String> {
    // The token driver (get-tokens.mjs) runs on node, whatever the server.
    if let Err(reason) = usable("node") {
        return Some(reason);
    }
    if issuer_from_env().is_some() || node_modules_fresh() {
        return None;
    }
    if let Err(reason) = usable("npm") {
        return Some(format!(
            "tests/interop/node_modules is missing or older than package-lock.json, and {reason}"
        ));
    }
    if !install {
        return None;
    }
    install_node_modules().err()
}

/// `program --version` works.
fn usable(program: &str) -> Result<(), String> {
    match Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("`{program} --version` exited with {}", out.status)),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(format!("{program} not found on PATH")),
        Err(e) => Err(format!("cannot run {program}: {e}")),
    }
}

/// `node_modules` was installed (npm writes `node_modules/.package-lock.json`
/// last) from the `package-lock.json` that is there now, or a later one.
fn node_modules_fresh() -> bool {
    let modified = |path: PathBuf| -> Option<SystemTime> { path.metadata().ok()?.modified().ok() };
    let dir = interop_dir();
    match (
        modified(dir.join("node_modules/.package-lock.json")),
        modified(dir.join("package-lock.json")),
    ) {
        (Some(installed), Some(locked)) => installed >= locked,
        _ => false,
    }
}

/// `npm ci --no-audit --no-fund` in tests/interop, unless another test
/// process did it while this one waited for the lock.
fn install_node_modules() -> Result<(), String> {
    with_file_lock(&interop_dir().join(".npm-ci.lock"), INSTALL_LIMIT, || {
        if node_modules_fresh() {
            return Ok(());
        }
        eprintln!("interop: installing the pinned oidc-provider (npm ci in tests/interop)");
        let mut npm = Command::new("npm");
        npm.args(["ci", "--no-audit", "--no-fund"])
            .current_dir(interop_dir());
        run_bounded(npm, INSTALL_LIMIT)
            .map(drop)
            .map_err(|e| format!("`npm ci` in tests/interop failed: {e}"))
    })
}

/// A `node server.mjs` child: killed on drop (and it exits by itself when
/// its stdin closes, should this process die without dropping it).
pub struct ServerProcess {
    child: Child,
    _stdin: ChildStdin,
    log: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Starts the server and waits (bounded) for its ready line; returns
    /// the main issuer.
    pub fn start() -> Result<(Self, String), String> {
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(interop_dir())
            .env("PORT", "0")
            .env("EXIT_ON_STDIN_EOF", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start node server.mjs: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        collect(stderr, log.clone());
        let ready_rx = first_line_then_collect(child.stdout.take().expect("piped stdout"), &log);
        let mut server = ServerProcess {
            child,
            _stdin: stdin,
            log,
        };
        let Ok(line) = ready_rx.recv_timeout(SERVER_START_LIMIT) else {
            let _ = server.child.kill();
            let _ = server.child.wait();
            return Err(format!(
                "server.mjs printed no ready line within {SERVER_START_LIMIT:?}; its log:\n{}",
                server.log.lock().unwrap()
            ));
        };
        let ready: Value = serde_json::from_str(&line)
            .map_err(|e| format!("server.mjs ready line is not JSON ({e}): {line}"))?;
        let issuer = ready["issuer"]
            .as_str()
            .ok_or_else(|| format!("no issuer in the ready line: {line}"))?
            .to_owned();
        Ok((server, issuer))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- interop server log ---\n{}\n--- end of server log ---",
                self.log.lock().unwrap()
            );
        }
    }
}

/// With `--nocapture`, notes are printed as they come.
static SHOW_NOTES: AtomicBool = AtomicBool::new(false);

pub fn show_notes(show: bool) {
    SHOW_NOTES.store(show, Ordering::Relaxed);
}

/// What a scenario says about its run. libtest-mimic captures no output,
/// so notes are kept and printed only if the scenario fails (or with
/// `--nocapture`), as libtest does with a test's output.
#[derive(Clone, Default)]
pub struct Notes(Arc<Mutex<Vec<String>>>);

impl Notes {
    pub fn add(&self, note: impl Display) {
        if SHOW_NOTES.load(Ordering::Relaxed) {
            eprintln!("{note}");
        } else {
            self.0.lock().unwrap().push(note.to_string());
        }
    }

    fn print(&self, name: &str) {
        let notes = self.0.lock().unwrap();
        if !notes.is_empty() {
            eprintln!("---- {name} notes ----\n{}", notes.join("\n"));
        }
    }
}

/// Runs one scenario on the runtime its `#[tokio::test]` had (two worker
/// threads), with its own server, within [`TEST_LIMIT`].
pub fn run(name: &str, scenario: Scenario) {
    multi_thread(2).block_on(async {
        let notes = Notes::default();
        let interop = Interop::start(notes.clone()).await;
        let test = AssertUnwindSafe(scenario(interop)).catch_unwind();
        match tokio::time::timeout(TEST_LIMIT, test).await {
            Ok(Ok(())) => {}
            Ok(Err(panic)) => {
                notes.print(name);
                std::panic::resume_unwind(panic);
            }
            Err(_) => {
                notes.print(name);
                panic!("the test did not finish within {TEST_LIMIT:?}");
            }
        }
    });
}
