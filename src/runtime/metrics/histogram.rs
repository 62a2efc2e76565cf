//! The buckets of every duration histogram: 5 ms to about 41 s, doubling.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

pub(super) fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}
