//! What every reconciliation shares, in named parts that each own their state:
//!
//! - the Kubernetes and Twilio clients, the operator's settings and the [`Clock`];
//! - [`Events`]: Kubernetes Events about resources;
//! - [`Metrics`]: the Prometheus registry;
//! - [`Inventories`]: what this process knows of each account's keys in Twilio;
//! - [`OwnWrites`]: echoes of this process's own writes, which are not changes to react to;
//! - [`Caches`]: the keys controllers' caches of keys and accounts;
//! - [`CredentialsCache`]: the credentials Secrets' data, as last read;
//! - [`Backoff`]: per-object retry delays after transient failures;
//! - [`CreationBudget`]: how many keys each TwilioApiKey may still create this hour.

mod backoff;
mod budget;
mod caches;
mod clock;
mod credentials;
mod events;
mod inventory;
mod own_writes;

use std::sync::Arc;
use std::time::Duration;

use kube::Client;

pub use backoff::Backoff;
pub use budget::CreationBudget;
pub use caches::{Caches, KeyUser, ScopeCaches};
pub use clock::{Clock, ManualClock, SystemClock};
pub use credentials::CredentialsCache;
pub use events::{EventType, Events};
pub use inventory::{Inventories, Inventory};
pub use own_writes::OwnWrites;

use crate::runtime::metrics::Metrics;
use crate::twilio::TwilioClient;

#[derive(Clone, Debug)]
pub struct Config {
    /// How often a Ready resource is checked again for drift.
    pub resync_interval: Duration,
    /// How long after a rotation the rollout restart targets may take before RolloutDelayed.
    pub rollout_deadline: Duration,
    /// How long after a rotation its workloads are restarted: keys rotated within this time of
    /// each other share one restart of a workload they both feed.
    pub rollout_restart_delay: Duration,
    /// Keys one TwilioApiKey may create within an hour.
    pub max_key_creations_per_hour: u32,
    /// Old keys one TwilioApiKey may keep valid at once.
    pub max_retiring_keys: usize,
    /// The namespaces the operator watches (--watch-namespace); empty: every namespace.
    pub watch_namespaces: Vec<String>,
}

pub struct Context {
    pub client: Client,
    pub twilio: TwilioClient,
    pub config: Config,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    pub inventories: Inventories,
    pub own_writes: OwnWrites,
    pub caches: Caches,
    pub credentials: CredentialsCache,
    pub backoff: Backoff,
    pub budget: CreationBudget,
    pub clock: Arc<dyn Clock>,
}

impl Context {
    pub fn new(client: Client, twilio: TwilioClient, config: Config, metrics: Arc<Metrics>) -> Self {
        Self {
            events: Events::new(client.clone()),
            client,
            twilio,
            metrics,
            inventories: Inventories::default(),
            own_writes: OwnWrites::default(),
            caches: Caches::default(),
            credentials: CredentialsCache::default(),
            backoff: Backoff::default(),
            budget: CreationBudget::new(config.max_key_creations_per_hour),
            config,
            clock: Arc::new(SystemClock),
        }
    }

    /// The same context, reading the time from `clock`.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    /// The time now, as the context's clock says.
    pub fn now(&self) -> k8s_openapi::jiff::Timestamp {
        self.clock.now()
    }

    /// The resource `uid` is gone: nothing about it needs remembering.
    pub fn forget_resource(&self, uid: &str) {
        self.own_writes.forget_status_written(uid);
        self.own_writes.forget_key_write(uid);
        self.inventories.mark_create_unsure(uid, false);
        self.backoff.forget(uid);
        self.budget.forget(uid);
    }

    /// The metrics in Prometheus' text format, the gauges about keys read from the caches now.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(&self.caches.resources())
    }
}
