//! The storage core's behaviour, on real file databases in temporary folders.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use lockbench_server::probe::{self, ProbeConfig, ProbeReport};
use lockbench_server::storage::hold::hold_write_lock;
use lockbench_server::storage::{
    vfs, BusyTimeoutScope, DbError, Driver, JournalMode, LockCode, PoolLayout, RetryConfig,
    RetryKind, RetryPlan, RetryScope, Role, StorageConfig, Store, Synchronous, TxMode, Value,
};

/// A temporary folder and the database path inside it.
fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("test.db");
    (dir, path)
}

fn storage(journal_mode: JournalMode, tx_mode: TxMode) -> StorageConfig {
    StorageConfig {
        journal_mode,
        tx_mode,
        ..StorageConfig::default()
    }
}

/// Runs the contention probe on a fresh temp database.
fn contend(
    storage: StorageConfig,
    retry: RetryConfig,
    writers: u32,
    readers: u32,
    ms: u64,
) -> ProbeReport {
    let (_dir, path) = temp_db();
    let config = ProbeConfig {
        storage,
        retry,
        writers,
        readers,
        duration: Duration::from_millis(ms),
        db: Some(path),
        ..ProbeConfig::default()
    };
    probe::run(&config).expect("probe runs")
}

#[test]
fn rollback_deferred_writers_fail_fast_despite_a_long_busy_timeout_and_immediate_cures_it() {
    let mut cfg = storage(JournalMode::Delete, TxMode::Deferred);
    cfg.busy_timeout_ms = 30_000;
    // Two writers must overlap for the upgrade to fail; on a machine busy with other work
    // the threads can take turns for a whole run, so the probe gets up to three runs to
    // see it (the upgrade itself is shown deterministically in
    // both_drivers_classify_the_rollback_upgrade_deadlock_as_sqlite_busy_at_once).
    let busy = |r: &ProbeReport| r.lock_errors.by_code.get(&LockCode::Busy).copied();
    let mut deferred = contend(cfg.clone(), RetryConfig::default(), 8, 4, 2000);
    for _ in 0..2 {
        if busy(&deferred).unwrap_or(0) > 0 {
            break;
        }
        deferred = contend(cfg.clone(), RetryConfig::default(), 8, 4, 2000);
    }
    assert!(
        busy(&deferred).unwrap_or(0) > 0,
        "deferred read-then-write should hit SQLITE_BUSY: {}",
        deferred.summary()
    );
    // The busy handler was never called: failures come long before the 30 s timeout.
    assert!(deferred.latency_us.write_failed.count > 0);
    assert!(
        deferred.latency_us.write_failed.p50 < 5_000_000,
        "failed writes should fail at once, not after the timeout: {}",
        deferred.summary()
    );
    assert_eq!(deferred.lost_writes, 0);

    cfg.tx_mode = TxMode::Immediate;
    let immediate = contend(cfg, RetryConfig::default(), 4, 2, 1500);
    assert_eq!(immediate.lock_errors.total, 0, "{}", immediate.summary());
    assert!(immediate.writes_ok > 0);
    assert_eq!(immediate.writes_failed, 0);
    assert_eq!(immediate.counter, immediate.counter_rows);
}

/// Connection A reads (taking a WAL snapshot), B commits a write, then A tries to write.
/// Returns A's outcome and B's.
fn stale_snapshot_upgrade(
    driver: Driver,
    tx_mode: TxMode,
) -> (Result<(), DbError>, Result<(), DbError>) {
    let (_dir, path) = temp_db();
    let mut cfg = storage(JournalMode::Wal, tx_mode);
    cfg.driver = driver;
    cfg.busy_timeout_ms = 10_000;
    let store = Store::open(&path, &cfg, &RetryPlan::default()).expect("open");
    store
        .write("seed", |tx| {
            tx.insert("INSERT INTO batches (source_dir) VALUES ('x')", &[])
        })
        .expect("seed");

    let (read_done_tx, read_done) = mpsc::channel::<()>();
    let (b_done_tx, b_done) = mpsc::channel::<()>();
    let b_store = store.clone();
    let b = std::thread::spawn(move || {
        read_done.recv().expect("A read");
        let r = b_store.write("b", |tx| {
            tx.execute(
                "UPDATE batches SET processed = processed + 1 WHERE id = 1",
                &[],
            )
            .map(|_| ())
        });
        let _ = b_done_tx.send(());
        r
    });
    let a = store.write("a", |tx| {
        tx.query_i64("SELECT processed FROM batches WHERE id = 1", &[])?;
        let _ = read_done_tx.send(());
        // Deferred: B commits now. Immediate: B waits for our lock, so we go on after a while.
        let _ = b_done.recv_timeout(Duration::from_millis(300));
        tx.insert(
            "INSERT INTO processing_log (batch_id, action) VALUES (1, 'a')",
            &[],
        )
        .map(|_| ())
    });
    (a, b.join().expect("thread B"))
}

