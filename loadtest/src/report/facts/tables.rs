//! The tables a report shows as plain text cells, with the notes under them: the requests
//! per endpoint (the load's and lockbench's own), the users per role and their mix, the
//! faults applied and the worker restarts.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::report::format::{count, fixed, ms};
use crate::report::{EndpointStats, Latency, Report};

/// A table as plain text cells.
pub(crate) struct TextTable {
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// Columns holding numbers (right-aligned).
    pub numeric: Vec<usize>,
}

/// What the two latencies mean, under the requests table.
pub(crate) const LATENCY_NOTE: &str = "Latency is measured from the moment each request was sent; \"from tick\" measures from the tick it was meant for, so time a request spent waiting to be sent counts too (corrected for coordinated omission, as wrk2 measures): a request's own time plus its tick's lateness, a skipped tick charged to the endpoints of the request that served it, and a tick still waiting when the load stopped charged up to the stop. Lock errors: requests that reached their client as a 503 or an answer mentioning a lock, each counted once. Unanswered at stop: ticks still waiting to be sent when the load stopped. \"–\": an endpoint that never answered has no latency.";

/// One row per endpoint of `requests` (the load's, or lockbench's own): counts, lock errors
/// that reached the client, ticks unanswered at the stop, both latencies; "–" for the
/// latency of an endpoint that never answered.
/// "49 (49 other 5xx)": the failures, and why when any failed.
fn failures_cell(s: &EndpointStats) -> String {
    if s.failures_by_class.is_empty() {
        return count(s.failures);
    }
    let why: Vec<String> = s
        .failures_by_class
        .iter()
        .map(|(class, n)| format!("{} {class}", count(*n)))
        .collect();
    format!("{} ({})", count(s.failures), why.join(", "))
}

/// One row per request: count, failures and why, lock errors, latency from the send and
/// from the tick; with `load_s`, the requests answered per second over the load.
pub(crate) fn request_table(
    requests: &BTreeMap<String, EndpointStats>,
    load_s: Option<f64>,
) -> TextTable {
    let header = vec![
        "request",
        "count",
        "req/s",
        "failures (why)",
        "503",
        "lock errors",
        "unanswered at stop",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "p99 from tick ms",
    ];
    let rows = requests
        .iter()
        .map(|(endpoint, s)| {
            let sent = |us: u64| {
                if s.count > 0 {
                    ms(us)
                } else {
                    "–".to_owned()
                }
            };
            let l = &s.latency_us;
            vec![
                endpoint.clone(),
                count(s.count),
                match load_s.filter(|l| *l > 0.0) {
                    Some(l) => fixed(s.count as f64 / l, 1),
                    None => "–".to_owned(),
                },
                failures_cell(s),
                count(s.status_503),
                count(s.lock_errors),
                count(s.unanswered_at_stop),
                sent(l.p50),
                sent(l.p95),
                sent(l.p99),
                sent(l.max),
                // No tick (lockbench's own requests) or no answer and none waiting: none.
                if s.latency_from_tick_us == Latency::default() {
                    "–".to_owned()
                } else {
                    ms(s.latency_from_tick_us.p99)
                },
            ]
        })
        .collect();
    let numeric = (1..header.len()).collect();
    TextTable {
        header,
        rows,
        numeric,
    }
}

/// What lockbench's own requests are, over their table.
pub(crate) const RUNNER_NOTE: &str = "lockbench's own requests that reached the app's database (posting the batch, posting it again after a kill): not part of the load, but a lock error the server counted in them is in the lock-error total.";

/// What the role table's columns mean.
pub(crate) const ROLE_NOTE: &str = "interval: ticks keep their phase and fire while earlier requests are out, up to max in flight (a page polling with setInterval); after-response: the next tick waits for the answer and the schedule restarts when it is late (a setTimeout chain). Late: sent 10 ms or more after the tick. Skipped: not sent; the user's next request serves it, so its latency from the tick runs to that request's answer. Burst factor: the busiest 100 ms of tick starts against an average 100 ms of the schedule (about 1 when spread, up to the number of users in lock step).";

/// One row per role: its behaviour, its rates, its ticks and both latencies.
pub(crate) fn role_table(r: &Report) -> TextTable {
    let header = vec![
        "user class",
        "users",
        "every ms",
        "pace",
        "max in flight",
        "connection",
        "offered req/s",
        "achieved req/s",
        "ticks due",
        "sent",
        "late",
        "skipped",
        "dropped",
        "burst factor",
        "p99 from send ms",
        "p99 from tick ms",
    ];
    let rows = r
        .roles
        .iter()
        .map(|(name, f)| {
            vec![
                name.clone(),
                count(u64::from(f.users)),
                count(f.interval_ms),
                enum_word(&f.poll_model),
                count(u64::from(f.max_in_flight)),
                enum_word(&f.connection),
                fixed(f.offered_rps, 1),
                fixed(f.achieved_rps, 1),
                count(f.ticks_due),
                count(f.ticks_sent),
                count(f.ticks_late),
                count(f.ticks_skipped),
                count(f.ticks_dropped),
                fixed(f.burst_factor, 1),
                ms(f.latency_from_send_us.p99),
                ms(f.latency_from_tick_us.p99),
            ]
        })
        .collect();
    let numeric = (1..header.len()).collect();
    TextTable {
        header,
        rows,
        numeric,
    }
}

