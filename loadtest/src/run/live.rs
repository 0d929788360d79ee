//! The live view of a command that runs scenarios (`run`, `sweep`, `breakpoint`): a
//! [`LiveHub`] that, once a second, reads the current run's recorder (the one its report is
//! made of) into a `LiveState`, redraws the terminal line from it (indicatif; not drawn when
//! stderr is not a terminal, or with `--quiet`) and, with `--live`, serves it to a page on a
//! local port (`/` the page, `/state.json` the state). A finished run's state is its report's
//! own figures, so the page's last state equals the report. The page goes away when the
//! command ends, after a page that was watching has read the final state (or 3 s).
//!
//! The load never waits for the view: the view takes the recorder's locks once a second,
//! like any reader of it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::load::Shared;
use crate::report::live::{
    page, terminal_line, LiveFault, LiveRequest, LiveRow, LiveState, LiveTotals,
};
use crate::report::{FaultRecord, Report};

/// The run being watched.
struct Current {
    shared: Arc<Shared>,
    run_for: Option<Duration>,
    photos_total: Option<u64>,
    /// The run's fault records, as the fault runner writes them.
    faults: Option<Arc<Mutex<Vec<FaultRecord>>>>,
}

#[derive(Default)]
struct HubState {
    current: Option<Current>,
    latest: LiveState,
    /// When a page last read the state, and whether it has read the finished one.
    polled_at: Option<Instant>,
    final_read: bool,
}

/// The live view of one command.
pub struct LiveHub {
    title: String,
    state: Mutex<HubState>,
    line: Option<indicatif::ProgressBar>,
    started: Instant,
    stop: AtomicBool,
    ticker: Mutex<Option<JoinHandle<()>>>,
    server: Mutex<Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>>,
    addr: Option<SocketAddr>,
}

/// The command's live view, for the runs a sweep or a search starts (each row's
/// `RunOptions` need not carry it).
static CURRENT: Mutex<Option<Arc<LiveHub>>> = Mutex::new(None);

/// Makes `hub` the command's live view.
pub fn install(hub: Arc<LiveHub>) {
    *lock(&CURRENT) = Some(hub);
}

/// The command's live view, if it has one.
pub fn current() -> Option<Arc<LiveHub>> {
    lock(&CURRENT).clone()
}

/// Says which sweep row or search step runs now, to the live view if there is one.
pub fn announce_step(text: String) {
    if let Some(hub) = current() {
        hub.step(text);
    }
}

/// A sweep row or search step has finished, for the live view's table.
pub fn announce_row(row: LiveRow) {
    if let Some(hub) = current() {
        hub.row_done(row);
    }
}

