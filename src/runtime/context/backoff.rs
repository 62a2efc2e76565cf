//! Per-object retry delays after transient failures.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::{Resource, ResourceExt};

#[derive(Default)]
pub struct Backoff {
    /// Consecutive transient failures per object UID.
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The delay before retrying `obj` after one more failure: 1s, 2s, 4s ... up to `cap` (at
    /// most 5 minutes), with up to a quarter more of jitter.
    pub fn next<K: Resource>(&self, obj: &K, cap: Duration) -> Duration {
        let uid = obj.uid().unwrap_or_default();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(uid).or_insert(0);
        *count = count.saturating_add(1);
        let seconds = delay_seconds(*count).min(cap.as_secs().max(1));
        let jitter = rand::random_range(0..=seconds * 250);
        Duration::from_secs(seconds) + Duration::from_millis(jitter)
    }

    /// `obj` succeeded: its next failure starts again at the shortest delay.
    pub fn reset<K: Resource>(&self, obj: &K) {
        if let Some(uid) = obj.uid() {
            self.forget(&uid);
        }
    }

    pub fn forget(&self, uid: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }
}

/// The delay in seconds after `failures` consecutive failures (at least 1).
fn delay_seconds(failures: u32) -> u64 {
    (1u64 << (failures.max(1) - 1).min(9)).min(300)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_cap() {
        let backoff = Backoff::default();
        let mut obj = k8s_openapi::api::core::v1::Secret::default();
        obj.metadata.uid = Some("u1".into());
        for _ in 0..10 {
            let delay = backoff.next(&obj, Duration::from_secs(4));
            assert!(delay <= Duration::from_secs(5), "{delay:?}");
        }
        backoff.reset(&obj);
        assert!(backoff.next(&obj, Duration::from_secs(300)) < Duration::from_millis(1251));
    }

    #[test]
    fn delays_double_up_to_five_minutes() {
        let delays: Vec<u64> = [1, 2, 3, 9, 10, 11, u32::MAX].into_iter().map(delay_seconds).collect();
        assert_eq!(delays, [1, 2, 4, 256, 300, 300, 300]);
    }
}
