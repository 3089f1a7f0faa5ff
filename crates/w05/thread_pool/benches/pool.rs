//! Pool benchmarks: our work-stealing pool against `rayon::spawn`, a crossbeam-channel-fed pool
//! and a std-mpsc-fed pool, every one with two workers.
//!
//! - **burst**: 1,000,000 tiny tasks (xxh3 of 64 bytes) submitted from one thread; the time until
//!   the last one has run, per task.
//! - **round trip**: submit one task and wait until its result is visible to the submitter; mean
//!   and 99th percentile.
//! - **idle CPU**: the process's CPU time while the pool sits idle for one second.
//!
//! Criterion measures the first two; because criterion reports means and not tail latency, a
//! plain measurement loop afterwards produces the summary table (burst ns/task, round-trip mean and
//! p99, idle CPU) that the crate README publishes. Run with:
//!
//! ```sh
//! cargo bench -p thread_pool --bench pool
//! ```
//!
//! Under `cargo test --benches` (no `--bench` flag) criterion runs each benchmark once as a smoke
//! test and the summary loop is skipped. A name filter (`cargo bench -p thread_pool --bench pool
//! -- rayon`) limits both criterion and the summary to the matching pools.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use crossbeam_utils::CachePadded;
use thread_pool::ThreadPool;
use xxhash_rust::xxh3::xxh3_64;

/// Tasks per burst.
const BURST: u64 = 1_000_000;
/// Workers in every pool.
const WORKERS: usize = 2;
/// Round trips measured by the summary loop, after as many again for warm-up.
const ROUND_TRIPS: usize = 100_000;
/// Bursts measured by the summary loop.
const SUMMARY_BURSTS: u32 = 5;

/// A boxed task, as the two channel-fed pools carry them.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// Something that runs tasks on two worker threads.
trait Pool {
    fn name(&self) -> &'static str;
    fn submit<F: FnOnce() + Send + 'static>(&self, task: F);
}

/// Our pool, with its default capacity (the submitter blocks when 65,536 tasks are pending).
struct Ours(ThreadPool);

impl Pool for Ours {
    fn name(&self) -> &'static str {
        "thread_pool (this crate)"
    }

    fn submit<F: FnOnce() + Send + 'static>(&self, task: F) {
        self.0
            .spawn(task)
            .unwrap_or_else(|_| panic!("the pool is running"));
    }
}

/// `rayon::spawn` on a global pool built with two threads.
struct Rayon;

impl Pool for Rayon {
    fn name(&self) -> &'static str {
        "rayon::spawn"
    }

    fn submit<F: FnOnce() + Send + 'static>(&self, task: F) {
        rayon::spawn(task);
    }
}

/// The minimal pool most people write first: workers looping over a crossbeam channel.
struct CrossbeamChannelPool {
    sender: Option<crossbeam_channel::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl CrossbeamChannelPool {
    fn new(workers: usize) -> Self {
        let (sender, receiver) = crossbeam_channel::unbounded::<Job>();
        let workers = (0..workers)
            .map(|_| {
                let receiver = receiver.clone();
                thread::spawn(move || {
                    for job in receiver {
                        job();
                    }
                })
            })
            .collect();
        Self {
            sender: Some(sender),
            workers,
        }
    }
}

impl Pool for CrossbeamChannelPool {
    fn name(&self) -> &'static str {
        "crossbeam-channel pool"
    }

    fn submit<F: FnOnce() + Send + 'static>(&self, task: F) {
        if let Some(sender) = &self.sender {
            sender.send(Box::new(task)).expect("workers are running");
        }
    }
}

impl Drop for CrossbeamChannelPool {
    fn drop(&mut self) {
        self.sender.take();
        for worker in self.workers.drain(..) {
            worker.join().expect("worker exits cleanly");
        }
    }
}

