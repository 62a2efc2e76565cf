//! Auth token rotation (`spec.credentialRotation` of an account whose credential is the auth
//! token), one step per pass, each recorded in `status.credentialRotation` before the next
//! starts, so that the operator may be killed at any instant:
//!
//! 1. `Creating`: a secondary token is made and written into the credentials Secret under
//!    `<authTokenKey>_NEXT` (a crash in between loses it; the next pass makes another, which
//!    replaces it in Twilio). From then on the operator acts with `_NEXT` (see
//!    [`super::resolve`]): both tokens authenticate until promotion, and only `_NEXT` after.
//! 2. `Stored`: deliverTo gets the secondary under its token key and the primary under
//!    `_PREVIOUS`; the targets are restarted (their restart carries the rotation's start time,
//!    so a repeated restart changes nothing).
//! 3. `Delivered`: once every target has rolled out, the secondary is promoted. A lost answer is
//!    settled by asking whether the old primary still works.
//! 4. `Promoted`: the credentials Secret gets the new token under `authTokenKey` and loses `_NEXT`.
//! 5. `Retiring`: after gracePeriod, deliverTo loses `_PREVIOUS`; the rotation is done.
//!
//! A rotation that cannot go on (a target that does not roll out, a deliverTo Secret that is not
//! the account's, Twilio refusing) waits before promotion, where both tokens work, and says why
//! in `status.credentialRotation.message`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use super::resolve::{connection_as, next_key};
use super::{AccountResource, AccountSource};
use crate::api::{
    CredentialDelivery, CredentialRotationPhase as Phase, CredentialRotationSpec, CredentialRotationStatus,
    FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, duration,
};
use crate::error::{Error, Result};
use crate::keys::rollout::{self, Progress};
use crate::runtime::context::Context;
use crate::twilio::{AccountConnection, Credentials, ExposeSecret, SecretString, TwilioError};

/// The data key of a deliverTo Secret that holds the previous token during a rotation.
pub fn previous_key(auth_token_key: &str) -> String {
    format!("{auth_token_key}_PREVIOUS")
}

/// On a deliverTo Secret: the account it is delivered for, "<kind>/<name>" (an account made
/// again under its name finds its Secrets). Only Secrets that carry it are ever written; any other
/// Secret of that name is left alone.
pub const DELIVERED_FOR_ANNOTATION: &str = "twilio-operator.dev/auth-token-of";

/// How often a rotation that waits for its targets' rollouts looks again.
const WAIT: Duration = Duration::from_secs(3);

/// How often a rotation held up by something a person must fix (a deliverTo Secret that is not
/// the account's, a target it cannot restart) looks again.
const BLOCKED_WAIT: Duration = Duration::from_secs(30);

/// What a rotation waits for, which says how soon it looks again: a refusal by Twilio is tried
/// again only at the resync, so that it costs one call per interval.
#[derive(Clone, Copy)]
enum Wait {
    Rollout,
    Blocked,
    Refused,
}

/// The default grace period, and interval bounds, as the CRD states them.
const DEFAULT_GRACE: SignedDuration = SignedDuration::from_mins(10);

/// One pass of the account's auth token rotation, after its credential was verified. Returns
/// when the account should be looked at again for it (None: at the resync).
pub async fn advance<A: AccountResource>(
    account: &A,
    ctx: &Context,
    spec: &CredentialRotationSpec,
) -> Result<Option<Duration>> {
    let api = account.api(ctx.client.clone());
    // The status as the API server has it now: the cache may not have seen the last step yet.
    let fresh = api.get_status(&account.name_any()).await.map_err(Error::kube("read account"))?;
    let written = fresh.account_status().and_then(|s| s.credential_rotation.clone());
    let status = written.clone().unwrap_or_default();
    let mut rotation = Rotation { account, ctx, source: account.source(), spec, status, written };
    let now = ctx.now();
    if rotation.written.is_none() {
        // First sight: the token's age is unknown, so it counts from now; the trigger as it is
        // asks for nothing.
        rotation.status.token_since = Some(now.to_string());
        rotation.status.trigger = spec.trigger.clone();
    }
    // Each step reads the credentials Secret as the step before left it; a pass takes a rotation
    // as far as it can go without waiting (there are five steps).
    for _ in 0..8 {
        let Some(tokens) = rotation.tokens().await? else {
            rotation.status.message =
                Some("the credentials Secret holds no auth token (a Main key cannot rotate)".into());
            rotation.write().await?;
            return Ok(None);
        };
        let step = match rotation.status.phase {
            None => rotation.idle(&tokens, now).await?,
            Some(Phase::Creating) => rotation.create(&tokens).await?,
            Some(Phase::Stored) => rotation.deliver(&tokens).await?,
            Some(Phase::Delivered) => rotation.promote(&tokens).await?,
            Some(Phase::Promoted) => rotation.switch(&tokens).await?,
            Some(Phase::Retiring) => rotation.retire(&tokens, now).await?,
        };
        match step {
            Step::Next(phase) => {
                rotation.status.phase = phase;
                rotation.status.message = None;
                rotation.write().await?;
            }
            Step::Wait(after) => {
                rotation.write().await?;
                return Ok(after);
            }
        }
    }
    Ok(Some(WAIT))
}

