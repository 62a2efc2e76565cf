//! Pure decisions: what the next step for a key is, from the spec, the status and what was
//! observed, and the other choices the executor carries out (which keys are orphans, which go on
//! deletion, which account reaches them). No I/O here, so every rule is unit-tested without a
//! cluster.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::jiff::Timestamp;

use crate::api::ownership::ObservedSecret;
use crate::api::{AccountRef, KeyType, ROTATE_ANNOTATION, RetiringKey, TwilioApiKey, TwilioApiKeyStatus};
use crate::keys::status;
use crate::twilio::Key;

/// What the operator observed for one key.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The Secret that delivers the current key (at status.secretName, or the desired name).
    pub delivering: ObservedSecret,
    /// The Secret at the desired name, when that differs from the delivering one.
    pub target: Option<ObservedSecret>,
    /// The SID of the account the key's accountRef resolves to now.
    pub account_sid: String,
    /// That account's Twilio Region (credentials and keys are per Region).
    pub region: String,
    pub now: Timestamp,
}

/// Why a key is replaced by a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationCause {
    KeyTypeChanged,
    AccountChanged,
    TriggerChanged,
    RotateAnnotation,
    IntervalElapsed,
    /// The Secret is gone or altered, and a secret cannot be read back from Twilio.
    SecretDrift,
    /// The key was deleted in Twilio by someone else.
    KeyMissing,
}

impl RotationCause {
    /// A bounded label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            RotationCause::KeyTypeChanged => "key_type_changed",
            RotationCause::AccountChanged => "account_changed",
            RotationCause::TriggerChanged => "trigger_changed",
            RotationCause::RotateAnnotation => "rotate_annotation",
            RotationCause::IntervalElapsed => "interval_elapsed",
            RotationCause::SecretDrift => "secret_drift",
            RotationCause::KeyMissing => "key_missing",
        }
    }

    /// Whether the rotation repairs something done behind the operator's back (a Warning Event)
    /// rather than carrying out what the spec asks (a Normal one).
    pub fn is_repair(self) -> bool {
        matches!(self, RotationCause::SecretDrift | RotationCause::KeyMissing)
    }

    /// The cause as status.history records it.
    pub fn reason(self) -> &'static str {
        match self {
            RotationCause::KeyTypeChanged => "KeyTypeChanged",
            RotationCause::AccountChanged => "AccountChanged",
            RotationCause::TriggerChanged => "TriggerChanged",
            RotationCause::RotateAnnotation => "RotateAnnotation",
            RotationCause::IntervalElapsed => "IntervalElapsed",
            RotationCause::SecretDrift => "SecretDrift",
            RotationCause::KeyMissing => "KeyMissing",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            RotationCause::KeyTypeChanged => "spec.keyType changed",
            RotationCause::AccountChanged => "the key's account changed",
            RotationCause::TriggerChanged => "spec.rotation.trigger changed",
            RotationCause::RotateAnnotation => "the twilio-operator.dev/rotate annotation changed",
            RotationCause::IntervalElapsed => "spec.rotation.interval elapsed",
            RotationCause::SecretDrift => "the Secret is missing or no longer holds the key as written",
            RotationCause::KeyMissing => "the key no longer exists in Twilio",
        }
    }
}

/// The reason status.history gives a key issued for `cause`: Created for a first key.
pub fn history_reason(cause: Option<RotationCause>) -> &'static str {
    cause.map_or("Created", RotationCause::reason)
}

/// The next thing to do for a live (not deleted, not suspended, valid) key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A Secret of the desired name belongs to someone else: never overwrite it.
    Conflict,
    /// A Secret of the desired name belongs to no resource of this cluster, `spec.secret.adopt`
    /// is set and the resource has no key yet: adopt the key it holds, once proven.
    Adopt,
    /// revoked: delete every key of the resource and its Secret.
    Revoke,
    /// revoked, and nothing is left to delete.
    StayRevoked,
    /// No key yet: create one and deliver it.
    Create,
    /// The Secret delivers a key the status does not record (the status write after a delivery
    /// was lost): record it rather than create another.
    Record(String),
    /// Issue a new key, deliver it, and retire the current one for the grace period.
    Rotate(RotationCause),
    /// Rename the key or replace its policy in Twilio; the secret stays.
    UpdateInPlace,
    /// Write the Secret anew (new name, data keys, labels or annotations); the key stays.
    RewriteSecret,
    /// Everything is delivered.
    UpToDate,
}

/// The key a Secret of the resource delivers and its status does not record, when the plan
/// records such a key (the resource is not revoked, and no foreign Secret holds the desired
/// name): a claim, which observation proves or rejects before the plan is asked.
pub fn unrecorded_claim<'a>(resource: &TwilioApiKey, observed: &'a Observed) -> Option<&'a str> {
    if resource.spec.revoked || observed.target.as_ref().unwrap_or(&observed.delivering) == &ObservedSecret::Foreign {
        return None;
    }
    let current = resource.status.as_ref().and_then(|s| s.key_sid.as_deref());
    match &observed.delivering {
        ObservedSecret::Owned { delivered: Some(sid), .. } if Some(sid.as_str()) != current => Some(sid),
        _ => None,
    }
}

