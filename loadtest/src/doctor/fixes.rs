//! The fix for each cause `lockbench doctor` finds: what to change in plain words, the
//! reference server's `--set` keys that apply it, the same change in Django, SQLAlchemy,
//! Rails 8 and Go's database/sql, and a small scenario that reproduces the cause on the
//! reference server, with the `--set` pairs that apply the fix to it.
//!
//! The texts are data, compiled in: `fixes.toml` holds every finding's summary, settings,
//! framework snippets and reproduction notes, with placeholders for the app's busy timeout;
//! `scenarios/doctor-<id>.toml` are the reproducing scenarios, as a user can read and run
//! them. This file owns reading them (once), filling the placeholders, and the comment that
//! heads each reproduction with its two commands. Texts and TOML only; runs nothing.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::report::diagnosis::{FindingId, Fix, FrameworkFix};

/// The busy timeout the framework snippets use when the app's own is not known: the default
/// of Python's sqlite3 (5 s), mattn/go-sqlite3 and Rails' generated database.yml.
const DEFAULT_TIMEOUT_MS: u64 = 5000;

/// The placeholders `fix` fills in fixes.toml's summaries, code and notes (fixes.toml's
/// opening comment says with what).
const PLACEHOLDERS: [&str; 3] = ["{timeout_ms}", "{timeout_s}", "{the_busy_timeout}"];

/// One finding's table in fixes.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    summary: String,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    frameworks: Vec<FrameworkText>,
    reproduction: Option<ReproductionText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrameworkText {
    framework: String,
    code: String,
    note: String,
}

/// What heads `scenarios/doctor-<id>.toml` in a reproduction, and the fix's `--set` pairs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReproductionText {
    about: String,
    note: String,
    fixed_sets: Vec<(String, String)>,
}

/// fixes.toml, parsed on first use.
fn entries() -> &'static BTreeMap<FindingId, Entry> {
    static ENTRIES: OnceLock<BTreeMap<FindingId, Entry>> = OnceLock::new();
    ENTRIES.get_or_init(|| {
        toml::from_str(include_str!("fixes.toml")).unwrap_or_else(|e| panic!("fixes.toml: {e}"))
    })
}

fn entry(id: FindingId) -> &'static Entry {
    entries()
        .get(&id)
        .unwrap_or_else(|| panic!("fixes.toml has no [{id}]"))
}

/// (finding, file name, text) of `scenarios/doctor-<id>.toml`.
macro_rules! scenario {
    ($id:ident, $name:literal) => {
        (
            FindingId::$id,
            concat!("doctor-", $name, ".toml"),
            include_str!(concat!("scenarios/doctor-", $name, ".toml")),
        )
    };
}

/// The reproducing scenarios: one per lock cause, none for `not-a-lock`.
const SCENARIOS: [(FindingId, &str, &str); 6] = [
    scenario!(DeferredUpgrade, "deferred-upgrade"),
    scenario!(RollbackJournalReaders, "rollback-journal-readers"),
    scenario!(TimeoutNotApplied, "timeout-not-applied"),
    scenario!(LongWriter, "long-writer"),
    scenario!(CommitOnlyRetry, "commit-only-retry"),
    scenario!(CheckpointStarvation, "checkpoint-starvation"),
];

/// The fix for one cause. `busy_timeout_ms` is the busy timeout the app believes it set, when
/// doctor knows it: the snippets keep it (a fix should not change a setting it is not about),
/// else they use 5 s. `scenario` and `scenario_fixed` are left for the caller, who writes
/// the reproduction's file.
pub fn fix(id: FindingId, busy_timeout_ms: Option<u64>) -> Fix {
    let ms = busy_timeout_ms
        .filter(|&ms| ms > 0)
        .unwrap_or(DEFAULT_TIMEOUT_MS);
    let the_busy_timeout = busy_timeout_ms
        .map(|ms| format!("the {ms} ms busy timeout"))
        .unwrap_or_else(|| "the busy timeout".to_owned());
    let values = [ms.to_string(), seconds(ms), the_busy_timeout];
    let fill = |text: &str| {
        PLACEHOLDERS
            .iter()
            .zip(&values)
            .fold(text.to_owned(), |text, (name, value)| {
                text.replace(name, value)
            })
    };
    let entry = entry(id);
    Fix {
        summary: fill(&entry.summary),
        settings: entry.settings.clone(),
        frameworks: entry
            .frameworks
            .iter()
            .map(|f| FrameworkFix {
                framework: f.framework.clone(),
                code: fill(&f.code),
                note: fill(&f.note),
            })
            .collect(),
        scenario: None,
        scenario_fixed: None,
    }
}

