//! The whole scenario checked before anything runs: names, sizes, intervals, the external
//! app's requests, and gates that this run could measure (a gate on requests no user sends
//! is refused, not left to fail with no value). Each error names its key.

use std::time::Duration;

use anyhow::bail;

use super::{PollModel, Role, RoleEndpoints, Scenario, UserClass};

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
        if !self.users.classes.is_empty() {
            return self.users.validate_classes();
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
            let key = |k: &str| {
                if role_override(&self.users, role) {
                    format!("users.{}.{k}", role.name())
                } else {
                    format!("users.{k}")
                }
            };
            if b.max_in_flight == 0 || b.max_in_flight > 1000 {
                bail!("{}: {} (1 to 1000)", key("max_in_flight"), b.max_in_flight);
            }
            if matches!(b.poll_model, PollModel::Closed | PollModel::ArrivalRate) {
                bail!(
                    "{}: \"closed\" and \"arrival-rate\" are paces of [[users]] classes; the [users] table's roles poll (\"interval\" or \"after-response\")",
                    key("poll_model")
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

    /// Every class the scenario may run: `[[users]]` as written, or the roles against the
    /// reference server and, with `[endpoints]`, against the external app.
    fn every_class(&self) -> Vec<UserClass> {
        let mut classes = self.users.classes(RoleEndpoints::Reference);
        if let (Some(e), true) = (&self.endpoints, self.users.classes.is_empty()) {
            classes.extend(self.users.classes(RoleEndpoints::External(e)));
        }
        classes
    }

    /// Why a gate on `name` (a request or a class) could never be measured in this run: no
    /// class sends it, or the classes that do have no users.
    fn unmeasurable(&self, name: &str, classes: &[UserClass]) -> Option<String> {
        let senders: Vec<&UserClass> = classes
            .iter()
            .filter(|c| c.name == name || c.requests.iter().any(|r| r.name == name))
            .collect();
        if senders.iter().any(|c| c.count > 0) {
            return None;
        }
        let class = senders.first()?;
        let key = if self.users.classes.is_empty() {
            format!("users.{}s", class.name)
        } else {
            format!("users.{}.count", class.name)
        };
        Some(format!(
            "it is sent by the {} class, and the scenario has no such users ({key} = 0)",
            class.name
        ))
    }

    /// Every request or class a gate names must be one the run will measure; a name no
    /// class sends is refused with the names there are.
    fn validate_gate_names(&self) -> anyhow::Result<()> {
        let classes = self.every_class();
        let mut requests: Vec<&str> = Vec::new();
        for c in &classes {
            for r in &c.requests {
                if !requests.contains(&r.name.as_str()) {
                    requests.push(&r.name);
                }
            }
        }
        let class_names: Vec<&str> = classes.iter().map(|c| c.name.as_str()).collect();
        let known = requests.join(", ");
        for (table, map) in [
            ("p99_ms", &self.gates.p99_ms),
            ("error_rate", &self.gates.error_rate),
        ] {
            for name in map.keys() {
                if !requests.contains(&name.as_str()) {
                    bail!("gates.{table}: {name:?} is not a request this scenario sends (known: {known})");
                }
            }
        }
        for name in self.gates.p99_corrected_ms.keys() {
            if !requests.contains(&name.as_str()) && !class_names.contains(&name.as_str()) {
                bail!(
                    "gates.p99_corrected_ms: {name:?} is neither a user class ({}) nor a request this scenario sends (known: {known})",
                    class_names.join(", ")
                );
            }
        }
        for (table, map) in [
            ("p99_ms", &self.gates.p99_ms),
            ("p99_corrected_ms", &self.gates.p99_corrected_ms),
        ] {
            for name in map.keys() {
                if let Some(why) = self.unmeasurable(name, &classes) {
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
        for (name, rate) in &self.gates.error_rate {
            if let Some(why) = self.unmeasurable(name, &classes) {
                bail!("gates.error_rate.{name:?}: can never be measured in this run: {why}");
            }
            if !(0.0..=1.0).contains(rate) {
                bail!("gates.error_rate.{name:?}: {rate} is not between 0 and 1");
            }
        }
        Ok(())
    }
}

impl Scenario {
    /// What the scenario's gates cannot see, in words (`lockbench validate` warns of each): a
    /// run could pass while requests fail, lock errors happen or writes are lost.
    pub fn blind_spots(&self) -> Vec<String> {
        let mut out = Vec::new();
        let rate = self.gates.max_error_rate();
        if rate >= 0.5 {
            out.push(format!(
                "gates.max_error_rate = {rate}: a run where {}% of the requests fail passes",
                (rate * 100.0).round()
            ));
        }
        if self.gates.max_lock_errors.is_none() {
            out.push("no gates.max_lock_errors: lock errors that a retry hides from the clients pass unseen".into());
        }
        let writes: Vec<&str> = self
            .users
            .classes
            .iter()
            .flat_map(|c| &c.requests)
            .filter(|r| r.method != "GET" && r.audit.is_none())
            .map(|r| r.name.as_str())
            .collect();
        if !writes.is_empty() {
            out.push(format!(
                "no audit on {}: a write the app acknowledged and lost would not be found (set audit = {{ query, field }} and [target].database)",
                writes.join(", ")
            ));
        }
        if !self.users.classes.is_empty() && self.target.as_ref().is_none_or(|t| t.log.is_none()) {
            out.push("no [target].log: against your app, lock errors are only those its answers show (a 503, a body that mentions a lock)".into());
        }
        out
    }
}

/// Whether a role's own table sets something (so an error names `users.<role>.<key>`).
fn role_override(users: &super::Users, role: Role) -> bool {
    let o = match role {
        Role::Poller => &users.poller,
        Role::Admin => &users.admin,
        Role::Kiosk => &users.kiosk,
    };
    !o.is_empty()
}