/// A settings enum as its scenario word ("after-response").
fn enum_word<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => "?".to_owned(),
    }
}

/// `[[users]]` classes in words: "10 visitor (closed), 2 api (arrival-rate, every 50 ms)".
pub(crate) fn classes_words(r: &Report) -> String {
    let words: Vec<String> = r
        .roles
        .iter()
        .map(|(name, c)| {
            let pace = enum_word(&c.poll_model);
            let every = if c.interval_ms > 0 {
                format!(", every {} ms", count(c.interval_ms))
            } else {
                String::new()
            };
            format!("{} {name} ({pace}{every})", count(u64::from(c.users)))
        })
        .collect();
    words.join(", ")
}

/// What generating the load cost lockbench: "The load generator used 1.4 CPU seconds (0.16
/// per 1,000 requests)."
pub(crate) fn load_cpu_line(r: &Report) -> Option<String> {
    let cpu = r.load_cpu_s?;
    let requests: u64 = r.requests.values().map(|s| s.count).sum();
    let per = if requests > 0 {
        format!(
            " ({} per 1,000 requests)",
            fixed(1000.0 * cpu / requests as f64, 3)
        )
    } else {
        String::new()
    };
    Some(format!(
        "lockbench's load generator used {} CPU seconds{per}.",
        fixed(cpu, 2)
    ))
}

/// The user mix, in one sentence.
pub(crate) fn users_line(r: &Report) -> String {
    let u = &r.users;
    if u.pollers + u.admins + u.kiosks == 0 && !r.roles.is_empty() {
        return format!("Users: {}.", classes_words(r));
    }
    let group = |n: u32, name: &str, every_ms: u64| {
        if n == 0 {
            format!("no {name}")
        } else {
            format!(
                "{} {name} every {} ms",
                count(u64::from(n)),
                count(every_ms)
            )
        }
    };
    format!(
        "Users: {}, {}, {}.",
        group(u.pollers, "pollers", u.poll_interval_ms),
        group(u.admins, "admins", u.admin_interval_ms),
        group(u.kiosks, "kiosks", u.kiosk_interval_ms)
    )
}

/// One row per fault the run applied: what, when, what happened.
pub(crate) fn fault_table(r: &Report) -> TextTable {
    let secs = |t: Option<f64>| t.map_or_else(|| "–".to_owned(), |t| fixed(t, 1));
    TextTable {
        header: vec!["fault", "from s", "to s", "what happened"],
        rows: r
            .faults
            .iter()
            .map(|f| {
                vec![
                    f.description.clone(),
                    secs(f.started_s),
                    secs(f.ended_s),
                    f.outcome.clone(),
                ]
            })
            .collect(),
        numeric: vec![1, 2],
    }
}

/// The restarts in one sentence.
pub(crate) fn restart_line(r: &Report) -> String {
    let gave_up = r.restarts.iter().any(|x| x.action == "gave-up");
    let restarted = r
        .restarts
        .iter()
        .filter(|x| x.action == "restarted")
        .count();
    match (restarted, gave_up) {
        (0, false) => "Worker restarts: none.".to_owned(),
        (n, false) => format!(
            "Worker restarts: {n}. Each worker keeps its counters in a file, so lock errors counted before a restart are in the totals."
        ),
        (n, true) => format!(
            "Worker restarts: {n}, then the supervisor gave up on a worker that kept crashing, and the server stopped."
        ),
    }
}

/// One row per restart.
pub(crate) fn restart_table(r: &Report) -> TextTable {
    TextTable {
        header: vec![
            "at s",
            "worker",
            "pid",
            "exit status",
            "action",
            "restarted after ms",
            "new pid",
        ],
        rows: r
            .restarts
            .iter()
            .map(|x| {
                vec![
                    fixed(x.t_s, 1),
                    x.worker.to_string(),
                    x.pid.to_string(),
                    x.status.clone(),
                    x.action.clone(),
                    count(x.delay_ms),
                    x.new_pid.map_or_else(|| "–".to_owned(), |p| p.to_string()),
                ]
            })
            .collect(),
        numeric: vec![0, 1, 2, 5, 6],
    }
}
