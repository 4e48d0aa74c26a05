//! What a phase came to: its figures, printed as a table, and the
//! invariants checked against them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::driver::{Actions, Reads};
use crate::faults::FaultLog;
use crate::fleet::Tally;
use crate::stats::Stats;

pub const ACCESS_TOKEN_SECS: u64 = 2;

/// What one phase came to.
pub struct Report {
    pub name: &'static str,
    pub elapsed: Duration,
    pub tally: Tally,
    pub actions: Actions,
    pub reads: Reads,
    pub faults: FaultLog,
    pub restarts: u64,
    pub forwarded: usize,
    pub quarantine_hits: HashMap<String, u64>,
    pub before: Stats,
    pub after: Stats,
    pub bad_exits: Vec<String>,
    /// How long a fault's effect may outlast it (a killed holder's lock).
    pub settle: Duration,
    /// Temporary files that saves cut short by a kill left beside the
    /// token file.
    pub temp_files: usize,
    /// Saves under the lock tried again, and refreshes whose save failed
    /// for good (the workers' logs say so).
    pub failed_saves: (usize, usize),
}

fn invalid_grants(report: &Report) -> u64 {
    let count = |s: &Stats| {
        s.refresh_errors
            .get("invalid_grant")
            .copied()
            .unwrap_or_default()
    };
    count(&report.after) - count(&report.before)
}

fn refreshes(report: &Report) -> u64 {
    report.after.refresh_calls - report.before.refresh_calls
}

/// Refresh points: a 2-second token is refreshed half-way through its life.
fn expiries(report: &Report) -> u64 {
    report.elapsed.as_millis() as u64 / (ACCESS_TOKEN_SECS * 500) + 1
}

/// The broken invariants of a phase, each a sentence.
pub fn violations(report: &Report) -> Vec<String> {
    let mut broken = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            broken.push(format!("{}: {what}", report.name));
        }
    };
    server_side(report, &mut check);
    fleet_side(report, &mut check);
    broken
}

/// What the server and the proxy's ledger saw.
fn server_side(report: &Report, check: &mut impl FnMut(bool, String)) {
    check(
        report.tally.requests > 0 && report.tally.ok > 0,
        "the fleet's requests succeeded at all".to_owned(),
    );
    let grants = invalid_grants(report);
    check(
        grants == 0,
        format!(
            "the server saw {grants} spent refresh tokens (invalid_grant): {:?}",
            report.after.refresh_error_descriptions
        ),
    );
    let excused = &report.actions.lost_after;
    let unexcused: u64 = report
        .quarantine_hits
        .iter()
        .filter(|(rt, _)| !excused.contains(*rt))
        .map(|(_, hits)| hits)
        .sum();
    check(
        unexcused == 0,
        format!(
            "{unexcused} presentations of a refresh token already spent (whose successor was saved), stopped by the proxy"
        ),
    );
    check(
        report.reads.torn.is_empty(),
        format!("torn store reads: {:?}", report.reads.torn),
    );
    check(
        report.reads.missing == 0,
        format!("{} reads found no token set", report.reads.missing),
    );
}

/// What the workers and the driver saw.
fn fleet_side(report: &Report, check: &mut impl FnMut(bool, String)) {
    // A 401 handed back is one of these: the replay after a refresh must
    // carry a token the API accepts, faults or not.
    let other = &report.tally.other;
    check(
        other.is_empty(),
        format!("requests that failed without a typed transient error: {other:?}"),
    );
    let settle = report.settle.as_millis() as u64;
    let unexplained: Vec<_> = report
        .tally
        .failures
        .iter()
        .filter(|(sent, ended, _)| !report.faults.any_during(*sent, *ended, settle))
        .collect();
    check(
        unexplained.is_empty(),
        format!(
            "failures with no fault injected during them or {settle} ms before: {unexplained:?}"
        ),
    );
    let bound = expiries(report) + report.restarts + report.faults.total();
    check(
        refreshes(report) <= bound,
        format!(
            "{} refreshes > {bound} (expiries + restarts + injected faults)",
            refreshes(report)
        ),
    );
    check(
        report.actions.kills() > 0,
        "the driver killed workers".to_owned(),
    );
    check(
        report.actions.kills_mid_refresh_dropped + report.actions.kills_mid_refresh_forwarded > 0,
        "a kill landed mid-refresh".to_owned(),
    );
    check(
        report.actions.kills_mid_save > 0,
        "a kill landed mid-save".to_owned(),
    );
    check(
        report.actions.anomalies.is_empty(),
        format!("{:?}", report.actions.anomalies),
    );
    check(
        report.bad_exits.is_empty(),
        format!("workers that did not stop well: {:?}", report.bad_exits),
    );
    check(
        report.tally.partial_lines <= report.actions.kills(),
        format!("{} partial report lines", report.tally.partial_lines),
    );
}

