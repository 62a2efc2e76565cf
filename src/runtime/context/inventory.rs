//! What this process knows of each account's keys in Twilio: the latest listing per account,
//! and the resources whose last create had an unclear outcome.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::twilio::{AccountConnection, Key, TwilioClient, TwilioError};

/// The keys one account held in Twilio when it was last listed.
pub struct Inventory {
    pub listed_at: Timestamp,
    pub keys: HashMap<String, Key>,
}

/// One account's latest listing, behind the lock that makes concurrent users wait for one listing.
type InventorySlot = Arc<tokio::sync::Mutex<Option<Arc<Inventory>>>>;

#[derive(Default)]
pub struct Inventories {
    /// Per account (base URL and SID), the last listing of its keys: drift checks cost one
    /// paginated list per account and resync interval, not one request per key. Each account
    /// has its own async lock, so concurrent checks of one account wait for one listing instead
    /// of each making their own, and a slow account holds up no other.
    slots: Mutex<HashMap<String, InventorySlot>>,
    /// UIDs of resources whose last create in this process had an unknown or unclean outcome (a
    /// timeout, or a key that could not be delivered nor deleted): their next create first
    /// relists the account to find what that attempt left behind.
    unsure_creates: Mutex<HashSet<String>>,
}

impl Inventories {
    /// The account's keys as listed at most `max_age` before `now`, listing them with `twilio`
    /// if needed.
    pub async fn get(
        &self,
        twilio: &TwilioClient,
        account: &AccountConnection,
        max_age: Duration,
        now: Timestamp,
    ) -> Result<Arc<Inventory>, TwilioError> {
        let slot = self.slot(account);
        let mut slot = slot.lock().await;
        let max_age = SignedDuration::try_from(max_age).unwrap_or_default();
        if let Some(inventory) = slot.as_ref()
            && inventory.listed_at.checked_add(max_age).is_ok_and(|fresh_until| fresh_until > now)
        {
            return Ok(inventory.clone());
        }
        let listed_at = now;
        let keys = twilio.list_keys(account).await?;
        let inventory = Arc::new(Inventory { listed_at, keys: keys.into_iter().map(|k| (k.sid.clone(), k)).collect() });
        *slot = Some(inventory.clone());
        Ok(inventory)
    }

    fn slot(&self, account: &AccountConnection) -> InventorySlot {
        let cache_key = format!("{} {}", account.base_url, account.account_sid);
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).entry(cache_key).or_default().clone()
    }

    /// Drops the account's listing, so that the next use lists it anew.
    pub async fn forget(&self, account: &AccountConnection) {
        *self.slot(account).lock().await = None;
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
}
