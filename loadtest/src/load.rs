//! The load: goose users playing pollers, admins and kiosks, over HTTP only.
//!
//! goose schedules the users (closed model: one long transaction per user, ended by a shared
//! stop flag); each user keeps a fixed schedule itself (open model: it sleeps the interval
//! minus the time its request took, so a slow server does not slow the pollers down). Every
//! request is timed and classified by lockbench's own [`Recorder`] (µs histograms, status
//! codes, 503s, bodies that mention a lock, a per-second timeline), because the report needs
//! finer latency than goose's millisecond buckets and the lock classification.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use goose::config::GooseConfiguration;
use goose::goose::{
    GooseMethod, GooseRequest, GooseUser, Scenario as GooseScenario, Transaction, TransactionResult,
};
use goose::{GooseAttack, GooseScheduler};
use hdrhistogram::Histogram;

use crate::report::{EndpointStats, Latency, TimelinePoint};
use crate::scenario::{EndpointSpec, Endpoints, Users};

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds")
}

fn latency(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        p50: h.value_at_quantile(0.50),
        p95: h.value_at_quantile(0.95),
        p99: h.value_at_quantile(0.99),
        max: h.max(),
    }
}

#[derive(Default)]
struct EndpointAcc {
    stats: EndpointStats,
    hist: Option<Histogram<u64>>,
}

struct Second {
    requests: u64,
    lock_errors: u64,
    errors: u64,
    hist: Histogram<u64>,
}

/// Every request's outcome, per endpoint and per second.
pub struct Recorder {
    started: Instant,
    endpoints: Mutex<BTreeMap<String, EndpointAcc>>,
    seconds: Mutex<Vec<Second>>,
    /// Photos processed, sampled each second by the runner.
    photos: Mutex<Vec<u64>>,
}

/// How one request ended.
pub struct Outcome {
    /// None: no answer (connection error, timeout).
    pub status: Option<u16>,
    pub lock_mention: bool,
}

impl Recorder {
    pub fn new(started: Instant) -> Recorder {
        Recorder {
            started,
            endpoints: Mutex::new(BTreeMap::new()),
            seconds: Mutex::new(Vec::new()),
            photos: Mutex::new(Vec::new()),
        }
    }

    pub fn record(&self, endpoint: &str, outcome: &Outcome, elapsed: Duration) {
        let us = (elapsed.as_micros() as u64).max(1);
        let ok = outcome.status.is_some_and(|s| (200..300).contains(&s));
        let is_lock = outcome.status == Some(503) || outcome.lock_mention;
        {
            let mut endpoints = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
            let acc = endpoints.entry(endpoint.to_owned()).or_default();
            let s = &mut acc.stats;
            s.count += 1;
            if !ok {
                s.failures += 1;
            }
            let code = outcome
                .status
                .map_or_else(|| "error".to_owned(), |c| c.to_string());
            *s.status_codes.entry(code).or_default() += 1;
            if outcome.status == Some(503) {
                s.status_503 += 1;
            }
            if outcome.lock_mention {
                s.lock_mentions += 1;
            }
            acc.hist.get_or_insert_with(histogram).saturating_record(us);
        }
        let second = self.started.elapsed().as_secs() as usize;
        let mut seconds = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        while seconds.len() <= second {
            seconds.push(Second {
                requests: 0,
                lock_errors: 0,
                errors: 0,
                hist: histogram(),
            });
        }
        let s = &mut seconds[second];
        s.requests += 1;
        if is_lock {
            s.lock_errors += 1;
        } else if !ok {
            s.errors += 1;
        }
        s.hist.saturating_record(us);
    }

    /// Records the photos processed so far at this second.
    pub fn sample_photos(&self, processed: u64) {
        let second = self.started.elapsed().as_secs() as usize;
        let mut photos = self.photos.lock().unwrap_or_else(|p| p.into_inner());
        while photos.len() <= second {
            let last = photos.last().copied().unwrap_or(0);
            photos.push(last);
        }
        photos[second] = processed;
    }