/// The figures' table: a label and each phase's value.
type Row = (&'static str, fn(&Report) -> String);

const ROWS: &[Row] = &[
    ("phase", |r| r.name.to_owned()),
    ("seconds", |r| format!("{:.1}", r.elapsed.as_secs_f64())),
    ("kills: at random", |r| r.actions.kills_random.to_string()),
    ("kills: mid-refresh (call dropped)", |r| {
        r.actions.kills_mid_refresh_dropped.to_string()
    }),
    ("kills: mid-refresh (call forwarded)", |r| {
        r.actions.kills_mid_refresh_forwarded.to_string()
    }),
    ("kills: mid-save", |r| r.actions.kills_mid_save.to_string()),
    ("rotations lost to a kill (re-seeded)", |r| {
        r.actions.lost_rotations.to_string()
    }),
    ("restarts (workers + Redis)", |r| r.restarts.to_string()),
    ("Redis restarts / connection cuts", |r| {
        format!("{} / {}", r.actions.redis_restarts, r.actions.redis_cuts)
    }),
    ("faults injected (all kinds)", |r| {
        r.faults.total().to_string()
    }),
    ("requests", |r| r.tally.requests.to_string()),
    ("  ok", |r| r.tally.ok.to_string()),
    ("  typed transient errors", |r| {
        r.tally.transient.values().sum::<u64>().to_string()
    }),
    ("  anything else (the API's 401 included)", |r| {
        r.tally.other.values().sum::<u64>().to_string()
    }),
    ("worst request wait (ms)", |r| {
        r.tally.worst_wait_ms.to_string()
    }),
    ("refreshes at the server", |r| refreshes(r).to_string()),
    ("  bound (expiries+restarts+faults)", |r| {
        format!("{}+{}+{}", expiries(r), r.restarts, r.faults.total())
    }),
    ("  calls forwarded by the proxy", |r| {
        r.forwarded.to_string()
    }),
    ("invalid_grant at the server", |r| {
        invalid_grants(r).to_string()
    }),
    ("store reads: parsed / torn / missing", |r| {
        format!(
            "{} / {} / {}",
            r.reads.parsed,
            r.reads.torn.len(),
            r.reads.missing
        )
    }),
    ("store reads: unreachable (Redis down)", |r| {
        r.reads.unreachable.to_string()
    }),
    ("temp files left by killed saves", |r| {
        r.temp_files.to_string()
    }),
    ("saves tried again / failed (logs)", |r| {
        format!("{} / {}", r.failed_saves.0, r.failed_saves.1)
    }),
];

pub fn print_reports(reports: &[&Report]) {
    let rows: Vec<(&str, Vec<String>)> = ROWS
        .iter()
        .map(|(label, value)| (*label, reports.iter().map(|r| value(r)).collect()))
        .collect();
    let width = rows
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or_default();
    for (label, values) in &rows {
        let values: Vec<String> = values.iter().map(|v| format!("{v:>14}")).collect();
        println!("chaos: {label:<width$} {}", values.join(""));
    }
    for report in reports {
        let kinds: BTreeMap<_, _> = report.faults.counts();
        println!("chaos: {} faults: {kinds:?}", report.name);
        println!(
            "chaos: {} transient errors: {:?}",
            report.name, report.tally.transient
        );
    }
}
