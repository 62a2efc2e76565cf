//! `UpToDate`: the key is delivered. What interrupted attempts left is swept, the key is checked
//! (from the account's shared listing) to still exist in Twilio under its name, and the resource
//! reports Ready.

use super::outcome::Outcome;
use super::twilio_keys::sweep_orphans;
use super::writes::write_status_if_changed;
use crate::api::{TwilioApiKey, TwilioApiKeyStatus};
use crate::error::{Error, Result};
use crate::keys::plan::{self, RotationCause, Step};
use crate::keys::status;
use crate::runtime::context::Context;
use crate::twilio::{AccountConnection, TwilioError};

pub(super) async fn settle(resource: &TwilioApiKey, ctx: &Context, connection: &AccountConnection) -> Result<Outcome> {
    let previous = resource.status.clone().unwrap_or_default();
    // A create sent by a process that died may still be carried out after its successor listed
    // the account; such a late key is swept here, from the same listing as the drift check.
    sweep_orphans(resource, ctx, connection, &[]).await?;
    match check_in_twilio(ctx, connection, &previous).await? {
        InTwilio::Missing => return Ok(Outcome::Then(Step::Rotate(RotationCause::KeyMissing))),
        InTwilio::Misnamed(sid) => {
            let name = previous.friendly_name.clone().unwrap_or_else(|| resource.desired_friendly_name());
            ctx.twilio.update_key(connection, &sid, &name, None).await.map_err(Error::twilio("name key"))?;
            tracing::info!(key_sid = %sid, "renamed the key in Twilio to the name the status records");
        }
        InTwilio::AsRecorded => {}
    }
    let status = status::ready(resource, &previous, ctx.now());
    write_status_if_changed(ctx, resource, &status).await?;
    Ok(Outcome::Delivered(status))
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
        .get(&ctx.twilio, connection, ctx.config.resync_interval, ctx.now())
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
