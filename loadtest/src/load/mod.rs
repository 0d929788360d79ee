//! The load: goose users playing pollers, admins and kiosks, over HTTP only.
//!
//! goose starts and schedules the users (one long transaction per user, ended by a shared
//! stop flag). Each user keeps a schedule of ticks itself, one every interval from a phase
//! spread over the first interval, and reacts to a slow answer as its role's
//! [`PollModel`] says: `interval` keeps the phase and fires while earlier requests are
//! still out (up to `max_in_flight`, then skips), as a page polling with `setInterval`;
//! `after-response` waits for the answer and restarts its schedule when it is late, as a
//! `setTimeout` chain does. Each user has its own HTTP client (its own connections), kept
//! alive or closed after every request as the role's [`Connection`] says.
//!
//! Every request is timed and classified by lockbench's own [`Recorder`] (`recorder.rs`: µs histograms,
//! status codes, 503s, bodies that mention a lock, a per-second timeline), twice: from the
//! moment it was sent, and from the tick it was meant for (corrected for coordinated
//! omission, as wrk2 measures): a request's time from its send plus its tick's lateness. A
//! tick that was skipped is served by the next tick the user sends: its latency from the
//! tick runs to that tick's answers, as wrk2 measures a request it had to send late, and is
//! charged to the role and to every endpoint the serving tick called. A tick still waiting
//! when the load stops is charged up to the stop and counted as unanswered at stop (requests
//! already out are waited for and recorded). So latency from the tick is never below latency
//! from the send. The load talks to the server only over HTTP; it starts and stops nothing.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use goose::config::GooseConfiguration;
use goose::goose::{GooseUser, Scenario as GooseScenario, Transaction, TransactionResult};
use goose::{GooseAttack, GooseScheduler};

mod recorder;

use crate::scenario::{Connection, EndpointSpec, Endpoints, PollModel, Role, Users};
use recorder::lock;
pub use recorder::{Outcome, Recorder, Timing};
/// A tick sent this much or more after its intended time counts as late.
pub const LATE_AFTER: Duration = Duration::from_millis(10);

/// How long one request may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// What the users need to know, shared with the runner.
pub struct Shared {
    /// Set to stop the load; [`Shared::stop_load`] also notes the moment, which ticks still
    /// waiting are charged up to (set directly, the moment is when a user first sees it).
    pub stop: AtomicBool,
    stopped_at: OnceLock<Instant>,
    /// The batch being processed (0 until it is posted).
    pub batch_id: AtomicI64,
    pub recorder: Recorder,
    /// The kiosk bodies a kiosk got a 2xx for (the audit looks for each).
    pub kiosk_acks: Mutex<Vec<serde_json::Value>>,
    pub admin_token: Option<String>,
    pub users: Users,
    /// Some: an external app's endpoints; None: the reference server.
    pub endpoints: Option<Endpoints>,
    counter: AtomicU64,
}

impl Shared {
    pub fn new(users: Users, endpoints: Option<Endpoints>, admin_token: Option<String>) -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            stopped_at: OnceLock::new(),
            batch_id: AtomicI64::new(0),
            recorder: Recorder::new(Instant::now()),
            kiosk_acks: Mutex::new(Vec::new()),
            admin_token,
            users,
            endpoints,
            counter: AtomicU64::new(0),
        }
    }

    /// Stops the load now: ticks still waiting are charged up to this moment.
    pub fn stop_load(&self) {
        self.stopped_at.get_or_init(Instant::now);
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        let stopped = self.stop.load(Ordering::Relaxed);
        if stopped {
            self.stopped_at.get_or_init(Instant::now);
        }
        stopped
    }

    /// When the load stopped (now, if it has not).
    fn stop_instant(&self) -> Instant {
        *self.stopped_at.get_or_init(Instant::now)
    }

    /// Whether a tick intended at `t` came due before the load stopped.
    fn before_stop(&self, t: Instant) -> bool {
        self.stopped_at.get().is_none_or(|stop| t < *stop)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn parse(text: &str) -> Method {
        match text {
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => Method::Get,
        }
    }

    fn as_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        }
    }
}

