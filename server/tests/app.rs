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
        // Wrong types name the field and what was expected.
        (
            "POST",
            "/api/registrations",
            Some(r#"{"name": 5, "email": "b@example.org"}"#),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "name: invalid type: integer `5`, expected a string",
        ),
        (
            "POST",
            "/api/registrations",
            Some(r#"{"name": "Bob", "email": ["b@example.org"]}"#),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "email: invalid type: sequence",
        ),
        (
            "POST",
            "/api/registrations",
            Some(r#"{"name": null, "email": "b@example.org"}"#),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "name: invalid type: null",
        ),
        (
            "POST",
            "/api/batches",
            Some(r#"{"dir": 5}"#),
            Some(TOKEN),
            StatusCode::UNPROCESSABLE_ENTITY,
            "dir: invalid type: integer `5`",
        ),
        (
            "POST",
            "/api/registrations",
            Some(r#"["Bob", "b@example.org"]"#),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "expected a JSON object, got an array",
        ),
        (
            "POST",
            "/api/batches",
            Some(r#""/tmp""#),
            Some(TOKEN),
            StatusCode::UNPROCESSABLE_ENTITY,
            "expected a JSON object, got a string",
        ),
        (
            "POST",
            "/api/registrations",
            Some(r#"{"name":"Bob","email":"b@example.org","admin":true}"#),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `admin`",
        ),
        // Malformed JSON: cut short, empty, trailing text.
        (
            "POST",
            "/api/registrations",
            Some(r#"{"name":"Bob","email":"b@exa"#),
            None,
            StatusCode::BAD_REQUEST,
            "EOF while parsing",
        ),
        (
            "POST",
            "/api/registrations",
            Some(""),
            None,
            StatusCode::BAD_REQUEST,
            "EOF while parsing",
        ),
        (
            "POST",
            "/api/registrations",
            Some(r#"{"name":"Bob","email":"b@example.org"} and more"#),
            None,
            StatusCode::BAD_REQUEST,
            "trailing characters",
        ),
        // Email rules name the problem.
        (
            "POST",
            "/api/registrations",
            Some(r#"{"name":"Bob","email":"b ob@example.org"}"#),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "contains whitespace",
        ),
        (
            "POST",
            "/api/registrations",
            Some(r#"{"name":"Bob","email":"bob@"}"#),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "no @ with text on both sides",
        ),
        // Unknown and impossible ids.
        (
            "GET",
            "/api/batches/-1/status",
            None,
            Some(TOKEN),
            StatusCode::NOT_FOUND,
            "batch -1",
        ),
        (
            "GET",
            "/api/batches/99999999999999999999/status",
            None,
            Some(TOKEN),
            StatusCode::BAD_REQUEST,
            "batch id",
        ),
        (
            "GET",
            "/api/registrations/updates?since=99999999999999999999",
            None,
            None,
            StatusCode::BAD_REQUEST,
            "since",
        ),
        (
            "GET",
            "/api/no-such-route",
            None,
            None,
            StatusCode::NOT_FOUND,
            "",
        ),
        // Missing or wrong token on a route that writes.
        (
            "POST",
            "/api/batches",
            Some(r#"{"dir":"/tmp"}"#),
            None,
            StatusCode::UNAUTHORIZED,
            "admin token required",
        ),
        (
            "POST",
            "/api/batches",
            Some(r#"{"dir":"/tmp"}"#),
            Some("test-token-but-longer"),
            StatusCode::UNAUTHORIZED,
            "admin token required",
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
    // A batch folder that is a file (the database itself).
    let file_body = json!({"dir": f.root.join("app.db")}).to_string();
    let r = call(
        &f.router,
        "POST",
        "/api/batches",
        Some(&file_body),
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["field"], "dir");
    assert!(r.text.contains("is not a folder"), "{}", r.text);

    let huge = format!(
        r#"{{"name":"{}","email":"x@example.org"}}"#,
        "x".repeat(app::MAX_BODY_BYTES + 1)
    );
    let r = call(&f.router, "POST", "/api/registrations", Some(&huge), None).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(r.body["error"], "payload_too_large");
    // Oversized and malformed at once: the size is what is refused.
    let huge_broken = format!("{{\"name\":\"{}", "x".repeat(app::MAX_BODY_BYTES + 1));
    let r = call(
        &f.router,
        "POST",
        "/api/registrations",
        Some(&huge_broken),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);

    // A body that is not JSON at all, or not UTF-8, or sent as something else than JSON.
    let req = Request::builder()
        .method("POST")
        .uri("/api/registrations")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(vec![b'{', 0xff, 0xfe, b'}']))
        .unwrap();
    let response = f.router.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let req = Request::builder()
        .method("POST")
        .uri("/api/registrations")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(r#"{"name":"Bob","email":"b@example.org"}"#))
        .unwrap();
    let response = f.router.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("unsupported_media_type"), "{text}");
    assert!(text.contains("Content-Type"), "{text}");

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
    let batches = f
        .store
        .read("n", |tx| tx.query_i64("SELECT count(*) FROM batches", &[]))
        .unwrap();
    assert_eq!(batches, Some(0), "no refused POST created a batch");
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
    // /api/stats says the same, as JSON, with the endpoint the unit of work serves.
    let stats = call(&f.router, "GET", "/api/stats", None, None).await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.text);
    let register = &stats.body["units"]["register"];
    assert_eq!(
        register["endpoint"], "POST /api/registrations",
        "{}",
        stats.text
    );
    assert_eq!(register["lock_errors"]["SQLITE_BUSY"], 1, "{}", stats.text);
    assert_eq!(register["failed_locked"], 1, "{}", stats.text);
    assert_eq!(stats.body["worker"], 0);
    assert_eq!(stats.body["pid"], std::process::id());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_met_while_a_new_pooled_connection_is_configured_is_a_503_and_counted() {
    let storage = StorageConfig {
        busy_timeout_ms: 100,
        ..StorageConfig::default()
    };
    let f = fixture(storage);
    // The store's one open connection is lent out (so the request's unit of work opens and
    // configures a new one) while another connection holds the exclusive lock.
    let (lent_tx, lent) = std::sync::mpsc::channel::<()>();
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    let lender = f.store.clone();
    let lend = std::thread::spawn(move || {
        lender.read("lend", |_tx| {
            let _ = lent_tx.send(());
            let _ = release.recv_timeout(Duration::from_secs(30));
            Ok(())
        })
    });
    lent.recv().unwrap();
    let (held_tx, held) = std::sync::mpsc::channel::<()>();
    let db = f.root.join("app.db");
    let holder = std::thread::spawn(move || {
        lockbench_server::storage::hold::hold_write_lock(
            &db,
            Duration::from_millis(1000),
            Duration::from_secs(5),
            |_| {
                let _ = held_tx.send(());
            },
        )
    });
    held.recv().unwrap();
    let r = call(
        &f.router,
        "POST",
        "/api/registrations",
        Some(r#"{"name":"Ada","email":"ada@example.org"}"#),
        None,
    )
    .await;
    let _ = release_tx.send(());
    lend.join().unwrap().unwrap();
    holder.join().unwrap().unwrap();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.body["error"], "database_locked", "{}", r.text);
    assert_eq!(r.body["code"], "SQLITE_BUSY", "{}", r.text);
    assert_eq!(r.body["op"], "register", "{}", r.text);
    let stats = call(&f.router, "GET", "/api/stats", None, None).await;
    let register = &stats.body["units"]["register"];
    assert_eq!(register["endpoint"], "POST /api/registrations");
    assert_eq!(register["lock_errors"]["SQLITE_BUSY"], 1, "{}", stats.text);
    assert_eq!(register["failed_locked"], 1, "{}", stats.text);
    assert_eq!(register["failed_other"], 0, "{}", stats.text);
}

/// A PNG of the given QR payloads side by side on white: one code, or several in one photo.
fn qr_png(payloads: &[&str]) -> Vec<u8> {
    use image::{GrayImage, Luma};
    let codes: Vec<GrayImage> = payloads
        .iter()
        .map(|p| {
            qrcode::QrCode::new(p.as_bytes())
                .expect("QR code")
                .render::<Luma<u8>>()
                .module_dimensions(4, 4)
                .quiet_zone(true)
                .build()
        })
        .collect();
    let gap = 40;
    let width = codes.iter().map(|c| c.width()).sum::<u32>() + gap * (codes.len() as u32 + 1);
    let height = codes.iter().map(|c| c.height()).max().unwrap_or(0) + 2 * gap;
    let mut canvas = GrayImage::from_pixel(width, height, Luma([255]));
    let mut x = gap;
    for code in &codes {
        image::imageops::overlay(&mut canvas, code, i64::from(x), i64::from(gap));
        x += code.width() + gap;
    }
    encode(
        image::DynamicImage::ImageLuma8(canvas),
        image::ImageFormat::Png,
    )
}

/// A photo without a QR code; `shade` makes each one's bytes (and content hash) its own.
fn plain_photo(shade: u8, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(160, 120, |x, y| {
        image::Rgb([shade, (x % 256) as u8, (y % 256) as u8])
    });
    encode(image::DynamicImage::ImageRgb8(img), format)
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .expect("encode");
    out
}

/// Every file under `root` (relative paths), not following symbolic links, skipping `skip`.
fn files_under(root: &Path, skip: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let rel = entry
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if skip
                .iter()
                .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
            {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_photos_are_failed_with_their_reason_and_odd_names_are_recorded_as_they_are() {
    use image::ImageFormat::{Jpeg, Png};
    let f = fixture(StorageConfig {
        journal_mode: JournalMode::Wal,
        tx_mode: TxMode::Immediate,
        ..StorageConfig::default()
    });
    for (name, email) in [("Ada", "ada@example.org"), ("Bob", "bob@example.org")] {
        let body = json!({"name": name, "email": email}).to_string();
        let r = call(&f.router, "POST", "/api/registrations", Some(&body), None).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let ada = "LOCKBENCH-REG:ada@example.org";
    let bob = "LOCKBENCH-REG:bob@example.org";
    let outside = f.root.join("outside");
    std::fs::create_dir(&outside).unwrap();
    let secret = plain_photo(200, Jpeg);
    std::fs::write(outside.join("secret.jpg"), &secret).unwrap();

    let dir = f.root.join("photos");
    std::fs::create_dir(&dir).unwrap();
    let jpeg = plain_photo(3, Jpeg);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("IMG_0001.jpg", qr_png(&[ada])),
        ("IMG_0002 with spaces.jpg", plain_photo(1, Jpeg)),
        ("IMG_0003 Café ü 写真.png", plain_photo(2, Png)),
        ("IMG_0004.jpg", Vec::new()),
        ("IMG_0005.jpg", jpeg[..jpeg.len() / 2].to_vec()),
        ("IMG_0006.jpg", b"this is not an image\n".to_vec()),
        ("IMG_0007.png", qr_png(&["https://example.org/poster"])),
        ("IMG_0008.png", qr_png(&["LOCKBENCH-REG:not-an-email"])),
        ("IMG_0009.png", qr_png(&[ada, bob])),
        ("IMG_0011 a\\..\\..\\b.jpg", plain_photo(4, Jpeg)),
        ("IMG_0012.png", qr_png(&[bob])),
        ("IMG_0013.png", plain_photo(5, Png)),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    // A name that leads out of the folder can only be a link: it is refused, not followed.
    std::os::unix::fs::symlink("../outside/secret.jpg", dir.join("IMG_0010.jpg")).unwrap();
    // A folder named like a photo is not one.
    std::fs::create_dir(dir.join("IMG_0014.jpg")).unwrap();

    let body = json!({"dir": dir}).to_string();
    let r = call(&f.router, "POST", "/api/batches", Some(&body), Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["photos"], 13);
    let batch_id = r.body["batch_id"].as_i64().unwrap();
    let status = wait_done(&f.router, batch_id).await;
    assert_eq!(status["processed"], 13, "{status}");
    assert_eq!(status["failed"], 7, "{status}");
    assert_eq!(status["persons"], 2, "{status}");
    assert_eq!(status["uploaded"], 2, "{status}");

    let rows = f
        .store
        .read("audit", |tx| {
            tx.query(
                "SELECT ph.file_name, ph.status, p.qr_payload, coalesce(ph.error, '') \
                 FROM photos ph LEFT JOIN persons p ON p.id = ph.person_id ORDER BY ph.file_name",
                &[],
            )
        })
        .unwrap();
    let got: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap_or_default().to_owned(),
                r[1].as_str().unwrap_or_default().to_owned(),
                r[2].as_str().unwrap_or("-").to_owned(),
                r[3].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    // (file, status, person, what the error must say)
    let expected: &[(&str, &str, &str, &str)] = &[
        ("IMG_0001.jpg", "qr", ada, ""),
        ("IMG_0002 with spaces.jpg", "assigned", ada, ""),
        ("IMG_0003 Café ü 写真.png", "assigned", ada, ""),
        ("IMG_0004.jpg", "failed", "-", "empty file (0 bytes)"),
        ("IMG_0005.jpg", "failed", "-", "truncated JPEG"),
        ("IMG_0006.jpg", "failed", "-", "not an image"),
        (
            "IMG_0007.png",
            "assigned",
            ada,
            "QR code ignored: QR payload \"https://example.org/poster\" is not a registration",
        ),
        (
            "IMG_0008.png",
            "failed",
            "-",
            "malformed registration QR payload \"LOCKBENCH-REG:not-an-email\"",
        ),
        (
            "IMG_0009.png",
            "failed",
            "-",
            "2 registration QR codes in one photo",
        ),
        (
            "IMG_0010.jpg",
            "failed",
            "-",
            "is a symbolic link (to ../outside/secret.jpg)",
        ),
        (
            "IMG_0011 a\\..\\..\\b.jpg",
            "failed",
            "-",
            "it contains a path separator",
        ),
        ("IMG_0012.png", "qr", bob, ""),
        ("IMG_0013.png", "assigned", bob, ""),
    ];
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for (row, (file, status, person, error)) in got.iter().zip(expected) {
        assert_eq!(row.0, *file);
        assert_eq!(row.1, *status, "{row:?}");
        assert_eq!(row.2, *person, "{row:?}");
        if error.is_empty() {
            assert_eq!(row.3, "", "{row:?}");
        } else {
            assert!(row.3.contains(error), "{row:?} should say {error:?}");
        }
    }

    // The people's folders hold their photos under their own names, uploaded as well.
    let folders: Vec<String> = f
        .store
        .read("folders", |tx| {
            tx.query("SELECT folder FROM persons ORDER BY id", &[])
        })
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(folders, ["00001-ada", "00002-bob"]);
    for (folder, photos) in [
        (
            "00001-ada",
            vec![
                "IMG_0002 with spaces.jpg",
                "IMG_0003 Café ü 写真.png",
                "IMG_0007.png",
                "metadata.json",
            ],
        ),
        ("00002-bob", vec!["IMG_0013.png", "metadata.json"]),
    ] {
        for root in ["data/persons", "data/uploads"] {
            let mut names: Vec<String> = std::fs::read_dir(f.root.join(root).join(folder))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            assert_eq!(names, photos, "{root}/{folder}");
        }
    }
    // Nothing was written outside the data folder, and the link's target is untouched.
    assert_eq!(
        files_under(
            &f.root,
            &["data", "photos", "app.db", "app.db-wal", "app.db-shm"]
        ),
        ["outside/secret.jpg"]
    );
    assert_eq!(std::fs::read(outside.join("secret.jpg")).unwrap(), secret);

    // Posting it again records nothing twice and fails nothing twice.
    let before = counts(&f.store);
    let r = call(&f.router, "POST", "/api/batches", Some(&body), Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    wait_done(&f.router, batch_id).await;
    wait_idle(&f.router).await;
    assert_eq!(counts(&f.store), before);
}

/// Waits until no processor runs in this worker (its /metrics has no running series).
async fn wait_idle(router: &Router) {
    let started = Instant::now();
    loop {
        let text = call(router, "GET", "/metrics", None, None).await.text;
        if !text
            .lines()
            .any(|l| l.starts_with("lockbench_batch_processor_running{"))
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "a processor never ended: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

/// An app state over the database in `root` whose store's counters are journaled to
/// `events`, as a worker's are (`lockbench serve` keeps them in `<data_dir>/stats`).
fn journaled_state(root: &Path, storage: &StorageConfig, events: &Path) -> AppState {
    let store = Store::open(&root.join("app.db"), storage, &RetryConfig::default()).expect("open");
    store.stats().journal_to(events).expect("journal");
    AppState::new(
        store,
        0,
        TOKEN,
        ProcessorConfig::default(),
        RetryConfig::default(),
        root.join("data"),
    )
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

/// A batch processed by `process_batch` itself on a fresh database in `root`, with the
/// given settings; `hold_ms`: another connection holds the write lock that long from just
/// before the processor starts. Returns the store, the batch id and the acks file.
fn process_directly(
    root: &Path,
    storage: &StorageConfig,
    retry: &RetryConfig,
    config: &ProcessorConfig,
    hold_ms: Option<u64>,
) -> (Store, i64, PathBuf) {
    use lockbench_server::processor::{self, DataDirs};
    let db = root.join("app.db");
    let store = Store::open(&db, storage, retry).expect("open");
    let (dir, _manifest) = batch(root, 12, 3, 2);
    let batch_id = store
        .write("create", |tx| {
            tx.insert(
                "INSERT INTO batches (source_dir, status, total) VALUES ('x', 'running', 14)",
                &[],
            )
        })
        .unwrap();
    let photos = processor::list_photos(&dir).unwrap();
    let dirs = DataDirs::under(&root.join("data"));
    let metrics = app::metrics::Metrics::default();
    let holder = hold_ms.map(|ms| {
        let (held_tx, held) = std::sync::mpsc::channel::<()>();
        let db = db.clone();
        let t = std::thread::spawn(move || {
            lockbench_server::storage::hold::hold_write_lock(
                &db,
                Duration::from_millis(ms),
                Duration::from_secs(5),
                |_| {
                    let _ = held_tx.send(());
                },
            )
        });
        held.recv().unwrap();
        t
    });
    processor::process_batch(&store, config, &dirs, batch_id, photos, &metrics);
    if let Some(t) = holder {
        t.join().unwrap().unwrap();
    }
    (store, batch_id, dirs.acks)
}

/// The photos table: content_hash -> (file name, person, status).
fn photo_rows(store: &Store) -> std::collections::BTreeMap<String, (String, Option<i64>, String)> {
    store
        .read("rows", |tx| {
            tx.query(
                "SELECT content_hash, file_name, person_id, status FROM photos",
                &[],
            )
        })
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                (
                    r[1].as_str().unwrap().to_owned(),
                    r[2].as_i64(),
                    r[3].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

#[test]
fn the_processors_acks_match_the_rows_it_recorded_and_a_second_run_adds_none() {
    use lockbench_server::processor::acks::{read_acks, AckKind};
    use lockbench_server::processor::CommitGranularity;
    for granularity in [CommitGranularity::PerStep, CommitGranularity::PerPhoto] {
        let dir = tempfile::tempdir().unwrap();
        let config = ProcessorConfig {
            commit_granularity: granularity,
            ..ProcessorConfig::default()
        };
        let storage = StorageConfig::default();
        let (store, batch_id, acks_path) =
            process_directly(dir.path(), &storage, &RetryConfig::default(), &config, None);
        assert_eq!(
            acks_path,
            dir.path()
                .join("data")
                .join(lockbench_server::processor::acks::ACKS_FILE)
        );
        let acks = read_acks(&acks_path).unwrap();
        let rows = photo_rows(&store);
        assert_eq!(rows.len(), 14, "{granularity:?}");
        // One photo ack per recorded photo, one failed-photo ack per failed one, keyed as the
        // row is, with its name and person.
        let photo_acks: Vec<_> = acks.iter().filter(|a| a.kind != AckKind::Upload).collect();
        assert_eq!(photo_acks.len(), rows.len(), "{granularity:?}: {acks:#?}");
        for ack in &photo_acks {
            assert_eq!(ack.batch_id, batch_id);
            let (name, person, status) = &rows[&ack.key];
            assert_eq!(ack.file_name.as_deref(), Some(name.as_str()));
            assert_eq!(ack.person_id, *person, "{ack:?}");
            let failed = status == "failed";
            assert_eq!(ack.kind == AckKind::FailedPhoto, failed, "{ack:?} {status}");
        }
        let failed_keys: Vec<&str> = photo_acks
            .iter()
            .filter(|a| a.kind == AckKind::FailedPhoto)
            .map(|a| a.key.as_str())
            .collect();
        assert_eq!(failed_keys.len(), 2, "{granularity:?}");
        assert!(
            failed_keys
                .iter()
                .all(|k| k.starts_with(&format!("failed:{batch_id}:"))),
            "undecodable files are keyed by batch and name: {failed_keys:?}"
        );
        // One upload ack per uploaded person, keyed by the person's id.
        let uploaded: Vec<i64> = store
            .read("up", |tx| {
                tx.query(
                    "SELECT id FROM persons WHERE upload_state = 'uploaded' ORDER BY id",
                    &[],
                )
            })
            .unwrap()
            .iter()
            .map(|r| r[0].as_i64().unwrap())
            .collect();
        let upload_acks: Vec<_> = acks.iter().filter(|a| a.kind == AckKind::Upload).collect();
        assert_eq!(uploaded.len(), 3);
        assert_eq!(
            upload_acks
                .iter()
                .map(|a| (a.key.clone(), a.person_id))
                .collect::<Vec<_>>(),
            uploaded
                .iter()
                .map(|id| (id.to_string(), Some(*id)))
                .collect::<Vec<_>>()
        );

        // Processing the same photos again records nothing and acknowledges nothing.
        let photos = lockbench_server::processor::list_photos(&dir.path().join("photos")).unwrap();
        lockbench_server::processor::process_batch(
            &store,
            &config,
            &lockbench_server::processor::DataDirs::under(&dir.path().join("data")),
            batch_id,
            photos,
            &app::metrics::Metrics::default(),
        );
        assert_eq!(read_acks(&acks_path).unwrap(), acks, "{granularity:?}");
        assert_eq!(photo_rows(&store), rows);
    }
}

#[test]
fn with_commit_only_retries_an_acknowledged_photo_can_be_missing_from_the_database() {
    use lockbench_server::processor::acks::{read_acks, AckKind};
    use lockbench_server::storage::{RetryKind, RetryScope};
    let dir = tempfile::tempdir().unwrap();
    // The incident's stack: lazy transactions, the commit-only helper; a lock held by another
    // connection for longer than the busy timeout (a backup, a migration).
    let storage = StorageConfig {
        journal_mode: JournalMode::Wal,
        tx_mode: TxMode::Lazy,
        busy_timeout_ms: 100,
        ..StorageConfig::default()
    };
    let retry = RetryConfig {
        retry: RetryKind::Fixed,
        retry_attempts: 2,
        retry_delay_ms: 1,
        retry_scope: RetryScope::CommitOnly,
        ..RetryConfig::default()
    };
    let (store, _batch_id, acks_path) = process_directly(
        dir.path(),
        &storage,
        &retry,
        &ProcessorConfig::default(),
        Some(1500),
    );
    let acks = read_acks(&acks_path).unwrap();
    let rows = photo_rows(&store);
    let lost: Vec<&str> = acks
        .iter()
        .filter(|a| a.kind != AckKind::Upload && !rows.contains_key(&a.key))
        .map(|a| a.key.as_str())
        .collect();
    let dropped: u64 = store
        .stats()
        .snapshot()
        .values()
        .map(|s| s.commit_only_dropped)
        .sum();
    assert!(
        !lost.is_empty(),
        "photos acknowledged while the lock was held are not in the database: {acks:#?}"
    );
    assert!(
        dropped >= lost.len() as u64,
        "{dropped} drops, {} lost",
        lost.len()
    );
    // Every row the database holds was acknowledged: nothing is recorded behind the acks.
    for key in rows.keys() {
        assert!(acks.iter().any(|a| &a.key == key), "{key} has no ack");
    }
}