/// Closes the command's live view (see [`LiveHub::close`]).
pub fn close_current() {
    let hub = lock(&CURRENT).take();
    if let Some(hub) = hub {
        hub.close();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LiveHub {
    /// Starts the view: the terminal line when `line`, the page when `page` gives an address
    /// (port 0: any free port); the page's address is printed on stderr.
    pub fn start(title: &str, line: bool, page_at: Option<&str>) -> anyhow::Result<Arc<LiveHub>> {
        let bar = line.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) = indicatif::ProgressStyle::with_template("{msg}") {
                bar.set_style(style);
            }
            bar
        });
        let listener = match page_at {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr)
                    .with_context(|| format!("--live {addr}: cannot listen there"))?;
                l.set_nonblocking(true)?;
                Some(l)
            }
            None => None,
        };
        let addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let hub = Arc::new(LiveHub {
            title: title.to_owned(),
            state: Mutex::new(HubState {
                latest: LiveState {
                    title: title.to_owned(),
                    phase: "starting".into(),
                    ..LiveState::default()
                },
                ..HubState::default()
            }),
            line: bar,
            started: Instant::now(),
            stop: AtomicBool::new(false),
            ticker: Mutex::new(None),
            server: Mutex::new(None),
            addr,
        });
        if let Some(l) = listener {
            *lock(&hub.server) = Some(serve(hub.clone(), l)?);
            eprintln!("live: http://{}/", addr.expect("bound"));
        }
        let ticking = hub.clone();
        *lock(&hub.ticker) = Some(std::thread::spawn(move || {
            while !ticking.stop.load(Ordering::Acquire) {
                ticking.tick();
                std::thread::sleep(Duration::from_secs(1));
            }
        }));
        Ok(hub)
    }

    /// The page's address, when it is served.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// A run's load has started: watch its recorder.
    pub fn attach(
        &self,
        shared: Arc<Shared>,
        run_for: Option<Duration>,
        photos_total: Option<u64>,
    ) {
        let mut st = lock(&self.state);
        st.current = Some(Current {
            shared,
            run_for,
            photos_total,
            faults: None,
        });
        st.latest.phase = "running".into();
        st.latest.report = None;
    }

    /// The current run's fault records (the fault runner's own list).
    pub fn watch_faults(&self, records: Arc<Mutex<Vec<FaultRecord>>>) {
        if let Some(cur) = lock(&self.state).current.as_mut() {
            cur.faults = Some(records);
        }
    }

    /// The sweep row or search step now running.
    pub fn step(&self, text: String) {
        lock(&self.state).latest.step = Some(text);
    }

    /// A run has ended: its state is now its report's figures.
    pub fn finish_run(&self, report: &Report, out_dir: &std::path::Path) {
        let mut st = lock(&self.state);
        st.current = None;
        let step = st.latest.step.clone();
        let rows = std::mem::take(&mut st.latest.rows);
        st.latest = from_report(&self.title, report, self.started.elapsed().as_secs_f64());
        st.latest.step = step;
        st.latest.rows = rows;
        st.latest.report = Some(out_dir.join("report.html").display().to_string());
        st.latest.phase = "running".into();
        drop(st);
        self.draw();
    }

    /// A sweep row (or search step) has finished.
    pub fn row_done(&self, row: LiveRow) {
        lock(&self.state).latest.rows.push(row);
    }

    /// The state now (what `/state.json` answers).
    pub fn state(&self) -> LiveState {
        let mut st = lock(&self.state);
        st.polled_at = Some(Instant::now());
        if st.latest.phase == "finished" {
            st.final_read = true;
        }
        st.latest.clone()
    }

    /// Reads the current run's recorder into the state and redraws the line.
    fn tick(&self) {
        {
            let mut st = lock(&self.state);
            if let Some(cur) = &st.current {
                let mut next =
                    from_recorder(&self.title, cur, self.started.elapsed().as_secs_f64());
                next.step = st.latest.step.clone();
                next.rows = std::mem::take(&mut st.latest.rows);
                st.latest = next;
            } else {
                st.latest.elapsed_s = self.started.elapsed().as_secs_f64();
            }
        }
        self.draw();
    }

    fn draw(&self) {
        if let Some(bar) = &self.line {
            let line = terminal_line(&lock(&self.state).latest);
            bar.set_message(line);
            bar.tick();
        }
    }

    /// The command has ended: the state is final; a page that was watching gets to read it
    /// (up to 3 s), then the page goes away and the line is cleared.
    pub fn close(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = lock(&self.ticker).take() {
            let _ = t.join();
        }
        let watched = {
            let mut st = lock(&self.state);
            st.latest.phase = "finished".into();
            st.latest.remaining_s = None;
            st.polled_at
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
        };
        if watched {
            let deadline = Instant::now() + Duration::from_secs(3);
            while !lock(&self.state).final_read && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Some((stop, handle)) = lock(&self.server).take() {
            let _ = stop.send(());
            let _ = handle.join();
        }
        if let Some(bar) = &self.line {
            bar.finish_and_clear();
        }
    }
}

impl std::fmt::Debug for LiveHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveHub")
            .field("title", &self.title)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for LiveHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The state of a run still going, from its recorder.
