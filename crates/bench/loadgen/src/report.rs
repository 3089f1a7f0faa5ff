//! The result of a run: throughput, latency percentiles, and what went wrong.
//!
//! [`Summary`] is what `--json` prints and what `cargo xtask bench` reads back, so its field
//! names are part of the load generator's interface. In the key-value mixes it also reports the
//! latency of each verb apart (`by_verb.get`, `by_verb.set`), recorded in [`Histograms`].

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;

use crate::mix::{MixKind, Verb};

/// The latency histograms of one load thread, in nanoseconds: every response, and the `GET`s
/// and `SET`s of the key-value mixes apart.
#[derive(Debug)]
pub(crate) struct Histograms {
    /// Every correct response.
    pub(crate) all: Histogram<u64>,
    /// The `GET`s.
    pub(crate) get: Histogram<u64>,
    /// The `SET`s.
    pub(crate) set: Histogram<u64>,
}

impl Histograms {
    /// Empty histograms from 1 ns to an hour, at three significant digits.
    pub(crate) fn new() -> anyhow::Result<Histograms> {
        let histogram = || {
            Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                .context("creating a latency histogram")
        };
        Ok(Histograms {
            all: histogram()?,
            get: histogram()?,
            set: histogram()?,
        })
    }

    /// Records one response of `verb` that took `nanos`.
    pub(crate) fn record(&mut self, verb: Verb, nanos: u64) {
        self.all.saturating_record(nanos);
        match verb {
            Verb::Get => self.get.saturating_record(nanos),
            Verb::Set => self.set.saturating_record(nanos),
            Verb::Other => {}
        }
    }

    /// Adds another thread's histograms to these.
    pub(crate) fn add(&mut self, other: &Histograms) -> anyhow::Result<()> {
        self.all
            .add(&other.all)
            .context("merging latency histograms")?;
        self.get
            .add(&other.get)
            .context("merging latency histograms")?;
        self.set
            .add(&other.set)
            .context("merging latency histograms")?;
        Ok(())
    }

    /// The per-verb part of the summary: the verbs that got at least one response.
    pub(crate) fn by_verb(&self) -> ByVerb {
        let of = |histogram: &Histogram<u64>| {
            (!histogram.is_empty()).then(|| VerbLatency {
                completed: histogram.len(),
                latency: Latency::from_nanos(histogram),
            })
        };
        ByVerb {
            get: of(&self.get),
            set: of(&self.set),
        }
    }
}

/// The latency of one verb's responses.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct VerbLatency {
    /// Correct responses to this verb.
    pub(crate) completed: u64,
    /// Their latency.
    pub(crate) latency: Latency,
}

/// Latency by verb, in the key-value mixes; a verb the run did not send is left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub(crate) struct ByVerb {
    /// `GET`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) get: Option<VerbLatency>,
    /// `SET`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) set: Option<VerbLatency>,
}

impl ByVerb {
    /// Whether no verb was recorded apart (every mix but the key-value ones).
    pub(crate) fn is_empty(&self) -> bool {
        self.get.is_none() && self.set.is_none()
    }
}

/// Latency percentiles of one run, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub(crate) struct Latency {
    /// Median.
    pub(crate) p50_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
    /// 99.9th percentile.
    pub(crate) p999_us: f64,
    /// The slowest response.
    pub(crate) max_us: f64,
    /// Arithmetic mean.
    pub(crate) mean_us: f64,
}

