//! What a client is answered: the admin token and its cookie, bad input refused with the
//! right status naming what was wrong (and nothing written), batch folders confined to the
//! photo root, and lock errors that survive the retries as 503s naming the code and the
//! operation. Through the real Router with `oneshot`, on real database files.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use lockbench_server::app::{self, stats::WorkerSettingsReport};
use lockbench_server::storage::{RetryPlan, StorageConfig, Store, TxMode};
use serde_json::json;
use support::*;
use tower::ServiceExt;

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
    for uri in ["/api/registrations/updates?since=0", "/healthz"] {
        assert_eq!(
            call(&f.router, "GET", uri, None, None).await.status,
            StatusCode::OK,
            "{uri}"
        );
    }

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
    let settings: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let effective = settings["effective"].as_array().expect("connections");
    assert!(!effective.is_empty());
    assert_eq!(effective[0]["journal_mode"], "delete");
    assert_eq!(settings["requested"]["storage"]["tx_mode"], "deferred");
    // The type a reader of /api/settings deserialises takes the same answer.
    let typed: WorkerSettingsReport = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(typed.worker, 0);
    assert_eq!(typed.pid, std::process::id());
    assert_eq!(typed.requested.storage, *f.store.config());
    assert_eq!(typed.effective, f.store.effective_settings());
    assert_eq!(
        typed.sqlite_version,
        lockbench_server::storage::sqlite_version()
    );
}

/// One request with bad input and what its answer must be.
struct Case {
    name: &'static str,
    method: &'static str,
    uri: &'static str,
    /// The body, sent as `application/json` unless `content_type` says otherwise.
    body: Option<Vec<u8>>,
    content_type: &'static str,
    token: Option<&'static str>,
    expect_status: StatusCode,
    /// Texts the answer's body must contain.
    expect_body_contains: &'static [&'static str],
}

impl Case {
    fn new(name: &'static str, method: &'static str, uri: &'static str) -> Case {
        Case {
            name,
            method,
            uri,
            body: None,
            content_type: "application/json",
            token: None,
            expect_status: StatusCode::OK,
            expect_body_contains: &[],
        }
    }

    fn json(mut self, body: impl Into<String>) -> Case {
        self.body = Some(body.into().into_bytes());
        self
    }

    fn bytes(mut self, content_type: &'static str, body: Vec<u8>) -> Case {
        self.content_type = content_type;
        self.body = Some(body);
        self
    }

    fn token(mut self, token: &'static str) -> Case {
        self.token = Some(token);
        self
    }

    fn admin(self) -> Case {
        self.token(TOKEN)
    }

    fn expect(mut self, status: StatusCode, contains: &'static [&'static str]) -> Case {
        self.expect_status = status;
        self.expect_body_contains = contains;
        self
    }
}

const BAD: StatusCode = StatusCode::BAD_REQUEST;
const INVALID: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;
const REGISTER: &str = "/api/registrations";
const BATCHES: &str = "/api/batches";

