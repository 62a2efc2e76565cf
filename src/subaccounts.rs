//! The TwilioSubaccount controller: makes a Twilio subaccount in a parent account, delivers its
//! SID and auth token into a Secret of the namespace, makes a TwilioAccount that issues keys in
//! it, and on deletion, once that TwilioAccount (and so its keys) is gone, suspends, orphans or
//! closes the subaccount as spec.deletionPolicy says.
//!
//! Twilio shows a subaccount's auth token once, when it makes it. So, as for keys, it is made
//! under a pending name (`twilio-operator:pending:<uid>`) and its token written into the Secret
//! before anything else; a pass that finds neither a recorded subaccount nor the Secret looks for
//! subaccounts under its pending name: those lost their token before it was written, were never
//! used, and are closed before another is made.

use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, Resource, ResourceExt};

use crate::accounts::AccountSource;
use crate::accounts::resolve::{connect, resolve};
use crate::api::conditions::{self, Health};
use crate::api::{
    AccountKind, DEFAULT_ACCOUNT_SID_KEY, DEFAULT_AUTH_TOKEN_KEY, FIELD_MANAGER, FINALIZER, SUBACCOUNT_ANNOTATION,
    SubaccountDeletionPolicy, TwilioAccount, TwilioSubaccount, TwilioSubaccountStatus,
};
use crate::error::{Error, Result};
use crate::runtime::context::Context;
use crate::twilio::accounts::{AccountInfo, is_account_sid};
use crate::twilio::{AccountConnection, ExposeSecret, SecretString, TwilioError};

