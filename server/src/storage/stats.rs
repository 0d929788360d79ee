//! Counters per operation name and per lock code: a lock error is counted, never hidden;
//! and the worker's other counters that must survive a restart (the processor's, the
//! checkpoints', the batches whose processor run ended).
//!
//! [`Stats::lock_seen`] is the one place a lock error is counted, and it writes exactly one
//! WARN log line for it, whose message is [`LOCK_LOG_PHRASE`] ("database is locked"), with
//! the fields `op`, `code`, `retried` (whether another try follows), `retry` (what it
//! re-runs: "unit of work", "commit" or "none") and, for a unit of work's try, `try_ms` (how
//! long the failed try ran: about how long it waited on the lock):
//!
//! ```text
//! WARN lockbench_server::storage::stats: database is locked op="register" code="SQLITE_BUSY" retried=true retry="unit of work" try_ms=5001
//! ```
//!
//! No other log line of the server contains that phrase (errors display as "lock error
//! SQLITE_BUSY in register"; text that comes from outside, such as file names, is passed
//! through [`crate::text::log_safe`]), so a run's lock-error total equals the number of lines
//! of the server's log that contain it.
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
//! # lockbench stats events v2
//! ok register 1
//! lock register SQLITE_BUSY 1
//! retry register 1
//! dropped register 1
//! failed_locked register 1
//! failed_other register 1
//! counter photos_processed 1
//! batch_finished 3 1
//! ```
//!
//! `<event> <op> [<lock code>] <n>`: the event adds `n` to the operation's counter (`ok`,
//! `lock_errors[code]`, `retries`, `commit_only_dropped`, `failed_locked`, `failed_other`).
//! Version 2 added two events that are not an operation's: `counter <name> <n>` adds `n` to
//! a named worker counter ([`Stats::add`]), and `batch_finished <batch id> 1` notes a batch
//! whose processor run ended ([`Stats::batch_finished`]). A version 1 file is a version 2 file
//! without them and reads as before.
//! Live events always add 1; when a worker starts it replays the file and rewrites it with one
//! line per counter holding the totals (written to a temporary file and renamed over the old
//! one), so the file grows only with one worker's life. Lines starting with `#` are comments;
//! a line that does not parse (none should) is skipped and reported. Whitespace in an
//! operation's or a counter's name is written as `_`.
//!
//! Counts, journals and logs each lock error; never decides whether anything is retried.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use tracing::{info, warn};

use super::error::{DbError, LockCode};

/// First line of an events file.
const EVENTS_HEADER: &str = "# lockbench stats events v2";

/// What follows a lock error, as its log line says (`retry=`): nothing, the whole unit of
/// work again, or only its COMMIT after a rollback (the incident's helper, which commits
/// nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryWhat {
    None,
    UnitOfWork,
    Commit,
}

impl RetryWhat {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryWhat::None => "none",
            RetryWhat::UnitOfWork => "unit of work",
            RetryWhat::Commit => "commit",
        }
    }
}

/// The message of the one log line written per counted lock error ([`Stats::lock_seen`]);
/// no other line of the server's log contains it.
pub const LOCK_LOG_PHRASE: &str = "database is locked";

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

/// Everything the counters hold.
#[derive(Debug, Default)]
struct Totals {
    ops: BTreeMap<String, OpStats>,
    counters: BTreeMap<String, u64>,
    finished: BTreeSet<i64>,
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
    /// A named worker counter; the "op" is its name.
    Counter,
    /// A batch whose processor run ended; the "op" is its id.
    BatchFinished,
}