pub fn next_step(resource: &TwilioApiKey, observed: &Observed) -> Step {
    let status = resource.status.clone().unwrap_or_default();
    let current = status.key_sid.as_ref();
    if resource.spec.revoked {
        let owns_secret = matches!(observed.delivering, ObservedSecret::Owned { .. })
            || matches!(observed.target, Some(ObservedSecret::Owned { .. }));
        return if current.is_some() || !status.retiring_keys.is_empty() || owns_secret {
            Step::Revoke
        } else {
            Step::StayRevoked
        };
    }
    if observed.target.as_ref().unwrap_or(&observed.delivering) == &ObservedSecret::Foreign {
        let may_adopt = resource.spec.secret.adopt && current.is_none() && status.retiring_keys.is_empty();
        return if may_adopt { Step::Adopt } else { Step::Conflict };
    }
    if let Some(sid) = unrecorded_claim(resource, observed) {
        return Step::Record(sid.to_string());
    }
    let current_template = match &observed.delivering {
        ObservedSecret::Owned { delivered: Some(sid), current_template } if Some(sid) == current => *current_template,
        _ if current.is_some() => return Step::Rotate(RotationCause::SecretDrift),
        _ => return Step::Create,
    };
    if let Some(cause) = rotation_cause(resource, observed) {
        return Step::Rotate(cause);
    }
    let restricted_policy_differs =
        resource.spec.key_type == KeyType::Restricted && status.policy.as_ref() != resource.spec.policy.as_ref();
    if status.friendly_name.as_deref() != Some(resource.desired_friendly_name().as_str()) || restricted_policy_differs {
        return Step::UpdateInPlace;
    }
    if !current_template || observed.target.is_some() {
        return Step::RewriteSecret;
    }
    Step::UpToDate
}

/// Why the current key must be replaced, if it must.
pub fn rotation_cause(resource: &TwilioApiKey, observed: &Observed) -> Option<RotationCause> {
    let status = resource.status.clone().unwrap_or_default();
    if status.key_type.is_some_and(|t| t != resource.spec.key_type) {
        return Some(RotationCause::KeyTypeChanged);
    }
    if status.account_sid.as_deref().is_some_and(|a| a != observed.account_sid)
        || status.region.as_deref().is_some_and(|r| r != observed.region)
        || status.account_ref.as_ref().is_some_and(|r| r != &resource.spec.account_ref)
    {
        return Some(RotationCause::AccountChanged);
    }
    let trigger = resource.spec.rotation.as_ref().and_then(|r| r.trigger.as_ref());
    if trigger.is_some() && trigger != status.last_rotation_trigger.as_ref() {
        return Some(RotationCause::TriggerChanged);
    }
    let annotation = resource.metadata.annotations.as_ref().and_then(|a| a.get(ROTATE_ANNOTATION));
    if annotation.is_some() && annotation != status.last_rotate_annotation.as_ref() {
        return Some(RotationCause::RotateAnnotation);
    }
    // Only scheduled rotations wait for a window: asked ones (above) and repairs never do.
    if status::next_rotation_at(resource, &status).is_some_and(|due| due <= observed.now)
        && status::window_open(resource, observed.now)
    {
        return Some(RotationCause::IntervalElapsed);
    }
    None
}

/// The keys an interrupted attempt of this resource left in the account: those still carrying
/// its pending name that neither its status nor `keep` holds. No other key can match: the name
/// holds the resource's UID, and a spec cannot ask for a pending name.
pub fn orphaned_keys<'a>(
    resource: &TwilioApiKey,
    listed: impl IntoIterator<Item = &'a Key>,
    keep: &[String],
) -> Vec<String> {
    let status = resource.status.clone().unwrap_or_default();
    let pending = resource.pending_friendly_name();
    let recorded: HashSet<String> =
        status::all_keys(resource, &status).into_iter().map(|k| k.sid).chain(keep.iter().cloned()).collect();
    let mut orphans: Vec<String> = listed
        .into_iter()
        .filter(|k| k.friendly_name.as_deref() == Some(pending.as_str()) && !recorded.contains(&k.sid))
        .map(|k| k.sid.clone())
        .collect();
    orphans.sort();
    orphans
}

/// What an account's listing says of the current key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Listed, or not judged: no key, or one created after the listing was made.
    Assumed,
    /// Not listed. A listing can miss a key (pages that shift while it is read): fetch the key
    /// to confirm before treating it as deleted.
    Unlisted(String),
    /// Listed under another name than the status records: the pass that recorded it was
    /// interrupted before renaming it, or someone renamed it in Twilio. Renaming it again is
    /// harmless if the listing merely predates the rename.
    Misnamed(String),
}

