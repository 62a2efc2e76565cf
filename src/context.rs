//! What every reconciliation shares: the Kubernetes client, the Twilio client, the Event
//! recorder, the operator's settings and per-object retry backoff.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};

use crate::crd::{ClusterTwilioAccount, TwilioAccount};
use crate::twilio::{AccountConnection, Key, TwilioClient, TwilioError};

/// The keys one account held in Twilio when it was last listed.
pub struct Inventory {
    pub listed_at: Timestamp,
    pub keys: HashMap<String, Key>,
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
    /// UIDs of keys whose last create in this process had an unknown or unclean outcome (a
    /// timeout, or a key that could not be delivered nor deleted): their next create first
    /// relists the account to find what that attempt left behind.
    unsure_creates: Mutex<HashSet<String>>,
    /// One create (with its orphan sweep) at a time per account and friendly name, so that a
    /// sweep never mistakes another resource's in-flight key for an orphan.
    creation_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The resourceVersion each Secret got from this process's last write to it: the watch event
    /// of that write is not a change to react to (the reconciliation that wrote it knows).
    own_secret_writes: Mutex<HashMap<String, String>>,
    /// Secrets (namespace/name) this process deleted whose deletion the watch has not shown yet:
    /// that event is not a change to react to either.
    own_secret_deletes: Mutex<HashSet<String>>,
    /// Per resource UID, whether the last status this process wrote held a key: a cached object
    /// without a key is then stale (the API server has the write, the cache not yet).
    written_keys: Mutex<HashMap<String, bool>>,
    /// The keys controllers' caches of accounts, by watched namespace ("" for all namespaces).
    /// Each is fed by the same watch that wakes keys on account changes, so a key woken by an
    /// account change finds the change here.
    account_stores: Mutex<HashMap<String, AccountStores>>,
}

#[derive(Clone)]
pub struct AccountStores {
    pub accounts: Store<TwilioAccount>,
    pub cluster_accounts: Store<ClusterTwilioAccount>,
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
            unsure_creates: Mutex::default(),
            creation_locks: Mutex::default(),
            own_secret_writes: Mutex::default(),
            own_secret_deletes: Mutex::default(),
            written_keys: Mutex::default(),
            account_stores: Mutex::default(),
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

    /// The account's keys as listed at most `max_age` ago, listing them if needed.
    pub async fn inventory(
        &self,
        account: &AccountConnection,
        max_age: Duration,
    ) -> Result<Arc<Inventory>, TwilioError> {
        let cache_key = format!("{} {}", account.base_url, account.account_sid);
        let mut inventories = self.inventories.lock().await;
        let max_age = k8s_openapi::jiff::SignedDuration::try_from(max_age).unwrap_or_default();
        if let Some(inventory) = inventories.get(&cache_key)
            && inventory.listed_at + max_age > Timestamp::now()
        {
            return Ok(inventory.clone());
        }
        let listed_at = Timestamp::now();
        let keys = self.twilio.list_keys(account).await?;
        let inventory = Arc::new(Inventory { listed_at, keys: keys.into_iter().map(|k| (k.sid.clone(), k)).collect() });
        inventories.insert(cache_key, inventory.clone());
        Ok(inventory)
    }

    /// Drops the account's listing, so that the next use lists it anew.
    pub async fn forget_inventory(&self, account: &AccountConnection) {
        let cache_key = format!("{} {}", account.base_url, account.account_sid);
        self.inventories.lock().await.remove(&cache_key);
    }

    pub fn mark_create_unsure(&self, uid: &str, unsure: bool) {
        let mut set = self.unsure_creates.lock().unwrap_or_else(|p| p.into_inner());
        if unsure {
            set.insert(uid.to_string());
        } else {
            set.remove(uid);
        }
    }

    pub fn create_was_unsure(&self, uid: &str) -> bool {
        self.unsure_creates.lock().unwrap_or_else(|p| p.into_inner()).contains(uid)
    }

    /// The lock serializing creates of keys with this name in this account.
    pub fn creation_lock(&self, account_sid: &str, friendly_name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.creation_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(format!("{account_sid} {friendly_name}")).or_default().clone()
    }

    /// Remembers that this process wrote `secret` (as the API server returned it).
    pub fn note_own_write(&self, secret: &impl Resource) {
        let (Some(namespace), Some(version)) = (secret.meta().namespace.as_ref(), secret.resource_version()) else {
            return;
        };
        let name = secret.name_any();
        self.own_secret_writes.lock().unwrap_or_else(|p| p.into_inner()).insert(format!("{namespace}/{name}"), version);
    }

    /// Remembers that this process deleted the Secret `namespace/name`.
    pub fn note_own_delete(&self, namespace: &str, name: &str) {
        self.own_secret_deletes.lock().unwrap_or_else(|p| p.into_inner()).insert(format!("{namespace}/{name}"));
    }

    /// Whether this Secret, as a watch delivers it, is exactly what this process last wrote, or
    /// the first event after this process deleted it.
    pub fn is_own_write(&self, secret: &impl Resource) -> bool {
        let key = format!("{}/{}", secret.meta().namespace.as_deref().unwrap_or_default(), secret.name_any());
        if self.own_secret_deletes.lock().unwrap_or_else(|p| p.into_inner()).remove(&key) {
            return true;
        }
        let mut writes = self.own_secret_writes.lock().unwrap_or_else(|p| p.into_inner());
        match writes.get(&key) {
            Some(version) if secret.resource_version().as_ref() == Some(version) => {
                writes.remove(&key);
                true
            }
            _ => false,
        }
    }

    /// Remembers whether the status just written for `uid` records a key.
    pub fn note_status_written(&self, uid: &str, has_key: bool) {
        self.written_keys.lock().unwrap_or_else(|p| p.into_inner()).insert(uid.to_string(), has_key);
    }

    /// Whether this process last wrote a status with a key for `uid`.
    pub fn wrote_a_key(&self, uid: &str) -> bool {
        self.written_keys.lock().unwrap_or_else(|p| p.into_inner()).get(uid).copied().unwrap_or(false)
    }

    /// The resource is gone: nothing about it needs remembering.
    pub fn forget_resource(&self, uid: &str) {
        self.written_keys.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
        self.mark_create_unsure(uid, false);
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }

    pub fn register_account_stores(&self, scope: Option<&str>, stores: AccountStores) {
        let mut all = self.account_stores.lock().unwrap_or_else(|p| p.into_inner());
        all.insert(scope.unwrap_or_default().to_string(), stores);
    }

    /// The account caches that cover `namespace`, if a keys controller registered them.
    pub fn account_stores(&self, namespace: &str) -> Option<AccountStores> {
        let all = self.account_stores.lock().unwrap_or_else(|p| p.into_inner());
        all.get(namespace).or_else(|| all.get("")).cloned()
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