struct Call {
    endpoint: String,
    method: Method,
    path: String,
    body: Option<serde_json::Value>,
    admin: bool,
}

/// What the placeholders of an external endpoint stand for in one request.
#[derive(Clone, Copy)]
struct Fill {
    /// `{user}`: the user's number.
    user: usize,
    /// `{n}`: a counter (per user; shared by all kiosks, so every kiosk body differs).
    n: u64,
    /// `{batch}`: the posted batch's id.
    batch: i64,
    /// `{since}`: the poller's cursor, the `last_id` of its previous answer.
    since: i64,
}

impl Fill {
    fn apply(self, template: &str) -> String {
        template
            .replace("{user}", &self.user.to_string())
            .replace("{n}", &self.n.to_string())
            .replace("{batch}", &self.batch.to_string())
            .replace("{since}", &self.since.to_string())
    }
}

fn from_spec(endpoint: &str, spec: &EndpointSpec, fill: Fill) -> Call {
    let body = spec.body.as_deref().map(|b| {
        let text = fill.apply(b);
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    });
    Call {
        endpoint: endpoint.to_owned(),
        method: Method::parse(&spec.method),
        path: fill.apply(&spec.path),
        body,
        admin: false,
    }
}

/// Moves a poller's cursor to the `last_id` of an answer, if it has one.
fn advance_since(ctx: &UserCtx, body: &str) {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(last) = v["last_id"].as_i64() {
            ctx.since.fetch_max(last, Ordering::Relaxed);
        }
    }
}

/// One simulated user: its client (its own connections) and what its ticks share.
struct UserCtx {
    role: Role,
    index: usize,
    base: String,
    client: reqwest::Client,
    connection: Connection,
    shared: Arc<Shared>,
    in_flight: AtomicU32,
    /// Intended times of skipped ticks, to be served by the next tick sent.
    pending: Mutex<Vec<Instant>>,
    /// The poller's `since` cursor (the dashboard's last seen registration).
    since: AtomicI64,
    n: AtomicU64,
}

fn client_for(connection: Connection) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("lockbench/", env!("CARGO_PKG_VERSION")));
    let builder = match connection {
        Connection::KeepAlive => builder,
        Connection::Close => builder.pool_max_idle_per_host(0),
    };
    builder.build().unwrap_or_default()
}

/// What one request of a tick got: its status, its body, and its time from its send.
struct Answer {
    status: Option<u16>,
    body: String,
    from_send: Duration,
}

/// Sends one request of the tick `intended` whose first request went at `tick_sent`, timing
/// and classifying it.
async fn send(ctx: &UserCtx, call: Call, intended: Instant, tick_sent: Instant) -> Answer {
    let shared = &ctx.shared;
    let sent = Instant::now();
    shared.recorder.request_sent(ctx.role, sent);
    let mut rb = ctx.client.request(
        call.method.as_reqwest(),
        format!("{}{}", ctx.base, call.path),
    );
    if call.admin {
        if let Some(token) = &shared.admin_token {
            rb = rb.bearer_auth(token);
        }
    }
    if ctx.connection == Connection::Close {
        rb = rb.header(reqwest::header::CONNECTION, "close");
    }
    if let Some(body) = &call.body {
        rb = rb.json(body);
    }
    let (status, body) = match rb.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            (Some(status), body)
        }
        Err(_) => (None, String::new()),
    };
    let answered = Instant::now();
    let ok = status.is_some_and(|s| (200..300).contains(&s));
    let lock_mention = !ok && body.to_ascii_lowercase().contains("locked");
    let timing = Timing {
        intended,
        tick_sent,
        sent,
        answered,
    };
    shared.recorder.record(
        &call.endpoint,
        &Outcome {
            status,
            lock_mention,
        },
        timing,
    );
    Answer {
        status,
        body,
        from_send: timing.from_send(),
    }
}