impl Latency {
    /// Reads the percentiles off a histogram of nanoseconds.
    pub(crate) fn from_nanos(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        let us = |nanos: u64| nanos as f64 / 1_000.0;
        Latency {
            p50_us: us(histogram.value_at_quantile(0.50)),
            p99_us: us(histogram.value_at_quantile(0.99)),
            p999_us: us(histogram.value_at_quantile(0.999)),
            max_us: us(histogram.max()),
            mean_us: histogram.mean() / 1_000.0,
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Summary {
    /// The server's address.
    pub(crate) addr: String,
    /// The request mix.
    pub(crate) mix: MixKind,
    /// Connections opened.
    pub(crate) connections: usize,
    /// Requests in flight per connection.
    pub(crate) depth: usize,
    /// Load generator threads.
    pub(crate) threads: usize,
    /// Responses received and checked, all of them correct.
    pub(crate) completed: u64,
    /// Responses that differed from the expected bytes.
    pub(crate) mismatches: u64,
    /// Connections that failed (refused, reset, or closed by the server with requests owed).
    pub(crate) connection_errors: u64,
    /// Wall time from the first request to the last response, in seconds.
    pub(crate) elapsed_s: f64,
    /// Completed responses per second of `elapsed_s`.
    pub(crate) throughput_rps: f64,
    /// Latency from sending a request to receiving the last byte of its response.
    pub(crate) latency: Latency,
    /// The same, for each verb of a key-value mix apart (absent in the other mixes).
    #[serde(skip_serializing_if = "ByVerb::is_empty")]
    pub(crate) by_verb: ByVerb,
    /// The first mismatch or connection error, to say what went wrong.
    pub(crate) first_error: Option<String>,
    /// CPU time (user + system) the load generator itself used per response, in µs: the
    /// evidence that it is not the bottleneck (compare the server's own figure).
    pub(crate) loadgen_cpu_us_per_request: f64,
}

/// CPU time (user + system) this process has used so far (`test_support::Proc`); `None` where
/// `/proc` is not there.
pub(crate) fn process_cpu_time() -> Option<Duration> {
    let this = test_support::Proc::this();
    this.has("stat").then(|| this.cpu_time())
}

impl Summary {
    /// Whether every request got exactly its expected response.
    pub(crate) fn is_clean(&self) -> bool {
        self.mismatches == 0 && self.connection_errors == 0
    }

    /// Throughput for `completed` responses in `elapsed`.
    pub(crate) fn rate(completed: u64, elapsed: Duration) -> f64 {
        let seconds = elapsed.as_secs_f64();
        if seconds > 0.0 {
            completed as f64 / seconds
        } else {
            0.0
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} mix={} connections={} depth={} threads={}",
            self.addr, self.mix, self.connections, self.depth, self.threads
        )?;
        writeln!(
            f,
            "  {} responses in {:.2} s: {:.0} req/s",
            self.completed, self.elapsed_s, self.throughput_rps
        )?;
        let l = &self.latency;
        writeln!(
            f,
            "  latency µs: p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
            l.p50_us, l.p99_us, l.p999_us, l.max_us, l.mean_us
        )?;
        for (verb, entry) in [("GET", self.by_verb.get), ("SET", self.by_verb.set)] {
            if let Some(VerbLatency { completed, latency }) = entry {
                writeln!(
                    f,
                    "  {verb} latency µs ({completed} responses): p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
                    latency.p50_us, latency.p99_us, latency.p999_us, latency.max_us
                )?;
            }
        }
        write!(
            f,
            "  mismatches {}  connection errors {}  loadgen CPU {:.2} µs/req",
            self.mismatches, self.connection_errors, self.loadgen_cpu_us_per_request
        )?;
        if let Some(error) = &self.first_error {
            write!(f, "\n  first error: {error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_read_in_microseconds() {
        let mut histogram = Histogram::<u64>::new(3).unwrap();
        for micros in 1..=1000u64 {
            histogram.record(micros * 1_000).unwrap();
        }
        let latency = Latency::from_nanos(&histogram);
        assert!((latency.p50_us - 500.0).abs() < 1.0, "{latency:?}");
        assert!((latency.p99_us - 990.0).abs() < 1.0, "{latency:?}");
        assert!((latency.max_us - 1000.0).abs() < 1.0, "{latency:?}");
        assert_eq!(
            Latency::from_nanos(&Histogram::new(3).unwrap()),
            Latency::default()
        );
    }

    #[test]
    fn cpu_time_of_this_process_grows_with_work() {
        let before = process_cpu_time().expect("/proc/self/stat is readable");
        // Work until the kernel has charged at least one more tick; the bound on time only
        // guards against a hang.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after == before && start.elapsed() < Duration::from_secs(20) {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i);
            }
            std::hint::black_box(x);
            after = process_cpu_time().unwrap();
        }
        assert!(after > before, "{before:?} -> {after:?}");
    }

    #[test]
    fn each_verb_is_recorded_apart_as_well_as_in_the_total() {
        let mut histograms = Histograms::new().unwrap();
        for micros in 1..=100u64 {
            histograms.record(Verb::Get, micros * 1_000);
        }
        histograms.record(Verb::Set, 5_000_000);
        histograms.record(Verb::Other, 7_000);
        let mut merged = Histograms::new().unwrap();
        merged.add(&histograms).unwrap();
        merged.add(&histograms).unwrap();
        assert_eq!(merged.all.len(), 204);
        let by_verb = merged.by_verb();
        let get = by_verb.get.expect("GETs were recorded");
        assert_eq!(get.completed, 200);
        assert!((get.latency.p50_us - 50.0).abs() < 1.0, "{get:?}");
        let set = by_verb.set.expect("SETs were recorded");
        assert_eq!(set.completed, 2);
        assert!((set.latency.p99_us - 5_000.0).abs() < 5.0, "{set:?}");
        let json = serde_json::to_value(by_verb).unwrap();
        assert!(json["get"]["latency"]["p99_us"].is_number(), "{json}");
        assert!(Histograms::new().unwrap().by_verb().is_empty());
        let only_sets = ByVerb {
            get: None,
            ..by_verb
        };
        assert_eq!(serde_json::to_value(only_sets).unwrap().get("get"), None);
    }

    #[test]
    fn rate_divides_by_elapsed_seconds() {
        assert_eq!(Summary::rate(500, Duration::from_millis(250)), 2_000.0);
        assert_eq!(Summary::rate(5, Duration::ZERO), 0.0);
    }
}
