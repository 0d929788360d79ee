//! The figures' lines, as plain text: where the lock-error total comes from (and the workers
//! that did not answer), server-side retries and commit-only drops, the processor's failed
//! steps, the batch, the audit, the WAL, and an external app's database file.

use crate::report::format::{count, fixed, mib};
use crate::report::{Audit, LockErrors, LockSource, Report};

use super::absent::absent_reason;

/// "workers 2, 3 did not answer /api/stats", when some did not.
pub(super) fn missing_workers(le: &LockErrors) -> Option<String> {
    let ids: Vec<String> = le.missing_workers.iter().map(u32::to_string).collect();
    match ids.len() {
        0 => None,
        1 => Some(format!("worker {} did not answer /api/stats", ids[0])),
        _ => Some(format!(
            "workers {} did not answer /api/stats",
            ids.join(", ")
        )),
    }
}

/// A lock-error total: "204", or "at least 204" when workers could not be read.
pub(super) fn lock_total(le: &LockErrors) -> String {
    if le.missing_workers.is_empty() {
        count(le.total)
    } else {
        format!("at least {}", count(le.total))
    }
}

/// The sentence above the lock-error tables: where the total comes from.
pub(crate) fn lock_error_origin(r: &Report) -> String {
    let le = &r.lock_errors;
    match le.source {
        LockSource::ServerCounters => format!(
            "{} lock errors counted by the server (every one seen, retried or not){}; {} reached a client as a 503 or an answer mentioning a lock.",
            lock_total(le),
            missing_workers(le).map_or_else(String::new, |m| format!(
                ": a lower bound, {m} and their counts are missing"
            )),
            count(le.client_visible)
        ),
        LockSource::TargetLog => format!(
            "{} lock errors in the app's log (records matching the lock pattern while the load ran, a traceback counted once); {} reached a client as a 503 or an answer mentioning a lock, and {} other server errors reached clients.",
            count(le.total),
            count(le.client_visible),
            count(le.server_errors_unexplained)
        ),
        LockSource::ClientsOnly => format!(
            "Lock errors as far as the clients can see: {} (503s and answers mentioning a lock), plus {} server errors whose cause cannot be seen from the client. The app's own count is unknown: set [target].log.",
            count(le.client_visible),
            count(le.server_errors_unexplained)
        ),
    }
}

/// Server-side retries and commit-only drops, or why they are absent.
pub(crate) fn retry_lines(r: &Report) -> (String, String) {
    let retries = match r.retries {
        Some(n) => count(n),
        None => absent_reason(r, &["retry", "retries"]),
    };
    let dropped = match r.commit_only_dropped {
        Some(n) if !r.commit_only_dropped_by_endpoint.is_empty() => {
            let parts: Vec<String> = r
                .commit_only_dropped_by_endpoint
                .iter()
                .map(|(e, n)| format!("{} on {e}", count(*n)))
                .collect();
            format!("{} ({})", count(n), parts.join(", "))
        }
        Some(n) => count(n),
        None => absent_reason(r, &["commit-only", "commit only", "retry_scope"]),
    };
    (retries, dropped)
}

/// The processor's failed steps: "none", or "upload_person 1, save_photo 2".
pub(crate) fn processor_failures_line(r: &Report) -> String {
    if r.processor_failures.values().all(|n| *n == 0) {
        return if r.target.kind == "external" {
            "not measured: external target".to_owned()
        } else {
            "none".to_owned()
        };
    }
    let total: u64 = r.processor_failures.values().sum();
    let steps: Vec<String> = r
        .processor_failures
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(op, n)| format!("{op} {}", count(*n)))
        .collect();
    format!(
        "{} ({}): steps of the batch that did not happen",
        count(total),
        steps.join(", ")
    )
}

pub(crate) fn batch_lines(r: &Report) -> Result<Vec<(&'static str, String)>, String> {
    let Some(b) = &r.batch else {
        return Err(absent_reason(r, &["batch", "processor"]));
    };
    Ok(vec![
        ("Photos", count(b.photos)),
        ("Processed", count(b.processed)),
        ("Failed", count(b.failed)),
        ("Persons", count(b.persons)),
        ("Uploaded", count(b.uploaded)),
        (
            "Ended",
            if b.finished {
                "finished".to_owned()
            } else {
                format!("did not finish: {}", b.ended.describe())
            },
        ),
        (
            "Batch status",
            b.status.clone().unwrap_or_else(|| "not read".to_owned()),
        ),
        (
            "Duration",
            if b.finished {
                format!("{} s", fixed(b.duration_s, 1))
            } else {
                format!(
                    "unknown: the batch did not finish; the run waited {} s for it",
                    fixed(b.duration_s, 1)
                )
            },
        ),
        ("Photos/s", fixed(b.photos_per_s, 1)),
    ])
}

pub(crate) fn audit_lines(r: &Report, a: &Audit) -> Vec<(&'static str, String)> {
    if r.target.kind == "external" {
        // An external app's audit looks up the acknowledged kiosk writes only.
        return vec![
            ("Lost writes", count(a.lost_writes)),
            (
                "Acknowledged writes found more than once",
                count(a.duplicate_writes),
            ),
            (
                "Acknowledged writes that could not be looked up",
                count(a.unaudited_writes),
            ),
        ];
    }
    vec![
        (
            "Lost writes",
            format!(
                "{} (acknowledged writes the database does not hold: the four kinds below)",
                count(a.lost_writes)
            ),
        ),
        ("Missing photos", count(a.missing_photos)),
        ("Lost registrations", count(a.lost_registrations)),
        ("Lost uploads", count(a.lost_uploads)),
        (
            "Commit-only drops the audit cannot see (the processing log, the batch's status), counted as lost",
            count(a.dropped_unaudited),
        ),
        ("Duplicate writes", count(a.duplicate_writes)),
        ("Misassigned photos", count(a.misassigned_photos)),
        (
            "Photos not processed (never acknowledged: work not reached, not lost writes)",
            count(a.not_processed),
        ),
        (
            "Acknowledged writes that could not be looked up",
            count(a.unaudited_writes),
        ),
    ]
}

pub(crate) fn wal_lines(r: &Report) -> Result<Vec<(&'static str, String)>, String> {
    let Some(w) = &r.wal else {
        return Err(absent_reason(r, &["wal", "journal_mode", "journal mode"]));
    };
    Ok(vec![
        (
            "Largest WAL file",
            format!("{} bytes ({} MiB)", count(w.max_bytes), mib(w.max_bytes)),
        ),
        (
            "Checkpoints",
            format!(
                "{} completed, {} busy",
                count(w.checkpoints_ok),
                count(w.checkpoints_busy)
            ),
        ),
    ])
}

/// The external app's database file as lockbench read it, if the scenario named one.
pub(crate) fn target_database_lines(r: &Report) -> Option<Vec<(&'static str, String)>> {
    let db = r.target_database.as_ref()?;
    Some(vec![
        ("File", db.path.clone()),
        ("Journal mode", db.journal_mode.clone()),
        (
            "Size",
            format!(
                "{} bytes; -wal file {} bytes",
                count(db.size_bytes),
                count(db.wal_bytes)
            ),
        ),
        ("Acknowledged writes audited", count(db.audited_writes)),
        (
            "Unchanged by lockbench",
            if db.sha256_before == db.sha256_after {
                format!(
                    "yes (SHA-256 {} before and after reading)",
                    &db.sha256_before
                )
            } else {
                format!(
                    "the file changed while it was read (the app was writing): SHA-256 {} before, {} after",
                    db.sha256_before, db.sha256_after
                )
            },
        ),
    ])
}