/// The reference server's endpoints, as the load names them.
const UPDATES: &str = "GET /api/registrations/updates";
const BATCH_STATUS: &str = "GET /api/batches/{id}/status";
const ADMIN: &str = "GET /admin";
const REGISTER: &str = "POST /api/registrations";

/// Whether the poller's status request goes in a tick, with `batch` the posted batch's id
/// (0 until one is posted).
fn polls_status(shared: &Shared, batch: i64) -> bool {
    match &shared.endpoints {
        Some(e) => e
            .status
            .as_ref()
            .is_some_and(|s| batch > 0 || !s.path.contains("{batch}")),
        None => batch > 0,
    }
}

/// The endpoints a tick of `role` calls, in order (what a tick still waiting at the stop is
/// charged to).
fn tick_endpoints(shared: &Shared, role: Role) -> Vec<&'static str> {
    let external = shared.endpoints.as_ref();
    match role {
        Role::Poller => {
            let batch = shared.batch_id.load(Ordering::Relaxed);
            let (first, second) = match external {
                Some(_) => ("poller", "status"),
                None => (UPDATES, BATCH_STATUS),
            };
            let mut names = vec![first];
            if polls_status(shared, batch) {
                names.push(second);
            }
            names
        }
        Role::Admin => match external.and_then(|e| e.admin.as_ref()) {
            Some(_) => vec!["admin"],
            None => vec![ADMIN],
        },
        Role::Kiosk => match external.and_then(|e| e.kiosk.as_ref()) {
            Some(_) => vec!["kiosk"],
            None => vec![REGISTER],
        },
    }
}

/// One tick of one user: the role's requests, in order.
async fn tick(ctx: &UserCtx, intended: Instant) {
    let shared = &ctx.shared;
    // Ticks skipped before this one are served by this one's answers, as a request held back
    // and sent late is (wrk2): their latency runs from their own tick to these answers.
    let carried = std::mem::take(&mut *lock(&ctx.pending));
    let first_send = Instant::now();
    shared.recorder.tick_started(ctx.role, first_send);
    let batch = shared.batch_id.load(Ordering::Relaxed);
    let since = ctx.since.load(Ordering::Relaxed);
    let fill = Fill {
        user: ctx.index,
        n: ctx.n.fetch_add(1, Ordering::Relaxed) + 1,
        batch,
        since,
    };
    // Each request the tick made: its endpoint and its time from its send.
    let mut calls: Vec<(String, Duration)> = Vec::new();
    let call = |c: Call| {
        let endpoint = c.endpoint.clone();
        let sent = send(ctx, c, intended, first_send);
        async move {
            let answer = sent.await;
            (endpoint, answer)
        }
    };
    match ctx.role {
        Role::Poller => {
            let (first, second) = match &shared.endpoints {
                Some(e) => (
                    from_spec("poller", &e.poller, fill),
                    e.status.as_ref().map(|s| from_spec("status", s, fill)),
                ),
                None => (
                    Call {
                        endpoint: UPDATES.into(),
                        method: Method::Get,
                        path: format!("/api/registrations/updates?since={since}"),
                        body: None,
                        admin: false,
                    },
                    Some(Call {
                        endpoint: BATCH_STATUS.into(),
                        method: Method::Get,
                        path: format!("/api/batches/{batch}/status"),
                        body: None,
                        admin: true,
                    }),
                ),
            };
            let (endpoint, answer) = call(first).await;
            advance_since(ctx, &answer.body);
            calls.push((endpoint, answer.from_send));
            if let Some(second) = second.filter(|_| polls_status(shared, batch)) {
                let (endpoint, answer) = call(second).await;
                calls.push((endpoint, answer.from_send));
            }
        }
        Role::Admin => {
            let c = match shared.endpoints.as_ref().and_then(|e| e.admin.as_ref()) {
                Some(spec) => from_spec("admin", spec, fill),
                None => Call {
                    endpoint: ADMIN.into(),
                    method: Method::Get,
                    path: "/admin".into(),
                    body: None,
                    admin: true,
                },
            };
            let (endpoint, answer) = call(c).await;
            calls.push((endpoint, answer.from_send));
        }
        Role::Kiosk => {
            let k = shared.counter.fetch_add(1, Ordering::Relaxed);
            let c = match shared.endpoints.as_ref().and_then(|e| e.kiosk.as_ref()) {
                Some(spec) => from_spec("kiosk", spec, Fill { n: k, ..fill }),
                None => {
                    let email = format!("walkin-{}-{k}@example.org", ctx.index);
                    Call {
                        endpoint: REGISTER.into(),
                        method: Method::Post,
                        path: "/api/registrations".into(),
                        body: Some(serde_json::json!({
                            "name": format!("Walk-in {}-{k}", ctx.index),
                            "email": email,
                        })),
                        admin: false,
                    }
                }
            };
            let body = c.body.clone();
            let (endpoint, answer) = call(c).await;
            calls.push((endpoint, answer.from_send));
            if let (Some(body), Some(s)) = (body, answer.status) {
                if (200..300).contains(&s) {
                    lock(&shared.kiosk_acks).push(body);
                }
            }
        }
    }
    let done = Instant::now();
    shared
        .recorder
        .tick_answered(ctx.role, intended, first_send, done);
    let calls: Vec<(&str, Duration)> = calls.iter().map(|(e, d)| (e.as_str(), *d)).collect();
    shared
        .recorder
        .skipped_served(ctx.role, &carried, first_send, done, &calls);
}

