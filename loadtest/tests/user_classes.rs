//! `[[users]]` classes and named requests against a real app on a loopback port: what the
//! app receives (form and JSON bodies with their content types, headers, cookies kept per
//! user under each connection model, a user's own connection or the class's), how an app's log is read (a multi-line traceback is one lock error, tied to the
//! request whose path it names), an arrival rate that holds while the app stalls (the
//! requests that find no free slot dropped and counted), and a verdict that cannot pass a
//! run where every write fails.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use lockbench::report::Report;
use lockbench::run::{run_scenario, RunOptions};

/// One request as the app received it.
#[derive(Debug, Clone)]
struct Received {
    /// The client's port: one per connection.
    peer: u16,
    path: String,
    content_type: String,
    cookie: String,
    api_key: String,
    body: String,
}

#[derive(Clone)]
struct App {
    received: Arc<Mutex<Vec<Received>>>,
    sessions: Arc<AtomicU64>,
    /// Each session cookie's user, from the login that set it.
    owners: Arc<Mutex<BTreeMap<String, String>>>,
    /// The error log the `/locked` view writes its traceback to, as Django does.
    log: PathBuf,
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn record(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    app.received.lock().unwrap().push(Received {
        peer: peer.port(),
        path: path.clone(),
        content_type: header(&h, "content-type"),
        cookie: header(&h, "cookie"),
        api_key: header(&h, "x-api-key"),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    match path.as_str() {
        "/login" => {
            let sid = app.sessions.fetch_add(1, Ordering::Relaxed) + 1;
            let user = String::from_utf8_lossy(&body).replace("user=u", "");
            app.owners
                .lock()
                .unwrap()
                .insert(format!("sid=s{sid}"), user);
            // A login that redirects, as most do: the cookie comes on the redirect.
            (
                StatusCode::SEE_OTHER,
                [
                    ("set-cookie", format!("sid=s{sid}; Path=/")),
                    ("location", "/welcome".to_owned()),
                ],
                "",
            )
                .into_response()
        }
        "/welcome" => {
            // Long enough that other users log in between a user's login and its next
            // request: a cookie shared between users would show.
            tokio::time::sleep(Duration::from_millis(40)).await;
            (StatusCode::OK, "welcome").into_response()
        }
        "/broken" => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response(),
        "/locked" => {
            // What Django writes for a view that failed on a lock: one message line, then a
            // chained traceback that names "database is locked" twice. The client gets a
            // bare 500.
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&app.log)
                .unwrap();
            let record = "Internal Server Error: /locked\nTraceback (most recent call last):\n  File \"utils.py\", line 105, in _execute\n    return self.cursor.execute(sql, params)\nsqlite3.OperationalError: database is locked\n\nThe above exception was the direct cause of the following exception:\n\nTraceback (most recent call last):\n  File \"exception.py\", line 55, in inner\n    response = get_response(request)\ndjango.db.utils.OperationalError: database is locked\n";
            f.write_all(record.as_bytes()).unwrap();
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            (StatusCode::OK, "slow").into_response()
        }
        _ => (StatusCode::CREATED, "{\"id\": 1}").into_response(),
    }
}

/// Starts the app on a loopback port; it runs until the test process ends.
fn start_app(dir: &Path) -> (String, App) {
    let log = dir.join("errors.log");
    std::fs::write(&log, "").unwrap();
    let app = App {
        received: Arc::default(),
        sessions: Arc::default(),
        owners: Arc::default(),
        log,
    };
    let router = Router::new()
        .route("/read", get(record))
        .route("/welcome", get(record))
        .route("/slow", get(record))
        .route("/login", post(record))
        .route("/form", post(record))
        .route("/json", post(record))
        .route("/broken", post(record))
        .route("/locked", post(record))
        .with_state(app.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr: SocketAddr = listener.local_addr().unwrap();
            tx.send(addr).unwrap();
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, service).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    (format!("http://{addr}"), app)
}

fn run(dir: &Path, url: &str, text: &str) -> anyhow::Result<Report> {
    let scenario = dir.join("scenario.toml");
    std::fs::write(&scenario, text).unwrap();
    let opts = RunOptions {
        scenario,
        out: Some(dir.join("out")),
        target: Some(url.to_owned()),
        ..RunOptions::default()
    };
    run_scenario(&opts).map(|o| o.report)
}

#[test]
fn form_and_json_posts_reach_the_app_with_their_content_types_and_cookies_persist_per_user() {
    for connection in ["keep-alive", "pooled", "close"] {
        bodies_headers_and_cookies(connection);
    }
}

/// Three users of a class whose connections are `connection`: what the app received.
fn bodies_headers_and_cookies(connection: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (url, app) = start_app(dir.path());
    std::env::set_var("LOCKBENCH_TEST_API_KEY", "k-123");
    let text = r#"
name = "classes-bodies"

[duration]
target_run = "2s"

[[users]]
name = "member"
count = 3
pace = "closed"
think = "50ms..100ms"
order = "sequence"
connection = "CONNECTION"
headers = { "X-Api-Key" = "{env.LOCKBENCH_TEST_API_KEY}" }

[[users.requests]]
name = "login"
method = "POST"
path = "/login"
form = { user = "u{user}" }

[[users.requests]]
name = "sign up"
method = "POST"
path = "/form"
form = { name = "Name {n}", campaign = "Campaign {user}" }
expect = [201]

[[users.requests]]
name = "api"
method = "POST"
path = "/json"
json = { name = "Json {n}", tags = ["a", "{user}"] }
"#;
    let report = run(dir.path(), &url, &text.replace("CONNECTION", connection)).unwrap();
    let received = app.received.lock().unwrap().clone();
    let forms: Vec<&Received> = received.iter().filter(|r| r.path == "/form").collect();
    let jsons: Vec<&Received> = received.iter().filter(|r| r.path == "/json").collect();
    assert!(
        forms.len() >= 3 && jsons.len() >= 3,
        "{connection}: {received:?}"
    );
    for f in &forms {
        assert_eq!(f.content_type, "application/x-www-form-urlencoded");
        assert!(f.body.starts_with("campaign=Campaign+"), "{}", f.body);
        assert!(f.body.contains("&name=Name+"), "{}", f.body);
    }
    for j in &jsons {
        assert_eq!(j.content_type, "application/json");
        let v: serde_json::Value = serde_json::from_str(&j.body).unwrap();
        assert!(v["name"].as_str().unwrap().starts_with("Json "));
        assert_eq!(v["tags"][0], "a");
    }
    assert!(
        received.iter().all(|r| r.api_key == "k-123"),
        "{received:?}"
    );
    // Each user logs in at the start of every tick and keeps the cookie it was given: the
    // cookie a sign-up carries is one the app set at a login of the same user (the form
    // names its user in "Campaign {user}").
    let owners = app.owners.lock().unwrap().clone();
    let mut users = std::collections::BTreeSet::new();
    for f in &forms {
        let owner = owners
            .get(&f.cookie)
            .unwrap_or_else(|| panic!("no session cookie on {f:?}"));
        let campaign = f
            .body
            .split('&')
            .next()
            .unwrap()
            .replace("campaign=Campaign+", "");
        assert_eq!(
            owner, &campaign,
            "{connection}: {f:?} carries another user's cookie"
        );
        users.insert(campaign);
    }
    assert_eq!(
        users.len(),
        3,
        "{connection}: three users, each with its own session: {users:?}"
    );
    // The cookie set on the login's redirect went with the request that followed it.
    let welcomes: Vec<&Received> = received.iter().filter(|r| r.path == "/welcome").collect();
    assert!(
        !welcomes.is_empty(),
        "{connection}: the login's redirect was not followed"
    );
    for w in &welcomes {
        assert!(owners.contains_key(&w.cookie), "{connection}: {w:?}");
    }
    connections_as_modelled(connection, &received);
    for name in ["login", "sign up", "api"] {
        let s = &report.requests[name];
        assert!(
            s.count > 0 && s.failures == 0,
            "{connection}: {name}: {s:?}"
        );
    }
    assert!(report.verdict.passed, "{}", report.verdict.summary);
}

/// `keep-alive`: a connection carries one user's requests only (a user's own), and stays
/// open (fewer connections than requests); `close`: every request a connection of its own;
/// `pooled`: no more connections than users, each user kept apart by its cookies alone.
fn connections_as_modelled(connection: &str, received: &[Received]) {
    let mut users_of: BTreeMap<u16, std::collections::BTreeSet<String>> = BTreeMap::new();
    for r in received.iter().filter(|r| r.path == "/form") {
        let user = r.body.split('&').next().unwrap_or_default().to_owned();
        users_of.entry(r.peer).or_default().insert(user);
    }
    let ports: std::collections::BTreeSet<u16> = received.iter().map(|r| r.peer).collect();
    match connection {
        "keep-alive" => {
            assert!(users_of.values().all(|u| u.len() == 1), "{users_of:?}");
            assert!(
                ports.len() < received.len() / 2,
                "{} connections",
                ports.len()
            );
        }
        "close" => assert_eq!(ports.len(), received.len(), "a connection per request"),
        _ => assert!(
            ports.len() <= 3 * 2,
            "{} connections for 3 users",
            ports.len()
        ),
    }
}

#[test]
fn a_traceback_in_the_apps_log_is_one_lock_error_of_the_request_whose_path_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let (url, app) = start_app(dir.path());
    let text = format!(
        r#"
name = "classes-log"

[target]
log = "{}"

[duration]
target_run = "2s"

[[users]]
name = "visitor"
count = 4
pace = "closed"
think = "20ms"

[[users.requests]]
name = "read"
weight = 3
path = "/read"

[[users.requests]]
name = "locked write"
weight = 1
method = "POST"
path = "/locked"
form = {{ name = "n{{n}}" }}
"#,
        app.log.display()
    );
    let report = run(dir.path(), &url, &text).unwrap();
    let locked = &report.requests["locked write"];
    assert!(locked.failures > 0, "{locked:?}");
    assert_eq!(locked.failures_by_class["other 5xx"], locked.failures);
    assert_eq!(
        report.lock_errors.by_endpoint["locked write"], locked.failures,
        "one lock error per failed request, though its traceback names the lock twice"
    );
    assert_eq!(report.lock_errors.total, locked.failures);
    assert_eq!(report.lock_errors.unattributed, 0);
    assert_eq!(report.requests["read"].failures, 0);
    assert!(!report.verdict.passed);
    let words = format!(
        "locked write: {} of {} failed ({} other 5xx), {} lock errors in the app's log",
        locked.failures, locked.count, locked.failures, locked.failures
    );
    assert!(
        report.verdict.summary.contains(&words),
        "{}",
        report.verdict.summary
    );
}

#[test]
fn an_arrival_rate_holds_while_the_app_stalls_and_counts_what_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _app) = start_app(dir.path());
    let text = r#"
