//! Accounts: resolving which Twilio account and credential a key uses (with tenant isolation),
//! and the controller that verifies TwilioAccount / ClusterTwilioAccount credentials.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::conditions::{self, Health};
use crate::context::{Context, ScopeCaches};
use crate::crd::{
    AccountKind, AccountRef, ClusterTwilioAccount, CredentialKeys, FIELD_MANAGER, FINALIZER, TwilioAccount,
    TwilioAccountStatus, TwilioApiKey,
};

/// On a credentials Secret: it stays while an account that uses it still has keys to delete.
pub const CREDENTIALS_FINALIZER: &str = "twilio-operator.dev/credentials-in-use";
use crate::error::{Error, Result};
use crate::secret_string::SecretString;
use crate::twilio::{AccountConnection, Credentials, TwilioError};

/// Where an account lives and where its credential is stored, whichever kind declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountSource {
    pub account_sid: String,
    pub region: Option<String>,
    pub edge: Option<String>,
    pub secret_namespace: String,
    pub secret_name: String,
    pub keys: CredentialKeys,
}

/// The two account kinds, seen the same way by the code that verifies and uses them.
pub trait AccountResource:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug + Send + Sync + 'static
{
    const KIND: &'static str;
    const ACCOUNT_KIND: AccountKind;
    fn source(&self) -> AccountSource;
    fn account_status(&self) -> Option<&TwilioAccountStatus>;
    fn api(&self, client: kube::Client) -> Api<Self>;
}

impl AccountResource for TwilioAccount {
    const KIND: &'static str = "TwilioAccount";
    const ACCOUNT_KIND: AccountKind = AccountKind::TwilioAccount;
    fn source(&self) -> AccountSource {
        AccountSource {
            account_sid: self.spec.account_sid.clone(),
            region: self.spec.region.clone(),
            edge: self.spec.edge.clone(),
            secret_namespace: self.namespace().unwrap_or_default(),
            secret_name: self.spec.credentials_secret_ref.name.clone(),
            keys: self.spec.credentials_secret_ref.keys.clone(),
        }
    }
    fn account_status(&self) -> Option<&TwilioAccountStatus> {
        self.status.as_ref()
    }
    fn api(&self, client: kube::Client) -> Api<Self> {
        Api::namespaced(client, &self.namespace().unwrap_or_default())
    }
}

impl AccountResource for ClusterTwilioAccount {
    const KIND: &'static str = "ClusterTwilioAccount";
    const ACCOUNT_KIND: AccountKind = AccountKind::ClusterTwilioAccount;
    fn source(&self) -> AccountSource {
        AccountSource {
            account_sid: self.spec.account_sid.clone(),
            region: self.spec.region.clone(),
            edge: self.spec.edge.clone(),
            secret_namespace: self.spec.credentials_secret_ref.namespace.clone(),
            secret_name: self.spec.credentials_secret_ref.name.clone(),
            keys: self.spec.credentials_secret_ref.keys.clone(),
        }
    }
    fn account_status(&self) -> Option<&TwilioAccountStatus> {
        self.status.as_ref()
    }
    fn api(&self, client: kube::Client) -> Api<Self> {
        Api::all(client)
    }
}

/// Reads the operator's credential for an account from its Secret: the auth token if present,
/// otherwise a Main key.
pub async fn connect(ctx: &Context, source: &AccountSource) -> Result<AccountConnection> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &source.secret_namespace);
    let location = format!("Secret {}/{}", source.secret_namespace, source.secret_name);
    let secret = secrets
        .get_opt(&source.secret_name)
        .await
        .map_err(Error::kube("read credentials Secret"))?
        .ok_or_else(|| Error::CredentialsNotFound(format!("{location} does not exist")))?;
    let data = secret.data.unwrap_or_default();
    let value = |key: &str| {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let credentials = if let Some(token) = value(&source.keys.auth_token_key) {
        Credentials { username: source.account_sid.clone(), password: SecretString::new(token) }
    } else if let (Some(sid), Some(secret)) =
        (value(&source.keys.api_key_sid_key), value(&source.keys.api_key_secret_key))
    {
        Credentials { username: sid, password: SecretString::new(secret) }
    } else {
        return Err(Error::CredentialsNotFound(format!(
            "{location} holds neither {} nor both {} and {}",
            source.keys.auth_token_key, source.keys.api_key_sid_key, source.keys.api_key_secret_key
        )));
    };
    Ok(AccountConnection {
        account_sid: source.account_sid.clone(),
        region: source.region.clone().unwrap_or_else(|| "us1".into()),
        base_url: ctx.twilio.endpoint().iam_base(source.region.as_deref(), source.edge.as_deref()),
        credentials,
    })
}