/// Sleeps until `at`, or until the stop flag; false when stopped.
async fn sleep_until(shared: &Shared, at: Instant) -> bool {
    while Instant::now() < at {
        if shared.stopped() {
            return false;
        }
        let left = at.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(200))).await;
    }
    !shared.stopped()
}

/// A user's first tick: the users of one role spread evenly over the first interval.
fn first_tick(index: usize, of: u32, interval: Duration) -> Instant {
    let offset = interval.mul_f64((index as f64 / f64::from(of.max(1))).fract());
    Instant::now() + offset
}

fn skip(ctx: &UserCtx, intended: Instant) {
    ctx.shared.recorder.tick_due(ctx.role);
    ctx.shared.recorder.tick_skipped(ctx.role);
    lock(&ctx.pending).push(intended);
}

async fn run_user(user: &mut GooseUser, shared: Arc<Shared>, role: Role) -> TransactionResult {
    let b = shared.users.behaviour(role);
    let index = user.weighted_users_index;
    let ctx = Arc::new(UserCtx {
        role,
        index,
        base: user.base_url.as_str().trim_end_matches('/').to_owned(),
        client: client_for(b.connection),
        connection: b.connection,
        shared: shared.clone(),
        in_flight: AtomicU32::new(0),
        pending: Mutex::new(Vec::new()),
        since: AtomicI64::new(0),
        n: AtomicU64::new(0),
    });
    let interval = b.interval;
    // `intended`: the tick the next request is for; `fire_at`: when it goes.
    let mut intended = first_tick(index, b.users, interval);
    let mut fire_at = intended;
    let mut tasks = tokio::task::JoinSet::new();
    while sleep_until(&shared, fire_at).await {
        let now = Instant::now();
        match b.poll_model {
            PollModel::Interval => {
                // Ticks the generator itself overslept by a whole interval are skipped.
                while intended + interval <= now && shared.before_stop(intended) {
                    skip(&ctx, intended);
                    intended += interval;
                }
                shared.recorder.tick_due(role);
                if ctx.in_flight.load(Ordering::Relaxed) >= b.max_in_flight {
                    shared.recorder.tick_skipped(role);
                    lock(&ctx.pending).push(intended);
                } else {
                    shared
                        .recorder
                        .tick_sent(role, now.saturating_duration_since(intended) >= LATE_AFTER);
                    ctx.in_flight.fetch_add(1, Ordering::Relaxed);
                    let ctx = ctx.clone();
                    let tick_at = intended;
                    tasks.spawn(async move {
                        tick(&ctx, tick_at).await;
                        ctx.in_flight.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                while tasks.try_join_next().is_some() {}
                intended += interval;
                fire_at = intended;
            }
            PollModel::AfterResponse => {
                shared.recorder.tick_due(role);
                shared
                    .recorder
                    .tick_sent(role, now.saturating_duration_since(intended) >= LATE_AFTER);
                tick(&ctx, intended).await;
                // The user's own schedule: one interval after this tick went.
                let next = fire_at + interval;
                let now = Instant::now();
                if next >= now {
                    intended = next;
                    fire_at = next;
                } else {
                    // Late: the first tick that passed goes now; the others that passed are
                    // skipped; the schedule restarts from now.
                    let mut passed = next + interval;
                    while passed <= now && shared.before_stop(passed) {
                        skip(&ctx, passed);
                        passed += interval;
                    }
                    intended = next;
                    fire_at = now;
                }
            }
        }
    }
    // Ticks still waiting to be sent (skipped, not yet served) are charged up to the stop;
    // requests already out are waited for and recorded as they are answered.
    let pending = std::mem::take(&mut *lock(&ctx.pending));
    shared.recorder.pending_at_stop(
        role,
        &pending,
        &tick_endpoints(&shared, role),
        shared.stop_instant(),
    );
    while tasks.join_next().await.is_some() {}
    Ok(())
}

type RoleFn = fn(&mut GooseUser, Arc<Shared>) -> futures::future::BoxFuture<'_, TransactionResult>;

fn role_transaction(shared: &Arc<Shared>, role: RoleFn, name: &str) -> Transaction {
    let shared = shared.clone();
    Transaction::new(Arc::new(move |user| role(user, shared.clone()))).set_name(name)
}

/// Runs the attack until the stop flag is set; `cap` is a backstop that sets the flag itself
/// (goose refuses a run time together with iterations). Blocks.
/// Starts the load on a thread of its own: `attack` against `host` until `shared.stop` is
/// set or `cap` has passed. Join the handle for the load's own errors.
pub fn start(
    host: &str,
    shared: &Arc<Shared>,
    cap: Duration,
) -> std::thread::JoinHandle<anyhow::Result<()>> {
    let (host, shared) = (host.to_owned(), shared.clone());
    std::thread::spawn(move || attack(&host, &shared, cap))
}

pub fn attack(host: &str, shared: &Arc<Shared>, cap: Duration) -> anyhow::Result<()> {
    let users = &shared.users;
    let mut config = GooseConfiguration::default();
    config.host = Some(host.to_owned());
    config.users = Some(users.total() as usize);
    config.increase_rate = Some("1000".into());
    config.iterations = Some(1);
    config.no_telnet = true;
    config.no_print_metrics = true;
    config.no_error_summary = true;
    config.quiet = 1;
    config.timeout = Some(REQUEST_TIMEOUT.as_secs().to_string());

    let mut attack = GooseAttack::initialize_with_config(config)
        .map_err(|e| anyhow::anyhow!("goose: {e:?}"))?
        .set_scheduler(GooseScheduler::Serial);
    let roles: [(Role, RoleFn); 3] = [
        (Role::Poller, |u, s| Box::pin(run_user(u, s, Role::Poller))),
        (Role::Admin, |u, s| Box::pin(run_user(u, s, Role::Admin))),
        (Role::Kiosk, |u, s| Box::pin(run_user(u, s, Role::Kiosk))),
    ];
    for (role, run) in roles {
        let count = users.behaviour(role).users;
        if count == 0 {
            continue;
        }
        attack = attack.register_scenario(
            GooseScenario::new(role.name())
                .set_weight(count as usize)?
                .register_transaction(role_transaction(shared, run, role.name())),
        );
    }
    let backstop = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + cap;
            while Instant::now() < deadline && !shared.stopped() {
                std::thread::sleep(Duration::from_millis(200));
            }
            shared.stop_load();
        })
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime
        .block_on(attack.execute())
        .map_err(|e| anyhow::anyhow!("goose: {e:?}"))?;
    shared.stop.store(true, Ordering::Relaxed);
    let _ = backstop.join();
    Ok(())
}
