//! Reconciling a TwilioApiKey.
//!
//! - `validate`: what the CRD schema cannot check in a spec.
//! - `plan`: the choice of the next step and the other decisions, pure functions of the resource and what
//!   was observed (unit- and property-tested).
//! - `status`: the statuses the executor writes and the deadlines read from them (pure).
//! - `secret`: the Kubernetes Secret a key is delivered in: its desired shape, ownership, and the
//!   patches that update or release it.
//! - `reconcile`: the executor: observe, ask the plan, carry out one step, record it.

pub mod plan;
pub mod reconcile;
pub mod secret;
pub mod status;
pub mod validate;

/// Resources for the unit tests of the pure parts.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::api::{TwilioApiKey, TwilioApiKeySpec};

    /// A TwilioApiKey `team-a/payments` with this spec (JSON, as a user writes it).
    pub fn key(spec_json: serde_json::Value) -> TwilioApiKey {
        let spec: TwilioApiKeySpec = serde_json::from_value(spec_json).unwrap();
        let mut key = TwilioApiKey::new("payments", spec);
        key.metadata.namespace = Some("team-a".into());
        key
    }

    /// A Standard key of account `prod`, with every default.
    pub fn standard() -> TwilioApiKey {
        key(serde_json::json!({"accountRef": {"name": "prod"}}))
    }
}
