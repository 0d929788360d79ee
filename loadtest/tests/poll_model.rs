//! Browser-like pollers against a server that stalls: a real HTTP server on a loopback port
//! holds every `/poll` request that arrives during a window (3 seconds, or past the end of
//! the run), and `lockbench run --target` polls it. With `poll_model = "interval"`
//! (setInterval) the pollers keep their phases after the stall; with `"after-response"` (a
//! setTimeout chain) they all come back at once and stay in lock step. The server records
//! when each poller's requests arrive, so the test judges the schedule from the server's side
//! as well as from the report. Its `/status` never stalls and answers some requests as a
//! locked app does (a bare 503, a 503 or a 500 saying "database is locked"): how the report
//! charges a stall to each endpoint, and counts lock errors, is checked on real answers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use lockbench::report::Report;
use lockbench::run::{run_scenario, RunOptions};

const POLLERS: u32 = 40;
const INTERVAL: Duration = Duration::from_secs(1);
const STALL: Duration = Duration::from_secs(3);
/// The stall starts this long after the first request.
const STALL_AFTER: Duration = Duration::from_secs(4);

#[derive(Default)]
struct Seen {
    first: Option<Instant>,
    /// Arrival times per poller.
    arrivals: BTreeMap<u32, Vec<Instant>>,
}

#[derive(Clone)]
struct Stalling {
    seen: Arc<Mutex<Seen>>,
    /// The stall starts this long after the first request and lasts this long.
    after: Duration,
    length: Duration,
    /// `/status` requests so far.
    status: Arc<std::sync::atomic::AtomicU64>,
}

impl Stalling {
    fn stall_window(&self) -> Option<(Instant, Instant)> {
        let first = self.seen.lock().unwrap().first?;
        Some((first + self.after, first + self.after + self.length))
    }
}

/// `/status`: never stalls; of every 7 requests, one is a 503 saying the database is locked,
/// one a bare 503, one a 500 saying it, the others a 200.
async fn status(State(s): State<Stalling>) -> (axum::http::StatusCode, &'static str) {
    use axum::http::StatusCode;
    let n = s.status.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match n % 7 {
        0 => (StatusCode::SERVICE_UNAVAILABLE, "database is locked"),
        1 => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        2 => (StatusCode::INTERNAL_SERVER_ERROR, "database is locked"),
        _ => (StatusCode::OK, "{}"),
    }
}

async fn poll(
    State(s): State<Stalling>,
    Query(q): Query<BTreeMap<String, String>>,
) -> &'static str {
    let now = Instant::now();
    let user: u32 = q.get("u").and_then(|u| u.parse().ok()).unwrap_or(u32::MAX);
    {
        let mut seen = s.seen.lock().unwrap();
        seen.first.get_or_insert(now);
        seen.arrivals.entry(user).or_default().push(now);
    }
    if let Some((from, to)) = s.stall_window() {
        if now >= from && now < to {
            tokio::time::sleep_until(to.into()).await;
        }
    }
    "{}"
}

/// Starts the stalling server on a loopback port, its stall `after` the first request for
/// `length`; it runs until the test process ends.
fn start_server(after: Duration, length: Duration) -> (String, Stalling) {
    let state = Stalling {
        seen: Arc::default(),
        after,
        length,
        status: Arc::default(),
    };
    let app = Router::new()
        .route("/poll", get(poll))
        .route("/status", get(status))
        .with_state(state.clone());
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
            axum::serve(listener, app).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    (format!("http://{addr}"), state)
}

fn scenario(model: &str) -> String {
    format!(
        r#"
name = "stall-{model}"

[users]
pollers = {POLLERS}
poll_interval = "1s"
admins = 0
kiosks = 0
poll_model = "{model}"

[duration]
target_run = "13s"
max = "30s"

[endpoints]
poller = {{ method = "GET", path = "/poll?u={{user}}" }}
"#
    )
}

