//! Fair shares of the CPU for CPU-bound jobs.
//!
//! A job that keeps reaching epoch deadlines is CPU-bound; each further slice of it
//! needs one of a few slots (cores − 1), so CPU-bound jobs share fewer workers than
//! there are and a new or short job, which needs no slot, always finds one.
//!
//! A job keeps its slot from one slice to the next while no other job is queued
//! for one, so a lone CPU-bound job never waits; when one is queued, it gives its
//! slot back and queues behind it (the semaphore is fair: round robin). A slot
//! also goes back by itself `hold_for` after the job last asked for it, so a job
//! that leaves its guest code for a long host call or sleep does not keep it.
//!
//! Owns only the slots; it knows nothing of stores or jobs beyond their turns.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The slots CPU-bound jobs take turns on.
#[derive(Clone)]
pub(crate) struct CpuSlots {
    slots: Arc<Semaphore>,
    /// Jobs queued for a slot now.
    waiting: Arc<AtomicUsize>,
    hold_for: Duration,
}

/// One job's hold on a slot.
#[derive(Default)]
pub(crate) struct Turn {
    held: Arc<Mutex<Held>>,
}

#[derive(Default)]
struct Held {
    /// Bumped at every (re)grant, so that a late release of an earlier grant
    /// leaves a newer one alone.
    generation: u64,
    permit: Option<OwnedSemaphorePermit>,
}

impl Turn {
    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a job waits for before its next slice.
pub(crate) type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

impl CpuSlots {
    /// `count` slots; a slot not asked for again within `hold_for` goes back.
    pub(crate) fn new(count: usize, hold_for: Duration) -> CpuSlots {
        CpuSlots {
            slots: Arc::new(Semaphore::new(count.max(1))),
            waiting: Arc::default(),
            hold_for,
        }
    }

    /// Called at each epoch deadline of a CPU-bound job: `None` when it may run on
    /// at once (it holds a slot, or took a free one, and nobody is queued), else
    /// the wait for its next turn.
    pub(crate) fn next_slice(&self, turn: &Turn) -> Option<Wait> {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            let mut held = turn.lock();
            if held.permit.is_none() {
                held.permit = self.slots.clone().try_acquire_owned().ok();
            }
            if held.permit.is_some() {
                held.generation += 1;
                self.release_later(turn, held.generation);
                return None;
            }
        }
        // Someone is queued, or no slot is free: give ours back and queue.
        turn.lock().permit = None;
        let (slots, waiting, this) = (self.slots.clone(), self.waiting.clone(), self.clone());
        let held = Arc::clone(&turn.held);
        Some(Box::pin(async move {
            waiting.fetch_add(1, Ordering::SeqCst);
            let permit = slots.acquire_owned().await;
            waiting.fetch_sub(1, Ordering::SeqCst);
            if let Ok(permit) = permit {
                let turn = Turn { held };
                let mut h = turn.lock();
                h.permit = Some(permit);
                h.generation += 1;
                let generation = h.generation;
                drop(h);
                this.release_later(&turn, generation);
            }
        }))
    }

    /// Gives the slot of grant `generation` back after `hold_for`, unless the job
    /// has asked for it again meanwhile.
    fn release_later(&self, turn: &Turn, generation: u64) {
        let held = Arc::clone(&turn.held);
        let hold_for = self.hold_for;
        tokio::spawn(async move {
            tokio::time::sleep(hold_for).await;
            let turn = Turn { held };
            let mut h = turn.lock();
            if h.generation == generation {
                h.permit = None;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_millis(20);

    #[tokio::test]
    async fn a_lone_cpu_bound_job_never_waits_for_its_own_slot() {
        let slots = CpuSlots::new(1, HOLD);
        let turn = Turn::default();
        for _ in 0..100 {
            assert!(slots.next_slice(&turn).is_none());
        }
    }

    /// Regression: the slot used to be given back by a timer one tick after each
    /// slice, so a lone CPU-bound job mostly waited for its own slot (2.2-2.5x
    /// slower than a plain engine with epochs, measured by `arcp-host bench`).
    #[tokio::test]
    async fn jobs_queued_for_a_slot_take_turns_round_robin() {
        let slots = CpuSlots::new(1, Duration::from_secs(60));
        let (a, b) = (Turn::default(), Turn::default());
        assert!(slots.next_slice(&a).is_none(), "a takes the free slot");
        let b_waits = slots.next_slice(&b).expect("b queues");
        let b_waits = tokio::spawn(b_waits);
        tokio::task::yield_now().await;
        // a's next slice: b is queued, so a gives its slot to b and queues.
        let a_waits = slots.next_slice(&a).expect("a queues behind b");
        tokio::time::timeout(Duration::from_secs(5), b_waits)
            .await
            .expect("b gets the slot")
            .unwrap();
        let a_waits = tokio::spawn(a_waits);
        tokio::task::yield_now().await;
        assert!(!a_waits.is_finished(), "b holds the slot now");
        assert!(slots.next_slice(&b).is_some(), "b yields it back to a");
        tokio::time::timeout(Duration::from_secs(5), a_waits)
            .await
            .expect("a gets it back")
            .unwrap();
    }

    #[tokio::test]
    async fn a_slot_not_asked_for_again_goes_back_by_itself() {
        let slots = CpuSlots::new(1, HOLD);
        let (a, b) = (Turn::default(), Turn::default());
        assert!(slots.next_slice(&a).is_none());
        // a leaves its guest code (a long host call): b gets the slot after HOLD.
        let b_waits = slots.next_slice(&b).expect("b queues");
        tokio::time::timeout(Duration::from_secs(5), b_waits)
            .await
            .expect("a's slot went back");
    }
}
