//! The rules: from the evidence to findings, each with what it saw and why that means its
//! cause. What SQLite does that the rules rely on (sqlite.org/lang_transaction.html,
//! sqlite.org/wal.html, sqlite.org/c3ref/busy_handler.html):
//!
//! - a busy timeout makes a connection wait for a lock up to that long; a lock error that
//!   comes after about the whole timeout means another connection held the lock that long;
//! - a deferred transaction that has read and then writes must upgrade its lock; when
//!   another connection writes meanwhile, SQLite refuses at once (waiting could deadlock), so
//!   those lock errors come far faster than the timeout, on requests that write, and in WAL
//!   mode with SQLITE_BUSY_SNAPSHOT when the driver tells the extended code;
//! - a statement that fails far faster than the timeout while no upgrade is possible (the
//!   transaction begins IMMEDIATE, each statement is its own transaction, or a read fails)
//!   ran on a connection without the timeout;
//! - in a rollback journal a reader's shared lock and a committing writer exclude each
//!   other, so reads fail too; in WAL they never block each other;
//! - a retry that re-issues COMMIT after a rollback re-runs none of the work;
//! - a WAL grows past its autocheckpoint size (1,000 pages by default) when a reader keeps
//!   the checkpoint from reaching its end.
//!
//! A lock error whose wait is not known (no report, no `try_ms`) and whose text does not name
//! its cause is left unexplained and said so: never guessed.

use std::collections::BTreeMap;

use crate::report::diagnosis::{EndpointLog, Finding, FindingId, LogFacts};

use super::evidence::Evidence;
use super::fixes;

/// A lock error at most this fraction of the timeout in: refused, not waited.
const FAST: f64 = 0.1;
/// ... and never slower than this, whatever the timeout.
const FAST_CAP_MS: f64 = 1000.0;
/// A lock error at least this fraction of the timeout in: it waited the whole timeout.
const LONG: f64 = 0.8;
/// The busy timeout doctor assumes when nothing says the app's: the default of Python's
/// sqlite3 (`timeout=5.0`), Go's mattn/go-sqlite3 (`_busy_timeout=5000`) and Rails
/// (`timeout: 5000`).
pub const ASSUMED_TIMEOUT_MS: u64 = 5000;
/// A WAL past this many times its autocheckpoint size (1,000 pages unless the app changed
/// `wal_autocheckpoint`) is starved of checkpoints.
const WAL_STARVED: u64 = 2;
const AUTOCHECKPOINT_PAGES: u64 = 1000;

/// The busy timeout the rules judge waits against, in ms, and how doctor knows it.
struct Timeout {
    ms: f64,
    said: String,
    known: bool,
}

impl Timeout {
    fn of(ev: &Evidence) -> Timeout {
        match &ev.settings.busy_timeout_ms {
            Some(k) => Timeout {
                ms: k.value as f64,
                said: format!("{} ms ({})", k.value, k.source),
                known: true,
            },
            None => Timeout {
                ms: ASSUMED_TIMEOUT_MS as f64,
                said: format!("{ASSUMED_TIMEOUT_MS} ms (assumed: nothing says the app's; the default of Python's sqlite3, Go's mattn/go-sqlite3 and Rails)"),
                known: false,
            },
        }
    }

    /// A lock error at most this long in was refused, not waited.
    fn fast_limit(&self) -> f64 {
        (self.ms * FAST).min(FAST_CAP_MS)
    }
}