fn run(model: &str) -> (Report, Stalling) {
    run_scenario_text(&scenario(model), STALL_AFTER, STALL)
}

/// Runs `text` against a stalling server (the stall `after` the first request, for
/// `length`).
fn run_scenario_text(text: &str, after: Duration, length: Duration) -> (Report, Stalling) {
    let (url, server) = start_server(after, length);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    let opts = RunOptions {
        scenario: path,
        out: Some(dir.path().join("report")),
        target: Some(url),
        server_exe: Some(PathBuf::from(env!("CARGO_BIN_EXE_lockbench"))),
        ..RunOptions::default()
    };
    let outcome = run_scenario(&opts).expect("run against the stalling server");
    (outcome.report, server)
}

/// The share of the pollers' arrivals after the stall that fall into the busiest 100 ms of
/// the interval (phases taken modulo the interval, on a circle): about 0.1 when the pollers
/// are spread over the interval, 1 when they all arrive together.
fn busiest_phase_share(server: &Stalling) -> f64 {
    let (_, stall_end) = server.stall_window().expect("requests arrived");
    let seen = server.seen.lock().unwrap();
    // From one interval after the stall (the held answers and the restart are over) on.
    let from = stall_end + INTERVAL;
    let phases: Vec<f64> = seen
        .arrivals
        .values()
        .flatten()
        .filter(|t| **t >= from)
        .map(|t| (t.duration_since(from).as_secs_f64() / INTERVAL.as_secs_f64()).fract())
        .collect();
    assert!(
        phases.len() >= POLLERS as usize * 3,
        "{} arrivals after the stall",
        phases.len()
    );
    let window = 0.1;
    let best = (0..100)
        .map(|i| {
            let start = i as f64 / 100.0;
            phases
                .iter()
                .filter(|p| {
                    let d = (**p - start).rem_euclid(1.0);
                    d < window
                })
                .count()
        })
        .max()
        .unwrap_or(0);
    best as f64 / phases.len() as f64
}

#[test]
fn interval_pollers_keep_their_phase_after_a_stall_and_after_response_pollers_fall_into_step() {
    let (interval, interval_server) = run("interval");
    let (after, after_server) = run("after-response");

    let spread = busiest_phase_share(&interval_server);
    let in_step = busiest_phase_share(&after_server);
    assert!(
        spread < 0.35,
        "interval: {spread:.2} of the arrivals after the stall fell in one 100 ms window"
    );
    assert!(
        in_step > 0.8,
        "after-response: only {in_step:.2} of the arrivals after the stall fell in one 100 ms window"
    );

    let i = &interval.roles["poller"];
    eprintln!("phase share: interval {spread:.2}, after-response {in_step:.2}");
    let a = &after.roles["poller"];
    eprintln!("interval {i:?}\nafter-response {a:?}");
    assert_eq!(i.poll_model, lockbench::scenario::PollModel::Interval);
    assert_eq!(a.poll_model, lockbench::scenario::PollModel::AfterResponse);
    // The report tells the same story: the busiest 100 ms of sends against the average.
    assert!(
        i.burst_factor < 4.0,
        "interval burst factor {}",
        i.burst_factor
    );
    assert!(
        a.burst_factor > 6.0,
        "after-response burst factor {}",
        a.burst_factor
    );
    // Interval pollers fired through the stall (up to 4 in flight) and skipped nothing;
    // after-response pollers each sent a late tick when the stall ended and skipped others.
    assert_eq!(i.ticks_skipped, 0, "{i:?}");
    assert!(i.ticks_late < u64::from(POLLERS), "{i:?}");
    assert!(a.ticks_late >= u64::from(POLLERS), "{a:?}");
    assert!(a.ticks_skipped >= u64::from(POLLERS), "{a:?}");

    // Measured from the intended tick, latency includes the time a request waited to be
    // sent: larger than from the send, by a wide margin where ticks were held back.
    for (name, r) in [("interval", i), ("after-response", a)] {
        assert!(
            r.latency_from_tick_us.mean > r.latency_from_send_us.mean,
            "{name}: from tick {:?} vs from send {:?}",
            r.latency_from_tick_us,
            r.latency_from_send_us
        );
        assert!(
            r.latency_from_tick_us.p99 >= r.latency_from_send_us.p99,
            "{name}: {r:?}"
        );
    }
    assert!(
        a.latency_from_tick_us.mean as f64 > 1.3 * a.latency_from_send_us.mean as f64,
        "after-response: from tick {:?} vs from send {:?}",
        a.latency_from_tick_us,
        a.latency_from_send_us
    );
    // Both runs sent the offered load up to the stall; the stall shows on both time lines.
    for r in [&interval, &after] {
        assert!(r.timeline.iter().any(|p| p.sent > 0));
        assert!(r.timeline.iter().map(|p| p.p99_us).max().unwrap_or(0) >= 2_000_000);
    }
}

