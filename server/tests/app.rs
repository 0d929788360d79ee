//! The reference app's handlers, driven through the real Router with `oneshot`, on real
//! file databases and real photo batches.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use lockbench_server::app::{self, AppState};
use lockbench_server::photos::{self, BatchSpec, FileKind, ImageSize, Manifest};
use lockbench_server::processor::ProcessorConfig;
use lockbench_server::storage::{JournalMode, RetryConfig, StorageConfig, Store, TxMode, Value};
use serde_json::{json, Value as Json};
use tower::ServiceExt;

const TOKEN: &str = "test-token";

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Store,
    router: Router,
}

fn fixture(storage: StorageConfig) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().to_path_buf();
    let store = Store::open(&root.join("app.db"), &storage, &RetryConfig::default()).expect("open");
    let state = AppState::new(
        store.clone(),
        0,
        TOKEN,
        ProcessorConfig::default(),
        RetryConfig::default(),
        root.join("data"),
    );
    Fixture {
        _dir: dir,
        root,
        store,
        router: app::router(state),
    }
}

fn batch(root: &Path, count: usize, people: usize, corrupt: usize) -> (PathBuf, Manifest) {
    let dir = root.join("photos");
    let spec = BatchSpec {
        count,
        people,
        size: ImageSize {
            width: 320,
            height: 240,
        },
        seed: 11,
        corrupt,
    };
    let manifest = photos::generate(&dir, &spec).expect("generate batch");
    (dir, manifest)
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Json,
    text: String,
}

async fn call(
    router: &Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
    auth: Option<&str>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(token) = auth {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_owned())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let response = router.clone().oneshot(req).await.expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Json::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

async fn register_all(router: &Router, manifest: &Manifest) {
    for p in &manifest.people {
        let body = json!({"name": p.name, "email": p.email}).to_string();
        let r = call(router, "POST", "/api/registrations", Some(&body), None).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.body["qr_payload"], p.qr_payload);
    }
}

