//! Old keys leaving: at the end of their grace period (and of the rollouts they wait for), or
//! early, when a rotation would make the resource keep more of them than it may.

use super::twilio_keys::delete_keys;
use super::writes::write_status;
use crate::api::TwilioApiKey;
use crate::error::Result;
use crate::keys::{rollout, status};
use crate::runtime::context::Context;

/// Deletes the retiring keys whose grace period has ended and records that; returns the resource
/// with its new status, or None when no key was due.
pub(super) async fn retire_due_keys(resource: &TwilioApiKey, ctx: &Context) -> Result<Option<TwilioApiKey>> {
    let previous = resource.status.clone().unwrap_or_default();
    let Some((due, status)) = status::retire_due(resource, &previous, ctx.now()) else {
        return Ok(None);
    };
    delete_keys(ctx, resource, &due).await?;
    write_status(ctx, resource, &status).await?;
    let rolled_out = rollout::waiting(resource, &previous).is_empty();
    for retired in &due {
        let when = status::Deletion::of(retired, rolled_out).when();
        let note = format!("Deleted retired key {} {when}", retired.sid);
        ctx.events.normal(resource, "KeyDeleted", "DeleteKey", note).await;
    }
    let mut updated = resource.clone();
    updated.status = Some(status);
    Ok(Some(updated))
}

/// Before a key is created that retires the current one: if the resource already keeps
/// `--max-retiring-keys` old keys (less the one about to retire), the oldest go now, ahead of
/// their grace period, and the status says so; returns the resource with that status, or None
/// when there was room. Bounds the live keys one resource holds in a shared account.
pub(super) async fn make_room(resource: &TwilioApiKey, ctx: &Context) -> Result<Option<TwilioApiKey>> {
    let previous = resource.status.clone().unwrap_or_default();
    let Some((evicted, status)) = status::make_room(&previous, ctx.config.max_retiring_keys, ctx.now()) else {
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
