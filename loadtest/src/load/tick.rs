//! One tick of one user: the requests its role sends, in order (a poller's updates and,
//! once a batch is posted, its status; an admin's page; a kiosk's registration, whose body
//! is kept for the audit when it got a 2xx), against the reference server's endpoints or an
//! external app's `[endpoints]` with their placeholders filled; each request sent, timed and
//! classified through the [`Recorder`](super::Recorder), and the tick's skipped
//! predecessors charged to its answers. When ticks fire is `mod.rs`'s.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::scenario::{Connection, EndpointSpec, Role};

use super::recorder::lock;
use super::{Outcome, Shared, Timing, UserCtx};

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
pub(super) fn tick_endpoints(shared: &Shared, role: Role) -> Vec<&'static str> {
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
pub(super) async fn tick(ctx: &UserCtx, intended: Instant) {
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
    let run = TickRun {
        ctx,
        intended,
        first_send,
    };
    // Each request the tick made: its endpoint and its time from its send.
    let calls = match ctx.role {
        Role::Poller => poller_tick(&run, fill).await,
        Role::Admin => admin_tick(&run, fill).await,
        Role::Kiosk => kiosk_tick(&run, fill).await,
    };
    let done = Instant::now();
    shared
        .recorder
        .tick_answered(ctx.role, intended, first_send, done);
    let calls: Vec<(&str, Duration)> = calls.iter().map(|(e, d)| (e.as_str(), *d)).collect();
    shared
        .recorder
        .skipped_served(ctx.role, &carried, first_send, done, &calls);
}

/// A tick under way: its user, the moment it was meant for, and when its first request went.
struct TickRun<'a> {
    ctx: &'a UserCtx,
    intended: Instant,
    first_send: Instant,
}

impl TickRun<'_> {
    /// Sends one request of the tick: its endpoint and its answer.
    async fn call(&self, c: Call) -> (String, Answer) {
        let endpoint = c.endpoint.clone();
        let answer = send(self.ctx, c, self.intended, self.first_send).await;
        (endpoint, answer)
    }
}

/// A poller's tick: the updates since its cursor (which moves to the answer's `last_id`),
/// then the batch's status once there is one to ask about.
async fn poller_tick(run: &TickRun<'_>, fill: Fill) -> Vec<(String, Duration)> {
    let shared = &run.ctx.shared;
    let (first, second) = match &shared.endpoints {
        Some(e) => (
            from_spec("poller", &e.poller, fill),
            e.status.as_ref().map(|s| from_spec("status", s, fill)),
        ),
        None => (
            Call {
                endpoint: UPDATES.into(),
                method: Method::Get,
                path: format!("/api/registrations/updates?since={}", fill.since),
                body: None,
                admin: false,
            },
            Some(Call {
                endpoint: BATCH_STATUS.into(),
                method: Method::Get,
                path: format!("/api/batches/{}/status", fill.batch),
                body: None,
                admin: true,
            }),
        ),
    };
    let mut calls = Vec::new();
    let (endpoint, answer) = run.call(first).await;
    advance_since(run.ctx, &answer.body);
    calls.push((endpoint, answer.from_send));
    if let Some(second) = second.filter(|_| polls_status(shared, fill.batch)) {
        let (endpoint, answer) = run.call(second).await;
        calls.push((endpoint, answer.from_send));
    }
    calls
}

/// An admin's tick: the dashboard page.
async fn admin_tick(run: &TickRun<'_>, fill: Fill) -> Vec<(String, Duration)> {
    let shared = &run.ctx.shared;
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
    let (endpoint, answer) = run.call(c).await;
    vec![(endpoint, answer.from_send)]
}

/// A kiosk's tick: a walk-in's registration, its body kept for the audit when it got a 2xx.
async fn kiosk_tick(run: &TickRun<'_>, fill: Fill) -> Vec<(String, Duration)> {
    let (ctx, shared) = (run.ctx, &run.ctx.shared);
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
    let (endpoint, answer) = run.call(c).await;
    if let (Some(body), Some(s)) = (body, answer.status) {
        if (200..300).contains(&s) {
            lock(&shared.kiosk_acks).push(body);
        }
    }
    vec![(endpoint, answer.from_send)]
}
