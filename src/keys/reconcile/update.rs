//! `UpdateInPlace`: the key is renamed and, for a Restricted key, its policy replaced; its
//! secret stays valid. The key is the one the status records, never one a Secret names.

use super::outcome::Outcome;
use super::writes::write_status;
use crate::api::TwilioApiKey;
use crate::error::{Error, Result};
use crate::keys::plan::{RotationCause, Step};
use crate::keys::status;
use crate::runtime::context::Context;
use crate::twilio::{AccountConnection, TwilioError};

pub(super) async fn update_in_place(
    resource: &TwilioApiKey,
    ctx: &Context,
    connection: &AccountConnection,
) -> Result<Outcome> {
    let previous = resource.status.clone().unwrap_or_default();
    let sid = previous.key_sid.clone().unwrap_or_default();
    let friendly_name = resource.desired_friendly_name();
    let policy = resource.restricted_policy().map(|p| p.allow.clone());
    match ctx.twilio.update_key(connection, &sid, &friendly_name, policy.as_deref()).await {
        Ok(_) => {}
        // Deleted in Twilio behind the operator's back: a new key replaces it.
        Err(TwilioError::NotFound { .. }) => return Ok(Outcome::Then(Step::Rotate(RotationCause::KeyMissing))),
        Err(e) => return Err(Error::twilio("update key")(e)),
    }
    let status = status::updated_in_place(resource, ctx.now());
    write_status(ctx, resource, &status).await?;
    ctx.events
        .normal(resource, "KeyUpdated", "UpdateKey", format!("Updated key {sid} in place (name {friendly_name:?})"))
        .await;
    Ok(Outcome::Recorded(status))
}