/// An account from the keys controllers' cache. A miss (not cached yet, or no such account) is
/// answered by the API server, so that a missing account is reported only when it is missing.
fn cached<A>(ctx: &Context, namespace: &str, lookup: impl Fn(&ScopeCaches) -> Option<Arc<A>>) -> Option<Arc<A>> {
    ctx.scope_caches(namespace).and_then(|stores| lookup(&stores))
}

/// The account a key refers to, if its namespace may use it.
pub async fn resolve_for_key(ctx: &Context, key: &TwilioApiKey) -> Result<AccountSource> {
    resolve(ctx, &key.namespace().unwrap_or_default(), &key.spec.account_ref, true).await
}

/// The account that keys a resource of `namespace` already created belong to, to delete them:
/// a ClusterTwilioAccount that no longer allows the namespace still deletes what it issued
/// there (its allowedNamespaces governs new keys only).
pub async fn resolve_recorded(ctx: &Context, namespace: &str, account_ref: &AccountRef) -> Result<AccountSource> {
    resolve(ctx, namespace, account_ref, false).await
}

/// The account `account_ref` names, as seen from `namespace`: a TwilioAccount of that namespace,
/// or a ClusterTwilioAccount (that allows it, when `check_allowed`).
async fn resolve(
    ctx: &Context,
    namespace: &str,
    account_ref: &AccountRef,
    check_allowed: bool,
) -> Result<AccountSource> {
    let namespace = namespace.to_string();
    let name = &account_ref.name;
    match account_ref.kind {
        AccountKind::TwilioAccount => {
            let account = match cached(ctx, &namespace, |s| s.accounts.get(&ObjectRef::new(name).within(&namespace))) {
                Some(account) => account,
                None => {
                    let api: Api<TwilioAccount> = Api::namespaced(ctx.client.clone(), &namespace);
                    let account = api.get_opt(name).await.map_err(Error::kube("read TwilioAccount"))?;
                    account.map(Arc::new).ok_or_else(|| {
                        Error::AccountNotFound(format!("TwilioAccount {namespace}/{name} does not exist"))
                    })?
                }
            };
            refuse_if_deleting(account.as_ref(), check_allowed)?;
            Ok(account.source())
        }
        AccountKind::ClusterTwilioAccount => {
            let account = match cached(ctx, &namespace, |s| s.cluster_accounts.get(&ObjectRef::new(name))) {
                Some(account) => account,
                None => {
                    let api: Api<ClusterTwilioAccount> = Api::all(ctx.client.clone());
                    let account = api.get_opt(name).await.map_err(Error::kube("read ClusterTwilioAccount"))?;
                    account
                        .map(Arc::new)
                        .ok_or_else(|| Error::AccountNotFound(format!("ClusterTwilioAccount {name} does not exist")))?
                }
            };
            refuse_if_deleting(account.as_ref(), check_allowed)?;
            if let Some(allowed) = account.spec.allowed_namespaces.as_ref().filter(|_| check_allowed) {
                let by_name = allowed.namespaces.iter().any(|n| n == &namespace);
                let by_selector = match &allowed.namespace_selector {
                    Some(selector) if !by_name => {
                        let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
                        let labels = namespaces
                            .get(&namespace)
                            .await
                            .map_err(Error::kube("read Namespace"))?
                            .metadata
                            .labels
                            .unwrap_or_default();
                        selector_matches(selector, &labels)
                    }
                    _ => false,
                };
                if !by_name && !by_selector {
                    return Err(Error::AccountNotAllowed(format!(
                        "ClusterTwilioAccount {name} does not allow namespace {namespace} (spec.allowedNamespaces)"
                    )));
                }
            }
            Ok(account.source())
        }
    }
}

