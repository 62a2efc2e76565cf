//! twilio-operator: Twilio API keys as Kubernetes resources, their secrets delivered into Secrets.

pub mod account;
pub mod conditions;
pub mod context;
pub mod controller;
pub mod crd;
pub mod duration;
pub mod error;
pub mod fake_twilio;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod reconcile;
pub mod secret;
pub mod secret_string;
pub mod server;
pub mod telemetry;
pub mod twilio;
