//! Following an external app's log during a run (`[target].log`): the log is read as
//! records, not lines (a record may span several lines, as a traceback does); every new
//! record that matches `[target].lock_pattern` is one lock error the server saw, counted on
//! the time line at the moment it was read, and tied to the request whose path it names
//! (`[target].path_pattern`), or counted as not attributed.
//!
//! A record starts at a line that matches `[target].record_start`, or by default at a line
//! that does not begin with whitespace and is not a traceback's own line ("Traceback (most
//! recent call last):", the exception line after the frames, "The above exception was the
//! direct cause ...", "During handling of the above exception ...", blank lines between).
//! So Django's "Internal Server Error: /path/" and the traceback after it, which names
//! "database is locked" twice, are one lock error.
//!
//! The follower starts at the file's end (lines written before the run are not this run's),
//! reads what was appended every 100 ms, starts over from the beginning if the file shrank
//! (truncated), follows the name when the log is rotated by renaming (the old file is read
//! to its end first, then the new one from its start, as `tail -F` does), and at the end
//! reads up to the last byte, so a record written before the last answer arrived is
//! counted. A record is complete when the next one starts, or when a read finds nothing
//! new. It only reads the log.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use regex::Regex;

use crate::load::Shared;

const POLL: Duration = Duration::from_millis(100);

/// How to read an app's log: which records are lock errors, where a record starts, and
/// which request a record's path belongs to.
#[derive(Clone)]
pub struct LogReading {
    pub lock: Regex,
    /// None: the default rule (see the module's comment).
    pub record_start: Option<Regex>,
    /// A regular expression with a `path` group.
    pub path: Regex,
    /// Each request name with its path template as a regular expression.
    pub routes: Vec<(String, Regex)>,
}

impl LogReading {
    /// A request path template ("/items/{n}/", with or without a query) as a regular
    /// expression for the paths a log names: each placeholder stands for one path segment.
    pub fn route(template: &str) -> Regex {
        let path = template.split('?').next().unwrap_or(template);
        let mut pattern = String::from("^");
        let mut rest = path;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            pattern.push_str(&regex::escape(&rest[..open]));
            pattern.push_str("[^/]*");
            rest = &rest[open + close + 1..];
        }
        pattern.push_str(&regex::escape(rest));
        pattern.push('$');
        Regex::new(&pattern).unwrap_or_else(|_| Regex::new("^$").expect("a valid pattern"))
    }

    /// The request a lock error's record names: the one request whose path matches; None
    /// when it names no path, or a path no request or several requests have.
    pub fn attribute(&self, record: &str) -> Option<&str> {
        let path = self.path.captures(record)?.name("path")?.as_str();
        let mut names = self
            .routes
            .iter()
            .filter(|(_, re)| re.is_match(path))
            .map(|(name, _)| name.as_str());
        let first = names.next()?;
        names.all(|n| n == first).then_some(first)
    }
}

/// What the follower counted: every lock error, by request, and those it could not tie to
/// a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogCount {
    pub total: u64,
    pub by_request: BTreeMap<String, u64>,
    pub unattributed: u64,
}

/// A log being followed on a thread of its own.
pub struct LogFollower {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    counted: Arc<Mutex<LogCount>>,
    handle: JoinHandle<anyhow::Result<()>>,
}

/// Lines into records: the record being read, and where a traceback stands.
#[derive(Default)]
struct Records {
    start: Option<Regex>,
    current: Option<String>,
    in_traceback: bool,
    last_indented: bool,
}

const TRACEBACK_LINES: [&str; 3] = [
    "Traceback (most recent call last)",
    "The above exception was the direct cause",
    "During handling of the above exception",
];

impl Records {
    /// Whether `line` goes on the current record rather than starting one.
    fn continues(&mut self, line: &str) -> bool {
        if let Some(start) = &self.start {
            return !start.is_match(line);
        }
        let indented = line.starts_with([' ', '\t']);
        let continues = if line.trim().is_empty() || indented {
            true
        } else if TRACEBACK_LINES.iter().any(|t| line.starts_with(t)) {
            self.in_traceback = true;
            true
        } else if self.in_traceback && self.last_indented {
            // The exception line after a traceback's frames.
            self.in_traceback = false;
            true
        } else {
            self.in_traceback = false;
            false
        };
        if !line.trim().is_empty() {
            self.last_indented = indented;
        }
        continues
    }

    /// Takes one line; returns the record it completed, if it starts a new one.
    fn push(&mut self, line: &str) -> Option<String> {
        if self.current.is_some() && self.continues(line) {
            let current = self.current.as_mut().expect("checked");
            current.push('\n');
            current.push_str(line);
            return None;
        }
        if self.current.is_none() {
            // The first line read starts a record whatever it is.
            self.continues(line);
        }
        self.current.replace(line.to_owned())
    }

