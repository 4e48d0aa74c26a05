//! The worker processes: started, killed with SIGKILL, restarted, stopped;
//! their request lines added up as they come, so that a killed worker's
//! requests count too.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;

use crate::worker::WORKER_ENV;

/// What the requests of a phase came to.
#[derive(Debug, Default)]
pub struct Tally {
    pub requests: u64,
    pub ok: u64,
    /// Typed transient errors, by kind.
    pub transient: BTreeMap<String, u64>,
    /// Everything else, by outcome.
    pub other: BTreeMap<String, u64>,
    pub worst_wait_ms: u64,
    /// `(sent, ended, outcome)` of each failed request.
    pub failures: Vec<(u64, u64, String)>,
    /// Lines cut short by a SIGKILL (no trailing ` end`).
    pub partial_lines: u64,
}

impl Tally {
    fn add(&mut self, line: &str) {
        let Some(line) = line.strip_prefix("@@req ") else {
            return;
        };
        let Some(line) = line.strip_suffix(" end") else {
            self.partial_lines += 1;
            return;
        };
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(sent), Some(took), Some(outcome)) = (
            fields.first().and_then(|s| s.parse::<u64>().ok()),
            fields.get(1).and_then(|s| s.parse::<u64>().ok()),
            fields.get(2),
        ) else {
            self.partial_lines += 1;
            return;
        };
        self.requests += 1;
        self.worst_wait_ms = self.worst_wait_ms.max(took);
        if *outcome == "ok" {
            self.ok += 1;
            return;
        }
        if let Some(kind) = outcome.strip_prefix("transient:") {
            *self.transient.entry(kind.to_owned()).or_default() += 1;
        } else {
            *self.other.entry((*outcome).to_owned()).or_default() += 1;
        }
        self.failures
            .push((sent, sent + took, (*outcome).to_owned()));
    }
}

struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    reader: JoinHandle<()>,
}

/// The fleet, one slot per worker index.
pub struct Fleet {
    env: Vec<(String, String)>,
    logs: std::path::PathBuf,
    workers: Vec<Option<Worker>>,
    pub tally: Arc<Mutex<Tally>>,
    pub starts: u64,
}

impl Fleet {
    pub fn start(size: usize, env: Vec<(String, String)>, logs: &Path) -> Self {
        let mut fleet = Self {
            env,
            logs: logs.to_owned(),
            workers: (0..size).map(|_| None).collect(),
            tally: Arc::default(),
            starts: 0,
        };
        for index in 0..size {
            fleet.spawn(index);
        }
        fleet
    }

    pub fn size(&self) -> usize {
        self.workers.len()
    }

    /// Starts the worker `index` (again).
    pub fn spawn(&mut self, index: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("worker-{index}.log")))
            .expect("a worker log");
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .env(WORKER_ENV, index.to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("a worker starts");
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let tally = self.tally.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tally.lock().unwrap().add(&line);
            }
        });
        self.starts += 1;
        self.workers[index] = Some(Worker {
            child,
            stdin,
            reader,
        });
    }

    /// SIGKILL, and the wait for the process to be gone and its last line
    /// read.
    pub async fn kill(&mut self, index: usize) {
        let Some(mut worker) = self.workers[index].take() else {
            return;
        };
        let _ = worker.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), worker.child.wait()).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), worker.reader).await;
    }

    /// Closes every worker's stdin and waits (bounded) for them to finish
    /// their requests and exit; returns the workers that did not exit well.
    pub async fn stop(&mut self) -> Vec<String> {
        let mut bad = Vec::new();
        for worker in self.workers.iter_mut().flatten() {
            worker.stdin.take();
        }
        for (index, slot) in self.workers.iter_mut().enumerate() {
            let Some(mut worker) = slot.take() else {
                continue;
            };
            match tokio::time::timeout(Duration::from_secs(40), worker.child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(status) => bad.push(format!("worker {index}: {status:?}")),
                Err(_) => {
                    let _ = worker.child.start_kill();
                    bad.push(format!("worker {index} did not stop within 40 s"));
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), worker.reader).await;
        }
        bad
    }
}
