//! The audit: what clients were told against what the database holds, read-only. For the
//! reference server, the run's SQLite file or PostgreSQL schema against the batch's manifest
//! and the kiosks' acknowledged writes; for an external app, `[target]`'s database looked up
//! with its `audit_query`. Never writes to what it audits.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use lockbench_server::photos::{FileKind, Manifest};
use lockbench_server::processor::acks::{Ack, AckKind};
use lockbench_server::storage::{postgres, ReadOnlyDb, Value};

use super::follow::LogReading;
use crate::report::{Audit, TargetDatabase};
use crate::scenario::{Scenario, UserClass};

/// The database the audit reads, read-only: the run's SQLite file or its PostgreSQL schema.
pub(super) enum AuditDb {
    Sqlite(ReadOnlyDb),
    Postgres(postgres::ReadOnlyPg),
}

impl AuditDb {
    fn query(
        &mut self,
        op: &str,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<Vec<Value>>, lockbench_server::storage::DbError> {
        match self {
            AuditDb::Sqlite(db) => db.query(op, sql, params),
            AuditDb::Postgres(db) => db.query(op, sql, params),
        }
    }
}

/// What a run against an external app may look at, checked before any load starts.
#[derive(Default)]
pub(super) struct TargetAccess {
    /// The app's log and how to read it.
    pub(super) log: Option<(PathBuf, LogReading)>,
    pub(super) database: Option<PathBuf>,
    /// The requests whose writes are looked up: (request name, query, field).
    pub(super) audits: Vec<(String, String, String)>,
}

/// Checks `[target]` against the files themselves: the log can be read, the database opens
/// read-only, each audit query compiles and answers one number. Each error names the key.
/// `classes` are the requests the load sends, which the log's records are tied to.
pub(super) fn check_target(
    scenario: &Scenario,
    classes: &[UserClass],
) -> anyhow::Result<TargetAccess> {
    let mut audits: Vec<(String, String, String, String)> = Vec::new();
    for c in classes {
        for r in &c.requests {
            if let Some(a) = &r.audit {
                let key = format!("users.{}.requests.{}.audit.query", c.name, r.name);
                audits.push((r.name.clone(), a.query.clone(), a.field.clone(), key));
            }
        }
    }
    let Some(t) = &scenario.target else {
        if let Some((.., key)) = audits.first() {
            bail!("{key}: needs [target].database, the file the query runs on");
        }
        return Ok(TargetAccess::default());
    };
    if let (Some(query), Some(field)) = (&t.audit_query, &t.audit_field) {
        let key = "target.audit_query".to_owned();
        audits.push(("kiosk".into(), query.clone(), field.clone(), key));
    }
    let mut access = TargetAccess::default();
    if let Some(log) = &t.log {
        let regex = |key: &str, text: &str| {
            regex::Regex::new(text)
                .map_err(|e| anyhow::anyhow!("target.{key}: not a valid regular expression: {e}"))
        };
        let reading = LogReading {
            lock: regex("lock_pattern", t.lock_pattern())?,
            record_start: t
                .record_start
                .as_deref()
                .map(|r| regex("record_start", r))
                .transpose()?,
            path: regex("path_pattern", t.path_pattern())?,
            routes: classes
                .iter()
                .flat_map(|c| &c.requests)
                .map(|r| (r.name.clone(), LogReading::route(&r.path)))
                .collect(),
        };
        std::fs::File::open(log)
            .with_context(|| format!("target.log: cannot read {}", log.display()))?;
        access.log = Some((log.clone(), reading));
    }
    match &t.database {
        Some(db) => {
            let ro = ReadOnlyDb::open(db).map_err(|e| anyhow::anyhow!("target.database: {e}"))?;
            for (name, query, field, key) in audits {
                ro.count(&query, "")
                    .map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
                access.audits.push((name, query, field));
            }
            access.database = Some(db.clone());
        }
        None => {
            if let Some((.., key)) = audits.first() {
                bail!("{key}: needs [target].database, the file the query runs on");
            }
        }
    }
    Ok(access)
}

pub(crate) fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", sha2::Sha256::digest(&bytes)))
}