    /// The record being read, complete now.
    fn flush(&mut self) -> Option<String> {
        self.in_traceback = false;
        self.last_indented = false;
        self.current.take()
    }
}

struct Reader {
    path: PathBuf,
    file: File,
    offset: u64,
    partial: Vec<u8>,
    records: Records,
}

impl Reader {
    /// Reads what was appended since the last call; calls `record` with each record
    /// completed. `flush` also takes a last line that has no newline yet. When the name now
    /// points to another file (rotated by renaming), the old file is read to its end and the
    /// new one is followed from its start.
    fn read_new(&mut self, flush: bool, mut hit: impl FnMut(String)) -> anyhow::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let renamed = match (std::fs::metadata(&self.path), self.file.metadata()) {
            (Ok(now), Ok(open)) => (now.dev(), now.ino()) != (open.dev(), open.ino()),
            // The name is gone for the moment (between the rename and the new file).
            _ => false,
        };
        if renamed {
            self.read_appended(true, &mut hit)?;
            self.file = File::open(&self.path)
                .with_context(|| format!("reopening {}", self.path.display()))?;
            self.offset = 0;
        }
        self.read_appended(flush, &mut hit)
    }

    fn read_appended(&mut self, flush: bool, hit: &mut impl FnMut(String)) -> anyhow::Result<()> {
        let len = self
            .file
            .metadata()
            .with_context(|| format!("reading {}", self.path.display()))?
            .len();
        if len < self.offset {
            // Rotated or truncated: what is there now is new.
            self.file = File::open(&self.path)
                .with_context(|| format!("reopening {}", self.path.display()))?;
            self.offset = 0;
            self.partial.clear();
        }
        self.file.seek(SeekFrom::Start(self.offset))?;
        let mut chunk = Vec::new();
        let read = (&mut self.file)
            .take(len - self.offset)
            .read_to_end(&mut chunk)?;
        self.offset += read as u64;
        self.partial.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = self.partial[start..].iter().position(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(&self.partial[start..start + end]).into_owned();
            if let Some(record) = self.records.push(&line) {
                hit(record);
            }
            start += end + 1;
        }
        self.partial.drain(..start);
        if flush && !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            if let Some(record) = self.records.push(&line) {
                hit(record);
            }
            self.partial.clear();
        }
        // Nothing new since the last read: the record being read is complete.
        if flush || read == 0 {
            if let Some(record) = self.records.flush() {
                hit(record);
            }
        }
        Ok(())
    }
}

/// Every record of a whole log file, from its first line to its last (`lockbench doctor`
/// reads a log after the fact with the same rule the follower uses during a run).
pub fn read_records(path: &Path, record_start: Option<Regex>) -> anyhow::Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut records = Records {
        start: record_start,
        ..Records::default()
    };
    let mut out = Vec::new();
    for line in String::from_utf8_lossy(&bytes).lines() {
        out.extend(records.push(line));
    }
    out.extend(records.flush());
    Ok(out)
}

