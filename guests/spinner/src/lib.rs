//! `spinner`: loops forever without calling the host. Only the runtime's epoch
//! interruption (cancel, `max_runtime_sec`) stops it.

wit_bindgen::generate!({ path: "../../wit", world: "agent" });

struct Spinner;

impl Guest for Spinner {
    fn run(_job: JobInfo, _input_json: String) -> Result<String, Failure> {
        let mut n: u64 = 0;
        loop {
            // black_box keeps the optimiser from proving the loop side-effect free.
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

export!(Spinner);
