//! Batches as the admin and the dashboard see them: a batch processed exactly as its
//! manifest says, posted again without changing anything, left to the processor that holds
//! its claim and taken over when that one died; a restarted worker's counters going on from
//! its predecessor's; a batch followed through /api/stats alone. Through the real Router
//! with `oneshot`, on real database files and generated photo batches.

mod support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use lockbench_server::app;
use lockbench_server::photos::FileKind;
use lockbench_server::storage::{JournalMode, StorageConfig, Store, TxMode, Value};
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_processed_exactly_as_the_manifest_says_and_a_second_post_changes_nothing() {
    let f = fixture(StorageConfig {
        journal_mode: JournalMode::Wal,
        tx_mode: TxMode::Immediate,
        ..StorageConfig::default()
    });
    let (dir, manifest) = batch(&f.root, 120, 8, 3);
    register_all(&f.router, &manifest).await;

    let body = json!({"dir": dir}).to_string();
    let r = call(&f.router, "POST", "/api/batches", Some(&body), Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let batch_id = r.body["batch_id"].as_i64().expect("batch id");
    assert_eq!(r.body["photos"], 123);
    let status = wait_done(&f.router, batch_id).await;
    assert_eq!(status["total"], 123);
    assert_eq!(status["processed"], 123);
    assert_eq!(status["failed"], 3);
    assert_eq!(status["persons"], 8);
    assert_eq!(status["uploaded"], 8);

    // Every photo of the manifest is recorded once, with the right person or as failed.
    let rows = f
        .store
        .read("audit", |tx| {
            tx.query(
                "SELECT ph.file_name, ph.status, p.qr_payload, ph.content_hash, ph.error \
                 FROM photos ph LEFT JOIN persons p ON p.id = ph.person_id ORDER BY ph.file_name",
                &[],
            )
        })
        .expect("photos");
    assert_eq!(rows.len(), manifest.files.len());
    for (file, row) in manifest.files.iter().zip(&rows) {
        assert_eq!(row[0].as_str(), Some(file.name.as_str()));
        match file.kind {
            FileKind::Corrupt => {
                assert_eq!(row[1].as_str(), Some("failed"), "{}", file.name);
                assert!(
                    row[4].as_str().is_some_and(|e| !e.is_empty()),
                    "{}: reason",
                    file.name
                );
            }
            FileKind::Qr | FileKind::Photo => {
                let person = &manifest.people[file.person.expect("person")];
                assert_eq!(
                    row[2].as_str(),
                    Some(person.qr_payload.as_str()),
                    "{}",
                    file.name
                );
                assert_eq!(
                    row[3].as_str(),
                    Some(file.content_hash.as_str()),
                    "{}",
                    file.name
                );
                let expected = if file.kind == FileKind::Qr {
                    "qr"
                } else {
                    "assigned"
                };
                assert_eq!(row[1].as_str(), Some(expected), "{}", file.name);
            }
        }
    }
    // Each person's folder was saved and uploaded, with its metadata.
    for person in &manifest.people {
        let folder: String = f
            .store
            .read("folder", |tx| {
                let rows = tx.query(
                    "SELECT folder FROM persons WHERE qr_payload = ?1",
                    &[Value::from(person.qr_payload.as_str())],
                )?;
                Ok(rows[0][0].as_str().unwrap_or_default().to_owned())
            })
            .expect("folder");
        let uploaded = f.root.join("data/uploads").join(&folder);
        for photo in &person.photos {
            assert!(
                uploaded.join(photo).is_file(),
                "{} missing from {}",
                photo,
                uploaded.display()
            );
        }
        assert!(uploaded.join("metadata.json").is_file());
    }

    let before = counts(&f.store);
    let r = call(&f.router, "POST", "/api/batches", Some(&body), Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(
        r.body["batch_id"], batch_id,
        "the same folder is the same batch"
    );
    wait_done(&f.router, batch_id).await;
    assert_eq!(
        counts(&f.store),
        before,
        "posting the same batch again changes no counts"
    );
}

fn batch_status_of(store: &Store, id: i64) -> String {
    store
        .read("status", |tx| {
            let rows = tx.query(
                "SELECT status FROM batches WHERE id = ?1",
                &[Value::Int(id)],
            )?;
            Ok(rows[0][0].as_str().unwrap_or_default().to_owned())
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_leaves_a_batch_to_the_processor_holding_it_and_takes_over_an_abandoned_one() {
    let f = fixture(StorageConfig {
        journal_mode: JournalMode::Wal,
        tx_mode: TxMode::Immediate,
        ..StorageConfig::default()
    });
    let (dir, manifest) = batch(&f.root, 12, 2, 1);
    register_all(&f.router, &manifest).await;
    let body = json!({"dir": dir}).to_string();
    let r = call(&f.router, "POST", "/api/batches", Some(&body), Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["already_running"], false);
    let batch_id = r.body["batch_id"].as_i64().unwrap();
    wait_done(&f.router, batch_id).await;
    let before = counts(&f.store);

    // Another worker's processor holds the batch (its claim is the lock on this file; a
    // second open file description conflicts just as another process does). Waiting for
    // the lock also waits for this worker's own processor to let go of it.
    let claim_path = f.root.join(format!("data/batches/{batch_id}.lock"));
    let claim = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::options()
            .write(true)
            .open(claim_path)
            .expect("the claim file of a batch that ran");
        file.lock().expect("lock");
        file
    })
    .await
    .unwrap();
    for _ in 0..3 {
        let r = call(&f.router, "POST", "/api/batches", Some(&body), Some(TOKEN)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        assert_eq!(r.body["batch_id"], batch_id);
        assert_eq!(r.body["already_running"], true, "{}", r.text);
        assert_eq!(
            batch_status_of(&f.store, batch_id),
            "done",
            "a POST that does not process the batch leaves its status alone"
        );
    }

    // The holder died, leaving the batch `running` (its lock went with it): the next POST
    // takes it over and its processor finishes it.
    f.store
        .write("crash", |tx| {
            tx.execute(
                "UPDATE batches SET status = 'running', finished_at = NULL WHERE id = ?1",
                &[Value::Int(batch_id)],
            )
        })
        .unwrap();
    drop(claim);
    let r = call(&f.router, "POST", "/api/batches", Some(&body), Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["already_running"], false, "{}", r.text);
    wait_done(&f.router, batch_id).await;
    wait_idle(&f.router).await;
    assert_eq!(batch_status_of(&f.store, batch_id), "done");
    assert_eq!(counts(&f.store), before, "nothing recorded twice");
}

/// The lines of /metrics that are the processor's and the checkpoints' counters.
async fn processor_lines(router: &Router) -> Vec<String> {
    call(router, "GET", "/metrics", None, None)
        .await
        .text
        .lines()
        .filter(|l| {
            l.starts_with("lockbench_processor_total{")
                || l.starts_with("lockbench_checkpoints_total{")
                || l.starts_with("lockbench_batch_processor_finished{")
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_goes_on_from_its_predecessors_processor_counters_and_finished_batches()
{
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let events = root.join("worker-0.events");
    let storage = StorageConfig {
        journal_mode: JournalMode::Wal,
        tx_mode: TxMode::Immediate,
        ..StorageConfig::default()
    };
    let (photos_dir, manifest) = batch(root, 10, 2, 1);
    let first = app::router(journaled_state(root, &storage, &events));
    register_all(&first, &manifest).await;
    let body = json!({"dir": photos_dir}).to_string();
    let r = call(&first, "POST", "/api/batches", Some(&body), Some(TOKEN)).await;
    let batch_id = r.body["batch_id"].as_i64().expect("batch id");
    wait_done(&first, batch_id).await;
    wait_idle(&first).await;
    let before = call(&first, "GET", "/api/stats", None, None).await.body;
    let lines_before = processor_lines(&first).await;
    assert_eq!(before["batches_finished"], json!([batch_id]));
    assert!(
        before["checkpoints_ok"].as_u64().unwrap() + before["checkpoints_busy"].as_u64().unwrap()
            >= 2,
        "a checkpoint after each person in WAL mode: {before}"
    );
    assert!(
        lines_before.contains(
            &r#"lockbench_processor_total{worker="0",what="photos_processed"} 10"#.to_owned()
        ),
        "{lines_before:#?}"
    );
    assert!(
        lines_before.contains(
            &r#"lockbench_processor_total{worker="0",what="photos_failed"} 1"#.to_owned()
        ),
        "{lines_before:#?}"
    );
    // The worker goes away (as after a SIGKILL, nothing is flushed on the way out: every
    // count was written when it was made) and its successor replays the events file.
    drop(first);
    let second = app::router(journaled_state(root, &storage, &events));
    let after = call(&second, "GET", "/api/stats", None, None).await.body;
    for key in [
        "checkpoints_ok",
        "checkpoints_busy",
        "batches_finished",
        "units",
    ] {
        assert_eq!(after[key], before[key], "{key}: {after}");
    }
    assert_eq!(processor_lines(&second).await, lines_before);
    // This worker never ran the batch: no progress of its own, but the batch is finished.
    assert_eq!(after["batch_progress"], json!({}), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_stats_tells_a_batchs_progress_without_reading_the_database() {
    let f = fixture(StorageConfig {
        busy_timeout_ms: 100,
        ..StorageConfig::default()
    });
    let (dir, manifest) = batch(&f.root, 10, 2, 1);
    register_all(&f.router, &manifest).await;
    let body = json!({"dir": dir}).to_string();
    let r = call(&f.router, "POST", "/api/batches", Some(&body), Some(TOKEN)).await;
    let batch_id = r.body["batch_id"].as_i64().expect("batch id");
    let key = batch_id.to_string();
    // Followed through /api/stats alone: done only grows, up to the total, then finished.
    let started = Instant::now();
    let mut last_done = 0;
    loop {
        let stats = call(&f.router, "GET", "/api/stats", None, None).await;
        assert_eq!(stats.status, StatusCode::OK, "{}", stats.text);
        if let Some(p) = stats.body["batch_progress"].get(&key) {
            assert_eq!(p["total"], 11, "{p}");
            let done = p["done"].as_u64().unwrap();
            assert!(done >= last_done && done <= 11, "{p}");
            last_done = done;
            if p["finished"] == true {
                assert_eq!(done, 11, "{p}");
                break;
            }
            assert_eq!(p["running"], true, "{p}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{}",
            stats.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_idle(&f.router).await;
    // While another process holds the exclusive lock (rollback journal: nobody can read),
    // /api/stats still answers, with the progress; the status endpoint cannot.
    let (held_tx, held) = std::sync::mpsc::channel::<()>();
    let db = f.root.join("app.db");
    let holder = std::thread::spawn(move || {
        lockbench_server::storage::hold::hold_write_lock(
            &db,
            Duration::from_millis(1500),
            Duration::from_secs(5),
            |_| {
                let _ = held_tx.send(());
            },
        )
    });
    held.recv().unwrap();
    let stats = call(&f.router, "GET", "/api/stats", None, None).await;
    let status = call(
        &f.router,
        "GET",
        &format!("/api/batches/{batch_id}/status"),
        None,
        Some(TOKEN),
    )
    .await;
    holder.join().unwrap().unwrap();
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.text);
    assert_eq!(
        stats.body["batch_progress"][&key],
        json!({"total": 11, "done": 11, "running": false, "finished": true}),
        "{}",
        stats.text
    );
    assert_eq!(
        status.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        status.text
    );
    // The typed struct the runner reads takes the same JSON.
    let typed: lockbench_server::app::stats::WorkerStats =
        serde_json::from_str(&stats.text).unwrap();
    assert_eq!(typed.batch_progress[&batch_id].done, 11);
    // A document from before the field existed still reads.
    let mut old = stats.body.clone();
    old.as_object_mut().unwrap().remove("batch_progress");
    let typed: lockbench_server::app::stats::WorkerStats = serde_json::from_value(old).unwrap();
    assert!(typed.batch_progress.is_empty());
}
