//! The same app, scenarios, audit and reports on a real PostgreSQL server.
//!
//! These tests need a server: they read LOCKBENCH_TEST_PG (for example
//! postgres://postgres@127.0.0.1:5432/test). Without it each test says plainly that it was
//! skipped; `.ci/run` sets it, starts PostgreSQL when it is not running, and fails if the
//! tests were skipped there.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lockbench::run::{run_scenario, RunOptions};
use lockbench_server::probe::{self, ProbeConfig};
use lockbench_server::storage::{
    postgres, Driver, Isolation, Jitter, LockCode, RetryKind, RetryScope,
};
use support::{fresh_client, small_batch, Server, TOKEN};

/// The PostgreSQL URL of the tests, or None, with a line on the terminal saying the test was
/// skipped (written past the test harness's capture, so it shows). With
/// LOCKBENCH_REQUIRE_PG=1 (as `.ci/run` sets it) a missing server fails the test instead.
fn pg_url(test: &str) -> Option<String> {
    use std::io::Write;
    match std::env::var("LOCKBENCH_TEST_PG") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let line = format!(
                "PostgreSQL tests skipped ({test}): set LOCKBENCH_TEST_PG, for example postgres://postgres@127.0.0.1:5432/test"
            );
            assert!(
                std::env::var("LOCKBENCH_REQUIRE_PG").is_err(),
                "{line} (LOCKBENCH_REQUIRE_PG is set: they must run here)"
            );
            let _ = writeln!(std::io::stderr(), "{line}");
            None
        }
    }
}

/// Runs one SQL statement with psql-like simplicity through lockbench's own read-only
/// audit connection (a plain count of schemas, say).
fn schemas_like(url: &str, prefix: &str) -> i64 {
    let mut db = postgres::ReadOnlyPg::open(url, "public").expect("connect");
    let rows = db
        .query(
            "test",
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE ?1",
            &[format!("{prefix}%").as_str().into()],
        )
        .expect("count schemas");
    rows[0][0].as_i64().unwrap()
}

const SMALL_PG: &str = r#"
name = "pg_small"
[server]
workers = 2
[server.storage]
driver = "postgres"
isolation = "read-committed"
tx_mode = "lazy"
pool_size = 4
[server.retry]
retry = "fixed"
retry_attempts = 20
retry_delay_ms = 5
read_retry = "fixed"
retry_scope = "unit-of-work"
[server.processor]
upload_latency_ms = 5
lock_wait_ms = 60000
[batch]
count = 40
people = 4
size = "320x240"
seed = 9
corrupt = 1
[users]
pollers = 6
poll_interval = "300ms"
admins = 1
admin_interval = "1s"
kiosks = 3
kiosk_interval = "100ms"
[duration]
tail = "1s"
max = "90s"
[gates]
max_lost_writes = 0
max_error_rate = 0.0
"#;

fn options(dir: &Path, name: &str, text: &str, url: &str) -> RunOptions {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    RunOptions {
        scenario: path,
        out: Some(dir.join(name)),
        server_exe: Some(PathBuf::from(env!("CARGO_BIN_EXE_lockbench"))),
        database_url: Some(url.to_owned()),
        ..RunOptions::default()
    }
}

#[test]
fn a_batch_runs_on_postgres_in_a_schema_of_its_own_and_nothing_is_lost() {
    let Some(url) = pg_url("batch") else { return };
    let dir = tempfile::tempdir().unwrap();
    let before = schemas_like(&url, "lockbench_pg_small_");
    let report = run_scenario(&options(dir.path(), "pg", SMALL_PG, &url))
        .expect("run on PostgreSQL")
        .report;
    assert!(report.verdict.passed, "{}", report.verdict.summary);
    let batch = report.batch.as_ref().unwrap();
    assert!(batch.finished);
    assert_eq!(batch.processed, 41);
    let audit = report.audit.as_ref().unwrap();
    assert_eq!(audit.lost_writes, 0, "{audit:?}");
    assert_eq!(audit.misassigned_photos, 0, "{audit:?}");
    assert_eq!(audit.duplicate_writes, 0, "{audit:?}");
    assert!(audit.counter_mismatches.is_empty(), "{audit:?}");
    // The report names the database and the schema; the password never appears.
    assert!(report.sqlite_version.is_none());
    let note = report
        .notes
        .iter()
        .find(|n| n.starts_with("database: PostgreSQL"))
        .expect("a note naming the database");
    assert!(note.contains("lockbench_pg_small_"), "{note}");
    let workers = report.settings_effective.as_ref().unwrap();
    assert!(workers.iter().all(|w| w
        .connections
        .iter()
        .all(|c| c["postgres"]["server_version"].is_string())));
    // The run's schema is gone.
    assert_eq!(schemas_like(&url, "lockbench_pg_small_"), before);
}