/// Whether the listing made at `listed_at` shows the current key of `status`, under its name.
pub fn presence(status: &TwilioApiKeyStatus, listed_at: Timestamp, listed: &HashMap<String, Key>) -> Presence {
    let (Some(sid), Some(created)) = (&status.key_sid, &status.key_created_at) else {
        return Presence::Assumed;
    };
    let created = created.parse::<Timestamp>().unwrap_or(listed_at);
    if created >= listed_at {
        return Presence::Assumed;
    }
    match listed.get(sid) {
        None => Presence::Unlisted(sid.clone()),
        Some(key) if status.friendly_name.is_some() && key.friendly_name != status.friendly_name => {
            Presence::Misnamed(sid.clone())
        }
        Some(_) => Presence::Assumed,
    }
}

/// With `deletionPolicy: Orphan`, the keys that go all the same: the retiring ones (already on
/// their way out), and the one the status calls current when another key (`handed_over`, the
/// one a Secret delivers but the status lacks) is handed over instead: a rotation interrupted
/// after its Secret write left the current key delivered by no Secret.
pub fn leaving_on_orphan(
    resource: &TwilioApiKey,
    status: &TwilioApiKeyStatus,
    handed_over: &[String],
) -> Vec<RetiringKey> {
    let replaced = status::current_key(resource, status).filter(|_| !handed_over.is_empty());
    replaced.into_iter().chain(status.retiring_keys.iter().cloned()).collect()
}

/// Keys to delete that live in one account, reached through one account resource.
#[derive(Clone, Debug, PartialEq)]
pub struct DeletionGroup {
    pub account_ref: AccountRef,
    /// The account SID the keys were created in, when recorded (the account resource may point
    /// at another by now).
    pub account_sid: Option<String>,
    pub sids: Vec<String>,
}