#[tracing::instrument(name = "reconcile", skip_all, fields(kind = "TwilioSubaccount", namespace = %sub.namespace().unwrap_or_default(), object = %sub.name_any()))]
pub async fn reconcile(sub: Arc<TwilioSubaccount>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<TwilioSubaccount> = Api::namespaced(ctx.client.clone(), &sub.namespace().unwrap_or_default());
    let pass = async {
        finalizer(&api, FINALIZER, sub, |event| async {
            match event {
                FinalizerEvent::Apply(sub) => apply(&sub, &ctx).await,
                FinalizerEvent::Cleanup(sub) => cleanup(&sub, &ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))
    };
    let label = |result: &Result<Action>| result.as_ref().err().map_or("ok", Error::label);
    let result = ctx.metrics.reconcile.timed("TwilioSubaccount", pass, label).await;
    if let Err(error) = &result {
        ctx.metrics.reconcile.error("TwilioSubaccount", error.label());
    }
    result
}

pub fn error_policy(sub: Arc<TwilioSubaccount>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next(sub.as_ref(), error.retry_cap());
    tracing::warn!(%error, ?delay, "subaccount reconciliation failed; retrying");
    Action::requeue(delay)
}

/// The parent account and a connection to it. With `for_new`, one that may make a new
/// subaccount for the namespace (allowed, not being deleted).
async fn parent(sub: &TwilioSubaccount, ctx: &Context, for_new: bool) -> Result<(AccountSource, AccountConnection)> {
    let namespace = sub.namespace().unwrap_or_default();
    let source = resolve(ctx, &namespace, &sub.spec.parent_account_ref, for_new).await?;
    let connection = connect(ctx, &source).await?.for_tenant(&namespace);
    Ok((source, connection))
}

async fn apply(sub: &TwilioSubaccount, ctx: &Context) -> Result<Action> {
    let (source, parent) = match parent(sub, ctx, true).await {
        Ok(found) => found,
        Err(error) => match error.stall_reason() {
            Some(reason) => {
                return settle(sub, ctx, Health::Stalled { reason, message: error.to_string() }, None).await;
            }
            None => return Err(error),
        },
    };
    let api_base = ctx.twilio.endpoint().api_base(source.region.as_deref(), source.edge.as_deref());
    let recorded = sub.status.as_ref().and_then(|s| s.account_sid.clone());
    let delivered = match read_secret(sub, ctx).await? {
        SecretState::Conflict => {
            let message = format!(
                "Secret {} exists and is not this TwilioSubaccount's; it is never touched (set spec.secretName)",
                sub.secret_name()
            );
            return settle(sub, ctx, Health::Stalled { reason: "SecretConflict", message }, None).await;
        }
        SecretState::Holds(sid, token) => Some((sid, token)),
        SecretState::Missing => None,
    };
    let sid = match (delivered, recorded) {
        (Some((sid, _)), Some(recorded)) if sid == recorded => sid,
        // Written by a pass that stopped before recording it, or by whoever may edit the
        // Secret: a claim, recorded only once proven.
        (Some((sid, token)), _) => {
            if !proven(ctx, &parent, &api_base, &sid, &token).await? {
                let message = format!(
                    "Secret {} names subaccount {sid}, but its token does not authenticate as it, or it is not a \
                     subaccount of the parent: not taken",
                    sub.secret_name()
                );
                return settle(sub, ctx, Health::Stalled { reason: "SecretConflict", message }, None).await;
            }
            sid
        }
        (None, Some(sid)) => {
            let message = format!(
                "the Secret {} that held subaccount {sid}'s auth token is gone, and Twilio shows a token only once: \
                 recreate it with TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN from the Console",
                sub.secret_name()
            );
            return settle(sub, ctx, Health::Stalled { reason: "SecretLost", message }, Some(sid)).await;
        }
        (None, None) => {
            if let Some(health) = limited(sub, ctx).await? {
                return settle(sub, ctx, health, None).await;
            }
            match create(sub, ctx, &parent, &api_base).await? {
                Ok(sid) => sid,
                Err(health) => return settle(sub, ctx, health, None).await,
            }
        }
    };
    // Recorded before anything else is done with it.
    if sub.status.as_ref().and_then(|s| s.account_sid.as_deref()) != Some(sid.as_str()) {
        let mut status = sub.status.clone().unwrap_or_default();
        status.account_sid = Some(sid.clone());
        status.parent_account_sid = Some(source.account_sid.clone());
        write_status(sub, ctx, status).await?;
    }
    let info = match ctx.twilio.fetch_subaccount(&parent, &api_base, &sid).await {
        Ok(info) => info,
        Err(error) => return twilio_failure(sub, ctx, error, Some(sid)).await,
    };
    let info = if info.friendly_name.as_deref() != Some(sub.desired_friendly_name().as_str()) {
        let renamed =
            ctx.twilio.update_subaccount(&parent, &api_base, &sid, Some(&sub.desired_friendly_name()), None).await;
        match renamed {
            Ok(info) => info,
            Err(error) => return twilio_failure(sub, ctx, error, Some(sid)).await,
        }
    } else {
        info
    };
    if let Some(health) = ensure_account(sub, ctx, &source, &sid).await? {
        return settle_with(sub, ctx, health, Some(sid), &info).await;
    }
    let state = info.status.clone().unwrap_or_default();
    let health = if state == "active" {
        Health::Ready {
            reason: "SubaccountReady",
            message: format!(
                "Subaccount {sid} is active; TwilioAccount {} issues keys in it with the auth token in Secret {}",
                sub.account_name(),
                sub.secret_name()
            ),
        }
    } else {
        Health::Stalled {
            reason: "SubaccountNotActive",
            message: format!(
                "Subaccount {sid} is {state} in Twilio; it authenticates nothing until it is active again"
            ),
        }
    };
    settle_with(sub, ctx, health, Some(sid), &info).await
}

/// At most one TwilioSubaccount of a namespace makes subaccounts in a given ClusterTwilioAccount
/// (the oldest): a tenant cannot fill an account that tenants share with subaccounts.
async fn limited(sub: &TwilioSubaccount, ctx: &Context) -> Result<Option<Health>> {
    if sub.spec.parent_account_ref.kind != AccountKind::ClusterTwilioAccount {
        return Ok(None);
    }
    let api: Api<TwilioSubaccount> = Api::namespaced(ctx.client.clone(), &sub.namespace().unwrap_or_default());
    let all = api.list(&ListParams::default()).await.map_err(Error::kube("list TwilioSubaccounts"))?;
    let order = |s: &TwilioSubaccount| (s.metadata.creation_timestamp.clone().map(|t| t.0), s.name_any());
    let first = all
        .items
        .iter()
        .filter(|other| other.spec.parent_account_ref == sub.spec.parent_account_ref)
        .min_by_key(|other| order(other));
    if first.is_none_or(|first| first.uid() == sub.uid()) {
        return Ok(None);
    }
    let message = format!(
        "another TwilioSubaccount of this namespace already uses ClusterTwilioAccount {} (one per namespace)",
        sub.spec.parent_account_ref.name
    );
    Ok(Some(Health::Stalled { reason: "SubaccountLimit", message }))
}

/// Makes the subaccount under its pending name and writes its SID and token into the Secret.
async fn create(
    sub: &TwilioSubaccount,
    ctx: &Context,
    parent: &AccountConnection,
    api_base: &str,
) -> Result<std::result::Result<String, Health>> {
    let pending = sub.pending_friendly_name();
    // Made by a pass that stopped before its Secret was written: never used, and its token is
    // lost. Closed, so that it cannot be mistaken for one that is used.
    let lost =
        ctx.twilio.find_subaccounts(parent, api_base, &pending).await.map_err(Error::twilio("find subaccounts"))?;
    for lost in lost.iter().filter(|a| a.status.as_deref() != Some("closed")) {
        ctx.twilio
            .update_subaccount(parent, api_base, &lost.sid, None, Some("closed"))
            .await
            .map_err(Error::twilio("close a subaccount whose token was lost"))?;
        let note =
            format!("Closed subaccount {}: made by an earlier attempt whose auth token was never stored", lost.sid);
        ctx.events.warning(sub, "SubaccountAbandoned", "CreateSubaccount", note).await;
    }
    // Per namespace, not per resource: deleting and creating TwilioSubaccounts again makes a new
    // subaccount each time (the old one only suspended), so the namespace is what is bounded.
    let budget = format!("subaccounts/{}", sub.namespace().unwrap_or_default());
    if let Err(wait) = ctx.budget.take(&budget) {
        let message = format!(
            "this namespace made {} subaccounts within the last hour (--max-key-creations-per-hour); the next in {}s",
            ctx.budget.per_hour(),
            wait.as_secs()
        );
        return Ok(Err(Health::Stalled { reason: "RotationBudgetExceeded", message }));
    }
    let made = match ctx.twilio.create_subaccount(parent, api_base, &pending).await {
        Ok(made) => made,
        Err(error) if !error.is_transient() => return Ok(Err(twilio_health(&error))),
        Err(error) => return Err(Error::twilio("create the subaccount")(error)),
    };
    let (Some(token), true) = (made.auth_token.as_ref(), is_account_sid(&made.sid)) else {
        return Err(Error::twilio("create the subaccount")(TwilioError::Decode(
            "Twilio's answer holds no account SID and auth token".into(),
        )));
    };
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(sub.secret_name()),
            namespace: sub.namespace(),
            annotations: Some([(SUBACCOUNT_ANNOTATION.to_string(), sub.uid().unwrap_or_default())].into()),
            ..Default::default()
        },
        data: Some(
            [
                (DEFAULT_ACCOUNT_SID_KEY.to_string(), ByteString(made.sid.clone().into_bytes())),
                (DEFAULT_AUTH_TOKEN_KEY.to_string(), ByteString(token.expose_secret().as_bytes().to_vec())),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &sub.namespace().unwrap_or_default());
    let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    if let Err(error) = secrets.create(&params, &secret).await {
        // Nobody can use it without its token: closed at once (or by the next pass, which finds
        // it under the pending name).
        let _ = ctx.twilio.update_subaccount(parent, api_base, &made.sid, None, Some("closed")).await;
        return Err(Error::kube("write the subaccount's Secret")(error));
    }
    let note = format!("Made subaccount {} and delivered its auth token into Secret {}", made.sid, sub.secret_name());
    ctx.events.normal(sub, "SubaccountCreated", "CreateSubaccount", note).await;
    Ok(Ok(made.sid))
}

/// Whether a subaccount SID read from the Secret is the resource's to act on: its token
/// authenticates as it (whoever holds that token controls the subaccount anyway), and it is a
/// subaccount of the parent.
async fn proven(
    ctx: &Context,
    parent: &AccountConnection,
    api_base: &str,
    sid: &str,
    token: &SecretString,
) -> Result<bool> {
    let holds =
        ctx.twilio.token_authenticates(api_base, sid, token).await.map_err(Error::twilio("prove a subaccount"))?;
    if !holds {
        return Ok(false);
    }
    match ctx.twilio.fetch_subaccount(parent, api_base, sid).await {
        Ok(info) => {
            Ok(info.owner_account_sid.as_deref() == Some(parent.account_sid.as_str()) && info.sid != parent.account_sid)
        }
        Err(TwilioError::NotFound { .. } | TwilioError::AuthFailed { .. }) => Ok(false),
        Err(error) => Err(Error::twilio("prove a subaccount")(error)),
    }
}

enum SecretState {
    Missing,
    /// The resource's Secret, holding this subaccount SID and a token.
    Holds(String, SecretString),
    /// A Secret of that name that is not the resource's (or that the resource's lost its data).
    Conflict,
}

async fn read_secret(sub: &TwilioSubaccount, ctx: &Context) -> Result<SecretState> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &sub.namespace().unwrap_or_default());
    let Some(secret) =
        secrets.get_opt(&sub.secret_name()).await.map_err(Error::kube("read the subaccount's Secret"))?
    else {
        return Ok(SecretState::Missing);
    };
    if secret.annotations().get(SUBACCOUNT_ANNOTATION) != sub.uid().as_ref() {
        return Ok(SecretState::Conflict);
    }
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| data.get(key).and_then(|v| String::from_utf8(v.0.clone()).ok());
    match (text(DEFAULT_ACCOUNT_SID_KEY), text(DEFAULT_AUTH_TOKEN_KEY)) {
        // A SID read from a Secret is a claim: it must be the one recorded, once one is.
        (Some(sid), Some(token)) if is_account_sid(&sid) && !token.is_empty() => {
            let recorded = sub.status.as_ref().and_then(|s| s.account_sid.as_deref());
            if recorded.is_some_and(|recorded| recorded != sid) {
                return Ok(SecretState::Conflict);
            }
            Ok(SecretState::Holds(sid, SecretString::from(token)))
        }
        _ => Ok(SecretState::Conflict),
    }
}

