//! Micro-benchmarks of the hot paths (criterion): envelope encode and decode, the
//! lease check, an event append to each store, the retention sweep forgetting a job
//! in memory, and a job's instantiation from the pre-instantiated component.
//!
//! `cargo bench --bench hot_paths` (about two minutes: small sample counts and
//! measurement times, set below). Frames are shaped as in
//! `../shared/interop/reference-transcript.jsonl` (the reference runtime's wire dump).

use arcp_host::lease::{Lease, LeaseMatcher, normalise_path};
use arcp_host::protocol::{Envelope, EventBody, EventPayload, Outbound};
use arcp_host::sandbox::{Flavor, JobSink, Sandbox, SandboxConfig};
use arcp_host::store::{MemoryStore, SqliteStore, Store, StoredEvent};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `job.submit` as the reference client sends it (transcript line 5).
const SUBMIT: &str = r#"{"arcp": "1.1", "id": "01M8HEM6EKXRGD20BJY4KQ6MZJ", "type": "job.submit", "payload": {"agent": "ticker", "input": {"count": 2}, "lease_request": {}}, "session_id": "sess_01M8HEM6EJ7MD7KVP8ZZYQ89EE", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}"#;

/// A `job.event` (`log`) as a runtime sends it (transcript line 7).
const EVENT: &str = r#"{"arcp": "1.1", "id": "01M8HEM6EMPYXDT02A9G21T5YG", "type": "job.event", "session_id": "sess_01M8HEM6EJ7MD7KVP8ZZYQ89EE", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "job_id": "job_01M8HEM6EKS2T8ATQR5AJWC1KB", "event_seq": 1, "payload": {"kind": "log", "ts": "2026-11-28T16:08:17.108238Z", "body": {"level": "info", "message": "tick 0"}}}"#;

fn envelopes(c: &mut Criterion) {
    let mut g = c.benchmark_group("envelope");
    g.bench_function("decode job.submit", |b| {
        b.iter(|| Envelope::decode(black_box(SUBMIT)).map(|e| e.payload.is_object()))
    });
    g.bench_function("decode job.event", |b| {
        b.iter(|| Envelope::decode(black_box(EVENT)).map(|e| e.payload.is_object()))
    });
    // What the runtime does per event: build the outbound envelope from the body a
    // guest emitted (here a `log`, the most frequent: its message is escaped once,
    // into the frame), then serialise it (the sequencer stamps `event_seq`).
    let event = |message: String| {
        Outbound::event(EventPayload {
            kind: "log".into(),
            ts: "2026-11-28T16:08:17.108238Z".into(),
            body: EventBody::Log {
                level: "info",
                message,
            },
        })
        .session("sess_01M8HEM6EJ7MD7KVP8ZZYQ89EE")
        .job("job_01M8HEM6EKS2T8ATQR5AJWC1KB")
        .trace(Some("4bf92f3577b34da6a3ce929d0e0e4736"))
    };
    g.bench_function("build + encode job.event", |b| {
        b.iter(|| {
            let mut out = event(black_box("tick 0").to_owned());
            out.event_seq = Some(1);
            out.encode()
        })
    });
    let built = {
        let mut out = event("tick 0".to_owned());
        out.event_seq = Some(1);
        out
    };
    g.bench_function("encode job.event", |b| {
        b.iter(|| black_box(&built).encode())
    });
    g.finish();
}

fn lease_checks(c: &mut Criterion) {
    let request = json!({
        "fs.read": ["/docs/**", "/data/*.csv", "/home/*/notes/**"],
        "net.fetch": ["https://api.example.com/v1/**", "https://*.example.org/**"],
    });
    let lease = Lease::from_request(request.as_object()).expect("a valid lease");
    let matcher = LeaseMatcher::new(&lease).expect("compiles");
    let mut g = c.benchmark_group("lease compile");
    // Every job compiles its lease when its sandbox is built; most ask for nothing.
    let empty = Lease::from_request(None).expect("the empty lease");
    g.bench_function("empty lease", |b| {
        b.iter(|| LeaseMatcher::new(black_box(&empty)))
    });
    g.bench_function("3 fs.read globs + 2 URL patterns", |b| {
        b.iter(|| LeaseMatcher::new(black_box(&lease)))
    });
    let cache = arcp_host::sandbox::MatcherCache::default();
    g.bench_function("the same lease, cached (MatcherCache::get)", |b| {
        b.iter(|| cache.get(black_box(&lease)))
    });
    g.bench_function("validate the same lease_request (submit)", |b| {
        b.iter(|| Lease::from_request(black_box(request.as_object())))
    });
    g.finish();
    let mut g = c.benchmark_group("lease check");
    g.bench_function("fs.read granted (normalise + 3 globs)", |b| {
        b.iter(|| {
            normalise_path(black_box("docs/a/../b/c.md"))
                .is_ok_and(|p| matcher.allows("fs.read", &p))
        })
    });
    g.bench_function("fs.read denied (normalise + 3 globs)", |b| {
        b.iter(|| {
            normalise_path(black_box("/etc/passwd")).is_ok_and(|p| matcher.allows("fs.read", &p))
        })
    });
    let granted = url::Url::parse("https://api.example.com/v1/items?page=2").expect("url");
    let denied = url::Url::parse("https://evil.example.net/v1/items").expect("url");
    g.bench_function("net.fetch granted (2 URL patterns)", |b| {
        b.iter(|| matcher.allows_url(black_box(&granted)))
    });
    g.bench_function("net.fetch denied (2 URL patterns)", |b| {
        b.iter(|| matcher.allows_url(black_box(&denied)))
    });
    g.bench_function("net.fetch parse + check", |b| {
        b.iter(|| {
            url::Url::parse(black_box("https://api.example.com/v1/items?page=2"))
                .is_ok_and(|u| matcher.allows_url(&u))
        })
    });
    g.finish();
}

