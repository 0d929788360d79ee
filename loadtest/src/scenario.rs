//! Scenario files: TOML, unknown keys rejected, errors pointing at the line and key.
//!
//! A scenario names the server's settings (the same `StorageConfig`, `RetryConfig` and
//! `ProcessorConfig` types `lockbench serve` takes), the photo batch, the user mix, the
//! duration policy, the gates, and optionally the endpoints of an external app (`--target`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use lockbench_server::photos::BatchSpec;
use lockbench_server::processor::ProcessorConfig;
use lockbench_server::storage::config::duration_text;
use lockbench_server::storage::{RetryConfig, StorageConfig};
use serde::{Deserialize, Serialize};

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
    #[serde(default)]
    pub users: Users,
    #[serde(default)]
    pub duration: DurationPolicy,
    #[serde(default)]
    pub gates: Gates,
    /// The roles' requests against an external app (`--target`).
    #[serde(default)]
    pub endpoints: Option<Endpoints>,
}

/// The reference server's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Worker processes (gunicorn's --workers).
    pub workers: u32,
    pub storage: StorageConfig,
    pub retry: RetryConfig,
    pub processor: ProcessorConfig,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            workers: 1,
            storage: StorageConfig::default(),
            retry: RetryConfig::default(),
            processor: ProcessorConfig::default(),
        }
    }
}

/// The user mix. Pollers and admins keep a fixed schedule (open model): each sleeps the
/// interval minus the time its request took, as a browser's setInterval does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Users {
    /// Dashboard pollers (updates and batch status).
    pub pollers: u32,
    #[serde(with = "duration_text")]
    pub poll_interval: Duration,
    /// Admins loading /admin.
    pub admins: u32,
    #[serde(with = "duration_text")]
    pub admin_interval: Duration,
    /// Kiosks registering people (writes).
    pub kiosks: u32,
    #[serde(with = "duration_text")]
    pub kiosk_interval: Duration,
}

impl Default for Users {
    fn default() -> Self {
        Users {
            pollers: 10,
            poll_interval: Duration::from_secs(5),
            admins: 1,
            admin_interval: Duration::from_secs(10),
            kiosks: 1,
            kiosk_interval: Duration::from_secs(1),
        }
    }
}

impl Users {
    pub fn total(&self) -> u32 {
        self.pollers + self.admins + self.kiosks
    }
}

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
    /// Failed requests / requests, 0..1.
    pub max_error_rate: Option<f64>,
    /// p99 latency limit per endpoint ("GET /api/registrations/updates"), in ms.
    pub p99_ms: BTreeMap<String, f64>,
    pub max_lost_writes: Option<u64>,
    pub max_batch_seconds: Option<f64>,
}

/// One role's request against an external app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    #[serde(default = "get")]
    pub method: String,
    /// Path (and query) below the target URL. `{n}` is replaced by a per-user counter,
    /// `{user}` by the user's number.
    pub path: String,
    /// JSON body template, with the same replacements.
    #[serde(default)]
    pub body: Option<String>,
}

fn get() -> String {
    "GET".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    pub poller: EndpointSpec,
    #[serde(default)]
    pub status: Option<EndpointSpec>,
    pub admin: Option<EndpointSpec>,
    pub kiosk: Option<EndpointSpec>,
}

impl Scenario {
    /// Reads and checks a scenario file; errors name the file, line and key.
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        let scenario: Scenario = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("scenario {}: {e}", path.display()))?;
        scenario
            .validate()
            .with_context(|| format!("scenario {}", path.display()))?;
        Ok(scenario)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.name.trim().is_empty() {
            bail!("name: must not be empty");
        }
        if !self
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!(
                "name: {:?} may hold only letters, digits, - and _ (it names the report folder)",
                self.name
            );
        }
        self.server.storage.validate()?;
        self.server.retry.validate()?;
        self.batch.validate()?;
        if self.server.workers == 0 || self.server.workers > 64 {
            bail!("server.workers: {} (1 to 64)", self.server.workers);
        }
        if self.users.total() == 0 {
            bail!("users: no pollers, admins or kiosks");
        }
        for (name, d) in [
            ("users.poll_interval", self.users.poll_interval),
            ("users.admin_interval", self.users.admin_interval),
            ("users.kiosk_interval", self.users.kiosk_interval),
        ] {
            if d < Duration::from_millis(1) {
                bail!("{name}: {d:?} is below 1 ms");
            }
        }
        if self.duration.max < Duration::from_secs(1) {
            bail!("duration.max: {:?} is below 1 s", self.duration.max);
        }
        if let Some(rate) = self.gates.max_error_rate {
            if !(0.0..=1.0).contains(&rate) {
                bail!("gates.max_error_rate: {rate} is not between 0 and 1");
            }
        }
        if let Some(e) = &self.endpoints {
            for (role, spec) in [
                ("poller", Some(&e.poller)),
                ("status", e.status.as_ref()),
                ("admin", e.admin.as_ref()),
                ("kiosk", e.kiosk.as_ref()),
            ] {
                if let Some(spec) = spec {
                    if !matches!(
                        spec.method.as_str(),
                        "GET" | "POST" | "PUT" | "PATCH" | "DELETE"
                    ) {
                        bail!(
                            "endpoints.{role}.method: {:?} (GET, POST, PUT, PATCH or DELETE)",
                            spec.method
                        );
                    }
                    if !spec.path.starts_with('/') {
                        bail!("endpoints.{role}.path: {:?} must start with /", spec.path);
                    }
                }
            }
        }
        Ok(())
    }
}
