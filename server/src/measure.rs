//! Latency histograms: one shape (1 µs .. 1 h, 3 significant figures) for the probe and the
//! `lockbench` binary, and one way to record a duration into it. Measures only; never runs
//! or times the work itself.

use std::time::Instant;

use hdrhistogram::Histogram;

/// An empty histogram of microseconds, 1 µs .. 1 h, 3 significant figures.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

/// Records the microseconds since `since` (at least 1; values above the bounds saturate).
pub fn record_since(h: &mut Histogram<u64>, since: Instant) {
    let us = u64::try_from(since.elapsed().as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    h.saturating_record(us);
}
