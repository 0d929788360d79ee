//! The user mix of a scenario in the `[users]` table's form: the roles (pollers, admins,
//! kiosks), how many of each, how often they tick, and how a user behaves when an answer is
//! slow (`PollModel`, `max_in_flight`, `Connection`), with each role's overrides; or, in the
//! `[[users]]` form, the classes of `classes.rs` (kept in `classes`). Data only.

use std::time::Duration;

use lockbench_server::storage::config::duration_text;
use serde::{Deserialize, Serialize};

use super::UserClass;

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
    /// `[[users]]`: user classes with named requests (then the roles above are 0 and unused).
    #[serde(skip)]
    pub classes: Vec<UserClass>,
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
            classes: Vec::new(),
        }
    }
}

/// Requests a browser-like user may have out at once by default (`max_in_flight`).
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 4;

/// How a user paces its requests, and how its schedule reacts to a slow answer (a class's
/// `pace`; the `[users]` table's `poll_model`, which takes the first two).
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
    /// A user sends its next request when the previous answer arrives, after a think time
    /// (locust's users).
    Closed,
    /// An open model: requests start at a fixed rate across the class whatever the answers
    /// (k6's constant-arrival-rate); the class's users are the slots they run in, and a
    /// request that finds every slot busy is dropped, and counted.
    ArrivalRate,
}

/// How a class's users hold their HTTP connections. Cookies are each user's own whatever
/// the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Connection {
    /// Each user its own persistent connection, reused between its requests, as a browser
    /// holds one to the app.
    #[default]
    KeepAlive,
    /// The class's users share one pool of persistent connections, opened as requests need
    /// them (as many as are out at once), as a reverse proxy or a CDN in front of the app
    /// holds them.
    Pooled,
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
        if self.classes.is_empty() {
            self.pollers + self.admins + self.kiosks
        } else {
            self.classes.iter().map(|c| c.count).sum()
        }
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