/// A kiosk's registration: malformed JSON, missing, wrong-typed and extra fields, bad email.
fn registration_cases() -> Vec<Case> {
    let post = |name| Case::new(name, "POST", REGISTER);
    vec![
        post("not JSON")
            .json("{not json")
            .expect(BAD, &["bad_request"]),
        post("no email")
            .json(r#"{"name":"Bob"}"#)
            .expect(INVALID, &["email"]),
        post("email without @")
            .json(r#"{"name":"Bob","email":"nope"}"#)
            .expect(INVALID, &["email"]),
        post("blank name")
            .json(r#"{"name":"  ","email":"b@example.org"}"#)
            .expect(INVALID, &["name"]),
        post("name a number")
            .json(r#"{"name": 5, "email": "b@example.org"}"#)
            .expect(
                INVALID,
                &["name: invalid type: integer `5`, expected a string"],
            ),
        post("email a list")
            .json(r#"{"name": "Bob", "email": ["b@example.org"]}"#)
            .expect(INVALID, &["email: invalid type: sequence"]),
        post("name null")
            .json(r#"{"name": null, "email": "b@example.org"}"#)
            .expect(INVALID, &["name: invalid type: null"]),
        post("an array for an object")
            .json(r#"["Bob", "b@example.org"]"#)
            .expect(INVALID, &["expected a JSON object, got an array"]),
        post("an unknown field")
            .json(r#"{"name":"Bob","email":"b@example.org","admin":true}"#)
            .expect(INVALID, &["unknown field `admin`"]),
        post("JSON cut short")
            .json(r#"{"name":"Bob","email":"b@exa"#)
            .expect(BAD, &["EOF while parsing"]),
        post("an empty body")
            .json("")
            .expect(BAD, &["EOF while parsing"]),
        post("trailing text")
            .json(r#"{"name":"Bob","email":"b@example.org"} and more"#)
            .expect(BAD, &["trailing characters"]),
        post("whitespace in the email")
            .json(r#"{"name":"Bob","email":"b ob@example.org"}"#)
            .expect(INVALID, &["contains whitespace"]),
        post("nothing after the @")
            .json(r#"{"name":"Bob","email":"bob@"}"#)
            .expect(INVALID, &["no @ with text on both sides"]),
    ]
}

/// Polling and batches: bad ids, bad folders, wrong types, missing or wrong tokens.
fn batch_and_polling_cases(root: &std::path::Path) -> Vec<Case> {
    let get = |name, uri| Case::new(name, "GET", uri);
    let post = |name| Case::new(name, "POST", BATCHES);
    vec![
        get("since not a number", "/api/registrations/updates?since=abc").expect(BAD, &["since"]),
        get(
            "since too large",
            "/api/registrations/updates?since=99999999999999999999",
        )
        .expect(BAD, &["since"]),
        get("an unknown batch", "/api/batches/999/status")
            .admin()
            .expect(StatusCode::NOT_FOUND, &["batch 999"]),
        get("a negative batch id", "/api/batches/-1/status")
            .admin()
            .expect(StatusCode::NOT_FOUND, &["batch -1"]),
        get("a batch id not a number", "/api/batches/abc/status")
            .admin()
            .expect(BAD, &["batch id"]),
        get(
            "a batch id too large",
            "/api/batches/99999999999999999999/status",
        )
        .admin()
        .expect(BAD, &["batch id"]),
        get("an unknown route", "/api/no-such-route").expect(StatusCode::NOT_FOUND, &[]),
        post("a folder that does not exist")
            .json(r#"{"dir":"/no/such/folder"}"#)
            .admin()
            .expect(INVALID, &["dir"]),
        post("folder for dir")
            .json(r#"{"folder":"/tmp"}"#)
            .admin()
            .expect(INVALID, &["folder"]),
        post("dir a number")
            .json(r#"{"dir": 5}"#)
            .admin()
            .expect(INVALID, &["dir: invalid type: integer `5`"]),
        post("a string for an object")
            .json(r#""/tmp""#)
            .admin()
            .expect(INVALID, &["expected a JSON object, got a string"]),
        post("a batch folder that is a file (the database)")
            .json(json!({"dir": root.join("app.db")}).to_string())
            .admin()
            .expect(INVALID, &[r#""field":"dir""#, "is not a folder"]),
        post("no token")
            .json(r#"{"dir":"/tmp"}"#)
            .expect(StatusCode::UNAUTHORIZED, &["admin token required"]),
        post("a token that only starts like the right one")
            .json(r#"{"dir":"/tmp"}"#)
            .token("test-token-but-longer")
            .expect(StatusCode::UNAUTHORIZED, &["admin token required"]),
    ]
}

/// Bodies refused before they are read as JSON: too large, not UTF-8, not sent as JSON.
fn body_cases() -> Vec<Case> {
    let post = |name| Case::new(name, "POST", REGISTER);
    let huge = format!(
        r#"{{"name":"{}","email":"x@example.org"}}"#,
        "x".repeat(app::MAX_BODY_BYTES + 1)
    );
    let huge_broken = format!("{{\"name\":\"{}", "x".repeat(app::MAX_BODY_BYTES + 1));
    let too_large = StatusCode::PAYLOAD_TOO_LARGE;
    vec![
        post("a body over the limit")
            .json(huge)
            .expect(too_large, &[r#""error":"payload_too_large""#]),
        // Oversized and malformed at once: the size is what is refused.
        post("a body over the limit and malformed")
            .json(huge_broken)
            .expect(too_large, &[]),
        post("not UTF-8")
            .bytes("application/json", vec![b'{', 0xff, 0xfe, b'}'])
            .expect(BAD, &[]),
        post("sent as text/plain")
            .bytes(
                "text/plain",
                br#"{"name":"Bob","email":"b@example.org"}"#.to_vec(),
            )
            .expect(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &["unsupported_media_type", "Content-Type"],
            ),
    ]
}

#[tokio::test]
async fn bad_input_gets_the_right_status_naming_what_was_wrong_and_loses_nothing() {
    let f = fixture(StorageConfig::default());
    let ok = call(
        &f.router,
        "POST",
        REGISTER,
        Some(r#"{"name":"Ada","email":"ada@example.org"}"#),
        None,
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED);

    let cases = registration_cases()
        .into_iter()
        .chain(batch_and_polling_cases(&f.root))
        .chain(body_cases());
    for case in cases {
        let content_type = case.body.is_some().then_some(case.content_type);
        let r = send(
            &f.router,
            case.method,
            case.uri,
            content_type,
            case.body,
            case.token,
        )
        .await;
        let what = format!("{} ({} {})", case.name, case.method, case.uri);
        assert_eq!(r.status, case.expect_status, "{what}: {}", r.text);
        for named in case.expect_body_contains {
            assert!(
                r.text.contains(named),
                "{what}: the answer should name {named}: {}",
                r.text
            );
        }
    }

    let count = |sql: &'static str| f.store.read("n", |tx| tx.query_i64(sql, &[])).unwrap();
    assert_eq!(
        count("SELECT count(*) FROM registrations"),
        Some(1),
        "the committed registration is still there, nothing else was written"
    );
    assert_eq!(
        count("SELECT count(*) FROM batches"),
        Some(0),
        "no refused POST created a batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_folder_outside_the_photo_root_is_refused_naming_the_root() {
    let f = fixture(StorageConfig::default());
    let root = std::fs::canonicalize(&f.root).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let (outside, _) = batch(elsewhere.path(), 3, 1, 0);
    // A folder outside the root, and one that leads out of it with `..`.
    let climbing = f.root.join("..").join(
        outside
            .strip_prefix(elsewhere.path().parent().unwrap())
            .unwrap(),
    );
    for dir in [&outside, &climbing] {
        let r = post_batch(&f.router, dir).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{}: {}",
            dir.display(),
            r.text
        );
        assert_eq!(r.body["error"], "forbidden", "{}", r.text);
        let detail = r.body["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("photo root {}", root.display())),
            "{detail}"
        );
    }
    // A link inside the root to a folder outside it is the folder outside.
    let link = f.root.join("linked-photos");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let r = post_batch(&f.router, &link).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains(&root.display().to_string()), "{}", r.text);
    let batches = f
        .store
        .read("n", |tx| tx.query_i64("SELECT count(*) FROM batches", &[]))
        .unwrap();
    assert_eq!(batches, Some(0), "no refused folder became a batch");

    // A folder inside the root is taken.
    let (inside, _) = batch(&f.root, 3, 1, 0);
    let r = post_batch(&f.router, &inside).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["photos"], 3, "{}", r.text);
    wait_done(&f.router, r.body["batch_id"].as_i64().unwrap()).await;
    wait_idle(&f.router).await;
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
    let holder = Store::open(&f.root.join("app.db"), &storage, &RetryPlan::default()).unwrap();
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
    let ada = Some(r#"{"name":"Ada","email":"ada@example.org"}"#);
    let r = call(&f.router, "POST", REGISTER, ada, None).await;
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
    let r = call(&f.router, "POST", REGISTER, ada, None).await;
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
    let holder = hold_write_lock(&f.root.join("app.db"), Duration::from_millis(1000));
    let r = call(
        &f.router,
        "POST",
        REGISTER,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockbenchs_own_endpoints_answer_while_every_thread_of_the_app_waits_on_a_lock() {
    let storage = StorageConfig {
        busy_timeout_ms: 30_000,
        ..StorageConfig::default()
    };
    let f = fixture(storage);
    // One thread, as `threads = 1`: the app serves one request at a time.
    let router = app::router_with_threads(app_state(f.store.clone(), &f.root), 1);
    let holder = hold_write_lock(&f.root.join("app.db"), Duration::from_secs(3));
    // The one thread is taken by a registration that waits on the lock.
    let waiting = {
        let router = router.clone();
        tokio::spawn(async move {
            let body = Some(r#"{"name":"Ada","email":"ada@example.org"}"#);
            call(&router, "POST", REGISTER, body, None).await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The runner follows the batch through /api/stats: it is answered now, not queued
    // behind the app's requests (a stats request stuck for 30 s once made a running batch
    // look abandoned).
    let stats = call(&router, "GET", "/api/stats", None, None).await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.text);
    assert!(
        !waiting.is_finished(),
        "/api/stats was answered only after the registration that held the app's one thread"
    );
    holder.join().unwrap().unwrap();
    let r = waiting.await.unwrap();
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}