async fn wait_done(router: &Router, batch_id: i64) -> Json {
    let started = Instant::now();
    loop {
        let r = call(
            router,
            "GET",
            &format!("/api/batches/{batch_id}/status"),
            None,
            Some(TOKEN),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        if r.body["status"] == "done" {
            return r.body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "batch never finished: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn counts(store: &Store) -> Vec<i64> {
    store
        .read("counts", |tx| {
            let mut out = Vec::new();
            for sql in [
                "SELECT count(*) FROM photos",
                "SELECT count(*) FROM persons",
                "SELECT count(*) FROM registrations",
                "SELECT processed FROM batches WHERE id = 1",
                "SELECT failed FROM batches WHERE id = 1",
                "SELECT persons FROM batches WHERE id = 1",
                "SELECT uploaded FROM batches WHERE id = 1",
            ] {
                out.push(tx.query_i64(sql, &[])?.unwrap_or(-1));
            }
            Ok(out)
        })
        .expect("counts")
}

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

#[tokio::test]
async fn admin_routes_refuse_requests_without_the_token_and_the_cookie_carries_it() {
    let f = fixture(StorageConfig::default());
    for (method, uri) in [
        ("GET", "/admin"),
        ("GET", "/api/settings"),
        ("GET", "/api/batches/1/status"),
        ("POST", "/api/batches"),
    ] {
        let body = (method == "POST").then_some(r#"{"dir": "/tmp"}"#);
        let r = call(&f.router, method, uri, body, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        let r = call(&f.router, method, uri, body, Some("wrong-token")).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {uri} with a wrong token"
        );
    }
    // Polling endpoints are open.
    assert_eq!(
        call(
            &f.router,
            "GET",
            "/api/registrations/updates?since=0",
            None,
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&f.router, "GET", "/healthz", None, None).await.status,
        StatusCode::OK
    );

    let r = call(
        &f.router,
        "GET",
        &format!("/admin?token={TOKEN}"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("admin dashboard"));
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let pair = cookie.split(';').next().unwrap();
    let req = Request::builder()
        .uri("/api/settings")
        .header(header::COOKIE, pair)
        .body(Body::empty())
        .unwrap();
    let response = f.router.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let settings: Json = serde_json::from_slice(&bytes).unwrap();
    let effective = settings["effective"].as_array().expect("connections");
    assert!(!effective.is_empty());
    assert_eq!(effective[0]["journal_mode"], "delete");
    assert_eq!(settings["requested"]["storage"]["tx_mode"], "deferred");
}

#[tokio::test]
async fn bad_input_gets_the_right_status_naming_what_was_wrong_and_loses_nothing() {
    let f = fixture(StorageConfig::default());
    let ok = call(
        &f.router,
        "POST",
        "/api/registrations",
        Some(r#"{"name":"Ada","email":"ada@example.org"}"#),
        None,
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED);

    // (method, uri, body, token, expected status, what the answer must name)
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        StatusCode,
        &'a str,
    );
    let cases: &[Case] = &[
        (
            "POST",
            "/api/registrations",
            Some("{not json"),
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/api/registrations",
            Some(r#"{"name":"Bob"}"#),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            "POST",
            "/api/registrations",
            Some(r#"{"name":"Bob","email":"nope"}"#),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            "POST",
            "/api/registrations",
            Some(r#"{"name":"  ","email":"b@example.org"}"#),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            "GET",
            "/api/registrations/updates?since=abc",
            None,
            None,
            StatusCode::BAD_REQUEST,
            "since",
        ),
        (
            "GET",
            "/api/batches/999/status",
            None,
            Some(TOKEN),
            StatusCode::NOT_FOUND,
            "batch 999",
        ),
        (
            "GET",
            "/api/batches/abc/status",
            None,
            Some(TOKEN),
            StatusCode::BAD_REQUEST,
            "batch id",
        ),
        (
            "POST",
            "/api/batches",
            Some(r#"{"dir":"/no/such/folder"}"#),
            Some(TOKEN),
            StatusCode::UNPROCESSABLE_ENTITY,
            "dir",
        ),
        (
            "POST",
            "/api/batches",
            Some(r#"{"folder":"/tmp"}"#),
            Some(TOKEN),
            StatusCode::UNPROCESSABLE_ENTITY,
            "folder",
        ),
    ];
    for (method, uri, body, auth, status, named) in cases {
        let r = call(&f.router, method, uri, *body, *auth).await;
        assert_eq!(r.status, *status, "{method} {uri} {body:?}: {}", r.text);
        assert!(
            r.text.contains(named),
            "{method} {uri}: body should name {named}: {}",
            r.text
        );
    }
    let huge = format!(
        r#"{{"name":"{}","email":"x@example.org"}}"#,
        "x".repeat(app::MAX_BODY_BYTES + 1)
    );
    let r = call(&f.router, "POST", "/api/registrations", Some(&huge), None).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);

    let regs = f
        .store
        .read("n", |tx| {
            tx.query_i64("SELECT count(*) FROM registrations", &[])
        })
        .unwrap();
    assert_eq!(
        regs,
        Some(1),
        "the committed registration is still there, nothing else was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_error_that_survives_the_retries_is_a_503_naming_the_code_and_operation() {
    let storage = StorageConfig {
        busy_timeout_ms: 100,
        tx_mode: TxMode::Immediate,
        ..StorageConfig::default()
    };
    let f = fixture(storage.clone());
    // Another connection holds the write lock for a while.
    let holder = Store::open(&f.root.join("app.db"), &storage, &RetryConfig::default()).unwrap();
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let hold = std::thread::spawn(move || {
        holder.write("hold", |tx| {
            tx.execute("INSERT INTO batches (source_dir) VALUES ('held')", &[])?;
            let _ = locked_tx.send(());
            std::thread::sleep(Duration::from_millis(1500));
            Ok(())
        })
    });
    locked.recv().unwrap();
    let r = call(
        &f.router,
        "POST",
        "/api/registrations",
        Some(r#"{"name":"Ada","email":"ada@example.org"}"#),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    assert_eq!(r.body["error"], "database_locked");
    assert_eq!(r.body["code"], "SQLITE_BUSY");
    assert_eq!(r.body["op"], "register");
    hold.join().unwrap().unwrap();

    let metrics = call(&f.router, "GET", "/metrics", None, None).await.text;
    assert!(
        metrics.contains(
            r#"lockbench_db_lock_errors_total{worker="0",op="register",code="SQLITE_BUSY"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"route="/api/registrations",status="503"} 1"#),
        "{metrics}"
    );
    // Once the lock is gone the same request succeeds.
    let r = call(
        &f.router,
        "POST",
        "/api/registrations",
        Some(r#"{"name":"Ada","email":"ada@example.org"}"#),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}
