//! Reconciling a TwilioApiKey.
//!
//! - `plan`: validation and the choice of the next step, pure functions of the resource and what
//!   was observed (unit- and property-tested).
//! - `status`: the statuses the executor writes and the deadlines read from them (pure).
//! - `secret`: the Kubernetes Secret a key is delivered in: its desired shape, ownership, and the
//!   patches that update or release it.
//! - `reconcile`: the executor: observe, ask the plan, carry out one step, record it.

pub mod plan;
pub mod reconcile;
pub mod secret;
pub mod status;