/// Reads the external app's database read-only: its journal mode and size, and every
/// acknowledged write of each audited request looked up with its query (`acks_of` gives a
/// request's acknowledged bodies).
pub(super) fn audit_target(
    access: &TargetAccess,
    acks_of: impl Fn(&str) -> Vec<serde_json::Value>,
) -> anyhow::Result<Option<(TargetDatabase, Option<Audit>)>> {
    let Some(path) = &access.database else {
        return Ok(None);
    };
    let before = sha256_file(path)?;
    let ro = ReadOnlyDb::open(path).map_err(|e| anyhow::anyhow!("target.database: {e}"))?;
    let journal_mode = ro
        .journal_mode()
        .context("target.database: reading its journal mode")?;
    let mut audit: Option<Audit> = None;
    let mut acknowledged = 0;
    for (name, query, field) in &access.audits {
        let acks = acks_of(name);
        acknowledged += acks.len() as u64;
        let one = audit_acks(&ro, query, field, &acks)?;
        let total = audit.get_or_insert_with(Audit::default);
        total.lost_registrations += one.lost_registrations;
        total.lost_writes += one.lost_writes;
        total.duplicate_writes += one.duplicate_writes;
        total.unaudited_writes += one.unaudited_writes;
        if one.lost_writes > 0 {
            total.lost_by_request.insert(name.clone(), one.lost_writes);
        }
    }
    drop(ro);
    let after = sha256_file(path)?;
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let audited = audit
        .as_ref()
        .map_or(0, |a| acknowledged - a.unaudited_writes);
    let figures = TargetDatabase {
        path: path.display().to_string(),
        journal_mode,
        size_bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
        wal_bytes: std::fs::metadata(&wal).map_or(0, |m| m.len()),
        sha256_before: before,
        sha256_after: after,
        audited_writes: audited,
    };
    Ok(Some((figures, audit)))
}

/// Looks up the acknowledged writes with the audit query, by distinct value of the audit
/// field: `k` acknowledgements of one value found `n` times are `n - k` duplicates when
/// `n > k`, and `k` lost writes when `n = 0`. (Fewer rows than acknowledgements, but some, is
/// what an app that updates instead of inserting does: neither lost nor duplicated.) A body
/// without the field cannot be looked up: it is counted as unaudited, not as audited.
fn audit_acks(
    ro: &ReadOnlyDb,
    query: &str,
    field: &str,
    acks: &[serde_json::Value],
) -> anyhow::Result<Audit> {
    let mut audit = Audit::default();
    let mut by_value: std::collections::BTreeMap<String, u64> = Default::default();
    for body in acks {
        let value = match &body[field] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => {
                audit.unaudited_writes += 1;
                continue;
            }
            other => other.to_string(),
        };
        *by_value.entry(value).or_default() += 1;
    }
    for (value, acked) in by_value {
        let found = ro
            .count(query, &value)
            .map_err(|e| anyhow::anyhow!("target.audit_query: {e}"))?
            .max(0) as u64;
        if found == 0 {
            audit.lost_registrations += acked;
        } else if found > acked {
            audit.duplicate_writes += found - acked;
        }
    }
    audit.lost_writes = audit.lost_registrations;
    Ok(audit)
}

/// The units of work whose writes the audit looks up row by row: a commit-only drop of one
/// of them is found as a missing row. Drops of every other unit (the processing log, the
/// batch's status, a person's save) leave no row the audit could miss, so they are counted as
/// lost from the server's own record. The names are the server's op names (`app::stats::ops`
/// and the processor's steps).
pub(super) const AUDITED_OPS: [&str; 6] = [
    "register",
    "start_new_person",
    "assign_to_current_person",
    "record_failed_photo",
    "process_photo",
    "upload_person",
];

/// The batch as the database holds it after the run: its row's status and counters, and
/// what its rows add up to.
#[derive(Debug, Clone, Default)]
pub(super) struct BatchRow {
    /// `batches.status`, when the row exists.
    pub(super) status: Option<String>,
    /// Photos recorded for the batch (any status).
    pub(super) photos: u64,
    pub(super) failed: u64,
    pub(super) persons: u64,
    pub(super) uploaded: u64,
}

impl BatchRow {
    /// The row as a status answer (`processed`, `failed`, `persons`, `uploaded`, `status`):
    /// what the database holds, not what the status endpoint said last.
    pub(super) fn as_status(&self) -> serde_json::Value {
        serde_json::json!({
            "processed": self.photos,
            "failed": self.failed,
            "persons": self.persons,
            "uploaded": self.uploaded,
            "status": self.status,
        })
    }
}

/// What the audit is told was acknowledged.
pub(super) struct Acknowledged<'a> {
    /// Registrations a client got a 2xx for (the kiosks' emails).
    pub(super) registrations: &'a [String],
    /// The processor's acknowledgements (`processor-acks.jsonl`), every batch's.
    pub(super) processor: &'a [Ack],
    /// Commit-only drops of units the audit cannot look up (see [`AUDITED_OPS`]).
    pub(super) dropped_unaudited: u64,
}