#[test]
fn serializable_isolation_fails_concurrent_writers_with_serialization_failure_and_retries_absorb_it(
) {
    let Some(url) = pg_url("serializable") else {
        return;
    };
    let mut config = ProbeConfig::default();
    config.storage.driver = Driver::Postgres;
    config.storage.database_url = Some(url.clone());
    config.storage.isolation = Isolation::Serializable;
    // Exponential backoff with full jitter, many tries: four writers on one counter row
    // collide all the time, and jitter keeps them from colliding again in step.
    config.retry.retry = RetryKind::Exponential;
    config.retry.retry_attempts = 100;
    config.retry.retry_base_ms = 1;
    config.retry.retry_factor = 2.0;
    config.retry.retry_max_ms = 50;
    config.retry.retry_jitter = Jitter::Full;
    config.retry.retry_scope = RetryScope::UnitOfWork;
    config.writers = 4;
    config.readers = 2;
    config.duration = Duration::from_secs(2);
    let before = schemas_like(&url, "lockbench_contend_");
    let report = probe::run(&config).expect("probe on PostgreSQL");
    let failures = report
        .lock_errors
        .by_code
        .get(&LockCode::SerializationFailure)
        .copied()
        .unwrap_or(0);
    assert!(failures > 0, "{}", report.summary());
    assert!(report.retries >= failures, "{}", report.summary());
    assert_eq!(report.lost_writes, 0, "{}", report.summary());
    assert_eq!(report.writes_failed, 0, "{}", report.summary());
    assert_eq!(schemas_like(&url, "lockbench_contend_"), before);
}

