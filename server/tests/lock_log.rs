//! One log line per counted lock error: under real contention (rollback-journal writers and
//! readers with a short busy timeout, and the app answering a request while its new pooled
//! connection meets a lock), the lines of the log that contain "database is locked" are as
//! many as the lock errors the stores counted, and each carries op, code and retried.
//!
//! The log is captured by a small subscriber that keeps WARN and ERROR events (the server
//! runs with `LOCKBENCH_LOG=warn`) as text lines, message first, then every field, the way
//! the binary's formatter writes them. It is the process's global subscriber, so this file
//! holds a single test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use lockbench_server::app::{self, AppState};
use lockbench_server::probe::{self, ProbeConfig};
use lockbench_server::processor::ProcessorConfig;
use lockbench_server::storage::stats::LOCK_LOG_PHRASE;
use lockbench_server::storage::{
    JournalMode, RetryConfig, RetryKind, RetryPlan, StorageConfig, Store, TxMode,
};
use tower::ServiceExt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Keeps every WARN and ERROR event as one text line.
struct Capture {
    lines: Arc<Mutex<Vec<String>>>,
    next_span: AtomicU64,
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.push_str(&format!(" {value:?}"));
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(&format!(" {value}"));
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // More verbose levels compare greater: WARN and ERROR only.
        *metadata.level() <= Level::WARN
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut line = Line(format!("{} {}:", meta.level(), meta.target()));
        event.record(&mut line);
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line.0);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

fn lock_lines(lines: &Mutex<Vec<String>>) -> Vec<String> {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(LOCK_LOG_PHRASE))
        .cloned()
        .collect()
}

#[test]
fn every_counted_lock_error_is_one_log_line_and_no_other_line_has_the_phrase() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::set_global_default(Capture {
        lines: lines.clone(),
        next_span: AtomicU64::new(0),
    })
    .expect("the only subscriber of this test binary");

    // Contention: rollback journal, deferred transactions, a short busy timeout and a retry
    // policy, so that some lock errors are retried and some reach the caller.
    let dir = tempfile::tempdir().unwrap();
    let config = ProbeConfig {
        storage: StorageConfig {
            journal_mode: JournalMode::Delete,
            tx_mode: TxMode::Deferred,
            busy_timeout_ms: 20,
            ..StorageConfig::default()
        },
        retry: RetryConfig {
            retry: RetryKind::Fixed,
            retry_attempts: 2,
            retry_delay_ms: 1,
            ..RetryConfig::default()
        },
        writers: 6,
        readers: 3,
        duration: Duration::from_millis(1500),
        db: Some(dir.path().join("probe.db")),
        ..ProbeConfig::default()
    };
    let report = probe::run(&config).expect("probe runs");
    let probe_lines = lock_lines(&lines);
    assert!(report.lock_errors.total > 0, "{}", report.summary());
    assert_eq!(
        probe_lines.len() as u64,
        report.lock_errors.total,
        "{}",
        report.summary()
    );
    let retried = probe_lines
        .iter()
        .filter(|l| l.contains("retried=true"))
        .count() as u64;
    assert_eq!(retried, report.retries, "{}", report.summary());
    for line in &probe_lines {
        assert!(line.starts_with("WARN "), "{line}");
        assert!(line.contains(" op="), "{line}");
        assert!(line.contains(" code=\"SQLITE_BUSY"), "{line}");
        assert!(line.contains(" retried="), "{line}");
        // What the next try re-runs, and how long the failed try ran (doctor reads both).
        assert!(
            line.contains(" retry=\"unit of work\"") || line.contains(" retry=\"none\""),
            "{line}"
        );
        assert!(line.contains(" try_ms="), "{line}");
    }

    // The app: a request whose new pooled connection meets a lock while it is configured is
    // answered 503; the lock error is counted once and logged once (the 503's own failure
    // line and the error's display do not repeat the phrase).
    let root = dir.path().join("app");
    std::fs::create_dir_all(&root).unwrap();
    let db = root.join("app.db");
    let storage = StorageConfig {
        busy_timeout_ms: 100,
        ..StorageConfig::default()
    };
    let store = Store::open(&db, &storage, &RetryPlan::default()).unwrap();
    let router = app::router(AppState::new(
        store.clone(),
        0,
        "token",
        ProcessorConfig::default(),
        RetryConfig::default(),
        root.join("data"),
    ));
    let (lent_tx, lent) = mpsc::channel::<()>();
    let (release_tx, release) = mpsc::channel::<()>();
    let lender = store.clone();
    let lend = std::thread::spawn(move || {
        lender.read("lend", |_tx| {
            let _ = lent_tx.send(());
            let _ = release.recv_timeout(Duration::from_secs(30));
            Ok(())
        })
    });
    lent.recv().unwrap();
    let (held_tx, held) = mpsc::channel::<()>();
    let db2 = db.clone();
    let holder = std::thread::spawn(move || {
        lockbench_server::storage::hold::hold_write_lock(
            &db2,
            Duration::from_millis(800),
            Duration::from_secs(5),
            |_| {
                let _ = held_tx.send(());
            },
        )
    });
    held.recv().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        let req = Request::builder()
            .method("POST")
            .uri("/api/registrations")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"name":"Ada","email":"ada@example.org"}"#))
            .unwrap();
        router.oneshot(req).await.unwrap().status()
    });
    let _ = release_tx.send(());
    lend.join().unwrap().unwrap();
    holder.join().unwrap().unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(store.stats().lock_errors_total(), 1);
    let all = lock_lines(&lines);
    assert_eq!(
        all.len() as u64,
        report.lock_errors.total + store.stats().lock_errors_total(),
        "{all:#?}"
    );
    let last = all.last().unwrap();
    assert!(
        last.contains("op=register") && last.contains("retried=false"),
        "{last}"
    );
    // The request's failure was logged too, without the phrase.
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("503") && !l.contains(LOCK_LOG_PHRASE)),
        "{:#?}",
        lines.lock().unwrap()
    );
}