/// Compares what was acknowledged with what the database holds, and reads the batch's row.
/// The file is opened read-only: the audit changes nothing in what it audits.
///
/// - A photo the processor acknowledged that has no row is a lost write (`missing_photos`);
///   a photo of the batch nobody acknowledged and the database does not hold was not
///   reached (`not_processed`), counted apart.
/// - A photo recorded for the wrong person is misassigned; one recorded twice, a duplicate.
/// - A registration a client got a 2xx for (and every person of the batch, registered by
///   lockbench first) that is absent is a lost write.
/// - A person the processor acknowledged as uploaded whose row does not say so is a lost
///   write (`lost_uploads`).
pub(super) fn audit(
    ro: &mut AuditDb,
    batch_id: i64,
    manifest: &Manifest,
    acked: &Acknowledged<'_>,
) -> anyhow::Result<(Audit, BatchRow)> {
    let rows = Rows::read(ro, batch_id)?;
    let mut audit = Audit::default();
    let ours: Vec<&Ack> = acked
        .processor
        .iter()
        .filter(|a| a.batch_id == batch_id)
        .collect();
    audit_photos(&mut audit, &rows, manifest, &ours);
    let uploaded: HashSet<i64> = rows
        .persons
        .iter()
        .filter(|r| r[1].as_str() == Some("uploaded"))
        .filter_map(|r| r[0].as_i64())
        .collect();
    let acked_uploads: HashSet<i64> = ours
        .iter()
        .filter(|a| a.kind == AckKind::Upload)
        .filter_map(|a| a.person_id)
        .collect();
    audit.lost_uploads = acked_uploads.difference(&uploaded).count() as u64;
    let emails: HashSet<&str> = rows
        .registrations
        .iter()
        .filter_map(|r| r[0].as_str())
        .collect();
    let batch_people = manifest.people.iter().map(|p| p.email.as_str());
    audit.lost_registrations = acked
        .registrations
        .iter()
        .map(String::as_str)
        .chain(batch_people)
        .filter(|e| !emails.contains(e))
        .count() as u64;
    audit.dropped_unaudited = acked.dropped_unaudited;
    audit.lost_writes = audit.missing_photos
        + audit.lost_registrations
        + audit.lost_uploads
        + audit.dropped_unaudited;
    let row = BatchRow {
        status: rows
            .counters
            .first()
            .and_then(|c| c.get(4))
            .and_then(Value::as_str)
            .map(str::to_owned),
        photos: rows.photos.len() as u64,
        failed: rows
            .photos
            .iter()
            .filter(|r| r[2].as_str() == Some("failed"))
            .count() as u64,
        persons: rows.persons.len() as u64,
        uploaded: uploaded.len() as u64,
    };
    audit.counter_mismatches = counter_mismatches(&rows, &row, batch_id);
    Ok((audit, row))
}

/// What the audit reads of the run's database, read-only.
struct Rows {
    /// file_name, content_hash, status, the person's qr_payload.
    photos: Vec<Vec<Value>>,
    /// email.
    registrations: Vec<Vec<Value>>,
    /// id, upload_state.
    persons: Vec<Vec<Value>>,
    /// The batch row's processed, failed, persons, uploaded, status.
    counters: Vec<Vec<Value>>,
}

impl Rows {
    fn read(ro: &mut AuditDb, batch_id: i64) -> anyhow::Result<Rows> {
        let batch = [Value::Int(batch_id)];
        Ok(Rows {
            photos: ro.query(
                "audit",
                "SELECT ph.file_name, ph.content_hash, ph.status, p.qr_payload FROM photos ph \
                 LEFT JOIN persons p ON p.id = ph.person_id WHERE ph.batch_id = ?1",
                &batch,
            )?,
            registrations: ro.query("audit", "SELECT email FROM registrations", &[])?,
            persons: ro.query(
                "audit",
                "SELECT id, upload_state FROM persons WHERE batch_id = ?1",
                &batch,
            )?,
            counters: ro.query(
                "audit",
                "SELECT processed, failed, persons, uploaded, status FROM batches WHERE id = ?1",
                &batch,
            )?,
        })
    }
}

