//! The custom resources of the operator, group `twilio-operator.dev`, version `v1alpha1`.
//!
//! Doc comments on fields become the descriptions users read in `kubectl explain`, so they are
//! written for users. Every field, with its type, default and validation, is listed in
//! `docs/reference.md` (generated from these types by [`reference`]); what the operator does on
//! each change is the contract in `docs/behaviour.md`.

pub mod conditions;
pub mod credential_rotation;
pub mod duration;
pub mod ownership;
pub mod reference;
pub mod subaccount;
pub mod text;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::jiff::SignedDuration;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use credential_rotation::{
    CredentialDelivery, CredentialRestartTarget, CredentialRotationPhase, CredentialRotationSpec,
    CredentialRotationStatus,
};
pub use subaccount::{
    SUBACCOUNT_ANNOTATION, SubaccountDeletionPolicy, TwilioSubaccount, TwilioSubaccountSpec, TwilioSubaccountStatus,
};

pub const GROUP: &str = "twilio-operator.dev";
pub const FINALIZER: &str = "twilio-operator.dev/cleanup";
pub const FIELD_MANAGER: &str = "twilio-operator";
/// On a TwilioApiKey: any new value rotates the key once.
pub const ROTATE_ANNOTATION: &str = "twilio-operator.dev/rotate";
/// On a delivered Secret: the SID of the key the operator wrote into it.
pub const KEY_SID_ANNOTATION: &str = "twilio-operator.dev/key-sid";
/// On a delivered Secret: the data keys the operator wrote (account SID, key SID, key secret).
pub const DATA_KEYS_ANNOTATION: &str = "twilio-operator.dev/data-keys";
/// On a delivered Secret: a fingerprint of spec.secret as it was written.
pub const TEMPLATE_ANNOTATION: &str = "twilio-operator.dev/template";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "twilio-operator";
/// Prefix of the friendly name a key carries in Twilio from its creation until it is recorded in
/// the resource's status; the rest is the resource's UID. Only this resource can have created a
/// key with that name, which is what lets the operator prove a key is its own.
pub const PENDING_FRIENDLY_NAME_PREFIX: &str = "twilio-operator:pending:";

pub const DEFAULT_ACCOUNT_SID_KEY: &str = "TWILIO_ACCOUNT_SID";
pub const DEFAULT_API_KEY_SID_KEY: &str = "TWILIO_API_KEY";
pub const DEFAULT_API_KEY_SECRET_KEY: &str = "TWILIO_API_SECRET";
pub const DEFAULT_AUTH_TOKEN_KEY: &str = "TWILIO_AUTH_TOKEN";

const ACCOUNT_SID_PATTERN: &str = "^AC[0-9a-fA-F]{32}$";
const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
/// A DNS-1123 subdomain, as Kubernetes requires for a Secret's name (the length is bounded apart).
const DNS_SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A label value as Kubernetes allows it: empty, or up to 63 of these characters.
const SECRET_TYPE_PATTERN: &str = r"^[A-Za-z0-9][-A-Za-z0-9._/]*$";
const LABEL_VALUE_PATTERN: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";
/// "HH:MM" on a 24-hour clock.
const CLOCK_TIME_PATTERN: &str = r"^([01][0-9]|2[0-3]):[0-5][0-9]$";