fn from_recorder(title: &str, cur: &Current, elapsed_s: f64) -> LiveState {
    let recorder = &cur.shared.recorder;
    let timeline = recorder.timeline();
    let stats = recorder.endpoint_stats();
    let load_s = recorder.started().elapsed().as_secs_f64();
    let photos = timeline.last().map_or(0, |p| p.photos_processed);
    let remaining_s = match (cur.run_for, cur.photos_total) {
        (Some(d), _) => Some((d.as_secs_f64() - load_s).max(0.0)),
        (None, Some(total)) if photos > 0 => {
            Some(load_s * (total.saturating_sub(photos)) as f64 / photos as f64)
        }
        _ => None,
    };
    LiveState {
        title: title.to_owned(),
        phase: "running".into(),
        step: None,
        elapsed_s,
        remaining_s,
        totals: LiveTotals {
            sent: timeline.iter().map(|p| p.sent).sum(),
            answered: stats.values().map(|s| s.count).sum(),
            failures: stats.values().map(|s| s.failures).sum(),
            lock_errors_clients: stats.values().map(|s| s.lock_errors).sum(),
            lock_errors_server: timeline.iter().map(|p| p.server_lock_errors).sum(),
            lock_errors_total: None,
            photos_processed: photos,
            photos_total: cur.photos_total,
            p99_recent_ms: recorder.recent_p99_us(5) as f64 / 1000.0,
        },
        requests: stats
            .iter()
            .map(|(n, s)| {
                let r = LiveRequest {
                    count: s.count,
                    failures: s.failures,
                    lock_errors: s.lock_errors,
                };
                (n.clone(), r)
            })
            .collect(),
        timeline,
        faults: cur
            .faults
            .as_ref()
            .map(|r| bands(&lock(r)))
            .unwrap_or_default(),
        rows: Vec::new(),
        report: None,
    }
}

/// Each fault that took effect as a band on the time line.
fn bands(records: &[FaultRecord]) -> Vec<LiveFault> {
    records
        .iter()
        .filter_map(|f| {
            f.started_s.map(|start_s| LiveFault {
                start_s,
                end_s: f.ended_s,
                label: f.description.clone(),
            })
        })
        .collect()
}

/// The state of a finished run: its report's figures.
fn from_report(title: &str, r: &Report, elapsed_s: f64) -> LiveState {
    let last_p99 = r
        .timeline
        .iter()
        .rev()
        .take(6)
        .map(|p| p.p99_us)
        .max()
        .unwrap_or(0);
    LiveState {
        title: title.to_owned(),
        phase: "running".into(),
        step: None,
        elapsed_s,
        remaining_s: None,
        totals: LiveTotals {
            sent: r.timeline.iter().map(|p| p.sent).sum(),
            answered: r.requests.values().map(|s| s.count).sum(),
            failures: r.requests.values().map(|s| s.failures).sum(),
            lock_errors_clients: r.lock_errors.client_visible,
            lock_errors_server: r.timeline.iter().map(|p| p.server_lock_errors).sum(),
            lock_errors_total: Some(r.lock_errors.total),
            photos_processed: r.batch.as_ref().map_or(0, |b| b.processed),
            photos_total: r.batch.as_ref().map(|b| b.photos),
            p99_recent_ms: last_p99 as f64 / 1000.0,
        },
        requests: r
            .requests
            .iter()
            .map(|(n, s)| {
                let v = LiveRequest {
                    count: s.count,
                    failures: s.failures,
                    lock_errors: s.lock_errors,
                };
                (n.clone(), v)
            })
            .collect(),
        timeline: r.timeline.clone(),
        faults: bands(&r.faults),
        rows: Vec::new(),
        report: None,
    }
}

/// Serves `/` and `/state.json` on its own thread until told to stop.
fn serve(
    hub: Arc<LiveHub>,
    listener: std::net::TcpListener,
) -> anyhow::Result<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)> {
    use axum::routing::get;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("the live page's runtime")?;
    let handle = std::thread::Builder::new()
        .name("lockbench-live".into())
        .spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let html = page(&hub.title);
                let state_hub = hub.clone();
                let app = axum::Router::new()
                    .route("/", get(move || async move { axum::response::Html(html) }))
                    .route(
                        "/state.json",
                        get(move || {
                            let hub = state_hub.clone();
                            async move { axum::Json(hub.state()) }
                        }),
                    );
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        })
        .context("starting the live page's thread")?;
    Ok((tx, handle))
}
