//! A value that tasks wait on until it is what they need: a job's cancellation, its
//! record's store ticket and its outcome.
//!
//! These were tokio `watch` channels. A channel keeps its value in an allocation of
//! its own beside eight `Notify`s for its receivers, ~370 bytes, and every job held
//! three of them for as long as it was retained (7 days by default), though none has
//! more than a waiter or two. A `Signal` is the value and one `Notify`, inside the
//! job.
//!
//! Owns only the waiting; what the values mean is the job's.

use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;

/// A value, and the tasks waiting for it to change.
#[derive(Debug, Default)]
pub(crate) struct Signal<T> {
    value: Mutex<T>,
    changed: Notify,
}

impl<T> Signal<T> {
    pub(crate) fn new(value: T) -> Self {
        Signal {
            value: Mutex::new(value),
            changed: Notify::new(),
        }
    }

    /// Sets the value and wakes every waiter; returns the value it replaced.
    pub(crate) fn replace(&self, value: T) -> T {
        let old = std::mem::replace(&mut *self.lock(), value);
        self.changed.notify_waiters();
        old
    }

    /// Waits until `ready` makes something of the value, and returns that.
    pub(crate) async fn wait_for<R>(&self, mut ready: impl FnMut(&T) -> Option<R>) -> R {
        loop {
            // Made before the value is looked at: `notify_waiters` wakes a `Notified`
            // from its creation on, so a replace in between is not missed.
            let changed = self.changed.notified();
            if let Some(made) = ready(&self.lock()) {
                return made;
            }
            changed.await;
        }
    }

    /// The value under its lock. A panic while holding it cannot leave a value
    /// half-written (each is replaced whole), so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, T> {
        self.value.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiter_sees_a_value_set_before_it_waits() {
        let signal = Signal::new(None);
        assert_eq!(signal.replace(Some(7)), None);
        assert_eq!(signal.wait_for(|v| *v).await, 7);
    }

    #[tokio::test]
    async fn every_waiter_wakes_when_the_value_is_ready() {
        let signal = Arc::new(Signal::new(false));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let signal = signal.clone();
                tokio::spawn(async move { signal.wait_for(|v| v.then_some(())).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!signal.replace(true));
        // A second replace reports the first.
        assert!(signal.replace(true));
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("woken")
                .expect("joined");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_change_is_missed_between_the_look_and_the_wait() {
        // Values set from another thread while a waiter loops on intermediate ones:
        // it must end on the last, however the two interleave.
        for _ in 0..200 {
            let signal = Arc::new(Signal::new(0u32));
            let setter = {
                let signal = signal.clone();
                std::thread::spawn(move || {
                    for v in 1..=50 {
                        signal.replace(v);
                    }
                })
            };
            let seen = tokio::time::timeout(
                Duration::from_secs(5),
                signal.wait_for(|v| (*v == 50).then_some(*v)),
            )
            .await
            .expect("the last value was seen");
            assert_eq!(seen, 50);
            setter.join().expect("setter");
        }
    }
}
