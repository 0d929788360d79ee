//! Fixtures for lockbench's criterion benches: a fresh temp-file database per setting,
//! reader threads that read until told to stop, and the write unit of work timed by the
//! benches, both through lockbench's [`Store`] and as a bare rusqlite loop.
//!
//! The write unit is the contention probe's (`lockbench_server::probe`): read the batch's
//! counter, insert a `processing_log` row, bump the counter, in one transaction. The bare
//! loop runs the same SQL text (the constants below) with `prepare_cached` on one plain
//! `rusqlite::Connection`, so a ratio of the two is lockbench's own cost on the write path.
//!
//! Settings are fixed to what the benches compare: synchronous=normal, busy_timeout 5000 on
//! every connection, a shared pool of `readers + 2` connections, and no retries (a unit that
//! hits a lock error fails and is counted by the store's stats).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lockbench_server::now_sql;
use lockbench_server::storage::{
    BusyTimeoutScope, DbError, Driver, JournalMode, LockCode, PoolLayout, RetryPlan, StorageConfig,
    Store, Synchronous, TxMode, Value,
};
use rusqlite::OptionalExtension;
use tempfile::TempDir;

/// Errors from building a fixture (opening, schema, PRAGMAs).
pub type FixtureError = Box<dyn std::error::Error + Send + Sync>;

/// Operation name of the timed write unit in the store's stats.
pub const WRITE_OP: &str = "bench_write";
/// Operation name of the readers' unit in the store's stats.
pub const READ_OP: &str = "bench_read";

/// The write unit's statements, shared by the store path and the bare loop.
pub const SELECT_PROCESSED: &str = "SELECT processed FROM batches WHERE id = ?1";
pub const INSERT_LOG: &str =
    "INSERT INTO processing_log (batch_id, action, detail) VALUES (?1, 'bench', ?2)";
pub const UPDATE_BATCH: &str = concat!(
    "UPDATE batches SET processed = processed + 1, updated_at = ",
    now_sql!(),
    " WHERE id = ?1"
);
/// The readers' statement.
pub const READ_LOG: &str = "SELECT count(*), max(id) FROM processing_log WHERE batch_id = ?1";

const INSERT_BATCH: &str = concat!(
    "INSERT INTO batches (source_dir, status, started_at) VALUES ('bench', 'running', ",
    now_sql!(),
    ")"
);
const BUSY_TIMEOUT_MS: u64 = 5000;

/// One benchmarked setting: which driver, journal mode and transaction mode, and how many
/// reader threads read while the one writer commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub driver: Driver,
    pub journal_mode: JournalMode,
    pub tx_mode: TxMode,
    pub readers: u32,
}

impl Setting {
    /// The store settings the benches use for this setting.
    pub fn storage_config(&self) -> StorageConfig {
        StorageConfig {
            driver: self.driver,
            journal_mode: self.journal_mode,
            synchronous: Synchronous::Normal,
            busy_timeout_ms: BUSY_TIMEOUT_MS,
            busy_timeout_scope: BusyTimeoutScope::EveryConnection,
            tx_mode: self.tx_mode,
            pool_size: self.readers + 2,
            pool_layout: PoolLayout::Shared,
            ..StorageConfig::default()
        }
    }

    /// The benchmark id: `delete/deferred/readers=0`.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/readers={}",
            self.journal_mode.as_sql(),
            tx_mode_name(self.tx_mode),
            self.readers
        )
    }
}

/// The lower-case name of a transaction mode, as the command line spells it.
pub fn tx_mode_name(mode: TxMode) -> &'static str {
    match mode {
        TxMode::Deferred => "deferred",
        TxMode::Immediate => "immediate",
        TxMode::Lazy => "lazy",
    }
}

fn insert_batch(store: &Store) -> Result<i64, DbError> {
    store.write("bench_setup", |tx| tx.insert(INSERT_BATCH, &[]))
}

/// The write unit, through the store: exactly the contention probe's writer.
pub fn write_unit(store: &Store, batch_id: i64, detail: &str) -> Result<Option<i64>, DbError> {
    store.write(WRITE_OP, |tx| {
        let processed = tx.query_i64(SELECT_PROCESSED, &[Value::Int(batch_id)])?;
        tx.insert(
            INSERT_LOG,
            &[Value::Int(batch_id), Value::Text(detail.to_owned())],
        )?;
        tx.execute(UPDATE_BATCH, &[Value::Int(batch_id)])?;
        Ok(processed)
    })
}

