//! `Record`: a Secret of the resource delivers a key the status lacks (the status write after
//! its delivery was lost), and observation proved the key this resource's. The status records
//! it; no second key is created.

use std::time::Duration;

use kube::runtime::controller::Action;

use super::observe::{Observation, ProvenClaim};
use super::outcome::Outcome;
use super::writes::{Delivered, record_delivery};
use crate::api::TwilioApiKey;
use crate::error::Result;
use crate::keys::status;
use crate::runtime::context::Context;
use crate::runtime::metrics::KeyOperation;
use crate::twilio::Key;

pub(super) async fn record(
    resource: &TwilioApiKey,
    ctx: &Context,
    observation: &Observation,
    sid: &str,
) -> Result<Outcome> {
    match &observation.claim {
        Some(ProvenClaim::Created) => record_created(resource, ctx, observation, sid).await,
        Some(ProvenClaim::Adopted(key)) if key.sid == sid => {
            record_adopted(resource, ctx, observation, key, &observation.delivering_name, Delivered::observed(sid))
                .await
        }
        // Observation judged another claim (or none): the status changed under this pass.
        _ => Ok(Outcome::Wake(Action::requeue(Duration::from_secs(1)))),
    }
}

/// A key this resource created: recorded under its pending name, which the delivery's finish
/// replaces with the spec's.
async fn record_created(
    resource: &TwilioApiKey,
    ctx: &Context,
    observation: &Observation,
    sid: &str,
) -> Result<Outcome> {
    let issued = status::Issued::through(&observation.connection, sid, resource.pending_friendly_name(), "Recorded");
    let status = status::delivered(resource, issued, ctx.now());
    let status = record_delivery(ctx, resource, status, Delivered::observed(sid)).await?;
    let note = format!("Recorded key {sid} found in Secret {}", observation.delivering_name);
    ctx.events.normal(resource, "KeyRecorded", "RecordKey", note).await;
    Ok(Outcome::Delivered(status))
}

/// An adopted key, as Twilio holds it, delivered by Secret `secret_name` (which an earlier pass
/// marked as this resource's, or the `Adopt` step just did).
pub(super) async fn record_adopted(
    resource: &TwilioApiKey,
    ctx: &Context,
    observation: &Observation,
    key: &Key,
    secret_name: &str,
    delivered: Delivered,
) -> Result<Outcome> {
    let connection = &observation.connection;
    let issued =
        status::Issued::through(connection, &key.sid, key.friendly_name.clone().unwrap_or_default(), "Adopted");
    let status = status::adopted(resource, issued, key, ctx.now());
    record_delivery(ctx, resource, status, delivered).await?;
    ctx.metrics.keys.operation(KeyOperation::Adopted);
    let note = format!(
        "Adopted key {} from Secret {secret_name}: Twilio accepted its secret in account {}",
        key.sid, connection.account_sid
    );
    ctx.events.normal(resource, "KeyAdopted", "AdoptKey", note).await;
    // The next pass renames, re-scopes or rotates it as the spec asks.
    Ok(Outcome::Wake(Action::requeue(Duration::from_millis(200))))
}