#[test]
fn wal_stale_read_snapshot_cannot_upgrade_and_immediate_avoids_it_on_both_drivers() {
    for driver in [Driver::Rusqlite, Driver::Sqlx] {
        let started = std::time::Instant::now();
        let (a, b) = stale_snapshot_upgrade(driver, TxMode::Deferred);
        let err = a.expect_err("A's write on a stale snapshot must fail");
        assert_eq!(
            err.lock_code(),
            Some(LockCode::BusySnapshot),
            "{driver:?}: {err}"
        );
        assert!(
            matches!(err, DbError::Lock { extended: 517, .. }),
            "{err:?}"
        );
        assert!(b.is_ok(), "{driver:?}: B commits");
        // SQLITE_BUSY_SNAPSHOT is returned at once, not after the 10 s busy timeout.
        assert!(started.elapsed() < Duration::from_secs(8), "{driver:?}");

        let (a, b) = stale_snapshot_upgrade(driver, TxMode::Immediate);
        assert!(a.is_ok(), "{driver:?}: immediate A: {a:?}");
        assert!(b.is_ok(), "{driver:?}: immediate B: {b:?}");
    }
}

/// Rollback journal: A reads (SHARED), B takes RESERVED for its write, then A tries to write.
fn rollback_upgrade(driver: Driver) -> (Result<(), DbError>, Result<(), DbError>) {
    let (_dir, path) = temp_db();
    let mut cfg = storage(JournalMode::Delete, TxMode::Deferred);
    cfg.driver = driver;
    cfg.busy_timeout_ms = 10_000;
    let store = Store::open(&path, &cfg, &RetryPlan::default()).expect("open");
    store
        .write("seed", |tx| {
            tx.insert("INSERT INTO batches (source_dir) VALUES ('x')", &[])
        })
        .expect("seed");
    let (a_read_tx, a_read) = mpsc::channel::<()>();
    let (b_reserved_tx, b_reserved) = mpsc::channel::<()>();
    let (a_done_tx, a_done) = mpsc::channel::<()>();
    let b_store = store.clone();
    let b = std::thread::spawn(move || {
        a_read.recv().expect("A read");
        b_store.write("b", |tx| {
            tx.insert(
                "INSERT INTO processing_log (batch_id, action) VALUES (1, 'b')",
                &[],
            )?;
            let _ = b_reserved_tx.send(());
            let _ = a_done.recv_timeout(Duration::from_secs(5));
            Ok(())
        })
    });
    let a = store.write("a", |tx| {
        tx.query_i64("SELECT processed FROM batches WHERE id = 1", &[])?;
        let _ = a_read_tx.send(());
        b_reserved.recv().expect("B reserved");
        tx.execute(
            "UPDATE batches SET processed = processed + 1 WHERE id = 1",
            &[],
        )
        .map(|_| ())
    });
    let _ = a_done_tx.send(());
    (a, b.join().expect("thread B"))
}

#[test]
fn both_drivers_classify_the_rollback_upgrade_deadlock_as_sqlite_busy_at_once() {
    for driver in [Driver::Rusqlite, Driver::Sqlx] {
        let started = std::time::Instant::now();
        let (a, b) = rollback_upgrade(driver);
        let err = a.expect_err("A holds a read lock and cannot wait for the write lock");
        assert!(
            matches!(
                err,
                DbError::Lock {
                    code: LockCode::Busy,
                    extended: 5,
                    ..
                }
            ),
            "{driver:?}: {err:?}"
        );
        assert!(
            b.is_ok(),
            "{driver:?}: B commits once A has rolled back: {b:?}"
        );
        // SQLite refused to call the busy handler (10 s here): waiting would deadlock.
        assert!(started.elapsed() < Duration::from_secs(8), "{driver:?}");
    }
}

