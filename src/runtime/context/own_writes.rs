//! Echoes of this process's own writes. A watch delivers every write, this process's too; the
//! reconciliation that made a write knows about it, so its echo is not a change to react to.
//! And since the operator is the only writer of a TwilioApiKey's status, a cached status other
//! than the one this process last wrote is most likely older than that write.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::{Resource, ResourceExt};

use crate::api::TwilioApiKeyStatus;

#[derive(Default)]
pub struct OwnWrites {
    /// The resourceVersion each delivered Secret got from this process's last write to it.
    secret_writes: Mutex<HashMap<String, String>>,
    /// Secrets (namespace/name) this process deleted whose deletion the watch has not shown yet.
    secret_deletes: Mutex<HashSet<String>>,
    /// The resourceVersion each credentials Secret got from this process's last write to it (its
    /// finalizer): that change is not new credentials. Several account controllers watch one
    /// Secret, so this record is not used up by the first that sees it.
    credentials_writes: Mutex<HashMap<String, String>>,
    /// Per resource UID, a fingerprint of the status this process last wrote (as the API server
    /// returned it).
    statuses: Mutex<HashMap<String, u64>>,
    /// Per resource UID, the resourceVersion its finalizer got from this process: the pass that
    /// added it went on with the resource, so the echo has nothing new.
    key_writes: Mutex<HashMap<String, String>>,
}

fn object_key(obj: &impl Resource) -> String {
    format!("{}/{}", obj.meta().namespace.as_deref().unwrap_or_default(), obj.name_any())
}

