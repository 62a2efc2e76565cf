//! What every reconciliation shares: the Kubernetes client, the Twilio client, the Event
//! recorder, the operator's settings and per-object retry backoff.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};

use crate::accounts::AccountResource;
use crate::api::{AccountKind, ClusterTwilioAccount, TwilioAccount, TwilioApiKey, TwilioApiKeyStatus};
use crate::twilio::{AccountConnection, Key, TwilioClient, TwilioError};

/// The keys one account held in Twilio when it was last listed.
pub struct Inventory {
    pub listed_at: Timestamp,
    pub keys: HashMap<String, Key>,
}

/// FNV-1a over the status' JSON (stable across builds, unlike std's hasher).
fn status_fingerprint(status: Option<&TwilioApiKeyStatus>) -> u64 {
    let json = serde_json::to_string(&status).unwrap_or_default();
    json.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// One account's latest listing, behind the lock that makes concurrent users wait for one listing.
type InventorySlot = Arc<tokio::sync::Mutex<Option<Arc<Inventory>>>>;

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
    /// paginated list per account and resync interval, not one request per key. Each account
    /// has its own async lock, so concurrent checks of one account wait for one listing instead
    /// of each making their own, and a slow account holds up no other.
    inventories: Mutex<HashMap<String, InventorySlot>>,
    /// UIDs of keys whose last create in this process had an unknown or unclean outcome (a
    /// timeout, or a key that could not be delivered nor deleted): their next create first
    /// relists the account to find what that attempt left behind.
    unsure_creates: Mutex<HashSet<String>>,
    /// The resourceVersion each Secret got from this process's last write to it: the watch event
    /// of that write is not a change to react to (the reconciliation that wrote it knows).
    own_secret_writes: Mutex<HashMap<String, String>>,
    /// The resourceVersion each credentials Secret got from this process's last write to it (its
    /// finalizer): that change is not new credentials. Several account controllers watch one
    /// Secret, so this record is not used up by the first that sees it.
    own_credentials_writes: Mutex<HashMap<String, String>>,
    /// Secrets (namespace/name) this process deleted whose deletion the watch has not shown yet:
    /// that event is not a change to react to either.
    own_secret_deletes: Mutex<HashSet<String>>,
    /// Per resource UID, a fingerprint of the status this process last wrote (as the API server
    /// returned it). The operator is the only writer of status, so a cached object whose status
    /// differs is most likely older than that write: acting on it would repeat a step.
    written_statuses: Mutex<HashMap<String, u64>>,
    /// The keys controllers' caches of keys and accounts, by watched namespace ("" for all
    /// namespaces). The account caches are fed by the same watch that wakes keys on account
    /// changes, so a key woken by an account change finds the change here.
    scope_caches: Mutex<HashMap<String, ScopeCaches>>,
}

/// The caches a keys controller keeps for one watched scope.
#[derive(Clone)]
pub struct ScopeCaches {
    pub keys: Store<TwilioApiKey>,
    pub accounts: Store<TwilioAccount>,
    pub cluster_accounts: Store<ClusterTwilioAccount>,
}

