//! `Revoke` (`revoked: true`): every key of the resource is deleted in Twilio at once (those its
//! status records, and any an interrupted create left under its pending name), then its Secret;
//! `StayRevoked`: nothing is left, and the status says so.

use kube::runtime::controller::Action;

use super::outcome::Outcome;
use super::twilio_keys::{delete_keys, sweep_orphans};
use super::writes::{delete_secret, owned_secrets, write_status, write_status_if_changed};
use crate::api::TwilioApiKey;
use crate::error::Result;
use crate::keys::status;
use crate::runtime::context::Context;
use crate::twilio::AccountConnection;

pub(super) async fn revoke(resource: &TwilioApiKey, ctx: &Context, connection: &AccountConnection) -> Result<Outcome> {
    let status = resource.status.clone().unwrap_or_default();
    let keys = status::all_keys(resource, &status);
    delete_keys(ctx, resource, &keys).await?;
    sweep_orphans(resource, ctx, connection, &[]).await?;
    for secret in owned_secrets(ctx, resource, status::secret_names(resource, &status)).await? {
        delete_secret(ctx, resource, &secret).await?;
    }
    write_status(ctx, resource, &status::revoked(resource, ctx.now())).await?;
    let sids: Vec<&str> = keys.iter().map(|k| k.sid.as_str()).collect();
    let note = format!("Revoked: deleted key(s) {} in Twilio and the Secret", sids.join(", "));
    ctx.events.normal(resource, "KeyRevoked", "RevokeKey", note).await;
    Ok(Outcome::Wake(Action::await_change()))
}

pub(super) async fn stay_revoked(resource: &TwilioApiKey, ctx: &Context) -> Result<Outcome> {
    write_status_if_changed(ctx, resource, &status::revoked(resource, ctx.now())).await?;
    Ok(Outcome::Wake(Action::await_change()))
}
