//! kstatus conditions: Ready, Reconciling and Stalled, so that `kubectl wait`, Flux and Argo CD
//! read the state of a resource without knowing the operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// What a resource's conditions should say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Done: Ready=True.
    Ready { reason: &'static str, message: String },
    /// Work in progress that will finish without help: Ready=False, Reconciling=True.
    Progressing { reason: &'static str, message: String },
    /// Cannot progress until someone changes something: Ready=False, Stalled=True.
    Stalled { reason: &'static str, message: String },
    /// Deliberately not ready, as the spec asks (e.g. revoked): Ready=False, nothing in progress.
    Inactive { reason: &'static str, message: String },
}

impl Health {
    pub fn reason(&self) -> &'static str {
        match self {
            Health::Ready { reason, .. }
            | Health::Progressing { reason, .. }
            | Health::Stalled { reason, .. }
            | Health::Inactive { reason, .. } => reason,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Health::Ready { message, .. }
            | Health::Progressing { message, .. }
            | Health::Stalled { message, .. }
            | Health::Inactive { message, .. } => message,
        }
    }
}

/// Sets a condition of a type other than the three above to True with this reason and message,
/// keeping its lastTransitionTime while it stays True; says whether it was not there before.
pub fn set_true(
    conditions: &mut Vec<Condition>,
    type_: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let message = crate::text::printable(&message);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            existing.reason = reason.to_string();
            existing.message = message;
            existing.observed_generation = generation;
            false
        }
        None => {
            conditions.push(Condition {
                type_: type_.to_string(),
                status: "True".into(),
                reason: reason.to_string(),
                message,
                observed_generation: generation,
                last_transition_time: Time(now),
            });
            true
        }
    }
}

/// The conditions for `health`, keeping each condition's lastTransitionTime unless its status
/// changes, so that re-applying the same health writes nothing new. Conditions of other types
/// (such as RolloutDelayed) are kept as they are.
pub fn conditions_for(
    previous: &[Condition],
    health: &Health,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let (ready, reconciling, stalled) = match health {
        Health::Ready { .. } => ("True", "False", "False"),
        Health::Progressing { .. } => ("False", "True", "False"),
        Health::Stalled { .. } => ("False", "False", "True"),
        Health::Inactive { .. } => ("False", "False", "False"),
    };
    // Every condition carries the reason and message: the API server rejects an empty message
    // as null, and a reader of any one condition learns the whole story.
    let make = |type_: &str, status: &str| {
        // What Twilio or a tenant wrote can reach a message: it must not steer a terminal.
        let (reason, message) = (health.reason().to_string(), crate::text::printable(health.message()));
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason,
            message,
            observed_generation: generation,
            last_transition_time,
        }
    };
    let others = previous.iter().filter(|c| ![READY, RECONCILING, STALLED].contains(&c.type_.as_str())).cloned();
    [make(READY, ready), make(RECONCILING, reconciling), make(STALLED, stalled)].into_iter().chain(others).collect()
}

/// The Ready condition's status and reason, if present.
pub fn ready_of(conditions: &[Condition]) -> Option<(&str, &str)> {
    conditions.iter().find(|c| c.type_ == READY).map(|c| (c.status.as_str(), c.reason.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_health_keeps_transition_times_so_nothing_is_rewritten() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let ready = Health::Ready { reason: "KeyReady", message: "ok".into() };
        let first = conditions_for(&[], &ready, Some(1), t0);
        let again = conditions_for(&first, &ready, Some(1), t1);
        assert_eq!(first, again);
    }

    #[test]
    fn conditions_of_other_types_are_kept() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let ready = Health::Ready { reason: "KeyReady", message: "ok".into() };
        let mut previous = conditions_for(&[], &ready, Some(1), t0);
        let delayed = Condition { type_: "RolloutDelayed".into(), ..previous[0].clone() };
        previous.push(delayed.clone());
        let stalled = Health::Stalled { reason: "TwilioAuthFailed", message: "refused".into() };
        let conditions = conditions_for(&previous, &stalled, Some(2), t0);
        assert_eq!(conditions.len(), 4);
        assert_eq!(conditions[3], delayed);
    }

    #[test]
    fn a_stall_flips_ready_and_stalled_with_the_reason() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let stalled = Health::Stalled { reason: "TwilioAuthFailed", message: "refused".into() };
        let conditions = conditions_for(&[], &stalled, Some(2), t0);
        assert_eq!(ready_of(&conditions), Some(("False", "TwilioAuthFailed")));
        let stalled_condition = conditions.iter().find(|c| c.type_ == STALLED).unwrap();
        assert_eq!(stalled_condition.status, "True");
        assert_eq!(stalled_condition.observed_generation, Some(2));
    }
}
