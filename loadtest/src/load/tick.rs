//! One tick of one user: the requests its class sends (`sequence`: every request in order;
//! `weighted`: one, picked by weight), with their placeholders filled, headers set and body
//! encoded (form, JSON or raw); each sent, timed, checked against what the request expects
//! and classified through the [`Recorder`](super::Recorder); the body of each write that
//! succeeded kept for the audit; the tick's skipped predecessors charged to its answers.
//! When ticks fire is `mod.rs`'s.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::scenario::{Connection, Order, RequestSpec, UserClass, ADMIN_TOKEN};

use super::client;
use super::recorder::lock;
use super::{Outcome, Shared, Timing, UserCtx};

/// What the placeholders stand for in one request.
#[derive(Clone, Copy)]
struct Fill<'a> {
    /// `{user}`: the user's number.
    user: usize,
    /// `{n}`: the class's counter.
    n: u64,
    /// `{batch}`: the posted batch's id.
    batch: i64,
    /// `{since}`: the `last_id` of the user's previous JSON answer.
    since: i64,
    admin_token: Option<&'a str>,
}

impl Fill<'_> {
    fn apply(&self, template: &str) -> String {
        let mut text = template
            .replace("{user}", &self.user.to_string())
            .replace("{n}", &self.n.to_string())
            .replace("{batch}", &self.batch.to_string())
            .replace("{since}", &self.since.to_string());
        if let Some(token) = self.admin_token {
            text = text.replace(ADMIN_TOKEN, token);
        }
        fill_env(&text)
    }

    /// Every string of a JSON value filled.
    fn apply_json(&self, v: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(s) => Value::String(self.apply(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.apply_json(x)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| (k.clone(), self.apply_json(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// `{env.NAME}` replaced by lockbench's environment variable NAME (checked before the run by
/// [`check_env`]).
fn fill_env(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{env.") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        let name = &rest[start + 5..start + len];
        out.push_str(&std::env::var(name).unwrap_or_default());
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// The `{env.NAME}` a template names.
fn env_names(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{env.") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        names.push(&rest[start + 5..start + len]);
        rest = &rest[start + len + 1..];
    }
    names
}

/// Every `{env.NAME}` the classes use must be set: an error names the variable and where it
/// is used, before anything starts.
pub fn check_env(classes: &[UserClass]) -> anyhow::Result<()> {
    for c in classes {
        for r in &c.requests {
            let json = r.json.as_ref().map(|v| v.to_string()).unwrap_or_default();
            let mut texts: Vec<&str> = vec![&r.path, &json];
            texts.extend(r.body.as_deref());
            texts.extend(r.form.iter().flat_map(|f| f.values().map(String::as_str)));
            texts.extend(r.headers.values().map(String::as_str));
            texts.extend(c.headers.values().map(String::as_str));
            for name in texts.into_iter().flat_map(env_names) {
                if std::env::var(name).is_err() {
                    anyhow::bail!(
                        "users.{}.requests.{}: {{env.{name}}} is not set in lockbench's environment",
                        c.name,
                        r.name
                    );
                }
            }
        }
    }
    Ok(())
}

/// Moves a user's cursor to the `last_id` of an answer, if it has one.
fn advance_since(ctx: &UserCtx, body: &str) {
    if !body.contains("last_id") {
        return;
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(last) = v["last_id"].as_i64() {
            ctx.since.fetch_max(last, Ordering::Relaxed);
        }
    }
}

/// What one request of a tick got: its time from its send.
struct Answer {
    from_send: Duration,
}

/// A request filled for sending, and the body the audit keeps if it succeeds.
struct Filled {
    request: reqwest::RequestBuilder,
    ack: Option<serde_json::Value>,
}

fn build(ctx: &UserCtx, r: &RequestSpec, fill: &Fill<'_>) -> Filled {
    let method = reqwest::Method::from_bytes(r.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut rb = ctx
        .client
        .request(method, format!("{}{}", ctx.base, fill.apply(&r.path)));
    let mut headers: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in ctx.class().headers.iter().chain(&r.headers) {
        headers.insert(k, v);
    }
    for (name, value) in headers {
        if value.contains(ADMIN_TOKEN) && fill.admin_token.is_none() {
            continue;
        }
        rb = rb.header(name, fill.apply(value));
    }
    if ctx.connection == Connection::Close {
        rb = rb.header(reqwest::header::CONNECTION, "close");
    }
    let mut ack = None;
    if let Some(form) = &r.form {
        let filled: BTreeMap<&str, String> = form
            .iter()
            .map(|(k, v)| (k.as_str(), fill.apply(v)))
            .collect();
        rb = rb.form(&filled);
        ack = Some(serde_json::to_value(&filled).unwrap_or_default());
    } else if let Some(json) = &r.json {
        let filled = fill.apply_json(json);
        rb = rb.json(&filled);
        ack = Some(filled);
    } else if let Some(body) = &r.body {
        let text = fill.apply(body);
        ack = Some(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.clone())));
        rb = rb.body(text);
    }
    Filled {
        request: rb,
        ack: ack.filter(|_| r.method != "GET"),
    }
}

/// Sends one request of the tick `intended` whose first request went at `tick_sent`,
/// timing, checking and classifying it; keeps the body of a write that succeeded.
async fn send(
    ctx: &UserCtx,
    r: &RequestSpec,
    fill: &Fill<'_>,
    intended: Instant,
    tick_sent: Instant,
) -> Answer {
    let shared = &ctx.shared;
    let Filled { request, ack } = build(ctx, r, fill);
    let sent = Instant::now();
    shared.recorder.request_sent(ctx.name(), sent);
    let (status, body, timeout) = match client::send_as(ctx.cookies.clone(), request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.text().await {
                Ok(body) => (Some(status), body, false),
                Err(e) => (Some(status), String::new(), e.is_timeout()),
            }
        }
        Err(e) => (None, String::new(), e.is_timeout()),
    };
    let answered = Instant::now();
    let expected = r.expected(status, &body) && !(timeout && status.is_none());
    let lock_mention = !expected && body.to_ascii_lowercase().contains("locked");
    let timing = Timing {
        intended,
        tick_sent,
        sent,
        answered,
    };
    shared.recorder.record(
        &r.name,
        &Outcome {
            status,
            expected,
            lock_mention,
            timeout,
        },
        timing,
    );
    advance_since(ctx, &body);
    if let (true, Some(ack)) = (expected, ack) {
        shared.ack(&r.name, ack);
    }
    Answer {
        from_send: timing.from_send(),
    }
}

/// Whether a request can go: one that names `{batch}` waits until a batch is posted.
fn ready(r: &RequestSpec, batch: i64) -> bool {
    batch > 0 || !r.path.contains("{batch}")
}

/// The requests a tick of `class` sends, in order, with `batch` the posted batch (0 until
/// one is).
fn pick(class: &UserClass, batch: i64) -> Vec<&RequestSpec> {
    let ready: Vec<&RequestSpec> = class.requests.iter().filter(|r| ready(r, batch)).collect();
    match class.order {
        Order::Sequence => ready,
        Order::Weighted => {
            let total: u64 = ready.iter().map(|r| u64::from(r.weight)).sum();
            if total == 0 {
                return Vec::new();
            }
            let mut draw = rand::random_range(0..total);
            for r in &ready {
                let w = u64::from(r.weight);
                if draw < w {
                    return vec![r];
                }
                draw -= w;
            }
            Vec::new()
        }
    }
}

/// The requests a tick of class `class` would call, in order (what a tick still waiting at
/// the stop is charged to); none for a weighted class, whose pick is not known.
pub(super) fn tick_endpoints(shared: &Shared, class: usize) -> Vec<&str> {
    let c = &shared.classes[class];
    match c.order {
        Order::Sequence => pick(c, shared.batch_id.load(Ordering::Relaxed))
            .into_iter()
            .map(|r| r.name.as_str())
            .collect(),
        Order::Weighted => Vec::new(),
    }
}

/// One tick of one user: its class's requests, in order.
pub(super) async fn tick(ctx: &UserCtx, intended: Instant) {
    let shared = &ctx.shared;
    // Ticks skipped before this one are served by this one's answers, as a request held back
    // and sent late is (wrk2): their latency runs from their own tick to these answers.
    let carried = std::mem::take(&mut *lock(&ctx.pending));
    let first_send = Instant::now();
    shared.recorder.tick_started(ctx.name(), first_send);
    let batch = shared.batch_id.load(Ordering::Relaxed);
    let fill = Fill {
        user: ctx.index,
        n: shared.counters[ctx.class].fetch_add(1, Ordering::Relaxed) + 1,
        batch,
        since: 0,
        admin_token: shared.admin_token.as_deref(),
    };
    let mut calls: Vec<(&str, Duration)> = Vec::new();
    for r in pick(ctx.class(), batch) {
        let fill = Fill {
            since: ctx.since.load(Ordering::Relaxed),
            ..fill
        };
        let answer = send(ctx, r, &fill, intended, first_send).await;
        calls.push((&r.name, answer.from_send));
    }
    let done = Instant::now();
    shared
        .recorder
        .tick_answered(ctx.name(), intended, first_send, done);
    shared
        .recorder
        .skipped_served(ctx.name(), &carried, first_send, done, &calls);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_placeholders_are_filled_and_checked_by_name() {
        std::env::set_var("LOCKBENCH_TEST_TOKEN_A", "s3cret");
        assert_eq!(
            fill_env("Bearer {env.LOCKBENCH_TEST_TOKEN_A}!"),
            "Bearer s3cret!"
        );
        assert_eq!(env_names("{env.A}/{env.B}"), vec!["A", "B"]);
    }
}
