//! The credentials Secrets' data, as last read: a key's pass would otherwise read its account's
//! Secret every time. An entry goes when the watch shows the Secret changed, when the account
//! controller reads the Secret anew (it verifies what it reads), and after [`MAX_AGE`] in any case
//! (a Secret outside the watched namespaces has no watch).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;

/// How long a read is used at most.
pub const MAX_AGE: Duration = Duration::from_secs(60);

type SecretData = BTreeMap<String, ByteString>;

#[derive(Default)]
pub struct CredentialsCache {
    /// By "namespace/name" of the Secret: its data and when it was read.
    entries: Mutex<HashMap<String, (SecretData, Instant)>>,
}

fn cache_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl CredentialsCache {
    /// The Secret's data if it was read less than [`MAX_AGE`] ago and has not changed since.
    pub fn get(&self, namespace: &str, name: &str) -> Option<SecretData> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (data, read_at) = entries.get(&cache_key(namespace, name))?;
        (read_at.elapsed() < MAX_AGE).then(|| data.clone())
    }

    pub fn put(&self, namespace: &str, name: &str, data: SecretData) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(cache_key(namespace, name), (data, Instant::now()));
    }

    /// The Secret changed or went: the next use reads it.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(&cache_key(namespace, name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_used_until_the_secret_changes() {
        let cache = CredentialsCache::default();
        assert!(cache.get("ns", "creds").is_none());
        let data = SecretData::from([("authToken".to_string(), ByteString(b"t".to_vec()))]);
        cache.put("ns", "creds", data.clone());
        assert_eq!(cache.get("ns", "creds"), Some(data));
        assert!(cache.get("other", "creds").is_none(), "per namespace");
        cache.forget("ns", "creds");
        assert!(cache.get("ns", "creds").is_none());
    }
}
