//! The per-job resource limiter.
//!
//! wasmtime's `StoreLimits` bounds each memory on its own; a job's ceiling must hold
//! for the sum of all its memories (a component may hold several core instances,
//! each with a memory), so this limiter keeps the running total.

use wasmtime::ResourceLimiter;

/// Largest table a job may grow, in elements (guards against table bombs).
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Tracks a job's total linear memory against its ceiling.
#[derive(Debug)]
pub struct JobLimiter {
    ceiling: u64,
    in_use: u64,
    exceeded: Option<String>,
}

impl JobLimiter {
    /// A limiter with `ceiling` bytes for all of the job's memories together.
    pub fn new(ceiling: u64) -> JobLimiter {
        JobLimiter {
            ceiling,
            in_use: 0,
            exceeded: None,
        }
    }

    /// Bytes currently reserved by the job's memories.
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    /// Set once the job tried to pass a limit: the message names the limit.
    pub fn exceeded(&self) -> Option<String> {
        self.exceeded.clone()
    }
}

impl ResourceLimiter for JobLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = (desired as u64).saturating_sub(current as u64);
        let total = self.in_use.saturating_add(growth);
        if total > self.ceiling {
            let msg = format!(
                "job memory limit of {} MiB exceeded (the plugin asked for {} MiB in all)",
                self.ceiling >> 20,
                total.div_ceil(1 << 20)
            );
            self.exceeded = Some(msg.clone());
            // An error (rather than `Ok(false)`) traps the guest at once, so the job
            // ends with a message that names the limit instead of a guest abort.
            return Err(wasmtime::Error::msg(msg));
        }
        self.in_use = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            let msg = format!("job table limit of {MAX_TABLE_ELEMENTS} elements exceeded");
            self.exceeded = Some(msg.clone());
            return Err(wasmtime::Error::msg(msg));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_summed_over_all_memories() {
        let mut l = JobLimiter::new(10 << 20);
        assert!(l.memory_growing(0, 6 << 20, None).unwrap());
        assert!(l.memory_growing(0, 3 << 20, None).unwrap());
        // A second memory would push the total past 10 MiB although each alone fits.
        assert!(l.memory_growing(3 << 20, 5 << 20, None).is_err());
        assert!(l.exceeded().unwrap().contains("10 MiB"));
    }

    #[test]
    fn tables_are_capped() {
        let mut l = JobLimiter::new(1 << 20);
        assert!(l.table_growing(0, 1000, None).unwrap());
        assert!(l.table_growing(0, MAX_TABLE_ELEMENTS + 1, None).is_err());
    }
}
