//! Reconciliation of TwilioApiKey: one step toward the desired state per pass, each external
//! effect recorded before the next. Decisions live in [`crate::keys::plan`]; this module performs them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::runtime::context::EventType;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Error as FinalizerError, Event as FinalizerEvent, finalizer};
use kube::{Api, Resource, ResourceExt};

use crate::accounts::resolve;
use crate::api::conditions::{self, Health};
use crate::api::ownership::{self, ObservedSecret};
use crate::api::{
    DeletionPolicy, FIELD_MANAGER, FINALIZER, KEY_SID_ANNOTATION, PENDING_FRIENDLY_NAME_PREFIX, RetiringKey,
    TwilioApiKey, TwilioApiKeyStatus, WorkloadKind,
};
use crate::error::{AdoptionRefusal, Error, Result, SecretHolder};
use crate::keys::plan::{self, Observed, RotationCause, Step};
use crate::keys::{held, rollout, secret, status, validate};
use crate::runtime::context::Context;
use crate::runtime::metrics::KeyOperation;
use crate::twilio::{AccountConnection, KeyRequest, TwilioError};

const KIND: &str = "TwilioApiKey";

#[tracing::instrument(name = "reconcile", skip_all, fields(kind = KIND, namespace = %resource.namespace().unwrap_or_default(), object = %resource.name_any()))]
pub async fn reconcile(resource: Arc<TwilioApiKey>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    // A spec too large to hold was stripped in the cache (see keys::held); nothing is done for it
    // until it shrinks. Deletion reads the whole resource from the API server, and cleans up.
    let oversized = resource.meta().deletion_timestamp.is_none().then(|| held::oversized(&resource)).flatten();
    let result = match oversized {
        Some(problem) => report(&ctx, &resource, Err(Error::InvalidSpec { problem })).await,
        None => reconcile_current(&ctx, resource.clone()).await,
    };
    // Errors of apply and cleanup were counted by `report`; adding or removing the finalizer
    // fails before or after them.
    if let Err(Error::Finalizer(inner)) = &result
        && !matches!(**inner, FinalizerError::ApplyFailed(_) | FinalizerError::CleanupFailed(_))
    {
        ctx.metrics.reconcile_error(KIND, "finalizer");
    }
    let label = result.as_ref().err().map_or("ok", Error::label);
    ctx.metrics.reconciled(KIND, label, started.elapsed());
    match (&result, resource.meta().deletion_timestamp.is_some()) {
        // Cleaned up: the finalizer is gone and so, soon, is the resource.
        (Ok(_), true) => ctx.forget_resource(&resource.uid().unwrap_or_default()),
        (Ok(_), false) => ctx.backoff.reset(resource.as_ref()),
        (Err(_), _) => {}
    }
    result
}

/// Apply or cleanup, through kube's finalizer helper, of the resource as it is now.
async fn reconcile_current(ctx: &Arc<Context>, resource: Arc<TwilioApiKey>) -> Result<Action> {
    let ctx = ctx.as_ref();
    match current(ctx, resource).await {
        Ok(Some(current)) => finalizer(&key_api(ctx, &current), FINALIZER, current.clone(), |event| async {
            match event {
                FinalizerEvent::Apply(resource) => report(ctx, &resource, apply(&resource, ctx).await).await,
                FinalizerEvent::Cleanup(resource) => report(ctx, &resource, cleanup(&resource, ctx).await).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e))),
        Ok(None) => Ok(Action::await_change()),
        Err(error) => Err(error),
    }
}

/// The resource to work on, or None if it is gone.
///
/// Being deleted, it is read from the API server: the cache can still show a resource whose
/// cleanup an earlier pass finished (its finalizer removed), and cleaning up again from that
/// snapshot would act on a status and Secrets that are history (a key just handed over could
/// look like one to delete).
///
/// Lacking the finalizer, it gets it (before anything exists that it must clean up), and the pass
/// goes on with the resource as the API server returned it. kube's finalizer helper would end the
/// pass there and wait for the watch to bring the change back: one more round trip and a second
/// turn in the queue for every new resource. The echo is not a change (see OwnWrites).
async fn current(ctx: &Context, resource: Arc<TwilioApiKey>) -> Result<Option<Arc<TwilioApiKey>>> {
    if resource.meta().deletion_timestamp.is_some() {
        let live =
            key_api(ctx, &resource).get_opt(&resource.name_any()).await.map_err(Error::kube("read TwilioApiKey"))?;
        return Ok(live.filter(|live| live.uid() == resource.uid()).map(Arc::new));
    }
    if resource.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Some(resource));
    }
    // As kube's helper does: the test makes the patch fail, rather than add the finalizer twice,
    // if the finalizers changed since the resource was read.
    let operations = match resource.finalizers() {
        [] => serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ]),
        present => serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": present},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ]),
    };
    let patch: json_patch::Patch = serde_json::from_value(operations).map_err(Error::Encode)?;
    let patched = key_api(ctx, &resource)
        .patch(&resource.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(|e| Error::Finalizer(Box::new(FinalizerError::AddFinalizer(e))))?;
    ctx.own_writes.note_key_write(&patched);
    Ok(Some(Arc::new(patched)))
}

pub fn error_policy(resource: Arc<TwilioApiKey>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next(resource.as_ref(), error.retry_cap());
    tracing::warn!(%error, ?delay, "reconciliation failed; retrying");
    Action::requeue(delay)
}

/// Turns errors that need a human into a Stalled status and an Event, and a retry only after
/// [`STALL_RETRY`] (or the resync interval, if shorter), whatever deadline the status holds: a
/// change to the spec, the Secret or the account wakes the resource sooner. Transient errors go
/// back to the controller to be retried with backoff. During deletion every error stays an error, stall or
/// not: success would remove the finalizer and forget a key that still exists in Twilio.
///
/// Only the conditions are written, merged into the status the API server holds: the snapshot this
/// pass started from may predate a status write the pass made before it failed.
async fn report(ctx: &Context, resource: &TwilioApiKey, result: Result<Action>) -> Result<Action> {
    let error = match result {
        Ok(action) => return Ok(action),
        Err(error) => error,
    };
    ctx.metrics.reconcile_error(KIND, error.label());
    let stall_reason = error.stall_reason();
    let health = match stall_reason {
        Some(reason) => Health::Stalled { reason, message: error.to_string() },
        None => Health::Progressing { reason: "Retrying", message: error.to_string() },
    };
    let previous = resource.status.clone().unwrap_or_default();
    let conditions =
        conditions::conditions_for(&previous.conditions, &health, resource.meta().generation, Timestamp::now());
    if conditions != previous.conditions || previous.observed_generation != resource.meta().generation {
        let patch = serde_json::json!({
            "status": {"conditions": conditions, "observedGeneration": resource.meta().generation}
        });
        let written = key_api(ctx, resource)
            .patch_status(&resource.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube("write status"))?;
        ctx.own_writes.note_status_written(&resource.uid().unwrap_or_default(), written.status.as_ref());
        let action = if resource.meta().deletion_timestamp.is_some() { "Delete" } else { "Reconcile" };
        ctx.events.warning(resource, health.reason(), action, error.to_string()).await;
    }
    match stall_reason {
        // A stalled resource still retires its old keys on time.
        Some(_) if resource.meta().deletion_timestamp.is_none() => {
            let retry = STALL_RETRY.min(ctx.config.resync_interval);
            let retry = error.ends_in().map_or(retry, |ends| ends.min(retry));
            Ok(Action::requeue(status::stalled_wake(resource, &previous, retry, Timestamp::now())))
        }
        _ => Err(error),
    }
}

