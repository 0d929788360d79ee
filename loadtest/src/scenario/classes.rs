//! User classes and named requests (`[[users]]`): any app's request mix, as locust's users
//! and tasks or k6's scenarios and requests. A class has a `name`, a `count`, a pace and its
//! requests; a request has a `name` (the report's row), a `weight`, a method, a path, a body
//! (`form`, `json` or raw `body`), headers, the statuses that count as success (`expect`) and
//! optionally an audit query. The old `[users]` table (pollers, admins, kiosks) is read into
//! the same classes (`Users::classes`), so one load engine runs either. Data and checks.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use lockbench_server::storage::config::{duration_text, parse_duration};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Connection, EndpointSpec, Endpoints, PollModel, Users};

/// One class of users: how many, how they pace their requests, and which requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserClass {
    /// The class's name in reports and gates (`[gates.p99_corrected_ms]`).
    pub name: String,
    #[serde(default = "one")]
    pub count: u32,
    /// `closed` (default), `interval`, `after-response` or `arrival-rate`.
    #[serde(default = "closed")]
    pub pace: PollModel,
    /// `closed`: the wait between a user's answer and its next request; "100ms..500ms" draws
    /// each wait from that range.
    #[serde(default)]
    pub think: Think,
    /// `interval` and `after-response`: one tick per user this often.
    #[serde(
        default,
        with = "optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub every: Option<Duration>,
    /// `arrival-rate`: requests started per second across the class ("200/s", "30/m"); the
    /// class's `count` users are the slots they run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// `weighted` (default): each tick sends one request, picked by weight; `sequence`:
    /// each tick sends every request in order (a page that loads several things).
    #[serde(default)]
    pub order: Order,
    /// `interval`: requests a user may have out at once (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<Connection>,
    /// Headers on every request of the class (a request's own win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    pub requests: Vec<RequestSpec>,
}

fn one() -> u32 {
    1
}

fn closed() -> PollModel {
    PollModel::Closed
}

/// How a tick picks its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    #[default]
    Weighted,
    Sequence,
}

/// One named request of a class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// The report's row and the gates' key.
    pub name: String,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default = "get")]
    pub method: String,
    /// Path and query below the app's URL, with placeholders: `{user}` (the user's number),
    /// `{n}` (a counter of the class: no two requests of a class get the same), `{since}`
    /// (the `last_id` of the user's previous JSON answer, 0 at first), `{batch}` (the posted
    /// batch's id; a request whose path holds it waits until a batch is posted) and
    /// `{env.NAME}` (lockbench's environment variable NAME).
    pub path: String,
    /// Sent as `application/x-www-form-urlencoded`; values take the placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<BTreeMap<String, String>>,
    /// Sent as `application/json`; strings take the placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// Sent as it is (with the placeholders); set `Content-Type` in `headers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The statuses that count as success; default every 2xx and 3xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Vec<u16>>,
    /// A success must also hold this text in its body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<String>,
    /// Looks up every write this request got a success for, after the run, in
    /// `[target].database`: a lost write is an acknowledged one that is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSpec>,
}

fn get() -> String {
    "GET".into()
}

/// `audit = { query, field }`: `query` returns one number for a write (`?1` bound from the
/// body's `field`); 0 means it is missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSpec {
    pub query: String,
    pub field: String,
}

impl RequestSpec {
    /// Whether `status` (None: no answer) and `body` are a success for this request.
    pub fn expected(&self, status: Option<u16>, body: &str) -> bool {
        let Some(s) = status else { return false };
        let status_ok = match &self.expect {
            Some(list) => list.contains(&s),
            None => (200..400).contains(&s),
        };
        status_ok
            && self
                .expect_body
                .as_deref()
                .is_none_or(|text| body.contains(text))
    }

    /// The field names of the body a write sends (form keys, JSON object keys), with the
    /// placeholders filled with a sample value; None without a body of fields.
    pub fn body_fields(&self) -> Option<Vec<String>> {
        if let Some(form) = &self.form {
            return Some(form.keys().cloned().collect());
        }
        let value = match (&self.json, &self.body) {
            (Some(v), _) => v.clone(),
            (None, Some(text)) => serde_json::from_str(&sample_fill(text)).ok()?,
            (None, None) => return None,
        };
        match value {
            serde_json::Value::Object(map) => Some(map.keys().cloned().collect()),
            _ => None,
        }
    }

