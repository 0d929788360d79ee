//! `lockbench sweep` and `lockbench breakpoint`: many runs of one scenario with settings changed.
//!
//! Both change a scenario through dotted keys (`server.storage.journal_mode = "wal"`), applied to
//! the scenario's TOML form and parsed back, so an override is checked exactly as a scenario file
//! is. Every row is a full `lockbench run` on its own fresh database; the photo batch is built
//! once per sweep (it is deterministic) and reused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::report::Report;
use crate::run::{run_scenario, RunOptions};
use crate::scenario::{set_key, Scenario};

/// The scenario with `overrides` applied; errors name the key.
pub fn apply(
    base: &Scenario,
    overrides: &BTreeMap<String, toml::Value>,
) -> anyhow::Result<Scenario> {
    let mut table = toml::Table::try_from(base).context("scenario to TOML")?;
    for (key, value) in overrides {
        set_key(&mut table, key, value.clone())?;
    }
    let text = toml::to_string(&table)?;
    let scenario: Scenario = toml::from_str(&text).map_err(|e| {
        let keys: Vec<&str> = overrides.keys().map(String::as_str).collect();
        anyhow::anyhow!("overrides {keys:?}: {e}")
    })?;
    scenario.validate()?;
    Ok(scenario)
}

/// Parses `key=value` (the value as TOML, or as a string when it is not valid TOML).
pub fn parse_set(text: &str) -> anyhow::Result<(String, toml::Value)> {
    let (key, value) = text
        .split_once('=')
        .with_context(|| format!("--set {text:?}: expected key=value"))?;
    let value = value.trim();
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|t| t.get("v").cloned())
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    Ok((key.trim().to_owned(), parsed))
}

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

/// One finished row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepRow {
    pub label: String,
    pub set: BTreeMap<String, String>,
    pub exit_code: u8,
    pub passed: bool,
    pub lock_errors: u64,
    pub lock_errors_by_code: BTreeMap<String, u64>,
    pub client_visible_lock_errors: u64,
    pub requests: u64,
    pub error_rate: f64,
    pub retries: u64,
    pub commit_only_dropped: u64,
    pub p99_ms: BTreeMap<String, f64>,
    pub batch_seconds: Option<f64>,
    pub batch_finished: bool,
    pub lost_writes: Option<u64>,
    pub misassigned_photos: Option<u64>,
    pub gates_failed: Vec<String>,
    /// Wall time of the whole row (server start to report), seconds.
    pub wall_s: f64,
    pub report: String,
    /// SHA-256 of the row's whole scenario as it ran: an interrupted sweep reuses a finished
    /// row only when its label and its settings are both unchanged.
    #[serde(default)]
    pub settings_key: String,
    /// The faults the row applied, in words.
    #[serde(default)]
    pub faults: Vec<String>,
    /// Worker restarts during the row.
    #[serde(default)]
    pub restarts: u64,
    /// Duplicate writes the audit found.
    #[serde(default)]
    pub duplicate_writes: Option<u64>,
}