    pub fn requests_total(&self) -> u64 {
        self.endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|a| a.stats.count)
            .sum()
    }

    pub fn lock_visible_total(&self) -> u64 {
        self.endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|a| a.stats.status_503.max(a.stats.lock_mentions))
            .sum()
    }

    pub fn endpoint_stats(&self) -> BTreeMap<String, EndpointStats> {
        self.endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, acc)| {
                let mut stats = acc.stats.clone();
                if let Some(h) = &acc.hist {
                    stats.latency_us = latency(h);
                }
                (name.clone(), stats)
            })
            .collect()
    }

    pub fn timeline(&self) -> Vec<TimelinePoint> {
        let seconds = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        let photos = self.photos.lock().unwrap_or_else(|p| p.into_inner());
        let len = seconds.len().max(photos.len());
        let mut last_photos = 0;
        (0..len)
            .map(|i| {
                if let Some(p) = photos.get(i) {
                    last_photos = *p;
                }
                let s = seconds.get(i);
                TimelinePoint {
                    t_s: i as u32,
                    requests: s.map_or(0, |s| s.requests),
                    lock_errors: s.map_or(0, |s| s.lock_errors),
                    errors: s.map_or(0, |s| s.errors),
                    p99_us: s.map_or(0, |s| latency(&s.hist).p99),
                    photos_processed: last_photos,
                }
            })
            .collect()
    }
}

/// What the users need to know, shared with the runner.
pub struct Shared {
    pub stop: AtomicBool,
    /// The batch being processed (0 until it is posted).
    pub batch_id: AtomicI64,
    pub recorder: Recorder,
    /// Emails a kiosk got a 2xx for (the audit looks for each).
    pub kiosk_acks: Mutex<Vec<String>>,
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
}

struct Call {
    endpoint: String,
    method: GooseMethod,
    path: String,
    body: Option<serde_json::Value>,
    admin: bool,
}

fn method_of(text: &str) -> GooseMethod {
    match text {
        "POST" => GooseMethod::Post,
        "PUT" => GooseMethod::Put,
        "PATCH" => GooseMethod::Patch,
        "DELETE" => GooseMethod::Delete,
        _ => GooseMethod::Get,
    }
}

fn fill(template: &str, user: usize, n: u64) -> String {
    template
        .replace("{user}", &user.to_string())
        .replace("{n}", &n.to_string())
}

fn from_spec(endpoint: &str, spec: &EndpointSpec, user: usize, n: u64) -> Call {
    let body = spec.body.as_deref().map(|b| {
        serde_json::from_str(&fill(b, user, n))
            .unwrap_or(serde_json::Value::String(fill(b, user, n)))
    });
    Call {
        endpoint: endpoint.to_owned(),
        method: method_of(&spec.method),
        path: fill(&spec.path, user, n),
        body,
        admin: false,
    }
}

/// Sends one request, timing and classifying it. Returns the status and body.
async fn send(user: &mut GooseUser, shared: &Shared, call: Call) -> (Option<u16>, String) {
    let started = Instant::now();
    let outcome = async {
        let mut rb = user.get_request_builder(&call.method, &call.path).ok()?;
        if call.admin {
            if let Some(token) = &shared.admin_token {
                rb = rb.bearer_auth(token);
            }
        }
        if let Some(body) = &call.body {
            rb = rb.json(body);
        }
        let request = GooseRequest::builder()
            .method(call.method)
            .path(call.path.as_str())
            .name(call.endpoint.as_str())
            .set_request_builder(rb)
            .build();
        Some(user.request(request).await)
    }
    .await;
    let (status, body) = match outcome {
        Some(Ok(goose_response)) => match goose_response.response {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                (Some(status), body)
            }
            Err(_) => (None, String::new()),
        },
        _ => (None, String::new()),
    };
    let ok = status.is_some_and(|s| (200..300).contains(&s));
    let lock_mention = !ok && body.to_ascii_lowercase().contains("locked");
    shared.recorder.record(
        &call.endpoint,
        &Outcome {
            status,
            lock_mention,
        },
        started.elapsed(),
    );
    (status, body)
}

/// Sleeps until the next tick of a fixed schedule, or until the stop flag.
async fn wait_tick(shared: &Shared, next: &mut Instant, interval: Duration) -> bool {
    *next += interval;
    let now = Instant::now();
    if *next < now {
        // Behind schedule (the server was slow): skip the missed ticks, do not burst.
        *next = now;
    }
    while Instant::now() < *next {
        if shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        let left = next.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(200))).await;
    }
    !shared.stop.load(Ordering::Relaxed)
}

/// Spreads the users of one role evenly over the first interval.
async fn stagger(shared: &Shared, index: usize, of: u32, interval: Duration) -> Instant {
    let offset = interval.mul_f64((index as f64 / of.max(1) as f64).fract());
    let start = Instant::now() + offset;
    while Instant::now() < start && !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(
            start
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200)),
        )
        .await;
    }
    start
}