/// The findings, in order of weight, and notes on what could not be explained.
pub fn diagnose(ev: &Evidence) -> (Vec<Finding>, Vec<String>) {
    let mut findings: Vec<Finding> = Vec::new();
    let mut notes = Vec::new();
    let timeout = Timeout::of(ev);
    if let Some(log) = &ev.log {
        let (by_cause, unexplained) = causes_by_request(ev, log, &timeout);
        for (id, eps) in by_cause {
            findings.push(per_endpoint_finding(id, &eps, ev, &timeout));
        }
        if unexplained > 0 {
            let on: Vec<String> = log
                .by_endpoint
                .iter()
                .filter(|(_, e)| wait_of(e).is_none() && e.lock_errors > e.commit_retries)
                .map(|(n, e)| format!("{n} ({})", e.lock_errors - e.commit_retries))
                .collect();
            notes.push(format!(
                "{unexplained} lock error(s) not tied to a cause ({}): nothing says how long they waited, and the wait is what tells a refused upgrade (at once) from a long writer (the whole timeout). A lockbench report of a run against the app gives it (--report), or let doctor run one: --verify --scenario with the app's scenario.",
                on.join(", ")
            ));
        }
        findings.extend(rollback_journal(ev, log));
        findings.extend(commit_only_retry(ev, log));
        findings.extend(not_a_lock(log));
    }
    findings.extend(checkpoint_starvation(ev));
    findings.sort_by(|a, b| {
        let lost = |f: &Finding| f.lost_writes.unwrap_or(0);
        let errors = |f: &Finding| {
            if f.count_of == "lock errors" {
                f.count
            } else {
                0
            }
        };
        lost(b)
            .cmp(&lost(a))
            .then(errors(b).cmp(&errors(a)))
            .then(b.count.cmp(&a.count))
            .then(a.id.cmp(&b.id))
    });
    (findings, notes)
}

type ByCause<'a> = BTreeMap<FindingId, Vec<(&'a String, &'a EndpointLog, f64)>>;

/// Per request: the cause its lock errors' wait (and code) shows; and how many lock errors
/// show none.
fn causes_by_request<'a>(
    ev: &Evidence,
    log: &'a LogFacts,
    timeout: &Timeout,
) -> (ByCause<'a>, u64) {
    let tx = ev.settings.tx_mode.as_ref().map(|k| k.value.as_str());
    let upgrade_possible = !matches!(tx, Some("immediate" | "exclusive" | "lazy"));
    let fast_limit = timeout.fast_limit();
    let default = ASSUMED_TIMEOUT_MS as f64;
    // A read cannot upgrade: a read refused at once means no timeout at all.
    let reads_fail_fast = log
        .by_endpoint
        .values()
        .any(|e| e.kind == "read" && wait_of(e).is_some_and(|w| w <= fast_limit));
    let mut by_cause = ByCause::new();
    let mut unexplained = 0;
    for (name, e) in &log.by_endpoint {
        let snapshot = e.by_code.contains_key("SQLITE_BUSY_SNAPSHOT");
        let cause = match wait_of(e) {
            Some(w) if w >= timeout.ms * LONG || (!timeout.known && w >= 1000.0) => {
                Some((FindingId::LongWriter, w))
            }
            // The driver's default wait, where the app believes it set a longer one.
            Some(w)
                if timeout.known
                    && timeout.ms > 1.5 * default
                    && (w - default).abs() <= 0.15 * default =>
            {
                Some((FindingId::TimeoutNotApplied, w))
            }
            Some(w) if w <= fast_limit => {
                let upgrade =
                    snapshot || (upgrade_possible && e.kind != "read" && !reads_fail_fast);
                let id = if upgrade {
                    FindingId::DeferredUpgrade
                } else {
                    FindingId::TimeoutNotApplied
                };
                Some((id, w))
            }
            Some(_) => None,
            None if snapshot => Some((FindingId::DeferredUpgrade, f64::NAN)),
            None => None,
        };
        match cause {
            Some((id, w)) => by_cause.entry(id).or_default().push((name, e, w)),
            // A retry of a commit is commit-only-retry's.
            None => unexplained += e.lock_errors - e.commit_retries,
        }
    }
    (by_cause, unexplained)
}