/// The write unit on a plain rusqlite connection: `begin`, the same three statements and
/// COMMIT, each through `prepare_cached`; ROLLBACK after a failure.
pub fn bare_write_unit(
    conn: &rusqlite::Connection,
    begin: &str,
    batch_id: i64,
    detail: &str,
) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(begin)?.execute([])?;
    let result = (|| {
        let processed = conn
            .prepare_cached(SELECT_PROCESSED)?
            .query_row([batch_id], |row| row.get(0))
            .optional()?;
        conn.prepare_cached(INSERT_LOG)?
            .execute(rusqlite::params![batch_id, detail])?;
        conn.prepare_cached(UPDATE_BATCH)?.execute([batch_id])?;
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(processed)
    })();
    if result.is_err() && !conn.is_autocommit() {
        // Fails harmlessly when SQLite already rolled back on its own.
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// A fresh database in a temporary folder, opened with [`Store::open`] for one setting,
/// with one batch row for the writer and readers to share.
pub struct StoreFixture {
    // Declared before the folder so that connections close before it is removed.
    store: Store,
    batch_id: i64,
    seq: u64,
    _dir: TempDir,
}

impl StoreFixture {
    pub fn open(setting: &Setting) -> Result<StoreFixture, FixtureError> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(
            &dir.path().join("bench.db"),
            &setting.storage_config(),
            &RetryPlan::default(),
        )?;
        let batch_id = insert_batch(&store)?;
        Ok(StoreFixture {
            store,
            batch_id,
            seq: 0,
            _dir: dir,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn batch_id(&self) -> i64 {
        self.batch_id
    }

    /// Runs the next write unit (its log row's detail is `bench:<n>`).
    pub fn write_unit(&mut self) -> Result<Option<i64>, DbError> {
        self.seq += 1;
        let detail = format!("bench:{}", self.seq);
        write_unit(&self.store, self.batch_id, &detail)
    }

    /// Lock errors seen so far, by code: all operations, then the timed writes alone.
    pub fn lock_errors(&self) -> (BTreeMap<LockCode, u64>, BTreeMap<LockCode, u64>) {
        let stats = self.store.stats();
        let writes = stats
            .snapshot()
            .remove(WRITE_OP)
            .map(|s| s.lock_errors)
            .unwrap_or_default();
        (stats.lock_errors_by_code(), writes)
    }
}

/// The bare baseline: a database with lockbench's schema and one batch row, written through
/// one plain `rusqlite::Connection` with journal_mode, synchronous=normal and busy_timeout
/// 5000 set by hand, and no lockbench code on the write path.
pub struct BareFixture {
    conn: rusqlite::Connection,
    begin: &'static str,
    batch_id: i64,
    seq: u64,
    lock_errors: BTreeMap<LockCode, u64>,
    _dir: TempDir,
}

impl BareFixture {
    /// `tx_mode` picks `BEGIN DEFERRED` or `BEGIN IMMEDIATE` (lazy has no bare equivalent).
    pub fn open(journal_mode: JournalMode, tx_mode: TxMode) -> Result<BareFixture, FixtureError> {
        let begin = match tx_mode {
            TxMode::Deferred => "BEGIN DEFERRED",
            TxMode::Immediate => "BEGIN IMMEDIATE",
            TxMode::Lazy => return Err("the bare loop has no lazy transaction mode".into()),
        };
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bare.db");
        // The store creates the schema and the batch row, then closes every connection.
        let batch_id = {
            let setting = Setting {
                driver: Driver::Rusqlite,
                journal_mode,
                tx_mode,
                readers: 0,
            };
            let store = Store::open(&path, &setting.storage_config(), &RetryPlan::default())?;
            insert_batch(&store)?
        };
        let conn = open_bare(&path, journal_mode)?;
        Ok(BareFixture {
            conn,
            begin,
            batch_id,
            seq: 0,
            lock_errors: BTreeMap::new(),
            _dir: dir,
        })
    }

    pub fn conn(&self) -> &rusqlite::Connection {
        &self.conn
    }

    pub fn batch_id(&self) -> i64 {
        self.batch_id
    }

    /// Runs the next write unit, counting a lock error by code.
    pub fn write_unit(&mut self) -> rusqlite::Result<Option<i64>> {
        self.seq += 1;
        let detail = format!("bench:{}", self.seq);
        let result = bare_write_unit(&self.conn, self.begin, self.batch_id, &detail);
        if let Err(rusqlite::Error::SqliteFailure(e, _)) = &result {
            if let Some(code) = LockCode::from_extended(e.extended_code) {
                *self.lock_errors.entry(code).or_default() += 1;
            }
        }
        result
    }

    pub fn lock_errors(&self) -> &BTreeMap<LockCode, u64> {
        &self.lock_errors
    }
}

fn open_bare(path: &Path, journal_mode: JournalMode) -> Result<rusqlite::Connection, FixtureError> {
    let conn = rusqlite::Connection::open(path)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", journal_mode.as_sql(), |row| {
            row.get(0)
        })?;
    if !mode.eq_ignore_ascii_case(journal_mode.as_sql()) {
        return Err(format!(
            "journal_mode {} requested, {mode} in effect",
            journal_mode.as_sql()
        )
        .into());
    }
    conn.pragma_update(None, "synchronous", "normal")?;
    conn.pragma_update(None, "busy_timeout", BUSY_TIMEOUT_MS as i64)?;
    Ok(conn)
}

/// What the reader threads did, counted when they stop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReaderTally {
    pub reads_ok: u64,
    /// Reads that failed with a lock error (counted by code in the store's stats too).
    pub reads_locked: u64,
    /// Reads that failed otherwise, with the first such error.
    pub reads_failed_other: u64,
    pub first_other_error: Option<String>,
}

