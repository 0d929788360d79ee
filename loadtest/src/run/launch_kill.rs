//! The `kill-worker` fault on an app lockbench started: at its time into the load, SIGKILL
//! to one process of the app's process group other than its first (the supervisor: gunicorn's
//! master, a shell), picked as `worker` says (`any`, or a text its command line contains);
//! then the group is watched for what the supervisor did (a process started in its place,
//! the app gone, or nothing), and the fault's record says so. Reads the group from `/proc`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::faults::sleep_until;
use crate::report::FaultRecord;
use crate::scenario::{Fault, KillTarget};

/// How long the group is watched for a replacement after the kill.
const WATCH_AFTER_KILL: Duration = Duration::from_secs(15);

/// The live processes of process group `group` (zombies left out): pid and command line.
fn group_members(group: u32) -> BTreeMap<u32, String> {
    let mut members = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return members;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") || fields.get(2) != Some(&group.to_string().as_str()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|raw| {
                String::from_utf8_lossy(&raw)
                    .replace('\0', " ")
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default();
        members.insert(pid, cmdline);
    }
    members
}

/// The process to kill: not the group's first; the lowest pid that `target` accepts.
fn pick(group: u32, target: &KillTarget) -> Result<(u32, String), String> {
    let members = group_members(group);
    let candidates = members.into_iter().filter(|(pid, _)| *pid != group);
    let mut found = match target {
        KillTarget::Pattern(text) => candidates
            .filter(|(_, cmd)| cmd.contains(text.as_str()))
            .collect::<Vec<_>>(),
        _ => candidates.collect(),
    };
    found.sort();
    found.into_iter().next().ok_or_else(|| match target {
        KillTarget::Pattern(text) => format!(
            "no process of the app's group but its first has {text:?} in its command line: nothing was killed"
        ),
        _ => "the app's group has no process but its first: nothing was killed".to_owned(),
    })
}

/// Runs one kill: waits for `at` (from `load_started`) unless stopped, kills, watches, and
/// records what happened.
pub(super) fn kill_in_group(
    fault: &Fault,
    group: u32,
    load_started: Instant,
    stop: &AtomicBool,
    records: &Mutex<Vec<FaultRecord>>,
) {
    let Fault::KillWorker {
        at: Some(at),
        worker,
        ..
    } = fault
    else {
        return;
    };
    let since = |t: Instant| {
        crate::run::restarts::round1(t.saturating_duration_since(load_started).as_secs_f64())
    };
    if !sleep_until(load_started + *at, stop) {
        return;
    }
    let mut record = FaultRecord {
        kind: fault.kind().to_owned(),
        description: fault.describe(),
        spec: serde_json::to_value(fault).unwrap_or_default(),
        started_s: None,
        ended_s: None,
        outcome: String::new(),
        lock_errors_before: None,
    };
    let before = group_members(group);
    match pick(group, worker) {
        Err(why) => record.outcome = why,
        Ok((pid, cmd)) => {
            let killed_at = Instant::now();
            let sent = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            record.started_s = Some(since(killed_at));
            record.outcome = match sent {
                Err(e) => format!("SIGKILL to pid {pid} ({cmd}) failed: {e}"),
                Ok(()) => {
                    let (ended, said) = supervisor_answer(group, &before, killed_at, stop);
                    record.ended_s = ended.map(since);
                    format!("SIGKILL to pid {pid} ({cmd}); {said}")
                }
            };
        }
    }
    records
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(record);
}

/// What the app's supervisor did after a kill, watched for [`WATCH_AFTER_KILL`]: when, and
/// in words.
fn supervisor_answer(
    group: u32,
    before: &BTreeMap<u32, String>,
    killed_at: Instant,
    stop: &AtomicBool,
) -> (Option<Instant>, String) {
    while killed_at.elapsed() < WATCH_AFTER_KILL && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        let now = group_members(group);
        if !now.contains_key(&group) {
            return (
                Some(Instant::now()),
                "the app's first process exited after it".to_owned(),
            );
        }
        if let Some((pid, cmd)) = now.iter().find(|(pid, _)| !before.contains_key(pid)) {
            let after = killed_at.elapsed().as_secs_f64();
            return (
                Some(Instant::now()),
                format!("the supervisor started pid {pid} ({cmd}) {after:.1} s later"),
            );
        }
    }
    (
        None,
        format!(
            "no process took its place within {:.0} s",
            killed_at
                .elapsed()
                .as_secs_f64()
                .min(WATCH_AFTER_KILL.as_secs_f64())
        ),
    )
}

/// The kills of a run on their own threads, until stopped.
pub(super) struct GroupKills {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<FaultRecord>>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl GroupKills {
    /// Starts a thread per `kill-worker` fault of `faults` on the app whose group is `group`.
    pub(super) fn start(faults: &[Fault], group: u32, load_started: Instant) -> GroupKills {
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let handles = faults
            .iter()
            .filter(|f| matches!(f, Fault::KillWorker { .. }))
            .map(|f| {
                let (fault, stop, records) = (f.clone(), stop.clone(), records.clone());
                std::thread::spawn(move || {
                    kill_in_group(&fault, group, load_started, &stop, &records)
                })
            })
            .collect();
        GroupKills {
            stop,
            records,
            handles,
        }
    }

    /// Stops the watching and returns what the kills did.
    pub(super) fn finish(mut self) -> Vec<FaultRecord> {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
