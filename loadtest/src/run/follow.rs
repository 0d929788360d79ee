//! Following an external app's log during a run (`[target].log`): every new line that
//! matches `[target].lock_pattern` is one lock error the server saw, counted on the time
//! line at the moment it was read.
//!
//! The follower starts at the file's end (lines written before the run are not this run's),
//! reads what was appended every 100 ms, starts over from the beginning if the file shrank
//! (truncated), follows the name when the log is rotated by renaming (the old file is read
//! to its end first, then the new one from its start, as `tail -F` does), and at the end
//! reads up to the last byte, so a line written before the last answer arrived is counted.
//! It only reads the log.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use regex::Regex;

use crate::load::Shared;

const POLL: Duration = Duration::from_millis(100);

/// A log being followed on a thread of its own.
pub struct LogFollower {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    handle: JoinHandle<anyhow::Result<()>>,
}

struct Reader {
    path: PathBuf,
    file: File,
    offset: u64,
    partial: Vec<u8>,
    pattern: Regex,
}

impl Reader {
    /// Reads what was appended since the last call; calls `hit` once per matching line.
    /// `flush` also counts a last line that has no newline yet. When the name now points to
    /// another file (rotated by renaming), the old file is read to its end and the new one
    /// is followed from its start.
    fn read_new(&mut self, flush: bool, mut hit: impl FnMut()) -> anyhow::Result<()> {
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

    fn read_appended(&mut self, flush: bool, hit: &mut impl FnMut()) -> anyhow::Result<()> {
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
            let line = String::from_utf8_lossy(&self.partial[start..start + end]);
            if self.pattern.is_match(&line) {
                hit();
            }
            start += end + 1;
        }
        self.partial.drain(..start);
        if flush && !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&self.partial);
            if self.pattern.is_match(&line) {
                hit();
            }
            self.partial.clear();
        }
        Ok(())
    }
}

impl LogFollower {
    /// Opens the log (an error names it when it cannot be read) and follows it from its end.
    pub fn start(path: &Path, pattern: Regex, shared: Arc<Shared>) -> anyhow::Result<LogFollower> {
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
            pattern,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let handle = {
            let stop = stop.clone();
            let count = count.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                loop {
                    let last = stop.load(Ordering::Acquire);
                    reader.read_new(last, || {
                        count.fetch_add(1, Ordering::Relaxed);
                        shared.recorder.server_lock_error(Instant::now());
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
            handle,
        })
    }

    /// Lock errors counted so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Reads to the end of the log once more and stops; the final count.
    pub fn finish(self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::Release);
        match self.handle.join() {
            Ok(result) => result?,
            Err(_) => anyhow::bail!("the log follower panicked"),
        }
        Ok(self.count.load(Ordering::Relaxed))
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

    #[test]
    fn a_log_rotated_by_renaming_is_followed_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "database is locked (before the run: not counted)\n");
        let shared = Arc::new(Shared::new(crate::scenario::Users::default(), None, None));
        let pattern = Regex::new("database is locked").unwrap();
        let f = LogFollower::start(&log, pattern, shared).unwrap();
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
        assert_eq!(f.finish().unwrap(), 5);
    }

    #[test]
    fn a_truncated_log_is_read_again_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "old line\nold line\nold line\n");
        let shared = Arc::new(Shared::new(crate::scenario::Users::default(), None, None));
        let f = LogFollower::start(&log, Regex::new("locked").unwrap(), shared).unwrap();
        std::fs::write(&log, "locked\n").unwrap();
        settle(&f, 1);
        assert_eq!(f.finish().unwrap(), 1);
    }
}