/// How long a stalled resource waits before it is tried again without a change.
const STALL_RETRY: Duration = Duration::from_secs(300);

fn key_api(ctx: &Context, resource: &TwilioApiKey) -> Api<TwilioApiKey> {
    Api::namespaced(ctx.client.clone(), &resource.namespace().unwrap_or_default())
}

fn secrets(ctx: &Context, resource: &TwilioApiKey) -> Api<Secret> {
    Api::namespaced(ctx.client.clone(), &resource.namespace().unwrap_or_default())
}

async fn apply(resource: &TwilioApiKey, ctx: &Context) -> Result<Action> {
    if resource.spec.suspend {
        validate::validate(resource).map_err(|problem| Error::InvalidSpec { problem })?;
        return Ok(Action::await_change());
    }
    // The cache may lag behind a status this process just wrote; acting on the older one would
    // repeat a step (create, record, rename) already done.
    let uid = resource.uid().unwrap_or_default();
    if ctx.own_writes.wrote_another_status(&uid, resource.status.as_ref()) {
        if live_status(ctx, resource).await? != resource.status {
            return Ok(Action::requeue(Duration::from_millis(500)));
        }
        ctx.own_writes.forget_status_written(&uid);
    }
    // Consumers of a rotated key are restarted, and followed until they have rolled out; old keys
    // go when their grace period ends (and those rollouts are done), whatever else holds this
    // resource up.
    let followed = follow_rollouts(resource, ctx).await?;
    let resource = followed.as_ref().unwrap_or(resource);
    let retired = retire_due_keys(resource, ctx).await?;
    let resource = retired.as_ref().unwrap_or(resource);
    validate::validate(resource).map_err(|problem| Error::InvalidSpec { problem })?;
    let source = resolve::resolve_for_key(ctx, resource).await?;
    let connection = resolve::connect(ctx, &source).await?.for_tenant(&resource.namespace().unwrap_or_default());
    let status = resource.status.clone().unwrap_or_default();
    let desired_name = resource.desired_secret_name();
    let delivering_name = status.secret_name.clone().unwrap_or_else(|| desired_name.clone());
    let secrets = secrets(ctx, resource);
    let delivering_secret = secrets.get_opt(&delivering_name).await.map_err(Error::kube("read Secret"))?;
    let target_secret = match delivering_name == desired_name {
        true => None,
        false => Some(secrets.get_opt(&desired_name).await.map_err(Error::kube("read Secret"))?),
    };
    let at_desired_name = match &target_secret {
        None => delivering_secret.as_ref(),
        Some(target) => target.as_ref(),
    };
    // Kubernetes does not let a Secret's type change; say so before anything is done for it.
    if let Some(found) = at_desired_name.filter(|s| ownership::is_owned(resource, s))
        && found.type_.as_deref().unwrap_or(secret::DEFAULT_TYPE) != secret::desired_type(resource)
    {
        let message = format!(
            "its type is {}, and a Secret's type cannot change to {} (delete the Secret to have it made anew, with a new key)",
            found.type_.as_deref().unwrap_or(secret::DEFAULT_TYPE),
            secret::desired_type(resource)
        );
        return Err(Error::SecretRejected { secret: found.name_any(), message });
    }
    let delivered_account = status.account_sid.clone().unwrap_or_else(|| connection.account_sid.clone());
    let mut observed = Observed {
        delivering: ownership::observe(resource, delivering_secret.as_ref(), &delivered_account),
        target: target_secret.as_ref().map(|s| ownership::observe(resource, s.as_ref(), &connection.account_sid)),
        account_sid: connection.account_sid.clone(),
        region: connection.region.clone(),
        now: Timestamp::now(),
    };
    let api_base = ctx.twilio.endpoint().api_base(source.region.as_deref(), source.edge.as_deref());
    let mut step = plan::next_step(resource, &observed);
    if let Step::Record(sid) = &step {
        if created_by(ctx, &connection, resource, sid).await? {
            return record(resource, ctx, &connection, sid, &delivering_name).await;
        }
        // An adoption that marked the Secret as this resource's and stopped before the status
        // recorded the key: proven again, it is recorded. Only while the resource has no key: a
        // Secret never swaps the key a resource has for another.
        if resource.spec.secret.adopt
            && status.key_sid.is_none()
            && let Some(found) = delivering_secret.as_ref()
            && let Ok(claim) = secret::adoption_claim(resource, found, &connection.account_sid)
            && claim.sid == *sid
        {
            adoption_allowed(resource, &source, &delivering_name)?;
            let key = prove_adoption(resource, ctx, &connection, &api_base, &delivering_name, &claim).await?;
            return record_adopted(resource, ctx, &connection, &key, &delivering_name).await;
        }
        // A Secret is tenant-writable: a SID in it that this resource cannot be shown to have
        // created is ignored, and the Secret is treated as altered.
        let note = format!(
            "Secret {delivering_name} names key {sid}, which this resource did not create; the Secret is treated as altered"
        );
        ctx.events.warning(resource, "SecretClaimRejected", "RecordKey", note).await;
        if let ObservedSecret::Owned { delivered, .. } = &mut observed.delivering {
            *delivered = None;
        }
        step = plan::next_step(resource, &observed);
    }
    match step {
        Step::Conflict => Err(Error::SecretConflict { secret: desired_name, holder: SecretHolder::Existing }),
        Step::Adopt => match at_desired_name {
            Some(existing) => {
                adoption_allowed(resource, &source, &existing.name_any())?;
                adopt(resource, ctx, &connection, &api_base, existing).await
            }
            // Gone since it was read: the next pass creates a key.
            None => Ok(Action::requeue(Duration::from_secs(1))),
        },
        Step::Revoke => revoke(resource, ctx, &connection).await,
        Step::StayRevoked => {
            write_status_if_changed(ctx, resource, status::revoked(resource, Timestamp::now())).await?;
            Ok(Action::await_change())
        }
        Step::Create => issue(resource, ctx, &connection, None, delivering_secret.as_ref(), at_desired_name).await,
        Step::Rotate(cause) => {
            issue(resource, ctx, &connection, Some(cause), delivering_secret.as_ref(), at_desired_name).await
        }
        // Handled above; a second Record means the status changed under this pass.
        Step::Record(_) => Ok(Action::requeue(Duration::from_secs(1))),
        Step::UpdateInPlace => {
            update_in_place(resource, ctx, &connection, delivering_secret.as_ref(), at_desired_name).await
        }
        Step::RewriteSecret => {
            rewrite_secret(resource, ctx, &connection, delivering_secret.as_ref(), at_desired_name).await
        }
        Step::UpToDate => settle(resource, ctx, &connection, delivering_secret.as_ref(), at_desired_name).await,
    }
}