/// The TwilioAccount that issues keys in the subaccount exists and says so; the health that says
/// why not, when a TwilioAccount of that name is not the subaccount's.
async fn ensure_account(
    sub: &TwilioSubaccount,
    ctx: &Context,
    parent: &AccountSource,
    sid: &str,
) -> Result<Option<Health>> {
    let namespace = sub.namespace().unwrap_or_default();
    let accounts: Api<TwilioAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = sub.account_name();
    let mut spec = serde_json::json!({
        "accountSid": sid,
        "credentialsSecretRef": {"name": sub.secret_name()},
    });
    if let Some(region) = &parent.region {
        spec["region"] = region.clone().into();
    }
    if let Some(edge) = &parent.edge {
        spec["edge"] = edge.clone().into();
    }
    match accounts.get_opt(&name).await.map_err(Error::kube("read the subaccount's TwilioAccount"))? {
        None => {
            let account: TwilioAccount = serde_json::from_value(serde_json::json!({
                "apiVersion": "twilio-operator.dev/v1alpha1",
                "kind": "TwilioAccount",
                "metadata": {"name": name, "annotations": {SUBACCOUNT_ANNOTATION: sub.uid()}},
                "spec": spec,
            }))
            .map_err(|e| Error::kube("build the subaccount's TwilioAccount")(kube::Error::SerdeError(e)))?;
            let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
            accounts.create(&params, &account).await.map_err(Error::kube("create the subaccount's TwilioAccount"))?;
            Ok(None)
        }
        Some(account) if account.annotations().get(SUBACCOUNT_ANNOTATION) != sub.uid().as_ref() => {
            Ok(Some(Health::Stalled {
                reason: "AccountConflict",
                message: format!(
                    "TwilioAccount {name} exists and is not this TwilioSubaccount's (set spec.accountName)"
                ),
            }))
        }
        Some(account) => {
            if account.spec.account_sid != sid || account.spec.credentials_secret_ref.name != sub.secret_name() {
                let patch = serde_json::json!({"spec": spec});
                accounts
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::kube("repair the subaccount's TwilioAccount"))?;
            }
            Ok(None)
        }
    }
}

