//! What every reconciliation shares: the Kubernetes client, the Twilio client, the Event
//! recorder, the operator's settings and per-object retry backoff.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};

use crate::twilio::{AccountConnection, TwilioClient, TwilioError};

/// The keys one account held in Twilio when it was last listed.
pub struct Inventory {
    pub listed_at: Timestamp,
    pub sids: HashSet<String>,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// How often a Ready resource is checked again for drift.
    pub resync_interval: Duration,
}

pub struct Context {
    pub client: Client,
    pub twilio: TwilioClient,
    pub config: Config,
    recorder: Recorder,
    /// Consecutive transient failures per object UID, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Per account (base URL and SID), the last listing of its keys: drift checks cost one
    /// paginated list per account and resync interval, not one request per key. The async lock
    /// makes concurrent checks wait for one listing instead of each making their own.
    inventories: tokio::sync::Mutex<HashMap<String, Arc<Inventory>>>,
}

impl Context {
    pub fn new(client: Client, twilio: TwilioClient, config: Config) -> Self {
        let reporter =
            Reporter { controller: crate::crd::FIELD_MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
        let recorder = Recorder::new(client.clone(), reporter);
        Self {
            client,
            twilio,
            config,
            recorder,
            failures: Mutex::default(),
            inventories: tokio::sync::Mutex::default(),
        }
    }

    pub async fn normal<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, action: &str, note: String) {
        self.publish(obj, EventType::Normal, reason, action, note).await;
    }

    pub async fn warn<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, action: &str, note: String) {
        self.publish(obj, EventType::Warning, reason, action, note).await;
    }

    async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
        // An Event that cannot be written must not fail the reconciliation it describes.
        if let Err(error) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(%error, reason, "could not record Event");
        }
    }

    /// The account's keys as listed within the last resync interval, listing them if needed.
    pub async fn inventory(&self, account: &AccountConnection) -> Result<Arc<Inventory>, TwilioError> {
        let cache_key = format!("{} {}", account.base_url, account.account_sid);
        let mut inventories = self.inventories.lock().await;
        let max_age = k8s_openapi::jiff::SignedDuration::try_from(self.config.resync_interval).unwrap_or_default();
        if let Some(inventory) = inventories.get(&cache_key)
            && inventory.listed_at + max_age > Timestamp::now()
        {
            return Ok(inventory.clone());
        }
        let listed_at = Timestamp::now();
        let keys = self.twilio.list_keys(account).await?;
        let inventory = Arc::new(Inventory { listed_at, sids: keys.into_iter().map(|k| k.sid).collect() });
        inventories.insert(cache_key, inventory.clone());
        Ok(inventory)
    }

    /// The delay before retrying an object after a transient failure: 1s, 2s, 4s ... 5 minutes.
    pub fn backoff<K: Resource>(&self, obj: &K) -> Duration {
        let uid = obj.uid().unwrap_or_default();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(uid).or_insert(0);
        *count = count.saturating_add(1);
        let seconds = (1u64 << (*count - 1).min(9)).min(300);
        let jitter = rand::random_range(0..=seconds * 250);
        Duration::from_secs(seconds) + Duration::from_millis(jitter)
    }

    pub fn reset_backoff<K: Resource>(&self, obj: &K) {
        if let Some(uid) = obj.uid() {
            self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&uid);
        }
    }
}
