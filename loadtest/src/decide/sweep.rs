//! `lockbench sweep`: many runs of one scenario with settings changed, one row each.
//!
//! Both change a scenario through dotted keys (`server.storage.journal_mode = "wal"`), applied to
//! the scenario's TOML form and parsed back, so an override is checked exactly as a scenario file
//! is. Every row is a full `lockbench run` on its own fresh database; the photo batch is built
//! once per sweep (it is deterministic) and reused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::report::sweep::{sweep_html, sweep_markdown_for};
pub use crate::report::sweep::{SweepAbort, SweepReport, SweepRow};
use crate::report::Report;
use crate::run::{run_scenario, RunOptions};
use crate::scenario::apply;
use crate::scenario::Scenario;
/// A sweep file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    pub name: String,
    /// The base scenario, relative to the sweep file.
    pub base: PathBuf,
    #[serde(default)]
    pub description: String,
    /// Overrides applied to every row (e.g. a smaller batch).
    #[serde(default)]
    pub set: BTreeMap<String, toml::Value>,
    /// Cartesian product of these.
    #[serde(default)]
    pub dimensions: Vec<Dimension>,
    /// Or an explicit list of rows.
    #[serde(default)]
    pub rows: Vec<RowSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    /// The dotted key this dimension sets; empty when each value is a table of overrides.
    #[serde(default)]
    pub key: String,
    pub values: Vec<toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowSpec {
    pub label: String,
    #[serde(default)]
    pub set: BTreeMap<String, toml::Value>,
}

/// The key a finished row is reused by: a hash of its whole scenario.
pub fn settings_key(scenario: &Scenario) -> anyhow::Result<String> {
    use sha2::Digest;
    let text = toml::to_string(scenario).context("scenario to TOML")?;
    Ok(format!("{:x}", sha2::Sha256::digest(text.as_bytes())))
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn row_from(
    label: &str,
    set: &BTreeMap<String, toml::Value>,
    report: &Report,
    wall_s: f64,
    path: &Path,
) -> SweepRow {
    let (count, failures) = report
        .requests
        .values()
        .fold((0, 0), |(c, f), s| (c + s.count, f + s.failures));
    SweepRow {
        label: label.to_owned(),
        set: set
            .iter()
            .map(|(k, v)| (k.clone(), value_text(v)))
            .collect(),
        exit_code: report.verdict.exit_code,
        passed: report.verdict.passed,
        lock_errors: report.lock_errors.total,
        lock_errors_by_code: report.lock_errors.by_code.clone(),
        client_visible_lock_errors: report.lock_errors.client_visible,
        requests: count,
        error_rate: if count == 0 {
            0.0
        } else {
            failures as f64 / count as f64
        },
        retries: report.retries.unwrap_or(0),
        commit_only_dropped: report.commit_only_dropped.unwrap_or(0),
        p99_ms: report
            .requests
            .iter()
            .map(|(k, s)| (k.clone(), s.latency_us.p99 as f64 / 1000.0))
            .collect(),
        batch_seconds: report.batch.as_ref().map(|b| b.duration_s),
        batch_finished: report.batch.as_ref().is_some_and(|b| b.finished),
        lost_writes: report.audit.as_ref().map(|a| a.lost_writes),
        misassigned_photos: report.audit.as_ref().map(|a| a.misassigned_photos),
        gates_failed: report
            .gates
            .iter()
            .filter(|g| !g.passed)
            .map(|g| g.name.clone())
            .collect(),
        wall_s: (wall_s * 10.0).round() / 10.0,
        report: path.join("report.json").display().to_string(),
        settings_key: String::new(),
        faults: report
            .faults
            .iter()
            .map(|f| f.description.clone())
            .collect(),
        restarts: report.restarts.len() as u64,
        duplicate_writes: report.audit.as_ref().map(|a| a.duplicate_writes),
    }
}

/// The rows of a sweep file: explicit rows, or the cartesian product of its dimensions.
pub fn expand(file: &SweepFile) -> anyhow::Result<Vec<RowSpec>> {
    if !file.rows.is_empty() && !file.dimensions.is_empty() {
        bail!("a sweep has either rows or dimensions, not both");
    }
    if !file.rows.is_empty() {
        return Ok(file.rows.clone());
    }
    if file.dimensions.is_empty() {
        bail!("a sweep needs rows or dimensions");
    }
    let mut rows = vec![RowSpec {
        label: String::new(),
        set: BTreeMap::new(),
    }];
    for d in &file.dimensions {
        if d.values.is_empty() {
            bail!("dimension {}: no values", d.key);
        }
        let short = d.key.rsplit('.').next().unwrap_or(&d.key);
        let mut next = Vec::new();
        for row in &rows {
            for v in &d.values {
                let mut set = row.set.clone();
                let part = match (d.key.is_empty(), v) {
                    // A dimension without a key: each value is a table of dotted overrides,
                    // with an optional label (a retry policy is several settings at once).
                    (true, toml::Value::Table(t)) => {
                        for (k, v) in t.iter().filter(|(k, _)| k.as_str() != "label") {
                            set.insert(k.clone(), v.clone());
                        }
                        t.get("label").map_or_else(|| value_text(v), value_text)
                    }
                    (true, _) => {
                        bail!("a dimension without a key needs tables of overrides as values")
                    }
                    (false, _) => {
                        set.insert(d.key.clone(), v.clone());
                        format!("{short}={}", value_text(v))
                    }
                };
                let label = if row.label.is_empty() {
                    part
                } else {
                    format!("{} {part}", row.label)
                };
                next.push(RowSpec { label, set });
            }
        }
        rows = next;
    }
    Ok(rows)
}

/// A sweep file with every row's scenario resolved and checked.
struct Planned {
    file: SweepFile,
    base_path: PathBuf,
    /// The base scenario with what every row shares applied (the pages' gates).
    base: Scenario,
    /// (label, overrides, scenario) per row.
    rows: Vec<(String, BTreeMap<String, toml::Value>, Scenario)>,
}

/// Reads a sweep file and resolves every row (the file's `set`, the row's, then `extra`),
/// checking each as a scenario file is checked, before anything runs.
fn plan(file_path: &Path, extra: &BTreeMap<String, toml::Value>) -> anyhow::Result<Planned> {
    let text = std::fs::read_to_string(file_path)
        .with_context(|| format!("reading {}", file_path.display()))?;
    let file: SweepFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("sweep {}: {e}", file_path.display()))?;
    let base_path = file_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(&file.base);
    let base = Scenario::load(&base_path)?;
    let mut rows = Vec::new();
    for row in expand(&file)? {
        let mut set = file.set.clone();
        set.extend(row.set.clone());
        set.extend(extra.clone());
        let scenario = apply(&base, &set).with_context(|| format!("row {:?}", row.label))?;
        rows.push((row.label, set, scenario));
    }
    // What every row shares (the file's `set` and the command line's), for the pages: a gate
    // set there is one the best-row rule goes by.
    let mut common = file.set.clone();
    common.extend(extra.clone());
    let base = apply(&base, &common).unwrap_or(base);
    Ok(Planned {
        file,
        base_path,
        base,
        rows,
    })
}