/// What one step did: moved the rotation on (to record before the next), or waits.
enum Step {
    Next(Option<Phase>),
    Wait(Option<Duration>),
}

/// The tokens of the credentials Secret as read at the start of the pass.
struct Tokens {
    secret: Secret,
    primary: SecretString,
    next: Option<SecretString>,
}

struct Rotation<'a, A> {
    account: &'a A,
    ctx: &'a Context,
    source: AccountSource,
    spec: &'a CredentialRotationSpec,
    status: CredentialRotationStatus,
    /// The status as last written (or read).
    written: Option<CredentialRotationStatus>,
}

impl<A: AccountResource> Rotation<'_, A> {
    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.ctx.client.clone(), &self.source.secret_namespace)
    }

    /// The credentials Secret's tokens, read now; None when it holds no auth token.
    async fn tokens(&self) -> Result<Option<Tokens>> {
        let secret =
            self.secrets().get(&self.source.secret_name).await.map_err(Error::kube("read credentials Secret"))?;
        let value = |key: &str| {
            let data = secret.data.as_ref()?;
            let text = String::from_utf8(data.get(key)?.0.clone()).ok()?;
            let text = text.trim();
            (!text.is_empty()).then(|| SecretString::from(text.to_string()))
        };
        let key = &self.source.keys.auth_token_key;
        let (primary, next) = (value(key), value(&next_key(key)));
        Ok(primary.map(|primary| Tokens { secret: secret.clone(), primary, next }))
    }

    fn connection(&self, token: &SecretString) -> AccountConnection {
        let credentials = Credentials { username: self.source.account_sid.clone(), password: token.clone() };
        connection_as(self.ctx, &self.source, credentials)
    }

    fn accounts_base(&self) -> String {
        self.ctx.twilio.endpoint().accounts_base(self.source.region.as_deref(), self.source.edge.as_deref())
    }

    fn api_base(&self) -> String {
        self.ctx.twilio.endpoint().api_base(self.source.region.as_deref(), self.source.edge.as_deref())
    }

    fn interval(&self) -> Option<SignedDuration> {
        let interval = duration::parse(self.spec.interval.as_deref()?).ok()?;
        SignedDuration::try_from(interval).ok()
    }

    fn grace(&self) -> SignedDuration {
        duration::parse(&self.spec.grace_period)
            .ok()
            .and_then(|g| SignedDuration::try_from(g).ok())
            .unwrap_or(DEFAULT_GRACE)
    }

    /// No rotation runs: deliverTo holds the current token; a rotation starts when asked or due.
    async fn idle(&mut self, tokens: &Tokens, now: Timestamp) -> Result<Step> {
        let since = self.status.token_since.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).unwrap_or(now);
        let due_at = self.interval().and_then(|interval| since.checked_add(interval).ok());
        self.status.next_rotation_at = due_at.map(|at| at.to_string());
        if let Some(why) = self.deliver_all(&tokens.primary, None).await? {
            // No rotation runs, so nothing waits on it: looked at again at the resync.
            return Ok(Step::Wait(self.waiting(Wait::Refused, why)));
        }
        let asked = self.spec.trigger != self.status.trigger;
        let due = due_at.is_some_and(|at| at <= now);
        if !asked && !due {
            self.status.message = None;
            let until = due_at.map(|at| Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO));
            return Ok(Step::Wait(until));
        }
        if let Err(wait) = self.ctx.budget.take(&self.account.uid().unwrap_or_default()) {
            let why = format!(
                "the account made {} auth tokens within the last hour (--max-key-creations-per-hour); the next in {}s",
                self.ctx.budget.per_hour(),
                wait.as_secs()
            );
            self.status.message = Some(why);
            return Ok(Step::Wait(Some(wait)));
        }
        self.status.trigger = self.spec.trigger.clone();
        self.status.started_at = Some(now.to_string());
        let why = if asked { "spec.credentialRotation.trigger changed" } else { "the interval elapsed" };
        self.ctx
            .events
            .normal(
                self.account,
                "CredentialRotationStarted",
                "RotateAuthToken",
                format!("Rotating the auth token: {why}"),
            )
            .await;
        Ok(Step::Next(Some(Phase::Creating)))
    }

    /// Makes the secondary token and stores it in the credentials Secret before anything uses it.
    async fn create(&mut self, tokens: &Tokens) -> Result<Step> {
        if let Some(next) = &tokens.next {
            // Stored by a pass that stopped before recording it: kept if it still works.
            let works = self.ctx.twilio.token_authenticates(&self.api_base(), &self.source.account_sid, next).await;
            if works.map_err(Error::twilio("check the stored next auth token"))? {
                return Ok(Step::Next(Some(Phase::Stored)));
            }
        }
        let primary = self.connection(&tokens.primary);
        let created = self.ctx.twilio.create_secondary_auth_token(&primary, &self.accounts_base()).await;
        let token = match created {
            Ok(token) => token,
            Err(error) if !error.is_transient() => {
                let why = format!("Twilio refused to make a secondary auth token: {error}; the current token stays");
                self.ctx.events.warning(self.account, "CredentialRotationFailed", "RotateAuthToken", why.clone()).await;
                return Ok(Step::Wait(self.waiting(Wait::Refused, why)));
            }
            Err(error) => return Err(Error::twilio("create the secondary auth token")(error)),
        };
        let key = next_key(&self.source.keys.auth_token_key);
        self.write_credentials(tokens, &[(key.as_str(), Some(&token))]).await?;
        Ok(Step::Next(Some(Phase::Stored)))
    }

    /// Delivers the secondary next to the primary, and restarts the targets.
    async fn deliver(&mut self, tokens: &Tokens) -> Result<Step> {
        let Some(next) = &tokens.next else {
            // Lost from the Secret (edited by hand): make another.
            return Ok(Step::Next(Some(Phase::Creating)));
        };
        if let Some(why) = self.deliver_all(next, Some(&tokens.primary)).await? {
            return Ok(Step::Wait(self.waiting(Wait::Blocked, why)));
        }
        let at = self.started_at();
        let made_for = format!("{}/{}", self.source.secret_namespace, self.account.name_any());
        for target in &self.spec.rollout_restart_targets {
            let patch = rollout::restart_patch(target.kind, rollout::restart_time(target.kind, at), &made_for, None);
            let namespace = &self.source.secret_namespace;
            let done = crate::keys::reconcile::rollouts::restart_workload(
                self.ctx,
                namespace,
                target.kind,
                &target.name,
                patch,
            )
            .await?;
            if let Err(why) = done {
                return Ok(Step::Wait(
                    self.waiting(Wait::Blocked, format!("cannot restart {} {}: {why}", target.kind, target.name)),
                ));
            }
        }
        let now = self.ctx.now();
        self.status.promote_after = Some(now.checked_add(self.grace()).unwrap_or(now).to_string());
        Ok(Step::Next(Some(Phase::Delivered)))
    }

    /// Promotes the secondary once every target has rolled out.
    async fn promote(&mut self, tokens: &Tokens) -> Result<Step> {
        let Some(next) = &tokens.next else {
            return Ok(Step::Next(Some(Phase::Creating)));
        };
        let at = self.started_at();
        let namespace = &self.source.secret_namespace;
        for target in &self.spec.rollout_restart_targets {
            let workload =
                crate::keys::reconcile::rollouts::read_workload(self.ctx, namespace, target.kind, &target.name).await?;
            let progress = match workload {
                Ok(workload) => rollout::progress(&workload, rollout::restart_time(target.kind, at)),
                Err(why) => Progress::Waiting(why),
            };
            if let Progress::Waiting(why) = progress {
                let why = format!("waiting for {} {} to roll out: {why}", target.kind, target.name);
                return Ok(Step::Wait(self.waiting(Wait::Rollout, why)));
            }
        }
        // The old token stays valid for the grace period after the delivery, for consumers that
        // read the Secret as a file.
        let now = self.ctx.now();
        if let Some(after) = self.status.promote_after.as_deref().and_then(|t| t.parse::<Timestamp>().ok())
            && after > now
        {
            self.status.message = Some(format!("the new token is delivered; promoted at {after} (gracePeriod)"));
            return Ok(Step::Wait(Some(Duration::try_from(after.duration_since(now)).unwrap_or(WAIT))));
        }
        let promoted = self.ctx.twilio.promote_auth_token(&self.connection(next), &self.accounts_base()).await;
        match promoted {
            Ok(()) => {}
            // No secondary to promote: an earlier promotion whose answer was lost, or the
            // secondary was deleted in the Console. The old primary tells which.
            Err(TwilioError::Rejected { .. } | TwilioError::NotFound { .. }) => {
                let old_works = self
                    .ctx
                    .twilio
                    .token_authenticates(&self.api_base(), &self.source.account_sid, &tokens.primary)
                    .await;
                if old_works.map_err(Error::twilio("check the old auth token"))? {
                    let why = "the secondary auth token is gone (deleted in the Console?); making another".to_string();
                    self.ctx.events.warning(self.account, "CredentialRotationRestarted", "RotateAuthToken", why).await;
                    return Ok(Step::Next(Some(Phase::Creating)));
                }
            }
            Err(error) if error.is_transient() => return Err(Error::twilio("promote the auth token")(error)),
            Err(error) => {
                let why =
                    format!("Twilio refused to promote the secondary auth token: {error}; the current token stays");
                self.ctx.events.warning(self.account, "CredentialRotationFailed", "RotateAuthToken", why.clone()).await;
                return Ok(Step::Wait(self.waiting(Wait::Refused, why)));
            }
        }
        self.ctx
            .events
            .normal(
                self.account,
                "AuthTokenPromoted",
                "RotateAuthToken",
                "The new auth token is the primary; the old one no longer works".into(),
            )
            .await;
        Ok(Step::Next(Some(Phase::Promoted)))
    }

    /// The credentials Secret holds the new token as the primary.
    async fn switch(&mut self, tokens: &Tokens) -> Result<Step> {
        if let Some(next) = &tokens.next {
            let key = self.source.keys.auth_token_key.clone();
            let next_key = next_key(&key);
            self.write_credentials(tokens, &[(key.as_str(), Some(next)), (next_key.as_str(), None)]).await?;
        }
        let now = self.ctx.now();
        self.status.token_since = Some(now.to_string());
        self.status.previous_until = Some(now.checked_add(self.grace()).unwrap_or(now).to_string());
        self.status.rotations = self.status.rotations.saturating_add(1);
        Ok(Step::Next(Some(Phase::Retiring)))
    }

    /// deliverTo keeps the previous token for the grace period, then loses it.
    async fn retire(&mut self, tokens: &Tokens, now: Timestamp) -> Result<Step> {
        let until = self.status.previous_until.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).unwrap_or(now);
        if until > now {
            return Ok(Step::Wait(Some(Duration::try_from(until.duration_since(now)).unwrap_or(WAIT))));
        }
        if let Some(why) = self.deliver_all(&tokens.primary, None).await? {
            return Ok(Step::Wait(self.waiting(Wait::Blocked, why)));
        }
        self.status.previous_until = None;
        self.status.promote_after = None;
        self.status.started_at = None;
        self.ctx
            .events
            .normal(
                self.account,
                "CredentialRotationFinished",
                "RotateAuthToken",
                "The old auth token was removed from the delivered Secrets".into(),
            )
            .await;
        Ok(Step::Next(None))
    }

    fn started_at(&self) -> Timestamp {
        self.status.started_at.as_deref().and_then(|t| t.parse().ok()).unwrap_or_else(|| self.ctx.now())
    }

    /// Records why the rotation waits, and says when to look again.
    fn waiting(&mut self, wait: Wait, why: String) -> Option<Duration> {
        self.status.message = Some(why);
        Some(match wait {
            Wait::Rollout => WAIT,
            Wait::Blocked => BLOCKED_WAIT,
            Wait::Refused => self.ctx.config.resync_interval,
        })
    }

    /// Writes data keys of the credentials Secret (None removes one), if it has not changed since
    /// it was read, and tells the keys' credentials cache.
    async fn write_credentials(&self, tokens: &Tokens, entries: &[(&str, Option<&SecretString>)]) -> Result<()> {
        let mut data = serde_json::Map::new();
        for (key, value) in entries {
            let encoded = value.map(|v| base64_encode(v.expose_secret().as_bytes()));
            data.insert((*key).to_string(), encoded.map_or(serde_json::Value::Null, serde_json::Value::String));
        }
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": tokens.secret.resource_version()},
            "data": data,
        });
        let written = self
            .secrets()
            .patch(&self.source.secret_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube("write the credentials Secret"))?;
        self.ctx.own_writes.note_credentials_write(&written);
        self.ctx.credentials.put(
            &self.source.secret_namespace,
            &self.source.secret_name,
            written.data.unwrap_or_default(),
        );
        Ok(())
    }

    /// Every deliverTo Secret holds `current` (and `previous`, or no previous token); the reason
    /// when one cannot be written.
    async fn deliver_all(&self, current: &SecretString, previous: Option<&SecretString>) -> Result<Option<String>> {
        for delivery in &self.spec.deliver_to {
            if let Some(why) = self.deliver_one(delivery, current, previous).await? {
                return Ok(Some(why));
            }
        }
        Ok(None)
    }

    async fn deliver_one(
        &self,
        delivery: &CredentialDelivery,
        current: &SecretString,
        previous: Option<&SecretString>,
    ) -> Result<Option<String>> {
        let secrets = self.secrets();
        let owner = format!("{}/{}", A::KIND, self.account.name_any());
        let mut wanted: BTreeMap<String, Option<ByteString>> = BTreeMap::new();
        wanted.insert(delivery.account_sid_key.clone(), Some(ByteString(self.source.account_sid.clone().into_bytes())));
        wanted.insert(delivery.auth_token_key.clone(), Some(ByteString(current.expose_secret().as_bytes().to_vec())));
        wanted.insert(
            previous_key(&delivery.auth_token_key),
            previous.map(|p| ByteString(p.expose_secret().as_bytes().to_vec())),
        );
        let existing = secrets.get_opt(&delivery.secret_name).await.map_err(Error::kube("read a deliverTo Secret"))?;
        let Some(existing) = existing else {
            let secret = Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some(delivery.secret_name.clone()),
                    namespace: Some(self.source.secret_namespace.clone()),
                    labels: Some([(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())].into()),
                    annotations: Some([(DELIVERED_FOR_ANNOTATION.to_string(), owner)].into()),
                    ..Default::default()
                },
                data: Some(wanted.into_iter().filter_map(|(k, v)| Some((k, v?))).collect()),
                ..Default::default()
            };
            let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
            secrets.create(&params, &secret).await.map_err(Error::kube("create a deliverTo Secret"))?;
            return Ok(None);
        };
        if existing.annotations().get(DELIVERED_FOR_ANNOTATION) != Some(&owner) {
            return Ok(Some(format!(
                "Secret {} exists and is not this account's (no {DELIVERED_FOR_ANNOTATION}: {owner} annotation); it is not written",
                delivery.secret_name
            )));
        }
        let data = existing.data.clone().unwrap_or_default();
        if wanted.iter().all(|(k, v)| data.get(k) == v.as_ref()) {
            return Ok(None);
        }
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": existing.resource_version()},
            "data": wanted.iter().map(|(k, v)| (k.clone(), v.as_ref().map(|b| base64_encode(&b.0)))).collect::<BTreeMap<_, _>>(),
        });
        let written = secrets
            .patch(&delivery.secret_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube("write a deliverTo Secret"))?;
        self.ctx.own_writes.note_secret_write(&written);
        Ok(None)
    }

    /// Replaces status.credentialRotation (a merge patch of the status subresource, apart from
    /// the conditions the verification applies), if it changed.
    async fn write(&mut self) -> Result<()> {
        if self.written.as_ref() == Some(&self.status) {
            return Ok(());
        }
        let mut value = serde_json::to_value(&self.status).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            // Merge patch: a field the new status lacks is removed only when named as null.
            for field in [
                "phase",
                "startedAt",
                "tokenSince",
                "nextRotationAt",
                "promoteAfter",
                "previousUntil",
                "trigger",
                "message",
            ] {
                object.entry(field).or_insert(serde_json::Value::Null);
            }
        }
        let patch = serde_json::json!({"status": {"credentialRotation": value}});
        let params = PatchParams { field_manager: Some(format!("{FIELD_MANAGER}-rotation")), ..Default::default() };
        self.account
            .api(self.ctx.client.clone())
            .patch_status(&self.account.name_any(), &params, &Patch::Merge(&patch))
            .await
            .map_err(Error::kube("write the auth token rotation status"))?;
        self.written = Some(self.status.clone());
        Ok(())
    }
}

/// A Secret data value as the API server takes it (base64).
fn base64_encode(bytes: &[u8]) -> String {
    serde_json::to_value(ByteString(bytes.to_vec())).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// The rotation to drive for `account`: its spec's, or, when the spec no longer asks for one but
/// a rotation is in progress, one with the defaults (no deliverTo, no targets) that finishes it.
pub fn wanted<A: AccountResource>(account: &A) -> Option<CredentialRotationSpec> {
    if let Some(spec) = account.credential_rotation() {
        return Some(spec.clone());
    }
    let running =
        account.account_status().and_then(|s| s.credential_rotation.as_ref()).is_some_and(|s| s.phase.is_some());
    running.then(|| serde_json::from_value(serde_json::json!({})).ok()).flatten()
}
