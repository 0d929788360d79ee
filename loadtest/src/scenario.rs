//! Scenario files: TOML, unknown keys rejected, errors pointing at the line and key.
//!
//! A scenario names the server's settings (`ServerSettings`, the very `AppSettings` type
//! `lockbench serve` takes), the photo batch, the user mix, the
//! duration policy, the gates, and optionally the endpoints of an external app (`--target`).
//! Reads and checks files; runs nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use lockbench_server::photos::BatchSpec;
use lockbench_server::storage::config::duration_text;
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
    /// What lockbench may look at inside an external app: its log and its database file.
    #[serde(default)]
    pub target: Option<TargetSpec>,
    /// Faults injected during the run (`[[faults]]`), reference server only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Fault>,
}

/// A fault injected on purpose during a run: what production has besides polling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// A separate process takes the write lock and holds it (`BEGIN IMMEDIATE` in WAL mode,
    /// `BEGIN EXCLUSIVE` with a rollback journal), as a backup job, a migration or someone in
    /// the sqlite3 shell would; again every `every` if set.
    ExternalLock {
        #[serde(with = "duration_text")]
        at: Duration,
        #[serde(with = "duration_text")]
        hold: Duration,
        #[serde(
            default,
            with = "optional_duration",
            skip_serializing_if = "Option::is_none"
        )]
        every: Option<Duration>,
    },
    /// SIGKILL a worker process when the batch reaches `at_photo` photos processed.
    KillWorker {
        at_photo: u64,
        #[serde(default)]
        worker: KillTarget,
    },
    /// A separate process keeps one read transaction open (in WAL mode no checkpoint can
    /// pass it, so the WAL grows).
    LongReader {
        #[serde(with = "duration_text")]
        at: Duration,
        #[serde(with = "duration_text")]
        hold: Duration,
    },
    /// The disk's sync delay becomes `sync_delay_ms` for `hold`, then goes back.
    SlowDisk {
        #[serde(with = "duration_text")]
        at: Duration,
        #[serde(with = "duration_text")]
        hold: Duration,
        sync_delay_ms: u64,
    },
}

/// Which worker a `kill-worker` fault kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KillTarget {
    /// The worker running the batch's processor.
    #[default]
    Processor,
    /// The first worker that answers, whichever it is.
    Any,
}

impl Fault {
    /// The fault's `kind` as the scenario names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::ExternalLock { .. } => "external-lock",
            Fault::KillWorker { .. } => "kill-worker",
            Fault::LongReader { .. } => "long-reader",
            Fault::SlowDisk { .. } => "slow-disk",
        }
    }

    /// One line for verdicts and tables: "external-lock at 10s for 35s".
    pub fn describe(&self) -> String {
        let d = |d: &Duration| humantime::format_duration(*d).to_string();
        match self {
            Fault::ExternalLock { at, hold, every } => format!(
                "external-lock at {} for {}{}",
                d(at),
                d(hold),
                every.map_or_else(String::new, |e| format!(", every {}", d(&e)))
            ),
            Fault::KillWorker { at_photo, worker } => format!(
                "kill-worker ({}) at photo {at_photo}",
                match worker {
                    KillTarget::Processor => "processor",
                    KillTarget::Any => "any",
                }
            ),
            Fault::LongReader { at, hold } => format!("long-reader at {} for {}", d(at), d(hold)),
            Fault::SlowDisk {
                at,
                hold,
                sync_delay_ms,
            } => format!(
                "slow-disk at {} for {} ({sync_delay_ms} ms per sync)",
                d(at),
                d(hold)
            ),
        }
    }
}

/// Serde helpers for an optional duration written as "5s".
mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        lockbench_server::storage::config::parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// The reference server's settings: the server crate's own type (`[server]` keys are
/// `serve`'s keys), handed to the server as it is.
pub use lockbench_server::serve::AppSettings as ServerSettings;

/// The user mix. Each role keeps a schedule of ticks, one every interval from a phase spread
/// over the first interval; how a tick behaves when the previous one is still unanswered is
/// the role's [`PollModel`].
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
    /// Every role's poll model unless the role's own table says otherwise.
    pub poll_model: PollModel,
    /// With `poll_model = "interval"`: requests a user may have out at once.
    pub max_in_flight: u32,
    /// Every role's connection behaviour unless the role's own table says otherwise.
    pub connection: Connection,
    /// `[users.poller]`: overrides for the pollers.
    #[serde(skip_serializing_if = "RoleOverrides::is_empty")]
    pub poller: RoleOverrides,
    /// `[users.admin]`: overrides for the admins.
    #[serde(skip_serializing_if = "RoleOverrides::is_empty")]
    pub admin: RoleOverrides,
    /// `[users.kiosk]`: overrides for the kiosks.
    #[serde(skip_serializing_if = "RoleOverrides::is_empty")]
    pub kiosk: RoleOverrides,
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
            poll_model: PollModel::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            connection: Connection::default(),
            poller: RoleOverrides::default(),
            admin: RoleOverrides::default(),
            kiosk: RoleOverrides::default(),
        }
    }
}

