//! Reconciliations of every kind: how many, with which result, how long, and their errors.

use std::future::Future;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::histogram::duration_histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

pub struct ReconcileMetrics {
    reconciles: Family<ResultLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
}

impl ReconcileMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let reconciles = Family::default();
        registry.register(
            "reconciles",
            "Reconciliations by kind and result (ok or an error label)",
            reconciles.clone(),
        );
        let errors = Family::default();
        registry.register(
            "reconcile_errors",
            "Reconciliations that met an error, by kind and reason (stalled ones included)",
            errors.clone(),
        );
        let duration = Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register("reconcile_duration_seconds", "Duration of reconciliations by kind", duration.clone());
        Self { reconciles, errors, duration }
    }

    /// Runs one reconciliation of a `kind` and counts it, under the result `label` names (`ok`,
    /// what an account's verification found, or an error's label), with its duration.
    pub async fn timed<T, E>(
        &self,
        kind: &'static str,
        reconciliation: impl Future<Output = Result<T, E>>,
        label: impl FnOnce(&Result<T, E>) -> &'static str,
    ) -> Result<T, E> {
        let started = Instant::now();
        let result = reconciliation.await;
        self.reconciles.get_or_create(&ResultLabels { kind, result: label(&result) }).inc();
        self.duration.get_or_create(&KindLabels { kind }).observe(started.elapsed().as_secs_f64());
        result
    }

    /// A reconciliation met an error; `reason` is the error's bounded label.
    pub fn error(&self, kind: &'static str, reason: &'static str) {
        self.errors.get_or_create(&ErrorLabels { kind, reason }).inc();
    }
}
