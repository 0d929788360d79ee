//! What the app's tests share (`app_input.rs`, `app_batches.rs`, `app_photos.rs`): an app
//! over a real database file in a temporary folder, a generated photo batch, requests
//! through the real Router with `oneshot`, and waits on what a user would watch (a batch's
//! status, the processor's running series). Builds fixtures and sends requests; asserts
//! only what every caller needs (a batch ends, a registration is created).

// Each test file uses the helpers it needs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use lockbench_server::app::{self, AppState};
use lockbench_server::photos::{self, BatchSpec, ImageSize, Manifest};
use lockbench_server::processor::ProcessorConfig;
use lockbench_server::storage::{RetryConfig, RetryPlan, StorageConfig, Store};
use serde_json::{json, Value as Json};
use tower::ServiceExt;

pub const TOKEN: &str = "test-token";

/// An app over `<root>/app.db`, its data folder `<root>/data`, taking batches from anywhere
/// under `root` (its photo root).
pub struct Fixture {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub store: Store,
    pub router: Router,
}

pub fn fixture(storage: StorageConfig) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().to_path_buf();
    let store = Store::open(&root.join("app.db"), &storage, &RetryPlan::default()).expect("open");
    let state = app_state(store.clone(), &root);
    Fixture {
        _dir: dir,
        root,
        store,
        router: app::router(state),
    }
}

/// The state of worker 0 over `store`, its data folder `<root>/data`, its photo root `root`.
pub fn app_state(store: Store, root: &Path) -> AppState {
    AppState::new(
        store,
        0,
        TOKEN,
        ProcessorConfig::default(),
        RetryConfig::default(),
        root.join("data"),
    )
    .with_photo_root(root.to_path_buf())
}

/// An app state over the database in `root` whose store's counters are journaled to
/// `events`, as a worker's are (`lockbench serve` keeps them in `<data_dir>/stats`).
pub fn journaled_state(root: &Path, storage: &StorageConfig, events: &Path) -> AppState {
    let store = Store::open(&root.join("app.db"), storage, &RetryPlan::default()).expect("open");
    store.stats().journal_to(events).expect("journal");
    app_state(store, root)
}

/// A generated batch in `<root>/photos`.
pub fn batch(root: &Path, count: usize, people: usize, corrupt: usize) -> (PathBuf, Manifest) {
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

/// An answer: its status, headers, body as JSON (Null when it is not JSON) and as text.
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Json,
    pub text: String,
}

/// A request with a JSON body (when given) and a bearer token (when given).
pub async fn call(
    router: &Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
    auth: Option<&str>,
) -> Reply {
    let content_type = body.is_some().then_some("application/json");
    send(
        router,
        method,
        uri,
        content_type,
        body.map(|b| b.as_bytes().to_vec()),
        auth,
    )
    .await
}

/// A request with any body bytes and content type.
pub async fn send(
    router: &Router,
    method: &str,
    uri: &str,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
    auth: Option<&str>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(token) = auth {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(content_type) = content_type {
        req = req.header(header::CONTENT_TYPE, content_type);
    }
    let req = req
        .body(body.map_or_else(Body::empty, Body::from))
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

/// POST /api/batches for `dir` with the admin token.
pub async fn post_batch(router: &Router, dir: &Path) -> Reply {
    let body = json!({"dir": dir}).to_string();
    call(router, "POST", "/api/batches", Some(&body), Some(TOKEN)).await
}

pub async fn register_all(router: &Router, manifest: &Manifest) {
    for p in &manifest.people {
        let body = json!({"name": p.name, "email": p.email}).to_string();
        let r = call(router, "POST", "/api/registrations", Some(&body), None).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.body["qr_payload"], p.qr_payload);
    }
}

/// Polls the batch's status until it is `done`; returns that status.
pub async fn wait_done(router: &Router, batch_id: i64) -> Json {
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

/// Waits until no processor runs in this worker (its /metrics has no running series).
pub async fn wait_idle(router: &Router) {
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

/// Rows and batch 1's figures: photos, persons, registrations, processed, failed, persons,
/// uploaded.
pub fn counts(store: &Store) -> Vec<i64> {
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

/// Holds the write lock on `db` from another connection for `hold`, on a thread of its
/// own; returns once it is held.
pub fn hold_write_lock(
    db: &Path,
    hold: Duration,
) -> std::thread::JoinHandle<
    Result<lockbench_server::storage::hold::Held, lockbench_server::storage::DbError>,
> {
    let (held_tx, held) = std::sync::mpsc::channel::<()>();
    let db = db.to_path_buf();
    let holder = std::thread::spawn(move || {
        lockbench_server::storage::hold::hold_write_lock(&db, hold, Duration::from_secs(5), |_| {
            let _ = held_tx.send(());
        })
    });
    held.recv().unwrap();
    holder
}
