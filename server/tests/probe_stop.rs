//! `lockbench contend`'s probe stops cleanly when asked (Ctrl-C sets its stop flag): the
//! figures measured so far come back marked `interrupted`, and the database it created is
//! gone. Probes that would measure nothing or cannot run are refused by flag before anything
//! starts.
//!
//! The probe creates its database in the process's temporary folder; this test binary points
//! that folder (TMPDIR) at a folder of its own under cargo's target tmp folder, once, before
//! any test runs, so it can see what the probe leaves there.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lockbench_server::probe::{self, ProbeConfig};
use lockbench_server::storage::{JournalMode, StorageConfig, TxMode};

/// This binary's temporary folder (TMPDIR), made once.
fn tmp() -> &'static PathBuf {
    static TMP: OnceLock<PathBuf> = OnceLock::new();
    TMP.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("probe-stop-{}", std::process::id()));
        // The refusal test's own folder, made now so the other test sees it in its "before".
        std::fs::create_dir_all(dir.join("refused")).unwrap();
        std::env::set_var("TMPDIR", &dir);
        assert_eq!(std::env::temp_dir(), dir);
        dir
    })
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn probes_that_measure_nothing_or_cannot_run_are_refused_by_flag_before_anything_starts() {
    let dir = tmp().join("refused");
    let db = dir.join("mine.db");
    let base = ProbeConfig {
        duration: Duration::from_millis(500),
        db: Some(db.clone()),
        ..ProbeConfig::default()
    };
    for (config, flag) in [
        (
            ProbeConfig {
                writers: 0,
                readers: 0,
                ..base.clone()
            },
            "--writers/--readers",
        ),
        (
            ProbeConfig {
                duration: Duration::ZERO,
                ..base.clone()
            },
            "--duration",
        ),
        (
            ProbeConfig {
                duration: Duration::from_millis(99),
                ..base.clone()
            },
            "--duration",
        ),
        (
            ProbeConfig {
                writers: 100_000,
                ..base.clone()
            },
            "--writers",
        ),
        (
            ProbeConfig {
                readers: 1001,
                ..base.clone()
            },
            "--readers",
        ),
    ] {
        let started = Instant::now();
        let err = probe::run(&config).expect_err(flag).to_string();
        assert!(err.contains(flag), "{flag}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{flag}: refused at once"
        );
        assert!(!db.exists(), "{flag}: nothing was created");
    }
    // At the limits the probe runs: one writer alone, the shortest duration.
    let report = probe::run(&ProbeConfig {
        writers: 1,
        readers: 0,
        duration: Duration::from_millis(100),
        ..base
    })
    .expect("one writer for 100 ms");
    assert!(report.writes_ok > 0, "{}", report.summary());
    assert!(!report.interrupted);
    assert!(db.exists(), "the user's own database is left in place");
}

#[test]
fn a_stopped_probe_reports_what_it_measured_and_removes_the_database_it_created() {
    let tmp = tmp();
    let before = entries(tmp);
    let config = ProbeConfig {
        storage: StorageConfig {
            journal_mode: JournalMode::Wal,
            tx_mode: TxMode::Immediate,
            ..StorageConfig::default()
        },
        writers: 2,
        readers: 2,
        duration: Duration::from_secs(600),
        ..ProbeConfig::default()
    };
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let report = std::thread::scope(|s| {
        let probe = s.spawn(|| probe::run_until(&config, &stop));
        // The probe's folder and database exist while it runs.
        let seen = loop {
            let now: Vec<String> = entries(tmp)
                .into_iter()
                .filter(|e| !before.contains(e))
                .collect();
            if !now.is_empty() || started.elapsed() > Duration::from_secs(20) {
                break now;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        std::thread::sleep(Duration::from_millis(400));
        stop.store(true, Ordering::SeqCst);
        let report = probe.join().expect("probe thread").expect("probe");
        assert!(
            !seen.is_empty(),
            "the probe's temporary folder was never seen"
        );
        report
    });
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped long before its 600 s"
    );
    assert!(report.interrupted, "{}", report.summary());
    assert!(
        report.summary().contains("interrupted after"),
        "{}",
        report.summary()
    );
    assert!(
        report.writes_ok > 0 && report.reads_ok > 0,
        "{}",
        report.summary()
    );
    assert!(report.elapsed_s < 20.0);
    // The figures are whole: the audit ran on what was written.
    assert_eq!(report.lost_writes, 0, "{}", report.summary());
    assert_eq!(report.counter, report.counter_rows);
    assert_eq!(report.counter as u64, report.writes_ok);
    assert_eq!(entries(tmp), before, "the probe's database is gone");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["interrupted"], true);
}