/// The status as the API server holds it now (the cache may lag behind this process's writes).
async fn live_status(ctx: &Context, resource: &TwilioApiKey) -> Result<Option<TwilioApiKeyStatus>> {
    Ok(key_api(ctx, resource).get(&resource.name_any()).await.map_err(Error::kube("read TwilioApiKey"))?.status)
}

/// Whether Twilio shows `sid` as a key this resource created and has not recorded yet: one that
/// still carries the resource's pending name. Nothing else proves it: a Secret that names a SID
/// is only a claim.
async fn created_by(ctx: &Context, connection: &AccountConnection, resource: &TwilioApiKey, sid: &str) -> Result<bool> {
    if !crate::api::is_key_sid(sid) {
        return Ok(false);
    }
    match ctx.twilio.fetch_key(connection, sid).await {
        Ok(found) => Ok(found.friendly_name.as_deref() == Some(resource.pending_friendly_name().as_str())),
        Err(TwilioError::NotFound { .. }) => Ok(false),
        Err(error) => Err(Error::twilio("fetch key")(error)),
    }
}

/// The Secret delivers a key this resource created whose status write was lost: record it, then
/// give it its name.
async fn record(
    resource: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    sid: &str,
    secret_name: &str,
) -> Result<Action> {
    let status =
        status::delivered(resource, issued(connection, sid, resource.pending_friendly_name()), Timestamp::now());
    write_status(ctx, resource, &status).await?;
    let note = format!("Recorded key {sid} found in Secret {secret_name}");
    ctx.events.normal(resource, "KeyRecorded", "RecordKey", note).await;
    let status = finish_delivery(resource, ctx, connection, status).await?;
    Ok(next_wake(ctx, resource, &status))
}

/// `spec.secret.adopt`: the key in a Secret of the desired name that belongs to no resource here
/// is taken over once proven ([`prove_adoption`]). The Secret is marked as this resource's first,
/// its other data entries kept; a pass that stops after that finds it as this resource's Secret
/// delivering a key the status lacks, proves it again and records it. Then the status records the
/// key as Twilio holds it, and the next passes rename, re-scope or rotate it as the spec asks.
async fn adopt(
    resource: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    api_base: &str,
    existing: &Secret,
) -> Result<Action> {
    let name = existing.name_any();
    let claim = secret::adoption_claim(resource, existing, &connection.account_sid)
        .map_err(|reason| Error::AdoptionRefused { secret: name.clone(), reason })?;
    let key = prove_adoption(resource, ctx, connection, api_base, &name, &claim).await?;
    let desired = secret::desired(resource, connection, &connection.account_sid, &claim.sid, &claim.secret)
        .map_err(|problem| Error::InvalidSpec { problem })?;
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
    let patch = secret::adoption_patch(resource, existing, &desired);
    let written = secrets(ctx, resource)
        .patch(&name, &params, &Patch::Merge(&patch))
        .await
        .map_err(Error::kube("adopt Secret"))?;
    ctx.own_writes.note_secret_write(&written);
    record_adopted(resource, ctx, connection, &key, &name).await
}

/// Whether the account lets its keys be adopted (spec.adoption): adopting a key makes the
/// operator able to delete it, on the strength of holding its secret, which on an account that
/// tenants share is a cluster administrator's call.
fn adoption_allowed(resource: &TwilioApiKey, source: &crate::accounts::AccountSource, secret: &str) -> Result<()> {
    if source.adoption == crate::api::Adoption::Allowed {
        return Ok(());
    }
    let account_ref = &resource.spec.account_ref;
    let account = match account_ref.kind {
        crate::api::AccountKind::TwilioAccount => {
            format!("TwilioAccount {}/{}", resource.namespace().unwrap_or_default(), account_ref.name)
        }
        crate::api::AccountKind::ClusterTwilioAccount => format!("ClusterTwilioAccount {}", account_ref.name),
    };
    Err(Error::AdoptionRefused { secret: secret.to_string(), reason: AdoptionRefusal::AccountDisallows { account } })
}

/// The key a Secret claims, if this resource may adopt it: Twilio accepts the claimed SID and
/// secret themselves (see [`crate::twilio::TwilioClient::authenticates`]), the key exists in the
/// resource's account (fetched with the operator's credential), it is not being created for
/// another resource, and no other resource here records it. A Secret is tenant-writable: nothing
/// else it says is believed, and until the pair is proven a refusal says nothing learned from
/// the account or from other namespaces.
async fn prove_adoption(
    resource: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    api_base: &str,
    secret_name: &str,
    claim: &secret::AdoptionClaim,
) -> Result<crate::twilio::Key> {
    let refuse = |reason| Error::AdoptionRefused { secret: secret_name.to_string(), reason };
    let (sid, account) = (claim.sid.clone(), connection.account_sid.clone());
    let proven =
        ctx.twilio.authenticates(api_base, &account, &sid, &claim.secret).await.map_err(Error::twilio("prove key"))?;
    if !proven {
        return Err(refuse(AdoptionRefusal::NotProven { sid, account }));
    }
    let key = match ctx.twilio.fetch_key(connection, &sid).await {
        Ok(key) => key,
        Err(TwilioError::NotFound { .. }) => return Err(refuse(AdoptionRefusal::NotInAccount { sid, account })),
        Err(error) => return Err(Error::twilio("fetch key")(error)),
    };
    let name = key.friendly_name.as_deref().unwrap_or_default();
    if name.starts_with(PENDING_FRIENDLY_NAME_PREFIX) && name != resource.pending_friendly_name() {
        return Err(refuse(AdoptionRefusal::PendingForAnother { sid }));
    }
    if let Some(holder) = ctx.caches.key_holder(&sid, &resource.uid().unwrap_or_default()) {
        return Err(refuse(AdoptionRefusal::RecordedElsewhere { sid, holder }));
    }
    Ok(key)
}

/// Records an adopted key, as Twilio holds it.
async fn record_adopted(
    resource: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    key: &crate::twilio::Key,
    secret_name: &str,
) -> Result<Action> {
    let name = key.friendly_name.clone().unwrap_or_default();
    let status = status::adopted(resource, issued(connection, &key.sid, name), key, Timestamp::now());
    write_status(ctx, resource, &status).await?;
    ctx.metrics.key_operation(KeyOperation::Adopted);
    let note = format!(
        "Adopted key {} from Secret {secret_name}: Twilio accepted its secret in account {}",
        key.sid, connection.account_sid
    );
    ctx.events.normal(resource, "KeyAdopted", "AdoptKey", note).await;
    // The next pass renames, re-scopes or rotates it as the spec asks.
    Ok(Action::requeue(Duration::from_millis(200)))
}

