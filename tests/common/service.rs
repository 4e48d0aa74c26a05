//! Trials for tests that need a service from outside the crate (a Redis, a
//! Node authorization server), for the targets with `harness = false`.
//!
//! When the service is missing, its tests are reported as *ignored*, and
//! the reason is printed once for the target, so that `cargo test` never
//! counts them as passed. Under CI (see [`in_ci`]) they run instead and
//! fail with that reason. `--include-ignored` / `--ignored` run them too,
//! and they fail saying what is missing.

use std::collections::BTreeMap;
use std::process::ExitCode;

use libtest_mimic::{Arguments, Failed, Trial};

/// Whether this is a CI run, where a missing service is a failure: `CI` is
/// `true` (in any case) or `1`. The one definition for every test target.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The trials of one test target, and the services they miss.
pub struct Trials {
    target: &'static str,
    args: Arguments,
    trials: Vec<Trial>,
    /// How many of the trials that the filters keep miss each reason.
    missing: BTreeMap<String, usize>,
}

impl Trials {
    /// Reads the command line as libtest would (filters, `--ignored`,
    /// `--include-ignored`, `--list`, `--test-threads`, ...).
    pub fn from_args(target: &'static str) -> Self {
        Self {
            target,
            args: Arguments::from_args(),
            trials: Vec::new(),
            missing: BTreeMap::new(),
        }
    }

    /// Whether a trial named `name` would run, with its service there: not
    /// filtered out, not listing only. For work worth doing only then.
    pub fn would_run(&self, name: &str) -> bool {
        let probe = Trial::test(name, || Ok(()));
        !self.args.list && !self.args.is_filtered_out(&probe) && !self.args.is_ignored(&probe)
    }

    /// Whether `--nocapture` was given: libtest-mimic captures nothing, so
    /// tests keep their notes for a failure unless asked to show them.
    pub fn nocapture(&self) -> bool {
        self.args.nocapture
    }

    /// Adds the test `name`; `missing` is why its service is not there, if
    /// it is not. `run` fails by panicking, like a `#[test]`.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        missing: Option<&str>,
        run: impl FnOnce() + Send + 'static,
    ) {
        let trial = match missing {
            None => Trial::test(name, move || {
                run();
                Ok(())
            }),
            Some(reason) => {
                let message = format!("{}: {reason}", self.target);
                let trial = Trial::test(name, move || Err(Failed::from(message)))
                    .with_ignored_flag(!in_ci());
                if !self.args.is_filtered_out(&trial) {
                    *self.missing.entry(reason.to_owned()).or_default() += 1;
                }
                trial
            }
        };
        self.trials.push(trial);
    }

    /// Says once per reason what is missing, then runs the trials.
    pub fn run(self) -> ExitCode {
        if !self.args.list {
            let target = self.target;
            let verdict = if in_ci() {
                "will fail (CI is set)"
            } else {
                "ignored"
            };
            for (reason, count) in &self.missing {
                let tests = if *count == 1 { "test" } else { "tests" };
                eprintln!("{target}: {count} {tests} {verdict}: {reason}");
            }
        }
        libtest_mimic::run(&self.args, self.trials).exit_code()
    }
}

/// A runtime like `#[tokio::test]`'s (current thread).
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A runtime like `#[tokio::test(flavor = "multi_thread", worker_threads = N)]`'s.
pub fn multi_thread(worker_threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