/// The desired state of a TwilioApiKey. A spec holds at most 32 KiB in all (as JSON); a larger
/// one is not acted on (Stalled, InvalidSpec), so that what a tenant writes bounds what the
/// operator holds in memory.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "twilio-operator.dev",
    version = "v1alpha1",
    kind = "TwilioApiKey",
    doc = "One Twilio API key whose SID and secret the operator delivers into a Kubernetes Secret.",
    namespaced,
    status = "TwilioApiKeyStatus",
    shortname = "twkey",
    category = "twilio",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Key SID","type":"string","jsonPath":".status.keySid"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.keyType"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".status.secretName"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.keyType == 'Restricted' ? has(self.policy) : !has(self.policy)",
        "message": "spec.policy is required when spec.keyType is Restricted, and forbidden otherwise"
    },
    {
        "rule": "!has(self.secret) || !has(self.secret.keys) || (self.secret.keys.accountSid != self.secret.keys.apiKeySid && self.secret.keys.accountSid != self.secret.keys.apiKeySecret && self.secret.keys.apiKeySid != self.secret.keys.apiKeySecret)",
        "message": "spec.secret.keys must name three different data keys"
    },
    {
        "rule": format!("!has(self.friendlyName) || !self.friendlyName.startsWith('{PENDING_FRIENDLY_NAME_PREFIX}')"),
        "message": format!("spec.friendlyName must not start with {PENDING_FRIENDLY_NAME_PREFIX:?}, which the operator reserves for keys it has not recorded yet")
    }
]))]
pub struct TwilioApiKeySpec {
    /// The TwilioAccount (same namespace) or ClusterTwilioAccount whose account the key is created in.
    pub account_ref: AccountRef,
    /// The key's name in Twilio. Defaults to "<namespace>/<name>". Twilio allows at most 64 characters.
    /// It must not start with "twilio-operator:pending:": the operator names a key so from its
    /// creation until it is recorded in the status, to prove the key is its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub friendly_name: Option<String>,
    /// Standard (default) or Restricted. Main keys cannot be created through Twilio's API.
    #[serde(default)]
    pub key_type: KeyType,
    /// The permissions of a Restricted key. Required when keyType is Restricted, forbidden otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<KeyPolicy>,
    /// Where the key's SID and secret are written.
    #[serde(default)]
    pub secret: SecretTemplate,
    /// When the key is replaced by a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationSpec>,
    /// true: delete every key of this resource in Twilio and delete the Secret. Setting it back to
    /// false issues a new key.
    #[serde(default)]
    pub revoked: bool,
    /// true: make no calls to Twilio and no writes, except that deletion still cleans up.
    #[serde(default)]
    pub suspend: bool,
    /// What happens to the Twilio key and the Secret when this resource is deleted: Delete
    /// (default) removes both; Orphan keeps both and hands the Secret over (it loses the marks
    /// that made it this resource's). In a namespace that is being deleted, Orphan deletes too.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Workloads in this namespace that consume the Secret, at most 32 entries, each naming one
    /// workload or selecting workloads by their labels. When the key is rotated, each is
    /// restarted (a Deployment, StatefulSet or DaemonSet as `kubectl rollout restart` does, an
    /// annotation on its Pod template; an Argo Rollout through its spec.restartAt), and the old
    /// key stays valid until every one of them has finished rolling out and
    /// rotation.gracePeriod has passed after that (for Pods still terminating), but never past
    /// rotation.maxGracePeriod. A selector is matched once per rotation; status.rollout lists
    /// what it matched, and the old key waits for exactly those. Keys rotated together that
    /// share a workload restart it once (see --rollout-restart-delay).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "atomic"))]
    pub rollout_restart_targets: Vec<RolloutRestartTarget>,
}

/// A workload that reads the delivered Secret and is restarted when the key is rotated: named,
/// or selected by labels.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.name) != has(self.selector)",
        "message": "a rolloutRestartTargets entry sets either name (one workload) or selector (the workloads whose labels match), not both"
    }
]))]
pub struct RolloutRestartTarget {
    /// Deployment, StatefulSet, DaemonSet (apps/v1) or Rollout (argoproj.io/v1alpha1, Argo
    /// Rollouts; the operator needs the chart's rbac.argoRollouts to restart one).
    pub kind: WorkloadKind,
    /// The workload's name, in the resource's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: Option<String>,
    /// The workloads of this kind, in the resource's namespace, whose labels match. Matched when
    /// a rotation restarts its targets; at most 32 workloads are restarted and waited for per
    /// rotation (more is reported, and the rest are not restarted). An empty selector matches
    /// every workload of the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// The kinds of workload the operator restarts.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    /// An Argo Rollout (argoproj.io/v1alpha1).
    Rollout,
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Rollout => "Rollout",
        })
    }
}

/// A reference to the account a key is created in.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountRef {
    /// Name of the TwilioAccount or ClusterTwilioAccount.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// TwilioAccount (default; in the key's own namespace) or ClusterTwilioAccount.
    #[serde(default)]
    pub kind: AccountKind,
}

/// The kind of account resource a key refers to.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AccountKind {
    #[default]
    TwilioAccount,
    ClusterTwilioAccount,
}

