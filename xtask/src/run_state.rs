//! The state of one lesson run: the servers, traces and background clients its steps have
//! started, and the data folder they share.
//!
//! The runner creates a [`LessonRun`] when a lesson starts and hands it to each step (the Prove
//! steps read it too); dropping it stops every server and finishes every trace, so a failed or
//! interrupted lesson leaves nothing behind. It sits below both the runner and the Prove steps,
//! so neither needs the other for it.

use crate::client::SentCounter;
use crate::lesson::{Lesson, Step, StepKind};
use crate::results::Outcome;
use crate::server::RunningServer;
use crate::trace::Trace;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// A background client step in flight.
#[derive(Debug)]
pub(crate) struct Background {
    /// The thread running the client, which returns the step's outcome.
    pub(crate) handle: JoinHandle<Outcome>,
    /// How many of its requests the client has sent so far.
    pub(crate) sent: Arc<SentCounter>,
    /// How many requests it sends in all.
    pub(crate) total: usize,
    /// When it started, for the step's time.
    pub(crate) started: Instant,
    /// The client step itself.
    pub(crate) step: Step,
    /// Whether a later step has already waited for this client's requests to be sent.
    pub(crate) settled: bool,
}

/// Everything a lesson run has started.
#[derive(Debug, Default)]
pub(crate) struct LessonRun {
    /// Servers by step name (kept after they exit, for their logs and exit status).
    pub(crate) servers: BTreeMap<String, RunningServer>,
    /// strace records by step name.
    pub(crate) traces: BTreeMap<String, Trace>,
    /// Background client steps still running, by step name.
    pub(crate) backgrounds: BTreeMap<String, Background>,
    /// The lesson run's data folder, `{dir}`: emptied when the lesson starts, shared by every
    /// step of the run (so a server started again finds what the one before it wrote).
    pub(crate) data_dir: PathBuf,
}

impl LessonRun {
    /// The server that writes the log `name`.
    pub(crate) fn server_with_log<'a>(
        &'a self,
        lesson: &Lesson,
        log: &str,
    ) -> Option<&'a RunningServer> {
        lesson.steps.iter().find_map(|step| match &step.kind {
            StepKind::Server(s) if s.log == log => self.servers.get(&step.name),
            _ => None,
        })
    }
}

impl Drop for LessonRun {
    fn drop(&mut self) {
        for trace in self.traces.values_mut() {
            let _ = trace.finish();
        }
        for server in self.servers.values_mut() {
            server.stop();
        }
    }
}
