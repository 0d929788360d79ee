//! The slow-disk override (`vfs::set_sync_delay_override`), on a real store. The override and
//! `require_delay_vfs` are process-wide, so this file is its own test binary and holds one
//! test: nothing else in this process opens a store.

use std::time::Duration;

use lockbench_server::storage::{
    vfs, JournalMode, RetryPlan, StorageConfig, Store, Synchronous, TxMode,
};

/// (syncs, slept) of the 0-delay VFS.
fn counters() -> (u64, Duration) {
    (
        vfs::sync_calls(Duration::ZERO),
        vfs::sync_delay_slept(Duration::ZERO),
    )
}

fn commit(store: &Store, n: i64) {
    store
        .write("commit", |tx| {
            tx.insert(
                "INSERT INTO processing_log (action, detail) VALUES ('test', ?1)",
                &[n.to_string().into()],
            )
        })
        .expect("commit");
}

#[test]
fn the_override_reaches_a_store_at_zero_delay_is_applied_to_every_sync_and_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig {
        journal_mode: JournalMode::Delete,
        synchronous: Synchronous::Full,
        tx_mode: TxMode::Immediate,
        sync_delay_ms: 0,
        ..StorageConfig::default()
    };

    // Without require_delay_vfs, a 0 delay means SQLite's default VFS: no override can reach it.
    assert!(!vfs::delay_vfs_required());
    let plain =
        Store::open(&dir.path().join("plain.db"), &config, &RetryPlan::default()).expect("open");
    assert!(plain
        .effective_settings()
        .iter()
        .all(|c| c.vfs == "default"));
    drop(plain);

    vfs::require_delay_vfs();
    assert!(vfs::delay_vfs_required());
    let store =
        Store::open(&dir.path().join("app.db"), &config, &RetryPlan::default()).expect("open");
    let vfs_names: Vec<String> = store
        .effective_settings()
        .iter()
        .map(|c| c.vfs.clone())
        .collect();
    assert_eq!(vfs_names, ["lockbench-delay-0us"]);

    // No override: the VFS's own delay (0) applies; syncs are counted, nothing is slept.
    assert_eq!(vfs::sync_delay_override(), None);
    let (syncs0, slept0) = counters();
    commit(&store, 1);
    let (syncs1, slept1) = counters();
    assert!(
        syncs1 - syncs0 >= 2,
        "a DELETE/FULL commit syncs the journal and the database"
    );
    assert_eq!(slept1, slept0);

    // Override on: every sync asks for exactly the override.
    vfs::set_sync_delay_override(Some(Duration::from_millis(3)));
    assert_eq!(vfs::sync_delay_override(), Some(Duration::from_millis(3)));
    for n in 0..3 {
        commit(&store, 10 + n);
    }
    let (syncs2, slept2) = counters();
    let synced = syncs2 - syncs1;
    assert!(synced >= 6, "{synced} syncs for 3 commits");
    assert_eq!(
        slept2 - slept1,
        Duration::from_millis(3) * u32::try_from(synced).unwrap(),
        "each of the {synced} syncs slept the override"
    );

    // Cleared: back to the configured delay.
    vfs::set_sync_delay_override(None);
    assert_eq!(vfs::sync_delay_override(), None);
    commit(&store, 20);
    let (syncs3, slept3) = counters();
    assert!(syncs3 > syncs2);
    assert_eq!(slept3, slept2, "no sleep once the override is cleared");

    // A configured delay is what the VFS sleeps without an override, and an override of 0
    // switches it off.
    let slow = StorageConfig {
        sync_delay_ms: 2,
        ..config
    };
    let two = Duration::from_millis(2);
    let store2 =
        Store::open(&dir.path().join("slow.db"), &slow, &RetryPlan::default()).expect("open slow");
    let (s0, z0) = (vfs::sync_calls(two), vfs::sync_delay_slept(two));
    commit(&store2, 30);
    let (s1, z1) = (vfs::sync_calls(two), vfs::sync_delay_slept(two));
    assert_eq!(z1 - z0, two * u32::try_from(s1 - s0).unwrap());
    vfs::set_sync_delay_override(Some(Duration::ZERO));
    commit(&store2, 31);
    let (s2, z2) = (vfs::sync_calls(two), vfs::sync_delay_slept(two));
    assert!(s2 > s1);
    assert_eq!(z2, z1, "an override of 0 ms sleeps nothing");
    vfs::set_sync_delay_override(None);
}
