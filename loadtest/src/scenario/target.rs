//! An external app in a scenario: `[endpoints]` (each role's request, the batch to post and
//! its status) and `[target]` (its URL, log, database and audit query), with the checks that
//! need no file. The runner checks the files themselves (`run/audit.rs`). Data and checks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::launch::{AppCommand, Knob};
use super::Scenario;

/// What lockbench may look at inside an external app (`[target]`). Relative paths are read
/// from the current directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetSpec {
    /// The app's URL, used when `--target` is not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The app's log file: lockbench follows it during the run, reads it as records (a
    /// record may span several lines, as a traceback does) and counts each record that
    /// matches `lock_pattern` as one lock error of the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    /// A regular expression; default [`DEFAULT_LOCK_PATTERN`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_pattern: Option<String>,
    /// A regular expression a record's first line matches; by default a record starts at a
    /// line that does not begin with whitespace and is not a traceback's own line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_start: Option<String>,
    /// A regular expression with a `path` group: the request path a record names, which
    /// ties its lock error to the request sent to that path; default
    /// [`DEFAULT_PATH_PATTERN`] (the forms Django, Flask and gunicorn write).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_pattern: Option<String>,
    /// The app's SQLite file: opened read-only after the run for its journal mode, its size
    /// and the audit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<PathBuf>,
    /// A query returning one number for an acknowledged write (`?1` bound from the kiosk
    /// body's `audit_field`); 0 means the write is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_query: Option<String>,
    /// The field of the kiosk request's JSON body bound to `?1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_field: Option<String>,
    /// The command that starts the app: lockbench then starts it for each run on a port of
    /// its own (`{port}`), keeps its output (`app.log`) and stops it (`scenario/launch.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<AppCommand>,
    /// The folder the setup and the command run in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Environment variables the setup and the app get.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Commands run in order before each start (in `cwd`, with `env`); one that fails stops
    /// the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<AppCommand>,
    /// The path polled until it answers 2xx; default the first request of the scenario.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// How long the app may take to get ready ("60s" by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_timeout: Option<String>,
    /// How long the app may take to exit after SIGTERM before SIGKILL ("10s" by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<String>,
    /// lockbench's settings (`tx_mode`, `journal_mode`, ...) as the app takes them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub knobs: BTreeMap<String, Knob>,
    /// The database belongs to the run (a file `setup` or the app creates in `{run_dir}`):
    /// lockbench may then take its write lock or hold a reader on it (`external-lock`,
    /// `long-reader` faults). Never assumed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub database_owned: bool,
}

/// The lines of an app's log that mean "database is locked", by default.
pub const DEFAULT_LOCK_PATTERN: &str =
    "database is locked|database table is locked|SQLITE_BUSY|SQLITE_LOCKED";

/// Where an app's log names the request a record is about: Django's `Internal Server Error:
/// /path/`, Flask's `Exception on /path [POST]`, a method and a path (an access log's
/// `"POST /path HTTP/1.1"`, an app's own `error on POST /path: ...`). The path ends at
/// whitespace, a quote, `?`, `[` or `:`.
pub const DEFAULT_PATH_PATTERN: &str = r#"(?:Internal Server Error: |Exception on |\b(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) )(?P<path>/[^\s"?\[:]*)"#;

impl TargetSpec {
    pub fn lock_pattern(&self) -> &str {
        self.lock_pattern.as_deref().unwrap_or(DEFAULT_LOCK_PATTERN)
    }

    pub fn path_pattern(&self) -> &str {
        self.path_pattern.as_deref().unwrap_or(DEFAULT_PATH_PATTERN)
    }
}

/// One role's request against an external app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    #[serde(default = "get")]
    pub method: String,
    /// Path (and query) below the target URL. `{user}` is replaced by the user's number,
    /// `{n}` by a counter (per user; one counter for all kiosks, so no two kiosk bodies are
    /// alike), `{since}` by the poller's cursor (the `last_id` of its previous answer, 0 at
    /// first) and `{batch}` by the posted batch's id.
    pub path: String,
    /// JSON body template, with the same replacements.
    #[serde(default)]
    pub body: Option<String>,
}

