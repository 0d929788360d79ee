//! What the load measured: every request timed twice (from its send and from its tick) in
//! µs histograms per endpoint and per role, status codes, 503s and bodies that mention a
//! lock (each request that reached its client as a lock error counted once), ticks still
//! waiting when the load stopped, and a per-second time line with the photos and WAL size
//! the runner samples. Records and summarises; sends nothing.
//!
//! Latency from the tick, per endpoint: a request's own time from its send plus its tick's
//! lateness (how late the tick's first request went), so a tick's second request is not
//! charged the first one's time. A skipped tick is charged to every endpoint the tick that
//! served it called (that request's time from its send plus the skipped tick's lateness),
//! and to its role (to the serving tick's last answer). A tick still waiting when the load
//! stopped is charged to its role and to each endpoint it would have called up to the stop,
//! and counted in those endpoints' `unanswered_at_stop`. So an endpoint's histogram from
//! the tick can hold more samples than its `count` of requests.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lockbench_server::measure::histogram;

use crate::report::{EndpointStats, Latency, RoleFigures, TimelinePoint};
use crate::scenario::{PollModel, UserClass};

/// Width of the buckets the burst factor is computed over.
const BURST_BUCKET: Duration = Duration::from_millis(100);

fn latency(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        p50: h.value_at_quantile(0.50),
        p95: h.value_at_quantile(0.95),
        p99: h.value_at_quantile(0.99),
        max: h.max(),
        mean: h.mean().round() as u64,
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

#[derive(Default)]
struct EndpointAcc {
    stats: EndpointStats,
    from_send: Option<Histogram<u64>>,
    from_tick: Option<Histogram<u64>>,
    /// The requests the app answered with a 5xx, from send: how long a failing request
    /// waited before its error.
    failed: Option<Histogram<u64>>,
}

struct RoleAcc {
    ticks_due: u64,
    ticks_sent: u64,
    ticks_late: u64,
    ticks_skipped: u64,
    ticks_dropped: u64,
    requests: u64,
    from_send: Histogram<u64>,
    from_tick: Histogram<u64>,
    /// Ticks started (first request sent) per 100 ms since the recorder started.
    starts: Vec<u32>,
}

impl Default for RoleAcc {
    fn default() -> Self {
        RoleAcc {
            ticks_due: 0,
            ticks_sent: 0,
            ticks_late: 0,
            ticks_skipped: 0,
            ticks_dropped: 0,
            requests: 0,
            from_send: histogram(),
            from_tick: histogram(),
            starts: Vec::new(),
        }
    }
}

struct Second {
    sent: u64,
    requests: u64,
    lock_errors: u64,
    errors: u64,
    server_lock_errors: u64,
    hist: Histogram<u64>,
    /// Failed requests (lock errors included) and lock errors, by request name.
    failures_by: BTreeMap<String, u64>,
    lock_errors_by: BTreeMap<String, u64>,
}

impl Default for Second {
    fn default() -> Self {
        Second {
            sent: 0,
            requests: 0,
            lock_errors: 0,
            errors: 0,
            server_lock_errors: 0,
            hist: histogram(),
            failures_by: BTreeMap::new(),
            lock_errors_by: BTreeMap::new(),
        }
    }
}

/// Adds one to `name`'s count, allocating the name only the first time in a map.
fn bump(map: &mut BTreeMap<String, u64>, name: &str) {
    match map.get_mut(name) {
        Some(n) => *n += 1,
        None => {
            map.insert(name.to_owned(), 1);
        }
    }
}

/// Every request's and every tick's outcome, per endpoint, per role and per second.
pub struct Recorder {
    started: Instant,
    started_wall: std::time::SystemTime,
    endpoints: Mutex<BTreeMap<String, EndpointAcc>>,
    /// Per user class, by name.
    roles: Mutex<BTreeMap<String, RoleAcc>>,
    seconds: Mutex<Vec<Second>>,
    /// Photos processed, sampled each second by the runner.
    photos: Mutex<Vec<u64>>,
    /// The WAL file's size, sampled by the runner.
    wal: Mutex<Vec<u64>>,
}

/// How one request ended.
pub struct Outcome {
    /// None: no answer (connection error, timeout).
    pub status: Option<u16>,
    /// The answer is what the request expects (its statuses, its body text).
    pub expected: bool,
    /// A failed answer whose body mentions a lock.
    pub lock_mention: bool,
    /// The request ran out of time.
    pub timeout: bool,
}

impl Outcome {
    /// Why a request failed, as the report's failure classes name it; None for a success.
    /// A 503 or a body that mentions a lock is a lock error.
    pub fn failure_class(&self) -> Option<&'static str> {
        if self.expected {
            return None;
        }
        Some(match self.status {
            Some(503) => "lock error",
            _ if self.lock_mention => "lock error",
            Some(s) if s >= 500 => "other 5xx",
            Some(_) => "unexpected status",
            None if self.timeout => "timeout",
            None => "connection error",
        })
    }
}

