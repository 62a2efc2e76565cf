//! How a pass that failed is reported: on the resource's conditions, in an Event, and in when it
//! is tried again.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::writes::key_api;
use crate::api::TwilioApiKey;
use crate::api::conditions::{self, Health};
use crate::error::{Error, Result};
use crate::keys::status;
use crate::runtime::context::Context;

/// The kind, as metrics label it.
pub(super) const KIND: &str = "TwilioApiKey";

/// Turns errors that need a human into a Stalled status and an Event, and a retry only after
/// [`STALL_RETRY`] (or the resync interval, if shorter), whatever deadline the status holds: a
/// change to the spec, the Secret or the account wakes the resource sooner. Transient errors go
/// back to the controller to be retried with backoff. During deletion every error stays an error, stall or
/// not: success would remove the finalizer and forget a key that still exists in Twilio.
///
/// Only the conditions are written, merged into the status the API server holds: the snapshot this
/// pass started from may predate a status write the pass made before it failed.
pub(super) async fn report(ctx: &Context, resource: &TwilioApiKey, result: Result<Action>) -> Result<Action> {
    let error = match result {
        Ok(action) => return Ok(action),
        Err(error) => error,
    };
    ctx.metrics.reconcile.error(KIND, error.label());
    let stall_reason = error.stall_reason();
    let health = match stall_reason {
        Some(reason) => Health::Stalled { reason, message: error.to_string() },
        None => Health::Progressing { reason: "Retrying", message: error.to_string() },
    };
    let previous = resource.status.clone().unwrap_or_default();
    let conditions = conditions::conditions_for(&previous.conditions, &health, resource.meta().generation, ctx.now());
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
            Ok(Action::requeue(status::stalled_wake(resource, &previous, retry, ctx.now())))
        }
        _ => Err(error),
    }
}

/// How long a stalled resource waits before it is tried again without a change.
const STALL_RETRY: Duration = Duration::from_secs(300);
