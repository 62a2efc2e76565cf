//! `Create` and `Rotate`: a new key is created in Twilio and delivered; with a cause, the current
//! one is retired for the grace period.
//!
//! Effects, in order: room is made among the retiring keys (if the resource keeps too many), the
//! account is swept of keys an interrupted attempt left, the key is created under the resource's
//! pending name, the Secret is written, the status records the key, and Twilio renames it (with
//! the Event written meanwhile). A key left behind by an interruption at any point is provably
//! this resource's (its pending name) and is found by the next sweep; a Secret written but not
//! recorded is recorded by the next pass.

use kube::ResourceExt;

use super::observe::Observation;
use super::outcome::Outcome;
use super::retire;
use super::twilio_keys::sweep_orphans;
use super::writes::{SecretWriteError, Written, record_delivery, write_secret};
use crate::api::{TwilioApiKey, TwilioApiKeyStatus};
use crate::error::{Error, Result};
use crate::keys::plan::RotationCause;
use crate::keys::{secret, status};
use crate::runtime::context::{Context, EventType};
use crate::runtime::metrics::KeyOperation;
use crate::twilio::{KeyRequest, TwilioError};

pub(super) async fn issue(
    resource: &TwilioApiKey,
    ctx: &Context,
    observation: &Observation,
    cause: Option<RotationCause>,
) -> Result<Outcome> {
    let connection = &observation.connection;
    let uid = resource.uid().unwrap_or_default();
    if let Err(retry_in) = ctx.budget.take(&uid) {
        return Err(Error::CreationBudgetExceeded { per_hour: ctx.budget.per_hour(), retry_in });
    }
    let made_room = retire::make_room(resource, ctx).await?;
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
    ctx.metrics.keys.operation(KeyOperation::Created);
    if let Some(cause) = cause {
        ctx.metrics.keys.rotation(cause.label());
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
    let delivered = match write_secret(ctx, resource, observation.at_desired_name(), &desired, &created.sid).await {
        Ok(delivered) => {
            ctx.inventories.mark_create_unsure(&uid, false);
            delivered
        }
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
    };
    // The status records the key under the name the spec asks for, and Twilio renames it right
    // after: once recorded, the pending name has served its purpose. Should the rename not happen
    // (a crash, an error), the drift check of `UpToDate` finds the key misnamed and renames it.
    let friendly_name = resource.desired_friendly_name();
    let issued = status::Issued::through(
        connection,
        &created.sid,
        friendly_name.clone(),
        crate::keys::plan::history_reason(cause),
    );
    let status = TwilioApiKeyStatus {
        stale_secret_name: secret::stale_after_delivery(resource, observation.delivering_secret.as_ref()),
        ..status::delivered(resource, issued, ctx.now())
    };
    let status = record_delivery(ctx, resource, status, delivered).await?;
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
    Ok(Outcome::Delivered(status))
}
