//! What the chaos test shares between its parts: a seeded random source,
//! the clock the workers and the driver agree on (Unix milliseconds), and
//! the log of every fault injected, which the end of the test reads to
//! tell a failure caused by a fault from one that is not.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the one timeline of the driver, the
/// proxies and the worker processes.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// splitmix64: small, seedable, good enough to pick faults; a run is
/// replayed with the same `CHAOS_SEED` (the OS's scheduling still varies).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A number in `low..high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high.saturating_sub(low))
    }

    /// True `per_mille` times in a thousand.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// Every fault injected: when, and of what kind.
#[derive(Debug, Clone, Default)]
pub struct FaultLog(Arc<Mutex<Vec<(u64, &'static str)>>>);

impl FaultLog {
    pub fn record(&self, kind: &'static str) {
        self.0.lock().unwrap().push((unix_ms(), kind));
    }

    /// How many of each kind, for the figures.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = BTreeMap::new();
        for (_, kind) in self.0.lock().unwrap().iter() {
            *counts.entry(*kind).or_default() += 1;
        }
        counts
    }

    pub fn total(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }

    /// Whether some fault was injected while a request that took
    /// `start..=end` ran, or within `settle_ms` before it (a fault's effect
    /// lasts: a lock held by a killed process, a refresh's retries).
    pub fn any_during(&self, start: u64, end: u64, settle_ms: u64) -> bool {
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|(at, _)| *at <= end && at + settle_ms >= start)
    }
}