/// FNV-1a over the status' JSON (stable across builds, unlike std's hasher).
fn status_fingerprint(status: Option<&TwilioApiKeyStatus>) -> u64 {
    let json = serde_json::to_string(&status).unwrap_or_default();
    json.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl OwnWrites {
    /// Remembers that this process wrote the delivered Secret `secret` (as the API server
    /// returned it).
    pub fn note_secret_write(&self, secret: &impl Resource) {
        if let Some(version) = secret.resource_version() {
            self.secret_writes.lock().unwrap_or_else(|p| p.into_inner()).insert(object_key(secret), version);
        }
    }

    /// Remembers that this process deleted the Secret `namespace/name`.
    pub fn note_secret_delete(&self, namespace: &str, name: &str) {
        self.secret_deletes.lock().unwrap_or_else(|p| p.into_inner()).insert(format!("{namespace}/{name}"));
    }

    /// Whether this Secret, as a watch delivers it, is exactly what this process last wrote, or
    /// the first event after this process deleted it. Each record is used up by its echo.
    pub fn is_own_secret_event(&self, secret: &impl Resource) -> bool {
        let key = object_key(secret);
        if self.secret_deletes.lock().unwrap_or_else(|p| p.into_inner()).remove(&key) {
            return true;
        }
        let mut writes = self.secret_writes.lock().unwrap_or_else(|p| p.into_inner());
        match writes.get(&key) {
            Some(version) if secret.resource_version().as_ref() == Some(version) => {
                writes.remove(&key);
                true
            }
            _ => false,
        }
    }

    /// Remembers that this process wrote the credentials Secret (as the API server returned it).
    pub fn note_credentials_write(&self, secret: &impl Resource) {
        if let Some(version) = secret.resource_version() {
            self.credentials_writes.lock().unwrap_or_else(|p| p.into_inner()).insert(object_key(secret), version);
        }
    }

    /// Whether this credentials Secret, as a watch delivers it, is exactly what this process last
    /// wrote.
    pub fn is_own_credentials_write(&self, secret: &impl Resource) -> bool {
        let writes = self.credentials_writes.lock().unwrap_or_else(|p| p.into_inner());
        writes.get(&object_key(secret)).is_some_and(|version| secret.resource_version().as_ref() == Some(version))
    }

    /// Remembers that this process wrote the resource (its finalizer), as the API server returned it.
    pub fn note_key_write(&self, resource: &impl Resource) {
        if let (Some(uid), Some(version)) = (resource.meta().uid.clone(), resource.resource_version()) {
            self.key_writes.lock().unwrap_or_else(|p| p.into_inner()).insert(uid, version);
        }
    }

    /// Whether the resource, as a watch delivers it, is exactly what this process last wrote to it
    /// (not its status). The record is used up by its echo.
    pub fn is_own_key_event(&self, resource: &impl Resource) -> bool {
        let Some(uid) = resource.meta().uid.as_ref() else { return false };
        let mut writes = self.key_writes.lock().unwrap_or_else(|p| p.into_inner());
        match writes.get(uid) {
            Some(version) if resource.resource_version().as_ref() == Some(version) => {
                writes.remove(uid);
                true
            }
            _ => false,
        }
    }

    /// Forgets the write to resource `uid` whose echo never came (the resource is gone).
    pub fn forget_key_write(&self, uid: &str) {
        self.key_writes.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }

    /// Remembers the status just written for `uid`.
    pub fn note_status_written(&self, uid: &str, status: Option<&TwilioApiKeyStatus>) {
        let fingerprint = status_fingerprint(status);
        self.statuses.lock().unwrap_or_else(|p| p.into_inner()).insert(uid.to_string(), fingerprint);
    }

    /// Whether this process last wrote a status for `uid` other than `status`.
    pub fn wrote_another_status(&self, uid: &str, status: Option<&TwilioApiKeyStatus>) -> bool {
        let written = self.statuses.lock().unwrap_or_else(|p| p.into_inner()).get(uid).copied();
        written.is_some_and(|fingerprint| fingerprint != status_fingerprint(status))
    }

    /// Stops comparing `uid`'s status with what this process wrote (someone else wrote it since).
    pub fn forget_status_written(&self, uid: &str) {
        self.statuses.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn secret(version: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some("s".into()),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_secret_write_is_recognised_once_and_only_at_its_version() {
        let own = OwnWrites::default();
        own.note_secret_write(&secret("5"));
        assert!(!own.is_own_secret_event(&secret("4")), "an older version is someone else's");
        assert!(own.is_own_secret_event(&secret("5")));
        assert!(!own.is_own_secret_event(&secret("5")), "the record is used up by its echo");
        own.note_secret_delete("ns", "s");
        assert!(own.is_own_secret_event(&secret("6")), "the first event after a deletion is its echo");
    }

    #[test]
    fn credentials_writes_are_recognised_by_every_watcher() {
        let own = OwnWrites::default();
        own.note_credentials_write(&secret("7"));
        assert!(own.is_own_credentials_write(&secret("7")));
        assert!(own.is_own_credentials_write(&secret("7")), "not used up: several controllers see it");
        assert!(!own.is_own_credentials_write(&secret("8")));
    }

    #[test]
    fn a_write_to_a_resource_is_recognised_once_and_only_at_its_version() {
        let own = OwnWrites::default();
        let mut written = secret("9");
        written.metadata.uid = Some("u1".into());
        own.note_key_write(&written);
        let mut later = written.clone();
        later.metadata.resource_version = Some("10".into());
        assert!(!own.is_own_key_event(&later), "another version is someone else's");
        let mut other = written.clone();
        other.metadata.uid = Some("u2".into());
        assert!(!own.is_own_key_event(&other), "per resource");
        assert!(own.is_own_key_event(&written));
        assert!(!own.is_own_key_event(&written), "the record is used up by its echo");
        own.note_key_write(&written);
        own.forget_key_write("u1");
        assert!(!own.is_own_key_event(&written));
    }

    #[test]
    fn a_status_other_than_the_last_written_is_told_apart() {
        let own = OwnWrites::default();
        let written = TwilioApiKeyStatus { key_sid: Some("SK1".into()), ..Default::default() };
        assert!(!own.wrote_another_status("uid", None), "nothing written: nothing to compare");
        own.note_status_written("uid", Some(&written));
        assert!(!own.wrote_another_status("uid", Some(&written)));
        assert!(own.wrote_another_status("uid", None));
        own.forget_status_written("uid");
        assert!(!own.wrote_another_status("uid", None));
    }
}