#[test]
fn first_connection_scope_leaves_the_other_connections_at_the_driver_default() {
    for driver in [Driver::Rusqlite, Driver::Sqlx] {
        let (_dir, path) = temp_db();
        let cfg = StorageConfig {
            driver,
            busy_timeout_ms: 30_000,
            busy_timeout_scope: BusyTimeoutScope::FirstConnection,
            pool_size: 4,
            ..StorageConfig::default()
        };
        let store = Store::open(&path, &cfg, &RetryPlan::default()).expect("open");
        store.open_all().expect("open all");
        let timeouts: Vec<i64> = store
            .effective_settings()
            .iter()
            .map(|c| c.busy_timeout_ms)
            .collect();
        assert_eq!(timeouts, vec![30_000, 5_000, 5_000, 5_000], "{driver:?}");

        let every = StorageConfig {
            busy_timeout_scope: BusyTimeoutScope::EveryConnection,
            ..cfg
        };
        let (_dir2, path2) = temp_db();
        let store = Store::open(&path2, &every, &RetryPlan::default()).expect("open");
        store.open_all().expect("open all");
        assert!(store
            .effective_settings()
            .iter()
            .all(|c| c.busy_timeout_ms == 30_000));
    }
}

#[test]
fn split_layout_has_one_writer_and_read_only_readers() {
    let (_dir, path) = temp_db();
    let cfg = StorageConfig {
        journal_mode: JournalMode::Wal,
        synchronous: Synchronous::Normal,
        pool_layout: PoolLayout::Split,
        pool_size: 4,
        ..StorageConfig::default()
    };
    let store = Store::open(&path, &cfg, &RetryPlan::default()).expect("open");
    store.open_all().expect("open all");
    let settings = store.effective_settings();
    let roles: Vec<Role> = settings.iter().map(|c| c.role).collect();
    assert_eq!(
        roles,
        vec![Role::Writer, Role::Reader, Role::Reader, Role::Reader]
    );
    assert!(settings
        .iter()
        .all(|c| c.journal_mode == "wal" && c.synchronous == "normal"));
    assert!(settings
        .iter()
        .filter(|c| c.role == Role::Reader)
        .all(|c| c.read_only));
    // A write through a read unit of work is refused by SQLite, not silently done.
    let err = store
        .read("sneaky", |tx| tx.execute("DELETE FROM batches", &[]))
        .expect_err("readers are read-only");
    assert!(
        matches!(err, DbError::Sqlite { extended, .. } if extended & 0xff == 8),
        "{err:?}"
    );
}

fn retries(scope: RetryScope) -> RetryConfig {
    RetryConfig {
        retry: RetryKind::Fixed,
        retry_attempts: 3,
        retry_delay_ms: 1,
        retry_scope: scope,
        ..RetryConfig::default()
    }
}

#[test]
fn commit_only_retries_lose_writes_that_unit_of_work_retries_keep() {
    let cfg = storage(JournalMode::Delete, TxMode::Deferred);
    let commit_only = contend(cfg.clone(), retries(RetryScope::CommitOnly), 4, 4, 2000);
    assert!(
        commit_only.lock_errors.total > 0,
        "{}",
        commit_only.summary()
    );
    assert!(
        commit_only.lost_writes > 0,
        "commit-only retries report dropped writes as saved: {}",
        commit_only.summary()
    );
    // The audit finds exactly the writes the store rolled back behind the caller's back.
    assert_eq!(commit_only.lost_writes, commit_only.commit_only_dropped);
    assert_eq!(
        commit_only.writes_failed, 0,
        "the caller never hears of them"
    );

    let unit = contend(cfg, retries(RetryScope::UnitOfWork), 4, 4, 2000);
    assert!(unit.retries > 0, "{}", unit.summary());
    assert_eq!(unit.lost_writes, 0, "{}", unit.summary());
    assert_eq!(unit.commit_only_dropped, 0);
    assert_eq!(unit.counter, unit.counter_rows);
}

