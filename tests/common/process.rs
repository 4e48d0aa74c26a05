//! Child processes for the tests that run a service of their own (a Python
//! or Node server, an installer): an OS file lock around an install, a
//! command run within a time limit, and a child's output collected on
//! threads. `tests/dot_fleet.rs` uses these; they are the same functions as
//! in `tests/interop/harness.rs`, which can switch to this file
//! (`#[path = "../common/process.rs"] mod process;`).
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Runs `f` holding an exclusive lock on the file `path`, waiting for it
/// at most `limit`. The lock is the OS's (`flock`): it goes with the file
/// handle, also when a test process dies holding it.
pub fn with_file_lock<T>(
    path: &Path,
    limit: Duration,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // `File::lock` blocks without a limit: wait for it on a thread. If we
    // stop waiting, the thread's send fails and it drops (unlocks) the file.
    let (locked_tx, locked_rx) = mpsc::channel::<std::io::Result<File>>();
    std::thread::spawn(move || {
        let _ = locked_tx.send(file.lock().map(|()| file));
    });
    let locked = match locked_rx.recv_timeout(limit) {
        Ok(Ok(file)) => file,
        Ok(Err(e)) => return Err(format!("cannot lock {}: {e}", path.display())),
        Err(_) => return Err(format!("{} stayed locked for {limit:?}", path.display())),
    };
    let result = f();
    drop(locked);
    result
}

/// Appends everything `stream` says to `log`, on a thread.
pub fn collect(mut stream: impl Read + Send + 'static, log: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            log.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}

/// Sends the first line of `stream`, and appends the rest to `log`.
pub fn first_line_then_collect(
    stream: impl Read + Send + 'static,
    log: &Arc<Mutex<String>>,
) -> mpsc::Receiver<String> {
    let (first_tx, first_rx) = mpsc::channel();
    let log = log.clone();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stream).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = first_tx.send(first);
        }
        for line in lines.map_while(Result::ok) {
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    first_rx
}

/// Runs `command` to completion within `limit`, killing it past that.
/// Returns its stdout, or an error with its stderr.
pub fn run_bounded(mut command: Command, limit: Duration) -> Result<String, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start {command:?}: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send(out);
    });
    let stderr = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let Ok(out) = rx.recv_timeout(limit) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("{command:?} did not finish within {limit:?}"));
    };
    let status = child.wait().map_err(|e| e.to_string())?;
    let err = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        let program = command.get_program().to_string_lossy();
        Err(format!("{program} exited with {status}: {err}"))
    }
}
