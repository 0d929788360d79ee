//! The audit: what clients were told against what the database holds, read-only. For the
//! reference server, the run's SQLite file or PostgreSQL schema against the batch's manifest
//! and the kiosks' acknowledged writes; for an external app, `[target]`'s database looked up
//! with its `audit_query`. Never writes to what it audits.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use lockbench_server::photos::{FileKind, Manifest};
use lockbench_server::storage::{postgres, ReadOnlyDb, Value};

use crate::report::{Audit, TargetDatabase};
use crate::scenario::Scenario;

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
    pub(super) log: Option<(PathBuf, regex::Regex)>,
    pub(super) database: Option<PathBuf>,
    /// (audit_query, audit_field)
    pub(super) audit: Option<(String, String)>,
}

/// Checks `[target]` against the files themselves: the log can be read, the database opens
/// read-only, the audit query compiles and answers one number. Each error names the key.
pub(super) fn check_target(scenario: &Scenario) -> anyhow::Result<TargetAccess> {
    let Some(t) = &scenario.target else {
        return Ok(TargetAccess::default());
    };
    let mut access = TargetAccess::default();
    if let Some(log) = &t.log {
        let pattern = regex::Regex::new(t.lock_pattern()).map_err(|e| {
            anyhow::anyhow!("target.lock_pattern: not a valid regular expression: {e}")
        })?;
        std::fs::File::open(log)
            .with_context(|| format!("target.log: cannot read {}", log.display()))?;
        access.log = Some((log.clone(), pattern));
    }
    if let Some(db) = &t.database {
        let ro = ReadOnlyDb::open(db).map_err(|e| anyhow::anyhow!("target.database: {e}"))?;
        if let (Some(query), Some(field)) = (&t.audit_query, &t.audit_field) {
            ro.count(query, "")
                .map_err(|e| anyhow::anyhow!("target.audit_query: {e}"))?;
            access.audit = Some((query.clone(), field.clone()));
        }
        access.database = Some(db.clone());
    }
    Ok(access)
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", sha2::Sha256::digest(&bytes)))
}

/// Reads the external app's database read-only: its journal mode and size, and every
/// acknowledged kiosk write looked up with the audit query.
pub(super) fn audit_target(
    access: &TargetAccess,
    acks: &[serde_json::Value],
) -> anyhow::Result<Option<(TargetDatabase, Option<Audit>)>> {
    let Some(path) = &access.database else {
        return Ok(None);
    };
    let before = sha256_file(path)?;
    let ro = ReadOnlyDb::open(path).map_err(|e| anyhow::anyhow!("target.database: {e}"))?;
    let journal_mode = ro
        .journal_mode()
        .context("target.database: PRAGMA journal_mode")?;
    let audit = match &access.audit {
        None => None,
        Some((query, field)) => Some(audit_acks(&ro, query, field, acks)?),
    };
    drop(ro);
    let after = sha256_file(path)?;
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let audited = audit
        .as_ref()
        .map_or(0, |a| acks.len() as u64 - a.unaudited_writes);
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

/// Compares what clients were told with what the database holds. The file is opened
/// read-only: the audit changes nothing in what it audits.
pub(super) fn audit(
    ro: &mut AuditDb,
    batch_id: i64,
    manifest: &Manifest,
    acks: &[String],
) -> anyhow::Result<Audit> {
    let photos = ro.query(
        "audit",
        "SELECT ph.file_name, ph.content_hash, ph.status, p.qr_payload FROM photos ph \
         LEFT JOIN persons p ON p.id = ph.person_id WHERE ph.batch_id = ?1",
        &[Value::Int(batch_id)],
    )?;
    let registrations = ro.query("audit", "SELECT email FROM registrations", &[])?;
    let counters = ro.query(
        "audit",
        "SELECT processed, failed, persons, uploaded, \
           (SELECT count(*) FROM photos WHERE batch_id = ?1), \
           (SELECT count(*) FROM photos WHERE batch_id = ?1 AND status = 'failed'), \
           (SELECT count(*) FROM persons WHERE batch_id = ?1), \
           (SELECT count(*) FROM persons WHERE batch_id = ?1 AND upload_state = 'uploaded') \
         FROM batches WHERE id = ?1",
        &[Value::Int(batch_id)],
    )?;
    let mut by_hash: HashMap<&str, Vec<&[Value]>> = HashMap::new();
    let mut by_name: HashMap<&str, u64> = HashMap::new();
    for row in &photos {
        if let Some(h) = row[1].as_str() {
            by_hash.entry(h).or_default().push(row);
        }
        if let Some(n) = row[0].as_str() {
            *by_name.entry(n).or_default() += 1;
        }
    }
    let mut audit = Audit::default();
    for file in &manifest.files {
        match file.kind {
            FileKind::Corrupt => {
                let recorded = photos.iter().any(|r| {
                    r[0].as_str() == Some(file.name.as_str()) && r[2].as_str() == Some("failed")
                });
                if !recorded {
                    audit.missing_photos += 1;
                }
            }
            FileKind::Qr | FileKind::Photo => match by_hash.get(file.content_hash.as_str()) {
                None => audit.missing_photos += 1,
                Some(rows) => {
                    let expected = file
                        .person
                        .and_then(|p| manifest.people.get(p))
                        .map(|p| p.qr_payload.as_str());
                    if rows[0][3].as_str() != expected {
                        audit.misassigned_photos += 1;
                    }
                }
            },
        }
    }
    audit.duplicate_writes = by_name.values().map(|n| n.saturating_sub(1)).sum();
    let emails: HashSet<&str> = registrations.iter().filter_map(|r| r[0].as_str()).collect();
    let batch_people = manifest.people.iter().map(|p| p.email.as_str());
    audit.lost_registrations = acks
        .iter()
        .map(String::as_str)
        .chain(batch_people)
        .filter(|e| !emails.contains(e))
        .count() as u64;
    audit.lost_writes = audit.missing_photos + audit.lost_registrations;
    if let Some(c) = counters.first() {
        let n = |i: usize| c.get(i).and_then(Value::as_i64).unwrap_or(0);
        for (name, counter, rows) in [
            ("processed", n(0), n(4)),
            ("failed", n(1), n(5)),
            ("persons", n(2), n(6)),
            ("uploaded", n(3), n(7)),
        ] {
            if counter != rows {
                audit
                    .counter_mismatches
                    .push(format!("batches.{name} = {counter}, rows = {rows}"));
            }
        }
    } else {
        audit
            .counter_mismatches
            .push(format!("batch {batch_id} is not in the database"));
    }
    Ok(audit)
}
