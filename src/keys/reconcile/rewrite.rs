//! `RewriteSecret`: the Secret is written under its current name, data keys, labels and
//! annotations, carrying over the secret it delivers; the key stays.

use std::time::Duration;

use kube::runtime::controller::Action;

use super::observe::Observation;
use super::outcome::Outcome;
use super::writes::{write_secret, write_status};
use crate::api::{TwilioApiKey, TwilioApiKeyStatus};
use crate::error::{Error, Result};
use crate::keys::{secret, status};
use crate::runtime::context::Context;

pub(super) async fn rewrite_secret(
    resource: &TwilioApiKey,
    ctx: &Context,
    observation: &Observation,
) -> Result<Outcome> {
    let previous = resource.status.clone().unwrap_or_default();
    let not_yet = Ok(Outcome::Wake(Action::requeue(Duration::from_secs(1))));
    let (Some(sid), Some(account_sid)) = (previous.key_sid.clone(), previous.account_sid.clone()) else {
        return not_yet;
    };
    let delivering = observation.delivering_secret.as_ref();
    let Some(value) = delivering.and_then(|s| secret::delivered_secret(resource, s)) else {
        return not_yet;
    };
    let connection = &observation.connection;
    let desired = secret::desired(resource, connection, &account_sid, &sid, &value)
        .map_err(|problem| Error::InvalidSpec { problem })?;
    // The key the status records stays: the write's proof of delivery is not needed.
    write_secret(ctx, resource, observation.at_desired_name(), &desired, &sid).await.map_err(|e| e.error)?;
    let status = TwilioApiKeyStatus {
        secret_name: Some(resource.desired_secret_name()),
        stale_secret_name: secret::stale_after_delivery(resource, delivering),
        ..status::ready(resource, &previous, ctx.now())
    };
    write_status(ctx, resource, &status).await?;
    let note = format!("Wrote Secret {} for key {sid}", resource.desired_secret_name());
    ctx.events.normal(resource, "SecretUpdated", "WriteSecret", note).await;
    Ok(Outcome::Delivered(status))
}
