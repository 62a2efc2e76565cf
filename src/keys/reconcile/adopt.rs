//! `Adopt` (`spec.secret.adopt`): the key in a Secret of the desired name that belongs to no
//! resource here is taken over once proven (see [`super::proof::prove_adoption`]). The Secret is
//! marked as this resource's first, its other data entries kept; a pass that stops after that
//! finds it as this resource's Secret delivering a key the status lacks, proves it again and
//! records it (`Record`). Then the status records the key as Twilio holds it, and the next passes
//! rename, re-scope or rotate it as the spec asks.

use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::observe::Observation;
use super::outcome::Outcome;
use super::proof::{adoption_allowed, prove_adoption};
use super::record::record_adopted;
use super::writes::patch_secret;
use crate::api::TwilioApiKey;
use crate::error::{Error, Result};
use crate::keys::secret;
use crate::runtime::context::Context;

pub(super) async fn adopt(resource: &TwilioApiKey, ctx: &Context, observation: &Observation) -> Result<Outcome> {
    // Gone since it was read: the next pass creates a key.
    let Some(existing) = observation.at_desired_name() else {
        return Ok(Outcome::Wake(Action::requeue(Duration::from_secs(1))));
    };
    let name = existing.name_any();
    adoption_allowed(resource, &observation.source, &name)?;
    let connection = &observation.connection;
    let claim = secret::adoption_claim(resource, existing, &connection.account_sid)
        .map_err(|reason| Error::AdoptionRefused { secret: name.clone(), reason })?;
    let key = prove_adoption(resource, ctx, connection, &observation.api_base, &name, &claim).await?;
    let desired = secret::desired(resource, connection, &connection.account_sid, &claim.sid, &claim.secret)
        .map_err(|problem| Error::InvalidSpec { problem })?;
    let patch = secret::adoption_patch(resource, existing, &desired);
    let delivered = patch_secret(ctx, resource, &name, &patch, &claim.sid).await?;
    record_adopted(resource, ctx, observation, &key, &name, delivered).await
}