/// Deletion: the TwilioAccount (and so every key in the subaccount) goes first; then the
/// subaccount is suspended, orphaned or closed, and the Secret handed over or deleted.
async fn cleanup(sub: &TwilioSubaccount, ctx: &Context) -> Result<Action> {
    let namespace = sub.namespace().unwrap_or_default();
    let accounts: Api<TwilioAccount> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = sub.account_name();
    if let Some(account) = accounts.get_opt(&name).await.map_err(Error::kube("read the subaccount's TwilioAccount"))?
        && account.annotations().get(SUBACCOUNT_ANNOTATION) == sub.uid().as_ref()
    {
        if account.meta().deletion_timestamp.is_none() {
            accounts
                .delete(&name, &DeleteParams::default())
                .await
                .map_err(Error::kube("delete the subaccount's TwilioAccount"))?;
        }
        let error = Error::SubaccountReleasing { account: name };
        write_health(sub, ctx, &Health::Progressing { reason: "Deleting", message: error.to_string() }).await?;
        // An error, not a requeue: the finalizer goes only when cleanup succeeds.
        return Err(error);
    }
    let recorded = sub.status.as_ref().and_then(|s| s.account_sid.clone());
    // Without its parent the subaccount cannot be suspended or closed: the finalizer stays until
    // it can (remove it by hand to give up); the condition says why.
    let (source, parent) = match parent(sub, ctx, false).await {
        Ok(found) => found,
        Err(error) => {
            let health = match error.stall_reason() {
                Some(reason) => {
                    Health::Stalled { reason, message: format!("{error}; the deletion waits for the parent account") }
                }
                None => Health::Progressing { reason: "Retrying", message: error.to_string() },
            };
            write_health(sub, ctx, &health).await?;
            return Err(error);
        }
    };
    let api_base = ctx.twilio.endpoint().api_base(source.region.as_deref(), source.edge.as_deref());
    // A subaccount the status does not record is acted on only when its Secret proves it.
    let sid = match (recorded, read_secret(sub, ctx).await?) {
        (Some(sid), _) => Some(sid),
        (None, SecretState::Holds(sid, token)) if proven(ctx, &parent, &api_base, &sid, &token).await? => Some(sid),
        _ => None,
    };
    if sid.is_none() {
        // Deleted while it was being made: one made under the pending name is closed.
        let pending = sub.pending_friendly_name();
        let lost = ctx
            .twilio
            .find_subaccounts(&parent, &api_base, &pending)
            .await
            .map_err(Error::twilio("find subaccounts"))?;
        for lost in lost.iter().filter(|a| a.status.as_deref() != Some("closed")) {
            ctx.twilio
                .update_subaccount(&parent, &api_base, &lost.sid, None, Some("closed"))
                .await
                .map_err(Error::twilio("close a subaccount whose token was lost"))?;
        }
    }
    let policy = sub.spec.deletion_policy;
    if let Some(sid) = &sid {
        let wanted = match policy {
            SubaccountDeletionPolicy::Suspend => Some("suspended"),
            SubaccountDeletionPolicy::Close => Some("closed"),
            SubaccountDeletionPolicy::Orphan => None,
        };
        if let Some(wanted) = wanted {
            let current = ctx.twilio.fetch_subaccount(&parent, &api_base, sid).await;
            let current = match current {
                Ok(info) => info.status,
                Err(TwilioError::NotFound { .. }) => Some("closed".to_string()),
                Err(error) => return Err(Error::twilio("read the subaccount")(error)),
            };
            // A closed subaccount stays closed; suspending it would fail.
            if current.as_deref() != Some(wanted) && current.as_deref() != Some("closed") {
                ctx.twilio
                    .update_subaccount(&parent, &api_base, sid, None, Some(wanted))
                    .await
                    .map_err(Error::twilio("suspend or close the subaccount"))?;
            }
            let note = format!("Subaccount {sid} is {wanted} (deletionPolicy {policy:?})");
            ctx.events.normal(sub, "SubaccountReleased", "DeleteSubaccount", note).await;
        }
    }
    release_secret(sub, ctx, policy).await?;
    Ok(Action::await_change())
}

