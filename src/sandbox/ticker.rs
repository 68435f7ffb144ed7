//! The epoch ticker: the thread that advances the engines' epoch every tick, which is
//! what makes a running guest yield, time out and see its cancellation.
//!
//! It ticks only while some job's store is alive: each store holds an [`Awake`],
//! and the thread parks when none is held (an idle host otherwise spent about 1 %
//! of a core ticking for nobody). Owns only the thread and its count; it knows
//! nothing of jobs.

use anyhow::Context as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use wasmtime::Engine;

/// The ticker's shared state.
pub(super) struct Ticker {
    /// Stores alive now.
    live: AtomicUsize,
    stop: AtomicBool,
    /// Ticks so far (for tests and nothing else).
    ticks: AtomicU64,
    thread: OnceLock<std::thread::Thread>,
}

/// Keeps the ticker ticking while held (by a job's store).
pub(super) struct Awake(Arc<Ticker>);

impl Ticker {
    /// Starts the thread ticking `engines` every `tick` while an [`Awake`] is held.
    pub(super) fn start(engines: Vec<Engine>, tick: Duration) -> anyhow::Result<Arc<Ticker>> {
        let ticker = Arc::new(Ticker {
            live: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            thread: OnceLock::new(),
        });
        let state = ticker.clone();
        let thread = std::thread::Builder::new()
            .name("arcp-epoch".into())
            .spawn(move || {
                while !state.stop.load(Ordering::SeqCst) {
                    if state.live.load(Ordering::SeqCst) == 0 {
                        // Woken by the first `Awake` (an unpark before this park
                        // makes it return at once) or by `stop`.
                        std::thread::park();
                        continue;
                    }
                    std::thread::sleep(tick);
                    for e in &engines {
                        e.increment_epoch();
                    }
                    state.ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
            .context("starting the epoch ticker")?;
        let _ = ticker.thread.set(thread.thread().clone());
        Ok(ticker)
    }

    /// Ticks until the returned [`Awake`] (and every other) is dropped.
    pub(super) fn awake(self: &Arc<Self>) -> Awake {
        if self.live.fetch_add(1, Ordering::SeqCst) == 0 {
            self.unpark();
        }
        Awake(self.clone())
    }

    /// Stops the thread for good.
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.unpark();
    }

    fn unpark(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    #[cfg(test)]
    fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }
}

impl Drop for Awake {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `cond` holds within 5 s (the machine may be busy).
    fn soon(mut cond: impl FnMut() -> bool) -> bool {
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < until {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    #[test]
    fn it_ticks_only_while_a_store_is_alive() {
        let ticker = Ticker::start(vec![Engine::default()], Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ticker.ticks(), 0, "no store: no tick");

        let awake = ticker.awake();
        let also = ticker.awake();
        assert!(soon(|| ticker.ticks() > 5), "ticking");
        drop(awake);
        let before = ticker.ticks();
        assert!(
            soon(|| ticker.ticks() > before + 5),
            "one store still alive"
        );

        drop(also);
        // Parked once the tick under way has ended: the count stops moving.
        let mut last = ticker.ticks();
        assert!(soon(|| {
            std::thread::sleep(Duration::from_millis(20));
            let now = ticker.ticks();
            std::mem::replace(&mut last, now) == now
        }));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ticker.ticks(), last, "parked");

        let _again = ticker.awake();
        assert!(soon(|| ticker.ticks() > last), "woken again");
        ticker.stop();
    }
}