/// An account being deleted issues no new keys; it still deletes the ones it issued.
fn refuse_if_deleting<A: AccountResource>(account: &A, for_new_keys: bool) -> Result<()> {
    if for_new_keys && account.meta().deletion_timestamp.is_some() {
        return Err(Error::AccountNotFound(format!("{} {} is being deleted", A::KIND, account.name_any())));
    }
    Ok(())
}

/// Label selector semantics: every matchLabels pair and every matchExpressions requirement holds.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.clone().unwrap_or_default();
        let value = labels.get(&req.key);
        match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// An account and its credentials Secret outlive the keys that need them (as a PVC outlives the
/// Pods that use it): the account carries a finalizer, and its credentials Secret another, until
/// no TwilioApiKey names the account or records a key of it. Deleting a namespace, or the account
/// first, thus ends with every key deleted in Twilio rather than with keys nobody can delete.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = A::KIND, namespace = %account.namespace().unwrap_or_default(), object = %account.name_any()))]
pub async fn reconcile<A: AccountResource>(account: Arc<A>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let api = account.api(ctx.client.clone());
    // A refused or missing credential is reported in status, not returned as an error; the
    // reconciliation is still counted under what the verification found.
    let verification = std::sync::Mutex::new("ok");
    let result = finalizer(&api, FINALIZER, account, |event| async {
        match event {
            FinalizerEvent::Apply(account) => verify(account, &ctx, &verification).await,
            FinalizerEvent::Cleanup(account) => release(account, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if let Err(error) = &result {
        crate::metrics::reconcile_error(A::KIND, error.label());
    }
    let found = *verification.lock().unwrap_or_else(|p| p.into_inner());
    crate::metrics::reconciled(A::KIND, result.as_ref().err().map_or(found, Error::label), started.elapsed());
    result
}

/// Deletion of an account: it waits while keys use it, then lets go of its credentials Secret.
async fn release<A: AccountResource>(account: Arc<A>, ctx: &Context) -> Result<Action> {
    let users = ctx.keys_using(A::ACCOUNT_KIND, &account.name_any(), account.namespace().as_deref());
    if !users.is_empty() {
        let shown: Vec<&str> = users.iter().take(5).map(String::as_str).collect();
        let message = format!(
            "deletion waits for {} TwilioApiKey(s) that use this account to be deleted: {}{}",
            users.len(),
            shown.join(", "),
            if users.len() > shown.len() { ", ..." } else { "" }
        );
        let health = Health::Progressing { reason: "InUse", message: message.clone() };
        write_account_status(account.as_ref(), ctx, &health).await?;
        return Err(Error::AccountInUse(message));
    }
    let source = account.source();
    let still_needed = ctx.accounts_using_secret(&source.secret_namespace, &source.secret_name, &account.uid());
    if !still_needed {
        protect_credentials(ctx, &source, false).await?;
    }
    Ok(Action::await_change())
}

/// Adds (or removes) the operator's finalizer on the account's credentials Secret.
async fn protect_credentials(ctx: &Context, source: &AccountSource, protect: bool) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &source.secret_namespace);
    let Some(secret) = secrets.get_opt(&source.secret_name).await.map_err(Error::kube("read credentials Secret"))?
    else {
        return Ok(());
    };
    let has = secret.finalizers().iter().any(|f| f == CREDENTIALS_FINALIZER);
    if has == protect {
        return Ok(());
    }
    let mut finalizers: Vec<String> =
        secret.finalizers().iter().filter(|f| *f != CREDENTIALS_FINALIZER).cloned().collect();
    if protect {
        finalizers.push(CREDENTIALS_FINALIZER.into());
    }
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": secret.resource_version()}
    });
    let written = secrets
        .patch(&source.secret_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube("protect credentials Secret"))?;
    ctx.note_own_credentials_write(&written);
    Ok(())
}