/// Close deletes the Secret (its token no longer works); Suspend and Orphan hand it over (a
/// suspended subaccount can be reactivated in the Console, and its token works again then).
async fn release_secret(sub: &TwilioSubaccount, ctx: &Context, policy: SubaccountDeletionPolicy) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &sub.namespace().unwrap_or_default());
    let name = sub.secret_name();
    let Some(secret) = secrets.get_opt(&name).await.map_err(Error::kube("read the subaccount's Secret"))? else {
        return Ok(());
    };
    if secret.annotations().get(SUBACCOUNT_ANNOTATION) != sub.uid().as_ref() {
        return Ok(());
    }
    if policy == SubaccountDeletionPolicy::Close {
        secrets.delete(&name, &DeleteParams::default()).await.map_err(Error::kube("delete the subaccount's Secret"))?;
    } else {
        let patch = serde_json::json!({"metadata": {"annotations": {SUBACCOUNT_ANNOTATION: null}}});
        secrets
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube("hand over the subaccount's Secret"))?;
    }
    Ok(())
}

fn twilio_health(error: &TwilioError) -> Health {
    match error {
        TwilioError::AuthFailed { .. } => Health::Stalled { reason: "TwilioAuthFailed", message: error.to_string() },
        _ => Health::Stalled { reason: "TwilioRejected", message: error.to_string() },
    }
}