/// The type of a Twilio API key.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum KeyType {
    #[default]
    Standard,
    Restricted,
}

/// The permissions of a Restricted key.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct KeyPolicy {
    /// Permissions the key is granted, such as "/twilio/messaging/messages/create" (1 to 100,
    /// each 1 to 256 characters).
    #[schemars(length(min = 1, max = 100), inner(length(min = 1, max = 256)))]
    pub allow: Vec<String>,
}

/// Name, data keys and metadata of the Secret a key is delivered into.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": format!("!has(self.labels) || (!('{MANAGED_BY_LABEL}' in self.labels) && self.labels.all(k, !k.startsWith('{GROUP}/')))"),
        "message": format!("spec.secret.labels must not set {MANAGED_BY_LABEL} or keys under {GROUP}/, which the operator writes itself")
    },
    {
        "rule": format!("!has(self.annotations) || self.annotations.all(k, !k.startsWith('{GROUP}/'))"),
        "message": format!("spec.secret.annotations must not set keys under {GROUP}/, which the operator writes itself")
    }
]))]
pub struct SecretTemplate {
    /// Name of the Secret, in the resource's namespace. Defaults to the resource's name. A DNS
    /// subdomain, as Kubernetes requires: at most 253 lowercase letters, digits, '-' and '.',
    /// starting and ending with a letter or digit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: Option<String>,
    /// Data keys the account SID, key SID and key secret are written under.
    #[serde(default)]
    pub keys: SecretKeys,
    /// Labels added to the Secret, at most 64. The resource's own labels are never copied. Keys
    /// and values follow Kubernetes' rules for labels (a key is an optional DNS subdomain prefix
    /// and '/', then a name of at most 63 letters, digits, '-', '_' and '.'; a value is empty or
    /// such a name). app.kubernetes.io/managed-by and keys under twilio-operator.dev/ are set by
    /// the operator and refused here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 64,
        "additionalProperties" = {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE_PATTERN}
    ))]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the Secret, at most 64, each value at most 4096 characters. Keys
    /// follow Kubernetes' rules for annotation keys (those of label keys); keys under
    /// twilio-operator.dev/ are set by the operator and refused here. Like every part of the spec,
    /// they count toward the 32 KiB a whole spec may hold.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 64,
        "additionalProperties" = {"type": "string", "maxLength": 4096}
    ))]
    pub annotations: BTreeMap<String, String>,
    /// true: an existing Secret of this name that no other resource owns, holding a key SID and
    /// secret (under `keys`) that authenticate to Twilio in this resource's account, is adopted
    /// instead of conflicting: the key is then managed as if this resource had created it
    /// (renamed, re-scoped, rotated and deleted). The proof is a call to Twilio made with that
    /// very pair; nothing is adopted on what the Secret claims alone. Only a resource that has no
    /// key yet adopts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
    /// The Secret's type; Opaque when not set. Kubernetes checks the data a type requires (e.g.
    /// kubernetes.io/basic-auth wants username or password, which `template.data` can provide).
    /// A Secret's type cannot change: if the Secret exists with another type, the resource stalls
    /// (SecretRejected) until that Secret is deleted, which rotates the key.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_TYPE_PATTERN))]
    pub secret_type: Option<String>,
    /// Extra data entries, rendered from the key's values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SecretDataTemplate>,
}

/// Extra data entries of the Secret, each a minijinja template (Jinja2 syntax) over accountSid,
/// apiKeySid, apiKeySecret, region, edge (empty when the account sets none) and friendlyName.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretDataTemplate {
    /// Data key to template, at most 32 entries of at most 8 KiB each (and, with the rest of the
    /// spec, at most 32 KiB in all). Keys are Secret data keys
    /// (letters, digits, '-', '_' and '.'), other than the three of `keys`. For example
    /// `TWILIO_ENV: "TWILIO_API_KEY={{ apiKeySid }}\nTWILIO_API_SECRET={{ apiKeySecret }}"`, or a JSON
    /// document with `{{ apiKeySecret | tojson }}`. Unknown variables are errors, found before any
    /// call to Twilio; loops are bounded.
    #[serde(default)]
    #[schemars(extend(
        "maxProperties" = 32,
        "additionalProperties" = {"type": "string", "maxLength": 8192}
    ))]
    pub data: BTreeMap<String, String>,
}