/// xSync calls of each of `n` single-row commits on a fresh store with the given modes,
/// through the delay VFS of `delay` (each caller its own delay, so that its counter is its
/// own: the counters are per delay and process-wide). One commit before them is not counted:
/// in WAL mode it starts a new WAL (the last connection of the setup checkpointed and removed
/// the old one), and SQLite syncs a new WAL's header whatever `synchronous` says.
fn syncs_per_commit(
    journal_mode: JournalMode,
    synchronous: Synchronous,
    delay: Duration,
    n: usize,
) -> Vec<u64> {
    let (_dir, path) = temp_db();
    let cfg = StorageConfig {
        journal_mode,
        synchronous,
        sync_delay_ms: u64::try_from(delay.as_millis()).unwrap(),
        tx_mode: TxMode::Immediate,
        ..StorageConfig::default()
    };
    let store = Store::open(&path, &cfg, &RetryPlan::default()).expect("open");
    assert!(store
        .effective_settings()
        .iter()
        .all(|c| c.vfs.starts_with("lockbench-delay-")));
    let commit = |i: i64| {
        store
            .write("commit", |tx| {
                tx.insert(
                    "INSERT INTO processing_log (action, detail) VALUES ('commit', ?1)",
                    &[Value::Int(i)],
                )
            })
            .expect("commit");
    };
    commit(-1);
    (0..n)
        .map(|i| {
            let before = vfs::sync_calls(delay);
            commit(i as i64);
            vfs::sync_calls(delay) - before
        })
        .collect()
}

/// What a slow disk costs is the number of syncs times the delay, and the number of syncs
/// per commit is the journal mode's: counted exactly by the VFS, not timed.
#[test]
fn sync_delay_costs_what_the_journal_mode_syncs() {
    // Rollback journal, FULL: the journal, then the database, at every commit.
    let rollback_full = syncs_per_commit(
        JournalMode::Delete,
        Synchronous::Full,
        Duration::from_millis(1),
        10,
    );
    assert!(rollback_full.iter().all(|&s| s >= 2), "{rollback_full:?}");
    // WAL, FULL: the WAL at every commit.
    let wal_full = syncs_per_commit(
        JournalMode::Wal,
        Synchronous::Full,
        Duration::from_millis(2),
        10,
    );
    assert!(wal_full.iter().all(|&s| s >= 1), "{wal_full:?}");
    // WAL, NORMAL: no sync at commit (only checkpoints sync, and 10 small commits stay far
    // below wal_autocheckpoint's 1000 pages).
    let wal_normal = syncs_per_commit(
        JournalMode::Wal,
        Synchronous::Normal,
        Duration::from_millis(3),
        10,
    );
    assert!(wal_normal.iter().all(|&s| s == 0), "{wal_normal:?}");

    // The probe reports the same counts: a rollback journal syncs twice per commit.
    let cfg = StorageConfig {
        journal_mode: JournalMode::Delete,
        synchronous: Synchronous::Full,
        sync_delay_ms: 4,
        tx_mode: TxMode::Immediate,
        ..StorageConfig::default()
    };
    let probe = contend(cfg, RetryConfig::default(), 1, 0, 300);
    assert!(
        probe.syncs.unwrap() >= 2 * probe.writes_ok,
        "{}",
        probe.summary()
    );
}

#[test]
fn settings_that_cannot_work_are_refused_by_name() {
    let (_dir, path) = temp_db();
    let split_of_one = StorageConfig {
        pool_layout: PoolLayout::Split,
        pool_size: 1,
        ..StorageConfig::default()
    };
    let err = Store::open(&path, &split_of_one, &RetryPlan::default()).unwrap_err();
    assert!(err.to_string().contains("pool_layout"), "{err}");

    let err = Store::open(
        std::path::Path::new("/nonexistent-lockbench-dir/x.db"),
        &StorageConfig::default(),
        &RetryPlan::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent-lockbench-dir"),
        "{err}"
    );

    // A database kept in WAL by an open connection cannot be switched back to the rollback
    // journal: the store says so instead of running in a mode nobody asked for. SQLite
    // answers SQLITE_BUSY (leaving WAL needs the database to itself), and that stays a lock
    // error, naming the setting, so that a worker waits it out as it waits out any lock.
    let wal = storage(JournalMode::Wal, TxMode::Deferred);
    let holder = Store::open(&path, &wal, &RetryPlan::default()).expect("open wal");
    let err = Store::open(
        &path,
        &storage(JournalMode::Delete, TxMode::Deferred),
        &RetryPlan::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("journal_mode"), "{err}");
    assert!(
        matches!(&err, lockbench_server::storage::OpenError::Open { source, .. } if source.lock_code() == Some(LockCode::Busy)),
        "{err:?}"
    );
    drop(holder);

    let err =
        toml::from_str::<StorageConfig>("journal_mode = \"wal\"\nbusy_timeout = 5\n").unwrap_err();
    assert!(err.to_string().contains("busy_timeout"), "{err}");
    let err = toml::from_str::<StorageConfig>("journal_mode = \"wall\"\n").unwrap_err();
    assert!(err.to_string().contains("wall"), "{err}");
}

