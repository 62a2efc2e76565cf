//! `kubectl twilio keys [--account NAME]`: every key in an account, and who manages it. Pure: the
//! account resources and the TwilioApiKeys in; the text out.
//!
//! The managed keys come from the TwilioApiKeys' status (current and retiring keys, by account
//! SID); the others from the account's status, where the operator lists, at each listing of the
//! account, the keys no TwilioApiKey here records (at most 20 of them by SID, all of them
//! counted). Nothing here calls Twilio.

use std::fmt::Write as _;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use twilio_operator_api::{CredentialKind, TwilioAccountStatus, TwilioApiKey};

use crate::table::table;
use crate::time::stamp;

/// An account resource as the command shows it.
pub struct AccountRow {
    /// "TwilioAccount team/main" or "ClusterTwilioAccount shared".
    pub label: String,
    pub account_sid: String,
    pub status: Option<TwilioAccountStatus>,
}

/// One account's keys: a header, then one row per key, managed ones first.
pub fn render_account(account: &AccountRow, resources: &[TwilioApiKey], now: Timestamp) -> String {
    let mut out = String::new();
    let status = account.status.clone().unwrap_or_default();
    let credential = match status.credential {
        Some(CredentialKind::AuthToken) => "the auth token",
        Some(CredentialKind::MainKey) => "a Main key",
        None => "a credential not verified yet",
    };
    let _ = writeln!(out, "{} (account {}, acting with {credential})", account.label, account.account_sid);
    let mut rows = vec![["SID", "MANAGED BY", "SINCE"].map(String::from).to_vec()];
    let mut managed = managed_keys(&account.account_sid, resources);
    managed.sort();
    for (sid, by, since) in managed {
        rows.push(vec![sid, by, since.map_or("-".into(), |t| stamp(&t, now))]);
    }
    match &status.keys {
        None => {
            out.push_str("  not listed yet: the operator lists the account when it verifies its credential\n");
            if rows.len() > 1 {
                out.push_str(&table(&rows, 2));
            }
            return out;
        }
        Some(census) => {
            for key in &census.not_managed {
                let name = key.friendly_name.as_deref().map(|n| format!(" ({n:?})")).unwrap_or_default();
                let by = if key.pending {
                    format!("a pending name: being created, here or by another cluster{name}")
                } else {
                    format!("nobody{name}")
                };
                rows.push(vec![key.sid.clone(), by, key.created_at.as_deref().map_or("-".into(), |t| stamp(t, now))]);
            }
            let _ = writeln!(
                out,
                "  {} managed, {} unmanaged, {} pending (at the latest listing)",
                census.managed, census.unmanaged, census.pending
            );
            out.push_str(&table(&rows, 2));
            let shown = census.not_managed.len() as u64;
            let others = u64::from(census.unmanaged) + u64::from(census.pending);
            if others > shown {
                let _ = writeln!(
                    out,
                    "  ... and {} more not managed here (the status lists the oldest {shown})",
                    others - shown
                );
            }
        }
    }
    out
}

/// The keys TwilioApiKeys record in account `account_sid`: (SID, who, when it was delivered).
fn managed_keys(account_sid: &str, resources: &[TwilioApiKey]) -> Vec<(String, String, Option<String>)> {
    let mut keys = Vec::new();
    for resource in resources {
        let Some(status) = resource.status.as_ref() else { continue };
        let who = format!("TwilioApiKey {}/{}", resource.namespace().unwrap_or_default(), resource.name_any());
        if let Some(sid) = status.key_sid.as_ref().filter(|_| status.account_sid.as_deref() == Some(account_sid)) {
            keys.push((sid.clone(), format!("{who} (current)"), status.key_created_at.clone()));
        }
        for retiring in status.retiring_keys.iter().filter(|r| r.account_sid.as_deref() == Some(account_sid)) {
            let delivered = status.history.iter().find(|h| h.sid == retiring.sid).map(|h| h.delivered_at.clone());
            keys.push((retiring.sid.clone(), format!("{who} (retiring)"), delivered));
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-01-01T01:00:00Z".parse().unwrap()
    }

    fn resource(name: &str, status: serde_json::Value) -> TwilioApiKey {
        serde_json::from_value(json!({
            "apiVersion": "twilio-operator.dev/v1alpha1", "kind": "TwilioApiKey",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"accountRef": {"name": "main"}},
            "status": status
        }))
        .unwrap()
    }

    fn squeeze(text: &str) -> String {
        text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn managed_keys_name_their_resource_and_the_others_say_who_if_anyone() {
        let resources = [
            resource(
                "app",
                json!({"keySid": "SK1", "accountSid": "AC1", "keyCreatedAt": "2026-01-01T00:30:00Z",
                "retiringKeys": [{"sid": "SK0", "deleteAfter": "2026-01-01T01:05:00Z", "accountSid": "AC1"}]}),
            ),
            resource("elsewhere", json!({"keySid": "SK7", "accountSid": "AC2"})),
        ];
        let account = AccountRow {
            label: "TwilioAccount team/main".into(),
            account_sid: "AC1".into(),
            status: Some(
                serde_json::from_value(json!({
                    "credential": "AuthToken",
                    "keys": {"managed": 2, "unmanaged": 3, "pending": 1,
                        "notManaged": [
                            {"sid": "SK5", "friendlyName": "made by hand", "createdAt": "2025-12-01T00:00:00Z"},
                            {"sid": "SK6", "friendlyName": "twilio-operator:pending:u9", "pending": true}
                        ]}
                }))
                .unwrap(),
            ),
        };
        let text = squeeze(&render_account(&account, &resources, now()));
        for expected in [
            "TwilioAccount team/main (account AC1, acting with the auth token)",
            "2 managed, 3 unmanaged, 1 pending (at the latest listing)",
            "SK0 TwilioApiKey team/app (retiring) -",
            "SK1 TwilioApiKey team/app (current) 2026-01-01T00:30:00Z (30m ago)",
            "SK5 nobody (\"made by hand\") 2025-12-01T00:00:00Z",
            "SK6 a pending name: being created, here or by another cluster (\"twilio-operator:pending:u9\") -",
            "... and 2 more not managed here (the status lists the oldest 2)",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("SK7"), "another account's key:\n{text}");
    }

    #[test]
    fn an_account_not_listed_yet_says_so() {
        let account =
            AccountRow { label: "ClusterTwilioAccount shared".into(), account_sid: "AC1".into(), status: None };
        let text = render_account(&account, &[], now());
        assert!(text.contains("acting with a credential not verified yet"), "{text}");
        assert!(text.contains("not listed yet"), "{text}");
    }
}
