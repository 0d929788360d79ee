//! The whole scenario checked before anything runs: names, sizes, intervals, the external
//! app's requests, and gates that this run could measure (a gate on requests no user sends
//! is refused, not left to fail with no value). Each error names its key.

use std::time::Duration;

use anyhow::bail;

use super::{Role, Scenario, EXTERNAL_ENDPOINTS, REFERENCE_ENDPOINTS};

impl Scenario {
    /// Checks the whole scenario, part by part; the first mistake is named by its key.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.validate_name()?;
        self.validate_server()?;
        self.validate_users()?;
        if self.duration.max < Duration::from_secs(1) {
            bail!("duration.max: {:?} is below 1 s", self.duration.max);
        }
        if let Some(rate) = self.gates.max_error_rate {
            if !(0.0..=1.0).contains(&rate) {
                bail!("gates.max_error_rate: {rate} is not between 0 and 1");
            }
        }
        self.validate_endpoints()?;
        if let Some(t) = &self.target {
            self.validate_target(t)?;
        }
        self.validate_gate_names()?;
        self.validate_faults()?;
        Ok(())
    }

    fn validate_name(&self) -> anyhow::Result<()> {
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
        Ok(())
    }

    /// The server's settings and the batch.
    fn validate_server(&self) -> anyhow::Result<()> {
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
        Ok(())
    }

    fn validate_users(&self) -> anyhow::Result<()> {
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
        Ok(())
    }

    /// An external app's `[endpoints]`: methods, paths, and a batch that can be followed.
    fn validate_endpoints(&self) -> anyhow::Result<()> {
        let Some(e) = &self.endpoints else {
            return Ok(());
        };
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
            let Some(spec) = spec else { continue };
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
}
