//! Counters per operation name and per lock code: a lock error is counted, never hidden.
//!
//! A server's worker also writes every counter change to an events file
//! ([`Stats::journal_to`]), so that a worker killed with SIGKILL loses none of them: the
//! supervisor starts a new worker with the same id, which replays the file and goes on from
//! its predecessor's totals.
//!
//! # The events file
//!
//! Plain text, one event per line, each line written with a single `write()` on a file opened
//! with `O_APPEND` while the counters are locked, before the counting call returns (no
//! buffering). A `write()` that returned is in the kernel's page cache, which survives the
//! death of the process; so a count that `/metrics` has shown is already in the file. Every
//! counter is journaled, `ok` included. Lines:
//!
//! ```text
//! # lockbench stats events v1
//! ok register 1
//! lock register SQLITE_BUSY 1
//! retry register 1
//! dropped register 1
//! failed_locked register 1
//! failed_other register 1
//! ```
//!
//! `<event> <op> [<lock code>] <n>`: the event adds `n` to the operation's counter (`ok`,
//! `lock_errors[code]`, `retries`, `commit_only_dropped`, `failed_locked`, `failed_other`).
//! Live events always add 1; when a worker starts it replays the file and rewrites it with one
//! line per counter holding the totals (written to a temporary file and renamed over the old
//! one), so the file grows only with one worker's life. Lines starting with `#` are comments;
//! a line that does not parse (none should) is skipped and reported. Whitespace in an
//! operation's name is written as `_`.
//!
//! Counts and journals; never decides whether anything is retried.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use tracing::{info, warn};

use super::error::{DbError, LockCode};

/// First line of an events file.
const EVENTS_HEADER: &str = "# lockbench stats events v1";

/// What happened to one operation name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OpStats {
    /// Units of work that returned success to the caller.
    pub ok: u64,
    /// Lock errors seen on any try, by code (retried or not).
    pub lock_errors: BTreeMap<LockCode, u64>,
    /// Units of work whose lock error reached the caller (retries exhausted or none).
    pub failed_locked: u64,
    /// Units of work that failed with any other error.
    pub failed_other: u64,
    /// Retries made (each wait-and-try-again counts once).
    pub retries: u64,
    /// Writes a commit-only retry reported as committed after rolling them back.
    pub commit_only_dropped: u64,
}

impl OpStats {
    pub fn lock_errors_total(&self) -> u64 {
        self.lock_errors.values().sum()
    }
}

/// One counter change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Ok,
    Lock(LockCode),
    Retry,
    Dropped,
    FailedLocked,
    FailedOther,
}

impl Event {
    fn apply(self, s: &mut OpStats, n: u64) {
        match self {
            Event::Ok => s.ok += n,
            Event::Lock(code) => *s.lock_errors.entry(code).or_default() += n,
            Event::Retry => s.retries += n,
            Event::Dropped => s.commit_only_dropped += n,
            Event::FailedLocked => s.failed_locked += n,
            Event::FailedOther => s.failed_other += n,
        }
    }

    /// The event's line in the events file.
    fn line(self, op: &str, n: u64) -> String {
        let op: String = op
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect();
        match self {
            Event::Ok => format!("ok {op} {n}\n"),
            Event::Lock(code) => format!("lock {op} {} {n}\n", code.as_str()),
            Event::Retry => format!("retry {op} {n}\n"),
            Event::Dropped => format!("dropped {op} {n}\n"),
            Event::FailedLocked => format!("failed_locked {op} {n}\n"),
            Event::FailedOther => format!("failed_other {op} {n}\n"),
        }
    }

    /// Parses one line: (event, op, n).
    fn parse(line: &str) -> Option<(Event, &str, u64)> {
        let fields: Vec<&str> = line.split(' ').collect();
        let (event, op, n) = match fields.as_slice() {
            ["lock", op, code, n] => {
                let code = LockCode::ALL.into_iter().find(|c| c.as_str() == *code)?;
                (Event::Lock(code), *op, *n)
            }
            [kind, op, n] => {
                let event = match *kind {
                    "ok" => Event::Ok,
                    "retry" => Event::Retry,
                    "dropped" => Event::Dropped,
                    "failed_locked" => Event::FailedLocked,
                    "failed_other" => Event::FailedOther,
                    _ => return None,
                };
                (event, *op, *n)
            }
            _ => return None,
        };
        if op.is_empty() {
            return None;
        }
        Some((event, op, n.parse().ok()?))
    }
}

