//! Retry policies as data.
//!
//! `RetryConfig` is the flat, flag- and TOML-friendly form; [`RetryConfig::plan`] checks it
//! once and turns it into a [`RetryPlan`] (the write policy, the read policy and the scope,
//! each a typed value), which is what `Store::open` takes: the store never sees, or checks
//! again, the flat form. Attempts count every try, the first included: `attempts = 3` means
//! at most two retries.
//!
//! Decides how long to wait; never sleeps or runs statements (the store does).

use std::time::Duration;

use clap::{Args, ValueEnum};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::config::ConfigError;

/// Which retry policy, before its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RetryKind {
    /// No retries: the first lock error is the answer.
    #[default]
    None,
    /// `retry_attempts` tries, waiting `retry_delay_ms` between them.
    Fixed,
    /// `retry_attempts` tries, waiting base * factor^n, capped at max, with jitter.
    Exponential,
    /// The incident's presets: reads 3 tries waiting 0.3 s then 0.6 s; writes 6 tries
    /// (the first commit and 5 retries) waiting 0.5, 1, 2, 4 and 8 s.
    Incident,
}

/// Jitter applied to exponential delays (AWS architecture blog naming).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Jitter {
    #[default]
    None,
    /// A uniform wait in [0, delay].
    Full,
    /// delay/2 plus a uniform wait in [0, delay/2].
    Equal,
}

/// What a retry re-runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RetryScope {
    /// Roll back and re-run the whole transaction closure: the correct retry.
    #[default]
    UnitOfWork,
    /// Roll back and issue COMMIT again, as the incident's `db_commit_with_retry` did. After the
    /// rollback nothing is left to commit, so the "successful" retry silently drops the write.
    CommitOnly,
}

/// Retry settings, flat, for flags and TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Retry policy for write units of work.
    #[arg(long, value_enum, default_value_t = RetryConfig::default().retry)]
    pub retry: RetryKind,
    /// Retry policy for reads (the incident decorated its polling endpoints).
    #[arg(long, value_enum, default_value_t = RetryConfig::default().read_retry)]
    pub read_retry: RetryKind,
    /// What a write retry re-runs.
    #[arg(long, value_enum, default_value_t = RetryConfig::default().retry_scope)]
    pub retry_scope: RetryScope,
    /// Tries in all, the first included (fixed and exponential).
    #[arg(long, default_value_t = RetryConfig::default().retry_attempts)]
    pub retry_attempts: u32,
    /// Wait between tries (fixed).
    #[arg(long, default_value_t = RetryConfig::default().retry_delay_ms)]
    pub retry_delay_ms: u64,
    /// First wait (exponential).
    #[arg(long, default_value_t = RetryConfig::default().retry_base_ms)]
    pub retry_base_ms: u64,
    /// Growth per try (exponential).
    #[arg(long, default_value_t = RetryConfig::default().retry_factor)]
    pub retry_factor: f64,
    /// Longest single wait (exponential).
    #[arg(long, default_value_t = RetryConfig::default().retry_max_ms)]
    pub retry_max_ms: u64,
    /// Jitter (exponential).
    #[arg(long, value_enum, default_value_t = RetryConfig::default().retry_jitter)]
    pub retry_jitter: Jitter,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            retry: RetryKind::None,
            read_retry: RetryKind::None,
            retry_scope: RetryScope::default(),
            retry_attempts: 3,
            retry_delay_ms: 5,
            retry_base_ms: 100,
            retry_factor: 2.0,
            retry_max_ms: 8000,
            retry_jitter: Jitter::None,
        }
    }
}

/// A typed retry policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RetryPolicy {
    #[default]
    None,
    Fixed {
        attempts: u32,
        delay: Duration,
    },
    Exponential {
        attempts: u32,
        base: Duration,
        factor: f64,
        max: Duration,
        jitter: Jitter,
    },
}