/// Verifies an account's credential by listing its keys, and reports it in status; `found` gets
/// the outcome's metric label.
async fn verify<A: AccountResource>(
    account: Arc<A>,
    ctx: &Context,
    found: &std::sync::Mutex<&'static str>,
) -> Result<Action> {
    let source = account.source();
    let outcome = match connect(ctx, &source).await {
        // Listing the account's keys proves the credential may manage them, and the listing
        // is the one its keys' drift checks and orphan sweeps use until the next resync: one
        // call per account and interval serves both.
        Ok(connection) => ctx
            .inventory(&connection, std::time::Duration::ZERO)
            .await
            .map(|_| ())
            .map_err(Error::twilio("verify credentials")),
        Err(e) => Err(e),
    };
    let (health, action) = match &outcome {
        Ok(()) => (
            Health::Ready {
                reason: "CredentialsVerified",
                message: format!("Credentials may manage API keys in {}", source.account_sid),
            },
            Action::requeue(ctx.config.resync_interval),
        ),
        Err(Error::Twilio { source: TwilioError::AuthFailed { .. }, .. }) => (
            Health::Stalled { reason: "TwilioAuthFailed", message: outcome_message(&outcome) },
            Action::requeue(ctx.config.resync_interval),
        ),
        Err(e) if e.stall_reason().is_some() => (
            Health::Stalled { reason: e.stall_reason().unwrap_or("Error"), message: e.to_string() },
            Action::requeue(ctx.config.resync_interval),
        ),
        Err(e) => (
            Health::Progressing { reason: "Retrying", message: e.to_string() },
            Action::requeue(std::time::Duration::from_secs(30)),
        ),
    };
    // Without this the namespace's deletion could take the credential before the keys' cleanup
    // used it; a failure here (e.g. no permission in that namespace) leaves verification as is.
    if let Err(error) = protect_credentials(ctx, &source, true).await {
        tracing::warn!(%error, "could not protect the credentials Secret with a finalizer");
    }
    let changed = write_account_status(account.as_ref(), ctx, &health).await?;
    if changed && let Health::Stalled { reason, message } = &health {
        ctx.warn(account.as_ref(), reason, "VerifyCredentials", message.clone()).await;
    }
    if let Err(error) = &outcome {
        crate::metrics::reconcile_error(A::KIND, error.label());
        *found.lock().unwrap_or_else(|p| p.into_inner()) = error.label();
    }
    Ok(action)
}

/// Writes the account's conditions if they change; tells whether they did.
async fn write_account_status<A: AccountResource>(account: &A, ctx: &Context, health: &Health) -> Result<bool> {
    let previous = account.account_status().cloned().unwrap_or_default();
    let status = TwilioAccountStatus {
        observed_generation: account.meta().generation,
        conditions: conditions::conditions_for(
            &previous.conditions,
            health,
            account.meta().generation,
            Timestamp::now(),
        ),
    };
    if status == previous {
        return Ok(false);
    }
    let api = account.api(ctx.client.clone());
    let patch = serde_json::json!({
        "apiVersion": A::api_version(&()),
        "kind": A::kind(&()),
        "status": status,
    });
    api.patch_status(&account.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::kube("write account status"))?;
    Ok(true)
}

fn outcome_message(outcome: &Result<()>) -> String {
    match outcome {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn namespace_selectors_match_like_kubernetes() {
        let labels: BTreeMap<String, String> = [("twilio".to_string(), "allowed".to_string())].into();
        let by_label = LabelSelector {
            match_labels: Some([("twilio".to_string(), "allowed".to_string())].into()),
            ..Default::default()
        };
        assert!(selector_matches(&by_label, &labels));
        assert!(!selector_matches(&by_label, &BTreeMap::new()));
        let not_in = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "twilio".into(),
                operator: "NotIn".into(),
                values: Some(vec!["allowed".into()]),
            }]),
            ..Default::default()
        };
        assert!(!selector_matches(&not_in, &labels));
        assert!(selector_matches(&not_in, &BTreeMap::new()));
    }
}