/// A rollback journal, and lock errors on requests that only read.
fn rollback_journal(ev: &Evidence, log: &LogFacts) -> Option<Finding> {
    let journal = ev.settings.journal_mode.as_ref()?;
    let rollback = matches!(
        journal.value.as_str(),
        "rollback" | "delete" | "truncate" | "persist" | "memory" | "off"
    );
    let reads: Vec<(&String, &EndpointLog)> = log
        .by_endpoint
        .iter()
        .filter(|(_, e)| e.kind == "read")
        .collect();
    if !rollback || reads.is_empty() {
        return None;
    }
    let read_errors: u64 = reads.iter().map(|(_, e)| e.lock_errors).sum();
    Some(finding(
        FindingId::RollbackJournalReaders,
        vec![
            format!("The database uses a rollback journal ({}).", journal.source),
            format!(
                "{read_errors} of the {} lock errors are on requests that only read: {}.",
                log.lock_errors,
                reads
                    .iter()
                    .map(|(n, e)| format!("{n} ({})", e.lock_errors))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ],
        log.by_endpoint.keys().cloned().collect(),
        log.lock_errors,
        "lock errors",
    ))
}

/// The app's retries that re-issue a commit, and the writes the report says they lost.
fn commit_only_retry(ev: &Evidence, log: &LogFacts) -> Option<Finding> {
    if log.commit_retries == 0 {
        return None;
    }
    let lost = ev
        .report
        .as_ref()
        .and_then(|r| r.commit_only_dropped.filter(|n| *n > 0));
    let mut evidence = vec![format!(
        "{} of the app's {} retry messages after a lock error retry a commit, not the work.",
        log.commit_retries, log.retries
    )];
    if let Some(sample) = log
        .by_endpoint
        .values()
        .map(|e| e.sample.as_str())
        .find(|s| s.to_ascii_lowercase().contains("commit"))
    {
        evidence.push(format!("For example: {}", first_line(sample)));
    }
    if let Some(n) = lost {
        evidence.push(format!(
            "The report counts {n} writes the server acknowledged after such a retry and dropped."
        ));
    }
    if let Some(a) = ev.report.as_ref().and_then(|r| r.audit.as_ref()) {
        evidence.push(format!(
            "The report's audit found {} lost writes among the writes it looks up.",
            a.lost_writes
        ));
    }
    let mut f = finding(
        FindingId::CommitOnlyRetry,
        evidence,
        log.by_endpoint
            .iter()
            .filter(|(_, e)| e.commit_retries > 0)
            .map(|(n, _)| n.clone())
            .collect(),
        log.commit_retries,
        "retries of a commit",
    );
    f.lost_writes = lost;
    Some(f)
}

fn not_a_lock(log: &LogFacts) -> Option<Finding> {
    if log.not_a_lock.is_empty() {
        return None;
    }
    Some(finding(
        FindingId::NotALock,
        log.not_a_lock
            .iter()
            .map(|(kind, n)| format!("{n} record(s) say \"{kind}\": not a lock."))
            .collect(),
        Vec::new(),
        log.not_a_lock.values().sum(),
        "errors",
    ))
}

/// The WAL beside the database file, or the largest the report saw (the reference server's
/// database is gone after its run), against its autocheckpoint size.
fn checkpoint_starvation(ev: &Evidence) -> Option<Finding> {
    if let Some(db) = &ev.database {
        let frames = db.wal_frames?;
        if frames <= WAL_STARVED * AUTOCHECKPOINT_PAGES {
            return None;
        }
        return Some(finding(
            FindingId::CheckpointStarvation,
            vec![format!(
                "The WAL beside {} holds {frames} pages ({} bytes), {:.1} times the autocheckpoint size of {AUTOCHECKPOINT_PAGES} pages.",
                db.path,
                db.wal_bytes.unwrap_or(0),
                frames as f64 / AUTOCHECKPOINT_PAGES as f64
            )],
            Vec::new(),
            frames,
            "WAL pages",
        ));
    }
    let r = ev.report.as_ref()?;
    let wal = r.wal.as_ref()?;
    let autocheckpoint = r.settings_requested["server"]["storage"]["wal_autocheckpoint"]
        .as_u64()
        .unwrap_or(AUTOCHECKPOINT_PAGES);
    // SQLite's default page size; the report does not record the file's.
    let pages = wal.max_bytes / (4096 + 24);
    if autocheckpoint == 0 || pages <= WAL_STARVED * autocheckpoint {
        return None;
    }
    Some(finding(
        FindingId::CheckpointStarvation,
        vec![
            format!(
                "The report's WAL reached {} bytes, about {pages} pages of 4 KiB, {:.1} times the autocheckpoint size of {autocheckpoint} pages.",
                wal.max_bytes,
                pages as f64 / autocheckpoint as f64
            ),
            format!(
                "{} checkpoints could not finish (busy), {} did.",
                wal.checkpoints_busy, wal.checkpoints_ok
            ),
        ],
        Vec::new(),
        pages,
        "WAL pages",
    ))
}

/// The wait of a request's lock errors: the log's own (`try_ms=`), else the report's failed
/// requests' latency; the median, in ms.
fn wait_of(e: &EndpointLog) -> Option<f64> {
    e.waits_ms
        .as_ref()
        .or(e.failed_latency_ms.as_ref())
        .map(|s| s.p50)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn finding(
    id: FindingId,
    evidence: Vec<String>,
    endpoints: Vec<String>,
    count: u64,
    count_of: &str,
) -> Finding {
    let (title, why, source) = about(id);
    Finding {
        id,
        title: title.into(),
        evidence,
        why: why.into(),
        source: source.into(),
        endpoints,
        count,
        count_of: count_of.into(),
        lost_writes: None,
        fix: fixes::fix(id, None),
    }
}

/// A finding made of requests whose lock errors show one cause.
fn per_endpoint_finding(
    id: FindingId,
    eps: &[(&String, &EndpointLog, f64)],
    ev: &Evidence,
    timeout: &Timeout,
) -> Finding {
    let count = eps.iter().map(|(_, e, _)| e.lock_errors).sum();
    let mut evidence = Vec::new();
    for (name, e, w) in eps {
        let wait = if w.is_nan() {
            "wait unknown".to_owned()
        } else {
            let from = if e.waits_ms.is_some() {
                "the log's own wait field"
            } else {
                "the report's failed requests"
            };
            format!("waited {} at the median ({from})", ms(*w))
        };
        let codes: Vec<String> = e.by_code.iter().map(|(c, n)| format!("{n} {c}")).collect();
        evidence.push(format!(
            "{name} ({}): {} lock errors ({}), {wait}.",
            e.kind,
            e.lock_errors,
            codes.join(", ")
        ));
    }
    if !timeout.known && id == FindingId::LongWriter {
        evidence.push(format!(
            "Nothing says the app's busy timeout; failures that all come after about {} suggest it is about that long.",
            ms(eps.iter().map(|(_, _, w)| *w).fold(f64::NAN, f64::min))
        ));
    } else {
        evidence.push(format!("The busy timeout: {}.", timeout.said));
    }
    evidence.extend(cause_evidence(id, ev, timeout));
    let mut f = finding(
        id,
        evidence,
        eps.iter().map(|(n, _, _)| (*n).clone()).collect(),
        count,
        "lock errors",
    );
    if let Some(sample) = eps.first().map(|(_, e, _)| e.sample.clone()) {
        f.evidence
            .push(format!("The first one in the log:\n{sample}"));
    }
    f
}

/// What else the evidence says for this cause: the transaction mode, the writes that did not
/// fail, the other process the report recorded.
fn cause_evidence(id: FindingId, ev: &Evidence, timeout: &Timeout) -> Vec<String> {
    let mut evidence = Vec::new();
    match id {
        FindingId::DeferredUpgrade => {
            if let Some(k) = &ev.settings.tx_mode {
                evidence.push(format!("Transactions begin {} ({}).", k.value, k.source));
            }
            evidence.push(format!(
                "A wait that short (at most {} at the median) against that timeout is no wait at all: SQLite refused the lock instead of waiting for it.",
                ms(timeout.fast_limit())
            ));
            let failed = ev.log.as_ref().map(|l| &l.by_endpoint);
            let quiet: Vec<&str> = ev
                .methods
                .iter()
                .filter(|(n, m)| {
                    super::evidence::kind_of_method(m) == "write"
                        && failed.is_some_and(|f| !f.contains_key(*n))
                })
                .map(|(n, _)| n.as_str())
                .collect();
            if !quiet.is_empty() {
                evidence.push(format!(
                    "Other requests that write had no lock error in the same run ({}): the timeout works; only the read-then-write transaction is refused.",
                    quiet.join(", ")
                ));
            }
        }
        FindingId::TimeoutNotApplied => {
            if let Some(k) = &ev.settings.tx_mode {
                evidence.push(format!(
                    "Transactions begin {} ({}): no read-to-write upgrade can be refused, so a fast lock error means no wait at all.",
                    k.value, k.source
                ));
            }
        }
        FindingId::LongWriter => {
            for f in ev.report.iter().flat_map(|r| &r.faults) {
                if f.kind == "external-lock" {
                    evidence.push(format!(
                        "The report records another process holding the write lock from {} s into the load: {}.",
                        f.started_s.map_or("?".to_owned(), |t| format!("{t:.1}")),
                        f.outcome
                    ));
                }
            }
        }
        _ => {}
    }
    evidence
}

fn ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} s", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else {
        format!("{v:.0} ms")
    }
}