#[test]
fn a_stall_fails_an_endpoints_corrected_p99_as_it_fails_its_roles_and_lock_errors_count_once() {
    let text = r#"
name = "stall-endpoints"

[users]
pollers = 20
poll_interval = "100ms"
admins = 0
kiosks = 0
poll_model = "interval"
max_in_flight = 8

[duration]
target_run = "10s"
max = "30s"

[gates.p99_corrected_ms]
poller = 1000
status = 1000

[endpoints]
poller = { method = "GET", path = "/poll?u={user}" }
status = { method = "GET", path = "/status" }
"#;
    let (report, _server) = run_scenario_text(text, Duration::from_secs(3), STALL);
    let role = &report.roles["poller"];
    let status = &report.requests["status"];
    let poll = &report.requests["poller"];
    eprintln!(
        "role {role:?}
status {status:?}
poll {poll:?}"
    );
    assert!(
        role.ticks_skipped > 0,
        "the stall made pollers skip ticks: {role:?}"
    );

    // Both gates fail: the stall shows on the endpoint as it does on the role.
    for name in ["p99_corrected_ms poller", "p99_corrected_ms status"] {
        let g = report.gates.iter().find(|g| g.name == name).expect(name);
        assert!(!g.passed && g.value.is_some_and(|v| v > 1000.0), "{g:?}");
    }
    assert_eq!(report.verdict.exit_code, 1);
    // Skipped ticks are charged to the endpoints their serving tick called: the first
    // request's latency from the tick tells the role's story (the same ticks, less the fast
    // status request), where the sent requests alone would give about half of it.
    let (endpoint, whole) = (
        poll.latency_from_tick_us.mean as f64,
        role.latency_from_tick_us.mean as f64,
    );
    assert!(
        (endpoint - whole).abs() < 0.15 * whole,
        "poll from tick {:?} against the role's {:?}",
        poll.latency_from_tick_us,
        role.latency_from_tick_us
    );
    // The status request after a stalled poll is charged its own time plus its tick's
    // lateness, never the stalled poll's 3 seconds: its worst (a skipped tick's) stays below
    // the poll's by about the 8 ticks in flight before the first skip (800 ms).
    assert!(
        status.latency_from_tick_us.max + 300_000 < poll.latency_from_tick_us.max,
        "status {:?} poll {:?}",
        status.latency_from_tick_us,
        poll.latency_from_tick_us
    );

    // Lock errors that reached the client: each request once, a 503 saying "locked" too.
    let five_hundreds = status.status_codes.get("500").copied().unwrap_or(0);
    assert!(five_hundreds > 0 && status.status_503 > 0, "{status:?}");
    assert_eq!(status.lock_errors, status.status_503 + five_hundreds);
    assert!(status.lock_errors < status.status_503 + status.lock_mentions);
    let per_endpoint: u64 = report.requests.values().map(|s| s.lock_errors).sum();
    let per_second: u64 = report.timeline.iter().map(|p| p.lock_errors).sum();
    assert_eq!(report.lock_errors.client_visible, per_endpoint);
    assert_eq!(
        per_second, per_endpoint,
        "the time line counts the same requests"
    );
}

