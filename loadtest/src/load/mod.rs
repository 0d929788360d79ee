//! The load: goose users of the scenario's user classes, over HTTP only.
//!
//! goose starts one user per class (one long transaction, ended by a shared stop flag),
//! which starts every user of its class at once as a task of its own: no user waits for a
//! launch rate, and the phases of a class's users are spread evenly over its first interval
//! from the moment the class started. Each user paces itself as its class's pace ([`PollModel`]) says: `interval`
//! keeps a schedule of ticks, one every interval from a phase spread over the first
//! interval, and fires while earlier requests are still out (up to `max_in_flight`, then
//! skips), as a page polling with `setInterval`; `after-response` waits for the answer and
//! restarts its schedule when it is late, as a `setTimeout` chain does; `closed` sends its
//! next tick when the previous one is answered, after a think time, as locust's users do.
//! An `arrival-rate` class's goose user starts ticks at the class's rate in the class's
//! `count` slots (each slot a user of its own), and counts a tick that finds every
//! slot busy as dropped. Each user keeps its own cookies; its connections are its own, its
//! class's pool or one per request, as its class's [`Connection`] says (`client.rs`).
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
//! Here: the users' shared state, each user's client and schedule (one function per pace)
//! and the goose attack; what one tick sends is `tick.rs`'s, the measuring
//! `recorder.rs`'s.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use goose::config::GooseConfiguration;
use goose::goose::{GooseUser, Scenario as GooseScenario, Transaction, TransactionResult};
use goose::{GooseAttack, GooseScheduler};
use tokio::task::JoinSet;

mod client;
mod recorder;
mod tick;

use crate::scenario::{Connection, PollModel, UserClass};
use recorder::lock;
pub use recorder::{Outcome, Recorder, Timing};
pub use tick::check_env;
use tick::{tick, tick_endpoints};

/// A tick sent this much or more after its intended time counts as late.
pub const LATE_AFTER: Duration = Duration::from_millis(10);

/// What the users need to know, shared with the runner.
pub struct Shared {
    /// Set to stop the load; [`Shared::stop_load`] also notes the moment, which ticks still
    /// waiting are charged up to (set directly, the moment is when a user first sees it).
    pub stop: AtomicBool,
    stopped_at: OnceLock<Instant>,
    /// The batch being processed (0 until it is posted).
    pub batch_id: AtomicI64,
    pub recorder: Recorder,
    /// The bodies of writes (requests other than GET) that got a success, per request name:
    /// the audit looks for each.
    acks: Mutex<BTreeMap<String, Vec<serde_json::Value>>>,
    pub admin_token: Option<String>,
    /// The classes the load runs (a class with no users is kept, and starts none).
    pub classes: Vec<UserClass>,
    /// `{n}` of each class: no two requests of a class get the same.
    counters: Vec<AtomicU64>,
    /// CPU seconds the load's own threads used, once the load has stopped.
    load_cpu_s: OnceLock<f64>,
    /// Each class's shared client (its users' own under `keep-alive`).
    clients: Vec<reqwest::Client>,
}