#[test]
fn two_servers_on_different_ports_share_one_database_and_only_one_runs_the_processor() {
    let Some(url) = pg_url("scale-out") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let schema = postgres::unique_schema("scaleout");
    postgres::create_schema(&url, &schema).unwrap();
    let (photos, manifest) = small_batch(dir.path(), 30, 3, 0);
    let args = |role: &'static str| {
        vec![
            "--driver".to_owned(),
            "postgres".into(),
            "--database-url".into(),
            url.clone(),
            "--schema".into(),
            schema.clone(),
            "--role".into(),
            role.into(),
        ]
    };
    let a_args = args("all");
    let b_args = args("web");
    let a = Server::start(
        &dir.path().join("a.db"),
        &a_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let b = Server::start(
        &dir.path().join("b.db"),
        &b_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_ne!(a.url, b.url);
    // People register at B's kiosks; the batch goes to A, which runs the processor.
    lockbench::run::http::register_people(&b.url, &manifest, None).unwrap();
    let client = fresh_client();
    let refused = client
        .post(format!("{}/api/batches", b.url))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"dir": photos}))
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);
    assert!(refused.text().unwrap().contains("--role web"));
    let posted: serde_json::Value = client
        .post(format!("{}/api/batches", a.url))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"dir": photos}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = posted["batch_id"].as_i64().unwrap();
    // B, which processes nothing, sees the batch go through: both read one database.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status: serde_json::Value = client
            .get(format!("{}/api/batches/{id}/status", b.url))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        if status["status"] == "done" {
            assert_eq!(status["processed"], 30);
            assert_eq!(status["persons"], 3);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the batch never finished: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A's dashboard lists the people registered at B.
    let updates: serde_json::Value = client
        .get(format!("{}/api/registrations/updates?since=0", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(updates["registrations"].as_array().unwrap().len(), 3);
    // Only A's metrics show a processor run.
    let metrics = |url: &str| {
        client
            .get(format!("{url}/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    assert!(metrics(&a.url).contains("lockbench_batch_processor_finished{"));
    assert!(!metrics(&b.url).contains("lockbench_batch_processor_finished{"));
    drop(a);
    drop(b);
    postgres::drop_schema(&url, &schema).unwrap();
}

#[test]
fn an_unreachable_server_or_a_refused_login_is_a_clear_error_with_exit_code_2_leaving_nothing() {
    let Some(url) = pg_url("bad urls") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pg.toml");
    std::fs::write(
        &path,
        SMALL_PG.replace("name = \"pg_small\"", "name = \"pg_badurl\""),
    )
    .unwrap();
    let before = schemas_like(&url, "lockbench_pg_badurl_");
    for (bad, named) in [
        ("postgres://postgres@127.0.0.1:1/postgres", "127.0.0.1:1"),
        (
            "postgres://no_such_role_lockbench@127.0.0.1:5432/postgres",
            "no_such_role_lockbench",
        ),
        ("mysql://root@127.0.0.1/test", "database_url"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_lockbench"))
            .args(["run", path.to_str().unwrap(), "--database-url", bad])
            .args(["--out", dir.path().join("report").to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains(named), "{bad}: {named} not named in {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!dir.path().join("report").exists());
    }
    // A password given in the URL is never printed.
    let out = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args(["run", path.to_str().unwrap(), "--database-url"])
        .arg("postgres://postgres:s3cret-pw@127.0.0.1:1/postgres")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret-pw"));
    assert_eq!(schemas_like(&url, "lockbench_pg_badurl_"), before);
}

#[test]
fn a_lock_table_held_by_another_session_makes_requests_wait_and_loses_nothing() {
    let Some(url) = pg_url("lock table") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[[faults]]\nkind = \"external-lock\"\nat = \"500ms\"\nhold = \"2s\"\n",
        SMALL_PG.replace("name = \"pg_small\"", "name = \"pg_lock\"")
    );
    let report = run_scenario(&options(dir.path(), "pg_lock", &text, &url))
        .expect("run with a LOCK TABLE")
        .report;
    let fault = &report.faults[0];
    assert!(fault.started_s.is_some(), "{fault:?}");
    assert!(fault.outcome.contains("LOCK TABLE"), "{}", fault.outcome);
    assert!(report.batch.as_ref().unwrap().finished);
    assert_eq!(report.audit.as_ref().unwrap().lost_writes, 0);
    // Requests waited for the lock: the slowest took about as long as it was held.
    let slowest = report
        .requests
        .values()
        .map(|s| s.latency_us.max)
        .max()
        .unwrap();
    assert!(slowest >= 1_000_000, "{slowest} µs");
}

/// A TCP proxy on a loopback port in front of PostgreSQL: what lockbench sees as "the
/// server". Shutting it down refuses new connections and cuts the open ones, as a server
/// that goes away does.
struct Proxy {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    streams: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream: std::net::SocketAddr) -> Proxy {
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let accept = {
            let (stop, streams) = (stop.clone(), streams.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    client.set_nonblocking(false).unwrap();
                    let Ok(server) = TcpStream::connect(upstream) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let mut open = streams.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                    for (mut from, mut to) in [
                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                        (server, client),
                    ] {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(Shutdown::Both);
                        });
                    }
                }
            })
        };
        Proxy {
            port,
            stop,
            streams,
            accept: Some(accept),
        }
    }

    /// The server goes away: no new connections, the open ones cut.
    fn shut_down(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            t.join().unwrap();
        }
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[test]
fn a_server_that_goes_away_mid_run_stops_the_run_with_exit_code_2_and_the_next_run_is_clean() {
    let Some(url) = pg_url("server goes away") else {
        return;
    };
    let parsed = url.strip_prefix("postgres://").expect("a postgres:// URL");
    let (userinfo, rest) = parsed.split_once('@').expect("user@host in the URL");
    let (hostport, database) = rest.split_once('/').expect("/database in the URL");
    let upstream: std::net::SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .unwrap()
        .next()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A batch big enough to be in the middle of it when the server goes.
    let text = SMALL_PG
        .replace("name = \"pg_small\"", "name = \"pg_gone\"")
        .replace("count = 40", "count = 400")
        .replace("upload_latency_ms = 5", "upload_latency_ms = 50");
    let path = dir.path().join("gone.toml");
    std::fs::write(&path, text).unwrap();
    let before = schemas_like(&url, "lockbench_pg_gone_");

    let mut proxy = Proxy::start(upstream);
    let via_proxy = format!("postgres://{userinfo}@127.0.0.1:{}/{database}", proxy.port);
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args(["run", path.to_str().unwrap(), "--database-url", &via_proxy])
        .args(["--out", dir.path().join("report").to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The schema exists once the run has started; give the batch a few seconds more.
    while schemas_like(&url, "lockbench_pg_gone_") == before {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never made its schema"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(4));
    proxy.shut_down();
    let gone_at = Instant::now();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("stopped answering") && err.contains(&format!("127.0.0.1:{}", proxy.port)),
        "the error names the server that went away: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        gone_at.elapsed() < Duration::from_secs(60),
        "the run stopped {:?} after the server went",
        gone_at.elapsed()
    );
    assert!(!dir.path().join("report").exists(), "no half report");
    // The schema it could not drop is named, so it can be dropped by hand.
    let left = err
        .split("DROP SCHEMA \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the schema left behind is named")
        .to_owned();
    assert!(left.starts_with("lockbench_pg_gone_"), "{left}");

    // The server is back (a new proxy): the next run starts from a schema of its own and
    // passes, untroubled by what the stopped run left.
    let proxy2 = Proxy::start(upstream);
    let via_proxy2 = format!("postgres://{userinfo}@127.0.0.1:{}/{database}", proxy2.port);
    let report = run_scenario(&options(dir.path(), "after", SMALL_PG, &via_proxy2))
        .expect("the run after")
        .report;
    assert!(report.verdict.passed, "{}", report.verdict.summary);
    assert_eq!(report.audit.as_ref().unwrap().lost_writes, 0);
    postgres::drop_schema(&url, &left).unwrap();
    assert_eq!(schemas_like(&url, "lockbench_pg_gone_"), before);
}