/// Data keys of the delivered Secret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeys {
    /// Data key for the account SID. Default TWILIO_ACCOUNT_SID.
    #[serde(default = "default_account_sid_key")]
    #[schemars(length(min = 1, max = 253))]
    pub account_sid: String,
    /// Data key for the API key SID. Default TWILIO_API_KEY.
    #[serde(default = "default_api_key_sid_key")]
    #[schemars(length(min = 1, max = 253))]
    pub api_key_sid: String,
    /// Data key for the API key secret. Default TWILIO_API_SECRET.
    #[serde(default = "default_api_key_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub api_key_secret: String,
}

impl Default for SecretKeys {
    fn default() -> Self {
        Self {
            account_sid: default_account_sid_key(),
            api_key_sid: default_api_key_sid_key(),
            api_key_secret: default_api_key_secret_key(),
        }
    }
}

fn default_account_sid_key() -> String {
    DEFAULT_ACCOUNT_SID_KEY.into()
}
fn default_api_key_sid_key() -> String {
    DEFAULT_API_KEY_SID_KEY.into()
}
fn default_api_key_secret_key() -> String {
    DEFAULT_API_KEY_SECRET_KEY.into()
}

/// When a key is replaced by a new one.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.gracePeriod) || duration(self.gracePeriod) <= duration('720h')",
        "message": "spec.rotation.gracePeriod must be at most 720h"
    },
    {
        "rule": "!has(self.interval) || (duration(self.interval) >= duration('1m') && duration(self.interval) <= duration('87600h'))",
        "message": "spec.rotation.interval must be between 1m and 87600h"
    },
    {
        "rule": "!has(self.interval) || duration(self.interval) >= duration(has(self.gracePeriod) ? self.gracePeriod : '10m')",
        "message": "spec.rotation.interval must be at least spec.rotation.gracePeriod (default 10m)"
    },
    {
        "rule": "!has(self.maxGracePeriod) || duration(self.maxGracePeriod) <= duration('720h')",
        "message": "spec.rotation.maxGracePeriod must be at most 720h"
    },
    {
        "rule": "!has(self.maxGracePeriod) || duration(self.maxGracePeriod) >= duration(has(self.gracePeriod) ? self.gracePeriod : '10m')",
        "message": "spec.rotation.maxGracePeriod must be at least spec.rotation.gracePeriod (default 10m)"
    }
]))]
pub struct RotationSpec {
    /// Rotate when the current key is older than this, e.g. "720h". A duration of at most 32
    /// characters in units ms, s, m and h ("1h30m", "1.5h"). From 1m to 87600h (10 years), and at
    /// least gracePeriod, so that a key is not replaced while the one before it is still retiring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub interval: Option<String>,
    /// How long the old key stays valid after a rotation before it is deleted. Default "10m". A
    /// duration as for interval, from 0s to 720h (30 days).
    #[serde(default = "default_grace_period")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub grace_period: String,
    /// Any change of this value rotates the key once (GitOps-friendly). At most 253 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub trigger: Option<String>,
    /// With rolloutRestartTargets: the longest an old key stays valid after a rotation while it
    /// waits for the targets to finish rolling out; it is deleted then, finished or not. A
    /// duration as for interval, from gracePeriod to 720h. Default "24h" (or gracePeriod, if
    /// that is longer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub max_grace_period: Option<String>,
    /// When scheduled rotations (interval) may start, at most 16 windows; absent: at any time. A
    /// key due outside every window is rotated when the next one opens (status.nextRotationAt
    /// and status.nextWindowAt say when). Repairs (a Secret lost or altered, a key deleted in
    /// Twilio) and asked rotations (trigger, the rotate annotation, a new keyType or account)
    /// are never held back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub windows: Vec<RotationWindow>,
    /// How many keys status.history lists (the current one and those before it), 0 to 20.
    /// Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<i64>", extend("minimum" = 0, "maximum" = 20))]
    pub history_limit: Option<u8>,
}

