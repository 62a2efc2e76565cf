//! Reconciliation of TwilioApiKey: one step toward the desired state per pass, each external
//! effect persisted before the next. Decisions live in [`crate::plan`]; this module performs them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, Resource, ResourceExt};

use crate::account;
use crate::conditions::{self, Health};
use crate::context::Context;
use crate::crd::{DeletionPolicy, FIELD_MANAGER, FINALIZER, KeyType, RetiringKey, TwilioApiKey, TwilioApiKeyStatus};
use crate::error::{Error, Result};
use crate::plan::{self, Step};
use crate::twilio::{AccountConnection, KeyRequest};

const KIND: &str = "TwilioApiKey";

pub async fn reconcile(key: Arc<TwilioApiKey>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let namespace = key.namespace().unwrap_or_default();
    let api: Api<TwilioApiKey> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, key.clone(), |event| async {
        match event {
            FinalizerEvent::Apply(key) => report(&ctx, &key, apply(&key, &ctx).await).await,
            FinalizerEvent::Cleanup(key) => report(&ctx, &key, cleanup(&key, &ctx).await).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    let label = result.as_ref().err().map_or("ok", Error::label);
    crate::metrics::reconciled(KIND, label, started.elapsed());
    if result.is_ok() {
        ctx.reset_backoff(key.as_ref());
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
/// controller to be retried with backoff.
async fn report(ctx: &Context, key: &TwilioApiKey, result: Result<Action>) -> Result<Action> {
    let error = match result {
        Ok(action) => return Ok(action),
        Err(error) => error,
    };
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
        Some(_) => Ok(Action::requeue(ctx.config.resync_interval)),
        None => Err(error),
    }
}

async fn apply(key: &TwilioApiKey, ctx: &Context) -> Result<Action> {
    plan::validate(key).map_err(Error::InvalidSpec)?;
    if key.spec.suspend {
        return Ok(Action::await_change());
    }
    let source = account::resolve_for_key(ctx, key).await?;
    let connection = account::connect(ctx, &source).await?;
    let secret_name = key.desired_secret_name();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &key.namespace().unwrap_or_default());
    let secret = secrets.get_opt(&secret_name).await.map_err(Error::kube("read Secret"))?;
    let observed = crate::secret::observe(key, secret.as_ref(), &connection.account_sid);
    match plan::next_step(key, &observed) {
        Step::Conflict => Err(Error::SecretConflict(format!(
            "Secret {secret_name} exists and is not owned by this TwilioApiKey; it is left untouched (set spec.secret.name or remove that Secret)"
        ))),
        Step::Create => {
            // The cache may lag behind a status this operator just wrote; a key is created only
            // when the live object confirms that none was issued.
            let api: Api<TwilioApiKey> = Api::namespaced(ctx.client.clone(), &key.namespace().unwrap_or_default());
            let live = api.get(&key.name_any()).await.map_err(Error::kube("read TwilioApiKey"))?;
            if live.status.as_ref().and_then(|s| s.key_sid.as_ref()).is_some() {
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            issue(key, ctx, &connection, None).await
        }
        Step::Replace => {
            let old = key.status.as_ref().and_then(|s| s.key_sid.clone());
            ctx.warn(
                key,
                "SecretDrift",
                "Rotate",
                format!("Secret {secret_name} is missing or no longer holds the current key; issuing a new key"),
            )
            .await;
            issue(key, ctx, &connection, old).await
        }
        Step::Record(sid) => {
            let status = delivered_status(key, &sid, &connection.account_sid, Timestamp::now());
            write_status(ctx, key, &status).await?;
            ctx.normal(key, "KeyRecorded", "RecordKey", format!("Recorded key {sid} found in Secret {secret_name}"))
                .await;
            Ok(next_wake(ctx, &status))
        }
        Step::UpToDate => settle(key, ctx, &connection).await,
    }
}

/// The status once `sid` is delivered: the key it replaces, if any, starts its grace period.
fn delivered_status(key: &TwilioApiKey, sid: &str, account_sid: &str, now: Timestamp) -> TwilioApiKeyStatus {
    let previous = key.status.clone().unwrap_or_default();
    let mut retiring = previous.retiring_keys.clone();
    if let Some(old) = previous.key_sid.as_ref().filter(|old| old.as_str() != sid) {
        retiring.push(RetiringKey { sid: old.clone(), delete_after: (now + grace_period(key)).to_string() });
    }
    let secret_name = key.desired_secret_name();
    let health = Health::Ready { reason: "KeyReady", message: format!("Key {sid} delivered in Secret {secret_name}") };
    TwilioApiKeyStatus {
        observed_generation: key.meta().generation,
        conditions: conditions::conditions_for(&previous.conditions, &health, key.meta().generation, now),
        key_sid: Some(sid.to_string()),
        key_type: Some(key.spec.key_type),
        account_sid: Some(account_sid.to_string()),
        secret_name: Some(secret_name),
        key_created_at: Some(now.to_string()),
        next_rotation_at: None,
        last_rotation_trigger: key.spec.rotation.as_ref().and_then(|r| r.trigger.clone()),
        retiring_keys: retiring,
    }
}

/// Creates a key in Twilio and delivers it. The secret exists only in this function's memory
/// until the Secret is written, so a failed write deletes the new key rather than leaking it.
async fn issue(
    key: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
    replaces: Option<String>,
) -> Result<Action> {
    let request = KeyRequest {
        friendly_name: key.desired_friendly_name(),
        restricted_policy: match key.spec.key_type {
            KeyType::Restricted => key.spec.policy.as_ref().map(|p| p.allow.clone()),
            KeyType::Standard => None,
        },
    };
    let created = ctx.twilio.create_key(connection, &request).await.map_err(Error::twilio("create key"))?;
    crate::metrics::key_operation("created");
    tracing::info!(key_sid = %created.sid, "created Twilio key");
    let desired = crate::secret::desired(key, &connection.account_sid, &created.sid, &created.secret);
    if let Err(error) = apply_secret(ctx, &desired).await {
        if let Err(cleanup) = ctx.twilio.delete_key(connection, &created.sid).await {
            tracing::error!(key_sid = %created.sid, %cleanup, "could not delete a key whose Secret write failed");
        }
        return Err(error);
    }
    let status = delivered_status(key, &created.sid, &connection.account_sid, Timestamp::now());
    write_status(ctx, key, &status).await?;
    let (reason, note) = match &replaces {
        Some(old) => (
            "KeyRotated",
            format!("Created key {} to replace {old}; the old key is deleted after the grace period", created.sid),
        ),
        None => ("KeyCreated", format!("Created key {} and wrote Secret {}", created.sid, key.desired_secret_name())),
    };
    ctx.normal(key, reason, "CreateKey", note).await;
    Ok(next_wake(ctx, &status))
}

/// The key is delivered: delete retired keys whose grace period ended and report Ready.
async fn settle(key: &TwilioApiKey, ctx: &Context, connection: &AccountConnection) -> Result<Action> {
    let now = Timestamp::now();
    let previous = key.status.clone().unwrap_or_default();
    let mut remaining = Vec::new();
    for retiring in &previous.retiring_keys {
        let due = retiring.delete_after.parse::<Timestamp>().map_or(true, |deadline| deadline <= now);
        if due {
            ctx.twilio.delete_key(connection, &retiring.sid).await.map_err(Error::twilio("delete retired key"))?;
            crate::metrics::key_operation("deleted");
            ctx.normal(
                key,
                "KeyDeleted",
                "DeleteKey",
                format!("Deleted retired key {} after its grace period", retiring.sid),
            )
            .await;
        } else {
            remaining.push(retiring.clone());
        }
    }
    let sid = previous.key_sid.clone().unwrap_or_default();
    let health = Health::Ready {
        reason: "KeyReady",
        message: format!("Key {sid} delivered in Secret {}", key.desired_secret_name()),
    };
    let status = TwilioApiKeyStatus {
        observed_generation: key.meta().generation,
        conditions: conditions::conditions_for(&previous.conditions, &health, key.meta().generation, now),
        retiring_keys: remaining,
        ..previous.clone()
    };
    if status != previous {
        write_status(ctx, key, &status).await?;
    }
    Ok(next_wake(ctx, &status))
}

/// Requeue at the next resync, or earlier when a retired key's grace period ends.
fn next_wake(ctx: &Context, status: &TwilioApiKeyStatus) -> Action {
    let now = Timestamp::now();
    let earliest = status
        .retiring_keys
        .iter()
        .filter_map(|r| r.delete_after.parse::<Timestamp>().ok())
        .map(|deadline| Duration::try_from(deadline.duration_since(now)).unwrap_or(Duration::ZERO))
        .min();
    match earliest {
        Some(until) => Action::requeue(until.min(ctx.config.resync_interval) + Duration::from_millis(100)),
        None => Action::requeue(ctx.config.resync_interval),
    }
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
    let namespace = key.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret_name = status.secret_name.clone().unwrap_or_else(|| key.desired_secret_name());
    let secret = secrets.get_opt(&secret_name).await.map_err(Error::kube("read Secret"))?;
    let owned_secret = secret.filter(|s| s.owner_references().iter().any(|r| Some(&r.uid) == key.uid().as_ref()));
    match key.spec.deletion_policy {
        DeletionPolicy::Delete => {
            let sids: Vec<String> =
                status.key_sid.iter().cloned().chain(status.retiring_keys.iter().map(|r| r.sid.clone())).collect();
            if !sids.is_empty() {
                let source = account::resolve_for_key(ctx, key).await?;
                let connection = account::connect(ctx, &source).await?;
                for sid in &sids {
                    ctx.twilio.delete_key(&connection, sid).await.map_err(Error::twilio("delete key"))?;
                    crate::metrics::key_operation("deleted");
                }
                ctx.normal(key, "KeyDeleted", "DeleteKey", format!("Deleted key(s) {} in Twilio", sids.join(", ")))
                    .await;
            }
            if owned_secret.is_some() {
                secrets
                    .delete(&secret_name, &DeleteParams::default())
                    .await
                    .map(|_| ())
                    .or_else(ignore_not_found)
                    .map_err(Error::kube("delete Secret"))?;
            }
        }
        DeletionPolicy::Orphan => {
            if let Some(secret) = owned_secret {
                release_secret(&secrets, &secret, key).await?;
            }
            ctx.normal(
                key,
                "KeyOrphaned",
                "DeleteKey",
                format!(
                    "deletionPolicy Orphan: key {} and Secret {secret_name} are kept",
                    status.key_sid.as_deref().unwrap_or("(none)")
                ),
            )
            .await;
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

fn ignore_not_found(error: kube::Error) -> std::result::Result<(), kube::Error> {
    match &error {
        kube::Error::Api(status) if status.code == 404 => Ok(()),
        _ => Err(error),
    }
}

async fn apply_secret(ctx: &Context, secret: &Secret) -> Result<()> {
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), secret.metadata.namespace.as_deref().unwrap_or_default());
    let mut body = serde_json::to_value(secret).map_err(|e| Error::InvalidSpec(e.to_string()))?;
    body["apiVersion"] = "v1".into();
    body["kind"] = "Secret".into();
    secrets
        .patch(&secret.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(Error::kube("write Secret"))?;
    Ok(())
}

async fn write_status(ctx: &Context, key: &TwilioApiKey, status: &TwilioApiKeyStatus) -> Result<()> {
    let api: Api<TwilioApiKey> = Api::namespaced(ctx.client.clone(), &key.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": TwilioApiKey::api_version(&()),
        "kind": TwilioApiKey::kind(&()),
        "status": status,
    });
    api.patch_status(&key.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::kube("write status"))?;
    Ok(())
}
