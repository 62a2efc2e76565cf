//! What the operator did to keys in Twilio: created, deleted, adopted, orphans found and
//! deleted, rotations by cause, and the restarts of the workloads that consume them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::api::WorkloadKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RestartLabels {
    kind: &'static str,
    outcome: &'static str,
}

pub struct KeyMetrics {
    operations: Family<OperationLabels, Counter>,
    rotations: Family<CauseLabels, Counter>,
    leaked_keys_found: Counter,
    rollout_restarts: Family<RestartLabels, Counter>,
}

impl KeyMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let operations = Family::default();
        registry.register(
            "key_operations",
            "Twilio keys created and deleted by the operator (orphan_deleted: leaked by an interrupted create)",
            operations.clone(),
        );
        let rotations = Family::default();
        registry.register("rotations", "Key rotations by cause", rotations.clone());
        let leaked_keys_found = Counter::default();
        registry.register(
            "leaked_keys_found",
            "Keys found in Twilio that an interrupted create left undelivered (each is deleted)",
            leaked_keys_found.clone(),
        );
        let rollout_restarts = Family::default();
        registry.register(
            "rollout_restarts",
            "Restarts of rollout restart targets after rotations, by kind and outcome (restarted; shared: a restart made for another key already served this one; failed: the workload is missing or may not be restarted, retried with backoff)",
            rollout_restarts.clone(),
        );
        Self { operations, rotations, leaked_keys_found, rollout_restarts }
    }

    pub fn rollout_restart(&self, kind: WorkloadKind, outcome: RestartOutcome) {
        let kind = match kind {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Rollout => "Rollout",
        };
        self.rollout_restarts.get_or_create(&RestartLabels { kind, outcome: outcome.label() }).inc();
    }

    pub fn operation(&self, operation: KeyOperation) {
        self.operations.get_or_create(&OperationLabels { operation: operation.label() }).inc();
    }

    pub fn rotation(&self, cause: &'static str) {
        self.rotations.get_or_create(&CauseLabels { cause }).inc();
    }

    pub fn leaked_key_found(&self) {
        self.leaked_keys_found.inc();
    }
}

/// How a rollout restart target's restart went.
#[derive(Clone, Copy, Debug)]
pub enum RestartOutcome {
    Restarted,
    /// A restart made after the key's delivery (for another key) served it.
    Shared,
    /// Missing or not allowed; counted once per rotation and target.
    Failed,
}

impl RestartOutcome {
    fn label(self) -> &'static str {
        match self {
            RestartOutcome::Restarted => "restarted",
            RestartOutcome::Shared => "shared",
            RestartOutcome::Failed => "failed",
        }
    }
}

/// What the operator did to a key in Twilio.
#[derive(Clone, Copy, Debug)]
pub enum KeyOperation {
    Created,
    Deleted,
    /// Deleted a key an interrupted create had left undelivered.
    OrphanDeleted,
    /// Took over a key found in a Secret, once proven (`spec.secret.adopt`).
    Adopted,
}

impl KeyOperation {
    fn label(self) -> &'static str {
        match self {
            KeyOperation::Created => "created",
            KeyOperation::Deleted => "deleted",
            KeyOperation::OrphanDeleted => "orphan_deleted",
            KeyOperation::Adopted => "adopted",
        }
    }
}