impl LogFollower {
    /// Opens the log (an error names it when it cannot be read) and follows it from its end.
    pub fn start(
        path: &Path,
        reading: LogReading,
        shared: Arc<Shared>,
    ) -> anyhow::Result<LogFollower> {
        let file = File::open(path)
            .with_context(|| format!("target.log: cannot read {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("target.log: cannot read {}", path.display()))?;
        if !meta.is_file() {
            anyhow::bail!("target.log: {} is not a file", path.display());
        }
        let mut reader = Reader {
            path: path.to_path_buf(),
            file,
            offset: meta.len(),
            partial: Vec::new(),
            records: Records {
                start: reading.record_start.clone(),
                ..Records::default()
            },
        };
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let counted = Arc::new(Mutex::new(LogCount::default()));
        let handle = {
            let (stop, count, counted) = (stop.clone(), count.clone(), counted.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                loop {
                    let last = stop.load(Ordering::Acquire);
                    reader.read_new(last, |record| {
                        if !reading.lock.is_match(&record) {
                            return;
                        }
                        count.fetch_add(1, Ordering::Relaxed);
                        shared.recorder.server_lock_error(Instant::now());
                        let mut c = counted.lock().unwrap_or_else(|p| p.into_inner());
                        c.total += 1;
                        match reading.attribute(&record) {
                            Some(name) => *c.by_request.entry(name.to_owned()).or_default() += 1,
                            None => c.unattributed += 1,
                        }
                    })?;
                    if last {
                        return Ok(());
                    }
                    std::thread::sleep(POLL);
                }
            })
        };
        Ok(LogFollower {
            stop,
            count,
            counted,
            handle,
        })
    }

    /// Lock errors counted so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Reads to the end of the log once more and stops; the final count.
    pub fn finish(self) -> anyhow::Result<LogCount> {
        self.stop.store(true, Ordering::Release);
        match self.handle.join() {
            Ok(result) => result?,
            Err(_) => anyhow::bail!("the log follower panicked"),
        }
        let counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        Ok(counted.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Waits until the follower has counted `n`, or a few seconds.
    fn settle(f: &LogFollower, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while f.count() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn reading(lock: &str, routes: &[(&str, &str)]) -> LogReading {
        LogReading {
            lock: Regex::new(lock).unwrap(),
            record_start: None,
            path: Regex::new(crate::scenario::DEFAULT_PATH_PATTERN).unwrap(),
            routes: routes
                .iter()
                .map(|(name, path)| (name.to_string(), LogReading::route(path)))
                .collect(),
        }
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new(Vec::new(), None))
    }

    #[test]
    fn a_log_rotated_by_renaming_is_followed_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "database is locked (before the run: not counted)\n");
        let f = LogFollower::start(&log, reading("database is locked", &[]), shared()).unwrap();
        append(&log, "GET /x 200\ndatabase is locked 1\n");
        settle(&f, 1);
        // The app writes a last line to the old file, which is then renamed, as logrotate
        // does; the app reopens its log under the old name.
        append(&log, "database is locked 2 (the old file's last line)\n");
        std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
        append(
            &log,
            "database is locked 3\nGET /y 200\ndatabase is locked 4\n",
        );
        settle(&f, 4);
        append(&log, "database is locked 5 (no newline yet)");
        assert_eq!(f.finish().unwrap().total, 5);
    }

    #[test]
    fn a_truncated_log_is_read_again_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "old line\nold line\nold line\n");
        let f = LogFollower::start(&log, reading("locked", &[]), shared()).unwrap();
        std::fs::write(&log, "locked\n").unwrap();
        settle(&f, 1);
        assert_eq!(f.finish().unwrap().total, 1);
    }

    /// Django's log of one request that failed on a lock: the message, then a chained
    /// traceback that names "database is locked" twice.
    const DJANGO_LOCKED: &str = "Internal Server Error: /read_write_transaction/
Traceback (most recent call last):
  File \"/venv/django/db/backends/utils.py\", line 105, in _execute
    return self.cursor.execute(sql, params)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
sqlite3.OperationalError: database is locked

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File \"/venv/django/core/handlers/exception.py\", line 55, in inner
    response = get_response(request)
django.db.utils.OperationalError: database is locked
";

    #[test]
    fn a_multi_line_traceback_is_one_lock_error_tied_to_the_path_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("errors.log");
        append(&log, "");
        let routes = [
            ("read_write_transaction", "/read_write_transaction/"),
            ("item", "/items/{n}/?full=1"),
            ("write", "/write/"),
        ];
        let f = LogFollower::start(&log, reading("database is locked", &routes), shared()).unwrap();
        append(&log, DJANGO_LOCKED);
        append(&log, DJANGO_LOCKED);
        append(
            &log,
            &DJANGO_LOCKED.replace("/read_write_transaction/", "/items/42/"),
        );
        append(
            &log,
            "Internal Server Error: /write/\nValueError: no name\n",
        );
        append(
            &log,
            &DJANGO_LOCKED.replace("/read_write_transaction/", "/elsewhere/"),
        );
        // An app's own one-line form: the method, the path, then a colon.
        append(
            &log,
            "2026-11-30 ERROR lock error on POST /write/: (sqlite3.OperationalError) database is locked\n",
        );
        let count = f.finish().unwrap();
        assert_eq!(count.total, 5, "{count:?}");
        assert_eq!(count.by_request["read_write_transaction"], 2);
        assert_eq!(count.by_request["item"], 1);
        assert_eq!(
            count.by_request["write"], 1,
            "the one-line form; the ValueError is not a lock error"
        );
        assert_eq!(count.unattributed, 1, "a path no request has");
    }

    #[test]
    fn a_record_start_pattern_overrides_the_default_rule() {
        let mut records = Records {
            start: Some(Regex::new(r"^\d{4}-").unwrap()),
            ..Records::default()
        };
        let mut done = Vec::new();
        for line in [
            "2026-11-30 ERROR locked",
            "more detail",
            "2026-11-30 INFO ok",
        ] {
            done.extend(records.push(line));
        }
        done.extend(records.flush());
        assert_eq!(
            done,
            vec!["2026-11-30 ERROR locked\nmore detail", "2026-11-30 INFO ok"]
        );
    }
}