    /// A template of the path without its query, for matching a path an app's log names.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }
}

/// The placeholders filled with "0", to see a template's shape.
fn sample_fill(text: &str) -> String {
    ["{user}", "{n}", "{since}", "{batch}"]
        .iter()
        .fold(text.to_owned(), |t, p| t.replace(p, "0"))
}

/// A think time: a fixed wait, or a range each wait is drawn from ("100ms..500ms").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Think {
    pub min: Duration,
    pub max: Duration,
}

impl Think {
    fn parse(text: &str) -> Result<Think, String> {
        let (a, b) = text.split_once("..").unwrap_or((text, text));
        let (min, max) = (parse_duration(a)?, parse_duration(b)?);
        if max < min {
            return Err(format!("think {text:?}: the range ends before it starts"));
        }
        Ok(Think { min, max })
    }
}

impl Serialize for Think {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = |d| humantime::format_duration(d).to_string();
        if self.min == self.max {
            s.serialize_str(&f(self.min))
        } else {
            s.serialize_str(&format!("{}..{}", f(self.min), f(self.max)))
        }
    }
}

impl<'de> Deserialize<'de> for Think {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Think, D::Error> {
        Think::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Requests started per second across a class ("200/s", "30/m").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
}

impl Rate {
    fn parse(text: &str) -> Result<Rate, String> {
        let (n, unit) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("rate {text:?}: write it as \"200/s\" or \"30/m\""))?;
        let n: f64 = n
            .trim()
            .parse()
            .map_err(|_| format!("rate {text:?}: {n:?} is not a number"))?;
        let per = match unit.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("rate {text:?}: unit {other:?} (s, m or h)")),
        };
        if !(n.is_finite() && n > 0.0) {
            return Err(format!("rate {text:?}: must be above 0"));
        }
        Ok(Rate {
            per_second: n / per,
        })
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}/s", self.per_second))
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        Rate::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => super::duration_text::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// `users` in a scenario: the `[users]` table (pollers, admins, kiosks) or `[[users]]`
/// classes. Either way the errors of the form used name its line and key.
pub(super) mod users_either {
    use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
    use serde::de::{MapAccess, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{UserClass, Users};

    pub fn serialize<S: Serializer>(users: &Users, s: S) -> Result<S::Ok, S::Error> {
        if users.classes.is_empty() {
            users.serialize(s)
        } else {
            users.classes.serialize(s)
        }
    }

    struct Either;

    impl<'de> Visitor<'de> for Either {
        type Value = Users;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a [users] table or [[users]] classes")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Users, A::Error> {
            Users::deserialize(MapAccessDeserializer::new(map))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Users, A::Error> {
            let classes = Vec::<UserClass>::deserialize(SeqAccessDeserializer::new(seq))?;
            Ok(Users {
                pollers: 0,
                admins: 0,
                kiosks: 0,
                classes,
                ..Users::default()
            })
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Users, D::Error> {
        d.deserialize_any(Either)
    }
}

/// Which app the old `[users]` table's roles call: the reference server's endpoints, or an
/// external app's `[endpoints]`.
#[derive(Debug, Clone, Copy)]
pub enum RoleEndpoints<'a> {
    Reference,
    External(&'a Endpoints),
}

/// The reference server's endpoints, as reports and gates name them.
const UPDATES: &str = "GET /api/registrations/updates";
const BATCH_STATUS: &str = "GET /api/batches/{id}/status";
const ADMIN: &str = "GET /admin";
/// The reference server's kiosk request, whose acknowledged bodies the audit looks up.
pub const REGISTER: &str = "POST /api/registrations";

/// The reference server's admin endpoints take the run's admin token; a header whose value
/// holds this placeholder is left out when there is none.
pub const ADMIN_TOKEN: &str = "{admin_token}";

fn plain(name: &str, method: &str, path: &str) -> RequestSpec {
    RequestSpec {
        name: name.to_owned(),
        weight: 1,
        method: method.to_owned(),
        path: path.to_owned(),
        form: None,
        json: None,
        body: None,
        headers: BTreeMap::new(),
        expect: None,
        expect_body: None,
        audit: None,
    }
}

fn admin(mut r: RequestSpec) -> RequestSpec {
    r.headers
        .insert("Authorization".into(), format!("Bearer {ADMIN_TOKEN}"));
    r
}

/// An `[endpoints]` request under its role's name; a body is JSON, as it always was.
fn from_endpoint(name: &str, spec: &EndpointSpec) -> RequestSpec {
    let mut r = plain(name, &spec.method, &spec.path);
    if let Some(body) = &spec.body {
        r.body = Some(body.clone());
        r.headers
            .insert("Content-Type".into(), "application/json".into());
    }
    r
}

impl Users {
    /// The user classes this mix runs: `[[users]]` as written, or the `[users]` table's roles
    /// as classes named "poller", "admin" and "kiosk" (a poller's tick is its updates, then
    /// its batch's status once a batch is posted). Classes with no users are kept (a gate
    /// on them is refused by name); the load starts none of their users.
    pub fn classes(&self, endpoints: RoleEndpoints<'_>) -> Vec<UserClass> {
        if !self.classes.is_empty() {
            return self.classes.clone();
        }
        let (poller, admins, kiosk) = match endpoints {
            RoleEndpoints::Reference => {
                let mut register = plain(REGISTER, "POST", "/api/registrations");
                register.json = Some(serde_json::json!({
                    "name": "Walk-in {user}-{n}",
                    "email": "walkin-{user}-{n}@example.org",
                }));
                (
                    vec![
                        plain(UPDATES, "GET", "/api/registrations/updates?since={since}"),
                        admin(plain(BATCH_STATUS, "GET", "/api/batches/{batch}/status")),
                    ],
                    vec![admin(plain(ADMIN, "GET", "/admin"))],
                    vec![register],
                )
            }
            RoleEndpoints::External(e) => {
                let mut poller = vec![from_endpoint("poller", &e.poller)];
                poller.extend(e.status.as_ref().map(|s| from_endpoint("status", s)));
                (
                    poller,
                    e.admin.iter().map(|s| from_endpoint("admin", s)).collect(),
                    e.kiosk.iter().map(|s| from_endpoint("kiosk", s)).collect(),
                )
            }
        };
        [
            (super::Role::Poller, poller),
            (super::Role::Admin, admins),
            (super::Role::Kiosk, kiosk),
        ]
        .into_iter()
        .map(|(role, requests)| {
            let b = self.behaviour(role);
            UserClass {
                name: role.name().to_owned(),
                count: if requests.is_empty() { 0 } else { b.users },
                pace: b.poll_model,
                think: Think::default(),
                every: Some(b.interval),
                rate: None,
                order: Order::Sequence,
                max_in_flight: Some(b.max_in_flight),
                connection: Some(b.connection),
                headers: BTreeMap::new(),
                requests,
            }
        })
        .collect()
    }
}

impl UserClass {
    /// The class's tick interval (`interval`, `after-response`), its slot's share of the rate
    /// (`arrival-rate`), none for `closed`.
    pub fn interval(&self) -> Option<Duration> {
        match self.pace {
            PollModel::Interval | PollModel::AfterResponse => self.every,
            PollModel::ArrivalRate => self
                .rate
                .map(|r| Duration::from_secs_f64(1.0 / r.per_second)),
            PollModel::Closed => None,
        }
    }

    pub fn max_in_flight(&self) -> u32 {
        self.max_in_flight.unwrap_or(super::DEFAULT_MAX_IN_FLIGHT)
    }

    pub fn connection(&self) -> Connection {
        self.connection.unwrap_or_default()
    }

    /// Checks one class; errors name `users.<class>.<key>`.
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        let at = format!("users.{}", self.name);
        if self.name.trim().is_empty() {
            bail!("users: a class has an empty name");
        }
        if self.requests.is_empty() {
            bail!("{at}.requests: the class has no requests");
        }
        match (self.pace, self.every, self.rate) {
            (PollModel::Interval | PollModel::AfterResponse, None, _) => bail!(
                "{at}.every: pace {:?} needs every (one tick per user this often)",
                pace_name(self.pace)
            ),
            (PollModel::Interval | PollModel::AfterResponse, Some(d), _)
                if d < Duration::from_millis(1) =>
            {
                bail!("{at}.every: {d:?} is below 1 ms")
            }
            (PollModel::ArrivalRate, _, None) => {
                bail!("{at}.rate: pace \"arrival-rate\" needs rate (\"200/s\")")
            }
            (PollModel::Closed | PollModel::ArrivalRate, Some(_), _) => bail!(
                "{at}.every: only for pace \"interval\" or \"after-response\" (this class's pace is {:?})",
                pace_name(self.pace)
            ),
            (p, _, Some(_)) if p != PollModel::ArrivalRate => bail!(
                "{at}.rate: only for pace \"arrival-rate\" (this class's pace is {:?})",
                pace_name(p)
            ),
            _ => {}
        }
        if self.think != Think::default() && self.pace != PollModel::Closed {
            bail!("{at}.think: only for pace \"closed\"");
        }
        if let Some(m) = self.max_in_flight {
            if m == 0 || m > 1000 {
                bail!("{at}.max_in_flight: {m} (1 to 1000)");
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for r in &self.requests {
            if !names.insert(r.name.as_str()) {
                bail!("{at}.requests: two requests are named {:?}", r.name);
            }
            r.validate(&format!("{at}.requests.{}", r.name))?;
        }
        if self.order == Order::Weighted && self.requests.iter().all(|r| r.weight == 0) {
            bail!("{at}.requests: every weight is 0");
        }
        Ok(())
    }
}

fn pace_name(p: PollModel) -> &'static str {
    match p {
        PollModel::Closed => "closed",
        PollModel::Interval => "interval",
        PollModel::AfterResponse => "after-response",
        PollModel::ArrivalRate => "arrival-rate",
    }
}

impl RequestSpec {
    fn validate(&self, at: &str) -> anyhow::Result<()> {
        if self.name.trim().is_empty() {
            bail!("{at}.name: must not be empty");
        }
        if !matches!(
            self.method.as_str(),
            "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS"
        ) {
            bail!(
                "{at}.method: {:?} (GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS)",
                self.method
            );
        }
        if !self.path.starts_with('/') {
            bail!("{at}.path: {:?} must start with /", self.path);
        }
        let bodies = [
            self.form.is_some(),
            self.json.is_some(),
            self.body.is_some(),
        ];
        if bodies.iter().filter(|b| **b).count() > 1 {
            bail!("{at}: set one of form, json and body, not several");
        }
        if let Some(list) = &self.expect {
            if list.is_empty() || list.iter().any(|s| !(100..600).contains(s)) {
                bail!("{at}.expect: {list:?} must list HTTP statuses (100 to 599)");
            }
        }
        for (name, value) in &self.headers {
            http_header(at, name, value)?;
        }
        if let Some(a) = &self.audit {
            let fields = self.body_fields().unwrap_or_default();
            if !fields.iter().any(|f| f == &a.field) {
                bail!(
                    "{at}.audit.field: {:?} is not a field of the request's body ({})",
                    a.field,
                    if fields.is_empty() {
                        "it has no form or JSON object body".to_owned()
                    } else {
                        format!("it has {}", fields.join(", "))
                    }
                );
            }
        }
        Ok(())
    }
}

/// A header name must be a valid HTTP header name.
fn http_header(at: &str, name: &str, _value: &str) -> anyhow::Result<()> {
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        bail!("{at}.headers: {name:?} is not a valid header name");
    }
    Ok(())
}

impl Users {
    /// `[[users]]` classes: names unique, each class checked.
    pub(super) fn validate_classes(&self) -> anyhow::Result<()> {
        let mut names = std::collections::BTreeSet::new();
        for c in &self.classes {
            if !names.insert(c.name.as_str()) {
                bail!("users: two classes are named {:?}", c.name);
            }
            c.validate()?;
        }
        if self.classes.iter().all(|c| c.count == 0) {
            bail!("users: every class has count = 0");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_think_range_and_a_rate_read_as_written() {
        assert_eq!(
            Think::parse("100ms..500ms").unwrap(),
            Think {
                min: Duration::from_millis(100),
                max: Duration::from_millis(500)
            }
        );
        assert!(Think::parse("2s..1s").unwrap_err().contains("ends before"));
        assert_eq!(Rate::parse("30/m").unwrap().per_second, 0.5);
        assert!(Rate::parse("200").unwrap_err().contains("200/s"));
        assert!(Rate::parse("0/s").is_err());
    }

    #[test]
    fn success_is_2xx_or_3xx_unless_expect_says_otherwise() {
        let mut r = plain("r", "GET", "/");
        assert!(r.expected(Some(302), ""));
        assert!(!r.expected(Some(500), ""));
        assert!(!r.expected(None, ""));
        r.expect = Some(vec![201]);
        r.expect_body = Some("\"id\"".into());
        assert!(!r.expected(Some(200), "{\"id\":1}"));
        assert!(r.expected(Some(201), "{\"id\":1}"));
        assert!(!r.expected(Some(201), "{}"));
    }
}
