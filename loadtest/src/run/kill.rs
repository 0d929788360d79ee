//! The `kill-worker` fault: waits for the batch to reach its photo, SIGKILLs the worker
//! running the processor (or any worker), waits for the supervisor's restart and posts the
//! batch again as an admin would. Finds the workers through their `/api/stats`; starts
//! and stops nothing else.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::scrape::{scrape_stats, ServerFigures};
use crate::run::faults::FaultRecord;
use crate::run::http::{self, Again};
use crate::scenario::{Fault, KillTarget};

/// A `kill-worker` fault on its way: waiting for its photo, killed and waiting for the
/// restart, batch posted again.
pub(super) struct Kill {
    fault: Fault,
    at_photo: u64,
    target: KillTarget,
    state: KillState,
}

enum KillState {
    Waiting,
    /// Killed; the batch is posted again once the supervisor has restarted the worker.
    Killed {
        at: Instant,
        worker: String,
        pid: u32,
        processor: bool,
        processed: u64,
        /// Lock errors the workers had counted just before the kill.
        counted: u64,
    },
    Done(FaultRecord),
}

/// What a kill needs from the runner.
pub(super) struct KillEnv<'a> {
    pub(super) client: &'a reqwest::blocking::Client,
    pub(super) url: &'a str,
    pub(super) token: &'a str,
    pub(super) workers: u32,
    pub(super) batch_id: i64,
    pub(super) photo_dir: &'a Path,
    pub(super) restarts: &'a Path,
    pub(super) recorder: &'a crate::load::Recorder,
    /// lockbench's own requests (posting the batch again).
    pub(super) runner: &'a crate::load::Recorder,
}

impl Kill {
    /// The kills a scenario's faults ask for, each waiting for its photo.
    pub(super) fn from_faults(faults: &[Fault]) -> Vec<Kill> {
        faults
            .iter()
            .filter_map(|f| match f {
                Fault::KillWorker {
                    at_photo, worker, ..
                } => Some(Kill {
                    fault: f.clone(),
                    at_photo: *at_photo,
                    target: worker.clone(),
                    state: KillState::Waiting,
                }),
                _ => None,
            })
            .collect()
    }

    /// Still waiting for its photo.
    pub(super) fn waiting(&self) -> bool {
        matches!(self.state, KillState::Waiting)
    }

    /// Killed, and waiting for the supervisor's restart and the batch posted again: the
    /// batch runs nowhere for a while, on purpose.
    pub(super) fn restarting(&self) -> bool {
        matches!(self.state, KillState::Killed { .. })
    }

    fn record(&self, env: &KillEnv<'_>, started: Option<Instant>, outcome: String) -> FaultRecord {
        let since = |t: Instant| {
            (t.saturating_duration_since(env.recorder.started())
                .as_secs_f64()
                * 10.0)
                .round()
                / 10.0
        };
        FaultRecord {
            kind: self.fault.kind().to_owned(),
            description: self.fault.describe(),
            spec: serde_json::to_value(&self.fault).unwrap_or_default(),
            started_s: started.map(since),
            ended_s: started.map(|_| since(Instant::now())),
            outcome,
            lock_errors_before: None,
        }
    }