impl ReaderTally {
    pub fn reads(&self) -> u64 {
        self.reads_ok + self.reads_locked + self.reads_failed_other
    }
}

/// What the bench thread and the readers share.
#[derive(Default)]
struct Control {
    /// Read while true; checked before every read.
    run: AtomicBool,
    stop: AtomicBool,
    /// Bumped by each `resume`; a reader that finishes a read in a new generation reports in.
    generation: AtomicU64,
    /// Readers that finished a read since the last `resume`.
    ready: AtomicU64,
    /// Readers waiting on `gate`.
    parked: AtomicU64,
    gate: Mutex<()>,
    wake: Condvar,
}

impl Control {
    fn notify(&self) {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        self.wake.notify_all();
    }
}

/// Reader threads looping `store.read` over the writer's batch.
///
/// They read only between [`Readers::resume`] and [`Readers::pause`], so that they load the
/// machine during a timed section and not while criterion analyses (on 2 cores, 16 spinning
/// readers would slow the analysis tenfold and make every id take seconds longer).
pub struct Readers {
    control: Arc<Control>,
    handles: Vec<JoinHandle<ReaderTally>>,
}

/// How long `resume` and `pause` wait for the readers before going on anyway.
const READERS_WAIT: Duration = Duration::from_secs(30);

impl Readers {
    /// Starts `count` reader threads, paused.
    pub fn start(store: &Store, batch_id: i64, count: u32) -> std::io::Result<Readers> {
        let control = Arc::new(Control::default());
        let mut readers = Readers {
            control: control.clone(),
            handles: Vec::with_capacity(count as usize),
        };
        for r in 0..count {
            let store = store.clone();
            let control = control.clone();
            let handle = std::thread::Builder::new()
                .name(format!("bench-reader-{r}"))
                .spawn(move || read_loop(&store, batch_id, &control))?;
            readers.handles.push(handle);
        }
        readers.wait_for(|c| c.parked.load(Ordering::SeqCst));
        Ok(readers)
    }

    /// Lets the readers read, and returns once each has finished a read, so a timed section
    /// that starts afterwards runs under the full reading load.
    pub fn resume(&self) {
        let c = &self.control;
        c.ready.store(0, Ordering::SeqCst);
        c.generation.fetch_add(1, Ordering::SeqCst);
        c.run.store(true, Ordering::SeqCst);
        c.notify();
        self.wait_for(|c| c.ready.load(Ordering::SeqCst));
    }

    /// Stops the readers after their current read and returns once all of them wait.
    pub fn pause(&self) {
        self.control.run.store(false, Ordering::SeqCst);
        self.wait_for(|c| c.parked.load(Ordering::SeqCst));
    }

