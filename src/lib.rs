//! twilio-operator: Twilio API keys as Kubernetes resources, their secrets delivered into Secrets.
//!
//! The modules are the rooms of the operator:
//! - [`api`]: the custom resources (TwilioApiKey, TwilioAccount, ClusterTwilioAccount), their
//!   conditions and durations, the marks on delivered Secrets, text made printable: the contract
//!   users write against, in a crate of its own (`crates/api`) that the kubectl plugin shares.
//! - [`keys`]: reconciling a TwilioApiKey: pure planning and status building, the Secret it
//!   delivers, and the executor that carries out one step at a time.
//! - [`accounts`]: which account a key uses (tenant isolation), the account controller, and the
//!   rotation of an account's auth token.
//! - [`subaccounts`]: the TwilioSubaccount controller (a subaccount per tenant).
//! - [`twilio`]: the client of Twilio's Keys API, auth tokens and subaccounts.
//! - [`runtime`]: wiring: controllers, shared context, leader election, probes, metrics, logs.
//! - [`error`]: the one error type, with the retry or stall decision for each cause.

pub mod accounts;
/// The custom resources, from the API crate (`crates/api`), which the kubectl plugin shares.
pub use twilio_operator_api as api;
pub mod error;
pub mod keys;
pub mod runtime;
pub mod subaccounts;
pub mod twilio;
