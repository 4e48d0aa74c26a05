//! What every bench binary of the repository shares: the name filter and
//! the median.

use std::time::Duration;

/// For the harness=false binaries: false when `cargo bench -- FILTER` was
/// given filters and none of them is part of `name`, so that such a run
/// skips this binary as criterion skips benches that do not match.
pub fn selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// The median of `samples` (sorted in place).
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    let n = samples.len();
    if n == 0 {
        Duration::ZERO
    } else if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2
    }
}
