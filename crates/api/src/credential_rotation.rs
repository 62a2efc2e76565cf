//! Auth token rotation, for accounts whose credential is the auth token: `spec.credentialRotation`
//! of a TwilioAccount or ClusterTwilioAccount, and what `status.credentialRotation` records of it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{DEFAULT_ACCOUNT_SID_KEY, DEFAULT_AUTH_TOKEN_KEY, DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, WorkloadKind};

/// When and how the account's auth token is replaced by a new one, with no downtime: the new
/// token is made as Twilio's secondary token, stored in the credentials Secret, delivered to the
/// Secrets of deliverTo (next to the current one), the targets restarted and waited for, and only
/// then promoted (the old token stops working) and, after gracePeriod, removed from deliverTo.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.interval) || (duration(self.interval) >= duration('1h') && duration(self.interval) <= duration('87600h'))",
        "message": "spec.credentialRotation.interval must be between 1h and 87600h"
    },
    {
        "rule": "!has(self.gracePeriod) || duration(self.gracePeriod) <= duration('720h')",
        "message": "spec.credentialRotation.gracePeriod must be at most 720h"
    }
]))]
pub struct CredentialRotationSpec {
    /// Rotate when the auth token has been the primary this long, e.g. "2160h" (90 days). A
    /// duration of at most 32 characters in units ms, s, m and h, from 1h to 87600h. Absent: only
    /// trigger rotates. The operator cannot ask Twilio how old a token is: the first token is
    /// counted from when the operator first saw the account with this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub interval: Option<String>,
    /// Any change of this value rotates the auth token once (GitOps-friendly); the value the
    /// account had when the operator first saw this field rotates nothing. At most 253 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub trigger: Option<String>,
    /// How long the old token keeps working once the new one is delivered: the promotion waits
    /// this long (and for every target's rollout), so that consumers that read the Secret as a
    /// file (updated by the kubelet within a minute or so) have the new token first. The
    /// Secrets of deliverTo then keep the old token (under `<authTokenKey>_PREVIOUS`) as long
    /// again, for webhooks Twilio signed with it before. Default "10m"; from 0s to 720h.
    #[serde(default = "default_grace_period")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub grace_period: String,
    /// The Secrets, in the credentials Secret's namespace, that consumers read the auth token
    /// from; at most 16. Each is created (or must already be the account's: one the operator made
    /// for it), and holds the account SID and the current token at all times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub deliver_to: Vec<CredentialDelivery>,
    /// Workloads, in the credentials Secret's namespace, restarted once the new token is delivered
    /// (so that they read it); the token is promoted only once every one has rolled out. At most
    /// 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub rollout_restart_targets: Vec<CredentialRestartTarget>,
}

fn default_grace_period() -> String {
    "10m".into()
}

/// A Secret that consumers read the account's auth token from.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialDelivery {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: String,
    /// Data key of the token consumers call Twilio with. Default TWILIO_AUTH_TOKEN. During a
    /// rotation, `<authTokenKey>_PREVIOUS` holds the token Twilio may still sign webhooks with.
    #[serde(default = "default_auth_token_key")]
    #[schemars(length(min = 1, max = 200), regex(pattern = DATA_KEY_PATTERN))]
    pub auth_token_key: String,
    /// Data key of the account SID. Default TWILIO_ACCOUNT_SID.
    #[serde(default = "default_account_sid_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DATA_KEY_PATTERN))]
    pub account_sid_key: String,
}

/// A Secret data key: letters, digits, '-', '_' and '.'.
const DATA_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

fn default_auth_token_key() -> String {
    DEFAULT_AUTH_TOKEN_KEY.into()
}

fn default_account_sid_key() -> String {
    DEFAULT_ACCOUNT_SID_KEY.into()
}

/// A workload restarted when the auth token rotates.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRestartTarget {
    /// Deployment, StatefulSet, DaemonSet or Rollout (Argo Rollouts).
    pub kind: WorkloadKind,
    /// The workload's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// Where an auth token rotation stands; each step is recorded before the next starts.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CredentialRotationPhase {
    /// A secondary token is being made (one made before a crash is replaced).
    Creating,
    /// The credentials Secret holds the secondary under `<authTokenKey>_NEXT`.
    Stored,
    /// deliverTo holds it and the targets were restarted; waiting for their rollouts.
    Delivered,
    /// Twilio promoted it: the old token no longer works; the credentials Secret is being updated.
    Promoted,
    /// The new token is the only one; deliverTo keeps the old one until previousUntil.
    Retiring,
}

/// What the operator knows of the account's auth token rotation.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialRotationStatus {
    /// The rotation in progress; absent when none is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CredentialRotationPhase>,
    /// When the rotation in progress started (RFC 3339); the targets' restart carries this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Since when the current auth token has been the primary, as far as the operator knows
    /// (its promotion, or when the operator first saw the account with credentialRotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_since: Option<String>,
    /// When the next scheduled rotation is due (interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_at: Option<String>,
    /// The earliest the delivered token may be promoted (its delivery and gracePeriod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_after: Option<String>,
    /// When deliverTo loses the previous token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_until: Option<String>,
    /// The spec.credentialRotation.trigger value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// How many rotations finished.
    #[serde(default)]
    #[schemars(with = "i64")]
    pub rotations: u32,
    /// What the rotation waits for, or why the last one stopped (never a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