#[test]
fn migrations_create_the_app_schema_for_both_drivers_and_keep_committed_data() {
    let (_dir, path) = temp_db();
    let rusqlite_cfg = StorageConfig::default();
    let store = Store::open(&path, &rusqlite_cfg, &RetryPlan::default()).expect("open");
    let id = store
        .write("register", |tx| {
            tx.insert(
                "INSERT INTO registrations (name, email, qr_payload) VALUES (?1, ?2, ?3)",
                &["Ada".into(), "ada@example.org".into(), "reg:1".into()],
            )
        })
        .expect("insert");
    drop(store);
    // Reopening with the other driver runs the same migrations (already applied) and sees the row.
    let sqlx_cfg = StorageConfig {
        driver: Driver::Sqlx,
        ..StorageConfig::default()
    };
    let store = Store::open(&path, &sqlx_cfg, &RetryPlan::default()).expect("reopen");
    let rows = store
        .read("list", |tx| {
            tx.query(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
                &[],
            )
        })
        .expect("tables");
    let tables: Vec<&str> = rows.iter().filter_map(|r| r[0].as_str()).collect();
    assert_eq!(
        tables,
        vec![
            "batches",
            "persons",
            "photos",
            "processing_log",
            "registrations"
        ]
    );
    let name = store
        .read("get", |tx| {
            tx.query(
                "SELECT name FROM registrations WHERE id = ?1",
                &[Value::Int(id)],
            )
        })
        .expect("row");
    assert_eq!(name[0][0], Value::Text("Ada".into()));
}

/// Runs `f` while the store's one open connection is lent to another thread (so the next
/// unit of work makes its pool open and configure a new connection) and another connection
/// holds the database's exclusive lock for `hold` (a rollback journal: nobody can read).
fn while_a_new_connection_meets_a_lock<T>(
    store: &Store,
    path: &Path,
    hold: Duration,
    f: impl FnOnce() -> T,
) -> T {
    let (lent_tx, lent) = mpsc::channel::<()>();
    let (release_tx, release) = mpsc::channel::<()>();
    let lender = store.clone();
    let lend = std::thread::spawn(move || {
        // BEGIN DEFERRED takes no lock: the connection is only kept from the pool.
        lender.read("lend", |_tx| {
            let _ = lent_tx.send(());
            let _ = release.recv_timeout(Duration::from_secs(30));
            Ok(())
        })
    });
    lent.recv().expect("connection lent");
    let (held_tx, held) = mpsc::channel::<()>();
    let path = path.to_path_buf();
    let holder = std::thread::spawn(move || {
        hold_write_lock(&path, hold, Duration::from_secs(5), |_| {
            let _ = held_tx.send(());
        })
    });
    held.recv().expect("exclusive lock taken");
    let out = f();
    let _ = release_tx.send(());
    lend.join().expect("lender").expect("lend");
    holder.join().expect("holder").expect("hold");
    out
}

fn insert_registration(store: &Store, op: &str) -> Result<i64, DbError> {
    store.write(op, |tx| {
        tx.insert(
            "INSERT INTO registrations (name, email, qr_payload) VALUES ('Ada', 'ada@example.org', ?1)",
            &[Value::from(format!("reg:{op}:{}", std::process::id()))],
        )
    })
}