/// What follows a recorded delivery, retried by later passes until done: the Secret left under
/// an earlier name is deleted, and a key still carrying its pending name gets the name the spec
/// asks for. The status is written once, if either happened.
async fn finish_delivery(
    resource: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    status: TwilioApiKeyStatus,
) -> Result<TwilioApiKeyStatus> {
    let mut finished = status.clone();
    if let Some(stale) = status.stale_secret_name.as_ref().filter(|name| **name != resource.desired_secret_name()) {
        let secret = secrets(ctx, resource).get_opt(stale).await.map_err(Error::kube("read Secret"))?;
        if let Some(secret) = secret.filter(|s| ownership::is_owned(resource, s)) {
            delete_secret(ctx, resource, &secret).await?;
        }
    }
    finished.stale_secret_name = None;
    let friendly_name = resource.desired_friendly_name();
    if let Some(sid) = status.key_sid.as_ref().filter(|_| status.friendly_name.as_ref() != Some(&friendly_name)) {
        ctx.twilio.update_key(connection, sid, &friendly_name, None).await.map_err(Error::twilio("name key"))?;
        finished.friendly_name = Some(friendly_name);
    }
    if finished == status {
        return Ok(status);
    }
    let finished = status::ready(resource, &finished, Timestamp::now());
    write_status(ctx, resource, &finished).await?;
    Ok(finished)
}

/// Creates a key in Twilio and delivers it; with a cause, the current key is retired for the
/// grace period. The key is created under the resource's pending name and gets its real name only
/// once the status records it, so a key left behind by an interrupted attempt is provably this
/// resource's and is found by [`sweep_orphans`].
async fn issue(
    resource: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    cause: Option<RotationCause>,
    delivering_secret: Option<&Secret>,
    at_desired_name: Option<&Secret>,
) -> Result<Action> {
    let uid = resource.uid().unwrap_or_default();
    if let Err(retry_in) = ctx.budget.take(&uid) {
        return Err(Error::CreationBudgetExceeded { per_hour: ctx.budget.per_hour(), retry_in });
    }
    let made_room = make_room(resource, ctx).await?;
    let resource = made_room.as_ref().unwrap_or(resource);
    sweep_orphans(resource, ctx, connection, &[]).await?;
    let request = KeyRequest {
        friendly_name: resource.pending_friendly_name(),
        restricted_policy: resource.restricted_policy().map(|p| p.allow.clone()),
    };
    let created = match ctx.twilio.create_key(connection, &request).await {
        Ok(created) => created,
        Err(error) => {
            // After a timeout or a 5xx the key may exist all the same: the next attempt relists
            // the account and deletes what this one left, instead of creating blindly.
            ctx.inventories
                .mark_create_unsure(&uid, matches!(error, TwilioError::Transport(_) | TwilioError::Server { .. }));
            return Err(Error::twilio("create key")(error));
        }
    };
    ctx.metrics.key_operation(KeyOperation::Created);
    if let Some(cause) = cause {
        ctx.metrics.rotation(cause.label());
    }
    tracing::info!(key_sid = %created.sid, cause = cause.map(RotationCause::describe), "created Twilio key");
    let desired = match secret::desired(resource, connection, &connection.account_sid, &created.sid, &created.secret) {
        Ok(desired) => desired,
        // The template rendered with stand-ins before the key was made; with the real values it
        // did not. The key cannot be delivered: it goes.
        Err(problem) => {
            if let Err(cleanup) = ctx.twilio.delete_key(connection, &created.sid).await {
                tracing::error!(key_sid = %created.sid, %cleanup, "could not delete a key whose Secret could not be rendered");
                ctx.inventories.mark_create_unsure(&uid, true);
            }
            return Err(Error::InvalidSpec { problem });
        }
    };
    match write_secret(ctx, resource, at_desired_name, &desired, &created.sid).await {
        Ok(()) => ctx.inventories.mark_create_unsure(&uid, false),
        Err(SecretWriteError { error, written: Written::No }) => {
            if let Err(cleanup) = ctx.twilio.delete_key(connection, &created.sid).await {
                tracing::error!(key_sid = %created.sid, %cleanup, "could not delete a key whose Secret write failed");
                ctx.inventories.mark_create_unsure(&uid, true);
            }
            return Err(error);
        }
        // The next pass finds the key in the Secret (and records it) or not (and sweeps it).
        Err(SecretWriteError { error, written: Written::Unknown }) => {
            ctx.inventories.mark_create_unsure(&uid, true);
            return Err(error);
        }
    }
    // The status records the key under the name the spec asks for, and Twilio renames it right
    // after: once recorded, the pending name has served its purpose. Should the rename not happen
    // (a crash, an error), the drift check in `settle` finds the key misnamed and renames it.
    let friendly_name = resource.desired_friendly_name();
    let status = TwilioApiKeyStatus {
        stale_secret_name: secret::stale_after_delivery(resource, delivering_secret),
        ..status::delivered(resource, issued(connection, &created.sid, friendly_name.clone()), Timestamp::now())
    };
    write_status(ctx, resource, &status).await?;
    let secret_name = resource.desired_secret_name();
    let event = async {
        match cause {
            None => {
                let note = format!("Created key {} and wrote Secret {secret_name}", created.sid);
                ctx.events.normal(resource, "KeyCreated", "CreateKey", note).await;
            }
            Some(cause) => {
                let old = resource.status.as_ref().and_then(|s| s.key_sid.clone()).unwrap_or_default();
                let note = format!(
                    "Rotated: {}. Key {} is in Secret {secret_name}; key {old} stays valid for the grace period",
                    cause.describe(),
                    created.sid
                );
                let type_ = if cause.is_repair() { EventType::Warning } else { EventType::Normal };
                ctx.events.record(resource, type_, "KeyRotated", "RotateKey", note).await;
            }
        }
    };
    // The Event is written while the key gets its name: neither waits for the other.
    let rename = ctx.twilio.update_key(connection, &created.sid, &friendly_name, None);
    let ((), renamed) = tokio::join!(event, rename);
    renamed.map_err(Error::twilio("name key"))?;
    let status = finish_delivery(resource, ctx, connection, status).await?;
    Ok(next_wake(ctx, resource, &status))
}