async fn twilio_failure(
    sub: &TwilioSubaccount,
    ctx: &Context,
    error: TwilioError,
    sid: Option<String>,
) -> Result<Action> {
    if error.is_transient() {
        return Err(Error::twilio("read the subaccount")(error));
    }
    settle(sub, ctx, twilio_health(&error), sid).await
}

async fn settle(sub: &TwilioSubaccount, ctx: &Context, health: Health, sid: Option<String>) -> Result<Action> {
    let mut status = sub.status.clone().unwrap_or_default();
    if sid.is_some() {
        status.account_sid = sid;
    }
    finish(sub, ctx, health, status).await
}

async fn settle_with(
    sub: &TwilioSubaccount,
    ctx: &Context,
    health: Health,
    sid: Option<String>,
    info: &AccountInfo,
) -> Result<Action> {
    let mut status = sub.status.clone().unwrap_or_default();
    status.account_sid = sid;
    status.state = info.status.clone();
    status.parent_account_sid = info.owner_account_sid.clone().or(status.parent_account_sid);
    finish(sub, ctx, health, status).await
}

async fn finish(
    sub: &TwilioSubaccount,
    ctx: &Context,
    health: Health,
    mut status: TwilioSubaccountStatus,
) -> Result<Action> {
    let previous = sub.status.clone().unwrap_or_default();
    status.observed_generation = sub.meta().generation;
    status.conditions = conditions::conditions_for(&previous.conditions, &health, sub.meta().generation, ctx.now());
    let changed = status != previous;
    if changed {
        write_status(sub, ctx, status).await?;
        if let Health::Stalled { reason, message } = &health {
            ctx.events.warning(sub, reason, "ReconcileSubaccount", message.clone()).await;
        }
    }
    Ok(Action::requeue(ctx.config.resync_interval))
}

async fn write_health(sub: &TwilioSubaccount, ctx: &Context, health: &Health) -> Result<()> {
    let mut status = sub.status.clone().unwrap_or_default();
    let previous = status.conditions.clone();
    status.conditions = conditions::conditions_for(&previous, health, sub.meta().generation, ctx.now());
    if sub.status.as_ref() != Some(&status) {
        write_status(sub, ctx, status).await?;
    }
    Ok(())
}

async fn write_status(sub: &TwilioSubaccount, ctx: &Context, status: TwilioSubaccountStatus) -> Result<()> {
    let api: Api<TwilioSubaccount> = Api::namespaced(ctx.client.clone(), &sub.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "twilio-operator.dev/v1alpha1",
        "kind": "TwilioSubaccount",
        "status": status,
    });
    api.patch_status(&sub.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::kube("write TwilioSubaccount status"))?;
    Ok(())
}
