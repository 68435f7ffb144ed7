//! `spinner`: loops forever without calling the host. Only the runtime's epoch
//! interruption (cancel, `max_runtime_sec`) stops it. Its input is never read.

use arcp_agent::prelude::*;

fn run(_job: Job, _input: RawJson) -> Result<(), Failure> {
    let mut n: u64 = 0;
    loop {
        // black_box keeps the optimiser from proving the loop side-effect free.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

arcp_agent::agent!(run);
