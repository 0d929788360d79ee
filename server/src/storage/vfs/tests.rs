//! Tests of the sync-delay VFS: registration, delayed fsyncs and the control of the delay.

use super::*;

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Instant;

// Sync counters are per delay and tests run in parallel, so every test
// uses its own delay (a few microseconds is effectively "no delay").

fn open(path: &Path, vfs: &str) -> Connection {
    Connection::open_with_flags_and_vfs(path, OpenFlags::default(), vfs).expect("open via shim")
}

/// Opens `path` via `vfs`, sets the journal and sync modes, creates a
/// table and commits one row (so a WAL file already has its header).
fn setup(path: &Path, vfs: &str, journal_mode: &str, synchronous: &str) -> Connection {
    let conn = open(path, vfs);
    let mode: String = conn
        .query_row(&format!("PRAGMA journal_mode={journal_mode}"), [], |row| {
            row.get(0)
        })
        .expect("set journal_mode");
    assert_eq!(mode, journal_mode.to_lowercase());
    conn.execute_batch(&format!(
        "PRAGMA synchronous={synchronous};
         CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
         INSERT INTO t(v) VALUES (randomblob(16));"
    ))
    .expect("setup");
    conn
}

fn commit_one(conn: &Connection) {
    conn.execute_batch("BEGIN; INSERT INTO t(v) VALUES (randomblob(16)); COMMIT;")
        .expect("commit");
}

/// Sync calls made by one small committed INSERT.
fn syncs_per_commit(delay: Duration, conn: &Connection) -> u64 {
    let before = sync_calls(delay);
    commit_one(conn);
    sync_calls(delay) - before
}

fn count(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .expect("count")
}

#[test]
fn delete_full_commit_syncs_through_shim() {
    let delay = Duration::from_micros(11);
    let vfs = delay_vfs(delay).expect("register");
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = setup(&dir.path().join("db.sqlite"), vfs, "DELETE", "FULL");
    let syncs = syncs_per_commit(delay, &conn);
    println!("DELETE/FULL: {syncs} xSync calls per commit");
    assert!(syncs >= 2, "DELETE/FULL commit made {syncs} syncs");
    assert_eq!(count(&conn), 2);
}

#[test]
fn wal_full_commit_syncs_once_or_more() {
    let delay = Duration::from_micros(12);
    let vfs = delay_vfs(delay).expect("register");
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = setup(&dir.path().join("db.sqlite"), vfs, "WAL", "FULL");
    let syncs = syncs_per_commit(delay, &conn);
    println!("WAL/FULL: {syncs} xSync calls per commit");
    assert!(syncs >= 1, "WAL/FULL commit made {syncs} syncs");
}

#[test]
fn wal_normal_commit_does_not_sync() {
    let delay = Duration::from_micros(13);
    let vfs = delay_vfs(delay).expect("register");
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = setup(&dir.path().join("db.sqlite"), vfs, "WAL", "NORMAL");
    let syncs = syncs_per_commit(delay, &conn);
    println!("WAL/NORMAL: {syncs} xSync calls per commit");
    assert_eq!(syncs, 0, "WAL/NORMAL commit made {syncs} syncs");
}

#[test]
fn sync_delay_slows_commit() {
    let delay = Duration::from_millis(20);
    let vfs = delay_vfs(delay).expect("register");
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = setup(&dir.path().join("db.sqlite"), vfs, "DELETE", "FULL");
    let before = sync_calls(delay);
    let start = Instant::now();
    commit_one(&conn);
    let elapsed = start.elapsed();
    let syncs = sync_calls(delay) - before;
    println!("DELETE/FULL with 20ms sync delay: {syncs} syncs, commit took {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(40),
        "commit took only {elapsed:?}"
    );
}

#[test]
fn registration_is_idempotent() {
    let delay = Duration::from_micros(14);
    assert_eq!(sync_calls(delay), 0);
    let first = delay_vfs(delay).expect("register");
    let second = delay_vfs(delay).expect("register again");
    assert_eq!(first, second);
    assert!(ptr::eq(first, second));
    assert_eq!(first, "lockbench-delay-14us");
    // Sub-microsecond differences map to the same VFS.
    assert_eq!(delay_vfs(delay + Duration::from_nanos(999)).unwrap(), first);

    let handles: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(|| delay_vfs(Duration::from_micros(15)).unwrap()))
        .collect();
    let names: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(names.iter().all(|n| *n == "lockbench-delay-15us"));

    // Registered, but not as the default VFS.
    let c_name = std::ffi::CString::new(first).unwrap();
    // SAFETY: both arguments are valid (NUL-terminated name / NULL).
    let (ours, default) = unsafe {
        (
            ffi::sqlite3_vfs_find(c_name.as_ptr()),
            ffi::sqlite3_vfs_find(ptr::null()),
        )
    };
    assert!(!ours.is_null());
    assert_ne!(ours, default);
}

#[test]
fn wal_reader_and_writer_through_shim() {
    let delay = Duration::from_micros(16);
    let vfs = delay_vfs(delay).expect("register");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db.sqlite");
    let writer = setup(&path, vfs, "WAL", "FULL");
    let reader = open(&path, vfs);
    assert!(path.with_extension("sqlite-wal").exists());
    assert!(path.with_extension("sqlite-shm").exists());

    // The reader holds a snapshot while the writer commits.
    reader.execute_batch("BEGIN").unwrap();
    assert_eq!(count(&reader), 1);
    commit_one(&writer);
    commit_one(&writer);
    assert_eq!(count(&writer), 3);
    assert_eq!(count(&reader), 1, "reader keeps its snapshot");
    reader.execute_batch("COMMIT").unwrap();
    assert_eq!(count(&reader), 3, "reader sees the new commits");

    // And concurrently, from two threads.
    let reader_thread = std::thread::spawn({
        let path = path.clone();
        move || {
            let conn = open(&path, vfs);
            let mut last = 0;
            for _ in 0..50 {
                let n = count(&conn);
                assert!(n >= last);
                last = n;
            }
            last
        }
    });
    for _ in 0..20 {
        commit_one(&writer);
    }
    assert!(reader_thread.join().unwrap() >= 3);
    assert_eq!(count(&reader), 23);
    assert!(sync_calls(delay) > 0);
}