/// The key a finished row is reused by: a hash of its whole scenario.
pub fn settings_key(scenario: &Scenario) -> anyhow::Result<String> {
    use sha2::Digest;
    let text = toml::to_string(scenario).context("scenario to TOML")?;
    Ok(format!("{:x}", sha2::Sha256::digest(text.as_bytes())))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepReport {
    pub schema_version: u32,
    pub name: String,
    pub description: String,
    pub base: String,
    pub rows: Vec<SweepRow>,
    /// True when Ctrl-C stopped the sweep: the rows finished so far are kept, and running
    /// the sweep again resumes it.
    #[serde(default)]
    pub interrupted: bool,
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

fn slug(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
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
        toml::to_string(&scenario).context("scenario to TOML")
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
    let Planned {
        file,
        base_path,
        base,
        rows: planned,
    } = plan(file_path, extra)?;
    std::fs::create_dir_all(out)?;
    let cache = out.join("photos");
    let bar = if progress {
        indicatif::ProgressBar::new(planned.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut done = Vec::new();
    let mut interrupted = false;
    let write = |done: &[SweepRow], interrupted| {
        write_sweep(&file, &base_path, &base, done, out, interrupted)
    };
    for (i, (label, set, scenario)) in planned.into_iter().enumerate() {
        if crate::faults::interrupted() {
            interrupted = true;
            break;
        }
        bar.set_message(label.clone());
        let dir = out
            .join("rows")
            .join(format!("{:02}-{}", i + 1, slug(&label)));
        let marker = dir.join("row.json");
        let key = settings_key(&scenario)?;
        if let Ok(existing) = std::fs::read_to_string(&marker) {
            if let Ok(row) = serde_json::from_str::<SweepRow>(&existing) {
                if row.label == label && row.settings_key == key {
                    done.push(row);
                    bar.inc(1);
                    continue;
                }
            }
            // The row's settings changed since it ran: run it again.
        }
        let started = Instant::now();
        let opts = RunOptions {
            scenario: base_path.clone(),
            out: Some(dir.clone()),
            server_exe: server_exe.clone(),
            photos_cache: Some(cache.clone()),
            scenario_override: Some(scenario),
            ..RunOptions::default()
        };
        let outcome = run_scenario(&opts).with_context(|| format!("row {label:?}"))?;
        if outcome.report.interrupted {
            // Not kept: the row runs again when the sweep is resumed.
            interrupted = true;
            break;
        }
        let mut row = row_from(
            &label,
            &set,
            &outcome.report,
            started.elapsed().as_secs_f64(),
            &dir,
        );
        row.settings_key = key;
        std::fs::write(&marker, serde_json::to_string_pretty(&row)?)?;
        done.push(row);
        bar.inc(1);
        write(&done, false)?;
    }
    bar.finish_and_clear();
    write(&done, interrupted)
}

fn write_sweep(
    file: &SweepFile,
    base: &Path,
    scenario: &Scenario,
    rows: &[SweepRow],
    out: &Path,
    interrupted: bool,
) -> anyhow::Result<SweepReport> {
    let report = SweepReport {
        schema_version: 1,
        name: file.name.clone(),
        description: file.description.clone(),
        base: base.display().to_string(),
        rows: rows.to_vec(),
        interrupted,
    };
    std::fs::write(
        out.join("sweep.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    std::fs::write(out.join("sweep.md"), sweep_markdown(&report))?;
    std::fs::write(out.join("sweep.html"), sweep_html(&report, scenario))?;
    Ok(report)
}

fn opt(v: Option<u64>) -> String {
    v.map_or("–".into(), |n| n.to_string())
}

/// The sweep's table: one row per setting combination.
pub fn sweep_markdown(r: &SweepReport) -> String {
    let endpoints: Vec<String> = r
        .rows
        .iter()
        .flat_map(|row| row.p99_ms.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut s = format!(
        "# lockbench sweep: {}\n\n{}\n\nBase scenario: `{}`. {} rows.\n\n",
        r.name,
        r.description,
        r.base,
        r.rows.len()
    );
    s.push_str("| # | row | gates | lock errors (server) | by code | reached clients | error rate | retries | commit-only drops |");
    for e in &endpoints {
        s.push_str(&format!(" p99 ms {e} |"));
    }
    s.push_str(" batch s | lost writes | duplicates | misassigned | restarts |\n|");
    for _ in 0..(14 + endpoints.len()) {
        s.push_str(" --- |");
    }
    s.push('\n');
    for (i, row) in r.rows.iter().enumerate() {
        let codes: Vec<String> = row
            .lock_errors_by_code
            .iter()
            .map(|(c, n)| format!("{c}={n}"))
            .collect();
        let gates = if row.passed {
            "pass".to_owned()
        } else {
            format!("FAIL ({})", row.gates_failed.join(", "))
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.4} | {} | {} |",
            i + 1,
            crate::report::markdown::cell(&row.label),
            crate::report::markdown::cell(&gates),
            row.lock_errors,
            codes.join(" "),
            row.client_visible_lock_errors,
            row.error_rate,
            row.retries,
            row.commit_only_dropped
        ));
        for e in &endpoints {
            s.push_str(&format!(
                " {} |",
                row.p99_ms.get(e).map_or("–".into(), |v| format!("{v:.1}"))
            ));
        }
        let batch = match row.batch_seconds {
            Some(b) if row.batch_finished => format!("{b:.1}"),
            Some(b) => format!("{b:.1} (unfinished)"),
            None => "–".into(),
        };
        s.push_str(&format!(
            " {batch} | {} | {} | {} | {} |\n",
            opt(row.lost_writes),
            opt(row.duplicate_writes),
            opt(row.misassigned_photos),
            row.restarts
        ));
    }
    s.push_str("\nEach row is a full `lockbench run` on its own fresh database; its report is in the row's folder.\n");
    if r.interrupted {
        s.push_str("\n**Interrupted** by Ctrl-C: the rows above are the finished ones; run the same command again to resume.\n");
    }
    s
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Horizontal bars, one per row: a self-contained SVG.
fn bars(title: &str, unit: &str, values: &[(String, f64)], colour: &str) -> String {
    let max = values.iter().map(|v| v.1).fold(0.0_f64, f64::max).max(1e-9);
    let row_h = 22.0;
    let height = 40.0 + row_h * values.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"{height}\"><text x=\"10\" y=\"20\" font-weight=\"bold\">{}</text>",
        esc(title)
    );
    for (i, (label, v)) in values.iter().enumerate() {
        let y = 30.0 + row_h * i as f64;
        let w = if v.is_finite() { 480.0 * v / max } else { 0.0 };
        svg.push_str(&format!(
            "<text x=\"10\" y=\"{:.0}\" font-size=\"12\">{}</text><rect x=\"330\" y=\"{:.0}\" width=\"{w:.1}\" height=\"16\" fill=\"{colour}\"/><text x=\"{:.0}\" y=\"{:.0}\" font-size=\"12\">{v:.3} {}</text>",
            y + 13.0,
            esc(&label.chars().take(48).collect::<String>()),
            y,
            335.0 + w,
            y + 13.0,
            esc(unit)
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// The journal/tx mode a row ran with (its series in the sweep's charts).
fn series_of(row: &SweepRow, base: &Scenario) -> String {
    let get = |key: &str, default: &str| {
        row.set
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    let journal = get(
        "server.storage.journal_mode",
        base.server.storage.journal_mode.as_sql(),
    );
    let tx = get(
        "server.storage.tx_mode",
        &format!("{:?}", base.server.storage.tx_mode).to_lowercase(),
    );
    format!("{journal}/{tx}")
}

const PALETTE: [&str; 6] = [
    "#c0392b", "#2c7fb8", "#27ae60", "#8e44ad", "#d35400", "#7f8c8d",
];

/// One point per row (x: the row, y: the figure), one coloured series per journal/tx mode.
fn series_chart(
    title: &str,
    unit: &str,
    rows: &[SweepRow],
    series: &[String],
    value: impl Fn(&SweepRow) -> f64,
) -> String {
    let names: Vec<&String> = {
        let mut v: Vec<&String> = series.iter().collect();
        v.sort();
        v.dedup();
        v
    };
    let values: Vec<f64> = rows
        .iter()
        .map(&value)
        .map(|v| if v.is_finite() { v } else { 0.0 })
        .collect();
    let max = values.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let (left, top, width, height) = (110.0, 40.0, 740.0, 220.0);
    let step = if rows.len() > 1 {
        width / (rows.len() - 1) as f64
    } else {
        0.0
    };
    let x = |i: usize| left + step * i as f64;
    let y = |v: f64| top + height - height * v / max;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"{:.0}\"><text x=\"10\" y=\"22\" font-weight=\"bold\">{}</text>",
        top + height + 60.0 + 18.0 * names.len() as f64,
        esc(title)
    );
    svg.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{b}\" stroke=\"#333\"/><line x1=\"{left}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#333\"/>\
         <text x=\"{tx}\" y=\"{ty}\" font-size=\"11\" text-anchor=\"end\">{top_label} {unit}</text><text x=\"{tx}\" y=\"{b}\" font-size=\"11\" text-anchor=\"end\">0</text>",
        b = top + height,
        r = left + width,
        tx = left - 4.0,
        ty = top + 4.0,
        unit = esc(unit),
        top_label = if max >= 100.0 { format!("{max:.0}") } else { format!("{max:.3}") },
    ));
    for (i, _) in rows.iter().enumerate() {
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.0}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            x(i),
            top + height + 16.0,
            i + 1
        ));
    }
    for (n, name) in names.iter().enumerate() {
        let colour = PALETTE[n % PALETTE.len()];
        let points: Vec<(f64, f64)> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| &series[*i] == *name)
            .map(|(i, _)| (x(i), y(values[i])))
            .collect();
        let path: Vec<String> = points
            .iter()
            .map(|(px, py)| format!("{px:.1},{py:.1}"))
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        ));
        for (px, py) in &points {
            svg.push_str(&format!(
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"{colour}\"/>"
            ));
        }
        let ly = top + height + 40.0 + 18.0 * n as f64;
        svg.push_str(&format!(
            "<rect x=\"{left}\" y=\"{:.0}\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{:.0}\" y=\"{:.0}\" font-size=\"12\">{}</text>",
            ly - 10.0,
            left + 18.0,
            ly,
            esc(name)
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// Lock-error rate and p99 against the rows (the retry settings), one series per
/// journal/tx mode, as one self-contained page.
pub fn sweep_html(r: &SweepReport, base: &Scenario) -> String {
    let series: Vec<String> = r.rows.iter().map(|row| series_of(row, base)).collect();
    let mut charts = series_chart(
        "Lock errors (server side) per request, by row",
        "",
        &r.rows,
        &series,
        |row| {
            if row.requests == 0 {
                0.0
            } else {
                row.lock_errors as f64 / row.requests as f64
            }
        },
    );
    let endpoints: std::collections::BTreeSet<String> = r
        .rows
        .iter()
        .flat_map(|row| row.p99_ms.keys().cloned())
        .collect();
    for e in endpoints {
        charts.push_str(&series_chart(
            &format!("p99 {e}, by row"),
            "ms",
            &r.rows,
            &series,
            |row| row.p99_ms.get(&e).copied().unwrap_or(0.0),
        ));
    }
    let legend: String = r
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            format!(
                "<li>{}: {} <small>({})</small></li>",
                i + 1,
                esc(&row.label),
                esc(&series[i])
            )
        })
        .collect();
    let table = sweep_markdown(r);
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>lockbench sweep {}</title><style>body{{font-family:system-ui,sans-serif;margin:2rem}}pre{{white-space:pre-wrap}}</style></head><body><h1>lockbench sweep: {}</h1><p>{}</p>{}<h2>Rows</h2><ol style=\"list-style:none\">{}</ol><h2>Table</h2><pre>{}</pre></body></html>\n",
        esc(&r.name),
        esc(&r.name),
        esc(&r.description),
        charts,
        legend,
        esc(&table)
    )
}

/// The load dimension a breakpoint search raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vary {
    Pollers,
    Kiosks,
    #[value(name = "sync_delay_ms")]
    SyncDelayMs,
}

impl Vary {
    fn key(self) -> &'static str {
        match self {
            Vary::Pollers => "users.pollers",
            Vary::Kiosks => "users.kiosks",
            Vary::SyncDelayMs => "server.storage.sync_delay_ms",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakpointStep {
    pub value: u64,
    pub passed: bool,
    pub first_failed_gate: Option<String>,
    pub lock_errors: u64,
    pub report: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakpointResult {
    pub config: String,
    /// The highest value that still passed (None: even the lowest value failed).
    pub breaking_point: Option<u64>,
    /// The lowest value that failed (None: never failed up to --max).
    pub first_failure: Option<u64>,
    pub failed_gate: Option<String>,
    pub steps: Vec<BreakpointStep>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakpointReport {
    pub schema_version: u32,
    pub vary: Vary,
    pub max: u64,
    pub results: Vec<BreakpointResult>,
}

/// Raises one load dimension (coarse doubling, then bisection) until a gate first fails.
pub fn breakpoint(
    configs: &[PathBuf],
    vary: Vary,
    max: u64,
    sets: &BTreeMap<String, toml::Value>,
    out: &Path,
    server_exe: Option<PathBuf>,
) -> anyhow::Result<BreakpointReport> {
    std::fs::create_dir_all(out)?;
    let cache = out.join("photos");
    let mut results = Vec::new();
    for config in configs {
        let base = apply(&Scenario::load(config)?, sets)?;
        let name = base.name.clone();
        let mut steps: Vec<BreakpointStep> = Vec::new();
        let try_value = |value: u64, steps: &mut Vec<BreakpointStep>| -> anyhow::Result<bool> {
            if let Some(s) = steps.iter().find(|s| s.value == value) {
                return Ok(s.passed);
            }
            let mut set = BTreeMap::new();
            set.insert(vary.key().to_owned(), toml::Value::Integer(value as i64));
            let scenario = apply(&base, &set)?;
            let dir = out.join(&name).join(format!(
                "{}-{value}",
                vary.key().rsplit('.').next().unwrap_or("value")
            ));
            let outcome = run_scenario(&RunOptions {
                scenario: config.clone(),
                out: Some(dir.clone()),
                server_exe: server_exe.clone(),
                photos_cache: Some(cache.clone()),
                scenario_override: Some(scenario),
                ..RunOptions::default()
            })?;
            let r = &outcome.report;
            steps.push(BreakpointStep {
                value,
                passed: r.verdict.passed,
                first_failed_gate: r.gates.iter().find(|g| !g.passed).map(|g| g.name.clone()),
                lock_errors: r.lock_errors.total,
                report: dir.join("report.json").display().to_string(),
            });
            eprintln!(
                "breakpoint {name}: {}={value} {}",
                vary.key(),
                if r.verdict.passed { "passed" } else { "FAILED" }
            );
            Ok(r.verdict.passed)
        };
        let lowest = match vary {
            Vary::SyncDelayMs => 0,
            _ => 1,
        };
        let mut last_pass: Option<u64> = None;
        let mut first_fail: Option<u64> = None;
        let mut value = lowest.max(1).min(max);
        if vary == Vary::SyncDelayMs && try_value(0, &mut steps)? {
            last_pass = Some(0);
        } else if vary == Vary::SyncDelayMs {
            first_fail = Some(0);
        }
        // Coarse: double until the first failure.
        while first_fail.is_none() {
            if try_value(value, &mut steps)? {
                last_pass = Some(value);
                if value >= max {
                    break;
                }
                value = (value * 2).min(max);
            } else {
                first_fail = Some(value);
            }
        }
        // Fine: bisect between the last pass and the first failure.
        if let (Some(mut lo), Some(mut hi)) = (last_pass, first_fail) {
            while hi - lo > 1 && (hi - lo) * 10 > hi {
                let mid = lo + (hi - lo) / 2;
                if try_value(mid, &mut steps)? {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            last_pass = Some(lo);
            first_fail = Some(hi);
        }
        steps.sort_by_key(|s| s.value);
        let failed_gate = first_fail
            .and_then(|f| steps.iter().find(|s| s.value == f))
            .and_then(|s| s.first_failed_gate.clone());
        results.push(BreakpointResult {
            config: config.display().to_string(),
            breaking_point: last_pass,
            first_failure: first_fail,
            failed_gate,
            steps,
        });
    }
    let report = BreakpointReport {
        schema_version: 1,
        vary,
        max,
        results,
    };
    std::fs::write(
        out.join("breakpoint.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    std::fs::write(out.join("breakpoint.md"), breakpoint_markdown(&report))?;
    std::fs::write(out.join("breakpoint.html"), breakpoint_html(&report))?;
    Ok(report)
}

pub fn breakpoint_markdown(r: &BreakpointReport) -> String {
    let key = r.vary.key();
    let mut s = format!("# lockbench breakpoint: {key}\n\n| configuration | breaking point (highest passing) | first failure | gate that failed first | runs |\n| --- | ---: | ---: | --- | ---: |\n");
    for res in &r.results {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            res.config,
            res.breaking_point
                .map_or("none (the lowest value failed)".into(), |v| v.to_string()),
            res.first_failure
                .map_or(format!("none up to {}", r.max), |v| v.to_string()),
            res.failed_gate.clone().unwrap_or_else(|| "–".into()),
            res.steps.len()
        ));
    }
    for res in &r.results {
        s.push_str(&format!("\n## {}\n\n| {key} | result | first failed gate | lock errors |\n| ---: | --- | --- | ---: |\n", res.config));
        for st in &res.steps {
            s.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                st.value,
                if st.passed { "pass" } else { "FAIL" },
                st.first_failed_gate.clone().unwrap_or_else(|| "–".into()),
                st.lock_errors
            ));
        }
    }
    s
}

pub fn breakpoint_html(r: &BreakpointReport) -> String {
    let mut charts = String::new();
    for res in &r.results {
        let values: Vec<(String, f64)> = res
            .steps
            .iter()
            .map(|s| {
                (
                    format!(
                        "{}={} {}",
                        r.vary.key(),
                        s.value,
                        if s.passed { "pass" } else { "FAIL" }
                    ),
                    s.lock_errors as f64,
                )
            })
            .collect();
        charts.push_str(&bars(
            &format!("{}: lock errors against {}", res.config, r.vary.key()),
            "",
            &values,
            "#c0392b",
        ));
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>lockbench breakpoint</title><style>body{{font-family:system-ui,sans-serif;margin:2rem}}pre{{white-space:pre-wrap}}</style></head><body><h1>lockbench breakpoint: {}</h1>{}<pre>{}</pre></body></html>\n",
        esc(r.vary.key()),
        charts,
        esc(&breakpoint_markdown(r))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_checked_like_a_scenario_file() {
        let base: Scenario = toml::from_str("name = \"x\"").unwrap();
        let mut set = BTreeMap::new();
        set.insert(
            "server.storage.journal_mode".to_owned(),
            toml::Value::String("wal".into()),
        );
        set.insert("users.pollers".to_owned(), toml::Value::Integer(7));
        let s = apply(&base, &set).unwrap();
        assert_eq!(
            s.server.storage.journal_mode,
            lockbench_server::storage::JournalMode::Wal
        );
        assert_eq!(s.users.pollers, 7);
        let mut bad = BTreeMap::new();
        bad.insert(
            "server.storage.journal_mood".to_owned(),
            toml::Value::String("wal".into()),
        );
        assert!(apply(&base, &bad)
            .unwrap_err()
            .to_string()
            .contains("journal_mood"));
        assert_eq!(
            parse_set("users.pollers=5").unwrap().1,
            toml::Value::Integer(5)
        );
        assert_eq!(
            parse_set("batch.size=320x240").unwrap().1,
            toml::Value::String("320x240".into())
        );
    }

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