/// A time of the week in which scheduled rotations may start, e.g. `{days: [Sat, Sun], start:
/// "02:00", end: "05:00", timeZone: Europe/Berlin}`. A window that ends at or before its start
/// runs past midnight, into the next day.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationWindow {
    /// The days the window starts on (in timeZone). Absent: every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7), extend("x-kubernetes-list-type" = "set"))]
    pub days: Vec<Weekday>,
    /// When the window opens, "HH:MM" (24-hour clock, in timeZone).
    #[schemars(regex(pattern = CLOCK_TIME_PATTERN))]
    pub start: String,
    /// When the window closes, "HH:MM"; at or before start: on the next day.
    #[schemars(regex(pattern = CLOCK_TIME_PATTERN))]
    pub end: String,
    /// An IANA time zone, e.g. "Europe/Berlin". Default "UTC". Daylight saving time is followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
}

/// A day of the week.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

fn default_grace_period() -> String {
    "10m".into()
}

/// What happens in Twilio and to the Secret when the resource is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Orphan,
}

/// The observed state of a TwilioApiKey.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwilioApiKeyStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled, as kstatus and `kubectl wait` understand them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// SID of the key currently delivered in the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_sid: Option<String>,
    /// Type of the current key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<KeyType>,
    /// Account the current key belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_sid: Option<String>,
    /// The account resource the current key was created through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_ref: Option<AccountRef>,
    /// The Twilio Region of the current key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The current key's name in Twilio, as the operator names it: a key is created under a pending
    /// name and renamed right after it is recorded here; a name changed in Twilio is set back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    /// The current key's policy in Twilio, as last applied (Restricted keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<KeyPolicy>,
    /// Name of the Secret the key is delivered into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// A Secret this resource delivered into under an earlier spec.secret.name, deleted as soon as
    /// the API server allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_secret_name: Option<String>,
    /// When the current key was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_created_at: Option<String>,
    /// When the current key is due for rotation, if rotation.interval is set (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_at: Option<String>,
    /// The rotation.trigger value the current key was created for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_trigger: Option<String>,
    /// The twilio-operator.dev/rotate annotation value the current key was created for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotate_annotation: Option<String>,
    /// Old keys inside their grace period, deleted in Twilio after deleteAfter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring_keys: Vec<RetiringKey>,
    /// The rollout restart targets the retiring keys wait for: each was restarted after the new
    /// key was written, and is complete once all its Pods run a template with that restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollout: Vec<RolloutTargetStatus>,
    /// With spec.rotation.windows: when the next window opens (RFC 3339), after the one open
    /// now, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window_at: Option<String>,
    /// The latest keys of this resource, oldest first, the current one last: at most
    /// spec.rotation.historyLimit (default 5). A record for people; the operator never acts on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<KeyHistoryEntry>,
}

/// One key of a resource, from its creation to its deletion.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyHistoryEntry {
    /// The key's SID.
    pub sid: String,
    /// Why the key was made: Created (the first key), Adopted, Recorded (found delivered after an
    /// interrupted pass), or the cause of the rotation that made it (TriggerChanged,
    /// RotateAnnotation, IntervalElapsed, KeyTypeChanged, AccountChanged, SecretDrift, KeyMissing).
    pub reason: String,
    /// When the key was delivered into the Secret (RFC 3339).
    pub delivered_at: String,
    /// When a newer key replaced it in the Secret (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
    /// When the operator deleted it in Twilio (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    /// Why it was deleted then: GracePeriodEnded, RolledOut (its grace period had ended and the
    /// rollout restart targets had rolled out), MaxGracePeriod (they had not), RetiringLimit
    /// (--max-retiring-keys), or Revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_because: Option<String>,
}

/// How far a rollout restart target is after a rotation.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutTargetStatus {
    pub kind: WorkloadKind,
    /// The workload's name; empty for a selector not matched yet, or one that matched nothing.
    #[serde(default)]
    pub name: String,
    /// The label selector (as `kubectl get -l` writes it) that matched the workload at the
    /// rotation; absent for a target named in the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Whether every Pod of the workload runs a template that includes the restart.
    pub complete: bool,
    /// When the operator restarted the workload (RFC 3339); absent until it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
    /// What the rollout is waiting for, or why the workload could not be restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How many restarts in a row failed because the workload is missing or may not be patched.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(with = "i64")]
    pub restart_failures: u32,
    /// After a failed restart: when the operator tries again (RFC 3339), backing off from 5s to 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_restart_at: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A replaced key that stays valid until its grace period ends.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetiringKey {
    /// SID of the old key.
    pub sid: String,
    /// When the old key is deleted in Twilio (RFC 3339).
    pub delete_after: String,
    /// The account resource the old key was created through, whose credential deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_ref: Option<AccountRef>,
    /// The account the old key belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_sid: Option<String>,
    /// With rollout restart targets: the key waits past deleteAfter until every target has
    /// rolled out, and is deleted at this time (RFC 3339) at the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_by: Option<String>,
}