/// Requests a browser-like user may have out at once by default (`max_in_flight`).
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 4;

/// How a user's schedule reacts to a slow answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PollModel {
    /// A page polling with `setInterval`: ticks keep their phase and fire while earlier
    /// requests are still out, up to `max_in_flight`; a tick beyond that is skipped (and
    /// counted).
    #[default]
    Interval,
    /// A page polling with a `setTimeout` chain: the next request waits for the answer; a
    /// tick that passed meanwhile fires at once, late, and the schedule restarts from then.
    /// After a stall every such user restarts at the same moment and they stay in step.
    AfterResponse,
}

/// How a user's HTTP connections behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Connection {
    /// Persistent connections, reused between requests, as a browser keeps them.
    #[default]
    KeepAlive,
    /// A new connection for every request (`Connection: close`).
    Close,
}

/// One role's own `poll_model`, `max_in_flight` and `connection`; absent keys take the
/// `[users]` value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_model: Option<PollModel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<Connection>,
}

impl RoleOverrides {
    pub fn is_empty(&self) -> bool {
        self == &RoleOverrides::default()
    }
}

/// The three roles of the user mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Poller,
    Admin,
    Kiosk,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Poller, Role::Admin, Role::Kiosk];

    /// The role's name in scenarios and reports: "poller", "admin", "kiosk".
    pub fn name(self) -> &'static str {
        match self {
            Role::Poller => "poller",
            Role::Admin => "admin",
            Role::Kiosk => "kiosk",
        }
    }
}

/// A role's resolved behaviour: the `[users]` values with the role's overrides applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleBehaviour {
    pub users: u32,
    pub interval: Duration,
    pub poll_model: PollModel,
    pub max_in_flight: u32,
    pub connection: Connection,
}

impl Users {
    pub fn total(&self) -> u32 {
        self.pollers + self.admins + self.kiosks
    }

    /// What one role does, with its own table's overrides applied.
    pub fn behaviour(&self, role: Role) -> RoleBehaviour {
        let (users, interval, o) = match role {
            Role::Poller => (self.pollers, self.poll_interval, &self.poller),
            Role::Admin => (self.admins, self.admin_interval, &self.admin),
            Role::Kiosk => (self.kiosks, self.kiosk_interval, &self.kiosk),
        };
        RoleBehaviour {
            users,
            interval,
            poll_model: o.poll_model.unwrap_or(self.poll_model),
            max_in_flight: o.max_in_flight.unwrap_or(self.max_in_flight),
            connection: o.connection.unwrap_or(self.connection),
        }
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
    /// p99 latency limit per endpoint ("GET /api/registrations/updates"), in ms, measured
    /// from each request's send.
    pub p99_ms: BTreeMap<String, f64>,
    /// p99 latency limit in ms measured from the intended tick (corrected for coordinated
    /// omission), per endpoint or per role ("poller", "admin", "kiosk").
    pub p99_corrected_ms: BTreeMap<String, f64>,
    pub max_lost_writes: Option<u64>,
    pub max_batch_seconds: Option<f64>,
}

/// What lockbench may look at inside an external app (`[target]`). Relative paths are read
/// from the current directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetSpec {
    /// The app's URL, used when `--target` is not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The app's log file: lockbench follows it during the run and counts the lines that
    /// match `lock_pattern` as the server's lock errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    /// A regular expression; default [`DEFAULT_LOCK_PATTERN`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_pattern: Option<String>,
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
}

/// The lines of an app's log that mean "database is locked", by default.
pub const DEFAULT_LOCK_PATTERN: &str =
    "database is locked|database table is locked|SQLITE_BUSY|SQLITE_LOCKED";

impl TargetSpec {
    pub fn lock_pattern(&self) -> &str {
        self.lock_pattern.as_deref().unwrap_or(DEFAULT_LOCK_PATTERN)
    }
}

