//! The command line of `lockbench compare`: the output format, reading a report file and
//! checking that it is one (before any parsing that depends on its version), `--tolerance`,
//! the errors that make the command exit with 2, [`run_cli`] itself (read, compare, render,
//! exit code) and [`write_files`], the three documents `--out` writes. The comparison is
//! `compare.rs`'s; the renderings are `report/`'s.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::report::{Report, REPORT_SCHEMA_VERSION};

use super::{
    compare, render_html, render_json, render_markdown, Comparison, Incompatible, Mismatch,
};

/// The output of `lockbench compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A Markdown document: verdict, settings that differ, tables.
    Md,
    /// The versioned JSON document ([`COMPARE_SCHEMA_VERSION`]).
    Json,
    /// One self-contained HTML page: verdict, the runs side by side, settings that differ.
    Html,
}

impl Format {
    /// The comparison in this format.
    pub fn render(self, c: &Comparison) -> String {
        match self {
            Format::Md => render_markdown(c),
            Format::Json => render_json(c),
            Format::Html => render_html(c),
        }
    }
}

/// The files `--out DIR` writes, one per format.
pub const OUT_FILES: [(&str, Format); 3] = [
    ("compare.json", Format::Json),
    ("compare.md", Format::Md),
    ("compare.html", Format::Html),
];

/// Writes compare.json, compare.md and compare.html into `dir` (a folder that exists: the
/// command makes and checks it before comparing); each the same bytes `--format` prints.
pub fn write_files(dir: &Path, c: &Comparison) -> std::io::Result<()> {
    for (name, format) in OUT_FILES {
        std::fs::write(dir.join(name), format.render(c))?;
    }
    Ok(())
}

/// Why a report file could not be read.
#[derive(Debug)]
pub enum ReadError {
    Unreadable(std::io::Error),
    NotJson(serde_json::Error),
    /// Valid JSON that is not a lockbench report (or not one this version reads).
    NotAReport(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Unreadable(e) => write!(f, "cannot read it: {e}"),
            ReadError::NotJson(e) => write!(f, "not JSON: {e}"),
            ReadError::NotAReport(why) => write!(f, "not a lockbench report: {why}"),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Unreadable(e) => Some(e),
            ReadError::NotJson(e) => Some(e),
            ReadError::NotAReport(_) => None,
        }
    }
}

/// Everything that makes `lockbench compare` exit with 2.
#[derive(Debug)]
pub enum CompareError {
    Tolerance {
        value: String,
        reason: String,
    },
    Read {
        /// "A" or "B".
        side: &'static str,
        path: PathBuf,
        error: ReadError,
    },
    Incompatible(Incompatible),
}

impl fmt::Display for CompareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompareError::Tolerance { value, reason } => {
                write!(f, "--tolerance {value:?}: {reason}")
            }
            CompareError::Read { side, path, error } => {
                write!(f, "{side} ({}): {error}", path.display())
            }
            CompareError::Incompatible(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CompareError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CompareError::Tolerance { .. } => None,
            CompareError::Read { error, .. } => Some(error),
            CompareError::Incompatible(e) => Some(e),
        }
    }
}

/// What the command prints and the process's exit code.
#[derive(Debug, Clone, PartialEq)]
pub struct CliOutput {
    pub stdout: String,
    pub stderr: String,
    /// 0 no regression, 1 a regression, 2 the reports could not be compared.
    pub code: u8,
    /// The comparison, when the reports could be compared (for --junit and step summaries).
    pub comparison: Option<Comparison>,
}

/// `lockbench compare A B --tolerance T --format F`: the document on stdout and exit code
/// 0 or 1, or a message naming the problem on stderr and exit code 2.
pub fn run_cli(a: &Path, b: &Path, tolerance: &str, format: Format) -> CliOutput {
    let result = parse_tolerance(tolerance).and_then(|tol| compare_files(a, b, tol));
    match result {
        Ok(c) => CliOutput {
            stdout: format.render(&c),
            stderr: String::new(),
            code: c.exit_code,
            comparison: Some(c),
        },
        Err(e) => CliOutput {
            stdout: String::new(),
            stderr: format!("error: {e}\n"),
            code: 2,
            comparison: None,
        },
    }
}