#[test]
fn a_lock_met_while_a_pooled_connection_is_configured_is_the_units_lock_error_counted_and_retried()
{
    let (_dir, path) = temp_db();
    let cfg = StorageConfig {
        busy_timeout_ms: 100,
        ..StorageConfig::default()
    };
    // No retries: the unit fails with the lock error, under its own op, and it is counted.
    let store = Store::open(&path, &cfg, &RetryPlan::default()).expect("open");
    let err =
        while_a_new_connection_meets_a_lock(&store, &path, Duration::from_millis(800), || {
            insert_registration(&store, "register")
        })
        .expect_err("the new connection cannot be configured while the database is locked");
    assert!(
        matches!(
            &err,
            DbError::Lock {
                code: LockCode::Busy,
                extended: 5,
                op,
                ..
            } if op == "register"
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "lock error SQLITE_BUSY in register");
    let s = &store.stats().snapshot()["register"];
    assert_eq!(s.lock_errors.get(&LockCode::Busy), Some(&1), "{s:?}");
    assert_eq!((s.ok, s.failed_locked, s.failed_other), (0, 1, 0), "{s:?}");

    // A unit-of-work retry policy retries it like any other lock error: the unit succeeds
    // once the lock is gone, each try's lock error counted, each new try a retry.
    let retry = RetryConfig {
        retry: RetryKind::Fixed,
        retry_attempts: 100,
        retry_delay_ms: 20,
        ..RetryConfig::default()
    };
    let store = Store::open(&path, &cfg, &retry.plan().unwrap()).expect("open");
    let id = while_a_new_connection_meets_a_lock(&store, &path, Duration::from_millis(600), || {
        insert_registration(&store, "register")
    })
    .expect("retried until the lock went");
    assert!(id > 0);
    let s = &store.stats().snapshot()["register"];
    assert!(s.lock_errors_total() >= 1, "{s:?}");
    assert_eq!(s.retries, s.lock_errors_total(), "{s:?}");
    assert_eq!((s.ok, s.failed_locked, s.failed_other), (1, 0, 0), "{s:?}");

    // A checkpoint's lock error is counted under "checkpoint".
    let store = Store::open(&path, &cfg, &RetryPlan::default()).expect("open");
    let err =
        while_a_new_connection_meets_a_lock(&store, &path, Duration::from_millis(500), || {
            store.checkpoint_passive()
        })
        .expect_err("locked");
    assert_eq!(err.lock_code(), Some(LockCode::Busy), "{err:?}");
    assert_eq!(err.op(), "checkpoint");
    let s = &store.stats().snapshot()["checkpoint"];
    assert_eq!(s.lock_errors.get(&LockCode::Busy), Some(&1), "{s:?}");
    assert_eq!(s.failed_locked, 1, "{s:?}");
}

#[test]
fn a_patient_write_counts_each_lock_error_once_each_new_try_as_a_retry_and_the_unit_once() {
    for scope in [RetryScope::UnitOfWork, RetryScope::CommitOnly] {
        let (_dir, path) = temp_db();
        let cfg = StorageConfig {
            busy_timeout_ms: 50,
            tx_mode: TxMode::Immediate,
            ..StorageConfig::default()
        };
        let retry = RetryConfig {
            retry_scope: scope,
            ..RetryConfig::default()
        };
        let store = Store::open(&path, &cfg, &retry.plan().unwrap()).expect("open");
        let hold_for = |ms: u64| {
            let (held_tx, held) = mpsc::channel::<()>();
            let path = path.clone();
            let t = std::thread::spawn(move || {
                hold_write_lock(
                    &path,
                    Duration::from_millis(ms),
                    Duration::from_secs(5),
                    |_| {
                        let _ = held_tx.send(());
                    },
                )
            });
            held.recv().expect("lock taken");
            t
        };
        let write = |op: &str, patience_ms: u64| {
            store.write_patiently(op, Duration::from_millis(patience_ms), |tx| {
                tx.insert(
                    "INSERT INTO processing_log (action, detail) VALUES (?1, 'x')",
                    &[Value::from(op)],
                )
            })
        };

        // The lock lasts part of the patience: the write succeeds and is one ok unit.
        let holder = hold_for(700);
        write("patient", 10_000).expect("succeeds once the lock is gone");
        holder.join().unwrap().unwrap();
        let s = &store.stats().snapshot()["patient"];
        assert!(s.lock_errors_total() >= 2, "{scope:?}: {s:?}");
        assert_eq!(s.retries, s.lock_errors_total(), "{scope:?}: {s:?}");
        assert_eq!(
            (s.ok, s.failed_locked, s.failed_other, s.commit_only_dropped),
            (1, 0, 0, 0),
            "{scope:?}: a step that succeeded is not counted as failed: {s:?}"
        );

        // The lock outlasts the patience: one failed unit; every lock error but the last was
        // followed by another try.
        let holder = hold_for(1500);
        let err = write("impatient", 300).expect_err("the lock outlasts the patience");
        holder.join().unwrap().unwrap();
        assert_eq!(err.lock_code(), Some(LockCode::Busy), "{err:?}");
        let s = &store.stats().snapshot()["impatient"];
        assert!(s.lock_errors_total() >= 2, "{scope:?}: {s:?}");
        assert_eq!(s.retries, s.lock_errors_total() - 1, "{scope:?}: {s:?}");
        assert_eq!((s.ok, s.failed_locked), (0, 1), "{scope:?}: {s:?}");

        let rows = store
            .read("rows", |tx| {
                tx.query("SELECT action FROM processing_log ORDER BY id", &[])
            })
            .unwrap();
        assert_eq!(rows, vec![vec![Value::from("patient")]], "{scope:?}");
    }
}