/// Each cause's title, why its evidence means it, and the source that says so.
fn about(id: FindingId) -> (&'static str, &'static str, &'static str) {
    match id {
        FindingId::DeferredUpgrade => (
            "A transaction that read, then wrote, was refused at once",
            "A deferred transaction takes a shared lock at its first read; to write it must upgrade, and while another connection writes SQLite returns SQLITE_BUSY at once instead of calling the busy handler, because waiting could deadlock (in WAL mode, SQLITE_BUSY_SNAPSHOT when its snapshot is stale). No timeout helps; BEGIN IMMEDIATE takes the write lock first, where the timeout does wait.",
            "https://www.sqlite.org/lang_transaction.html#deferred_immediate_and_exclusive_transactions",
        ),
        FindingId::RollbackJournalReaders => (
            "A rollback journal under concurrent readers and writers",
            "In rollback-journal mode a writer must wait for every reader's shared lock to go before it commits, and a reader cannot start while a writer holds the pending or exclusive lock, so reads fail with \"database is locked\" too. In WAL mode readers and the writer do not block each other.",
            "https://www.sqlite.org/wal.html",
        ),
        FindingId::TimeoutNotApplied => (
            "Failures far faster than the busy timeout the app believes it set",
            "A connection with a busy timeout waits up to that long for a lock; a lock error far sooner, where no upgrade can be refused, means the connection it ran on had no timeout (set on one pooled connection only, or not passed to the driver), or the driver's default (5 s).",
            "https://www.sqlite.org/c3ref/busy_timeout.html",
        ),
        FindingId::LongWriter => (
            "A writer held the lock longer than the busy timeout",
            "The failing requests waited about the whole busy timeout before their lock error: another connection held the write lock at least that long (the app's own long transaction, or another process: a backup, a migration, a shell). A longer timeout only makes requests wait longer.",
            "https://www.sqlite.org/c3ref/busy_handler.html",
        ),
        FindingId::CommitOnlyRetry => (
            "A retry re-issues COMMIT after a rollback: writes reported saved are lost",
            "After a lock error the transaction is rolled back; issuing COMMIT again commits nothing (there is no transaction left, or an empty one), so the retry \"succeeds\" and the caller is told the write was saved. The retry must re-run the whole unit of work.",
            "https://www.sqlite.org/lang_transaction.html",
        ),
        FindingId::CheckpointStarvation => (
            "The WAL is far past its autocheckpoint size",
            "A checkpoint cannot copy pages past the oldest open read transaction's snapshot nor reset the WAL while a reader uses it, so a reader that stays open lets the WAL grow without bound, and every read scans more of it.",
            "https://www.sqlite.org/wal.html#avoiding_excessively_large_wal_files",
        ),
        FindingId::NotALock => (
            "Errors that look like lock errors and are not",
            "\"unable to open database file\" (no file descriptor left, a folder the journal cannot be created in, a wrong path), \"attempt to write a readonly database\" and I/O errors are not about locks: no timeout or retry fixes them.",
            "https://www.sqlite.org/rescode.html",
        ),
    }
}
