//! How many keys each TwilioApiKey may still create: a token bucket per resource, holding at most
//! an hour's worth (`--max-key-creations-per-hour`) and refilled evenly over the hour. Every key
//! creation, whatever caused it (first key, rotation, repair), takes one; a resource with none
//! left stalls (RotationBudgetExceeded) until the next one is due. Kept in memory: a restarted
//! operator starts every resource with a full budget.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct CreationBudget {
    per_hour: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

const HOUR: Duration = Duration::from_secs(3600);

impl CreationBudget {
    pub fn new(per_hour: u32) -> Self {
        Self { per_hour: per_hour.max(1), buckets: Mutex::default() }
    }

    /// Keys a resource may create within an hour.
    pub fn per_hour(&self) -> u32 {
        self.per_hour
    }

    /// Takes one creation for resource `uid`, or says how long until one is available.
    pub fn take(&self, uid: &str) -> Result<(), Duration> {
        self.take_at(uid, Instant::now())
    }

    fn take_at(&self, uid: &str, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(self.per_hour);
        let refill_per_second = capacity / HOUR.as_secs_f64();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(uid.to_string()).or_insert(Bucket { tokens: capacity, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * refill_per_second).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / refill_per_second))
    }

    /// The resource is gone.
    pub fn forget(&self, uid: &str) {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_an_hours_worth_then_one_every_share_of_the_hour() {
        let budget = CreationBudget::new(10);
        let start = Instant::now();
        for _ in 0..10 {
            assert_eq!(budget.take_at("a", start), Ok(()));
        }
        let wait = budget.take_at("a", start).unwrap_err();
        assert!((359..=360).contains(&wait.as_secs()), "{wait:?}");
        // Another resource has a budget of its own.
        assert_eq!(budget.take_at("b", start), Ok(()));
        // Six minutes later, one more; not two.
        let later = start + Duration::from_secs(360);
        assert_eq!(budget.take_at("a", later), Ok(()));
        assert!(budget.take_at("a", later).is_err());
        // A quiet hour refills it, never beyond an hour's worth.
        let much_later = later + Duration::from_secs(10 * 3600);
        for _ in 0..10 {
            assert_eq!(budget.take_at("a", much_later), Ok(()));
        }
        assert!(budget.take_at("a", much_later).is_err());
        budget.forget("a");
        assert_eq!(budget.take_at("a", much_later), Ok(()));
    }
}