fn get() -> String {
    "GET".into()
}

impl EndpointSpec {
    /// The top-level field names of the JSON object body (placeholders filled with a
    /// sample value); None when there is no body or it is not a JSON object.
    pub fn body_fields(&self) -> Option<Vec<String>> {
        let body = self.body.as_deref()?;
        let filled = ["{user}", "{n}", "{since}", "{batch}"]
            .iter()
            .fold(body.to_owned(), |text, p| text.replace(p, "0"));
        match serde_json::from_str::<serde_json::Value>(&filled).ok()? {
            serde_json::Value::Object(map) => Some(map.keys().cloned().collect()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    pub poller: EndpointSpec,
    /// Polled after the poller's request; `{batch}` is the batch id once one is posted
    /// (until then a path with `{batch}` is not polled).
    #[serde(default)]
    pub status: Option<EndpointSpec>,
    pub admin: Option<EndpointSpec>,
    pub kiosk: Option<EndpointSpec>,
    /// Posted once at the start with the scenario's photo batch: `{photos}` in the body is
    /// the batch folder's absolute path. The answer must be JSON with a `batch_id`; the
    /// run then lasts until `status` answers `"status": "done"`, plus the tail.
    #[serde(default)]
    pub batch: Option<EndpointSpec>,
}

impl Scenario {
    /// Checks `[target]` for what can be known without touching the app's files.
    pub(super) fn validate_target(&self, t: &TargetSpec) -> anyhow::Result<()> {
        self.validate_launch(t)?;
        if let Some(url) = &t.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("target.url: {url:?} is not an http:// or https:// URL");
            }
        }
        if t.lock_pattern.is_some() && t.log.is_none() {
            bail!("target.lock_pattern: set without target.log (the pattern is matched against the app's log)");
        }
        regex::Regex::new(t.lock_pattern()).map_err(|e| {
            anyhow::anyhow!("target.lock_pattern: not a valid regular expression: {e}")
        })?;
        for (key, value) in [
            ("record_start", &t.record_start),
            ("path_pattern", &t.path_pattern),
        ] {
            if value.is_some() && t.log.is_none() {
                bail!("target.{key}: set without target.log (it reads the app's log)");
            }
        }
        if let Some(start) = &t.record_start {
            regex::Regex::new(start).map_err(|e| {
                anyhow::anyhow!("target.record_start: not a valid regular expression: {e}")
            })?;
        }
        let path = regex::Regex::new(t.path_pattern()).map_err(|e| {
            anyhow::anyhow!("target.path_pattern: not a valid regular expression: {e}")
        })?;
        if !path.capture_names().any(|n| n == Some("path")) {
            bail!("target.path_pattern: has no (?P<path>...) group for the request path");
        }
        if !self.users.classes.is_empty() && (t.audit_query.is_some() || t.audit_field.is_some()) {
            bail!("target.audit_query: with [[users]] classes, set audit = {{ query, field }} on the requests whose writes to look up");
        }
        match (&t.audit_query, &t.audit_field) {
            (Some(_), None) => bail!("target.audit_query: set without target.audit_field (which field of the kiosk body binds ?1)"),
            (None, Some(_)) => bail!("target.audit_field: set without target.audit_query"),
            (Some(_), Some(field)) => {
                if t.database.is_none() {
                    bail!("target.audit_query: set without target.database (the file the query runs on)");
                }
                let kiosk = self.endpoints.as_ref().and_then(|e| e.kiosk.as_ref());
                let Some(kiosk) = kiosk else {
                    bail!("target.audit_field: the scenario has no [endpoints.kiosk] whose writes could be audited");
                };
                let Some(fields) = kiosk.body_fields() else {
                    bail!("target.audit_field: [endpoints.kiosk] has no JSON object body to take {field:?} from");
                };
                if !fields.iter().any(|f| f == field) {
                    bail!(
                        "target.audit_field: {field:?} is not a field of the kiosk body (it has {})",
                        fields.join(", ")
                    );
                }
            }
            (None, None) => {}
        }
        Ok(())
    }
}
