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
//!
//! Here: the users' shared state, each user's client and schedule (one function per poll
//! model) and the goose attack; what one tick sends is `tick.rs`'s, the measuring
//! `recorder.rs`'s.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use goose::config::GooseConfiguration;
use goose::goose::{GooseUser, Scenario as GooseScenario, Transaction, TransactionResult};
use goose::{GooseAttack, GooseScheduler};
use tokio::task::JoinSet;

mod recorder;
mod tick;

use crate::scenario::{Connection, Endpoints, PollModel, Role, RoleBehaviour, Users};
use recorder::lock;
pub use recorder::{Outcome, Recorder, Timing};
use tick::{tick, tick_endpoints};

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
    let first = first_tick(index, b.users, b.interval);
    let mut at = Schedule {
        intended: first,
        fire_at: first,
    };
    let mut tasks = JoinSet::new();
    while sleep_until(&shared, at.fire_at).await {
        let now = Instant::now();
        match b.poll_model {
            PollModel::Interval => interval_tick(&ctx, b, &mut at, now, &mut tasks),
            PollModel::AfterResponse => after_response_tick(&ctx, b.interval, &mut at, now).await,
        }
    }
    charge_waiting_at_stop(&ctx);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Where a user's schedule stands: the tick the next request is for (`intended`) and when
/// it goes (`fire_at`).
struct Schedule {
    intended: Instant,
    fire_at: Instant,
}

/// `interval` at `now`: ticks keep their phase; the tick goes on a task of its own unless
/// `max_in_flight` requests are out (then it is skipped), and the next is one interval on.
fn interval_tick(
    ctx: &Arc<UserCtx>,
    b: RoleBehaviour,
    at: &mut Schedule,
    now: Instant,
    tasks: &mut JoinSet<()>,
) {
    let (shared, role, interval) = (&ctx.shared, ctx.role, b.interval);
    // Ticks the generator itself overslept by a whole interval are skipped.
    while at.intended + interval <= now && shared.before_stop(at.intended) {
        skip(ctx, at.intended);
        at.intended += interval;
    }
    shared.recorder.tick_due(role);
    if ctx.in_flight.load(Ordering::Relaxed) >= b.max_in_flight {
        shared.recorder.tick_skipped(role);
        lock(&ctx.pending).push(at.intended);
    } else {
        shared.recorder.tick_sent(
            role,
            now.saturating_duration_since(at.intended) >= LATE_AFTER,
        );
        ctx.in_flight.fetch_add(1, Ordering::Relaxed);
        let ctx = ctx.clone();
        let tick_at = at.intended;
        tasks.spawn(async move {
            tick(&ctx, tick_at).await;
            ctx.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    while tasks.try_join_next().is_some() {}
    at.intended += interval;
    at.fire_at = at.intended;
}

/// `after-response` at `now`: the tick runs to its last answer; the next goes one interval
/// after this one went, or at once when that has passed, the other ticks that passed
/// skipped and the schedule restarted from now.
async fn after_response_tick(ctx: &UserCtx, interval: Duration, at: &mut Schedule, now: Instant) {
    let (shared, role) = (&ctx.shared, ctx.role);
    shared.recorder.tick_due(role);
    shared.recorder.tick_sent(
        role,
        now.saturating_duration_since(at.intended) >= LATE_AFTER,
    );
    tick(ctx, at.intended).await;
    // The user's own schedule: one interval after this tick went.
    let next = at.fire_at + interval;
    let now = Instant::now();
    if next >= now {
        at.intended = next;
        at.fire_at = next;
    } else {
        // Late: the first tick that passed goes now; the others that passed are
        // skipped; the schedule restarts from now.
        let mut passed = next + interval;
        while passed <= now && shared.before_stop(passed) {
            skip(ctx, passed);
            passed += interval;
        }
        at.intended = next;
        at.fire_at = now;
    }
}

/// Ticks still waiting to be sent (skipped, not yet served) are charged up to the stop;
/// requests already out are waited for and recorded as they are answered.
fn charge_waiting_at_stop(ctx: &UserCtx) {
    let shared = &ctx.shared;
    let pending = std::mem::take(&mut *lock(&ctx.pending));
    shared.recorder.pending_at_stop(
        ctx.role,
        &pending,
        &tick_endpoints(shared, ctx.role),
        shared.stop_instant(),
    );
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
