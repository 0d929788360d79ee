//! Following the reference server's batch while the load runs: how far its processor has got,
//! from the workers' `/api/stats` (which never touch the database, so following the batch
//! adds no load and meets no lock), the WAL's size, the kill-worker faults at their photo, and
//! when to stop waiting: the batch done plus the tail, the cap, an interruption, a PostgreSQL
//! server gone, or a batch nobody processes any more. Reads the server's answers; changes
//! nothing but through the kill faults.

use std::path::Path;
use std::time::{Duration, Instant};

use lockbench_server::app::stats::{BatchProgress, WorkerStats};

use super::kill::{Kill, KillEnv};
use super::processes::PgWatch;
use super::{progress_bar, RunOptions};
use crate::load::{Recorder, Shared};
use crate::report::BatchEnd;
use crate::scenario::Scenario;

/// How long a batch may be running nowhere (no worker's processor has it, and it has not
/// finished) before the run stops waiting for it: longer than a restarted worker takes to
/// come back and a re-posted batch to start.
const ABANDONED_AFTER: Duration = Duration::from_secs(30);

/// How long the server may answer no `/api/stats` at all before the run stops waiting.
const SILENT_AFTER: Duration = Duration::from_secs(15);

/// What the runner needs to follow one batch on one server.
pub(super) struct WatchTarget<'a> {
    pub(super) client: &'a reqwest::blocking::Client,
    pub(super) url: &'a str,
    pub(super) token: &'a str,
    pub(super) workers: u32,
    pub(super) batch_id: i64,
    pub(super) posted: Instant,
    pub(super) photos: u64,
    pub(super) photo_dir: &'a Path,
    pub(super) restarts: &'a Path,
}

/// How the watch over the batch ended, and what it saw.
pub(super) struct Watched {
    pub(super) ended: BatchEnd,
    /// Since the post: when the processor was seen to have gone through the batch, or when
    /// the watch stopped waiting for it.
    pub(super) duration: Duration,
    pub(super) interrupted: bool,
    /// Why the PostgreSQL server is taken for gone, when it went away mid-run.
    pub(super) database_gone: Option<String>,
    /// The most photos one processor run was seen to have handled.
    pub(super) max_done: u64,
    pub(super) wal_max: u64,
    /// Why the watch gave up on the batch, when it was abandoned.
    pub(super) abandoned: Option<String>,
}

/// One look at the workers: the batch's processor where it runs, whether a run finished it.
#[derive(Default)]
struct Look {
    running: Option<BatchProgress>,
    finished: bool,
    answered: usize,
    wal_bytes: Option<u64>,
}

/// Asks the workers behind the port (fresh connections, so each may answer) until one says
/// it runs the batch's processor, or every worker has answered, or a few tries are used up.
fn look(t: &WatchTarget<'_>) -> Look {
    let mut out = Look::default();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..(t.workers * 3).max(3) {
        let Ok(stats) = t
            .client
            .get(format!("{}/api/stats", t.url))
            .send()
            .and_then(|r| r.json::<WorkerStats>())
        else {
            continue;
        };
        seen.insert(stats.worker);
        out.wal_bytes = Some(out.wal_bytes.unwrap_or(0).max(stats.wal_bytes));
        if stats.batches_finished.contains(&t.batch_id) {
            out.finished = true;
        }
        if let Some(p) = stats.batch_progress.get(&t.batch_id) {
            out.finished |= p.finished;
            if p.running {
                out.running = Some(*p);
                break;
            }
        }
        if seen.len() as u32 >= t.workers {
            break;
        }
    }
    out.answered = seen.len();
    out
}