/// The desired state of a TwilioAccount.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "twilio-operator.dev",
    version = "v1alpha1",
    kind = "TwilioAccount",
    doc = "A Twilio account, and the credential the operator uses in it, for keys in this namespace.",
    namespaced,
    status = "TwilioAccountStatus",
    shortname = "twacct",
    category = "twilio",
    printcolumn = r#"{"name":"Account SID","type":"string","jsonPath":".spec.accountSid"}"#,
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TwilioAccountSpec {
    /// The account (or subaccount) keys are created in, "AC" followed by 32 hex digits.
    #[schemars(regex(pattern = ACCOUNT_SID_PATTERN))]
    pub account_sid: String,
    /// Twilio Region: us1 (default), ie1, au1, jp1, ... Selects {product}.{edge}.{region}.twilio.com.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[a-z]{2}[0-9]$"))]
    pub region: Option<String>,
    /// Twilio edge location; defaults to the Region's default edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = "^[a-z][a-z-]*$"))]
    pub edge: Option<String>,
    /// The Secret, in this namespace, that holds the operator's credential for the account.
    pub credentials_secret_ref: CredentialsSecretRef,
    /// Whether TwilioApiKeys of this account may take over existing keys (spec.secret.adopt):
    /// Allowed (default for a TwilioAccount) or Disallowed. Adopting a key makes the operator
    /// manage it, and so able to delete it, on the strength of holding its secret.
    #[serde(default = "adoption_allowed")]
    pub adoption: Adoption,
    /// Rotates the account's auth token (only when the credential is the auth token): see
    /// docs/behaviour.md, "Auth token rotation".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_rotation: Option<CredentialRotationSpec>,
}

/// The desired state of a ClusterTwilioAccount.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "twilio-operator.dev",
    version = "v1alpha1",
    kind = "ClusterTwilioAccount",
    doc = "A Twilio account, and the credential the operator uses in it, for keys in the namespaces it allows.",
    status = "TwilioAccountStatus",
    shortname = "ctwacct",
    category = "twilio",
    printcolumn = r#"{"name":"Account SID","type":"string","jsonPath":".spec.accountSid"}"#,
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterTwilioAccountSpec {
    /// The account (or subaccount) keys are created in, "AC" followed by 32 hex digits.
    #[schemars(regex(pattern = ACCOUNT_SID_PATTERN))]
    pub account_sid: String,
    /// Twilio Region: us1 (default), ie1, au1, jp1, ... Selects {product}.{edge}.{region}.twilio.com.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[a-z]{2}[0-9]$"))]
    pub region: Option<String>,
    /// Twilio edge location; defaults to the Region's default edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = "^[a-z][a-z-]*$"))]
    pub edge: Option<String>,
    /// The Secret that holds the operator's credential for the account.
    pub credentials_secret_ref: ClusterCredentialsSecretRef,
    /// Namespaces whose TwilioApiKeys may use this account. Absent: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<AllowedNamespaces>,
    /// Whether TwilioApiKeys of this account may take over existing keys (spec.secret.adopt):
    /// Allowed or Disallowed (default for a ClusterTwilioAccount). Adopting a key makes the
    /// operator manage it, and so able to delete it, on the strength of holding its secret: on an
    /// account that tenants share, a cluster administrator decides.
    #[serde(default = "adoption_disallowed")]
    pub adoption: Adoption,
    /// Rotates the account's auth token (only when the credential is the auth token): see
    /// docs/behaviour.md, "Auth token rotation". deliverTo and rolloutRestartTargets are in the
    /// credentials Secret's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_rotation: Option<CredentialRotationSpec>,
}

/// Whether keys of an account may be adopted (spec.secret.adopt).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Adoption {
    Allowed,
    Disallowed,
}

fn adoption_allowed() -> Adoption {
    Adoption::Allowed
}

