//! Reconciling a TwilioApiKey.
//!
//! - `validate`: what the CRD schema cannot check in a spec.
//! - `held`: what the watch caches keep of a resource, and the bound on a spec's size.
//! - `plan`: the choice of the next step and the other decisions, pure functions of the resource and what
//!   was observed (unit- and property-tested).
//! - `status`: the statuses the executor writes and the deadlines read from them (pure).
//! - `secret`: the Kubernetes Secret a key is delivered in: its desired shape, ownership, and the
//!   patches that update or release it.
//! - `template`: the Secret's extra entries, rendered from `spec.secret.template`.
//! - `rollout`: the workloads restarted after a rotation, and whether they have rolled out (pure).
//! - `window`: rotation windows, when scheduled rotations may start (pure).
//! - `reconcile`: the executor: observe, ask the plan, carry out one step, record it.
//!
//! Words, one meaning each: the **resource** is the TwilioApiKey; a **key** is a key in Twilio
//! (named by its SID); the **Secret** is the Kubernetes Secret a key is delivered in, and a
//! **data key** one of its entries; the key's **secret** is the value Twilio shows once, held in
//! a `SecretString`.

pub mod held;
pub mod plan;
pub mod reconcile;
pub mod rollout;
pub mod secret;
pub mod status;
pub mod template;
pub mod validate;
pub mod window;

/// Resources for the unit tests of the pure parts.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::api::{TwilioApiKey, TwilioApiKeySpec};

    /// A TwilioApiKey `team-a/payments` with this spec (JSON, as a user writes it).
    pub fn resource(spec_json: serde_json::Value) -> TwilioApiKey {
        let spec: TwilioApiKeySpec = serde_json::from_value(spec_json).unwrap();
        let mut resource = TwilioApiKey::new("payments", spec);
        resource.metadata.namespace = Some("team-a".into());
        resource
    }

    /// A Standard key of account `prod`, with every default.
    pub fn standard() -> TwilioApiKey {
        resource(serde_json::json!({"accountRef": {"name": "prod"}}))
    }
}
