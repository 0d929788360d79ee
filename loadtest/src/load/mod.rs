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
//! omission, as wrk2 measures). A tick that was skipped is served by the next request the
//! user sends: its latency from the tick runs to that request's answer, as wrk2 measures a
//! request it had to send late. So latency from the tick is never below latency from the
//! send. The load talks to the server only over HTTP; it starts and stops nothing.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    pub stop: AtomicBool,
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
            batch_id: AtomicI64::new(0),
            recorder: Recorder::new(Instant::now()),
            kiosk_acks: Mutex::new(Vec::new()),
            admin_token,
            users,
            endpoints,
            counter: AtomicU64::new(0),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
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

/// Sends one request, timing and classifying it. Returns the status and body.
async fn send(ctx: &UserCtx, call: Call, intended: Instant) -> (Option<u16>, String) {
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
    shared.recorder.record(
        &call.endpoint,
        &Outcome {
            status,
            lock_mention,
        },
        Timing {
            intended,
            sent,
            answered,
        },
    );
    (status, body)
}

/// One tick of one user: the role's requests, in order.
async fn tick(ctx: &UserCtx, intended: Instant) {
    let shared = &ctx.shared;
    // Ticks skipped before this one are served by this one's answer, as a request held back
    // and sent late is (wrk2): their latency runs from their own tick to this answer.
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
    match ctx.role {
        Role::Poller => match &shared.endpoints {
            Some(e) => {
                let call = from_spec("poller", &e.poller, fill);
                let (_, body) = send(ctx, call, intended).await;
                advance_since(ctx, &body);
                if let Some(status) = &e.status {
                    if batch > 0 || !status.path.contains("{batch}") {
                        let call = from_spec("status", status, fill);
                        send(ctx, call, intended).await;
                    }
                }
            }
            None => {
                let call = Call {
                    endpoint: "GET /api/registrations/updates".into(),
                    method: Method::Get,
                    path: format!("/api/registrations/updates?since={since}"),
                    body: None,
                    admin: false,
                };
                let (_, body) = send(ctx, call, intended).await;
                advance_since(ctx, &body);
                if batch > 0 {
                    let call = Call {
                        endpoint: "GET /api/batches/{id}/status".into(),
                        method: Method::Get,
                        path: format!("/api/batches/{batch}/status"),
                        body: None,
                        admin: true,
                    };
                    send(ctx, call, intended).await;
                }
            }
        },
        Role::Admin => {
            let call = match shared.endpoints.as_ref().and_then(|e| e.admin.as_ref()) {
                Some(spec) => from_spec("admin", spec, fill),
                None => Call {
                    endpoint: "GET /admin".into(),
                    method: Method::Get,
                    path: "/admin".into(),
                    body: None,
                    admin: true,
                },
            };
            send(ctx, call, intended).await;
        }
        Role::Kiosk => {
            let k = shared.counter.fetch_add(1, Ordering::Relaxed);
            let call = match shared.endpoints.as_ref().and_then(|e| e.kiosk.as_ref()) {
                Some(spec) => from_spec("kiosk", spec, Fill { n: k, ..fill }),
                None => {
                    let email = format!("walkin-{}-{k}@example.org", ctx.index);
                    Call {
                        endpoint: "POST /api/registrations".into(),
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
            let body = call.body.clone();
            let (status, _) = send(ctx, call, intended).await;
            if let (Some(body), Some(s)) = (body, status) {
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
    for t in carried {
        shared.recorder.skipped_answered(ctx.role, t, done);
    }
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
                while intended + interval <= now {
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
                    while passed <= now {
                        skip(&ctx, passed);
                        passed += interval;
                    }
                    intended = next;
                    fire_at = now;
                }
            }
        }
    }
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
            shared.stop.store(true, Ordering::Relaxed);
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