/// Every counter of `ops` as events-file lines, after the header.
fn totals_text(ops: &BTreeMap<String, OpStats>) -> String {
    let mut out = format!("{EVENTS_HEADER}\n");
    for (op, s) in ops {
        for (event, n) in [
            (Event::Ok, s.ok),
            (Event::Retry, s.retries),
            (Event::Dropped, s.commit_only_dropped),
            (Event::FailedLocked, s.failed_locked),
            (Event::FailedOther, s.failed_other),
        ] {
            if n > 0 {
                out.push_str(&event.line(op, n));
            }
        }
        for (code, n) in &s.lock_errors {
            out.push_str(&Event::Lock(*code).line(op, *n));
        }
    }
    out
}

/// Where counter changes are appended.
#[derive(Debug)]
struct Journal {
    path: PathBuf,
    file: File,
    /// A write failed already (reported once, not at every event).
    failed: AtomicBool,
}

/// Shared counters of one store.
#[derive(Debug, Default)]
pub struct Stats {
    ops: Mutex<BTreeMap<String, OpStats>>,
    journal: OnceLock<Journal>,
}

impl Stats {
    fn count(&self, op: &str, event: Event) {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        // Written before the counter changes, under the same lock: a count anyone can read
        // is already in the file.
        if let Some(journal) = self.journal.get() {
            if let Err(e) = (&journal.file).write_all(event.line(op, 1).as_bytes()) {
                if !journal.failed.swap(true, Ordering::Relaxed) {
                    warn!(path = %journal.path.display(), error = %e,
                        "cannot write the stats events file; counters after a restart will be low");
                }
            }
        }
        match ops.get_mut(op) {
            Some(entry) => event.apply(entry, 1),
            None => event.apply(ops.entry(op.to_owned()).or_default(), 1),
        }
    }

    pub(crate) fn ok(&self, op: &str) {
        self.count(op, Event::Ok);
    }

    pub(crate) fn lock_seen(&self, op: &str, code: LockCode) {
        self.count(op, Event::Lock(code));
    }

    pub(crate) fn retried(&self, op: &str) {
        self.count(op, Event::Retry);
    }

    pub(crate) fn dropped(&self, op: &str) {
        self.count(op, Event::Dropped);
    }

    pub(crate) fn failed(&self, op: &str, err: &DbError) {
        let event = if err.is_lock() {
            Event::FailedLocked
        } else {
            Event::FailedOther
        };
        self.count(op, event);
    }

    /// Makes every later counter change durable in the events file at `path` (see the module
    /// docs): replays what the file holds (a predecessor's counts) into these counters,
    /// rewrites it with the totals, and appends every change from now on. Returns the number
    /// of events replayed. Can be called once per `Stats`; a second call is an error.
    pub fn journal_to(&self, path: &Path) -> io::Result<u64> {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        if self.journal.get().is_some() {
            return Err(io::Error::other("the stats are already journaled"));
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let (mut replayed, mut skipped) = (0, 0);
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match Event::parse(line) {
                Some((event, op, n)) => {
                    event.apply(ops.entry(op.to_owned()).or_default(), n);
                    replayed += n;
                }
                None => skipped += 1,
            }
        }
        if skipped > 0 {
            warn!(path = %path.display(), skipped, "stats events file: lines that do not parse were skipped");
        }
        // Compact: the totals to a temporary file, renamed over the old one, so a crash here
        // leaves either the old file or the new one.
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, totals_text(&ops))?;
        std::fs::rename(&tmp, path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        let journal = Journal {
            path: path.to_path_buf(),
            file,
            failed: AtomicBool::new(false),
        };
        if self.journal.set(journal).is_err() {
            return Err(io::Error::other("the stats are already journaled"));
        }
        drop(ops);
        if replayed > 0 {
            info!(path = %path.display(), replayed, "stats: went on from the events file");
        }
        Ok(replayed)
    }

