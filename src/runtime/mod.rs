//! Runtime wiring: the controllers and their watches, the context every reconciliation shares,
//! leader election, the probe and metrics server, and logging.

pub mod context;
pub mod controller;
pub mod leader;
pub mod metrics;
pub mod probes;
pub mod telemetry;