impl Shared {
    pub fn new(classes: Vec<UserClass>, admin_token: Option<String>) -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            stopped_at: OnceLock::new(),
            batch_id: AtomicI64::new(0),
            recorder: Recorder::new(Instant::now()),
            acks: Mutex::new(BTreeMap::new()),
            admin_token,
            counters: classes.iter().map(|_| AtomicU64::new(0)).collect(),
            clients: classes
                .iter()
                .map(|c| client::client_for(c.connection()))
                .collect(),
            classes,
            load_cpu_s: OnceLock::new(),
        }
    }

    /// CPU seconds (user + system) the load's threads used, known once the load stopped.
    pub fn load_cpu_s(&self) -> Option<f64> {
        self.load_cpu_s.get().copied()
    }

    /// The bodies of the writes of request `name` that got a success.
    pub fn acks_of(&self, name: &str) -> Vec<serde_json::Value> {
        lock(&self.acks).get(name).cloned().unwrap_or_default()
    }

    fn ack(&self, name: &str, body: serde_json::Value) {
        lock(&self.acks)
            .entry(name.to_owned())
            .or_default()
            .push(body);
    }

    /// Users goose starts: one per class with users, which starts the class's users.
    fn goose_users(&self) -> usize {
        self.classes.iter().filter(|c| c.count > 0).count()
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

/// One simulated user: its client (its own, or its class's: see `client.rs`), its cookies
/// and what its ticks share.
struct UserCtx {
    /// Its class, an index into `Shared::classes`.
    class: usize,
    index: usize,
    base: String,
    client: reqwest::Client,
    connection: Connection,
    cookies: Arc<reqwest::cookie::Jar>,
    shared: Arc<Shared>,
    in_flight: AtomicU32,
    /// Intended times of skipped ticks, to be served by the next tick sent.
    pending: Mutex<Vec<Instant>>,
    /// The `{since}` cursor: the `last_id` of the user's last JSON answer.
    since: AtomicI64,
}

impl UserCtx {
    fn new(shared: &Arc<Shared>, class: usize, index: usize, base: &str) -> UserCtx {
        let connection = shared.classes[class].connection();
        UserCtx {
            class,
            index,
            base: base.trim_end_matches('/').to_owned(),
            client: client::user_client(connection, &shared.clients[class]),
            connection,
            cookies: Arc::default(),
            shared: shared.clone(),
            in_flight: AtomicU32::new(0),
            pending: Mutex::new(Vec::new()),
            since: AtomicI64::new(0),
        }
    }

    fn class(&self) -> &UserClass {
        &self.shared.classes[self.class]
    }

    fn name(&self) -> &str {
        &self.class().name
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

fn skip(ctx: &UserCtx, intended: Instant) {
    ctx.shared.recorder.tick_due(ctx.name());
    ctx.shared.recorder.tick_skipped(ctx.name());
    lock(&ctx.pending).push(intended);
}

/// A class's goose user: starts every user of the class at once, each a task of its own
/// (an arrival-rate class runs its schedule over its slots instead), and waits for them.
/// Users are numbered across classes (`{user}`), each class's after the previous ones'.
async fn run_class(user: &mut GooseUser, shared: Arc<Shared>, class: usize) -> TransactionResult {
    let base = user.base_url.as_str().to_owned();
    let c = &shared.classes[class];
    let first_user: usize = shared.classes[..class]
        .iter()
        .map(|c| c.count as usize)
        .sum();
    if let (PollModel::ArrivalRate, Some(period)) = (c.pace, c.interval()) {
        arrival_rate(&shared, class, &base, first_user, period).await;
        return Ok(());
    }
    let started = Instant::now();
    let mut users = JoinSet::new();
    for i in 0..c.count as usize {
        let ctx = Arc::new(UserCtx::new(&shared, class, first_user + i, &base));
        // Phases spread evenly over the first interval, from the moment the class started.
        let phase = c
            .interval()
            .map(|every| every.mul_f64(i as f64 / f64::from(c.count.max(1))));
        users.spawn(run_user(ctx, started + phase.unwrap_or_default()));
    }
    while users.join_next().await.is_some() {}
    Ok(())
}

/// One user of a paced class, its first tick at `first`, until the load stops.
async fn run_user(ctx: Arc<UserCtx>, first: Instant) {
    let shared = ctx.shared.clone();
    let c = ctx.class();
    let interval = match (c.pace, c.interval()) {
        (PollModel::Closed, _) | (_, None) => {
            closed_loop(&ctx).await;
            return;
        }
        (_, Some(every)) => every,
    };
    let mut at = Schedule {
        intended: first,
        fire_at: first,
    };
    let mut tasks = JoinSet::new();
    while sleep_until(&shared, at.fire_at).await {
        let now = Instant::now();
        match c.pace {
            PollModel::AfterResponse => after_response_tick(&ctx, interval, &mut at, now).await,
            _ => interval_tick(&ctx, interval, &mut at, now, &mut tasks),
        }
    }
    charge_waiting_at_stop(&ctx);
    while tasks.join_next().await.is_some() {}
}

/// `closed`: the next tick goes when the previous one is answered and the think time has
/// passed; a user's first tick waits a think time too, so users do not start in step.
async fn closed_loop(ctx: &UserCtx) {
    let shared = &ctx.shared;
    let think = ctx.class().think;
    let draw = || {
        if think.max > think.min {
            let span = (think.max - think.min).as_micros() as u64;
            think.min + Duration::from_micros(rand::random_range(0..=span))
        } else {
            think.min
        }
    };
    let mut next = Instant::now() + draw();
    while sleep_until(shared, next).await {
        let now = Instant::now();
        shared.recorder.tick_due(ctx.name());
        shared.recorder.tick_sent(ctx.name(), false);
        Box::pin(tick(ctx, now)).await;
        next = Instant::now() + draw();
    }
}

/// `arrival-rate`: a tick every `period` whatever the answers, in one of the class's slots;
/// a tick that finds every slot busy is dropped, and counted.
async fn arrival_rate(
    shared: &Arc<Shared>,
    class: usize,
    base: &str,
    first_user: usize,
    period: Duration,
) {
    let c = &shared.classes[class];
    let slots: Vec<Arc<UserCtx>> = (0..c.count as usize)
        .map(|i| Arc::new(UserCtx::new(shared, class, first_user + i, base)))
        .collect();
    let free = Arc::new(Mutex::new((0..slots.len()).rev().collect::<Vec<usize>>()));
    let mut at = Instant::now();
    let mut tasks = JoinSet::new();
    while sleep_until(shared, at).await {
        let now = Instant::now();
        shared.recorder.tick_due(&c.name);
        let slot = lock(&free).pop();
        match slot {
            Some(i) => {
                shared
                    .recorder
                    .tick_sent(&c.name, now.saturating_duration_since(at) >= LATE_AFTER);
                let (ctx, free, intended) = (slots[i].clone(), free.clone(), at);
                tasks.spawn(async move {
                    tick(&ctx, intended).await;
                    lock(&free).push(i);
                });
            }
            None => shared.recorder.tick_dropped(&c.name),
        }
        while tasks.try_join_next().is_some() {}
        at += period;
    }
    while tasks.join_next().await.is_some() {}
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
    interval: Duration,
    at: &mut Schedule,
    now: Instant,
    tasks: &mut JoinSet<()>,
) {
    let shared = &ctx.shared;
    // Ticks the generator itself overslept by a whole interval are skipped.
    while at.intended + interval <= now && shared.before_stop(at.intended) {
        skip(ctx, at.intended);
        at.intended += interval;
    }
    shared.recorder.tick_due(ctx.name());
    if ctx.in_flight.load(Ordering::Relaxed) >= ctx.class().max_in_flight() {
        shared.recorder.tick_skipped(ctx.name());
        lock(&ctx.pending).push(at.intended);
    } else {
        shared.recorder.tick_sent(
            ctx.name(),
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
    let shared = &ctx.shared;
    shared.recorder.tick_due(ctx.name());
    shared.recorder.tick_sent(
        ctx.name(),
        now.saturating_duration_since(at.intended) >= LATE_AFTER,
    );
    Box::pin(tick(ctx, at.intended)).await;
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
        ctx.name(),
        &pending,
        &tick_endpoints(shared, ctx.class),
        shared.stop_instant(),
    );
}

fn class_transaction(shared: &Arc<Shared>, class: usize, name: &str) -> Transaction {
    let shared = shared.clone();
    Transaction::new(Arc::new(move |user| {
        let shared = shared.clone();
        Box::pin(run_class(user, shared, class))
    }))
    .set_name(name)
}

/// Threads the load runs on: `LOCKBENCH_LOAD_THREADS`, default 1 (one thread drives
/// thousands of users, and every cross-thread wake-up costs system time the app under test
/// could have used).
fn load_threads() -> usize {
    std::env::var("LOCKBENCH_LOAD_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// Starts the load on a thread of its own: the attack against `host` until `shared.stop`
/// is set or `cap` has passed. Join the handle for the load's own errors.
pub fn start(
    host: &str,
    shared: &Arc<Shared>,
    cap: Duration,
) -> std::thread::JoinHandle<anyhow::Result<()>> {
    let (host, shared) = (host.to_owned(), shared.clone());
    std::thread::Builder::new()
        .name(LOAD_THREAD.into())
        .spawn(move || attack(&host, &shared, cap))
        .expect("starting the load's thread")
}

/// The name of every thread the load runs on, so its CPU time can be told apart.
const LOAD_THREAD: &str = "lockbench-load";

/// CPU seconds (user + system) used so far by this process's threads named `name`, from
/// `/proc/self/task/*/stat`; None where that cannot be read.
fn threads_cpu_s(name: &str) -> Option<f64> {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()? as f64;
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // pid (comm) state ... utime stime: fields 14 and 15, counted after the comm's ")".
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        if !comm.ends_with(&format!("({name}")) {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (Some(u), Some(s)) = (fields.get(11), fields.get(12)) else {
            continue;
        };
        total += u.parse::<u64>().unwrap_or(0) + s.parse::<u64>().unwrap_or(0);
    }
    Some(total as f64 / ticks)
}

/// Runs the attack until the stop flag is set; `cap` is a backstop that sets the flag itself
/// (goose refuses a run time together with iterations). Blocks.
pub fn attack(host: &str, shared: &Arc<Shared>, cap: Duration) -> anyhow::Result<()> {
    let mut config = GooseConfiguration::default();
    config.host = Some(host.to_owned());
    config.users = Some(shared.goose_users());
    config.increase_rate = Some("1000".into());
    config.iterations = Some(1);
    config.no_telnet = true;
    config.no_print_metrics = true;
    config.no_error_summary = true;
    config.quiet = 1;
    config.timeout = Some(client::REQUEST_TIMEOUT.as_secs().to_string());

    let mut attack = GooseAttack::initialize_with_config(config)
        .map_err(|e| anyhow::anyhow!("goose: {e:?}"))?
        .set_scheduler(GooseScheduler::Serial);
    for (i, class) in shared.classes.iter().enumerate() {
        if class.count == 0 {
            continue;
        }
        attack = attack.register_scenario(
            GooseScenario::new(&class.name)
                .set_weight(1)?
                .register_transaction(class_transaction(shared, i, &class.name)),
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
        .worker_threads(load_threads())
        .thread_name(LOAD_THREAD)
        .enable_all()
        .build()?;
    let result = runtime.block_on(attack.execute());
    if let Some(cpu) = threads_cpu_s(LOAD_THREAD) {
        let _ = shared.load_cpu_s.set(cpu);
    }
    result.map_err(|e| anyhow::anyhow!("goose: {e:?}"))?;
    shared.stop.store(true, Ordering::Relaxed);
    let _ = backstop.join();
    Ok(())
}