/// Before a key is created that retires the current one: if the resource already keeps
/// `--max-retiring-keys` old keys (less the one about to retire), the oldest go now, ahead of
/// their grace period, and the status says so; returns the resource with that status, or None
/// when there was room. Bounds the live keys one resource holds in a shared account.
async fn make_room(resource: &TwilioApiKey, ctx: &Context) -> Result<Option<TwilioApiKey>> {
    let previous = resource.status.clone().unwrap_or_default();
    let Some((evicted, status)) = status::make_room(&previous, ctx.config.max_retiring_keys) else {
        return Ok(None);
    };
    delete_keys(ctx, resource, &evicted).await?;
    write_status(ctx, resource, &status).await?;
    for key in &evicted {
        let note = format!(
            "Deleted retiring key {} before its grace period ended: a TwilioApiKey keeps at most {} old keys (--max-retiring-keys), and a rotation retires one more",
            key.sid, ctx.config.max_retiring_keys
        );
        ctx.events.warning(resource, "RetiringKeyDeletedEarly", "DeleteKey", note).await;
    }
    let mut updated = resource.clone();
    updated.status = Some(status);
    Ok(Some(updated))
}

/// Deletes keys that an interrupted earlier attempt of this resource created but never recorded:
/// keys of the account that still carry the resource's pending name and that its status does not
/// hold (nor `keep`). Twilio shows a secret only at creation, so such a key cannot be delivered;
/// deleting it is the only way not to leak it. No other key can match: the name holds this
/// resource's UID, and a spec cannot ask for a pending name.
///
/// The listing is the account's shared inventory: made after this process started, it holds
/// every key an earlier process created; after an unsure create in this process it is renewed.
async fn sweep_orphans(
    resource: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    keep: &[String],
) -> Result<()> {
    let uid = resource.uid().unwrap_or_default();
    let max_age = if ctx.inventories.create_was_unsure(&uid) { Duration::ZERO } else { ctx.config.resync_interval };
    let inventory = ctx.inventories.get(&ctx.twilio, connection, max_age).await.map_err(Error::twilio("list keys"))?;
    let orphans = plan::orphaned_keys(resource, inventory.keys.values(), keep);
    for sid in &orphans {
        if !ctx.twilio.delete_key(connection, sid).await.map_err(Error::twilio("delete orphaned key"))? {
            continue; // gone already
        }
        ctx.metrics.key_operation(KeyOperation::OrphanDeleted);
        ctx.metrics.leaked_key_found();
        let note = format!("Deleted key {sid}, created by an interrupted attempt and never delivered");
        ctx.events.warning(resource, "OrphanKeyDeleted", "DeleteKey", note).await;
    }
    if !orphans.is_empty() {
        // The listing still shows them; the next user of it must list anew.
        ctx.inventories.forget(connection).await;
    }
    Ok(())
}

/// Renames the key and, for a Restricted key, replaces its policy; the secret stays valid. The
/// key is the one the status records, never one a Secret names.
async fn update_in_place(
    resource: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    delivering_secret: Option<&Secret>,
    at_desired_name: Option<&Secret>,
) -> Result<Action> {
    let previous = resource.status.clone().unwrap_or_default();
    let sid = previous.key_sid.clone().unwrap_or_default();
    let friendly_name = resource.desired_friendly_name();
    let policy = resource.restricted_policy().map(|p| p.allow.clone());
    match ctx.twilio.update_key(connection, &sid, &friendly_name, policy.as_deref()).await {
        Ok(_) => {}
        Err(TwilioError::NotFound { .. }) => {
            return issue(
                resource,
                ctx,
                connection,
                Some(RotationCause::KeyMissing),
                delivering_secret,
                at_desired_name,
            )
            .await;
        }
        Err(e) => return Err(Error::twilio("update key")(e)),
    }
    let status = status::updated_in_place(resource, Timestamp::now());
    write_status(ctx, resource, &status).await?;
    ctx.events
        .normal(resource, "KeyUpdated", "UpdateKey", format!("Updated key {sid} in place (name {friendly_name:?})"))
        .await;
    Ok(next_wake(ctx, resource, &status))
}

