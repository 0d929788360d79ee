//! A scenario's `[[faults]]`: what production has besides polling (a write lock held by
//! another process, a killed worker, a reader that stays open, a slow disk), and the checks
//! that each fits the run. Data and checks; the runner applies them (`run/faults.rs`).

use std::time::Duration;

use anyhow::bail;
use lockbench_server::storage::config::duration_text;
use serde::{Deserialize, Serialize};

use super::Scenario;

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
    /// SIGKILL a worker process when the batch reaches `at_photo` photos processed (the
    /// reference server), or `at` into the load (an app lockbench starts).
    KillWorker {
        #[serde(default, skip_serializing_if = "is_zero")]
        at_photo: u64,
        #[serde(
            default,
            with = "optional_duration",
            skip_serializing_if = "Option::is_none"
        )]
        at: Option<Duration>,
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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Which worker a `kill-worker` fault kills: `"processor"`, `"any"`, or any other text, a
/// process of the app's group whose command line contains it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum KillTarget {
    /// The worker running the batch's processor.
    #[default]
    Processor,
    /// The first worker that answers, whichever it is.
    Any,
    /// A process of the app lockbench started whose command line contains this text.
    Pattern(String),
}

impl From<String> for KillTarget {
    fn from(text: String) -> KillTarget {
        match text.as_str() {
            "processor" => KillTarget::Processor,
            "any" => KillTarget::Any,
            _ => KillTarget::Pattern(text),
        }
    }
}

impl From<KillTarget> for String {
    fn from(t: KillTarget) -> String {
        t.name().to_owned()
    }
}

impl KillTarget {
    /// As the scenario writes it.
    pub fn name(&self) -> &str {
        match self {
            KillTarget::Processor => "processor",
            KillTarget::Any => "any",
            KillTarget::Pattern(p) => p,
        }
    }
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
            Fault::KillWorker {
                at_photo,
                at,
                worker,
            } => match at {
                Some(at) => format!("kill-worker ({}) at {}", worker.name(), d(at)),
                None => format!("kill-worker ({}) at photo {at_photo}", worker.name()),
            },
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

fn check_window(key: &str, at: Duration, hold: Duration, max: Duration) -> anyhow::Result<()> {
    if hold.is_zero() {
        bail!("{key}: the fault's hold must be longer than 0");
    }
    if at >= max {
        bail!("{key}: {at:?} is not before the run's cap duration.max = {max:?}");
    }
    Ok(())
}

impl Scenario {
    /// Faults must fit the run: a hold longer than zero, an interval longer than the hold, a
    /// photo the batch has, a time before the cap.
    pub(super) fn validate_faults(&self) -> anyhow::Result<()> {
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
                Fault::KillWorker { at: Some(at), .. } => {
                    if *at >= self.duration.max {
                        bail!(
                            "{}: {at:?} is not before the run's cap duration.max",
                            at_key("at")
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
        self.validate_kills_for_target()?;
        if !self.faults.is_empty()
            && self
                .target
                .as_ref()
                .is_some_and(|t| t.url.is_some() && !t.launches())
        {
            bail!("faults: apply to the reference server or an app lockbench starts ([target].command); lockbench does not touch the database or processes of an app that already runs");
        }
        Ok(())
    }

    /// A kill at a time, and a worker picked by its command line, are for an app lockbench
    /// starts; the reference server's kills come at a photo, of the processor or any worker.
    fn validate_kills_for_target(&self) -> anyhow::Result<()> {
        let launches = self.target.as_ref().is_some_and(|t| t.launches());
        for (i, fault) in self.faults.iter().enumerate() {
            match fault {
                Fault::KillWorker { at: Some(_), .. } if !launches => bail!(
                    "faults[{i}].at (kill-worker): a kill at a time is for an app lockbench starts; on the reference server give at_photo"
                ),
                Fault::KillWorker {
                    worker: KillTarget::Pattern(p),
                    ..
                } if !launches => bail!(
                    "faults[{i}].worker (kill-worker): {p:?} is neither processor nor any (a command-line pattern picks a process of an app lockbench starts)"
                ),
                _ => {}
            }
        }
        Ok(())
    }
}