impl RetryPolicy {
    /// The incident's `@db_retry(max_attempts=3, delay=0.3)` on reads: 0.3 s, then 0.6 s.
    pub fn incident_reads() -> RetryPolicy {
        RetryPolicy::Exponential {
            attempts: 3,
            base: Duration::from_millis(300),
            factor: 2.0,
            max: Duration::from_millis(600),
            jitter: Jitter::None,
        }
    }

    /// The incident's `db_commit_with_retry`: waits of 0.5, 1, 2, 4 and 8 s between six commits.
    pub fn incident_commits() -> RetryPolicy {
        RetryPolicy::Exponential {
            attempts: 6,
            base: Duration::from_millis(500),
            factor: 2.0,
            max: Duration::from_secs(8),
            jitter: Jitter::None,
        }
    }

    /// Tries in all, the first included.
    pub fn attempts(&self) -> u32 {
        match self {
            RetryPolicy::None => 1,
            RetryPolicy::Fixed { attempts, .. } | RetryPolicy::Exponential { attempts, .. } => {
                *attempts
            }
        }
    }

    /// The wait before try number `attempt` + 1, where `attempt` (1-based) just failed;
    /// `None` when no try is left.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.attempts() {
            return None;
        }
        match self {
            RetryPolicy::None => None,
            RetryPolicy::Fixed { delay, .. } => Some(*delay),
            RetryPolicy::Exponential {
                base,
                factor,
                max,
                jitter,
                ..
            } => {
                let raw = base.as_secs_f64() * factor.powi(attempt as i32 - 1);
                let capped = Duration::from_secs_f64(raw.min(max.as_secs_f64()));
                Some(apply_jitter(capped, *jitter))
            }
        }
    }
}

fn apply_jitter(delay: Duration, jitter: Jitter) -> Duration {
    let micros = delay.as_micros() as u64;
    match jitter {
        Jitter::None => delay,
        Jitter::Full => Duration::from_micros(rand::rng().random_range(0..=micros)),
        Jitter::Equal => {
            Duration::from_micros(micros / 2 + rand::rng().random_range(0..=micros / 2))
        }
    }
}

/// The retry settings as the store runs them: built once from a [`RetryConfig`] at the edge
/// (the command line, a scenario, a worker's configuration) by [`RetryConfig::plan`], which
/// is where they are checked; whoever holds a plan holds valid policies. `Default` is no
/// retries at all, the same plan `RetryConfig::default().plan()` gives.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RetryPlan {
    /// For write units of work (`Store::write`, `write_patiently`).
    pub write: RetryPolicy,
    /// For reads (`Store::read`).
    pub read: RetryPolicy,
    /// What a write retry re-runs.
    pub scope: RetryScope,
}

impl RetryConfig {
    /// Checks the settings and builds the policies they describe, naming the setting that
    /// is wrong (`retry_attempts`, `retry_factor`, `retry_max_ms`).
    pub fn plan(&self) -> Result<RetryPlan, ConfigError> {
        Ok(RetryPlan {
            write: self.build(self.retry, RetryPolicy::incident_commits())?,
            read: self.build(self.read_retry, RetryPolicy::incident_reads())?,
            scope: self.retry_scope,
        })
    }