/// Writes the Secret under its current name, data keys, labels and annotations, carrying over the
/// secret it delivers; no new key is needed.
async fn rewrite_secret(
    resource: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    delivering_secret: Option<&Secret>,
    at_desired_name: Option<&Secret>,
) -> Result<Action> {
    let previous = resource.status.clone().unwrap_or_default();
    let (Some(sid), Some(account_sid)) = (previous.key_sid.clone(), previous.account_sid.clone()) else {
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    let Some(value) = delivering_secret.and_then(|s| secret::delivered_secret(resource, s)) else {
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    let desired = secret::desired(resource, connection, &account_sid, &sid, &value)
        .map_err(|problem| Error::InvalidSpec { problem })?;
    write_secret(ctx, resource, at_desired_name, &desired, &sid).await.map_err(|e| e.error)?;
    let status = TwilioApiKeyStatus {
        secret_name: Some(resource.desired_secret_name()),
        stale_secret_name: secret::stale_after_delivery(resource, delivering_secret),
        ..status::ready(resource, &previous, Timestamp::now())
    };
    write_status(ctx, resource, &status).await?;
    let note = format!("Wrote Secret {} for key {sid}", resource.desired_secret_name());
    ctx.events.normal(resource, "SecretUpdated", "WriteSecret", note).await;
    let status = finish_delivery(resource, ctx, connection, status).await?;
    Ok(next_wake(ctx, resource, &status))
}

/// Deletes the retiring keys whose grace period has ended and records that; returns the resource
/// with its new status, or None when no key was due.
async fn retire_due_keys(resource: &TwilioApiKey, ctx: &Context) -> Result<Option<TwilioApiKey>> {
    let previous = resource.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let Some((due, status)) = status::retire_due(resource, &previous, now) else {
        return Ok(None);
    };
    delete_keys(ctx, resource, &due).await?;
    write_status(ctx, resource, &status).await?;
    let rolled_out = rollout::waiting(resource, &previous).is_empty();
    for retired in &due {
        let when = match retired.delete_by.as_deref() {
            None => "after its grace period",
            Some(_) if rolled_out => "after its grace period, once the rollout restart targets had rolled out",
            Some(_) => "at its maxGracePeriod, although the rollout restart targets had not all rolled out",
        };
        let note = format!("Deleted retired key {} {when}", retired.sid);
        ctx.events.normal(resource, "KeyDeleted", "DeleteKey", note).await;
    }
    let mut updated = resource.clone();
    updated.status = Some(status);
    Ok(Some(updated))
}

/// Restarts the rollout restart targets of the latest rotation that have not been restarted yet,
/// reads how far the others have rolled out, and raises RolloutDelayed once the rollout deadline
/// has passed. Records all of it in the status; returns the resource with its new status, or
/// None when nothing changed. A target that is missing or may not be restarted is waited for
/// all the same (until maxGracePeriod): an old key is kept rather than risked.
async fn follow_rollouts(resource: &TwilioApiKey, ctx: &Context) -> Result<Option<TwilioApiKey>> {
    let previous = resource.status.clone().unwrap_or_default();
    let delayed_before = previous
        .conditions
        .iter()
        .any(|c| c.type_ == rollout::ROLLOUT_DELAYED || c.type_ == rollout::ROLLOUT_TARGET_MISSING);
    if rollout::waiting(resource, &previous).is_empty() && !delayed_before {
        return Ok(None);
    }
    let namespace = resource.namespace().unwrap_or_default();
    let key_sid = previous.key_sid.clone().unwrap_or_default();
    let now = Timestamp::now();
    let mut status = previous.clone();
    let named =
        |kind, name: &str| resource.spec.rollout_restart_targets.iter().any(|t| t.kind == kind && t.name == name);
    for entry in status.rollout.iter_mut().filter(|e| !e.complete && named(e.kind, &e.name)) {
        let target = format!("{}/{}", entry.kind, entry.name);
        match entry.restarted_at.as_deref().and_then(|at| at.parse::<Timestamp>().ok()) {
            // A failed restart is tried again when its backoff ends, not on every pass.
            None if entry
                .next_restart_at
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .is_some_and(|t| t > now) => {}
            None => match restart_workload(ctx, &namespace, entry.kind, &entry.name, now).await? {
                Ok(()) => {
                    entry.restarted_at = Some(now.to_string());
                    entry.message = Some("restarted; waiting for its rollout".into());
                    entry.restart_failures = 0;
                    entry.next_restart_at = None;
                    let note = format!("Restarted {target} so that its Pods read key {key_sid}");
                    ctx.events.normal(resource, "RolloutRestarted", "RestartWorkload", note).await;
                }
                Err(why) => {
                    if entry.restart_failures == 0 {
                        let note = format!("Could not restart {target}: {why}; the old key is kept");
                        ctx.events.warning(resource, "RolloutRestartFailed", "RestartWorkload", note).await;
                    }
                    entry.restart_failures = entry.restart_failures.saturating_add(1);
                    let retry = rollout::restart_backoff(entry.restart_failures);
                    entry.next_restart_at = Some(now.checked_add(retry).unwrap_or(now).to_string());
                    entry.message = Some(why);
                }
            },
            Some(restarted_at) => {
                let progress = match read_workload(ctx, &namespace, entry.kind, &entry.name).await? {
                    Ok(workload) => rollout::progress(&workload, restarted_at),
                    Err(why) => rollout::Progress::Waiting(why),
                };
                match progress {
                    rollout::Progress::Complete => {
                        entry.complete = true;
                        entry.message = None;
                        let note =
                            format!("{target} rolled out: every Pod runs a template restarted for key {key_sid}");
                        ctx.events.normal(resource, "RolloutComplete", "WatchRollout", note).await;
                    }
                    rollout::Progress::Waiting(why) => entry.message = Some(why),
                }
            }
        }
    }
    let waited_for = rollout::names(&rollout::waiting(resource, &previous));
    let waiting_for = rollout::names(&rollout::waiting(resource, &status));
    if !waited_for.is_empty() && waiting_for.is_empty() {
        status = status::rolled_out(resource, &status, now);
    } else if waited_for != waiting_for && conditions::ready_of(&status.conditions) == Some(("True", "KeyReady")) {
        // Some targets rolled out: the Ready message names only those still waited for.
        status = status::ready(resource, &status, now);
    }
    match rollout::delayed(resource, &status, ctx.config.rollout_deadline, now) {
        Some(message) => {
            let generation = resource.meta().generation;
            let (reason, note) = ("RolloutDeadlineExceeded", message.clone());
            if conditions::set_true(&mut status.conditions, rollout::ROLLOUT_DELAYED, reason, message, generation, now)
            {
                ctx.events.warning(resource, "RolloutDelayed", "WatchRollout", note).await;
            }
        }
        None => status.conditions.retain(|c| c.type_ != rollout::ROLLOUT_DELAYED),
    }
    rollout::set_target_missing(resource, &mut status, now);
    if status == previous {
        return Ok(None);
    }
    write_status(ctx, resource, &status).await?;
    let mut updated = resource.clone();
    updated.status = Some(status);
    Ok(Some(updated))
}

/// Restarts a workload as `kubectl rollout restart` does. Ok(Err(why)) when it is missing or the
/// operator may not patch it; Err for failures worth retrying.
async fn restart_workload(
    ctx: &Context,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
    at: Timestamp,
) -> Result<std::result::Result<(), String>> {
    let patch = Patch::Merge(rollout::restart_patch(at));
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    let client = ctx.client.clone();
    let result = match kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(client, namespace).patch(name, &params, &patch).await.map(drop)
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client, namespace).patch(name, &params, &patch).await.map(drop)
        }
        WorkloadKind::DaemonSet => {
            Api::<DaemonSet>::namespaced(client, namespace).patch(name, &params, &patch).await.map(drop)
        }
    };
    workload_answer(result, kind, name, "restart").map_err(Error::kube("restart workload"))
}

/// Reads a workload. Ok(Err(why)) when it is missing or the operator may not read it.
async fn read_workload(
    ctx: &Context,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
) -> Result<std::result::Result<rollout::Workload, String>> {
    let client = ctx.client.clone();
    let result = match kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(client, namespace).get(name).await.map(rollout::Workload::Deployment)
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client, namespace).get(name).await.map(rollout::Workload::StatefulSet)
        }
        WorkloadKind::DaemonSet => {
            Api::<DaemonSet>::namespaced(client, namespace).get(name).await.map(rollout::Workload::DaemonSet)
        }
    };
    workload_answer(result, kind, name, "read").map_err(Error::kube("read workload"))
}

/// A workload call's answer: what the status should say when the workload is missing or out of
/// the operator's rights, an error for anything else.
fn workload_answer<T>(
    result: kube::Result<T>,
    kind: WorkloadKind,
    name: &str,
    verb: &str,
) -> kube::Result<std::result::Result<T, String>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Err(format!("{kind} {name} not found"))),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(Err(format!(
            "the operator may not {verb} {kind} {name} (its RBAC grants get and patch on deployments, statefulsets and daemonsets)"
        ))),
        Err(error) => Err(error),
    }
}

/// The key is delivered: sweep what interrupted attempts left, check (from the account's shared
/// listing) that the key still exists in Twilio, and report Ready.
async fn settle(
    resource: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    delivering_secret: Option<&Secret>,
    at_desired_name: Option<&Secret>,
) -> Result<Action> {
    let previous = resource.status.clone().unwrap_or_default();
    // A create sent by a process that died may still be carried out after its successor listed
    // the account; such a late key is swept here, from the same listing as the drift check.
    sweep_orphans(resource, ctx, connection, &[]).await?;
    match check_in_twilio(ctx, connection, &previous).await? {
        InTwilio::Missing => {
            let cause = Some(RotationCause::KeyMissing);
            return issue(resource, ctx, connection, cause, delivering_secret, at_desired_name).await;
        }
        InTwilio::Misnamed(sid) => {
            let name = previous.friendly_name.clone().unwrap_or_else(|| resource.desired_friendly_name());
            ctx.twilio.update_key(connection, &sid, &name, None).await.map_err(Error::twilio("name key"))?;
            tracing::info!(key_sid = %sid, "renamed the key in Twilio to the name the status records");
        }
        InTwilio::AsRecorded => {}
    }
    let status = status::ready(resource, &previous, Timestamp::now());
    write_status_if_changed(ctx, resource, status.clone()).await?;
    let status = finish_delivery(resource, ctx, connection, status).await?;
    Ok(next_wake(ctx, resource, &status))
}