impl Event {
    /// Adds `n` to the counter of `key` (an op, a counter's name, a batch id).
    fn apply(self, t: &mut Totals, key: &str, n: u64) {
        match self {
            Event::Counter => *t.counters.entry(key.to_owned()).or_default() += n,
            Event::BatchFinished => {
                if let Ok(id) = key.parse() {
                    t.finished.insert(id);
                }
            }
            _ => {
                let s = match t.ops.get_mut(key) {
                    Some(s) => s,
                    None => t.ops.entry(key.to_owned()).or_default(),
                };
                match self {
                    Event::Ok => s.ok += n,
                    Event::Lock(code) => *s.lock_errors.entry(code).or_default() += n,
                    Event::Retry => s.retries += n,
                    Event::Dropped => s.commit_only_dropped += n,
                    Event::FailedLocked => s.failed_locked += n,
                    Event::FailedOther => s.failed_other += n,
                    Event::Counter | Event::BatchFinished => {}
                }
            }
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
            Event::Counter => format!("counter {op} {n}\n"),
            Event::BatchFinished => format!("batch_finished {op} {n}\n"),
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
                    "counter" => Event::Counter,
                    "batch_finished" => {
                        op.parse::<i64>().ok()?;
                        Event::BatchFinished
                    }
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

/// Every counter as events-file lines, after the header.
fn totals_text(t: &Totals) -> String {
    let mut out = format!("{EVENTS_HEADER}\n");
    for (op, s) in &t.ops {
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
    for (name, n) in &t.counters {
        out.push_str(&Event::Counter.line(name, *n));
    }
    for id in &t.finished {
        out.push_str(&Event::BatchFinished.line(&id.to_string(), 1));
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
    totals: Mutex<Totals>,
    journal: OnceLock<Journal>,
}

impl Stats {
    fn lock_totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.totals.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, key: &str, event: Event) {
        let mut totals = self.lock_totals();
        self.record_locked(&mut totals, key, event);
    }

    fn record_locked(&self, totals: &mut Totals, key: &str, event: Event) {
        // Written before the counter changes, under the same lock: a count anyone can read
        // is already in the file.
        if let Some(journal) = self.journal.get() {
            if let Err(e) = (&journal.file).write_all(event.line(key, 1).as_bytes()) {
                if !journal.failed.swap(true, Ordering::Relaxed) {
                    warn!(path = %journal.path.display(), error = %e,
                        "cannot write the stats events file; counters after a restart will be low");
                }
            }
        }
        event.apply(totals, key, 1);
    }

    pub(crate) fn ok(&self, op: &str) {
        self.record(op, Event::Ok);
    }

    /// Counts one lock error of `op` and writes its one log line (see the module docs);
    /// `retried`: whether another try follows.
    pub(crate) fn lock_seen(&self, op: &str, code: LockCode, retried: bool) {
        let retry = if retried {
            RetryWhat::UnitOfWork
        } else {
            RetryWhat::None
        };
        self.lock_seen_after(op, code, retry, None);
    }

    /// [`Stats::lock_seen`] with what the next try re-runs and how long the failed try ran
    /// (`try_ms`: for a lock error, about how long it waited on the lock).
    pub(crate) fn lock_seen_after(
        &self,
        op: &str,
        code: LockCode,
        retry: RetryWhat,
        tried: Option<std::time::Duration>,
    ) {
        self.record(op, Event::Lock(code));
        warn!(
            op = %crate::text::log_safe(op),
            code = code.as_str(),
            retried = retry != RetryWhat::None,
            retry = retry.as_str(),
            try_ms = tried.map(|d| d.as_millis() as u64),
            "{}",
            LOCK_LOG_PHRASE
        );
    }

    pub(crate) fn retried(&self, op: &str) {
        self.record(op, Event::Retry);
    }

    pub(crate) fn dropped(&self, op: &str) {
        self.record(op, Event::Dropped);
    }

    pub(crate) fn failed(&self, op: &str, err: &DbError) {
        let event = if err.is_lock() {
            Event::FailedLocked
        } else {
            Event::FailedOther
        };
        self.record(op, event);
    }

    /// Adds 1 to the named worker counter `name` (journaled like every other count).
    pub fn add(&self, name: &str) {
        self.record(name, Event::Counter);
    }

    /// The named worker counters ([`Stats::add`]), replayed ones included.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.lock_totals().counters.clone()
    }

    /// Notes that the processor's run over `batch_id` ended in this worker (journaled once
    /// per batch).
    pub fn batch_finished(&self, batch_id: i64) {
        let mut totals = self.lock_totals();
        if !totals.finished.contains(&batch_id) {
            self.record_locked(&mut totals, &batch_id.to_string(), Event::BatchFinished);
        }
    }

    /// The batches whose processor run ended in this worker or a predecessor.
    pub fn batches_finished(&self) -> BTreeSet<i64> {
        self.lock_totals().finished.clone()
    }

    /// Makes every later counter change durable in the events file at `path` (see the module
    /// docs): replays what the file holds (a predecessor's counts) into these counters,
    /// rewrites it with the totals, and appends every change from now on. Returns the number
    /// of events replayed. Can be called once per `Stats`; a second call is an error.
    pub fn journal_to(&self, path: &Path) -> io::Result<u64> {
        let mut totals = self.lock_totals();
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
                Some((event, key, n)) => {
                    event.apply(&mut totals, key, n);
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
        std::fs::write(&tmp, totals_text(&totals))?;
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
        drop(totals);
        if replayed > 0 {
            info!(path = %path.display(), replayed, "stats: went on from the events file");
        }
        Ok(replayed)
    }

    /// A copy of every operation's counters.
    pub fn snapshot(&self) -> BTreeMap<String, OpStats> {
        self.lock_totals().ops.clone()
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

    /// Lock errors of all operations.
    pub fn lock_errors_total(&self) -> u64 {
        self.lock_totals()
            .ops
            .values()
            .map(OpStats::lock_errors_total)
            .sum()
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
        stats.lock_seen("register", LockCode::Busy, true);
        stats.lock_seen("log_action", LockCode::BusySnapshot, false);
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
        second.lock_seen("register", LockCode::Busy, false);
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

    #[test]
    fn named_counters_and_finished_batches_are_journaled_and_a_v1_file_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.events");
        // A file a version 1 worker wrote.
        std::fs::write(
            &path,
            "# lockbench stats events v1\nok register 2\nlock register SQLITE_BUSY 1\n",
        )
        .unwrap();
        let first = Stats::default();
        assert_eq!(first.journal_to(&path).unwrap(), 3);
        assert_eq!(first.snapshot()["register"].ok, 2);
        first.add("photos_processed");
        first.add("photos_processed");
        first.add("checkpoints_ok");
        first.batch_finished(4);
        first.batch_finished(4);
        first.batch_finished(2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(EVENTS_HEADER), "{text}");
        assert!(
            text.ends_with("counter photos_processed 1\ncounter photos_processed 1\ncounter checkpoints_ok 1\nbatch_finished 4 1\nbatch_finished 2 1\n"),
            "a batch is journaled once: {text}"
        );
        drop(first);
        let second = Stats::default();
        second.journal_to(&path).unwrap();
        assert_eq!(
            second.counters(),
            BTreeMap::from([
                ("checkpoints_ok".to_owned(), 1),
                ("photos_processed".to_owned(), 2)
            ])
        );
        assert_eq!(second.batches_finished(), BTreeSet::from([2, 4]));
        assert_eq!(second.snapshot()["register"].lock_errors_total(), 1);
        assert_eq!(second.lock_errors_total(), 1);
        // Compacted: one line per counter and per batch.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("counter photos_processed 2\n"), "{text}");
        assert!(
            text.contains("batch_finished 2 1\nbatch_finished 4 1\n"),
            "{text}"
        );
        // A batch id that is not a number does not parse.
        assert_eq!(Event::parse("batch_finished x 1"), None);
    }
}
