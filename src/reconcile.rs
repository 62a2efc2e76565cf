//! Reconciliation of TwilioApiKey: one step toward the desired state per pass, each external
//! effect recorded before the next. Decisions live in [`crate::plan`]; this module performs them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Error as FinalizerError, Event as FinalizerEvent, finalizer};
use kube::{Api, Resource, ResourceExt};

use crate::account;
use crate::conditions::{self, Health};
use crate::context::Context;
use crate::crd::{
    AccountRef, DeletionPolicy, FIELD_MANAGER, FINALIZER, KeyType, ROTATE_ANNOTATION, RetiringKey, TwilioApiKey,
    TwilioApiKeyStatus,
};
use crate::error::{Error, Result};
use crate::plan::{self, Observed, RotationCause, Step};
use crate::twilio::{AccountConnection, KeyRequest, TwilioError};

const KIND: &str = "TwilioApiKey";

#[tracing::instrument(name = "reconcile", skip_all, fields(kind = KIND, namespace = %key.namespace().unwrap_or_default(), object = %key.name_any()))]
pub async fn reconcile(key: Arc<TwilioApiKey>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let api: Api<TwilioApiKey> = Api::namespaced(ctx.client.clone(), &key.namespace().unwrap_or_default());
    let result = finalizer(&api, FINALIZER, key.clone(), |event| async {
        match event {
            FinalizerEvent::Apply(key) => report(&ctx, &key, apply(&key, &ctx).await).await,
            FinalizerEvent::Cleanup(key) => report(&ctx, &key, cleanup(&key, &ctx).await).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    // Errors of apply and cleanup were counted by `report`; adding or removing the finalizer
    // fails before or after them.
    if let Err(Error::Finalizer(inner)) = &result
        && !matches!(**inner, FinalizerError::ApplyFailed(_) | FinalizerError::CleanupFailed(_))
    {
        crate::metrics::reconcile_error(KIND, "finalizer");
    }
    let label = result.as_ref().err().map_or("ok", Error::label);
    crate::metrics::reconciled(KIND, label, started.elapsed());
    match (&result, key.meta().deletion_timestamp.is_some()) {
        // Cleaned up: the finalizer is gone and so, soon, is the resource.
        (Ok(_), true) => ctx.forget_resource(&key.uid().unwrap_or_default()),
        (Ok(_), false) => ctx.reset_backoff(key.as_ref()),
        (Err(_), _) => {}
    }
    result
}

pub fn error_policy(key: Arc<TwilioApiKey>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(key.as_ref());
    tracing::warn!(%error, ?delay, "reconciliation failed; retrying");
    Action::requeue(delay)
}

/// Turns errors that need a human into a Stalled status and an Event (and a slow requeue, so a
/// refused credential does not cause a storm of calls); transient errors go back to the
/// controller to be retried with backoff. During deletion every error stays an error, stall or
/// not: success would remove the finalizer and forget a key that still exists in Twilio.
async fn report(ctx: &Context, key: &TwilioApiKey, result: Result<Action>) -> Result<Action> {
    let error = match result {
        Ok(action) => return Ok(action),
        Err(error) => error,
    };
    crate::metrics::reconcile_error(KIND, error.label());
    let stall_reason = error.stall_reason();
    let health = match stall_reason {
        Some(reason) => Health::Stalled { reason, message: error.to_string() },
        None => Health::Progressing { reason: "Retrying", message: error.to_string() },
    };
    let previous = key.status.clone().unwrap_or_default();
    let status = TwilioApiKeyStatus {
        conditions: conditions::conditions_for(&previous.conditions, &health, key.meta().generation, Timestamp::now()),
        observed_generation: key.meta().generation,
        ..previous.clone()
    };
    if status != previous {
        write_status(ctx, key, &status).await?;
        let action = if key.meta().deletion_timestamp.is_some() { "Delete" } else { "Reconcile" };
        ctx.warn(key, health.reason(), action, error.to_string()).await;
    }
    match stall_reason {
        Some(_) if key.meta().deletion_timestamp.is_none() => Ok(Action::requeue(ctx.config.resync_interval)),
        _ => Err(error),
    }
}

fn secrets(ctx: &Context, key: &TwilioApiKey) -> Api<Secret> {
    Api::namespaced(ctx.client.clone(), &key.namespace().unwrap_or_default())
}

async fn apply(key: &TwilioApiKey, ctx: &Context) -> Result<Action> {
    plan::validate(key).map_err(Error::InvalidSpec)?;
    if key.spec.suspend {
        return Ok(Action::await_change());
    }
    let source = account::resolve_for_key(ctx, key).await?;
    let connection = account::connect(ctx, &source).await?;
    let status = key.status.clone().unwrap_or_default();
    let desired_name = key.desired_secret_name();
    let delivering_name = status.secret_name.clone().unwrap_or_else(|| desired_name.clone());
    let secrets = secrets(ctx, key);
    let delivering_secret = secrets.get_opt(&delivering_name).await.map_err(Error::kube("read Secret"))?;
    let target_secret = match delivering_name == desired_name {
        true => None,
        false => Some(secrets.get_opt(&desired_name).await.map_err(Error::kube("read Secret"))?),
    };
    let delivered_account = status.account_sid.clone().unwrap_or_else(|| connection.account_sid.clone());
    let observed = Observed {
        delivering: crate::secret::observe(key, delivering_secret.as_ref(), &delivered_account),
        target: target_secret.as_ref().map(|s| crate::secret::observe(key, s.as_ref(), &connection.account_sid)),
        account_sid: connection.account_sid.clone(),
        region: connection.region.clone(),
        now: Timestamp::now(),
    };
    match plan::next_step(key, &observed) {
        Step::Conflict => Err(Error::SecretConflict(format!(
            "Secret {desired_name} exists and is not owned by this TwilioApiKey; it is left untouched (choose another spec.secret.name or remove that Secret)"
        ))),
        Step::Revoke => revoke(key, ctx).await,
        Step::StayRevoked => {
            write_status_if_changed(ctx, key, revoked_status(key)).await?;
            Ok(Action::await_change())
        }
        Step::Create => {
            // The cache may lag behind a status this process just wrote: if that status held a
            // key, a key is created only when the live object confirms that none was issued.
            if ctx.wrote_a_key(&key.uid().unwrap_or_default())
                && live_status(ctx, key).await?.is_some_and(|s| s.key_sid.is_some())
            {
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            issue(key, ctx, &connection, None, delivering_secret.as_ref()).await
        }
        Step::Rotate(cause) => issue(key, ctx, &connection, Some(cause), delivering_secret.as_ref()).await,
        Step::Record(sid) => {
            // The Secret's own watch event can arrive before the status written after it is
            // in the cache: only a live object that lacks the key needs recording.
            if let Some(live) = live_status(ctx, key).await?.filter(|s| s.key_sid.as_deref() == Some(sid.as_str())) {
                return Ok(next_wake(ctx, key, &live));
            }
            let status = delivered_status(key, &sid, &connection, Timestamp::now());
            write_status(ctx, key, &status).await?;
            ctx.normal(
                key,
                "KeyRecorded",
                "RecordKey",
                format!("Recorded key {sid} found in Secret {delivering_name}"),
            )
            .await;
            Ok(next_wake(ctx, key, &status))
        }
        Step::UpdateInPlace => update_in_place(key, ctx, &connection, delivering_secret.as_ref()).await,
        Step::RewriteSecret => rewrite_secret(key, ctx, delivering_secret.as_ref()).await,
        Step::UpToDate => settle(key, ctx, &connection, delivering_secret.as_ref()).await,
    }
}

/// The status as the API server holds it now (the cache may lag behind this process's writes).
async fn live_status(ctx: &Context, key: &TwilioApiKey) -> Result<Option<TwilioApiKeyStatus>> {
    let api: Api<TwilioApiKey> = Api::namespaced(ctx.client.clone(), &key.namespace().unwrap_or_default());
    Ok(api.get(&key.name_any()).await.map_err(Error::kube("read TwilioApiKey"))?.status)
}

/// Creates a key in Twilio and delivers it; with a cause, the current key is retired for the
/// grace period. The secret exists only in this function's memory until the Secret is written,
/// so a failed write deletes the new key rather than leaking it.
async fn issue(
    key: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    cause: Option<RotationCause>,
    delivering_secret: Option<&Secret>,
) -> Result<Action> {
    let request = KeyRequest { friendly_name: key.desired_friendly_name(), restricted_policy: restricted_policy(key) };
    let uid = key.uid().unwrap_or_default();
    let lock = ctx.creation_lock(&connection.account_sid, &request.friendly_name);
    let _creating = lock.lock().await;
    sweep_orphans(key, ctx, connection, delivering_secret).await?;
    let created = match ctx.twilio.create_key(connection, &request).await {
        Ok(created) => created,
        Err(error) => {
            // After a timeout or a 5xx the key may exist all the same: the next attempt relists
            // the account and deletes what this one left, instead of creating blindly.
            ctx.mark_create_unsure(&uid, matches!(error, TwilioError::Transport(_) | TwilioError::Server { .. }));
            return Err(Error::twilio("create key")(error));
        }
    };
    crate::metrics::key_operation("created");
    if let Some(cause) = cause {
        crate::metrics::rotation(cause.label());
    }
    tracing::info!(key_sid = %created.sid, cause = cause.map(RotationCause::describe), "created Twilio key");
    let desired = crate::secret::desired(key, &connection.account_sid, &created.sid, &created.secret);
    if let Err(error) = apply_secret(ctx, &desired).await {
        if let Err(cleanup) = ctx.twilio.delete_key(connection, &created.sid).await {
            tracing::error!(key_sid = %created.sid, %cleanup, "could not delete a key whose Secret write failed");
            ctx.mark_create_unsure(&uid, true);
        }
        return Err(error);
    }
    ctx.mark_create_unsure(&uid, false);
    let status = delivered_status(key, &created.sid, connection, Timestamp::now());
    write_status(ctx, key, &status).await?;
    delete_moved_secret(ctx, key, delivering_secret).await?;
    let secret_name = key.desired_secret_name();
    match cause {
        None => {
            let note = format!("Created key {} and wrote Secret {secret_name}", created.sid);
            ctx.normal(key, "KeyCreated", "CreateKey", note).await;
        }
        Some(cause) => {
            let old = key.status.as_ref().and_then(|s| s.key_sid.clone()).unwrap_or_default();
            let note = format!(
                "Rotated: {}. Key {} is in Secret {secret_name}; key {old} stays valid for the grace period",
                cause.describe(),
                created.sid
            );
            match cause {
                RotationCause::SecretDrift | RotationCause::KeyMissing => {
                    ctx.warn(key, "KeyRotated", "RotateKey", note).await
                }
                _ => ctx.normal(key, "KeyRotated", "RotateKey", note).await,
            }
        }
    }
    Ok(next_wake(ctx, key, &status))
}

/// Deletes keys that an interrupted earlier attempt created for this resource but never
/// recorded: keys of the account with the resource's friendly name, created since its current key
/// (or since the resource, if it has none), that neither this resource nor any other records in
/// its status or Secret. Twilio shows a secret only at creation, so such a key cannot be
/// delivered; deleting it is the only way not to leak it.
///
/// The listing is the account's shared inventory: made after this process started, it holds
/// every key an earlier process created; after an unsure create in this process it is renewed.
async fn sweep_orphans(
    key: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    delivering_secret: Option<&Secret>,
) -> Result<()> {
    let status = key.status.clone().unwrap_or_default();
    let uid = key.uid().unwrap_or_default();
    let max_age = if ctx.create_was_unsure(&uid) { Duration::ZERO } else { ctx.config.resync_interval };
    let inventory = ctx.inventory(connection, max_age).await.map_err(Error::twilio("list keys"))?;
    let since = status
        .key_created_at
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .or_else(|| key.meta().creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(inventory.listed_at);
    // Twilio's clock and ours may disagree by a little; its dates have whole seconds.
    let since = since - SignedDuration::from_secs(60);
    let names = [Some(key.desired_friendly_name()), status.friendly_name.clone()];
    let mut recorded: std::collections::HashSet<String> = all_keys(key, &status).into_iter().map(|k| k.sid).collect();
    recorded.extend(delivering_secret.and_then(|s| s.annotations().get(crate::crd::KEY_SID_ANNOTATION).cloned()));
    let candidates: Vec<String> = inventory
        .keys
        .values()
        .filter(|k| names.contains(&k.friendly_name) && !recorded.contains(&k.sid))
        .filter(|k| k.created_at().is_some_and(|created| created >= since))
        .map(|k| k.sid.clone())
        .collect();
    if candidates.is_empty() {
        return Ok(());
    }
    let recorded_elsewhere = recorded_by_any_resource(ctx, &key.namespace().unwrap_or_default()).await?;
    for sid in candidates.iter().filter(|sid| !recorded_elsewhere.contains(*sid)) {
        if !ctx.twilio.delete_key(connection, sid).await.map_err(Error::twilio("delete orphaned key"))? {
            continue; // someone else deleted it meanwhile
        }
        crate::metrics::key_operation("orphan_deleted");
        crate::metrics::leaked_key_found();
        let note = format!("Deleted key {sid}, created by an interrupted attempt and never delivered");
        ctx.warn(key, "OrphanKeyDeleted", "DeleteKey", note).await;
    }
    // The listing still shows them; the next user of it must list anew.
    ctx.forget_inventory(connection).await;
    Ok(())
}

/// Every key SID any TwilioApiKey records, in its status or in its Secret: cluster-wide when the
/// operator may list that, otherwise in the key's namespace.
async fn recorded_by_any_resource(ctx: &Context, namespace: &str) -> Result<std::collections::HashSet<String>> {
    match recorded_in(ctx, None).await {
        Err(Error::Kube { source: kube::Error::Api(status), .. }) if status.code == 403 => {
            recorded_in(ctx, Some(namespace)).await
        }
        other => other,
    }
}

async fn recorded_in(ctx: &Context, namespace: Option<&str>) -> Result<std::collections::HashSet<String>> {
    let (keys, secrets): (Api<TwilioApiKey>, Api<Secret>) = match namespace {
        Some(ns) => (Api::namespaced(ctx.client.clone(), ns), Api::namespaced(ctx.client.clone(), ns)),
        None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
    };
    let mut recorded = std::collections::HashSet::new();
    for other in keys.list(&Default::default()).await.map_err(Error::kube("list TwilioApiKeys"))? {
        let status = other.status.clone().unwrap_or_default();
        recorded.extend(all_keys(&other, &status).into_iter().map(|k| k.sid));
    }
    let managed = kube::api::ListParams::default().labels(&format!(
        "{}={}",
        crate::crd::MANAGED_BY_LABEL,
        crate::crd::MANAGED_BY_VALUE
    ));
    for secret in secrets.list_metadata(&managed).await.map_err(Error::kube("list Secrets"))? {
        recorded.extend(secret.annotations().get(crate::crd::KEY_SID_ANNOTATION).cloned());
    }
    Ok(recorded)
}

fn restricted_policy(key: &TwilioApiKey) -> Option<Vec<String>> {
    match key.spec.key_type {
        KeyType::Restricted => key.spec.policy.as_ref().map(|p| p.allow.clone()),
        KeyType::Standard => None,
    }
}

/// Renames the key and, for a Restricted key, replaces its policy; the secret stays valid.
async fn update_in_place(
    key: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    delivering_secret: Option<&Secret>,
) -> Result<Action> {
    let previous = key.status.clone().unwrap_or_default();
    let sid = previous.key_sid.clone().unwrap_or_default();
    let friendly_name = key.desired_friendly_name();
    let policy = restricted_policy(key);
    match ctx.twilio.update_key(connection, &sid, &friendly_name, policy.as_deref()).await {
        Ok(_) => {}
        Err(TwilioError::NotFound { .. }) => {
            return issue(key, ctx, connection, Some(RotationCause::KeyMissing), delivering_secret).await;
        }
        Err(e) => return Err(Error::twilio("update key")(e)),
    }
    let status = TwilioApiKeyStatus {
        friendly_name: Some(friendly_name.clone()),
        policy: key.spec.policy.clone().filter(|_| key.spec.key_type == KeyType::Restricted),
        ..ready_status(key, &previous)
    };
    write_status(ctx, key, &status).await?;
    ctx.normal(key, "KeyUpdated", "UpdateKey", format!("Updated key {sid} in place (name {friendly_name:?})")).await;
    Ok(next_wake(ctx, key, &status))
}

/// Writes the Secret under its current name, data keys, labels and annotations, carrying over the
/// secret it delivers; no new key is needed.
async fn rewrite_secret(key: &TwilioApiKey, ctx: &Context, delivering_secret: Option<&Secret>) -> Result<Action> {
    let previous = key.status.clone().unwrap_or_default();
    let (Some(sid), Some(account_sid)) = (previous.key_sid.clone(), previous.account_sid.clone()) else {
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    let Some(value) = delivering_secret.and_then(|s| crate::secret::delivered_secret(key, s)) else {
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    apply_secret(ctx, &crate::secret::desired(key, &account_sid, &sid, &value)).await?;
    let status = TwilioApiKeyStatus { secret_name: Some(key.desired_secret_name()), ..ready_status(key, &previous) };
    write_status(ctx, key, &status).await?;
    delete_moved_secret(ctx, key, delivering_secret).await?;
    let note = format!("Wrote Secret {} for key {sid}", key.desired_secret_name());
    ctx.normal(key, "SecretUpdated", "WriteSecret", note).await;
    Ok(next_wake(ctx, key, &status))
}

/// After the Secret moved to a new name, the old one (if this resource owns it) goes.
async fn delete_moved_secret(ctx: &Context, key: &TwilioApiKey, old: Option<&Secret>) -> Result<()> {
    let Some(old) = old.filter(|s| s.name_any() != key.desired_secret_name()) else {
        return Ok(());
    };
    if crate::secret::is_owned(key, old) {
        delete_secret(ctx, key, &old.name_any()).await?;
    }
    Ok(())
}

/// The key is delivered: delete retired keys whose grace period ended, check (from the
/// account's shared listing) that the key still exists in Twilio, and report Ready.
async fn settle(
    key: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    delivering_secret: Option<&Secret>,
) -> Result<Action> {
    let now = Timestamp::now();
    let previous = key.status.clone().unwrap_or_default();
    let (due, remaining): (Vec<RetiringKey>, Vec<RetiringKey>) = previous
        .retiring_keys
        .iter()
        .cloned()
        .partition(|r| r.delete_after.parse::<Timestamp>().map_or(true, |deadline| deadline <= now));
    for retired in &due {
        delete_keys(ctx, key, std::slice::from_ref(retired)).await?;
        let note = format!("Deleted retired key {} after its grace period", retired.sid);
        ctx.normal(key, "KeyDeleted", "DeleteKey", note).await;
    }
    // A create sent by a process that died may still be carried out after its successor listed
    // the account; such a late key is swept here, from the same listing as the drift check.
    {
        let lock = ctx.creation_lock(&connection.account_sid, &key.desired_friendly_name());
        let _creating = lock.lock().await;
        sweep_orphans(key, ctx, connection, delivering_secret).await?;
    }
    if key_missing_in_twilio(ctx, connection, &previous).await? {
        return issue(key, ctx, connection, Some(RotationCause::KeyMissing), delivering_secret).await;
    }
    let status = TwilioApiKeyStatus { retiring_keys: remaining, ..ready_status(key, &previous) };
    write_status_if_changed(ctx, key, status.clone()).await?;
    Ok(next_wake(ctx, key, &status))
}

/// Whether the account's latest listing (shared by all its keys, at most one per resync
/// interval) lacks the current key. A key newer than the listing is not judged.
async fn key_missing_in_twilio(
    ctx: &Context,
    connection: &AccountConnection,
    status: &TwilioApiKeyStatus,
) -> Result<bool> {
    let (Some(sid), Some(created)) = (&status.key_sid, &status.key_created_at) else {
        return Ok(false);
    };
    let inventory = ctx.inventory(connection, ctx.config.resync_interval).await.map_err(Error::twilio("list keys"))?;
    let created = created.parse::<Timestamp>().unwrap_or(inventory.listed_at);
    Ok(created < inventory.listed_at && !inventory.keys.contains_key(sid))
}

/// `revoked: true`: every key of the resource is deleted in Twilio at once, then its Secret.
async fn revoke(key: &TwilioApiKey, ctx: &Context) -> Result<Action> {
    let status = key.status.clone().unwrap_or_default();
    let keys = all_keys(key, &status);
    delete_keys(ctx, key, &keys).await?;
    for name in secret_names(key, &status) {
        let secret = secrets(ctx, key).get_opt(&name).await.map_err(Error::kube("read Secret"))?;
        if secret.is_some_and(|s| crate::secret::is_owned(key, &s)) {
            delete_secret(ctx, key, &name).await?;
        }
    }
    write_status(ctx, key, &revoked_status(key)).await?;
    let sids: Vec<&str> = keys.iter().map(|k| k.sid.as_str()).collect();
    let note = format!("Revoked: deleted key(s) {} in Twilio and the Secret", sids.join(", "));
    ctx.normal(key, "KeyRevoked", "RevokeKey", note).await;
    Ok(Action::await_change())
}

fn revoked_status(key: &TwilioApiKey) -> TwilioApiKeyStatus {
    let previous = key.status.clone().unwrap_or_default();
    let health = Health::Inactive {
        reason: "Revoked",
        message: "spec.revoked is true: the resource has no key in Twilio and no Secret".into(),
    };
    TwilioApiKeyStatus {
        observed_generation: key.meta().generation,
        conditions: conditions::conditions_for(&previous.conditions, &health, key.meta().generation, Timestamp::now()),
        ..Default::default()
    }
}

/// The current key and every retiring one, each with the account it was created through.
fn all_keys(key: &TwilioApiKey, status: &TwilioApiKeyStatus) -> Vec<RetiringKey> {
    let current = status.key_sid.iter().map(|sid| RetiringKey {
        sid: sid.clone(),
        delete_after: String::new(),
        account_ref: status.account_ref.clone().or_else(|| Some(key.spec.account_ref.clone())),
        account_sid: status.account_sid.clone(),
    });
    current.chain(status.retiring_keys.iter().cloned()).collect()
}

fn secret_names(key: &TwilioApiKey, status: &TwilioApiKeyStatus) -> Vec<String> {
    let mut names = vec![key.desired_secret_name()];
    if let Some(name) = status.secret_name.clone().filter(|n| !names.contains(n)) {
        names.push(name);
    }
    names
}

/// Deletes keys in Twilio, each in the account it belongs to, with the credential of the account
/// resource it was created through (404 counts as gone).
async fn delete_keys(ctx: &Context, key: &TwilioApiKey, keys: &[RetiringKey]) -> Result<()> {
    let namespace = key.namespace().unwrap_or_default();
    let mut by_account: BTreeMap<String, (AccountRef, Option<String>, Vec<&str>)> = BTreeMap::new();
    for retired in keys {
        let account_ref = retired.account_ref.clone().unwrap_or_else(|| key.spec.account_ref.clone());
        let group = format!("{:?}/{}/{:?}", account_ref.kind, account_ref.name, retired.account_sid);
        by_account
            .entry(group)
            .or_insert_with(|| (account_ref, retired.account_sid.clone(), Vec::new()))
            .2
            .push(&retired.sid);
    }
    for (account_ref, account_sid, sids) in by_account.into_values() {
        let source = account::resolve(ctx, &namespace, &account_ref).await?;
        let mut connection = account::connect(ctx, &source).await?;
        // The account resource may point at another account SID by now: the key still lives in
        // the old one, which an auth token addresses by its account SID.
        if let Some(old_sid) = account_sid.filter(|sid| *sid != connection.account_sid) {
            if connection.credentials.username == connection.account_sid {
                connection.credentials.username = old_sid.clone();
            }
            connection.account_sid = old_sid;
        }
        for sid in sids {
            // A key already gone (404) counts as deleted, but not as deleted by this call.
            if ctx.twilio.delete_key(&connection, sid).await.map_err(Error::twilio("delete key"))? {
                crate::metrics::key_operation("deleted");
            }
        }
    }
    Ok(())
}

/// The status once `sid` is delivered: the key it replaces, if any, starts its grace period.
fn delivered_status(
    key: &TwilioApiKey,
    sid: &str,
    connection: &AccountConnection,
    now: Timestamp,
) -> TwilioApiKeyStatus {
    let previous = key.status.clone().unwrap_or_default();
    let mut retiring = previous.retiring_keys.clone();
    if let Some(old) = previous.key_sid.as_ref().filter(|old| old.as_str() != sid) {
        retiring.push(RetiringKey {
            sid: old.clone(),
            delete_after: (now + grace_period(key)).to_string(),
            account_ref: previous.account_ref.clone(),
            account_sid: previous.account_sid.clone(),
        });
    }
    let issued = TwilioApiKeyStatus {
        key_sid: Some(sid.to_string()),
        key_type: Some(key.spec.key_type),
        account_sid: Some(connection.account_sid.clone()),
        account_ref: Some(key.spec.account_ref.clone()),
        region: Some(connection.region.clone()),
        friendly_name: Some(key.desired_friendly_name()),
        policy: key.spec.policy.clone().filter(|_| key.spec.key_type == KeyType::Restricted),
        secret_name: Some(key.desired_secret_name()),
        key_created_at: Some(now.to_string()),
        last_rotation_trigger: key.spec.rotation.as_ref().and_then(|r| r.trigger.clone()),
        last_rotate_annotation: key.annotations().get(ROTATE_ANNOTATION).cloned(),
        retiring_keys: retiring,
        ..previous
    };
    ready_status(key, &issued)
}

/// `status` with Ready conditions, the current generation and the next interval rotation.
fn ready_status(key: &TwilioApiKey, status: &TwilioApiKeyStatus) -> TwilioApiKeyStatus {
    let sid = status.key_sid.clone().unwrap_or_default();
    let secret_name = key.desired_secret_name();
    let health = Health::Ready { reason: "KeyReady", message: format!("Key {sid} delivered in Secret {secret_name}") };
    TwilioApiKeyStatus {
        observed_generation: key.meta().generation,
        conditions: conditions::conditions_for(&status.conditions, &health, key.meta().generation, Timestamp::now()),
        next_rotation_at: plan::next_rotation_at(key, status).map(|t| t.to_string()),
        ..status.clone()
    }
}

/// Requeue at the next resync, or earlier when a retired key's grace period ends or the key is
/// due for interval rotation; deadlines live in the status, so they survive restarts.
fn next_wake(ctx: &Context, key: &TwilioApiKey, status: &TwilioApiKeyStatus) -> Action {
    let now = Timestamp::now();
    let until = |deadline: Timestamp| Duration::try_from(deadline.duration_since(now)).unwrap_or(Duration::ZERO);
    let deadlines = status
        .retiring_keys
        .iter()
        .filter_map(|r| r.delete_after.parse::<Timestamp>().ok())
        .chain(plan::next_rotation_at(key, status));
    let wake = deadlines.map(until).chain([ctx.config.resync_interval]).min().unwrap_or(ctx.config.resync_interval);
    Action::requeue(wake + Duration::from_millis(100))
}

fn grace_period(key: &TwilioApiKey) -> SignedDuration {
    let grace = key
        .spec
        .rotation
        .as_ref()
        .and_then(|r| crate::duration::parse(&r.grace_period).ok())
        .unwrap_or(Duration::from_secs(600));
    SignedDuration::try_from(grace).unwrap_or(SignedDuration::from_mins(10))
}

/// On deletion: with Delete, every key of the resource is deleted in Twilio (404 counts as gone)
/// and then the Secret; with Orphan, both stay and the Secret loses its ownerReference. The
/// finalizer is removed only after this succeeds.
async fn cleanup(key: &TwilioApiKey, ctx: &Context) -> Result<Action> {
    let status = key.status.clone().unwrap_or_default();
    let secrets = secrets(ctx, key);
    let mut owned_secrets = Vec::new();
    for name in secret_names(key, &status) {
        if let Some(secret) = secrets.get_opt(&name).await.map_err(Error::kube("read Secret"))?
            && crate::secret::is_owned(key, &secret)
        {
            owned_secrets.push(secret);
        }
    }
    // Keys an interrupted create left behind go in any case: nobody can use them.
    if let Ok(source) = account::resolve_for_key(ctx, key).await
        && let Ok(connection) = account::connect(ctx, &source).await
    {
        let lock = ctx.creation_lock(&connection.account_sid, &key.desired_friendly_name());
        let _creating = lock.lock().await;
        sweep_orphans(key, ctx, &connection, owned_secrets.first()).await?;
    }
    match key.spec.deletion_policy {
        DeletionPolicy::Delete => {
            let keys = all_keys(key, &status);
            if !keys.is_empty() {
                delete_keys(ctx, key, &keys).await?;
                let sids: Vec<&str> = keys.iter().map(|k| k.sid.as_str()).collect();
                ctx.normal(key, "KeyDeleted", "DeleteKey", format!("Deleted key(s) {} in Twilio", sids.join(", ")))
                    .await;
            }
            for secret in &owned_secrets {
                delete_secret(ctx, key, &secret.name_any()).await?;
            }
        }
        DeletionPolicy::Orphan => {
            for secret in &owned_secrets {
                release_secret(&secrets, secret, key).await?;
            }
            let note = format!(
                "deletionPolicy Orphan: key {} and its Secret are kept",
                status.key_sid.as_deref().unwrap_or("(none)")
            );
            ctx.normal(key, "KeyOrphaned", "DeleteKey", note).await;
        }
    }
    Ok(Action::await_change())
}

/// Removes this resource's ownerReference (and only it) so that the garbage collector keeps the
/// Secret after the resource is gone. The resourceVersion makes the write fail rather than drop
/// an ownerReference someone added meanwhile.
async fn release_secret(secrets: &Api<Secret>, secret: &Secret, key: &TwilioApiKey) -> Result<()> {
    let uid = key.uid().unwrap_or_default();
    let others: Vec<_> = secret.owner_references().iter().filter(|r| r.uid != uid).cloned().collect();
    let patch = serde_json::json!({
        "metadata": {"ownerReferences": others, "resourceVersion": secret.resource_version()}
    });
    secrets
        .patch(&secret.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube("release Secret"))?;
    Ok(())
}

async fn delete_secret(ctx: &Context, key: &TwilioApiKey, name: &str) -> Result<()> {
    match secrets(ctx, key).delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            ctx.note_own_delete(&key.namespace().unwrap_or_default(), name);
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(Error::kube("delete Secret")(e)),
    }
}

async fn apply_secret(ctx: &Context, secret: &Secret) -> Result<()> {
    let api: Api<Secret> =
        Api::namespaced(ctx.client.clone(), secret.metadata.namespace.as_deref().unwrap_or_default());
    let mut body = serde_json::to_value(secret).map_err(Error::Encode)?;
    body["apiVersion"] = "v1".into();
    body["kind"] = "Secret".into();
    let written = api
        .patch(&secret.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(Error::kube("write Secret"))?;
    ctx.note_own_write(&written);
    Ok(())
}

async fn write_status_if_changed(ctx: &Context, key: &TwilioApiKey, status: TwilioApiKeyStatus) -> Result<()> {
    if key.status.as_ref() != Some(&status) {
        write_status(ctx, key, &status).await?;
    }
    Ok(())
}

/// Replaces the whole status (a JSON patch that adds `/status` replaces it): fields the new
/// status lacks are removed, as with server-side apply, at a fraction of its cost to the API
/// server. The operator is the only writer of status.
async fn write_status(ctx: &Context, key: &TwilioApiKey, status: &TwilioApiKeyStatus) -> Result<()> {
    let api: Api<TwilioApiKey> = Api::namespaced(ctx.client.clone(), &key.namespace().unwrap_or_default());
    let value = serde_json::to_value(status).map_err(Error::Encode)?;
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "add", "path": "/status", "value": value}
    ]))
    .map_err(Error::Encode)?;
    api.patch_status(&key.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(Error::kube("write status"))?;
    ctx.note_status_written(&key.uid().unwrap_or_default(), status.key_sid.is_some());
    Ok(())
}
