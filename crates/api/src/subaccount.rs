//! `TwilioSubaccount`: a Twilio subaccount made from a parent account, its SID and auth token
//! delivered into a Secret, and a TwilioAccount that issues keys in it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{AccountRef, DNS_SUBDOMAIN_PATTERN, PENDING_FRIENDLY_NAME_PREFIX};

/// On a Secret or TwilioAccount the operator made for a TwilioSubaccount: the UID of that
/// TwilioSubaccount. Only what carries it is ever changed or deleted for the subaccount.
pub const SUBACCOUNT_ANNOTATION: &str = "twilio-operator.dev/subaccount";

/// The desired state of a TwilioSubaccount.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "twilio-operator.dev",
    version = "v1alpha1",
    kind = "TwilioSubaccount",
    doc = "A Twilio subaccount of a parent account, for this namespace: its SID and auth token are delivered into a Secret, and a TwilioAccount of the same namespace issues keys in it.",
    namespaced,
    status = "TwilioSubaccountStatus",
    shortname = "twsub",
    category = "twilio",
    printcolumn = r#"{"name":"Account SID","type":"string","jsonPath":".status.accountSid"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TwilioSubaccountSpec {
    /// The parent account the subaccount is made in: a TwilioAccount of this namespace, or a
    /// ClusterTwilioAccount that allows it (at most one TwilioSubaccount per namespace may use a
    /// ClusterTwilioAccount). Its credential must be the parent's auth token or a Main key.
    /// Immutable.
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "spec.parentAccountRef is immutable"}
    ]))]
    pub parent_account_ref: AccountRef,
    /// The subaccount's name in Twilio, at most 64 characters. Default "<namespace>/<name>".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub friendly_name: Option<String>,
    /// The Secret, in this namespace, that receives TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN.
    /// Default: the resource's name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "spec.secretName is immutable"}
    ]))]
    pub secret_name: Option<String>,
    /// The TwilioAccount, in this namespace, that the operator makes for the subaccount (its
    /// credentials are the Secret); TwilioApiKeys name it in spec.accountRef. Default: the
    /// resource's name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "spec.accountName is immutable"}
    ]))]
    pub account_name: Option<String>,
    /// What deleting the resource does to the subaccount: Suspend (default: it stops working and
    /// can be reactivated in the Console; the Secret stays), Orphan (it stays active; the Secret
    /// is handed over) or Close (closed for good, its keys stop working and cannot be brought
    /// back; the Secret is deleted). Its TwilioAccount, and so its keys, go first in every case.
    #[serde(default)]
    pub deletion_policy: SubaccountDeletionPolicy,
}

/// What deleting a TwilioSubaccount does to the subaccount in Twilio.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SubaccountDeletionPolicy {
    #[default]
    Suspend,
    Orphan,
    Close,
}

/// The observed state of a TwilioSubaccount.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TwilioSubaccountStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled, as kstatus and `kubectl wait` understand them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The subaccount's SID, once made and delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_sid: Option<String>,
    /// The subaccount's status in Twilio: active, suspended or closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The parent account's SID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_account_sid: Option<String>,
}

impl TwilioSubaccount {
    /// The subaccount's name in Twilio.
    pub fn desired_friendly_name(&self) -> String {
        self.spec.friendly_name.clone().unwrap_or_else(|| {
            let full = format!(
                "{}/{}",
                self.metadata.namespace.as_deref().unwrap_or_default(),
                self.metadata.name.as_deref().unwrap_or_default()
            );
            full.chars().take(64).collect()
        })
    }

    /// The name the subaccount carries from its creation until the status records it.
    pub fn pending_friendly_name(&self) -> String {
        format!("{PENDING_FRIENDLY_NAME_PREFIX}{}", self.metadata.uid.as_deref().unwrap_or_default())
    }

    pub fn secret_name(&self) -> String {
        self.spec.secret_name.clone().unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }

    pub fn account_name(&self) -> String {
        self.spec.account_name.clone().unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}