fn check_window(key: &str, at: Duration, hold: Duration, max: Duration) -> anyhow::Result<()> {
    if hold.is_zero() {
        bail!("{key}: the fault's hold must be longer than 0");
    }
    if at >= max {
        bail!("{key}: {at:?} is not before the run's cap duration.max = {max:?}");
    }
    Ok(())
}

/// The endpoints of the reference server's user mix, as reports and gates name them.
pub const REFERENCE_ENDPOINTS: [&str; 4] = [
    "GET /api/registrations/updates",
    "GET /api/batches/{id}/status",
    "GET /admin",
    "POST /api/registrations",
];

/// With `[endpoints]` (an external app), requests are named by their role.
pub const EXTERNAL_ENDPOINTS: [&str; 4] = ["poller", "status", "admin", "kiosk"];

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

/// Sets one dotted key (`server.storage.journal_mode`) of a scenario's TOML form.
pub fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) -> anyhow::Result<()> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().filter(|l| !l.is_empty()).context("empty key")?;
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .with_context(|| format!("{key}: {part} is not a table"))?;
    }
    current.insert(last.to_owned(), value);
    Ok(())
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
        let scenario = if overrides.is_empty() {
            scenario
        } else {
            let mut table: toml::Table = toml::from_str(&text)?;
            for (key, value) in overrides {
                set_key(&mut table, key, value.clone()).with_context(|| format!("--set {key}"))?;
            }
            toml::Value::Table(table).try_into().map_err(|e| {
                let keys: Vec<&str> = overrides.keys().map(String::as_str).collect();
                anyhow::anyhow!("scenario {} with {keys:?}: {e}", path.display())
            })?
        };
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
        self.batch.validate().map_err(|e| match e {
            lockbench_server::photos::PhotoError::Invalid { setting, reason } => {
                anyhow::anyhow!("batch.{setting}: {reason}")
            }
            other => anyhow::anyhow!("batch: {other}"),
        })?;
        if self.server.workers == 0 || self.server.workers > 64 {
            bail!("server.workers: {} (1 to 64)", self.server.workers);
        }
        if self.server.threads > 10_000 {
            bail!(
                "server.threads: {} (0 for no limit, up to 10000)",
                self.server.threads
            );
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
        for role in Role::ALL {
            let b = self.users.behaviour(role);
            if b.max_in_flight == 0 || b.max_in_flight > 1000 {
                bail!(
                    "users.{}max_in_flight: {} (1 to 1000)",
                    if self.users.max_in_flight == b.max_in_flight {
                        String::new()
                    } else {
                        format!("{}.", role.name())
                    },
                    b.max_in_flight
                );
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
            if e.batch.is_some()
                && !e
                    .status
                    .as_ref()
                    .is_some_and(|s| s.path.contains("{batch}"))
            {
                bail!("endpoints.batch: needs an [endpoints.status] whose path holds {{batch}}, to tell when the batch is done");
            }
            for (role, spec) in [
                ("poller", Some(&e.poller)),
                ("status", e.status.as_ref()),
                ("admin", e.admin.as_ref()),
                ("kiosk", e.kiosk.as_ref()),
                ("batch", e.batch.as_ref()),
            ] {
                if let Some(spec) = spec {
                    if role == "batch"
                        && spec
                            .body
                            .as_deref()
                            .is_some_and(|b| !b.contains("{photos}"))
                    {
                        bail!("endpoints.batch.body: has no {{photos}} placeholder for the batch folder's path");
                    }
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
        if let Some(t) = &self.target {
            self.validate_target(t)?;
        }
        self.validate_gate_names()?;
        self.validate_faults()?;
        Ok(())
    }

    /// Faults must fit the run: a hold longer than zero, an interval longer than the hold, a
    /// photo the batch has, a time before the cap.
    fn validate_faults(&self) -> anyhow::Result<()> {
        let photos = self.batch.total_files() as u64;
        for (i, fault) in self.faults.iter().enumerate() {
            let at_key = |key: &str| format!("faults[{i}].{key} ({})", fault.kind());
            match fault {
                Fault::ExternalLock { at, hold, every } => {
                    check_window(&at_key("at"), *at, *hold, self.duration.max)?;
                    if let Some(every) = every {
                        if every <= hold {
                            bail!(
                                "{}: {:?} is not longer than the hold {:?}; the locks would overlap",
                                at_key("every"),
                                every,
                                hold
                            );
                        }
                    }
                }
                Fault::LongReader { at, hold } => {
                    check_window(&at_key("at"), *at, *hold, self.duration.max)?
                }
                Fault::SlowDisk {
                    at,
                    hold,
                    sync_delay_ms,
                } => {
                    check_window(&at_key("at"), *at, *hold, self.duration.max)?;
                    if *sync_delay_ms > 60_000 {
                        bail!(
                            "{}: {sync_delay_ms} ms is more than a minute per sync",
                            at_key("sync_delay_ms")
                        );
                    }
                }
                Fault::KillWorker { at_photo, .. } => {
                    if *at_photo == 0 || *at_photo >= photos {
                        bail!(
                            "{}: {at_photo} is not a photo the batch reaches before its end (1 to {})",
                            at_key("at_photo"),
                            photos.saturating_sub(1)
                        );
                    }
                }
            }
        }
        if self.server.storage.driver.is_postgres()
            && self
                .faults
                .iter()
                .any(|f| matches!(f, Fault::SlowDisk { .. }))
        {
            bail!("faults: slow-disk models a SQLite file's disk; on PostgreSQL the disk is the server's");
        }
        if !self.faults.is_empty() && self.target.as_ref().is_some_and(|t| t.url.is_some()) {
            bail!("faults: apply to the reference server only; lockbench does not touch an external app's database or processes");
        }
        Ok(())
    }

    /// The role whose users send the requests of `endpoint` (a reference endpoint or an
    /// `[endpoints]` name); None for a name that is neither.
    pub fn role_of_endpoint(endpoint: &str) -> Option<Role> {
        match endpoint {
            "GET /api/registrations/updates"
            | "GET /api/batches/{id}/status"
            | "poller"
            | "status" => Some(Role::Poller),
            "GET /admin" | "admin" => Some(Role::Admin),
            "POST /api/registrations" | "kiosk" => Some(Role::Kiosk),
            _ => None,
        }
    }

    /// Why a gate on `name` (an endpoint or a role) could never be measured in this run: the
    /// role that sends it has no users, or an external app's `[endpoints]` has no such request.
    fn unmeasurable(&self, name: &str) -> Option<String> {
        let role = Role::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .or_else(|| Scenario::role_of_endpoint(name))?;
        let key = match role {
            Role::Poller => "users.pollers",
            Role::Admin => "users.admins",
            Role::Kiosk => "users.kiosks",
        };
        if self.users.behaviour(role).users == 0 {
            return Some(format!(
                "it is sent by the {}s, and the scenario has none ({key} = 0)",
                role.name()
            ));
        }
        if let Some(e) = &self.endpoints {
            let missing = match name {
                "status" => e.status.is_none(),
                "admin" => e.admin.is_none(),
                "kiosk" => e.kiosk.is_none(),
                _ => false,
            };
            if missing {
                return Some(format!("the scenario has no [endpoints.{name}]"));
            }
        }
        None
    }

    /// Every endpoint a gate names must be one the run will measure.
    fn validate_gate_names(&self) -> anyhow::Result<()> {
        let mut known: Vec<&str> = REFERENCE_ENDPOINTS.to_vec();
        if self.endpoints.is_some() {
            known.extend(EXTERNAL_ENDPOINTS);
        }
        for name in self.gates.p99_ms.keys() {
            if !known.contains(&name.as_str()) {
                bail!(
                    "gates.p99_ms: {name:?} is not an endpoint this scenario measures (known: {})",
                    known.join(", ")
                );
            }
        }
        for name in self.gates.p99_corrected_ms.keys() {
            let role = Role::ALL.iter().any(|r| r.name() == name);
            if !role && !known.contains(&name.as_str()) {
                bail!(
                    "gates.p99_corrected_ms: {name:?} is neither a role (poller, admin, kiosk) nor an endpoint this scenario measures (known: {})",
                    known.join(", ")
                );
            }
        }
        for (table, map) in [
            ("p99_ms", &self.gates.p99_ms),
            ("p99_corrected_ms", &self.gates.p99_corrected_ms),
        ] {
            for name in map.keys() {
                if let Some(why) = self.unmeasurable(name) {
                    bail!("gates.{table}.{name:?}: can never be measured in this run: {why}");
                }
            }
            for (name, limit) in map {
                if !(limit.is_finite() && *limit > 0.0) {
                    bail!(
                        "gates.{table}.{name:?}: {limit} is not a positive number of milliseconds"
                    );
                }
            }
        }
        Ok(())
    }

    /// Checks `[target]` for what can be known without touching the app's files.
    fn validate_target(&self, t: &TargetSpec) -> anyhow::Result<()> {
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