    /// Waits until `count(control)` reaches the number of readers (or `READERS_WAIT` passes).
    fn wait_for(&self, count: impl Fn(&Control) -> u64) {
        let deadline = Instant::now() + READERS_WAIT;
        while count(&self.control) < self.handles.len() as u64 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Stops and joins the readers, adding up what they did.
    pub fn stop(mut self) -> ReaderTally {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> ReaderTally {
        self.control.stop.store(true, Ordering::SeqCst);
        self.control.notify();
        let mut total = ReaderTally::default();
        for handle in self.handles.drain(..) {
            let Ok(t) = handle.join() else {
                total.reads_failed_other += 1;
                total
                    .first_other_error
                    .get_or_insert_with(|| "a reader thread panicked".into());
                continue;
            };
            total.reads_ok += t.reads_ok;
            total.reads_locked += t.reads_locked;
            total.reads_failed_other += t.reads_failed_other;
            if total.first_other_error.is_none() {
                total.first_other_error = t.first_other_error;
            }
        }
        total
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        // A bench that panics must not leave threads reading a removed database.
        self.stop_and_join();
    }
}

fn read_loop(store: &Store, batch_id: i64, control: &Control) -> ReaderTally {
    let mut tally = ReaderTally::default();
    let mut generation = 0;
    loop {
        if !control.run.load(Ordering::SeqCst) {
            // `run` and `stop` are checked under the lock `resume` and `stop` notify under,
            // so no wake-up is lost.
            let mut gate = control.gate.lock().unwrap_or_else(|p| p.into_inner());
            control.parked.fetch_add(1, Ordering::SeqCst);
            while !control.run.load(Ordering::SeqCst) && !control.stop.load(Ordering::SeqCst) {
                gate = control.wake.wait(gate).unwrap_or_else(|p| p.into_inner());
            }
            control.parked.fetch_sub(1, Ordering::SeqCst);
        }
        if control.stop.load(Ordering::SeqCst) {
            return tally;
        }
        match store.read(READ_OP, |tx| tx.query(READ_LOG, &[Value::Int(batch_id)])) {
            Ok(_) => tally.reads_ok += 1,
            Err(e) if e.is_lock() => tally.reads_locked += 1,
            Err(e) => {
                tally.reads_failed_other += 1;
                tally.first_other_error.get_or_insert_with(|| e.to_string());
            }
        }
        let current = control.generation.load(Ordering::SeqCst);
        if current != generation {
            generation = current;
            control.ready.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// `SQLITE_BUSY=3 SQLITE_BUSY_SNAPSHOT=1`, or `none`.
pub fn format_codes(codes: &BTreeMap<LockCode, u64>) -> String {
    if codes.is_empty() {
        return "none".into();
    }
    codes
        .iter()
        .map(|(code, n)| format!("{code}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_rows(store: &Store, batch_id: i64) -> (i64, i64) {
        store
            .read("check", |tx| {
                let rows = tx
                    .query_i64(
                        "SELECT count(*) FROM processing_log WHERE batch_id = ?1 AND detail = 'bench:1'",
                        &[Value::Int(batch_id)],
                    )?
                    .unwrap_or(0);
                let counter = tx
                    .query_i64(SELECT_PROCESSED, &[Value::Int(batch_id)])?
                    .unwrap_or(0);
                Ok((rows, counter))
            })
            .expect("reading the log back")
    }

    #[test]
    fn store_write_unit_lands_under_readers_with_both_drivers() {
        for (driver, journal_mode, tx_mode) in [
            (Driver::Rusqlite, JournalMode::Delete, TxMode::Deferred),
            (Driver::Sqlx, JournalMode::Wal, TxMode::Immediate),
        ] {
            let setting = Setting {
                driver,
                journal_mode,
                tx_mode,
                readers: 2,
            };
            let mut fixture = StoreFixture::open(&setting).expect("opening the fixture");
            let readers = Readers::start(fixture.store(), fixture.batch_id(), setting.readers)
                .expect("starting readers");
            readers.resume();
            assert_eq!(fixture.write_unit().expect("one write unit"), Some(0));
            readers.pause();
            let reads = readers.stop();
            assert_eq!(
                log_rows(fixture.store(), fixture.batch_id()),
                (1, 1),
                "{setting:?}"
            );
            assert!(reads.reads_ok >= 2, "each reader read once: {reads:?}");
            assert_eq!(reads.reads_failed_other, 0, "{reads:?}");
            // Lock errors may happen under readers; they are counted, never other errors.
            let (_, writes) = fixture.lock_errors();
            assert!(writes.is_empty(), "one writer alone saw {writes:?}");
        }
    }

    #[test]
    fn bare_write_unit_lands() {
        let mut fixture =
            BareFixture::open(JournalMode::Wal, TxMode::Immediate).expect("opening the fixture");
        assert_eq!(fixture.write_unit().expect("one write unit"), Some(0));
        let conn = fixture.conn();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        let (rows, counter): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM processing_log WHERE batch_id = ?1 AND detail = 'bench:1'),
                        (SELECT processed FROM batches WHERE id = ?1)",
                [fixture.batch_id()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("reading the log back");
        assert_eq!((rows, counter), (1, 1));
        assert!(fixture.lock_errors().is_empty());
    }

    #[test]
    fn ids_name_the_setting() {
        let setting = Setting {
            driver: Driver::Rusqlite,
            journal_mode: JournalMode::Delete,
            tx_mode: TxMode::Deferred,
            readers: 16,
        };
        assert_eq!(setting.id(), "delete/deferred/readers=16");
        assert_eq!(setting.storage_config().pool_size, 18);
    }
}