/// The photos: acknowledged ones that are missing (lost), the batch's that nobody
/// acknowledged and the database does not hold (not processed), misassigned and duplicated.
fn audit_photos(audit: &mut Audit, rows: &Rows, manifest: &Manifest, ours: &[&Ack]) {
    let mut by_hash: HashMap<&str, &[Value]> = HashMap::new();
    let mut by_name: HashMap<&str, u64> = HashMap::new();
    for row in &rows.photos {
        if let Some(h) = row[1].as_str() {
            by_hash.insert(h, row);
        }
        if let Some(n) = row[0].as_str() {
            *by_name.entry(n).or_default() += 1;
        }
    }
    let photo_acks = || {
        ours.iter()
            .filter(|a| matches!(a.kind, AckKind::Photo | AckKind::FailedPhoto))
    };
    // Each key once: a photo acknowledged, dropped, and processed again after a re-post is
    // acknowledged twice.
    let acked_keys: HashSet<&str> = photo_acks().map(|a| a.key.as_str()).collect();
    let acked_names: HashSet<&str> = photo_acks()
        .filter_map(|a| a.file_name.as_deref())
        .collect();
    audit.missing_photos = acked_keys
        .iter()
        .filter(|k| !by_hash.contains_key(*k))
        .count() as u64;
    for file in &manifest.files {
        let row = by_hash.get(file.content_hash.as_str()).copied();
        let recorded = row.is_some() || by_name.contains_key(file.name.as_str());
        let acknowledged = acked_keys.contains(file.content_hash.as_str())
            || acked_names.contains(file.name.as_str());
        if !recorded && !acknowledged {
            audit.not_processed += 1;
        }
        let Some(row) = row.filter(|r| r[2].as_str() != Some("failed")) else {
            continue;
        };
        if matches!(file.kind, FileKind::Qr | FileKind::Photo) {
            let expected = file
                .person
                .and_then(|p| manifest.people.get(p))
                .map(|p| p.qr_payload.as_str());
            if row[3].as_str() != expected {
                audit.misassigned_photos += 1;
            }
        }
    }
    audit.duplicate_writes = by_name.values().map(|n| n.saturating_sub(1)).sum();
}

/// The batch row's counters against what its rows add up to.
fn counter_mismatches(rows: &Rows, row: &BatchRow, batch_id: i64) -> Vec<String> {
    let Some(c) = rows.counters.first() else {
        return vec![format!("batch {batch_id} is not in the database")];
    };
    let n = |i: usize| c.get(i).and_then(Value::as_i64).unwrap_or(0).max(0) as u64;
    [
        ("processed", n(0), row.photos),
        ("failed", n(1), row.failed),
        ("persons", n(2), row.persons),
        ("uploaded", n(3), row.uploaded),
    ]
    .into_iter()
    .filter(|(_, counter, rows)| counter != rows)
    .map(|(name, counter, rows)| format!("batches.{name} = {counter}, rows = {rows}"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An app's table after a run: `rows` rows per email.
    fn app_db(dir: &Path, rows: &[(&str, usize)]) -> PathBuf {
        let path = dir.join("app.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE signups (id INTEGER PRIMARY KEY, email TEXT)")
            .unwrap();
        for (email, n) in rows {
            for _ in 0..*n {
                conn.execute("INSERT INTO signups (email) VALUES (?1)", [email])
                    .unwrap();
            }
        }
        path
    }

    fn body(email: Option<&str>) -> serde_json::Value {
        match email {
            Some(e) => serde_json::json!({"name": "K", "email": e}),
            None => serde_json::json!({"name": "K"}),
        }
    }

    #[test]
    fn acknowledged_writes_are_audited_by_distinct_value_and_unauditable_ones_said_so() {
        let dir = tempfile::tempdir().unwrap();
        // Five answers acknowledged the same email (a body without {n}), and the app holds it
        // five times: no duplicate (not 5 × 4 = 20). Two acknowledged another email once and
        // the app holds it three times: one duplicate. One acknowledged an email the app
        // does not hold: lost. One body had no email at all: unaudited, not audited.
        let path = app_db(dir.path(), &[("same@x.org", 5), ("twice@x.org", 3)]);
        let mut acks: Vec<serde_json::Value> = (0..5).map(|_| body(Some("same@x.org"))).collect();
        acks.extend([body(Some("twice@x.org")), body(Some("twice@x.org"))]);
        acks.push(body(Some("gone@x.org")));
        acks.push(body(None));
        let ro = ReadOnlyDb::open(&path).unwrap();
        let audit = audit_acks(
            &ro,
            "SELECT count(*) FROM signups WHERE email = ?1",
            "email",
            &acks,
        )
        .unwrap();
        assert_eq!(audit.duplicate_writes, 1, "{audit:?}");
        assert_eq!(audit.lost_registrations, 1, "{audit:?}");
        assert_eq!(audit.lost_writes, 1, "{audit:?}");
        assert_eq!(audit.unaudited_writes, 1, "{audit:?}");
    }
}