fn adoption_disallowed() -> Adoption {
    Adoption::Disallowed
}

/// Where a TwilioAccount's credential is stored (a Secret in the account's namespace).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(flatten)]
    pub keys: CredentialKeys,
}

/// Where a ClusterTwilioAccount's credential is stored.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCredentialsSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Secret.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    #[serde(flatten)]
    pub keys: CredentialKeys,
}

/// Data keys of a credentials Secret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialKeys {
    /// Data key of the auth token, used with accountSid as HTTP Basic. Default TWILIO_AUTH_TOKEN.
    #[serde(default = "default_auth_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub auth_token_key: String,
    /// Data key of a Main key's SID. When the Secret holds a Main key SID and secret and no auth
    /// token, the Main key is used. Default TWILIO_API_KEY.
    #[serde(default = "default_api_key_sid_key")]
    #[schemars(length(min = 1, max = 253))]
    pub api_key_sid_key: String,
    /// Data key of a Main key's secret. Default TWILIO_API_SECRET.
    #[serde(default = "default_api_key_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub api_key_secret_key: String,
}

fn default_auth_token_key() -> String {
    DEFAULT_AUTH_TOKEN_KEY.into()
}

/// Namespaces allowed to use a ClusterTwilioAccount: listed by name or matched by a selector.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedNamespaces {
    /// Namespaces allowed by name, at most 1024.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024), inner(length(min = 1, max = 63)))]
    pub namespaces: Vec<String>,
    /// Namespaces allowed by their labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// The observed state of a TwilioAccount or ClusterTwilioAccount.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwilioAccountStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready is True once the credential was verified by an authenticated call to Twilio.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// What the operator acts with in the account: AuthToken (the account's auth token, which
    /// can do everything in the account) or MainKey (a Main API key from the credentials
    /// Secret, which keeps the auth token out of the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialKind>,
    /// The keys in the account at its latest listing, and who manages them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<AccountKeys>,
    /// The auth token's rotation (spec.credentialRotation), written step by step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_rotation: Option<CredentialRotationStatus>,
}

/// The kind of credential the operator acts with in an account.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CredentialKind {
    AuthToken,
    MainKey,
}

/// The keys of an account as its latest listing (at each verification of its credential) showed
/// them; written only when they change, so that an idle account costs no writes. Report only:
/// the operator never deletes a key it cannot prove it created.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountKeys {
    /// Keys that a TwilioApiKey of this cluster (in the namespaces the operator watches) records,
    /// current or retiring.
    #[schemars(with = "i64")]
    pub managed: u32,
    /// Keys that no TwilioApiKey here records and that carry no pending name: made in the
    /// Console (Main keys among them), by another tool, or by a resource that is gone.
    #[schemars(with = "i64")]
    pub unmanaged: u32,
    /// Keys under a pending name ("twilio-operator:pending:<uid>") that no resource here
    /// records: being created right now, or by an operator in another cluster on this account.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(with = "i64")]
    pub pending: u32,
    /// The unmanaged and pending keys, oldest first, at most 20 (`kubectl twilio keys` shows
    /// them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_managed: Vec<UnmanagedKey>,
}

/// A key of the account that no TwilioApiKey here records.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnmanagedKey {
    pub sid: String,
    /// Its name in Twilio (at most 64 characters, control characters replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    /// When Twilio created it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// It carries a pending name: an operator is creating it (here, or in another cluster).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

impl TwilioApiKey {
    /// The name the key carries in Twilio.
    pub fn desired_friendly_name(&self) -> String {
        self.spec.friendly_name.clone().unwrap_or_else(|| {
            format!(
                "{}/{}",
                self.metadata.namespace.as_deref().unwrap_or_default(),
                self.metadata.name.as_deref().unwrap_or_default()
            )
        })
    }

    /// The name a key carries in Twilio from its creation until the status records it: it holds
    /// this resource's UID, which is what proves, later, that the key is this resource's own.
    pub fn pending_friendly_name(&self) -> String {
        format!("{PENDING_FRIENDLY_NAME_PREFIX}{}", self.metadata.uid.as_deref().unwrap_or_default())
    }

    /// The name of the Secret the key is delivered into.
    pub fn desired_secret_name(&self) -> String {
        self.spec.secret.name.clone().unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }

