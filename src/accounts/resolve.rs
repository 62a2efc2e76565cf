//! Which account and credential a TwilioApiKey uses: a TwilioAccount of its namespace, or a
//! ClusterTwilioAccount that allows the namespace; and the credential read from its Secret.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::{AccountResource, AccountSource};
use crate::api::{AccountKind, AccountRef, AllowedNamespaces, ClusterTwilioAccount, TwilioAccount, TwilioApiKey};
use crate::error::{AccountName, Error, ObjectName, Result};
use crate::runtime::context::{Context, ScopeCaches};
use crate::twilio::{AccountConnection, Credentials, SecretString};

/// The operator's credential for an account, from its Secret as last read (see
/// [`crate::runtime::context::CredentialsCache`]): the auth token if present, otherwise a Main key.
pub async fn connect(ctx: &Context, source: &AccountSource) -> Result<AccountConnection> {
    match ctx.credentials.get(&source.secret_namespace, &source.secret_name) {
        Some(data) => connection(ctx, source, &data),
        None => connect_afresh(ctx, source).await,
    }
}

/// Like [`connect`], reading the Secret now (the account controller verifies what it reads).
pub async fn connect_afresh(ctx: &Context, source: &AccountSource) -> Result<AccountConnection> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &source.secret_namespace);
    let location = ObjectName { namespace: source.secret_namespace.clone(), name: source.secret_name.clone() };
    let read = secrets.get_opt(&source.secret_name).await.map_err(Error::kube("read credentials Secret"));
    let Some(secret) = read? else {
        ctx.credentials.forget(&source.secret_namespace, &source.secret_name);
        return Err(Error::CredentialsSecretMissing { secret: location });
    };
    let data = secret.data.unwrap_or_default();
    ctx.credentials.put(&source.secret_namespace, &source.secret_name, data.clone());
    connection(ctx, source, &data)
}

fn connection(
    ctx: &Context,
    source: &AccountSource,
    data: &BTreeMap<String, k8s_openapi::ByteString>,
) -> Result<AccountConnection> {
    let location = ObjectName { namespace: source.secret_namespace.clone(), name: source.secret_name.clone() };
    let value = |key: &str| {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    // During an auth token rotation the next token, once stored, is the one to act with: it
    // works before its promotion and after, the current one only before (see super::rotation).
    let next = next_key(&source.keys.auth_token_key);
    let token = value(&source.keys.auth_token_key).map(|current| value(&next).unwrap_or(current));
    let credentials = if let Some(token) = token {
        Credentials { username: source.account_sid.clone(), password: SecretString::from(token) }
    } else if let (Some(sid), Some(secret)) =
        (value(&source.keys.api_key_sid_key), value(&source.keys.api_key_secret_key))
    {
        Credentials { username: sid, password: SecretString::from(secret) }
    } else {
        return Err(Error::CredentialsIncomplete { secret: location, keys: source.keys.clone() });
    };
    Ok(connection_as(ctx, source, credentials))
}

/// The data key of the credentials Secret that holds the next token during an auth token
/// rotation (see super::rotation).
pub fn next_key(auth_token_key: &str) -> String {
    format!("{auth_token_key}_NEXT")
}

/// The account `source` describes, addressed with `credentials` (its region and edge decide the
/// host).
pub fn connection_as(ctx: &Context, source: &AccountSource, credentials: Credentials) -> AccountConnection {
    AccountConnection {
        tenant: String::new(),
        account_sid: source.account_sid.clone(),
        region: source.region.clone().unwrap_or_else(|| "us1".into()),
        edge: source.edge.clone(),
        base_url: ctx.twilio.endpoint().iam_base(source.region.as_deref(), source.edge.as_deref()),
        credentials,
    }
}

/// An account from the keys controllers' cache. A miss (not cached yet, or no such account) is
/// answered by the API server, so that a missing account is reported only when it is missing.
fn cached<A>(ctx: &Context, namespace: &str, lookup: impl Fn(&ScopeCaches) -> Option<Arc<A>>) -> Option<Arc<A>> {
    ctx.caches.for_namespace(namespace).and_then(|stores| lookup(&stores))
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
pub async fn resolve(
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
                    account.map(Arc::new).ok_or_else(|| Error::AccountNotFound {
                        account: AccountName {
                            kind: AccountKind::TwilioAccount,
                            namespace: Some(namespace.clone()),
                            name: name.clone(),
                        },
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
                    account.map(Arc::new).ok_or_else(|| Error::AccountNotFound {
                        account: AccountName {
                            kind: AccountKind::ClusterTwilioAccount,
                            namespace: None,
                            name: name.clone(),
                        },
                    })?
                }
            };
            refuse_if_deleting(account.as_ref(), check_allowed)?;
            if check_allowed && !namespace_allowed(ctx, account.spec.allowed_namespaces.as_ref(), &namespace).await? {
                return Err(Error::AccountNotAllowed { account: name.clone(), namespace });
            }
            Ok(account.source())
        }
    }
}

/// Whether a ClusterTwilioAccount's allowedNamespaces (None: every namespace) lets keys of
/// `namespace` use it: by name, or by the namespace's labels (read from the API server).
pub async fn namespace_allowed(ctx: &Context, allowed: Option<&AllowedNamespaces>, namespace: &str) -> Result<bool> {
    let Some(allowed) = allowed else {
        return Ok(true);
    };
    if allowed.namespaces.iter().any(|n| n == namespace) {
        return Ok(true);
    }
    let Some(selector) = &allowed.namespace_selector else {
        return Ok(false);
    };
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let labels = match namespaces.get_opt(namespace).await.map_err(Error::kube("read Namespace"))? {
        Some(found) => found.metadata.labels.unwrap_or_default(),
        // A namespace that is gone allows nothing.
        None => return Ok(false),
    };
    Ok(selector_matches(selector, &labels))
}

/// An account being deleted issues no new keys; it still deletes the ones it issued.
fn refuse_if_deleting<A: AccountResource>(account: &A, for_new_keys: bool) -> Result<()> {
    if for_new_keys && account.meta().deletion_timestamp.is_some() {
        let account = AccountName { kind: A::ACCOUNT_KIND, namespace: account.namespace(), name: account.name_any() };
        return Err(Error::AccountDeleting { account });
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
