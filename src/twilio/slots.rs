//! Request slots of one Twilio account, shared fairly between tenants.
//!
//! Twilio limits how many requests an account may have in flight; the operator keeps its own
//! limit per account below that. When every slot is taken, a slot that comes free goes to the
//! next tenant (namespace) in turn, not to the oldest request: a namespace with a hundred
//! requests queued delays another namespace's first request by about one request per slot, not
//! by a hundred.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// The slots of one account.
#[derive(Debug)]
pub struct FairSlots {
    limit: usize,
    state: Mutex<State>,
}

/// Invariant: tenants wait only while every slot is in use.
#[derive(Debug, Default)]
struct State {
    in_use: usize,
    /// Waiters by tenant, each tenant's in arrival order.
    waiting: HashMap<String, VecDeque<oneshot::Sender<()>>>,
    /// Tenants with waiters, in the order they are served: a tenant served goes to the back.
    turns: VecDeque<String>,
}

/// A slot held; dropping it hands the slot to the next tenant in turn.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<FairSlots>,
}

impl FairSlots {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { limit: limit.max(1), state: Mutex::new(State::default()) })
    }

    /// Waits for a slot for `tenant`.
    pub async fn acquire(self: &Arc<Self>, tenant: &str) -> Slot {
        loop {
            let receiver = {
                let mut state = self.lock();
                if state.in_use < self.limit {
                    state.in_use += 1;
                    return Slot { slots: self.clone() };
                }
                let (sender, receiver) = oneshot::channel();
                let queue = state.waiting.entry(tenant.to_string()).or_default();
                queue.push_back(sender);
                if queue.len() == 1 {
                    state.turns.push_back(tenant.to_string());
                }
                receiver
            };
            let mut waiter = Waiter { slots: self.clone(), receiver: Some(receiver) };
            let received = match waiter.receiver.as_mut() {
                Some(receiver) => receiver.await,
                None => continue,
            };
            waiter.receiver = None;
            if received.is_ok() {
                // The slot was counted in use when it was handed over.
                return Slot { slots: self.clone() };
            }
            // The sender went without handing a slot over (it never does): ask again.
        }
    }

    /// How many requests hold a slot now.
    pub fn in_use(&self) -> usize {
        self.lock().in_use
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot came free: it goes to the first live waiter of the next tenant in turn, or is
    /// counted free when nobody waits.
    fn release(&self) {
        let mut state = self.lock();
        while let Some(tenant) = state.turns.pop_front() {
            let Some(queue) = state.waiting.get_mut(&tenant) else { continue };
            let sender = queue.pop_front();
            if queue.is_empty() {
                state.waiting.remove(&tenant);
            } else {
                state.turns.push_back(tenant);
            }
            // A waiter that gave up refuses the slot; the next one gets it.
            if sender.is_some_and(|sender| sender.send(()).is_ok()) {
                return;
            }
        }
        state.in_use = state.in_use.saturating_sub(1);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release();
    }
}

/// A waiter whose future may be dropped: a slot handed to it just before gives the slot back.
struct Waiter {
    slots: Arc<FairSlots>,
    receiver: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(mut receiver) = self.receiver.take() {
            // Closed, it takes no slot from now on; one it was already handed goes back.
            receiver.close();
            if receiver.try_recv().is_ok() {
                self.slots.release();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Two tenants queue behind one slot: one with five requests, then one with one. The second
    /// tenant's request is served second, not sixth.
    #[tokio::test]
    async fn a_tenant_with_many_requests_queued_does_not_go_before_another_tenant_in_turn() {
        let slots = FairSlots::new(1);
        let held = slots.acquire("busy").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (tenant, n) in [("busy", 0), ("busy", 1), ("busy", 2), ("busy", 3), ("busy", 4), ("quiet", 0)] {
            let (slots, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = slots.acquire(tenant).await;
                order.lock().unwrap().push(format!("{tenant}{n}"));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            // Queue in this order.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order, ["busy0", "quiet0", "busy1", "busy2", "busy3", "busy4"]);
        assert_eq!(slots.in_use(), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_no_slot_taken() {
        let slots = FairSlots::new(2);
        let a = slots.acquire("t").await;
        let b = slots.acquire("t").await;
        // A waiter dropped before any slot came free, and one dropped after a slot was sent to it
        // but before it ran again.
        let gone = slots.acquire("u");
        let early = tokio::time::timeout(Duration::from_millis(20), gone).await;
        assert!(early.is_err(), "no slot was free");
        let mut late = Box::pin(slots.acquire("v"));
        assert!(futures::poll!(late.as_mut()).is_pending());
        drop(a);
        drop(late);
        assert_eq!(slots.in_use(), 1, "the slot sent to the vanished waiter came back");
        drop(b);
        assert_eq!(slots.in_use(), 0);
        let _c = slots.acquire("w").await;
        let _d = slots.acquire("w").await;
        assert_eq!(slots.in_use(), 2);
    }
}
