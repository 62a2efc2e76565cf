//! The account controller: verifies a TwilioAccount's or ClusterTwilioAccount's credential,
//! reports it in status, and keeps the account and its credentials Secret while keys need them.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, ResourceExt};

use super::resolve::{connect_afresh, namespace_allowed};
use super::{AccountResource, AccountSource, CREDENTIALS_FINALIZER, census, rotation};
use crate::api::conditions::{self, Health};
use crate::api::{AccountKeys, CredentialKind, FIELD_MANAGER, FINALIZER, TwilioAccountStatus, TwilioSubaccount};
use crate::error::{Error, Result};
use crate::runtime::context::Context;
use crate::twilio::TwilioError;

/// An account and its credentials Secret outlive the keys that need them (as a PVC outlives the
/// Pods that use it): the account carries a finalizer, and its credentials Secret another, until
/// no TwilioApiKey names the account or records a key of it. Deleting a namespace, or the account
/// first, thus ends with every key deleted in Twilio rather than with keys nobody can delete.
#[tracing::instrument(name = "reconcile", skip_all, fields(kind = A::KIND, namespace = %account.namespace().unwrap_or_default(), object = %account.name_any()))]
pub async fn reconcile<A: AccountResource>(account: Arc<A>, ctx: Arc<Context>) -> Result<Action> {
    let api = account.api(ctx.client.clone());
    // A refused or missing credential is reported in status, not returned as an error; the
    // reconciliation is still counted under what the verification found.
    let verification = std::sync::Mutex::new("ok");
    let pass = async {
        let result = finalizer(&api, FINALIZER, account, |event| async {
            match event {
                FinalizerEvent::Apply(account) => verify(account, &ctx, &verification).await,
                FinalizerEvent::Cleanup(account) => release(account, &ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)));
        if let Err(error) = &result {
            ctx.metrics.reconcile.error(A::KIND, error.label());
        }
        result
    };
    let label = |result: &Result<Action>| {
        let found = *verification.lock().unwrap_or_else(|p| p.into_inner());
        result.as_ref().err().map_or(found, Error::label)
    };
    ctx.metrics.reconcile.timed(A::KIND, pass, label).await
}

/// Deletion of an account: it waits while keys use it, then lets go of its credentials Secret.
async fn release<A: AccountResource>(account: Arc<A>, ctx: &Context) -> Result<Action> {
    let mut users = Vec::new();
    for user in ctx.caches.keys_using(A::ACCOUNT_KIND, &account.name_any(), account.namespace().as_deref()) {
        // A key that only names the account, in a namespace the account does not allow, never
        // had a key of it and never will: it does not hold the account (nor its credentials).
        let may_use = user.recorded || namespace_allowed(ctx, account.allowed_namespaces(), &user.namespace).await?;
        if may_use {
            users.push(user.to_string());
        }
    }
    // A subaccount made in it is suspended or closed with its credential, after the subaccount's
    // own keys are gone: the parent waits for its TwilioSubaccounts (a namespace's deletion
    // thus ends in order).
    users.extend(subaccounts_of(account.as_ref(), ctx).await?);
    if !users.is_empty() {
        let error = Error::AccountInUse { users };
        let health = Health::Progressing { reason: "InUse", message: error.to_string() };
        write_account_status(account.as_ref(), ctx, &health, None).await?;
        return Err(error);
    }
    let source = account.source();
    let still_needed = ctx.caches.accounts_using_secret(&source.secret_namespace, &source.secret_name, &account.uid());
    if !still_needed {
        protect_credentials(ctx, &source, false).await?;
    }
    Ok(Action::await_change())
}

/// The TwilioSubaccounts whose parent is `account` ("TwilioSubaccount <namespace>/<name>"),
/// read from the API server (only while the account is being deleted). For a ClusterTwilioAccount,
/// those the operator may list: every namespace, or, when it watches some only, those.
async fn subaccounts_of<A: AccountResource>(account: &A, ctx: &Context) -> Result<Vec<String>> {
    let lists: Vec<Api<TwilioSubaccount>> = match account.namespace() {
        Some(namespace) => vec![Api::namespaced(ctx.client.clone(), &namespace)],
        None if ctx.config.watch_namespaces.is_empty() => vec![Api::all(ctx.client.clone())],
        None => ctx.config.watch_namespaces.iter().map(|ns| Api::namespaced(ctx.client.clone(), ns)).collect(),
    };
    let mut found = Vec::new();
    for api in lists {
        let list = api.list(&ListParams::default()).await.map_err(Error::kube("list TwilioSubaccounts"))?;
        found.extend(
            list.items
                .iter()
                .filter(|sub| {
                    sub.spec.parent_account_ref.kind == A::ACCOUNT_KIND
                        && sub.spec.parent_account_ref.name == account.name_any()
                })
                .map(|sub| format!("TwilioSubaccount {}/{}", sub.namespace().unwrap_or_default(), sub.name_any())),
        );
    }
    Ok(found)
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
    ctx.own_writes.note_credentials_write(&written);
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
    let listing = match connect_afresh(ctx, &source).await {
        // Listing the account's keys proves the credential may manage them, and the listing
        // is the one its keys' drift checks and orphan sweeps use until the next resync: one
        // call per account and interval serves both, and the census of its keys.
        Ok(connection) => ctx
            .inventories
            .get(&ctx.twilio, &connection, listing_max_age(account.as_ref()), ctx.now())
            .await
            .map(|inventory| {
                let recorded = ctx.caches.keys_recorded_in(&source.account_sid);
                let census = census::census(&inventory.keys, &recorded);
                (census::credential_kind(&connection.credentials), census)
            })
            .map_err(Error::twilio("verify credentials")),
        Err(e) => Err(e),
    };
    let (outcome, found_out) = match listing {
        Ok(report) => (Ok(()), Some(report)),
        Err(e) => (Err(e), None),
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
    let changed = write_account_status(account.as_ref(), ctx, &health, found_out).await?;
    if changed && let Health::Stalled { reason, message } = &health {
        ctx.events.warning(account.as_ref(), reason, "VerifyCredentials", message.clone()).await;
    }
    if let Err(error) = &outcome {
        ctx.metrics.reconcile.error(A::KIND, error.label());
        *found.lock().unwrap_or_else(|p| p.into_inner()) = error.label();
        return Ok(action);
    }
    // A verified account drives its auth token's rotation, one step after another.
    if let Some(spec) = rotation::wanted(account.as_ref())
        && let Some(after) = rotation::advance(account.as_ref(), ctx, &spec).await?
    {
        return Ok(Action::requeue(after.clamp(std::time::Duration::from_millis(100), ctx.config.resync_interval)));
    }
    Ok(action)
}

/// Writes the account's conditions, and what its latest listing found (the credential and the
/// census of its keys; kept as they were when `found_out` is None), if they change; tells whether
/// they did.
async fn write_account_status<A: AccountResource>(
    account: &A,
    ctx: &Context,
    health: &Health,
    found_out: Option<(CredentialKind, AccountKeys)>,
) -> Result<bool> {
    let previous = account.account_status().cloned().unwrap_or_default();
    let (credential, keys) = match found_out {
        Some((credential, keys)) => (Some(credential), Some(keys)),
        None => (previous.credential, previous.keys.clone()),
    };
    let status = TwilioAccountStatus {
        observed_generation: account.meta().generation,
        conditions: conditions::conditions_for(&previous.conditions, health, account.meta().generation, ctx.now()),
        credential,
        keys,
        // Written by the rotation alone (a merge patch of its own), never applied from here:
        // this pass's copy may be older than its latest step.
        credential_rotation: previous.credential_rotation.clone(),
    };
    if status == previous {
        return Ok(false);
    }
    let api = account.api(ctx.client.clone());
    let mut applied = serde_json::to_value(&status).unwrap_or_default();
    if let Some(fields) = applied.as_object_mut() {
        fields.remove("credentialRotation");
    }
    let patch = serde_json::json!({
        "apiVersion": A::api_version(&()),
        "kind": A::kind(&()),
        "status": applied,
    });
    api.patch_status(&account.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::kube("write account status"))?;
    Ok(true)
}

/// How old a listing the verification may reuse: none, but while the auth token rotates (a pass
/// every few seconds while targets roll out), a minute, so that waiting costs no Twilio calls.
fn listing_max_age<A: AccountResource>(account: &A) -> std::time::Duration {
    let rotating =
        account.account_status().and_then(|s| s.credential_rotation.as_ref()).is_some_and(|r| r.phase.is_some());
    if rotating { std::time::Duration::from_secs(60) } else { std::time::Duration::ZERO }
}

fn outcome_message(outcome: &Result<()>) -> String {
    match outcome {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    }
}
