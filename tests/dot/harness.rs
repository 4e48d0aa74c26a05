//! The Django OAuth Toolkit server of `tests/dot_fleet.rs`: whether it can
//! run here, its virtualenv (installed from `tests/dot/requirements.txt`
//! once, under a file lock), and `serve.py` as a child process.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::process::{collect, first_line_then_collect, run_bounded, with_file_lock};

/// `python -m venv` plus `pip install` of the pinned packages (about 20 s
/// with pip's cache warm, a minute cold), and the wait for another test
/// process doing it.
pub const INSTALL_LIMIT: Duration = Duration::from_secs(300);
/// Migrating a new SQLite database and starting to serve.
pub const SERVER_START_LIMIT: Duration = Duration::from_secs(60);

/// `tests/dot`, where the Django project is.
pub fn project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dot")
}

/// The virtualenv, under the checkout's own `target/` (whatever
/// `CARGO_TARGET_DIR` says, so that every build of this checkout shares it).
pub fn venv_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dot-venv")
}

fn venv_python() -> PathBuf {
    venv_dir().join("bin/python")
}

/// A copy of the requirements the venv was installed from, written last.
fn venv_stamp() -> PathBuf {
    venv_dir().join("installed-requirements.txt")
}

fn requirements() -> Result<String, String> {
    let path = project_dir().join("requirements.txt");
    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The venv holds exactly what `requirements.txt` says now.
fn venv_fresh() -> bool {
    let installed = std::fs::read_to_string(venv_stamp()).ok();
    installed.is_some() && installed == requirements().ok() && venv_python().exists()
}

/// Why the server cannot run here, if it cannot. `install`: the test is
/// going to run, so create the venv if it is missing or stale.
pub fn missing(install: bool) -> Option<String> {
    if venv_fresh() {
        return None;
    }
    if let Err(reason) = python_usable() {
        return Some(reason);
    }
    if !install {
        return None;
    }
    install_venv().err()
}

/// `python3` runs and is 3.10 or later (Django 5.2's floor).
fn python_usable() -> Result<(), String> {
    let check = "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 3)";
    match Command::new("python3")
        .args(["-c", check])
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) if out.status.code() == Some(3) => {
            Err("python3 is older than 3.10 (Django 5.2 needs 3.10+)".to_owned())
        }
        Ok(out) => Err(format!("`python3 -c ..` exited with {}", out.status)),
        Err(e) if e.kind() == ErrorKind::NotFound => Err("python3 not found on PATH".to_owned()),
        Err(e) => Err(format!("cannot run python3: {e}")),
    }
}

/// `python3 -m venv` and `pip install -r requirements.txt`, unless another
/// test process did it while this one waited for the lock.
fn install_venv() -> Result<(), String> {
    let venv = venv_dir();
    let parent = venv.parent().expect("target/ is the venv's parent");
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    with_file_lock(&parent.join("dot-venv.lock"), INSTALL_LIMIT, || {
        if venv_fresh() {
            return Ok(());
        }
        eprintln!(
            "dot_fleet: installing Django OAuth Toolkit into {} (pip install -r tests/dot/requirements.txt)",
            venv.display()
        );
        let mut create = Command::new("python3");
        create.args(["-m", "venv", "--clear"]).arg(&venv);
        run_bounded(create, INSTALL_LIMIT).map(drop).map_err(|e| {
            format!("`python3 -m venv` failed (on Debian the venv module is in python3-venv): {e}")
        })?;
        let mut pip = Command::new(venv_python());
        pip.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
        ])
        .arg(project_dir().join("requirements.txt"));
        run_bounded(pip, INSTALL_LIMIT)
            .map(drop)
            .map_err(|e| format!("pip install -r tests/dot/requirements.txt failed: {e}"))?;
        let stamp = requirements()?;
        std::fs::write(venv_stamp(), stamp).map_err(|e| format!("cannot write the stamp: {e}"))
    })
}

/// What `serve.py` says when it is ready.
#[derive(Debug, Clone)]
pub struct Ready {
    pub base: String,
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    pub password: String,
}

/// A `serve.py` child with its own SQLite database: killed on drop (and it
/// exits by itself when its stdin closes, should this process die first).
pub struct DotServer {
    child: Child,
    _stdin: ChildStdin,
    log: Arc<Mutex<String>>,
    db_dir: PathBuf,
    pub ready: Ready,
}

impl DotServer {
    /// Starts the server on a free loopback port and waits (bounded) for
    /// its ready line. Its access tokens live `access_token_seconds`; each
    /// API request waits `api_delay_ms` before its token is checked.
    pub fn start(access_token_seconds: u64, api_delay_ms: u64) -> Result<Self, String> {
        let db_dir = std::env::temp_dir().join(format!("dot-fleet-db-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&db_dir);
        std::fs::create_dir_all(&db_dir)
            .map_err(|e| format!("cannot create {}: {e}", db_dir.display()))?;
        let mut child = Command::new(venv_python())
            .arg(project_dir().join("serve.py"))
            .env("DOT_DB_DIR", &db_dir)
            .env("PORT", "0")
            .env("DOT_ACCESS_TOKEN_SECONDS", access_token_seconds.to_string())
            .env("DOT_API_DELAY_MS", api_delay_ms.to_string())
            .env("EXIT_ON_STDIN_EOF", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start serve.py: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let log = Arc::new(Mutex::new(String::new()));
        collect(child.stderr.take().expect("piped stderr"), log.clone());
        let ready_rx = first_line_then_collect(child.stdout.take().expect("piped stdout"), &log);
        let line = ready_rx.recv_timeout(SERVER_START_LIMIT);
        let mut kill = |why: String| {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&db_dir);
            Err(format!("{why}; its log:\n{}", log.lock().unwrap()))
        };
        let Ok(line) = line else {
            return kill(format!(
                "serve.py printed no ready line within {SERVER_START_LIMIT:?}"
            ));
        };
        let ready: Value = match serde_json::from_str(&line) {
            Ok(ready) => ready,
            Err(e) => return kill(format!("serve.py's ready line is not JSON ({e}): {line}")),
        };
        let field = |name: &str| ready[name].as_str().map(str::to_owned);
        let (Some(base), Some(client_id), Some(client_secret), Some(username), Some(password)) = (
            field("base"),
            field("client_id"),
            field("client_secret"),
            field("username"),
            field("password"),
        ) else {
            return kill(format!("serve.py's ready line lacks a field: {line}"));
        };
        Ok(Self {
            child,
            _stdin: stdin,
            log,
            db_dir,
            ready: Ready {
                base,
                client_id,
                client_secret,
                username,
                password,
            },
        })
    }

    pub fn token_url(&self) -> String {
        format!("{}/o/token/", self.ready.base)
    }

    pub fn api_url(&self) -> String {
        format!("{}/api/ping", self.ready.base)
    }

    pub fn stats_url(&self) -> String {
        format!("{}/test/stats", self.ready.base)
    }

    /// What the server wrote to stderr so far (warnings, tracebacks).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for DotServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.db_dir);
        if std::thread::panicking() {
            eprintln!(
                "--- Django OAuth Toolkit server log ---\n{}\n--- end of server log ---",
                self.log.lock().unwrap()
            );
        }
    }
}
