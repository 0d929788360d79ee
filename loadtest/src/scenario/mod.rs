//! Scenario files: TOML, unknown keys rejected, errors pointing at the line and key.
//!
//! A scenario names the server's settings (`ServerSettings`, the very `AppSettings` type
//! `lockbench serve` takes), the photo batch, the user mix
//! (`users.rs`), the duration policy, the gates, the faults (`faults.rs`), and optionally
//! the endpoints and files of an external app (`target.rs`); the user mix is the roles'
//! table or `[[users]]` classes with named requests (`classes.rs`). `overrides.rs` lays `--set`
//! keys over a file; `check.rs` checks the whole before anything runs. Reads and checks
//! files; runs nothing.

mod check;
mod classes;
mod faults;
mod launch;
mod overrides;
mod target;
mod users;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use lockbench_server::photos::BatchSpec;
use lockbench_server::storage::config::duration_text;
use serde::{Deserialize, Serialize};

pub use classes::{
    AuditSpec, Order, Rate, RequestSpec, RoleEndpoints, Think, UserClass, ADMIN_TOKEN, REGISTER,
};
pub use faults::{Fault, KillTarget};
pub use launch::{named_settings, AppCommand, Knob, DEFAULT_READY_TIMEOUT, DEFAULT_STOP_TIMEOUT};
pub use overrides::{apply, parse_set, parse_sets, set_key};
pub use target::{EndpointSpec, Endpoints, TargetSpec, DEFAULT_LOCK_PATTERN, DEFAULT_PATH_PATTERN};
pub use users::{
    Connection, PollModel, Role, RoleBehaviour, RoleOverrides, Users, DEFAULT_MAX_IN_FLIGHT,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub batch: BatchSpec,
    /// The `[users]` table (pollers, admins, kiosks) or `[[users]]` classes.
    #[serde(default, with = "classes::users_either")]
    pub users: Users,
    #[serde(default)]
    pub duration: DurationPolicy,
    #[serde(default)]
    pub gates: Gates,
    /// The roles' requests against an external app (`--target`).
    #[serde(default)]
    pub endpoints: Option<Endpoints>,
    /// What lockbench may look at inside an external app: its log and its database file.
    #[serde(default)]
    pub target: Option<TargetSpec>,
    /// Faults injected during the run (`[[faults]]`): on the reference server or an app
    /// lockbench starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Fault>,
    /// The settings under `server` that the scenario names (in its file, by `--set` or a
    /// sweep): what an app's knobs pass on.
    #[serde(skip)]
    pub named_settings: BTreeSet<String>,
}

/// The reference server's settings: the server crate's own type (`[server]` keys are
/// `serve`'s keys), handed to the server as it is.
pub use lockbench_server::serve::AppSettings as ServerSettings;

/// Until the batch is done, plus a tail, never longer than the cap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DurationPolicy {
    /// Load that goes on after the batch is done.
    #[serde(with = "duration_text")]
    pub tail: Duration,
    /// Hard cap on the whole run.
    #[serde(with = "duration_text")]
    pub max: Duration,
    /// With --target (no batch): how long the load runs.
    #[serde(with = "duration_text")]
    pub target_run: Duration,
}

impl Default for DurationPolicy {
    fn default() -> Self {
        DurationPolicy {
            tail: Duration::from_secs(5),
            max: Duration::from_secs(600),
            target_run: Duration::from_secs(30),
        }
    }
}

/// Limits that decide the exit code. An absent gate is not checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gates {
    pub max_lock_errors: Option<u64>,
    /// Failed requests / requests, 0..1, over every request; when unset, the run is judged
    /// against [`DEFAULT_MAX_ERROR_RATE`], shown as a gate like any other.
    pub max_error_rate: Option<f64>,
    /// The same per request name: `[gates.error_rate] read_write = 0.05`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub error_rate: BTreeMap<String, f64>,
    /// p99 latency limit per request ("GET /api/registrations/updates", or a `[[users]]`
    /// request's name), in ms, measured from each request's send.
    pub p99_ms: BTreeMap<String, f64>,
    /// p99 latency limit in ms measured from the intended tick (corrected for coordinated
    /// omission), per request or per user class ("poller", "admin", "kiosk", a class's name).
    pub p99_corrected_ms: BTreeMap<String, f64>,
    pub max_lost_writes: Option<u64>,
    pub max_batch_seconds: Option<f64>,
}

/// The error-rate gate of a scenario that sets none: a run where 1 request in 100 fails does
/// not pass unseen.
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.01;

impl Gates {
    /// The error-rate limit the run is judged against: the scenario's, or the default.
    pub fn max_error_rate(&self) -> f64 {
        self.max_error_rate.unwrap_or(DEFAULT_MAX_ERROR_RATE)
    }
}

impl Scenario {
    /// Reads and checks a scenario file; errors name the file, line and key.
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        Scenario::load_with(path, &BTreeMap::new())
    }

    /// Reads a scenario file, lays dotted-key overrides over it (`--set key=value`,
    /// `--database-url`), and checks the result as a file is checked.
    pub fn load_with(
        path: &Path,
        overrides: &BTreeMap<String, toml::Value>,
    ) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        // Parsed as the real type first, so a mistake in the file names its line and key.
        let scenario: Scenario = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("scenario {}: {e}", path.display()))?;
        let mut table: toml::Table = toml::from_str(&text)?;
        for (key, value) in overrides {
            set_key(&mut table, key, value.clone()).with_context(|| format!("--set {key}"))?;
        }
        let named = named_settings(&table);
        let mut scenario: Scenario = if overrides.is_empty() {
            scenario
        } else {
            toml::Value::Table(table).try_into().map_err(|e| {
                let keys: Vec<&str> = overrides.keys().map(String::as_str).collect();
                anyhow::anyhow!("scenario {} with {keys:?}: {e}", path.display())
            })?
        };
        scenario.named_settings = named;
        scenario
            .validate()
            .with_context(|| format!("scenario {}", path.display()))?;
        Ok(scenario)
    }
}