async fn poller(user: &mut GooseUser, shared: Arc<Shared>) -> TransactionResult {
    let index = user.weighted_users_index;
    let interval = shared.users.poll_interval;
    let mut next = stagger(&shared, index, shared.users.pollers, interval).await;
    let mut since = 0_i64;
    let mut n = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        match &shared.endpoints {
            Some(e) => {
                send(user, &shared, from_spec("poller", &e.poller, index, n)).await;
                if let Some(status) = &e.status {
                    send(user, &shared, from_spec("status", status, index, n)).await;
                }
            }
            None => {
                let call = Call {
                    endpoint: "GET /api/registrations/updates".into(),
                    method: GooseMethod::Get,
                    path: format!("/api/registrations/updates?since={since}"),
                    body: None,
                    admin: false,
                };
                let (_, body) = send(user, &shared, call).await;
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                    since = v["last_id"].as_i64().unwrap_or(since);
                }
                let batch = shared.batch_id.load(Ordering::Relaxed);
                if batch > 0 {
                    let call = Call {
                        endpoint: "GET /api/batches/{id}/status".into(),
                        method: GooseMethod::Get,
                        path: format!("/api/batches/{batch}/status"),
                        body: None,
                        admin: true,
                    };
                    send(user, &shared, call).await;
                }
            }
        }
        if !wait_tick(&shared, &mut next, interval).await {
            break;
        }
    }
    Ok(())
}

async fn admin(user: &mut GooseUser, shared: Arc<Shared>) -> TransactionResult {
    let index = user.weighted_users_index;
    let interval = shared.users.admin_interval;
    let mut next = stagger(&shared, index, shared.users.admins, interval).await;
    let mut n = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let call = match shared.endpoints.as_ref().and_then(|e| e.admin.as_ref()) {
            Some(spec) => from_spec("admin", spec, index, n),
            None => Call {
                endpoint: "GET /admin".into(),
                method: GooseMethod::Get,
                path: "/admin".into(),
                body: None,
                admin: true,
            },
        };
        send(user, &shared, call).await;
        if !wait_tick(&shared, &mut next, interval).await {
            break;
        }
    }
    Ok(())
}

async fn kiosk(user: &mut GooseUser, shared: Arc<Shared>) -> TransactionResult {
    let index = user.weighted_users_index;
    let interval = shared.users.kiosk_interval;
    let mut next = stagger(&shared, index, shared.users.kiosks, interval).await;
    while !shared.stop.load(Ordering::Relaxed) {
        let n = shared.counter.fetch_add(1, Ordering::Relaxed);
        let (call, email) = match shared.endpoints.as_ref().and_then(|e| e.kiosk.as_ref()) {
            Some(spec) => (from_spec("kiosk", spec, index, n), None),
            None => {
                let email = format!("walkin-{index}-{n}@example.org");
                let body =
                    serde_json::json!({"name": format!("Walk-in {index}-{n}"), "email": email});
                (
                    Call {
                        endpoint: "POST /api/registrations".into(),
                        method: GooseMethod::Post,
                        path: "/api/registrations".into(),
                        body: Some(body),
                        admin: false,
                    },
                    Some(email),
                )
            }
        };
        let (status, _) = send(user, &shared, call).await;
        if let (Some(email), Some(s)) = (email, status) {
            if (200..300).contains(&s) {
                shared
                    .kiosk_acks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(email);
            }
        }
        if !wait_tick(&shared, &mut next, interval).await {
            break;
        }
    }
    Ok(())
}

type Role = fn(&mut GooseUser, Arc<Shared>) -> futures::future::BoxFuture<'_, TransactionResult>;

fn role_transaction(shared: &Arc<Shared>, role: Role, name: &str) -> Transaction {
    let shared = shared.clone();
    Transaction::new(Arc::new(move |user| role(user, shared.clone()))).set_name(name)
}

/// Runs the attack until the stop flag is set; `cap` is a backstop that sets the flag itself
/// (goose refuses a run time together with iterations). Blocks.
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
    config.timeout = Some("120".into());

    let mut attack = GooseAttack::initialize_with_config(config)
        .map_err(|e| anyhow::anyhow!("goose: {e:?}"))?
        .set_scheduler(GooseScheduler::Serial);
    let roles: [(&str, u32, Role); 3] = [
        ("poller", users.pollers, |u, s| Box::pin(poller(u, s))),
        ("admin", users.admins, |u, s| Box::pin(admin(u, s))),
        ("kiosk", users.kiosks, |u, s| Box::pin(kiosk(u, s))),
    ];
    for (name, count, role) in roles {
        if count == 0 {
            continue;
        }
        attack = attack.register_scenario(
            GooseScenario::new(name)
                .set_weight(count as usize)?
                .register_transaction(role_transaction(shared, role, name)),
        );
    }
    let backstop = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + cap;
            while Instant::now() < deadline && !shared.stop.load(Ordering::Relaxed) {
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