/// What Twilio holds of the current key.
enum InTwilio {
    AsRecorded,
    Missing,
    /// Under another name than the status records.
    Misnamed(String),
}

/// Whether the current key is gone from Twilio or carries another name, from the account's
/// latest listing (shared by all its keys, at most one per resync interval). A key the listing
/// lacks counts as gone only once fetching it answers 404: a listing can miss a key (pages that
/// shift while it is read), and reissuing a live key on that alone would rotate for nothing. A key
/// newer than the listing is not judged.
async fn check_in_twilio(
    ctx: &Context,
    connection: &AccountConnection,
    status: &TwilioApiKeyStatus,
) -> Result<InTwilio> {
    if status.key_sid.is_none() {
        return Ok(InTwilio::AsRecorded);
    }
    let inventory = ctx
        .inventories
        .get(&ctx.twilio, connection, ctx.config.resync_interval)
        .await
        .map_err(Error::twilio("list keys"))?;
    let sid = match plan::presence(status, inventory.listed_at, &inventory.keys) {
        plan::Presence::Assumed => return Ok(InTwilio::AsRecorded),
        plan::Presence::Misnamed(sid) => return Ok(InTwilio::Misnamed(sid)),
        plan::Presence::Unlisted(sid) => sid,
    };
    match ctx.twilio.fetch_key(connection, &sid).await {
        Ok(key) if key.friendly_name != status.friendly_name => Ok(InTwilio::Misnamed(sid)),
        Ok(_) => Ok(InTwilio::AsRecorded),
        Err(TwilioError::NotFound { .. }) => Ok(InTwilio::Missing),
        Err(error) => Err(Error::twilio("fetch key")(error)),
    }
}

/// `revoked: true`: every key of the resource is deleted in Twilio at once (those its status
/// records, and any an interrupted create left under its pending name), then its Secret.
async fn revoke(resource: &TwilioApiKey, ctx: &Context, connection: &AccountConnection) -> Result<Action> {
    let status = resource.status.clone().unwrap_or_default();
    let keys = status::all_keys(resource, &status);
    delete_keys(ctx, resource, &keys).await?;
    sweep_orphans(resource, ctx, connection, &[]).await?;
    for name in status::secret_names(resource, &status) {
        let secret = secrets(ctx, resource).get_opt(&name).await.map_err(Error::kube("read Secret"))?;
        if let Some(secret) = secret.filter(|s| ownership::is_owned(resource, s)) {
            delete_secret(ctx, resource, &secret).await?;
        }
    }
    write_status(ctx, resource, &status::revoked(resource, Timestamp::now())).await?;
    let sids: Vec<&str> = keys.iter().map(|k| k.sid.as_str()).collect();
    let note = format!("Revoked: deleted key(s) {} in Twilio and the Secret", sids.join(", "));
    ctx.events.normal(resource, "KeyRevoked", "RevokeKey", note).await;
    Ok(Action::await_change())
}

/// Deletes keys in Twilio, each in the account it belongs to, with the credential of the account
/// resource it was created through (404 counts as gone).
async fn delete_keys(ctx: &Context, resource: &TwilioApiKey, keys: &[RetiringKey]) -> Result<()> {
    let namespace = resource.namespace().unwrap_or_default();
    for group in plan::deletion_groups(resource, keys) {
        // These keys are this resource's own: deleting them needs no permission to create keys in
        // the account (a ClusterTwilioAccount may no longer allow the namespace).
        let source = resolve::resolve_recorded(ctx, &namespace, &group.account_ref).await?;
        let connection = resolve::connect(ctx, &source).await?.for_tenant(&namespace);
        let connection = connection.for_key_account(group.account_sid.as_deref());
        for sid in &group.sids {
            // A key already gone (404) counts as deleted, but not as deleted by this call.
            if ctx.twilio.delete_key(&connection, sid).await.map_err(Error::twilio("delete key"))? {
                ctx.metrics.key_operation(KeyOperation::Deleted);
            }
        }
    }
    Ok(())
}

/// Where a key just delivered lives in Twilio.
fn issued<'a>(connection: &'a AccountConnection, sid: &'a str, friendly_name: String) -> status::Issued<'a> {
    status::Issued { sid, account_sid: &connection.account_sid, region: &connection.region, friendly_name }
}

/// Requeue at the next deadline in the status, or at the next resync.
fn next_wake(ctx: &Context, resource: &TwilioApiKey, status: &TwilioApiKeyStatus) -> Action {
    Action::requeue(status::next_wake(resource, status, ctx.config.resync_interval, Timestamp::now()))
}