name = "classes-rate"

[duration]
target_run = "3s"

[gates]
max_error_rate = 1.0

[[users]]
name = "open"
count = 2
pace = "arrival-rate"
rate = "20/s"

[[users.requests]]
name = "slow"
path = "/slow"
"#;
    let report = run(dir.path(), &url, text).unwrap();
    let class = &report.roles["open"];
    // 3 s at 20/s: about 60 ticks came due whatever the answers; 2 slots each held 2 s by
    // the app could start only a few of them.
    assert!(
        (45..=75).contains(&class.ticks_due),
        "ticks due {}",
        class.ticks_due
    );
    assert!(class.ticks_sent <= 6, "sent {}", class.ticks_sent);
    assert_eq!(class.ticks_due, class.ticks_sent + class.ticks_dropped);
    assert!(class.ticks_dropped >= 40, "dropped {}", class.ticks_dropped);
}

#[test]
fn the_default_error_rate_gate_fails_a_run_where_every_write_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _app) = start_app(dir.path());
    // No gate set at all: the default error-rate gate still judges the run.
    let text = r#"
name = "classes-default-gate"

[duration]
target_run = "2s"

[[users]]
name = "visitor"
count = 2
think = "20ms"

[[users.requests]]
name = "read"
weight = 10
path = "/read"

[[users.requests]]
name = "write"
method = "POST"
path = "/broken"
json = { name = "n{n}" }
"#;
    let report = run(dir.path(), &url, text).unwrap();
    let write = &report.requests["write"];
    assert_eq!(write.failures, write.count);
    assert!(write.count > 0);
    let gate = report
        .gates
        .iter()
        .find(|g| g.name == "max_error_rate")
        .expect("a default max_error_rate gate");
    assert!(!gate.passed, "{gate:?}");
    assert_eq!(gate.limit, 0.01);
    assert!(gate.note.as_deref().unwrap_or("").contains("default"));
    assert!(!report.verdict.passed);
    assert_eq!(report.verdict.exit_code, 1);
    assert!(
        report.verdict.summary.contains("write: "),
        "{}",
        report.verdict.summary
    );
}

#[test]
fn a_gate_on_a_request_no_class_sends_is_refused_at_load_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("bad.toml");
    std::fs::write(
        &scenario,
        r#"
name = "classes-bad-gate"

[gates.p99_ms]
"reed" = 100

[[users]]
name = "visitor"

[[users.requests]]
name = "read"
path = "/read"
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--target",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("gates.p99_ms: \"reed\" is not a request this scenario sends (known: read)"),
        "{stderr}"
    );
}