/// Follows the batch until the processor has gone through it plus the tail, the cap, an
/// interruption, PostgreSQL gone, or the batch abandoned; applies the kill-worker faults when
/// the processor reaches their photo; samples the photos and the WAL onto the time line.
pub(super) fn watch_batch(
    scenario: &Scenario,
    opts: &RunOptions,
    t: &WatchTarget<'_>,
    shared: &Shared,
    kills: &mut [Kill],
    pg_watch: Option<&PgWatch>,
    runner: &Recorder,
) -> Watched {
    let bar = progress_bar(opts, t.photos);
    let mut state = State {
        w: Watched {
            ended: BatchEnd::Cap,
            duration: Duration::ZERO,
            interrupted: false,
            database_gone: None,
            max_done: 0,
            wal_max: 0,
            abandoned: None,
        },
        done_at: None,
        current_done: 0,
        last_running: Instant::now(),
        last_answer: Instant::now(),
    };
    loop {
        // A kill waits for a photo: look closely while one is pending.
        let pending = kills.iter().any(Kill::waiting);
        std::thread::sleep(Duration::from_millis(if pending { 100 } else { 500 }));
        state.record(look(t), t, shared);
        if crate::stop::interrupted() {
            state.w.interrupted = true;
            state.w.ended = BatchEnd::Interrupted;
            break;
        }
        if let Some(why) = pg_watch.and_then(PgWatch::gone) {
            state.w.database_gone = Some(why);
            break;
        }
        let env = KillEnv {
            client: t.client,
            url: t.url,
            token: t.token,
            workers: t.workers,
            batch_id: t.batch_id,
            photo_dir: t.photo_dir,
            restarts: t.restarts,
            recorder: &shared.recorder,
            runner,
        };
        for kill in kills.iter_mut() {
            kill.step(state.current_done, &env);
        }
        bar.set_position(state.w.max_done);
        bar.set_message(format!(
            "{} requests, {} lock errors seen by clients",
            shared.recorder.requests_total(),
            shared.recorder.lock_visible_total()
        ));
        let restarting = kills.iter().any(Kill::restarting);
        if let Some(end) = state.end(t, scenario, restarting) {
            state.w.ended = end;
            break;
        }
    }
    bar.finish_and_clear();
    state.finish(t)
}

/// What the watch has seen so far.
struct State {
    w: Watched,
    /// Since the post: when a worker first said the processor had gone through the batch.
    done_at: Option<Duration>,
    /// Photos the processor run going on now has handled (what a kill waits for).
    current_done: u64,
    /// The last look that saw the processor running the batch, or could not rule it out.
    last_running: Instant,
    last_answer: Instant,
}

impl State {
    /// Takes in one look at the workers, and samples the photos and the WAL.
    fn record(&mut self, seen: Look, t: &WatchTarget<'_>, shared: &Shared) {
        if seen.answered > 0 {
            self.last_answer = Instant::now();
        }
        if let Some(p) = seen.running {
            self.current_done = p.done;
            self.w.max_done = self.w.max_done.max(p.done);
        }
        // A batch counts as abandoned only on evidence: every worker answered and none runs
        // its processor. A look some worker did not answer (busy, restarting) could have
        // missed the processor, so it restarts the wait as a running one does.
        if seen.running.is_some() || (seen.answered as u32) < t.workers {
            self.last_running = Instant::now();
        }
        if seen.finished && self.done_at.is_none() {
            self.done_at = Some(t.posted.elapsed());
            self.w.max_done = self.w.max_done.max(t.photos);
        }
        shared.recorder.sample_photos(self.w.max_done);
        if let Some(wal) = seen.wal_bytes {
            shared.recorder.sample_wal(wal);
            self.w.wal_max = self.w.wal_max.max(wal);
        }
    }

    /// Whether the wait is over, and how it ended.
    fn end(
        &mut self,
        t: &WatchTarget<'_>,
        scenario: &Scenario,
        restarting: bool,
    ) -> Option<BatchEnd> {
        let elapsed = t.posted.elapsed();
        if let Some(d) = self.done_at {
            // The processor went through the batch: the tail runs, unless the cap comes first.
            let over = elapsed >= d + scenario.duration.tail || elapsed >= scenario.duration.max;
            return over.then_some(BatchEnd::Finished);
        }
        // Nobody processes the batch any more: a killed worker whose batch could not be
        // posted again, a supervisor that gave up. Waiting for the cap would measure nothing.
        if self.last_answer.elapsed() >= SILENT_AFTER {
            self.w.abandoned = Some(format!(
                "no worker answered /api/stats for {} s",
                SILENT_AFTER.as_secs()
            ));
            return Some(BatchEnd::Abandoned);
        }
        if !restarting && self.last_running.elapsed() >= ABANDONED_AFTER {
            self.w.abandoned = Some(format!(
                "no worker's processor had batch {} for {} s and it had not finished",
                t.batch_id,
                ABANDONED_AFTER.as_secs()
            ));
            return Some(BatchEnd::Abandoned);
        }
        (elapsed >= scenario.duration.max).then_some(BatchEnd::Cap)
    }

    /// The watch's result: the batch's time runs to the processor's end when it finished,
    /// else to the moment the watch stopped waiting.
    fn finish(mut self, t: &WatchTarget<'_>) -> Watched {
        self.w.duration = match (self.w.ended, self.done_at) {
            (BatchEnd::Finished, Some(d)) => d,
            _ => t.posted.elapsed(),
        };
        // Interrupted after the processor had finished: the batch did finish.
        if let (true, Some(d)) = (self.w.interrupted, self.done_at) {
            self.w.ended = BatchEnd::Finished;
            self.w.duration = d;
        }
        self.w
    }
}