    /// Whether [`RetryConfig::plan`] accepts the settings, for checks that need no plan
    /// (a scenario checked before it runs).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.plan().map(|_| ())
    }

    fn build(&self, kind: RetryKind, incident: RetryPolicy) -> Result<RetryPolicy, ConfigError> {
        let uses_attempts = matches!(kind, RetryKind::Fixed | RetryKind::Exponential);
        if uses_attempts && self.retry_attempts == 0 {
            return Err(ConfigError::Invalid {
                setting: "retry_attempts",
                reason: "must be at least 1 (it counts the first try)".into(),
            });
        }
        Ok(match kind {
            RetryKind::None => RetryPolicy::None,
            RetryKind::Incident => incident,
            RetryKind::Fixed => RetryPolicy::Fixed {
                attempts: self.retry_attempts,
                delay: Duration::from_millis(self.retry_delay_ms),
            },
            RetryKind::Exponential => {
                if !(self.retry_factor.is_finite() && self.retry_factor >= 1.0) {
                    return Err(ConfigError::Invalid {
                        setting: "retry_factor",
                        reason: format!("must be a number >= 1, got {}", self.retry_factor),
                    });
                }
                if self.retry_max_ms < self.retry_base_ms {
                    return Err(ConfigError::Invalid {
                        setting: "retry_max_ms",
                        reason: format!(
                            "{} is below retry_base_ms = {}",
                            self.retry_max_ms, self.retry_base_ms
                        ),
                    });
                }
                RetryPolicy::Exponential {
                    attempts: self.retry_attempts,
                    base: Duration::from_millis(self.retry_base_ms),
                    factor: self.retry_factor,
                    max: Duration::from_millis(self.retry_max_ms),
                    jitter: self.retry_jitter,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(policy: &RetryPolicy) -> Vec<u128> {
        (1..=10)
            .map_while(|a| policy.delay_after(a))
            .map(|d| d.as_millis())
            .collect()
    }

    #[test]
    fn incident_presets_wait_as_the_write_up_says() {
        assert_eq!(waits(&RetryPolicy::incident_reads()), vec![300, 600]);
        assert_eq!(
            waits(&RetryPolicy::incident_commits()),
            vec![500, 1000, 2000, 4000, 8000]
        );
    }

    #[test]
    fn exponential_is_capped_and_jitter_stays_in_bounds() {
        let with = |jitter| RetryPolicy::Exponential {
            attempts: 8,
            base: Duration::from_millis(10),
            factor: 3.0,
            max: Duration::from_millis(200),
            jitter,
        };
        assert_eq!(
            waits(&with(Jitter::None)),
            vec![10, 30, 90, 200, 200, 200, 200]
        );
        let full = with(Jitter::Full);
        let equal = with(Jitter::Equal);
        for _ in 0..100 {
            assert!(full.delay_after(4).unwrap() <= Duration::from_millis(200));
            let e = equal.delay_after(4).unwrap();
            assert!(e >= Duration::from_millis(100) && e <= Duration::from_millis(200));
        }
    }

    #[test]
    fn fixed_and_none() {
        let cfg = RetryConfig {
            retry: RetryKind::Fixed,
            retry_attempts: 3,
            retry_delay_ms: 5,
            ..RetryConfig::default()
        };
        let plan = cfg.plan().unwrap();
        assert_eq!(waits(&plan.write), vec![5, 5]);
        assert_eq!(plan.read, RetryPolicy::None);
        assert!(waits(&RetryPolicy::None).is_empty());
    }

    #[test]
    fn the_default_plan_is_the_default_settings_plan_no_retries() {
        assert_eq!(RetryConfig::default().plan().unwrap(), RetryPlan::default());
        assert_eq!(RetryPlan::default().write, RetryPolicy::None);
        assert_eq!(RetryPlan::default().scope, RetryScope::UnitOfWork);
        let incident = RetryConfig {
            retry: RetryKind::Incident,
            read_retry: RetryKind::Incident,
            retry_scope: RetryScope::CommitOnly,
            ..RetryConfig::default()
        };
        assert_eq!(
            incident.plan().unwrap(),
            RetryPlan {
                write: RetryPolicy::incident_commits(),
                read: RetryPolicy::incident_reads(),
                scope: RetryScope::CommitOnly,
            }
        );
    }

    #[test]
    fn bad_parameters_name_the_setting() {
        let cfg = RetryConfig {
            retry: RetryKind::Exponential,
            retry_factor: 0.5,
            ..RetryConfig::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("retry_factor"), "{err}");
        let cfg = RetryConfig {
            retry: RetryKind::Fixed,
            retry_attempts: 0,
            ..RetryConfig::default()
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("retry_attempts"));
    }
}