/// Milliseconds as Python's sqlite3 `timeout` takes them: seconds, "5" or "2.5".
fn seconds(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        (ms / 1000).to_string()
    } else {
        let text = format!("{:.3}", ms as f64 / 1000.0);
        text.trim_end_matches('0').to_owned()
    }
}

/// A scenario that reproduces one cause on the reference server (used when a scenario has no
/// `[target]`), and the `--set` pairs that apply the fix to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reproduction {
    /// `doctor-<id>.toml`.
    pub file_name: &'static str,
    /// The scenario file's whole text, its leading comment naming the cause and the two
    /// commands (as it is, and with the fix).
    pub toml: String,
    /// (dotted key, value as TOML text): `("server.storage.tx_mode", "\"immediate\"")`; what
    /// `--set key=value` takes.
    pub fixed_sets: Vec<(String, String)>,
}

/// The reproduction of a lock cause: `scenarios/doctor-<id>.toml` headed by a comment that
/// says what it reproduces and the commands that run it as it is and with the fix. None for
/// `not-a-lock`, which no load reproduces.
pub fn reproduction(id: FindingId) -> Option<Reproduction> {
    let text = entry(id).reproduction.as_ref()?;
    let &(_, file_name, body) = SCENARIOS.iter().find(|(of, ..)| *of == id)?;
    let fixed_sets = text.fixed_sets.clone();
    let fixed_args: Vec<String> = fixed_sets.iter().map(|(k, v)| set_arg(k, v)).collect();
    let mut header = String::new();
    for line in wrap(&format!("Reproduces {}", text.about), 94) {
        header.push_str(&format!("# {line}\n"));
    }
    for line in wrap(&text.note, 94) {
        header.push_str(&format!("# {line}\n"));
    }
    header.push_str(&format!(
        "#\n#   lockbench run {file_name}\n#   lockbench run {file_name} {}\n",
        fixed_args.join(" ")
    ));
    Some(Reproduction {
        file_name,
        toml: format!("{header}{body}"),
        fixed_sets,
    })
}