    /// A copy of every operation's counters.
    pub fn snapshot(&self) -> BTreeMap<String, OpStats> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Lock errors of all operations, by code.
    pub fn lock_errors_by_code(&self) -> BTreeMap<LockCode, u64> {
        let mut out = BTreeMap::new();
        for s in self.snapshot().values() {
            for (code, n) in &s.lock_errors {
                *out.entry(*code).or_default() += n;
            }
        }
        out
    }

    pub fn retries(&self) -> u64 {
        self.snapshot().values().map(|s| s.retries).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_error() -> DbError {
        DbError::Lock {
            code: LockCode::Busy,
            extended: 5,
            op: "register".into(),
            message: "database is locked".into(),
        }
    }

    /// Counts one of each event on `stats`.
    fn one_of_each(stats: &Stats) {
        stats.ok("register");
        stats.ok("register");
        stats.lock_seen("register", LockCode::Busy);
        stats.lock_seen("log_action", LockCode::BusySnapshot);
        stats.retried("register");
        stats.dropped("log_action");
        stats.failed("register", &lock_error());
        stats.failed(
            "finish_batch",
            &DbError::Driver {
                op: "finish_batch".into(),
                message: "disk full".into(),
            },
        );
    }

    #[test]
    fn without_a_file_stats_count_in_memory_only() {
        let stats = Stats::default();
        one_of_each(&stats);
        let ops = stats.snapshot();
        assert_eq!(ops["register"].ok, 2);
        assert_eq!(ops["register"].lock_errors[&LockCode::Busy], 1);
        assert_eq!(ops["register"].failed_locked, 1);
        assert_eq!(ops["finish_batch"].failed_other, 1);
        assert_eq!(ops["log_action"].commit_only_dropped, 1);
        assert_eq!(stats.retries(), 1);
    }

    #[test]
    fn every_event_is_in_the_file_when_the_call_returns_and_a_successor_goes_on_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("worker-1.events");
        let first = Stats::default();
        // Counted before the file was attached: kept in the totals the file starts with.
        first.ok("setup");
        assert_eq!(first.journal_to(&path).unwrap(), 0);
        one_of_each(&first);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                EVENTS_HEADER,
                "ok setup 1",
                "ok register 1",
                "ok register 1",
                "lock register SQLITE_BUSY 1",
                "lock log_action SQLITE_BUSY_SNAPSHOT 1",
                "retry register 1",
                "dropped log_action 1",
                "failed_locked register 1",
                "failed_other finish_batch 1",
            ]
        );
        // A successor (the worker restarted after a SIGKILL: nothing to flush, every line was
        // written when it was counted) replays the file and continues from the same totals.
        let before = first.snapshot();
        drop(first);
        let second = Stats::default();
        assert_eq!(second.journal_to(&path).unwrap(), 9);
        assert_eq!(second.snapshot(), before);
        second.lock_seen("register", LockCode::Busy);
        assert_eq!(
            second.snapshot()["register"].lock_errors[&LockCode::Busy],
            2
        );
        // The file was compacted to one line per counter, then appended to.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("ok register 2\n"), "{text}");
        assert!(text.ends_with("lock register SQLITE_BUSY 1\n"), "{text}");
        let third = Stats::default();
        third.journal_to(&path).unwrap();
        assert_eq!(third.snapshot(), second.snapshot());
        assert!(second.journal_to(&path).is_err(), "journaled once only");
    }

    #[test]
    fn lines_that_do_not_parse_are_skipped_and_names_keep_to_one_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.events");
        std::fs::write(
            &path,
            "# comment\nok register 3\nlock register SQLITE_NOPE 1\nretry\nok  1\nbogus x 1\nfailed_locked register 2\nok regis",
        )
        .unwrap();
        let stats = Stats::default();
        assert_eq!(stats.journal_to(&path).unwrap(), 5);
        let ops = stats.snapshot();
        assert_eq!(ops.len(), 1, "{ops:?}");
        assert_eq!(ops["register"].ok, 3);
        assert_eq!(ops["register"].failed_locked, 2);

        stats.ok("two words");
        let again = Stats::default();
        let path2 = dir.path().join("copy.events");
        std::fs::copy(&path, &path2).unwrap();
        again.journal_to(&path2).unwrap();
        assert_eq!(again.snapshot()["two_words"].ok, 1);
    }
}
