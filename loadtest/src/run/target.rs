//! What differs between the apps a run can measure: one trait, [`Target`], with one
//! implementation per kind of app — the reference server lockbench starts
//! (`reference.rs`), an app that is already running (`external.rs`) — and the one run
//! sequence written over it (`sequence.rs`). Each implementation answers: how the app is
//! started and stopped, what work it is given, where its lock errors come from (the
//! server's counters, the app's log, the clients' answers), what it can audit, and which
//! faults it supports.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::RunOptions;
use crate::load::Shared;
use crate::report::Report;
use crate::scenario::Scenario;

/// What every phase of a run may read: the scenario as it runs, the options, the report's
/// folder.
pub(super) struct RunCtx<'a> {
    pub(super) scenario: &'a Scenario,
    pub(super) opts: &'a RunOptions,
    pub(super) out_dir: &'a Path,
}

/// The app once it is up: where the load goes, and what the simulated users share (the
/// requests they send, the admin token, the recorder).
pub(super) struct Started {
    pub(super) url: String,
    pub(super) shared: Arc<Shared>,
}

/// How the wait for the app's work ended.
pub(super) struct Waited {
    /// An interruption (Ctrl-C, SIGTERM, SIGHUP) ended it.
    pub(super) interrupted: bool,
}

/// One kind of app a run measures. The sequence calls the methods in this order, once
/// each: `check_faults`, `start`, `load_cap`, `begin`, `wait`, `stop`, `fill`; `stop` also
/// after a failed `begin`.
pub(super) trait Target {
    /// The report's `target.kind`: "reference" or "external".
    fn kind(&self) -> &'static str;

    /// The faults this kind of app supports; an error names the first it does not.
    fn check_faults(&self, ctx: &RunCtx<'_>) -> anyhow::Result<()>;

    /// Everything before the load: check or start the app and prepare its work.
    fn start(&mut self, ctx: &RunCtx<'_>) -> anyhow::Result<Started>;

    /// The longest the load may run: a backstop behind `wait`.
    fn load_cap(&self, ctx: &RunCtx<'_>) -> Duration;

    /// Once the load runs: give the app its work (a photo batch) and start the faults.
    fn begin(&mut self, ctx: &RunCtx<'_>, shared: &Arc<Shared>) -> anyhow::Result<()>;

    /// Waits until the work is done plus the tail, the cap, or an interruption.
    fn wait(&mut self, ctx: &RunCtx<'_>, shared: &Shared) -> Waited;

    /// After the load stopped: reads what only the app can tell (its counters, its log),
    /// then stops whatever lockbench started. An error means the run cannot be reported.
    fn stop(&mut self, ctx: &RunCtx<'_>) -> anyhow::Result<()>;

    /// Fills the report with what this kind of app can tell: lock errors and where they
    /// come from, the batch, the audit, the settings in effect, the notes.
    fn fill(
        &mut self,
        ctx: &RunCtx<'_>,
        shared: &Shared,
        report: &mut Report,
    ) -> anyhow::Result<()>;
}