#[test]
fn ticks_still_waiting_when_the_load_stops_are_charged_up_to_the_stop() {
    // The stall starts 2 s in and outlasts the 5-second run: the pollers' 4 requests in
    // flight are held, and the ticks after them wait until the load stops.
    let text = r#"
name = "stall-at-stop"

[users]
pollers = 10
poll_interval = "200ms"
admins = 0
kiosks = 0
poll_model = "interval"

[duration]
target_run = "5s"
max = "30s"

[gates.p99_corrected_ms]
poller = 1000

[endpoints]
poller = { method = "GET", path = "/poll?u={user}" }
"#;
    let (report, _server) = run_scenario_text(text, Duration::from_secs(2), Duration::from_secs(5));
    let poll = &report.requests["poller"];
    let role = &report.roles["poller"];
    eprintln!(
        "poll {poll:?}
role {role:?}"
    );
    // Each poller skipped about (3 s − 4 × 200 ms) / 200 ms ticks, none served.
    assert!(
        poll.unanswered_at_stop >= 50 && poll.unanswered_at_stop <= role.ticks_skipped,
        "{poll:?} {role:?}"
    );
    assert!(
        role.latency_from_tick_us.max >= 2_000_000,
        "the oldest waiting tick is charged about 2 s to the stop: {role:?}"
    );
    assert!(poll.latency_from_tick_us.max >= 2_000_000, "{poll:?}");
    let g = report
        .gates
        .iter()
        .find(|g| g.name == "p99_corrected_ms poller")
        .unwrap();
    assert!(!g.passed, "{g:?}");
}

/// A server that records the client address of every request: one address per connection.
fn start_counting_server() -> (String, Arc<Mutex<Vec<SocketAddr>>>) {
    use axum::extract::ConnectInfo;
    let peers = Arc::new(Mutex::new(Vec::new()));
    let app = {
        let peers = peers.clone();
        Router::new().route(
            "/poll",
            get(move |ConnectInfo(addr): ConnectInfo<SocketAddr>| {
                let peers = peers.clone();
                async move {
                    peers.lock().unwrap().push(addr);
                    "{}"
                }
            }),
        )
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
    });
    (format!("http://{}", rx.recv().unwrap()), peers)
}

/// Requests and distinct client connections of a short run with the given `connection`.
fn connections_used(connection: &str) -> (usize, usize) {
    let (url, peers) = start_counting_server();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conn.toml");
    std::fs::write(
        &path,
        format!(
            r#"
name = "connection-{connection}"
[users]
pollers = 5
poll_interval = "200ms"
admins = 0
kiosks = 0
connection = "{connection}"
[duration]
target_run = "3s"
[endpoints]
poller = {{ method = "GET", path = "/poll" }}
"#
        ),
    )
    .unwrap();
    let opts = RunOptions {
        scenario: path,
        out: Some(dir.path().join("report")),
        target: Some(url),
        ..RunOptions::default()
    };
    let report = run_scenario(&opts).expect("run").report;
    assert_eq!(
        serde_json::to_value(report.roles["poller"].connection).unwrap(),
        connection
    );
    let peers = peers.lock().unwrap();
    let distinct: std::collections::BTreeSet<_> = peers.iter().collect();
    (peers.len(), distinct.len())
}

#[test]
fn keep_alive_users_reuse_their_connection_and_close_users_open_one_per_request() {
    let (requests, conns) = connections_used("keep-alive");
    assert!(requests >= 40, "{requests} requests");
    assert!(
        conns <= 5 * 2,
        "keep-alive: {conns} connections for {requests} requests"
    );
    let (requests, conns) = connections_used("close");
    assert!(requests >= 40, "{requests} requests");
    assert_eq!(conns, requests, "close: one connection per request");
}