impl Context {
    pub fn new(client: Client, twilio: TwilioClient, config: Config) -> Self {
        let reporter =
            Reporter { controller: crate::api::FIELD_MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
        let recorder = Recorder::new(client.clone(), reporter);
        Self {
            client,
            twilio,
            config,
            recorder,
            failures: Mutex::default(),
            inventories: Mutex::default(),
            unsure_creates: Mutex::default(),
            own_secret_writes: Mutex::default(),
            own_credentials_writes: Mutex::default(),
            own_secret_deletes: Mutex::default(),
            written_statuses: Mutex::default(),
            scope_caches: Mutex::default(),
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
        let slot = self.inventory_slot(account);
        let mut slot = slot.lock().await;
        let max_age = k8s_openapi::jiff::SignedDuration::try_from(max_age).unwrap_or_default();
        if let Some(inventory) = slot.as_ref()
            && inventory.listed_at.checked_add(max_age).is_ok_and(|fresh_until| fresh_until > Timestamp::now())
        {
            return Ok(inventory.clone());
        }
        let listed_at = Timestamp::now();
        let keys = self.twilio.list_keys(account).await?;
        let inventory = Arc::new(Inventory { listed_at, keys: keys.into_iter().map(|k| (k.sid.clone(), k)).collect() });
        *slot = Some(inventory.clone());
        Ok(inventory)
    }

    fn inventory_slot(&self, account: &AccountConnection) -> InventorySlot {
        let cache_key = format!("{} {}", account.base_url, account.account_sid);
        self.inventories.lock().unwrap_or_else(|p| p.into_inner()).entry(cache_key).or_default().clone()
    }

    /// Drops the account's listing, so that the next use lists it anew.
    pub async fn forget_inventory(&self, account: &AccountConnection) {
        *self.inventory_slot(account).lock().await = None;
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

    /// Remembers that this process wrote the credentials Secret (as the API server returned it).
    pub fn note_own_credentials_write(&self, secret: &impl Resource) {
        let (Some(namespace), Some(version)) = (secret.meta().namespace.as_ref(), secret.resource_version()) else {
            return;
        };
        let key = format!("{namespace}/{}", secret.name_any());
        self.own_credentials_writes.lock().unwrap_or_else(|p| p.into_inner()).insert(key, version);
    }

    /// Whether this credentials Secret, as a watch delivers it, is exactly what this process last
    /// wrote.
    pub fn is_own_credentials_write(&self, secret: &impl Resource) -> bool {
        let key = format!("{}/{}", secret.meta().namespace.as_deref().unwrap_or_default(), secret.name_any());
        let writes = self.own_credentials_writes.lock().unwrap_or_else(|p| p.into_inner());
        writes.get(&key).is_some_and(|version| secret.resource_version().as_ref() == Some(version))
    }

    /// Remembers the status just written for `uid`.
    pub fn note_status_written(&self, uid: &str, status: Option<&TwilioApiKeyStatus>) {
        let fingerprint = status_fingerprint(status);
        self.written_statuses.lock().unwrap_or_else(|p| p.into_inner()).insert(uid.to_string(), fingerprint);
    }

    /// Whether this process last wrote a status for `uid` other than `status`.
    pub fn wrote_another_status(&self, uid: &str, status: Option<&TwilioApiKeyStatus>) -> bool {
        let written = self.written_statuses.lock().unwrap_or_else(|p| p.into_inner()).get(uid).copied();
        written.is_some_and(|fingerprint| fingerprint != status_fingerprint(status))
    }

    /// Stops comparing `uid`'s status with what this process wrote (someone else wrote it since).
    pub fn forget_status_written(&self, uid: &str) {
        self.written_statuses.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }

    /// The resource is gone: nothing about it needs remembering.
    pub fn forget_resource(&self, uid: &str) {
        self.forget_status_written(uid);
        self.mark_create_unsure(uid, false);
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }

    pub fn register_scope_caches(&self, scope: Option<&str>, stores: ScopeCaches) {
        let mut all = self.scope_caches.lock().unwrap_or_else(|p| p.into_inner());
        all.insert(scope.unwrap_or_default().to_string(), stores);
    }

    /// The account caches that cover `namespace`, if a keys controller registered them.
    pub fn scope_caches(&self, namespace: &str) -> Option<ScopeCaches> {
        let all = self.scope_caches.lock().unwrap_or_else(|p| p.into_inner());
        all.get(namespace).or_else(|| all.get("")).cloned()
    }

    /// The TwilioApiKeys (namespace/name) that name the account in their spec or record a key of
    /// it in their status: while any exists, the account and its credentials must stay.
    /// `namespace` is the account's own for a TwilioAccount, None for a ClusterTwilioAccount.
    pub fn keys_using(&self, kind: AccountKind, name: &str, namespace: Option<&str>) -> Vec<String> {
        let all = self.scope_caches.lock().unwrap_or_else(|p| p.into_inner());
        let mut users: Vec<String> = all
            .values()
            .flat_map(|caches| caches.keys.state())
            .filter(|key| namespace.is_none() || key.namespace().as_deref() == namespace)
            .filter(|key| {
                let names = |r: &crate::api::AccountRef| r.kind == kind && r.name == name;
                names(&key.spec.account_ref)
                    || key.status.as_ref().is_some_and(|status| {
                        status.account_ref.as_ref().is_some_and(names)
                            || status.retiring_keys.iter().filter_map(|r| r.account_ref.as_ref()).any(names)
                    })
            })
            .map(|key| format!("{}/{}", key.namespace().unwrap_or_default(), key.name_any()))
            .collect();
        users.sort();
        users.dedup();
        users
    }

    /// Whether an account other than `except` (not being deleted) takes its credential from the
    /// Secret `namespace/name`.
    pub fn accounts_using_secret(&self, namespace: &str, name: &str, except: &Option<String>) -> bool {
        fn uses<A: AccountResource>(account: &A, namespace: &str, name: &str, except: &Option<String>) -> bool {
            let source = account.source();
            account.meta().deletion_timestamp.is_none()
                && &account.uid() != except
                && source.secret_namespace == namespace
                && source.secret_name == name
        }
        let all = self.scope_caches.lock().unwrap_or_else(|p| p.into_inner());
        all.values().any(|caches| {
            caches.accounts.state().iter().any(|a| uses(a.as_ref(), namespace, name, except))
                || caches.cluster_accounts.state().iter().any(|a| uses(a.as_ref(), namespace, name, except))
        })
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