/// `keys` grouped by the account resource and account SID they were created through (a key
/// that records no account resource was created through the spec's).
pub fn deletion_groups(resource: &TwilioApiKey, keys: &[RetiringKey]) -> Vec<DeletionGroup> {
    let mut groups: BTreeMap<String, DeletionGroup> = BTreeMap::new();
    for retired in keys {
        let account_ref = retired.account_ref.clone().unwrap_or_else(|| resource.spec.account_ref.clone());
        let group = format!("{:?}/{}/{:?}", account_ref.kind, account_ref.name, retired.account_sid);
        groups
            .entry(group)
            .or_insert_with(|| DeletionGroup { account_ref, account_sid: retired.account_sid.clone(), sids: vec![] })
            .sids
            .push(retired.sid.clone());
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AccountRef, KeyPolicy, TwilioApiKeyStatus};

    use crate::keys::fixtures::standard;

    fn observed(delivering: ObservedSecret) -> Observed {
        Observed {
            delivering,
            target: None,
            account_sid: "AC1".into(),
            region: "us1".into(),
            now: "2026-11-26T12:00:00Z".parse().unwrap(),
        }
    }

    fn delivering(sid: &str) -> ObservedSecret {
        ObservedSecret::Owned { delivered: Some(sid.into()), current_template: true }
    }

    /// A key whose SK1 is delivered as the spec asks.
    fn issued() -> TwilioApiKey {
        let mut resource = standard();
        resource.status = Some(TwilioApiKeyStatus {
            key_sid: Some("SK1".into()),
            key_type: Some(KeyType::Standard),
            account_sid: Some("AC1".into()),
            account_ref: Some(resource.spec.account_ref.clone()),
            friendly_name: Some(resource.desired_friendly_name()),
            key_created_at: Some("2026-11-26T00:00:00Z".into()),
            ..Default::default()
        });
        resource
    }

    #[test]
    fn a_new_key_is_created_once_and_a_delivered_one_recorded() {
        let altered = ObservedSecret::Owned { delivered: None, current_template: true };
        let fresh = standard();
        assert_eq!(next_step(&fresh, &observed(ObservedSecret::Missing)), Step::Create);
        assert_eq!(next_step(&fresh, &observed(ObservedSecret::Foreign)), Step::Conflict);
        assert_eq!(next_step(&fresh, &observed(altered.clone())), Step::Create);
        assert_eq!(next_step(&fresh, &observed(delivering("SK1"))), Step::Record("SK1".into()));
        let issued = issued();
        assert_eq!(next_step(&issued, &observed(delivering("SK1"))), Step::UpToDate);
        assert_eq!(next_step(&issued, &observed(delivering("SK2"))), Step::Record("SK2".into()));
        assert_eq!(next_step(&issued, &observed(ObservedSecret::Missing)), Step::Rotate(RotationCause::SecretDrift));
        assert_eq!(next_step(&issued, &observed(altered)), Step::Rotate(RotationCause::SecretDrift));
        assert_eq!(next_step(&issued, &observed(ObservedSecret::Foreign)), Step::Conflict);
    }

    #[test]
    fn only_a_resource_without_keys_that_asks_for_it_adopts_a_foreign_secret() {
        let adopting = |mut resource: TwilioApiKey| {
            resource.spec.secret.adopt = true;
            resource
        };
        assert_eq!(next_step(&adopting(standard()), &observed(ObservedSecret::Foreign)), Step::Adopt);
        assert_eq!(next_step(&standard(), &observed(ObservedSecret::Foreign)), Step::Conflict, "not asked");
        assert_eq!(
            next_step(&adopting(issued()), &observed(ObservedSecret::Foreign)),
            Step::Conflict,
            "a resource with a key never swaps it for a Secret's"
        );
        let mut retiring = adopting(standard());
        retiring.status = Some(TwilioApiKeyStatus {
            retiring_keys: vec![RetiringKey {
                sid: "SK0".into(),
                delete_after: "2026-11-26T00:00:00Z".into(),
                account_ref: None,
                account_sid: None,
                delete_by: None,
            }],
            ..Default::default()
        });
        assert_eq!(next_step(&retiring, &observed(ObservedSecret::Foreign)), Step::Conflict);
        assert_eq!(next_step(&adopting(standard()), &observed(ObservedSecret::Missing)), Step::Create);
    }

    #[test]
    fn names_and_policies_change_in_place_but_types_and_accounts_rotate() {
        let mut renamed = issued();
        renamed.spec.friendly_name = Some("new name".into());
        assert_eq!(next_step(&renamed, &observed(delivering("SK1"))), Step::UpdateInPlace);

        let mut retyped = issued();
        retyped.spec.key_type = KeyType::Restricted;
        retyped.spec.policy = Some(KeyPolicy { allow: vec!["/twilio/x".into()] });
        assert_eq!(next_step(&retyped, &observed(delivering("SK1"))), Step::Rotate(RotationCause::KeyTypeChanged));

        let mut repolicied = retyped.clone();
        repolicied.status.as_mut().unwrap().key_type = Some(KeyType::Restricted);
        assert_eq!(next_step(&repolicied, &observed(delivering("SK1"))), Step::UpdateInPlace);

        let mut moved = observed(delivering("SK1"));
        moved.account_sid = "AC2".into();
        assert_eq!(next_step(&issued(), &moved), Step::Rotate(RotationCause::AccountChanged));
        let mut regional = issued();
        regional.status.as_mut().unwrap().region = Some("us1".into());
        let mut moved_region = observed(delivering("SK1"));
        moved_region.region = "ie1".into();
        assert_eq!(next_step(&regional, &moved_region), Step::Rotate(RotationCause::AccountChanged));
        let mut other_account = issued();
        other_account.spec.account_ref.name = "other".into();
        assert_eq!(
            next_step(&other_account, &observed(delivering("SK1"))),
            Step::Rotate(RotationCause::AccountChanged)
        );
    }

    #[test]
    fn triggers_annotations_and_intervals_rotate_once() {
        let mut triggered = issued();
        triggered.spec.rotation = Some(serde_json::from_value(serde_json::json!({"trigger": "2026-11-26"})).unwrap());
        assert_eq!(next_step(&triggered, &observed(delivering("SK1"))), Step::Rotate(RotationCause::TriggerChanged));
        triggered.status.as_mut().unwrap().last_rotation_trigger = Some("2026-11-26".into());
        assert_eq!(next_step(&triggered, &observed(delivering("SK1"))), Step::UpToDate);

        let mut annotated = issued();
        annotated.metadata.annotations = Some([(ROTATE_ANNOTATION.to_string(), "1".to_string())].into());
        assert_eq!(next_step(&annotated, &observed(delivering("SK1"))), Step::Rotate(RotationCause::RotateAnnotation));
        annotated.status.as_mut().unwrap().last_rotate_annotation = Some("1".into());
        assert_eq!(next_step(&annotated, &observed(delivering("SK1"))), Step::UpToDate);

        let mut aging = issued();
        aging.spec.rotation = Some(serde_json::from_value(serde_json::json!({"interval": "24h"})).unwrap());
        let created = observed(delivering("SK1"));
        assert_eq!(next_step(&aging, &created), Step::UpToDate, "12h old");
        let mut later = created.clone();
        later.now = "2026-11-27T00:00:00Z".parse().unwrap();
        assert_eq!(next_step(&aging, &later), Step::Rotate(RotationCause::IntervalElapsed));
    }

    #[test]
    fn secret_changes_rewrite_without_a_new_key() {
        let stale = ObservedSecret::Owned { delivered: Some("SK1".into()), current_template: false };
        assert_eq!(next_step(&issued(), &observed(stale)), Step::RewriteSecret);
        let mut moving = observed(delivering("SK1"));
        moving.target = Some(ObservedSecret::Missing);
        assert_eq!(next_step(&issued(), &moving), Step::RewriteSecret);
        moving.target = Some(ObservedSecret::Foreign);
        assert_eq!(next_step(&issued(), &moving), Step::Conflict);
    }

    #[test]
    fn revocation_deletes_once_then_stays_revoked() {
        let mut revoked = issued();
        revoked.spec.revoked = true;
        assert_eq!(next_step(&revoked, &observed(delivering("SK1"))), Step::Revoke);
        revoked.status = Some(TwilioApiKeyStatus::default());
        assert_eq!(next_step(&revoked, &observed(ObservedSecret::Missing)), Step::StayRevoked);
        assert_eq!(next_step(&revoked, &observed(ObservedSecret::Foreign)), Step::StayRevoked);
    }

    /// Property tests: no spec, status or observation a tenant (or a clock) can produce makes
    /// validation or planning panic. The case counts keep `cargo test --lib` at a few seconds; for
    /// a longer search run `PROPTEST_CASES=100000 cargo test --release --lib -- duration plan::tests::properties`.
    fn listed(sid: &str, friendly_name: &str) -> Key {
        Key { sid: sid.into(), friendly_name: Some(friendly_name.into()), date_created: None, policy: None }
    }

    fn with_uid(mut resource: TwilioApiKey, uid: &str) -> TwilioApiKey {
        resource.metadata.uid = Some(uid.into());
        resource
    }

    #[test]
    fn only_unrecorded_keys_under_this_resources_pending_name_are_orphans() {
        let resource = with_uid(issued(), "u1");
        let mut status = resource.status.clone().unwrap();
        status.retiring_keys.push(RetiringKey {
            sid: "SKretiring".into(),
            delete_after: String::new(),
            account_ref: None,
            account_sid: None,
            delete_by: None,
        });
        let resource = TwilioApiKey { status: Some(status), ..resource };
        let pending = "twilio-operator:pending:u1";
        let inventory = [
            listed("SK1", pending),                          // current: recorded
            listed("SKretiring", pending),                   // retiring: recorded
            listed("SKkept", pending),                       // handed over: kept
            listed("SKorphan", pending),                     // left by an interrupted create
            listed("SKother", "twilio-operator:pending:u2"), // another resource's
            listed("SKsame", "team-a/payments"),             // someone's key with the friendly name
            Key { sid: "SKnameless".into(), friendly_name: None, date_created: None, policy: None },
        ];
        assert_eq!(orphaned_keys(&resource, &inventory, &["SKkept".into()]), ["SKorphan"]);
        assert!(orphaned_keys(&with_uid(standard(), "u3"), &inventory, &[]).is_empty());
    }

    #[test]
    fn a_listing_shows_the_key_gone_unconfirmed_or_misnamed() {
        let listed_at: Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        let status = issued().status.unwrap();
        let in_listing: HashMap<String, Key> = [("SK1".to_string(), listed("SK1", "team-a/payments"))].into();
        let renamed: HashMap<String, Key> = [("SK1".to_string(), listed("SK1", "renamed by hand"))].into();
        assert_eq!(status.friendly_name.as_deref(), Some("team-a/payments"));
        let cases = [
            (status.clone(), in_listing, Presence::Assumed),
            (status.clone(), renamed.clone(), Presence::Misnamed("SK1".into())),
            (TwilioApiKeyStatus { friendly_name: None, ..status.clone() }, renamed, Presence::Assumed),
            (status.clone(), HashMap::new(), Presence::Unlisted("SK1".into())),
            // Created after the listing was made: the listing cannot know it.
            (
                TwilioApiKeyStatus { key_created_at: Some("2026-11-26T12:00:01Z".into()), ..status.clone() },
                HashMap::new(),
                Presence::Assumed,
            ),
            (TwilioApiKeyStatus { key_sid: None, ..status.clone() }, HashMap::new(), Presence::Assumed),
            (TwilioApiKeyStatus { key_created_at: None, ..status }, HashMap::new(), Presence::Assumed),
        ];
        for (status, listing, expected) in cases {
            assert_eq!(presence(&status, listed_at, &listing), expected, "{status:?}");
        }
    }

    #[test]
    fn orphaning_hands_over_one_key_and_lets_the_others_go() {
        let resource = issued();
        let mut status = resource.status.clone().unwrap();
        status.retiring_keys.push(RetiringKey {
            sid: "SK0".into(),
            delete_after: String::new(),
            account_ref: None,
            account_sid: None,
            delete_by: None,
        });
        let sids = |keys: Vec<RetiringKey>| keys.into_iter().map(|k| k.sid).collect::<Vec<_>>();
        assert_eq!(sids(leaving_on_orphan(&resource, &status, &[])), ["SK0"], "the current key is handed over");
        assert_eq!(
            sids(leaving_on_orphan(&resource, &status, &["SK2".into()])),
            ["SK1", "SK0"],
            "the key a Secret delivers is handed over; the one the status calls current goes"
        );
    }

    #[test]
    fn keys_are_deleted_per_account_they_were_created_in() {
        let resource = standard();
        let cluster = AccountRef { kind: crate::api::AccountKind::ClusterTwilioAccount, name: "shared".into() };
        let retiring = |sid: &str, account_ref: Option<AccountRef>, account_sid: Option<&str>| RetiringKey {
            sid: sid.into(),
            delete_after: String::new(),
            account_ref,
            account_sid: account_sid.map(Into::into),
            delete_by: None,
        };
        let keys = [
            retiring("SK1", None, Some("AC1")),
            retiring("SK2", Some(resource.spec.account_ref.clone()), Some("AC1")),
            retiring("SK3", Some(resource.spec.account_ref.clone()), Some("AC0")),
            retiring("SK4", Some(cluster.clone()), None),
        ];
        let groups: Vec<(AccountRef, Option<String>, Vec<String>)> =
            deletion_groups(&resource, &keys).into_iter().map(|g| (g.account_ref, g.account_sid, g.sids)).collect();
        assert_eq!(
            groups,
            [
                (cluster, None, vec!["SK4".to_string()]),
                (resource.spec.account_ref.clone(), Some("AC0".into()), vec!["SK3".into()]),
                (resource.spec.account_ref.clone(), Some("AC1".into()), vec!["SK1".into(), "SK2".into()]),
            ]
        );
    }

    #[test]
    fn repairs_are_warnings_and_asked_rotations_are_not() {
        use RotationCause::*;
        for (cause, repair) in [(SecretDrift, true), (KeyMissing, true), (KeyTypeChanged, false)] {
            assert_eq!(cause.is_repair(), repair, "{cause:?}");
        }
        for asked in [AccountChanged, TriggerChanged, RotateAnnotation, IntervalElapsed] {
            assert!(!asked.is_repair(), "{asked:?}");
        }
    }

    mod properties {
        use super::super::*;
        use crate::api::duration;
        use crate::api::{
            AccountKind, AccountRef, DeletionPolicy, KeyPolicy, RetiringKey, RotationSpec, SecretKeys, SecretTemplate,
            TwilioApiKeySpec, TwilioApiKeyStatus, WorkloadKind,
        };
        use crate::api::{MANAGED_BY_LABEL, PENDING_FRIENDLY_NAME_PREFIX};
        use crate::keys::validate::{MAX_GRACE_PERIOD, MAX_INTERVAL, MIN_INTERVAL, validate};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
        use k8s_openapi::jiff::SignedDuration;
        use proptest::prelude::*;

        /// `default` cases, or PROPTEST_CASES for a longer search.
        fn cases(default: u32) -> u32 {
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
        }

        /// Mostly arbitrary text, sometimes text close to what the code looks for.
        fn text(near: &'static str) -> BoxedStrategy<String> {
            prop_oneof![2 => any::<String>(), 3 => near.prop_map(|s| s), 1 => Just(String::new())].boxed()
        }

        fn duration_text() -> BoxedStrategy<String> {
            prop_oneof![
                1 => any::<String>(),
                4 => r"[0-9]{1,25}(\.[0-9]{1,4})?(ms|s|m|h)([0-9]{1,12}(\.[0-9]{1,3})?(ms|s|m|h)){0,4}",
                1 => r"[0-9.]{0,30}[a-z]{0,3}",
            ]
            .boxed()
        }

        fn metadata_key() -> BoxedStrategy<String> {
            prop_oneof![
                2 => any::<String>(),
                3 => r"([a-zA-Z0-9.-]{0,20}/)?[a-zA-Z0-9_.-]{0,70}",
                1 => Just(MANAGED_BY_LABEL.to_string()),
                1 => "twilio-operator\\.dev/[a-z-]{0,10}",
            ]
            .boxed()
        }

        prop_compose! {
            fn spec()(
                account_name in text("[a-z-]{1,10}"),
                cluster in any::<bool>(),
                friendly_name in prop::option::of(prop_oneof![
                    text(".{0,70}"),
                    "twilio-operator:pending:[a-z0-9-]{0,40}",
                ]),
                restricted in any::<bool>(),
                policy in prop::option::of(prop::collection::vec(text("/twilio/[a-z/]{0,300}"), 0..105)),
                secret_name in prop::option::of(text(r"[a-z0-9.-]{0,260}")),
                keys in (text("[A-Z_]{1,20}"), text("[A-Z_]{1,20}"), text("[A-Z_]{1,20}")),
                labels in prop::collection::btree_map(metadata_key(), text("[A-Za-z0-9_.-]{0,70}"), 0..70),
                annotations in prop::collection::btree_map(metadata_key(), any::<String>(), 0..5),
                rotation in prop::option::of((
                    prop::option::of(duration_text()),
                    duration_text(),
                    prop::option::of(text(".{0,260}")),
                    prop::option::of(duration_text()),
                    prop::collection::vec(window(), 0..3),
                    prop::option::of(any::<u8>()),
                )),
                targets in prop::collection::vec((
                    0..4u8,
                    prop::option::of(text("[a-z0-9.-]{0,20}")),
                    prop::option::of(prop::collection::btree_map(metadata_key(), text("[a-z0-9.-]{0,10}"), 0..3)),
                ), 0..4),
                flags in (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
                secret_type in prop::option::of(text("[A-Za-z0-9./_-]{0,30}")),
                template in prop::option::of(prop::collection::btree_map(
                    text("[A-Za-z0-9_. -]{0,12}"),
                    prop_oneof![text(".{0,40}"), Just("{{ apiKeySid }}".to_string()), Just("{% for i in range(9) %}{{ i }}{% endfor %}".to_string())],
                    0..4,
                )),
            ) -> TwilioApiKeySpec {
                TwilioApiKeySpec {
                    account_ref: AccountRef {
                        name: account_name,
                        kind: if cluster { AccountKind::ClusterTwilioAccount } else { AccountKind::TwilioAccount },
                    },
                    friendly_name,
                    key_type: if restricted { KeyType::Restricted } else { KeyType::Standard },
                    policy: policy.map(|allow| KeyPolicy { allow }),
                    secret: SecretTemplate {
                        name: secret_name,
                        keys: SecretKeys { account_sid: keys.0, api_key_sid: keys.1, api_key_secret: keys.2 },
                        labels,
                        annotations,
                        adopt: flags.3,
                        secret_type,
                        template: template.map(|data| crate::api::SecretDataTemplate { data }),
                    },
                    rotation: rotation.map(|(interval, grace_period, trigger, max_grace_period, windows, history_limit)| RotationSpec {
                        interval,
                        grace_period,
                        trigger,
                        max_grace_period,
                        windows,
                        history_limit,
                    }),
                    revoked: flags.0,
                    suspend: flags.1,
                    deletion_policy: if flags.2 { DeletionPolicy::Orphan } else { DeletionPolicy::Delete },
                    rollout_restart_targets: targets
                        .into_iter()
                        .map(|(kind, name, labels)| crate::api::RolloutRestartTarget {
                            kind: WORKLOAD_KINDS[usize::from(kind)],
                            name,
                            selector: labels.map(|labels| LabelSelector { match_labels: Some(labels), match_expressions: None }),
                        })
                        .collect(),
                }
            }
        }

        const WORKLOAD_KINDS: [WorkloadKind; 4] =
            [WorkloadKind::Deployment, WorkloadKind::StatefulSet, WorkloadKind::DaemonSet, WorkloadKind::Rollout];

        fn window() -> BoxedStrategy<crate::api::RotationWindow> {
            let clock = || prop_oneof![text("[0-2][0-9]:[0-5][0-9]"), any::<String>()];
            let zone = prop::option::of(prop_oneof![
                Just("UTC".to_string()),
                Just("Europe/Berlin".to_string()),
                Just("Australia/Lord_Howe".to_string()),
                any::<String>(),
            ]);
            let days = prop::collection::vec(0..7usize, 0..8);
            (days, clock(), clock(), zone)
                .prop_map(|(days, start, end, time_zone)| {
                    use crate::api::Weekday::*;
                    let days = days.into_iter().map(|d| [Mon, Tue, Wed, Thu, Fri, Sat, Sun][d]).collect();
                    crate::api::RotationWindow { days, start, end, time_zone }
                })
                .boxed()
        }

        fn timestamp_text() -> BoxedStrategy<String> {
            prop_oneof![
                1 => any::<String>(),
                2 => any_timestamp().prop_map(|t| t.to_string()),
                1 => r"-?[0-9]{4,6}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})",
            ]
            .boxed()
        }

        /// Any instant jiff can represent.
        fn any_timestamp() -> impl Strategy<Value = Timestamp> {
            (Timestamp::MIN.as_second()..=Timestamp::MAX.as_second(), 0..1_000_000_000i32)
                .prop_map(|(secs, nanos)| Timestamp::new(secs, nanos).unwrap_or(Timestamp::MAX))
        }

        fn observed_secret() -> BoxedStrategy<ObservedSecret> {
            prop_oneof![
                Just(ObservedSecret::Missing),
                Just(ObservedSecret::Foreign),
                (prop::option::of(text("SK[0-9]")), any::<bool>())
                    .prop_map(|(delivered, current_template)| ObservedSecret::Owned { delivered, current_template }),
            ]
            .boxed()
        }

        prop_compose! {
            fn status()(
                key_sid in prop::option::of(text("SK[0-9]")),
                key_type in prop::option::of(any::<bool>()),
                account_sid in prop::option::of(text("AC[0-9]")),
                account_ref in prop::option::of(text("[a-z]{1,5}")),
                region in prop::option::of(text("us1|ie1")),
                friendly_name in prop::option::of(any::<String>()),
                key_created_at in prop::option::of(timestamp_text()),
                next_rotation_at in prop::option::of(timestamp_text()),
                last_rotation_trigger in prop::option::of(any::<String>()),
                last_rotate_annotation in prop::option::of(any::<String>()),
                retiring in prop::collection::vec((text("SK[0-9]"), timestamp_text(), prop::option::of(timestamp_text())), 0..4),
                rollout in prop::collection::vec((0..4u8, text("[a-z]{0,5}"), any::<bool>(), prop::option::of(timestamp_text())), 0..3),
            ) -> TwilioApiKeyStatus {
                TwilioApiKeyStatus {
                    key_sid,
                    key_type: key_type.map(|r| if r { KeyType::Restricted } else { KeyType::Standard }),
                    account_sid,
                    account_ref: account_ref.map(|name| AccountRef { name, kind: AccountKind::TwilioAccount }),
                    region,
                    friendly_name,
                    key_created_at,
                    next_rotation_at,
                    last_rotation_trigger,
                    last_rotate_annotation,
                    retiring_keys: retiring
                        .into_iter()
                        .map(|(sid, delete_after, delete_by)| RetiringKey { sid, delete_after, account_ref: None, account_sid: None, delete_by })
                        .collect(),
                    rollout: rollout
                        .into_iter()
                        .map(|(kind, name, complete, restarted_at)| crate::api::RolloutTargetStatus {
                            kind: WORKLOAD_KINDS[usize::from(kind)],
                            selector: (name.len() % 2 == 0).then(|| "app=x".to_string()),
                            name,
                            complete,
                            restarted_at,
                            message: None,
                            restart_failures: 0,
                            next_restart_at: None,
                        })
                        .collect(),
                    ..Default::default()
                }
            }
        }

        fn resource(spec: TwilioApiKeySpec, namespace: String, name: String) -> TwilioApiKey {
            let mut resource = TwilioApiKey::new(&name, spec);
            resource.metadata.namespace = Some(namespace);
            resource
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(cases(256)))]

            #[test]
            fn validate_never_panics(spec in spec(), namespace in text("[a-z0-9-]{1,63}"), name in text("[a-z0-9.-]{1,253}")) {
                let _ = validate(&resource(spec, namespace, name));
            }

            /// What validate accepts keeps the operator's time arithmetic in range and its Secret
            /// writes within what the API server accepts.
            #[test]
            fn a_valid_spec_is_within_bounds(spec in spec()) {
                let resource = resource(spec, "team-a".into(), "payments".into());
                if validate(&resource).is_ok() {
                    if let Some(rotation) = &resource.spec.rotation {
                        let grace = duration::parse(&rotation.grace_period).unwrap();
                        prop_assert!(grace <= MAX_GRACE_PERIOD);
                        if let Some(interval) = &rotation.interval {
                            let interval = duration::parse(interval).unwrap();
                            prop_assert!(MIN_INTERVAL <= interval && interval <= MAX_INTERVAL && grace <= interval);
                            let now: Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
                            prop_assert!(now.checked_add(SignedDuration::try_from(interval).unwrap()).is_ok());
                        }
                        if let Some(max) = &rotation.max_grace_period {
                            let max = duration::parse(max).unwrap();
                            prop_assert!(grace <= max && max <= MAX_GRACE_PERIOD);
                        }
                    }
                    prop_assert!(resource.spec.rollout_restart_targets.len() <= 32);
                    for target in &resource.spec.rollout_restart_targets {
                        match (&target.name, &target.selector) {
                            (Some(name), None) => prop_assert!(!name.is_empty() && name.len() <= 253, "{name}"),
                            (None, Some(selector)) => prop_assert!(crate::keys::rollout::selector_problem(selector).is_none()),
                            _ => prop_assert!(false, "a valid target names a workload or selects them: {target:?}"),
                        }
                    }
                    for key in resource.spec.secret.labels.keys().chain(resource.spec.secret.annotations.keys()) {
                        prop_assert!(!key.starts_with("twilio-operator.dev/"), "{key}");
                        prop_assert!(!key.is_empty() && key.len() <= 253 + 1 + 63, "{key}");
                    }
                    prop_assert!(!resource.spec.secret.labels.contains_key(MANAGED_BY_LABEL));
                    prop_assert!(!resource.desired_friendly_name().starts_with(PENDING_FRIENDLY_NAME_PREFIX));
                }
            }

            #[test]
            fn planning_never_panics(
                spec in spec(),
                status in prop::option::of(status()),
                rotate_annotation in prop::option::of(any::<String>()),
                delivering in observed_secret(),
                target in prop::option::of(observed_secret()),
                account_sid in text("AC[0-9]"),
                region in text("us1|ie1"),
                now in any_timestamp(),
            ) {
                let mut resource = resource(spec, "team-a".into(), "payments".into());
                resource.status = status;
                resource.metadata.annotations = rotate_annotation.map(|v| [(ROTATE_ANNOTATION.to_string(), v)].into());
                let observed = Observed { delivering, target, account_sid, region, now };
                // Observation judges exactly the claims the plan would record.
                let claim = unrecorded_claim(&resource, &observed).map(str::to_string);
                let step = next_step(&resource, &observed);
                match claim {
                    Some(sid) => prop_assert_eq!(&step, &Step::Record(sid)),
                    None => prop_assert!(!matches!(step, Step::Record(_)), "{:?}", step),
                }
                let _ = rotation_cause(&resource, &observed);
                let status = resource.status.clone().unwrap_or_default();
                let _ = status::next_rotation_at(&resource, &status);
                let _ = crate::keys::status::retire_due(&resource, &status, now);
                let _ = crate::keys::status::next_wake(&resource, &status, std::time::Duration::from_secs(600), now);
                let _ = crate::keys::rollout::delayed(&resource, &status, std::time::Duration::from_secs(600), now);
            }
        }
    }
}