/// `--set key=value` as a shell takes it: a plain string bare, anything else quoted.
fn set_arg(key: &str, value: &str) -> String {
    let plain = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .filter(|v| {
            !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    match plain {
        Some(bare) => format!("--set {key}={bare}"),
        None => format!("--set '{key}={value}'"),
    }
}

/// Words into lines of at most `width` characters (a longer word stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::scenario::{apply, parse_set, Scenario};

    fn load(r: &Reproduction) -> (tempfile::TempDir, std::path::PathBuf, Scenario) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(r.file_name);
        std::fs::write(&path, &r.toml).unwrap();
        let scenario =
            Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}\n{}", r.file_name, r.toml));
        (dir, path, scenario)
    }

    #[test]
    fn every_finding_has_a_fix_with_a_summary() {
        for id in FindingId::ALL {
            for timeout in [None, Some(30_000), Some(2_500)] {
                let fix = fix(id, timeout);
                assert!(!fix.summary.trim().is_empty(), "{id}");
                assert!(!fix.frameworks.is_empty(), "{id}");
                for f in &fix.frameworks {
                    assert!(
                        !f.code.trim().is_empty() && !f.note.trim().is_empty(),
                        "{id}"
                    );
                }
                assert!(fix.scenario.is_none() && fix.scenario_fixed.is_none());
            }
            if id.is_lock_problem() {
                let fix = fix(id, None);
                let names: Vec<&str> = fix
                    .frameworks
                    .iter()
                    .map(|f| f.framework.as_str())
                    .collect();
                for want in ["Django", "SQLAlchemy", "Rails 8", "Go database/sql"] {
                    assert!(names.contains(&want), "{id}: no {want} in {names:?}");
                }
            }
        }
        assert!(fix(FindingId::TimeoutNotApplied, Some(2_500)).frameworks[0]
            .code
            .contains("\"timeout\": 2.5"));
        assert!(
            fix(FindingId::TimeoutNotApplied, Some(30_000)).frameworks[0]
                .code
                .contains("\"timeout\": 30}")
        );
    }

    /// Every key and value a fix names is one the reference server's settings take.
    #[test]
    fn every_fix_setting_is_a_real_key_and_value() {
        let base: Scenario = toml::from_str("name = \"x\"").unwrap();
        for id in FindingId::ALL {
            let fix = fix(id, None);
            let set: BTreeMap<String, toml::Value> = fix
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
                .collect();
            let applied = apply(&base, &set).unwrap_or_else(|e| panic!("{id}: {e:#}"));
            let json = serde_json::to_value(&applied).unwrap();
            for (key, value) in &fix.settings {
                let got = key.split('.').try_fold(&json, |v, part| v.get(part));
                assert_eq!(
                    got.and_then(|v| v.as_str()),
                    Some(value.as_str()),
                    "{id}: {key}"
                );
            }
        }
        assert!(fix(FindingId::LongWriter, None).settings.is_empty());
        assert!(fix(FindingId::CheckpointStarvation, None)
            .settings
            .is_empty());
        assert!(fix(FindingId::NotALock, None).settings.is_empty());
    }

    #[test]
    fn every_lock_cause_has_a_reproduction_that_loads_and_takes_its_fix() {
        assert!(reproduction(FindingId::NotALock).is_none());
        for id in FindingId::ALL.into_iter().filter(|id| id.is_lock_problem()) {
            let r = reproduction(id).unwrap_or_else(|| panic!("{id}: no reproduction"));
            assert_eq!(r.file_name, format!("doctor-{id}.toml"));
            assert!(r.toml.starts_with("# Reproduces "), "{id}");
            assert!(
                r.toml
                    .contains(&format!("#   lockbench run {}\n", r.file_name)),
                "{id}"
            );
            let (_dir, path, scenario) = load(&r);
            assert_eq!(scenario.name, format!("doctor-{id}"));
            assert!(scenario.target.is_none(), "{id}: the reference server");
            assert!(!r.fixed_sets.is_empty(), "{id}");

            let mut sets = BTreeMap::new();
            for (key, value) in &r.fixed_sets {
                let (k, v) = parse_set(&format!("{key}={value}")).unwrap();
                assert_eq!(&k, key);
                // The value is TOML, never the fallback to a plain string.
                let direct: toml::Table = toml::from_str(&format!("v = {value}")).unwrap();
                assert_eq!(Some(&v), direct.get("v"), "{id}: {key}");
                sets.insert(k, v);
            }
            let fixed = Scenario::load_with(&path, &sets)
                .unwrap_or_else(|e| panic!("{id} with {sets:?}: {e:#}"));
            assert_ne!(fixed, scenario, "{id}: the fix changes nothing");
            apply(&scenario, &sets).unwrap_or_else(|e| panic!("{id}: {e:#}"));

            // Where the fix is a setting, the reproduction's fixed sets include it.
            for (key, value) in &fix(id, None).settings {
                assert_eq!(
                    sets.get(key),
                    Some(&toml::Value::String(value.clone())),
                    "{id}: {key}"
                );
            }
        }
    }

    #[test]
    fn set_args_are_quoted_only_when_a_shell_needs_it() {
        assert_eq!(
            set_arg("server.storage.tx_mode", "\"immediate\""),
            "--set server.storage.tx_mode=immediate"
        );
        assert_eq!(set_arg("faults", "[]"), "--set 'faults=[]'");
        let r = reproduction(FindingId::LongWriter).unwrap();
        assert!(r
            .toml
            .contains("--set 'faults=[{ kind = \"external-lock\", at = \"3s\", hold = \"1s\" }]'"));
    }

    /// fixes.toml has a table for every finding, a reproduction exactly where a scenario file
    /// is, and every placeholder of its texts is filled whatever the timeout.
    #[test]
    fn every_finding_has_an_entry_and_no_placeholder_is_left() {
        for id in FindingId::ALL {
            let entry = entries()
                .get(&id)
                .unwrap_or_else(|| panic!("fixes.toml: no [{id}]"));
            assert_eq!(
                entry.reproduction.is_some(),
                SCENARIOS.iter().any(|(of, ..)| *of == id),
                "{id}: [{id}.reproduction] and scenarios/doctor-{id}.toml go together"
            );
        }
        // A known placeholder left, or one misspelt: `{timeout_ms}`, `{timout_ms}`.
        let placeholder = regex::Regex::new(r"\{[a-z_]+\}").unwrap();
        for id in FindingId::ALL {
            for timeout in [None, Some(0), Some(2_500), Some(30_000)] {
                let fix = fix(id, timeout);
                let mut texts = vec![&fix.summary];
                for f in &fix.frameworks {
                    texts.extend([&f.framework, &f.code, &f.note]);
                }
                let repro = reproduction(id).map(|r| r.toml).unwrap_or_default();
                texts.push(&repro);
                for text in texts {
                    for name in PLACEHOLDERS {
                        assert!(!text.contains(name), "{id}: {name} left in {text}");
                    }
                    assert!(!placeholder.is_match(text), "{id}: {text}");
                }
            }
        }
        let long = |timeout| fix(FindingId::LongWriter, timeout).summary;
        assert!(long(Some(2_000)).contains("longer than the 2000 ms busy timeout."));
        assert!(long(None).contains("longer than the busy timeout."));
        assert!(fix(FindingId::DeferredUpgrade, Some(2_500)).frameworks[2]
            .code
            .ends_with("timeout: 2500"));
    }
}
