//! The keys controllers' caches of keys and accounts, one set per watched scope. The account
//! caches are fed by the same watch that wakes keys on account changes, so a key woken by an
//! account change finds the change here.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::ResourceExt;
use kube::runtime::reflector::Store;

use crate::accounts::AccountResource;
use crate::api::{AccountKind, AccountRef, ClusterTwilioAccount, TwilioAccount, TwilioApiKey};
use crate::runtime::metrics::Resources;

/// A TwilioApiKey that uses an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUser {
    pub namespace: String,
    pub name: String,
    /// Its status records a key created through the account (current or retiring); otherwise it
    /// only names the account in its spec.
    pub recorded: bool,
}

impl std::fmt::Display for KeyUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The caches a keys controller keeps for one watched scope.
#[derive(Clone)]
pub struct ScopeCaches {
    pub keys: Store<TwilioApiKey>,
    pub accounts: Store<TwilioAccount>,
    pub cluster_accounts: Store<ClusterTwilioAccount>,
}

#[derive(Default)]
pub struct Caches {
    /// By watched namespace ("" for all namespaces).
    scopes: Mutex<HashMap<String, ScopeCaches>>,
}

impl Caches {
    pub fn register(&self, scope: Option<&str>, caches: ScopeCaches) {
        let mut scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        scopes.insert(scope.unwrap_or_default().to_string(), caches);
    }

    /// The caches that cover `namespace`, if a keys controller registered them.
    pub fn for_namespace(&self, namespace: &str) -> Option<ScopeCaches> {
        let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        scopes.get(namespace).or_else(|| scopes.get("")).cloned()
    }

    /// The resource, other than `uid`, whose status records key `sid` (current or retiring), as
    /// "namespace/name".
    pub fn key_holder(&self, sid: &str, uid: &str) -> Option<String> {
        let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        scopes.values().flat_map(|caches| caches.keys.state()).find_map(|resource| {
            let status = resource.status.as_ref()?;
            let holds = status.key_sid.as_deref() == Some(sid)
                || status.retiring_keys.iter().any(|retiring| retiring.sid == sid);
            (holds && resource.uid().as_deref() != Some(uid))
                .then(|| format!("{}/{}", resource.namespace().unwrap_or_default(), resource.name_any()))
        })
    }

    /// What every scope's caches hold now, each resource once (every scope caches all
    /// ClusterTwilioAccounts), for the metrics.
    pub fn resources(&self) -> Resources {
        let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        let mut resources = Resources::default();
        let mut seen = HashSet::new();
        for caches in scopes.values() {
            resources.keys.extend(caches.keys.state());
            let accounts = caches
                .accounts
                .state()
                .into_iter()
                .map(|a| ("TwilioAccount", a.uid(), a.spec.account_sid.clone(), a.status.clone()));
            let cluster_accounts = caches
                .cluster_accounts
                .state()
                .into_iter()
                .map(|a| ("ClusterTwilioAccount", a.uid(), a.spec.account_sid.clone(), a.status.clone()));
            for (kind, uid, account_sid, status) in accounts.chain(cluster_accounts) {
                if !seen.insert(uid) {
                    continue;
                }
                let status = status.unwrap_or_default();
                if let Some(census) = status.keys {
                    // Several resources may act in one account: one census counts (they differ
                    // only until each has listed the account again).
                    resources.account_keys.entry(account_sid).or_insert(census);
                }
                resources.accounts.push((kind, status.conditions));
            }
        }
        resources
    }

    /// The TwilioApiKeys that name the account in their spec or record a key of it in their
    /// status, each once, sorted. `namespace` is the account's own for a TwilioAccount, None for a
    /// ClusterTwilioAccount. Whether one must be waited for is the account controller's call: a
    /// key that only names an account that does not allow its namespace never had a key of it.
    pub fn keys_using(&self, kind: AccountKind, name: &str, namespace: Option<&str>) -> Vec<KeyUser> {
        let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        let mut users: Vec<KeyUser> = scopes
            .values()
            .flat_map(|caches| caches.keys.state())
            .filter(|resource| namespace.is_none() || resource.namespace().as_deref() == namespace)
            .filter_map(|resource| {
                let names = |r: &AccountRef| r.kind == kind && r.name == name;
                let recorded = resource.status.as_ref().is_some_and(|status| {
                    status.account_ref.as_ref().is_some_and(names)
                        || status.retiring_keys.iter().filter_map(|r| r.account_ref.as_ref()).any(names)
                });
                (recorded || names(&resource.spec.account_ref)).then(|| KeyUser {
                    namespace: resource.namespace().unwrap_or_default(),
                    name: resource.name_any(),
                    recorded,
                })
            })
            .collect();
        users.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        users.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
        users
    }

    /// The key SIDs that TwilioApiKeys of the watched scopes record (current or retiring) in
    /// account `account_sid`.
    pub fn keys_recorded_in(&self, account_sid: &str) -> HashSet<String> {
        let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        let mut sids = HashSet::new();
        for resource in scopes.values().flat_map(|caches| caches.keys.state()) {
            let Some(status) = resource.status.as_ref() else { continue };
            if let Some(sid) = status.key_sid.as_ref().filter(|_| status.account_sid.as_deref() == Some(account_sid)) {
                sids.insert(sid.clone());
            }
            let retiring =
                status.retiring_keys.iter().filter(|r| r.account_sid.as_deref().unwrap_or_default() == account_sid);
            sids.extend(retiring.map(|r| r.sid.clone()));
        }
        sids
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
        let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        scopes.values().any(|caches| {
            caches.accounts.state().iter().any(|a| uses(a.as_ref(), namespace, name, except))
                || caches.cluster_accounts.state().iter().any(|a| uses(a.as_ref(), namespace, name, except))
        })
    }
}