/// `lockbench validate`: a scenario file, or a sweep file (one with `base`) with all its
/// rows; returns the resolved settings as TOML.
pub fn validate_file(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if table.contains_key("base") {
        let planned = plan(path, &BTreeMap::new())?;
        let mut out = format!(
            "# sweep {:?} over {}: {} rows\n",
            planned.file.name,
            planned.base_path.display(),
            planned.rows.len()
        );
        for (label, set, _) in &planned.rows {
            let sets: Vec<String> = set.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            out.push_str(&format!("# row {label:?}: {}\n", sets.join(", ")));
        }
        Ok(out)
    } else {
        let scenario = Scenario::load(path)?;
        let mut out: String = scenario
            .blind_spots()
            .iter()
            .map(|w| format!("# warning: {w}\n"))
            .collect();
        out.push_str(&toml::to_string(&scenario).context("scenario to TOML")?);
        Ok(out)
    }
}

/// Runs a sweep; rows whose report already exists in `out` are kept, not run again.
pub fn sweep(
    file_path: &Path,
    out: &Path,
    server_exe: Option<PathBuf>,
    progress: bool,
) -> anyhow::Result<SweepReport> {
    sweep_with(file_path, out, server_exe, progress, &BTreeMap::new())
}

/// A sweep with `extra` overrides laid over every row (gates given on the command line).
pub fn sweep_with(
    file_path: &Path,
    out: &Path,
    server_exe: Option<PathBuf>,
    progress: bool,
    extra: &BTreeMap<String, toml::Value>,
) -> anyhow::Result<SweepReport> {
    let planned = plan(file_path, extra)?;
    std::fs::create_dir_all(out)?;
    let bar = if progress {
        indicatif::ProgressBar::new(planned.rows.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut report = SweepReport {
        schema_version: 1,
        name: planned.file.name.clone(),
        description: planned.file.description.clone(),
        base: planned.base_path.display().to_string(),
        rows: Vec::new(),
        interrupted: false,
        planned_rows: planned.rows.len(),
        aborted: None,
    };
    for (i, (label, set, scenario)) in planned.rows.iter().enumerate() {
        if crate::stop::interrupted() {
            report.interrupted = true;
            break;
        }
        bar.set_message(label.clone());
        let total = planned.rows.len();
        crate::run::live::announce_step(format!("row {} of {total}: {label}", i + 1));
        let dir = out.join("rows").join(format!(
            "{:02}-{}",
            i + 1,
            lockbench_server::text::slug(label)
        ));
        let row = RowRun {
            label,
            set,
            scenario,
            dir: &dir,
        };
        match row.reuse_or_run(&planned.base_path, out, server_exe.clone()) {
            Ok(Some(row)) => {
                crate::run::live::announce_row(crate::report::live::LiveRow {
                    label: row.label.clone(),
                    passed: row.passed,
                    lock_errors: row.lock_errors,
                    lost_writes: row.lost_writes,
                    error_rate: row.error_rate,
                    report: row.report.clone(),
                });
                report.rows.push(row);
            }
            // Not kept: the row runs again when the sweep is resumed.
            Ok(None) => {
                report.interrupted = true;
                break;
            }
            Err(e) => {
                // The sweep stops here; its reports say so and name the row.
                report.aborted = Some(SweepAbort {
                    label: label.clone(),
                    error: format!("{e:#}"),
                });
                break;
            }
        }
        bar.inc(1);
        write_sweep(&report, &planned.base, out)?;
    }
    bar.finish_and_clear();
    write_sweep(&report, &planned.base, out)
}

/// One row of a sweep on its way.
struct RowRun<'a> {
    label: &'a str,
    set: &'a BTreeMap<String, toml::Value>,
    scenario: &'a Scenario,
    dir: &'a Path,
}

impl RowRun<'_> {
    /// The row's result: the one already in its folder when its label and settings are
    /// unchanged, else a fresh run's; None when an interruption stopped the run.
    fn reuse_or_run(
        &self,
        base_path: &Path,
        out: &Path,
        server_exe: Option<PathBuf>,
    ) -> anyhow::Result<Option<SweepRow>> {
        let marker = self.dir.join("row.json");
        let key = settings_key(self.scenario)?;
        if let Ok(existing) = std::fs::read_to_string(&marker) {
            if let Ok(row) = serde_json::from_str::<SweepRow>(&existing) {
                if row.label == self.label && row.settings_key == key {
                    return Ok(Some(row));
                }
            }
            // The row's settings changed since it ran: run it again.
        }
        let started = Instant::now();
        let opts = RunOptions {
            scenario: base_path.to_path_buf(),
            out: Some(self.dir.to_path_buf()),
            server_exe,
            photos_cache: Some(out.join("photos")),
            scenario_override: Some(self.scenario.clone()),
            ..RunOptions::default()
        };
        let outcome = run_scenario(&opts)?;
        if outcome.report.interrupted {
            return Ok(None);
        }
        let mut row = row_from(
            self.label,
            self.set,
            &outcome.report,
            started.elapsed().as_secs_f64(),
            self.dir,
        );
        row.settings_key = key;
        std::fs::write(&marker, serde_json::to_string_pretty(&row)?)?;
        Ok(Some(row))
    }
}

fn write_sweep(
    report: &SweepReport,
    scenario: &Scenario,
    out: &Path,
) -> anyhow::Result<SweepReport> {
    let report = report.clone();
    std::fs::write(
        out.join("sweep.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    std::fs::write(out.join("sweep.md"), sweep_markdown_for(&report, scenario))?;
    std::fs::write(out.join("sweep.html"), sweep_html(&report, scenario))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_expand_to_their_cartesian_product() {
        let file: SweepFile = toml::from_str(
            "name = \"m\"\nbase = \"b.toml\"\n[[dimensions]]\nkey = \"server.storage.journal_mode\"\nvalues = [\"delete\", \"wal\"]\n[[dimensions]]\nkey = \"server.storage.tx_mode\"\nvalues = [\"deferred\", \"immediate\", \"lazy\"]\n",
        )
        .unwrap();
        let rows = expand(&file).unwrap();
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[0].label, "journal_mode=delete tx_mode=deferred");
        assert_eq!(rows[5].label, "journal_mode=wal tx_mode=lazy");
    }
}