fn stored_event(seq: u64) -> StoredEvent {
    StoredEvent {
        session_id: "sess_01M8HEM6EJ7MD7KVP8ZZYQ89EE".into(),
        seq,
        job_id: Some("job_01M8HEM6EKS2T8ATQR5AJWC1KB".into()),
        frame: EVENT.into(),
    }
}

fn event_appends(c: &mut Criterion) {
    let mut g = c.benchmark_group("event append");
    let memory = MemoryStore::new();
    let mut seq = 0;
    g.bench_function("in-memory store", |b| {
        b.iter_batched(
            || {
                seq += 1;
                stored_event(seq)
            },
            |e| memory.append_event(e),
            BatchSize::SmallInput,
        )
    });
    let dir = std::env::temp_dir().join(format!("arcp-hot-paths-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sqlite = SqliteStore::open(&dir).expect("opens");
    let mut seq = 0;
    // The hand-over to the writer thread, amortised with the commits it causes: a
    // batch of appends, then wait until the last has been committed.
    g.bench_function("SQLite store, append + commit (amortised)", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                seq += 1;
                sqlite.append_event(stored_event(seq));
            }
            sqlite.flush().expect("flush");
            t.elapsed()
        })
    });
    // One append waited for alone: the latency write-before-send adds to a frame
    // when nothing else is being written.
    let settled = sqlite.settled();
    g.bench_function("SQLite store, one append until committed", |b| {
        b.iter(|| {
            seq += 1;
            let ticket = sqlite.append_event(stored_event(seq));
            let mut s = settled.clone();
            while *s.borrow_and_update() < ticket {
                std::thread::yield_now();
            }
        })
    });
    g.finish();
    drop(sqlite);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Retention forgets finished jobs one by one, under the lock every session's sends
/// take. The in-memory store holds 100,000 envelopes of 10,000 jobs in 1,000
/// sessions; each forget is timed alone, and the store is filled anew once all
/// its jobs are gone.
fn job_forgetting(c: &mut Criterion) {
    const SESSIONS: u64 = 1_000;
    const JOBS_PER_SESSION: u64 = 10;
    const EVENTS_PER_JOB: u64 = 10;
    let fill = || {
        let store = MemoryStore::new();
        for s in 0..SESSIONS {
            for seq in 1..=JOBS_PER_SESSION * EVENTS_PER_JOB {
                let job = (seq - 1) / EVENTS_PER_JOB;
                store.append_event(StoredEvent {
                    session_id: format!("sess_{s}").into(),
                    seq,
                    job_id: Some(format!("job_{s}_{job}").into()),
                    frame: EVENT.into(),
                });
            }
        }
        store
    };
    let mut g = c.benchmark_group("retention");
    g.bench_function(
        "in-memory store, forget a job among 100,000 envelopes",
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut store = fill();
                let mut left = SESSIONS * JOBS_PER_SESSION;
                for _ in 0..iters {
                    if left == 0 {
                        store = fill();
                        left = SESSIONS * JOBS_PER_SESSION;
                    }
                    left -= 1;
                    let job = format!("job_{}_{}", left % SESSIONS, left / SESSIONS);
                    let t = Instant::now();
                    black_box(store.remove_job(black_box(&job)));
                    total += t.elapsed();
                }
                total
            })
        },
    );
    g.finish();
}

struct Discard;

impl JobSink for Discard {
    fn emit(
        &self,
        _kind: std::borrow::Cow<'static, str>,
        _body: arcp_host::protocol::EventBody,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

fn instantiation(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio");
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    let mut g = c.benchmark_group("instantiation");
    for name in ["echo@1.0.0", "ticker@1.0.0", "sleeper@1.0.0"] {
        let path = format!("{}/plugins/{name}.wasm", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).expect("plugin file");
        let (component, _) = sandbox
            .load_component(&bytes, None, Flavor::Plain)
            .expect("loads");
        let agent = sandbox.prepare(&component, Flavor::Plain).expect("links");
        let sink: Arc<dyn JobSink> = Arc::new(Discard);
        g.bench_function(format!("{name} (store + InstancePre, pooling)"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += sandbox
                            .instantiate_only(&agent, sink.clone())
                            .await
                            .expect("instantiates");
                    }
                    total
                })
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

criterion_group! {
    name = hot_paths;
    config = config();
    targets = envelopes, lease_checks, event_appends, job_forgetting, instantiation
}
criterion_main!(hot_paths);