    /// The policy the key has in Twilio: the spec's, for a Restricted key (a Standard key has none).
    pub fn restricted_policy(&self) -> Option<&KeyPolicy> {
        self.spec.policy.as_ref().filter(|_| self.spec.key_type == KeyType::Restricted)
    }

    /// How many keys status.history lists: `spec.rotation.historyLimit`, 5 by default, at most 20.
    pub fn history_limit(&self) -> usize {
        let limit = self.spec.rotation.as_ref().and_then(|r| r.history_limit);
        limit.map_or(DEFAULT_HISTORY_LIMIT, |l| usize::from(l).min(20))
    }

    /// How long a replaced key stays valid: `spec.rotation.gracePeriod`, 10 minutes by default.
    pub fn grace_period(&self) -> SignedDuration {
        let grace = self
            .spec
            .rotation
            .as_ref()
            .and_then(|r| duration::parse(&r.grace_period).ok())
            .unwrap_or(DEFAULT_GRACE_PERIOD);
        SignedDuration::try_from(grace).unwrap_or(SignedDuration::from_mins(10))
    }
}

/// How many keys status.history lists when spec.rotation.historyLimit is not set.
pub const DEFAULT_HISTORY_LIMIT: usize = 5;

/// The grace period when the spec sets none.
const DEFAULT_GRACE_PERIOD: std::time::Duration = std::time::Duration::from_secs(600);

/// Twilio key SIDs: "SK" and 32 hexadecimal digits. Anything else is never put into a URL.
pub fn is_key_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.starts_with("SK") && sid[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// The CRDs as YAML documents, keyed by the file name they are committed under in `crds/`.
pub fn crd_documents() -> Vec<(String, String)> {
    use kube::CustomResourceExt;
    [TwilioApiKey::crd(), TwilioAccount::crd(), ClusterTwilioAccount::crd(), TwilioSubaccount::crd()]
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let mut value = serde_json::to_value(&crd).unwrap_or_default();
            drop_null_enum_values(&mut value);
            integral_bounds(&mut value);
            let yaml = serde_yaml::to_string(&value).unwrap_or_default();
            (format!("{name}.yaml"), yaml)
        })
        .collect()
}

/// The CRD type holds `minimum` and `maximum` as floats (`20.0`); an integer field's bounds are
/// written as integers, as a person would write them (and as Helm renders them).
fn integral_bounds(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for key in ["minimum", "maximum"] {
                if let Some(bound) = map.get_mut(key)
                    && let Some(float) = bound.as_f64()
                    && float.fract() == 0.0
                    && float.abs() < 9.0e15
                {
                    *bound = serde_json::Value::from(float as i64);
                }
            }
            map.values_mut().for_each(integral_bounds);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_bounds),
        _ => {}
    }
}

/// schemars lists `null` among the values of an optional enum; the API server rejects such a
/// schema (`nullable: true` already allows null), so it is removed.
fn drop_null_enum_values(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Array(values)) = map.get_mut("enum") {
                values.retain(|v| !v.is_null());
            }
            map.values_mut().for_each(drop_null_enum_values);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_null_enum_values),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_sent_to_twilio_is_the_specs_for_restricted_keys_only() {
        let mut key: TwilioApiKey = serde_json::from_value(serde_json::json!({
            "apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioApiKey",
            "metadata": {"name": "app", "namespace": "team"},
            "spec": {"accountRef": {"name": "main"}, "policy": {"allow": ["/a"]}},
        }))
        .unwrap();
        assert_eq!(key.restricted_policy(), None);
        key.spec.key_type = KeyType::Restricted;
        assert_eq!(key.restricted_policy(), Some(&KeyPolicy { allow: vec!["/a".into()] }));
    }

    #[test]
    fn only_well_formed_sids_reach_a_url() {
        assert!(is_key_sid("SK0123456789abcdef0123456789ABCDEF"));
        for bad in [
            "",
            "SK",
            "SK0123456789abcdef0123456789abcde",
            "AC0123456789abcdef0123456789abcdef",
            "SK0123456789abcdef0123456789abcd/..",
            "SK0123456789abcdef0123456789abcdeg",
        ] {
            assert!(!is_key_sid(bad), "{bad:?}");
        }
    }
}