/// Reads both files and compares them; each run's `source` is its path.
pub fn compare_files(a: &Path, b: &Path, tolerance: f64) -> Result<Comparison, CompareError> {
    let read = |side: &'static str, path: &Path| {
        read_report_json(path).map_err(|error| CompareError::Read {
            side,
            path: path.to_owned(),
            error,
        })
    };
    let (va, json_a) = read("A", a)?;
    let (vb, json_b) = read("B", b)?;
    // Checked before the typed parse: a report of another version may not parse at all.
    if va != vb {
        return Err(CompareError::Incompatible(Incompatible(vec![
            Mismatch::SchemaVersion { a: va, b: vb },
        ])));
    }
    let typed = |side: &'static str, path: &Path, json: Value, version: u32| {
        parse_report(json, version).map_err(|error| CompareError::Read {
            side,
            path: path.to_owned(),
            error,
        })
    };
    let ra = typed("A", a, json_a, va)?;
    let rb = typed("B", b, json_b, vb)?;
    let mut c = compare(&ra, &rb, tolerance).map_err(CompareError::Incompatible)?;
    c.a.source = Some(a.display().to_string());
    c.b.source = Some(b.display().to_string());
    Ok(c)
}

/// Reads a report file as JSON and checks that it is a lockbench report: its
/// `schema_version` and the JSON, before any parsing that depends on the version.
pub fn read_report_json(path: &Path) -> Result<(u32, Value), ReadError> {
    let text = std::fs::read_to_string(path).map_err(ReadError::Unreadable)?;
    let json: Value = serde_json::from_str(&text).map_err(ReadError::NotJson)?;
    let version = json.get("schema_version").and_then(Value::as_u64);
    let has_lockbench_version = json.get("lockbench_version").is_some_and(Value::is_string);
    match version {
        Some(v) if has_lockbench_version => {
            let v = u32::try_from(v).map_err(|_| {
                ReadError::NotAReport(format!("schema_version {v} is out of range"))
            })?;
            Ok((v, json))
        }
        _ => Err(ReadError::NotAReport(
            "it has no schema_version and lockbench_version fields".to_owned(),
        )),
    }
}

/// A report's JSON (as [`read_report_json`] returns it) as a [`Report`].
pub fn parse_report(json: Value, version: u32) -> Result<Report, ReadError> {
    serde_json::from_value(json).map_err(|e| {
        if version == REPORT_SCHEMA_VERSION {
            ReadError::NotAReport(e.to_string())
        } else {
            ReadError::NotAReport(format!(
                "it has schema_version {version} and this lockbench reads \
                 {REPORT_SCHEMA_VERSION} ({e})"
            ))
        }
    })
}

/// Parses `--tolerance`: "10%" or a fraction "0.1" (at most 1; write "150%" for more, so
/// "10" cannot silently mean 1000%).
pub fn parse_tolerance(s: &str) -> Result<f64, CompareError> {
    let err = |reason: &str| CompareError::Tolerance {
        value: s.to_owned(),
        reason: reason.to_owned(),
    };
    let t = s.trim();
    let (number, percent) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (t, false),
    };
    let x: f64 = number
        .parse()
        .map_err(|_| err("expected a percentage such as 10% or a fraction such as 0.1"))?;
    if !x.is_finite() || x < 0.0 {
        return Err(err("the tolerance must be a finite number of 0 or more"));
    }
    if percent {
        Ok(x / 100.0)
    } else if x > 1.0 {
        Err(err(
            "a bare number is a fraction (0.1 is 10%); write the percent sign for percentages",
        ))
    } else {
        Ok(x)
    }
}