/// The Rust book's pool: workers sharing a std mpsc receiver behind a mutex.
struct MpscPool {
    sender: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl MpscPool {
    fn new(workers: usize) -> Self {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = (0..workers)
            .map(|_| {
                let receiver = Arc::clone(&receiver);
                thread::spawn(move || {
                    loop {
                        // The guard is a temporary, dropped before the job runs.
                        let next = receiver.lock().expect("not poisoned").recv();
                        match next {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        Self {
            sender: Some(sender),
            workers,
        }
    }
}

impl Pool for MpscPool {
    fn name(&self) -> &'static str {
        "std mpsc pool"
    }

    fn submit<F: FnOnce() + Send + 'static>(&self, task: F) {
        if let Some(sender) = &self.sender {
            sender.send(Box::new(task)).expect("workers are running");
        }
    }
}

impl Drop for MpscPool {
    fn drop(&mut self) {
        self.sender.take();
        for worker in self.workers.drain(..) {
            worker.join().expect("worker exits cleanly");
        }
    }
}

/// Completed-task counters, one cache line per thread so counting does not itself become the
/// bottleneck being measured (every pool pays the same uncontended increment per task).
static COMPLETED: [CachePadded<AtomicU64>; 64] =
    [const { CachePadded::new(AtomicU64::new(0)) }; 64];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % COMPLETED.len();
}

fn count_completion() {
    SLOT.with(|&slot| COMPLETED[slot].fetch_add(1, Ordering::Relaxed));
}

fn completed() -> u64 {
    COMPLETED
        .iter()
        .map(|counter| counter.load(Ordering::Relaxed))
        .sum()
}

/// The tiny task: xxh3 of 64 bytes derived from its index.
fn tiny_task(index: u64) -> u64 {
    let mut input = [0u8; 64];
    input[..8].copy_from_slice(&index.to_le_bytes());
    xxh3_64(black_box(&input))
}

/// Waits (yielding, so the workers get the cores) until `target` tasks have completed in total.
fn wait_for_completions(target: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while completed() < target {
        assert!(Instant::now() < deadline, "tasks did not complete");
        thread::yield_now();
    }
}

/// Submits [`BURST`] tiny tasks from this thread and returns the time until all of them ran.
fn burst<P: Pool>(pool: &P) -> Duration {
    let target = completed() + BURST;
    let started = Instant::now();
    for index in 0..BURST {
        pool.submit(move || {
            black_box(tiny_task(index));
            count_completion();
        });
    }
    wait_for_completions(target);
    started.elapsed()
}

/// The result slot of the round-trip benchmark: the task stores its sequence number there.
static ROUND_TRIP_DONE: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));

/// Submits one task and waits until its result is visible here; returns the round-trip time.
fn round_trip<P: Pool>(pool: &P, sequence: u64) -> Duration {
    let started = Instant::now();
    pool.submit(move || {
        black_box(tiny_task(sequence));
        ROUND_TRIP_DONE.store(sequence, Ordering::Release);
    });
    // Spin briefly, then yield: on two cores the submitter must not starve the workers.
    let mut spins = 0u32;
    while ROUND_TRIP_DONE.load(Ordering::Acquire) != sequence {
        if spins < 2_000 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            thread::yield_now();
        }
    }
    started.elapsed()
}

/// A sequence number generator shared by every round-trip measurement, so a stale store can
/// never be mistaken for the current one.
static SEQUENCE: AtomicU64 = AtomicU64::new(1);

fn next_sequence() -> u64 {
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

fn bench_pool<P: Pool>(criterion: &mut Criterion, pool: &P) {
    let mut group = criterion.benchmark_group("burst_1m_tiny_tasks");
    group.throughput(Throughput::Elements(BURST));
    group.bench_function(pool.name(), |bencher| {
        bencher.iter_custom(|bursts| (0..bursts).map(|_| burst(pool)).sum());
    });
    group.finish();

    let mut group = criterion.benchmark_group("round_trip");
    group.bench_function(pool.name(), |bencher| {
        bencher.iter_custom(|trips| (0..trips).map(|_| round_trip(pool, next_sequence())).sum());
    });
    group.finish();
}

/// One row of the summary table.
struct Summary {
    name: &'static str,
    burst_ns_per_task: f64,
    round_trip_mean_ns: f64,
    round_trip_p50_ns: u128,
    round_trip_p99_ns: u128,
    idle_cpu_ms_per_s: f64,
}

fn summarise<P: Pool>(pool: &P) -> Summary {
    let burst_total: Duration = (0..SUMMARY_BURSTS).map(|_| burst(pool)).sum();
    let burst_ns_per_task =
        burst_total.as_nanos() as f64 / (f64::from(SUMMARY_BURSTS) * BURST as f64);

    for _ in 0..ROUND_TRIPS {
        round_trip(pool, next_sequence());
    }
    let mut trips: Vec<u128> = (0..ROUND_TRIPS)
        .map(|_| round_trip(pool, next_sequence()).as_nanos())
        .collect();
    trips.sort_unstable();
    let round_trip_mean_ns = trips.iter().sum::<u128>() as f64 / trips.len() as f64;
    let round_trip_p50_ns = trips[trips.len() / 2];
    let round_trip_p99_ns = trips[trips.len() * 99 / 100];

    // Let the workers finish their spinning, then watch the idle process for one second.
    thread::sleep(Duration::from_millis(100));
    let before = test_support::Proc::this().cpu_ticks();
    thread::sleep(Duration::from_secs(1));
    let ticks = test_support::Proc::this().cpu_ticks() - before;
    // Clock ticks are 10 ms on Linux (USER_HZ = 100).
    let idle_cpu_ms_per_s = ticks as f64 * 10.0;

    Summary {
        name: pool.name(),
        burst_ns_per_task,
        round_trip_mean_ns,
        round_trip_p50_ns,
        round_trip_p99_ns,
        idle_cpu_ms_per_s,
    }
}

fn main() {
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();

    rayon::ThreadPoolBuilder::new()
        .num_threads(WORKERS)
        .thread_name(|index| format!("rayon-{index}"))
        .build_global()
        .expect("the global rayon pool is built once");
    let ours = Ours(
        ThreadPool::builder()
            .workers(WORKERS)
            .thread_name("bench-pool")
            .build()
            .expect("the pool starts"),
    );
    let crossbeam = CrossbeamChannelPool::new(WORKERS);
    let std_mpsc = MpscPool::new(WORKERS);

    bench_pool(&mut criterion, &ours);
    bench_pool(&mut criterion, &Rayon);
    bench_pool(&mut criterion, &crossbeam);
    bench_pool(&mut criterion, &std_mpsc);
    criterion.final_summary();

    if !measuring {
        return;
    }
    // A criterion name filter (a positional argument) limits the summary to the matching pools.
    let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|filter| name.contains(filter));
    let mut rows = Vec::new();
    if wanted(ours.name()) {
        rows.push(summarise(&ours));
    }
    if wanted(Rayon.name()) {
        rows.push(summarise(&Rayon));
    }
    if wanted(crossbeam.name()) {
        rows.push(summarise(&crossbeam));
    }
    if wanted(std_mpsc.name()) {
        rows.push(summarise(&std_mpsc));
    }
    println!();
    println!(
        "| pool ({WORKERS} workers) | burst, ns/task | round trip mean | round trip p50 | round trip p99 | idle CPU |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {:.0} | {:.2} µs | {:.2} µs | {:.2} µs | {:.0} ms/s |",
            row.name,
            row.burst_ns_per_task,
            row.round_trip_mean_ns / 1000.0,
            row.round_trip_p50_ns as f64 / 1000.0,
            row.round_trip_p99_ns as f64 / 1000.0,
            row.idle_cpu_ms_per_s,
        );
    }
}