/// On deletion: with Delete, every key of the resource is deleted in Twilio (404 counts as gone),
/// with any key an interrupted create left, and then the Secret; with Orphan, the key the Secret
/// delivers and the Secret stay, handed over (the Secret loses the marks that make it this
/// resource's), while retiring keys go as they would have. In a namespace that is being deleted
/// nothing can be handed over, since the Secret goes with the namespace: Orphan deletes too. The
/// finalizer is removed only after this succeeds. `resource` was just read from the API server
/// (see [`current`]): its status holds every key this process recorded.
async fn cleanup(resource: &TwilioApiKey, ctx: &Context) -> Result<Action> {
    let status = resource.status.clone().unwrap_or_default();
    let namespace = resource.namespace().unwrap_or_default();
    let secrets = secrets(ctx, resource);
    let mut owned_secrets = Vec::new();
    for name in status::secret_names(resource, &status) {
        if let Some(secret) = secrets.get_opt(&name).await.map_err(Error::kube("read Secret"))?
            && ownership::is_owned(resource, &secret)
        {
            owned_secrets.push(secret);
        }
    }
    let orphan =
        resource.spec.deletion_policy == DeletionPolicy::Orphan && !namespace_terminating(ctx, &namespace).await;
    // Keys this resource may have left under its pending name are looked for in its account; with
    // no usable account and nothing recorded, there is nothing it can reach to delete.
    let account_ref = status.account_ref.clone().unwrap_or_else(|| resource.spec.account_ref.clone());
    let connection = match resolve::resolve_recorded(ctx, &namespace, &account_ref).await {
        Ok(source) => resolve::connect(ctx, &source).await.map(|c| c.for_tenant(&namespace)),
        Err(error) => Err(error),
    };
    let connection = match connection {
        Ok(connection) => Some(connection),
        Err(error) if status::all_keys(resource, &status).is_empty() => {
            tracing::warn!(%error, "cleanup cannot reach the account to look for keys an interrupted create left");
            None
        }
        Err(error) => return Err(error),
    };
    // A key the Secret delivers but the status lacks (the status write after delivery was lost)
    // is handed over with the Secret once proven this resource's; other pending keys go.
    let mut handed_over = Vec::new();
    if let Some(connection) = &connection {
        if orphan {
            let account_sid = status.account_sid.clone().unwrap_or_else(|| connection.account_sid.clone());
            for secret in &owned_secrets {
                if let ObservedSecret::Owned { delivered: Some(sid), .. } =
                    ownership::observe(resource, Some(secret), &account_sid)
                    && status.key_sid.as_ref() != Some(&sid)
                    && created_by(ctx, connection, resource, &sid).await?
                {
                    ctx.twilio
                        .update_key(connection, &sid, &resource.desired_friendly_name(), None)
                        .await
                        .map_err(Error::twilio("name key"))?;
                    handed_over.push(sid);
                }
            }
        }
        sweep_orphans(resource, ctx, connection, &handed_over).await?;
    }
    if orphan {
        // Only the key the Secret delivers is handed over: retiring keys were already on their
        // way out, and when a rotation was interrupted after its Secret write, the key the status
        // still calls current is delivered by no Secret either.
        let leaving = plan::leaving_on_orphan(resource, &status, &handed_over);
        if !leaving.is_empty() {
            delete_keys(ctx, resource, &leaving).await?;
        }
        for secret in &owned_secrets {
            if status.stale_secret_name.as_ref() == Some(&secret.name_any()) {
                delete_secret(ctx, resource, secret).await?;
            } else {
                release_secret(ctx, resource, secret).await?;
            }
        }
        let kept = handed_over.first().or(status.key_sid.as_ref()).map_or("(none)", String::as_str);
        let note = format!("deletionPolicy Orphan: key {kept} and its Secret are kept");
        ctx.events.normal(resource, "KeyOrphaned", "DeleteKey", note).await;
    } else {
        let keys = status::all_keys(resource, &status);
        if !keys.is_empty() {
            delete_keys(ctx, resource, &keys).await?;
            let sids: Vec<&str> = keys.iter().map(|k| k.sid.as_str()).collect();
            ctx.events
                .normal(resource, "KeyDeleted", "DeleteKey", format!("Deleted key(s) {} in Twilio", sids.join(", ")))
                .await;
        }
        for secret in &owned_secrets {
            delete_secret(ctx, resource, secret).await?;
        }
    }
    Ok(Action::await_change())
}

/// Whether the namespace is being deleted. Not knowing (e.g. no permission to read it) counts as
/// no: the resource's own deletionPolicy then holds.
async fn namespace_terminating(ctx: &Context, namespace: &str) -> bool {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    match namespaces.get_opt(namespace).await {
        Ok(found) => found.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()),
        Err(error) => {
            tracing::warn!(%error, "could not read the namespace; deletionPolicy Orphan holds");
            false
        }
    }
}

/// Hands the Secret over: it stays, without the marks that make it this resource's. The
/// resourceVersion makes the write fail rather than undo a change made meanwhile.
async fn release_secret(ctx: &Context, resource: &TwilioApiKey, secret: &Secret) -> Result<()> {
    secrets(ctx, resource)
        .patch(&secret.name_any(), &PatchParams::default(), &Patch::Merge(&secret::release_patch(resource, secret)))
        .await
        .map_err(Error::kube("release Secret"))?;
    Ok(())
}

/// Deletes the Secret as it was read: if someone replaced it since (another UID or version), the
/// API server refuses, and the next pass looks again.
async fn delete_secret(ctx: &Context, resource: &TwilioApiKey, secret: &Secret) -> Result<()> {
    let name = secret.name_any();
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: secret.uid(), resource_version: secret.resource_version() }),
        ..DeleteParams::default()
    };
    match secrets(ctx, resource).delete(&name, &params).await {
        Ok(_) => {
            ctx.own_writes.note_secret_delete(&resource.namespace().unwrap_or_default(), &name);
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(Error::kube("delete Secret")(e)),
    }
}

/// Whether a failed Secret write may have been carried out all the same.
enum Written {
    No,
    Unknown,
}

struct SecretWriteError {
    error: Error,
    written: Written,
}

/// Writes `desired` so that it holds key `sid`: created when no Secret has its name (`existing`
/// is None), so that of two resources racing for one name only one gets it; otherwise a patch of
/// `existing`, which must still be as it was read. A write whose outcome is unclear (a timeout, a
/// 5xx, a conflict) is judged by what the API server holds afterwards.
async fn write_secret(
    ctx: &Context,
    resource: &TwilioApiKey,
    existing: Option<&Secret>,
    desired: &Secret,
    sid: &str,
) -> std::result::Result<(), SecretWriteError> {
    let api = secrets(ctx, resource);
    let name = desired.name_any();
    let result = match existing {
        None => {
            let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
            api.create(&params, desired).await
        }
        Some(existing) => {
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
            api.patch(&name, &params, &Patch::Merge(secret::update_patch(resource, existing, desired))).await
        }
    };
    let error = match result {
        Ok(written) => {
            ctx.own_writes.note_secret_write(&written);
            return Ok(());
        }
        Err(error) => error,
    };
    if let kube::Error::Api(status) = &error
        && matches!(status.code, 400 | 403 | 422)
    {
        let error = Error::SecretRejected { secret: name, message: status.message.clone() };
        return Err(SecretWriteError { error, written: Written::No });
    }
    let error = Error::kube("write Secret")(error);
    match api.get_opt(&name).await {
        Ok(Some(now)) if ownership::is_owned(resource, &now) => {
            if now.annotations().get(KEY_SID_ANNOTATION).map(String::as_str) == Some(sid) {
                return Ok(());
            }
            Err(SecretWriteError { error, written: Written::No })
        }
        Ok(Some(_)) => {
            let error = Error::SecretConflict { secret: name, holder: SecretHolder::CreatedMeanwhile };
            Err(SecretWriteError { error, written: Written::No })
        }
        Ok(None) => Err(SecretWriteError { error, written: Written::No }),
        Err(_) => Err(SecretWriteError { error, written: Written::Unknown }),
    }
}

async fn write_status_if_changed(ctx: &Context, resource: &TwilioApiKey, status: TwilioApiKeyStatus) -> Result<()> {
    if resource.status.as_ref() != Some(&status) {
        write_status(ctx, resource, &status).await?;
    }
    Ok(())
}

/// Replaces the whole status (a JSON patch that adds `/status` replaces it): fields the new
/// status lacks are removed, as with server-side apply, at a fraction of its cost to the API
/// server. The operator is the only writer of status.
async fn write_status(ctx: &Context, resource: &TwilioApiKey, status: &TwilioApiKeyStatus) -> Result<()> {
    let value = serde_json::to_value(status).map_err(Error::Encode)?;
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "add", "path": "/status", "value": value}
    ]))
    .map_err(Error::Encode)?;
    let written = key_api(ctx, resource)
        .patch_status(&resource.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(Error::kube("write status"))?;
    ctx.own_writes.note_status_written(&resource.uid().unwrap_or_default(), written.status.as_ref());
    Ok(())
}
