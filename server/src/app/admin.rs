//! The admin dashboard page (the incident's `admin_dashboard`): server-rendered HTML that
//! polls the status endpoints every 5 s with plain `fetch`. No front-end build step.
//!
//! Reads through one read transaction of the store; never writes to the database.

use super::{batch_from_row, BatchStatus, BATCH_COLUMNS};
use crate::storage::{DbError, Store, Value};
use crate::text::html_escape;

pub struct AdminView {
    pub registrations: i64,
    pub persons: i64,
    pub photos: i64,
    pub batches: Vec<BatchStatus>,
    /// (time, action, detail), newest first.
    pub log: Vec<(String, String, String)>,
}

/// Everything the page shows, read in one read transaction.
pub fn load(store: &Store) -> Result<AdminView, DbError> {
    store.read(super::stats::ops::ADMIN_DASHBOARD, |tx| {
        let count = |tx: &mut dyn crate::storage::Tx, table: &str| {
            tx.query_i64(&format!("SELECT count(*) FROM {table}"), &[])
                .map(|n| n.unwrap_or(0))
        };
        let registrations = count(tx, "registrations")?;
        let persons = count(tx, "persons")?;
        let photos = count(tx, "photos")?;
        let batches = tx
            .query(
                &format!("SELECT {BATCH_COLUMNS} FROM batches ORDER BY id DESC LIMIT 10"),
                &[],
            )?
            .iter()
            .map(|r| batch_from_row(r))
            .collect();
        let log = tx
            .query(
                "SELECT created_at, action, coalesce(detail, '') FROM processing_log ORDER BY id DESC LIMIT 20",
                &[],
            )?
            .iter()
            .map(|r| {
                let text = |i: usize| r.get(i).and_then(Value::as_str).unwrap_or_default().to_owned();
                (text(0), text(1), text(2))
            })
            .collect();
        Ok(AdminView {
            registrations,
            persons,
            photos,
            batches,
            log,
        })
    })
}

/// The dashboard page: totals, batches and the recent log, polled every 5 s (`?poll_ms=N`
/// changes it) by [`POLL_SCRIPT`].
pub fn render(view: &AdminView, worker: u32) -> String {
    let batches = batch_rows(view);
    let log = log_rows(view);
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lockbench admin</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5rem; }}
td, th {{ border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; }}
.totals span {{ margin-right: 1.5rem; font-size: 1.2rem; }}
#poll-error {{ color: #a00; }}
</style></head>
<body>
<h1>Event photos: admin dashboard</h1>
<p class="totals"><span>Registrations: <b id="registrations">{registrations}</b></span>
<span>Persons: <b id="persons">{persons}</b></span><span>Photos: <b id="photos">{photos}</b></span></p>
<h2>Batches</h2>
<table id="batches"><tr><th>id</th><th>status</th><th>progress</th><th>failed</th><th>persons</th><th>uploaded</th><th>current photo</th></tr>
{batches}</table>
<h2>Recent processing log</h2>
<table id="log"><tr><th>time</th><th>action</th><th>detail</th></tr>
{log}</table>
<p>Served by worker {worker}. Last update: <span id="updated">page load</span> <span id="poll-error"></span></p>
<script>
{POLL_SCRIPT}lastRegistration = {registrations};
const every = Number(new URLSearchParams(location.search).get('poll_ms')) || 5000;
setInterval(poll, every);
</script>
</body></html>
"#,
        registrations = view.registrations,
        persons = view.persons,
        photos = view.photos,
    )
}

/// One table row per batch, its figures updated in place by the page's script.
fn batch_rows(view: &AdminView) -> String {
    let mut batches = String::new();
    for b in &view.batches {
        let pct = if b.total > 0 {
            b.processed * 100 / b.total
        } else {
            0
        };
        batches.push_str(&format!(
            r#"<tr data-batch="{id}"><td>{id}</td><td class="status">{status}</td>
<td><progress max="{total}" value="{processed}"></progress> <span class="processed">{processed}</span>/<span class="total">{total}</span> (<span class="pct">{pct}</span>%)</td>
<td class="failed">{failed}</td><td class="persons">{persons}</td><td class="uploaded">{uploaded}</td><td class="current">{current}</td></tr>
"#,
            id = b.id,
            status = html_escape(&b.status),
            total = b.total,
            processed = b.processed,
            failed = b.failed,
            persons = b.persons,
            uploaded = b.uploaded,
            current = html_escape(b.current_photo.as_deref().unwrap_or("")),
        ));
    }
    batches
}

/// One table row per recent processing log line.
fn log_rows(view: &AdminView) -> String {
    let mut log = String::new();
    for (at, action, detail) in &view.log {
        log.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            html_escape(at),
            html_escape(action),
            html_escape(detail)
        ));
    }
    log
}

/// The page's polling, as the incident's dashboard did it: every batch row's status, then
/// the new registrations. The page sets `lastRegistration` after it and calls `poll` every
/// `poll_ms` (5 s by default).
const POLL_SCRIPT: &str = r#"let lastRegistration = 0;
async function poll() {
  try {
    for (const row of document.querySelectorAll('tr[data-batch]')) {
      const r = await fetch('/api/batches/' + row.dataset.batch + '/status');
      if (!r.ok) { document.getElementById('poll-error').textContent = 'status ' + r.status; continue; }
      const b = await r.json();
      row.querySelector('.status').textContent = b.status;
      row.querySelector('progress').max = b.total;
      row.querySelector('progress').value = b.processed;
      row.querySelector('.processed').textContent = b.processed;
      row.querySelector('.total').textContent = b.total;
      row.querySelector('.pct').textContent = b.total ? Math.floor(b.processed * 100 / b.total) : 0;
      row.querySelector('.failed').textContent = b.failed;
      row.querySelector('.persons').textContent = b.persons;
      row.querySelector('.uploaded').textContent = b.uploaded;
      row.querySelector('.current').textContent = b.current_photo || '';
    }
    const u = await fetch('/api/registrations/updates?since=' + lastRegistration);
    if (u.ok) {
      const d = await u.json();
      if (d.registrations.length) {
        lastRegistration = d.last_id;
        document.getElementById('registrations').textContent = Math.max(
          Number(document.getElementById('registrations').textContent), d.last_id);
      }
    }
    document.getElementById('updated').textContent = new Date().toISOString();
    document.getElementById('poll-error').textContent = '';
  } catch (e) {
    document.getElementById('poll-error').textContent = String(e);
  }
}
"#;