/// When one request's tick was meant to go and went, and when the request went and was
/// answered.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The tick the request belongs to.
    pub intended: Instant,
    /// When the tick's first request went: `tick_sent − intended` is the tick's lateness.
    pub tick_sent: Instant,
    pub sent: Instant,
    pub answered: Instant,
}

impl Timing {
    /// From the request's own send to its answer.
    pub fn from_send(&self) -> Duration {
        self.answered.saturating_duration_since(self.sent)
    }

    /// From the tick: the request's own time plus its tick's lateness (never the time of the
    /// tick's earlier requests).
    pub fn from_tick(&self) -> Duration {
        self.from_send() + self.tick_sent.saturating_duration_since(self.intended)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Recorder {
    pub fn new(started: Instant) -> Recorder {
        Recorder {
            started,
            started_wall: std::time::SystemTime::now() - started.elapsed(),
            endpoints: Mutex::new(BTreeMap::new()),
            roles: Mutex::new(BTreeMap::new()),
            seconds: Mutex::new(Vec::new()),
            photos: Mutex::new(Vec::new()),
            wal: Mutex::new(Vec::new()),
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// The wall-clock time the load started (time line zero).
    pub fn started_wall(&self) -> std::time::SystemTime {
        self.started_wall
    }

    /// Records the WAL file's size at this second (the largest sample of the second).
    pub fn sample_wal(&self, bytes: u64) {
        let second = self.started.elapsed().as_secs() as usize;
        let mut wal = lock(&self.wal);
        if wal.len() <= second {
            wal.resize(second + 1, 0);
        }
        wal[second] = wal[second].max(bytes);
    }

    fn with_second(&self, at: Instant, f: impl FnOnce(&mut Second)) {
        let second = at.saturating_duration_since(self.started).as_secs() as usize;
        let mut seconds = lock(&self.seconds);
        if seconds.len() <= second {
            seconds.resize_with(second + 1, Second::default);
        }
        f(&mut seconds[second]);
    }

    fn with_role(&self, class: &str, f: impl FnOnce(&mut RoleAcc)) {
        let mut roles = lock(&self.roles);
        match roles.get_mut(class) {
            Some(acc) => f(acc),
            None => f(roles.entry(class.to_owned()).or_default()),
        }
    }

    /// A tick of class `role` came due.
    pub fn tick_due(&self, role: &str) {
        self.with_role(role, |r| r.ticks_due += 1);
    }

    /// A due tick was not sent: `max_in_flight` requests were out, or the user was busy.
    pub fn tick_skipped(&self, role: &str) {
        self.with_role(role, |r| r.ticks_skipped += 1);
    }

    /// An arrival-rate tick found every slot of its class busy: dropped, never sent.
    pub fn tick_dropped(&self, role: &str) {
        self.with_role(role, |r| r.ticks_dropped += 1);
    }

    /// A due tick was sent, `late` if well after its intended time.
    pub fn tick_sent(&self, role: &str, late: bool) {
        self.with_role(role, |r| {
            r.ticks_sent += 1;
            if late {
                r.ticks_late += 1;
            }
        });
    }

    /// A tick's requests are all answered.
    pub fn tick_answered(&self, role: &str, intended: Instant, first_send: Instant, done: Instant) {
        self.with_role(role, |r| {
            r.from_send
                .saturating_record(micros(done.saturating_duration_since(first_send)));
            r.from_tick
                .saturating_record(micros(done.saturating_duration_since(intended)));
        });
    }

    /// Skipped ticks (their intended times) were served by a later tick that went at
    /// `tick_sent`, made the requests `calls` (endpoint, time from its send) and was done at
    /// `done`: each skipped tick is charged to its role up to `done`, and to each endpoint
    /// the serving tick called with that request's time plus the skipped tick's lateness.
    pub fn skipped_served(
        &self,
        role: &str,
        skipped: &[Instant],
        tick_sent: Instant,
        done: Instant,
        calls: &[(&str, Duration)],
    ) {
        if skipped.is_empty() {
            return;
        }
        self.with_role(role, |r| {
            for t in skipped {
                r.from_tick
                    .saturating_record(micros(done.saturating_duration_since(*t)));
            }
        });
        let mut endpoints = lock(&self.endpoints);
        for (endpoint, from_send) in calls {
            let acc = endpoints.entry((*endpoint).to_owned()).or_default();
            let hist = acc.from_tick.get_or_insert_with(histogram);
            for t in skipped {
                let lateness = tick_sent.saturating_duration_since(*t);
                hist.saturating_record(micros(*from_send + lateness));
            }
        }
    }

    /// Ticks of `role` still waiting to be sent when the load stopped at `stop`: each is
    /// charged to its role and to every endpoint in `endpoints` (those its tick would have
    /// called) with its latency from the tick to the stop, and counted in those endpoints'
    /// `unanswered_at_stop`. Ticks that came due at or after the stop are not counted.
    pub fn pending_at_stop(
        &self,
        role: &str,
        pending: &[Instant],
        endpoints: &[&str],
        stop: Instant,
    ) {
        let waited: Vec<u64> = pending
            .iter()
            .filter(|t| **t < stop)
            .map(|t| micros(stop.saturating_duration_since(*t)))
            .collect();
        if waited.is_empty() {
            return;
        }
        self.with_role(role, |r| {
            for w in &waited {
                r.from_tick.saturating_record(*w);
            }
        });
        let mut map = lock(&self.endpoints);
        for endpoint in endpoints {
            let acc = map.entry((*endpoint).to_owned()).or_default();
            acc.stats.unanswered_at_stop += waited.len() as u64;
            let hist = acc.from_tick.get_or_insert_with(histogram);
            for w in &waited {
                hist.saturating_record(*w);
            }
        }
    }

    pub(crate) fn request_sent(&self, role: &str, at: Instant) {
        self.with_role(role, |r| r.requests += 1);
        self.with_second(at, |s| s.sent += 1);
    }

    /// A tick's first request went out: the schedule's phase, for the burst factor.
    pub(crate) fn tick_started(&self, role: &str, at: Instant) {
        let bucket = (at.saturating_duration_since(self.started).as_millis()
            / BURST_BUCKET.as_millis()) as usize;
        self.with_role(role, |r| {
            if r.starts.len() <= bucket {
                r.starts.resize(bucket + 1, 0);
            }
            r.starts[bucket] += 1;
        });
    }

    /// One lock error the server itself reported (a matching line of the target's log).
    pub fn server_lock_error(&self, at: Instant) {
        self.with_second(at, |s| s.server_lock_errors += 1);
    }

    /// One request: its status, whether it succeeded as its request expects, why it failed
    /// (a lock error, a 503 or a failed answer mentioning a lock, counted once either way;
    /// another 5xx; an unexpected status; a timeout; a connection error), both latencies.
    pub fn record(&self, endpoint: &str, outcome: &Outcome, t: Timing) {
        let from_send = micros(t.from_send());
        let from_tick = micros(t.from_tick());
        let ok = outcome.expected;
        let failure = outcome.failure_class();
        let is_lock = failure == Some("lock error");
        {
            let mut endpoints = lock(&self.endpoints);
            if !endpoints.contains_key(endpoint) {
                endpoints.insert(endpoint.to_owned(), EndpointAcc::default());
            }
            let acc = endpoints.get_mut(endpoint).expect("inserted above");
            let s = &mut acc.stats;
            s.count += 1;
            if let Some(class) = failure {
                s.failures += 1;
                *s.failures_by_class.entry(class.to_owned()).or_default() += 1;
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
            if is_lock {
                s.lock_errors += 1;
            }
            if outcome.status.is_some_and(|c| c >= 500) && !is_lock {
                s.server_errors_unexplained += 1;
            }
            acc.from_send
                .get_or_insert_with(histogram)
                .saturating_record(from_send);
            if outcome.status.is_some_and(|c| c >= 500) {
                acc.failed
                    .get_or_insert_with(histogram)
                    .saturating_record(from_send);
            }
            acc.from_tick
                .get_or_insert_with(histogram)
                .saturating_record(from_tick);
        }
        self.with_second(t.answered, |s| {
            s.requests += 1;
            if is_lock {
                s.lock_errors += 1;
                bump(&mut s.lock_errors_by, endpoint);
            } else if !ok {
                s.errors += 1;
            }
            if failure.is_some() {
                bump(&mut s.failures_by, endpoint);
            }
            s.hist.saturating_record(from_send);
        });
    }

    /// Records the photos processed so far at this second.
    pub fn sample_photos(&self, processed: u64) {
        let second = self.started.elapsed().as_secs() as usize;
        let mut photos = lock(&self.photos);
        while photos.len() <= second {
            let last = photos.last().copied().unwrap_or(0);
            photos.push(last);
        }
        photos[second] = processed;
    }

    pub fn requests_total(&self) -> u64 {
        lock(&self.endpoints).values().map(|a| a.stats.count).sum()
    }

    /// Requests that reached their client as a lock error, over every endpoint: the same
    /// count as the time line's `lock_errors`.
    pub fn lock_visible_total(&self) -> u64 {
        lock(&self.endpoints)
            .values()
            .map(|a| a.stats.lock_errors)
            .sum()
    }

    /// 5xx answers that neither were a 503 nor mentioned a lock: their cause is not visible
    /// from the client.
    pub fn unexplained_server_errors(&self) -> u64 {
        lock(&self.endpoints)
            .values()
            .map(|a| a.stats.server_errors_unexplained)
            .sum()
    }

    pub fn endpoint_stats(&self) -> BTreeMap<String, EndpointStats> {
        lock(&self.endpoints)
            .iter()
            .map(|(name, acc)| {
                let mut stats = acc.stats.clone();
                if let Some(h) = &acc.from_send {
                    stats.latency_us = latency(h);
                }
                if let Some(h) = &acc.from_tick {
                    stats.latency_from_tick_us = latency(h);
                }
                stats.failed_latency_us = acc.failed.as_ref().map(latency);
                (name.clone(), stats)
            })
            .collect()
    }

    /// Per user class: ticks, rates, burstiness and both latencies, over `load` (how long
    /// the load ran).
    pub fn role_figures(
        &self,
        classes: &[UserClass],
        load: Duration,
    ) -> BTreeMap<String, RoleFigures> {
        let roles = lock(&self.roles);
        let seconds = load.as_secs_f64().max(1e-3);
        let mut out = BTreeMap::new();
        for c in classes.iter().filter(|c| c.count > 0) {
            let empty = RoleAcc::default();
            let acc = roles.get(&c.name).unwrap_or(&empty);
            let per_tick = if acc.ticks_sent == 0 {
                1.0
            } else {
                acc.requests as f64 / acc.ticks_sent as f64
            };
            let answered: u64 = acc.from_send.len();
            let achieved = answered as f64 * per_tick / seconds;
            // Ticks per second the schedule asks for; a closed class has no schedule: it
            // asks for what it gets.
            let ticks_per_s = match (c.pace, c.interval()) {
                (PollModel::ArrivalRate, Some(period)) => 1.0 / period.as_secs_f64(),
                (PollModel::Closed, _) | (_, None) => 0.0,
                (_, Some(every)) => f64::from(c.count) / every.as_secs_f64(),
            };
            let offered = if ticks_per_s > 0.0 {
                ticks_per_s * per_tick
            } else {
                achieved
            };
            out.insert(
                c.name.clone(),
                RoleFigures {
                    users: c.count,
                    interval_ms: c.interval().map_or(0, |d| d.as_millis() as u64),
                    poll_model: c.pace,
                    max_in_flight: c.max_in_flight(),
                    connection: c.connection(),
                    ticks_due: acc.ticks_due,
                    ticks_sent: acc.ticks_sent,
                    ticks_late: acc.ticks_late,
                    ticks_skipped: acc.ticks_skipped,
                    ticks_dropped: acc.ticks_dropped,
                    requests: acc.requests,
                    offered_rps: round2(offered),
                    achieved_rps: round2(achieved),
                    burst_factor: round2(burst_factor(&acc.starts, ticks_per_s)),
                    latency_from_send_us: latency(&acc.from_send),
                    latency_from_tick_us: latency(&acc.from_tick),
                },
            );
        }
        out
    }

    /// p99 of the requests answered in the last `seconds` whole seconds and the current
    /// one, µs (the live view's).
    pub fn recent_p99_us(&self, seconds: usize) -> u64 {
        let all = lock(&self.seconds);
        let mut merged = histogram();
        for s in all.iter().rev().take(seconds + 1) {
            let _ = merged.add(&s.hist);
        }
        latency(&merged).p99
    }

    pub fn timeline(&self) -> Vec<TimelinePoint> {
        let seconds = lock(&self.seconds);
        let photos = lock(&self.photos);
        let wal = lock(&self.wal);
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
                    sent: s.map_or(0, |s| s.sent),
                    requests: s.map_or(0, |s| s.requests),
                    lock_errors: s.map_or(0, |s| s.lock_errors),
                    errors: s.map_or(0, |s| s.errors),
                    server_lock_errors: s.map_or(0, |s| s.server_lock_errors),
                    p99_us: s.map_or(0, |s| latency(&s.hist).p99),
                    photos_processed: last_photos,
                    wal_bytes: wal.get(i).copied().unwrap_or(0),
                    failures_by_request: s.map(|s| s.failures_by.clone()).unwrap_or_default(),
                    lock_errors_by_request: s.map(|s| s.lock_errors_by.clone()).unwrap_or_default(),
                }
            })
            .collect()
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The busiest 100 ms of tick starts against the average 100 ms of the schedule: about 1
/// when the users' ticks are spread over their interval, up to the number of users when they
/// all fire at once.
fn burst_factor(starts: &[u32], ticks_per_s: f64) -> f64 {
    let mean = ticks_per_s * BURST_BUCKET.as_secs_f64();
    let peak = starts.iter().copied().max().unwrap_or(0);
    if mean <= 0.0 || peak == 0 {
        return 0.0;
    }
    f64::from(peak) / mean.max(1.0)
}

#[cfg(test)]
#[path = "recorder_tests.rs"]
mod tests;