    pub(super) fn step(&mut self, processed: u64, env: &KillEnv<'_>) {
        match &self.state {
            KillState::Waiting if processed >= self.at_photo => {
                let pick = pick_worker(env, &self.target);
                self.state = match pick {
                    Err(why) => KillState::Done(self.record(env, None, why)),
                    Ok((worker, pid, processor, counted)) => {
                        use nix::sys::signal::{kill, Signal};
                        use nix::unistd::Pid;
                        match kill(Pid::from_raw(pid as i32), Signal::SIGKILL) {
                            Ok(()) => KillState::Killed {
                                at: Instant::now(),
                                worker,
                                pid,
                                processor,
                                processed,
                                counted,
                            },
                            Err(e) => KillState::Done(self.record(
                                env,
                                None,
                                format!("could not kill worker {worker} (pid {pid}): {e}"),
                            )),
                        }
                    }
                };
            }
            KillState::Killed {
                at,
                worker,
                pid,
                processor,
                processed,
                counted,
            } => {
                let restarted = std::fs::read_to_string(env.restarts).is_ok_and(|t| {
                    t.lines().any(|l| {
                        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
                            v["pid"].as_u64() == Some(u64::from(*pid)) && v["action"] == "restarted"
                        })
                    })
                });
                if !restarted && at.elapsed() < Duration::from_secs(30) {
                    return;
                }
                let killed = format!(
                    "SIGKILL to worker {worker} (pid {pid}{}) at photo {processed}, when the workers had counted {counted} lock errors",
                    if *processor { ", running the processor" } else { "" }
                );
                let outcome = if !restarted {
                    format!("{killed}; the supervisor did not restart it within 30 s")
                } else if !processor {
                    format!("{killed}; the supervisor restarted it; the batch went on in its own worker")
                } else {
                    match repost_batch(env) {
                        Ok(()) => format!(
                            "{killed}; the supervisor restarted it and lockbench posted the batch again, as an admin would: the processor resumes from what was committed"
                        ),
                        Err(e) => format!("{killed}; posting the batch again failed: {e}"),
                    }
                };
                let (at, counted) = (*at, *counted);
                let mut record = self.record(env, Some(at), outcome);
                record.lock_errors_before = Some(counted);
                self.state = KillState::Done(record);
            }
            _ => {}
        }
    }

    /// What happened, for the report. `max_done`: the most photos a processor run was seen
    /// to have handled, so a kill that never fired says whether the batch got there.
    pub(super) fn into_record(self, max_done: u64) -> FaultRecord {
        let unfinished = |outcome: String| FaultRecord {
            kind: self.fault.kind().to_owned(),
            description: self.fault.describe(),
            spec: serde_json::to_value(&self.fault).unwrap_or_default(),
            started_s: None,
            ended_s: None,
            outcome,
            lock_errors_before: None,
        };
        match &self.state {
            KillState::Done(r) => r.clone(),
            KillState::Waiting if max_done >= self.at_photo => unfinished(format!(
                "not applied: the processor went past photo {} between two of the runner's looks (every 100 ms; it got to {max_done})",
                self.at_photo
            )),
            KillState::Waiting => unfinished(format!(
                "not applied: the batch never reached photo {} (it got to {max_done})",
                self.at_photo
            )),
            KillState::Killed { worker, pid, .. } => unfinished(format!(
                "SIGKILL to worker {worker} (pid {pid}); the run ended before it was restarted"
            )),
        }
    }
}

/// The worker to kill and its pid, from every worker's /api/stats: the one running the
/// batch's processor, or the first that answers.
fn pick_worker(env: &KillEnv<'_>, target: &KillTarget) -> Result<(String, u32, bool, u64), String> {
    let stats = scrape_stats(env.client, env.url, env.workers);
    // The lock errors counted so far, so the report can show they survive the kill.
    let counted: u64 = ServerFigures::sum(stats.values())
        .lock_by_code
        .values()
        .sum();
    let mut first = None;
    for (worker, s) in &stats {
        if s.batches_running.contains(&env.batch_id) {
            return Ok((worker.clone(), s.pid, true, counted));
        }
        first.get_or_insert((worker.clone(), s.pid, false, counted));
    }
    match (target, first) {
        (KillTarget::Any, Some(w)) => Ok(w),
        (KillTarget::Any, None) => Err("no worker answered /api/stats: nothing was killed".into()),
        (KillTarget::Pattern(p), _) => Err(format!(
            "worker = {p:?} picks a process of an app lockbench starts; the reference server's workers are picked as processor or any"
        )),
        (KillTarget::Processor, _) => Err(format!(
            "no worker was running the processor of batch {}: nothing was killed",
            env.batch_id
        )),
    }
}

/// POST /api/batches again with the same folder, trying again on a 503 or while the
/// restarted worker is not yet listening, as a person would.
fn repost_batch(env: &KillEnv<'_>) -> anyhow::Result<()> {
    let again = Again {
        tries: 30,
        pause: Duration::from_millis(500),
        on_send_error: true,
    };
    let sent = http::send_recorded(
        Some((env.runner, "POST /api/batches")),
        || {
            env.client
                .post(format!("{}/api/batches", env.url))
                .bearer_auth(env.token)
                .json(&serde_json::json!({"dir": env.photo_dir}))
        },
        again,
    );
    match sent {
        Ok((r, _)) if r.status().is_success() => Ok(()),
        Ok((r, _)) if r.status().as_u16() == 503 => bail!("no worker accepted the batch in 15 s"),
        Ok((r, _)) => bail!("{}: {}", r.status(), r.text().unwrap_or_default()),
        Err(_) => bail!("no worker accepted the batch in 15 s"),
    }
}
