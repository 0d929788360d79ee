//! The run's one sequence, for every kind of app: check, start the app, start the load, give
//! the app its work, wait, stop the load, stop the app, fill the report, judge it. What
//! differs between apps is the [`Target`]'s; the order, and what happens on every path out,
//! is this file's.

use anyhow::{bail, Context};

use super::gates::judge;
use super::target::{RunCtx, Started, Target};
use super::{base_report, settings_requested};
use crate::load;
use crate::report::{self, Report};

/// Runs one scenario against one app and returns its judged report.
pub(super) fn run(
    ctx: &RunCtx<'_>,
    target: &mut dyn Target,
    started_at: String,
) -> anyhow::Result<Report> {
    target.check_faults(ctx)?;
    let Started { url, shared } = target.start(ctx)?;
    let attack = load::start(&url, &shared, target.load_cap(ctx));
    if let Some(hub) = ctx.opts.live.clone().or_else(super::live::current) {
        // A batch posted to the app (its photos and corrupt files): the run lasts until it is
        // done; else it runs its time.
        let sc = ctx.scenario;
        let batch = sc.target.is_none() || sc.endpoints.as_ref().is_some_and(|e| e.batch.is_some());
        let (run_for, photos) = if batch {
            (None, Some((sc.batch.count + sc.batch.corrupt) as u64))
        } else {
            (Some(sc.duration.target_run), None)
        };
        hub.attach(shared.clone(), run_for, photos);
    }
    if let Err(e) = target.begin(ctx, &shared) {
        shared.stop_load();
        let _ = attack.join();
        let _ = target.stop(ctx);
        return Err(e);
    }
    let waited = target.wait(ctx, &shared);
    shared.stop_load();
    let load_time = shared.recorder.started().elapsed();
    let joined = attack.join();
    target.stop(ctx)?;
    match joined {
        Ok(result) => result.context("the load generator failed")?,
        Err(_) => bail!("the load generator panicked"),
    }
    let kind = report::Target {
        kind: target.kind().to_owned(),
        url,
        app: None,
    };
    let mut report = base_report(ctx.scenario, ctx.opts, started_at, kind, &shared, load_time);
    report.settings_requested = settings_requested(ctx.scenario)?;
    report.interrupted = waited.interrupted;
    target.fill(ctx, &shared, &mut report)?;
    judge(ctx.scenario, &mut report);
    Ok(report)
}
