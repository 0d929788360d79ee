//! Changing a scenario by dotted keys (`server.storage.journal_mode = "wal"`): `--set` on
//! the command line, a sweep's rows, a breakpoint's steps. Each override is laid over the
//! scenario's TOML form and the result parsed and checked as a file is, so an override can
//! never get past a check a file would meet.

use std::collections::BTreeMap;

use anyhow::Context;

use super::Scenario;

/// Sets one dotted key (`server.storage.journal_mode`) of a scenario's TOML form.
pub fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) -> anyhow::Result<()> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().filter(|l| !l.is_empty()).context("empty key")?;
    let mut current = table;
    let mut parts = parts.into_iter();
    while let Some(part) = parts.next() {
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        // An array of tables (`[[users]]`, `[[users.requests]]`): the next part names an
        // element by its `name`.
        let entry = match entry {
            toml::Value::Array(items) => {
                let name = parts.next().with_context(|| {
                    format!("{key}: {part} is a list; name one of its elements ({part}.NAME.KEY)")
                })?;
                let names: Vec<String> = items
                    .iter()
                    .filter_map(|i| i.get("name").and_then(|n| n.as_str()).map(str::to_owned))
                    .collect();
                items
                    .iter_mut()
                    .find(|i| i.get("name").and_then(|n| n.as_str()) == Some(name))
                    .with_context(|| {
                        format!(
                            "{key}: {part} has no element named {name:?} (it has {})",
                            names.join(", ")
                        )
                    })?
            }
            other => other,
        };
        current = entry
            .as_table_mut()
            .with_context(|| format!("{key}: {part} is not a table"))?;
    }
    current.insert(last.to_owned(), value);
    Ok(())
}

/// The scenario with `overrides` applied; errors name the key.
pub fn apply(
    base: &Scenario,
    overrides: &BTreeMap<String, toml::Value>,
) -> anyhow::Result<Scenario> {
    let mut table = toml::Table::try_from(base).context("scenario to TOML")?;
    for (key, value) in overrides {
        set_key(&mut table, key, value.clone())?;
    }
    // Parsed from the value itself, not from text written for the purpose: an error names
    // the keys set, never a line of a file the user has never seen.
    let mut scenario: Scenario = toml::Value::Table(table).try_into().map_err(|e| {
        let keys: Vec<&str> = overrides.keys().map(String::as_str).collect();
        anyhow::anyhow!("with {}: {e}", keys.join(", "))
    })?;
    // The base names what its file named; the overrides name theirs (the table above holds
    // every setting, named or not).
    scenario.named_settings = base.named_settings.clone();
    let mut set = toml::Table::new();
    for (key, value) in overrides {
        set_key(&mut set, key, value.clone())?;
    }
    scenario.named_settings.extend(super::named_settings(&set));
    scenario.validate()?;
    Ok(scenario)
}

/// Parses `key=value`: the value as TOML (a number, a boolean, a quoted string, an array),
/// or as a string when it is not valid TOML. Hexadecimal, octal and binary integers
/// (`0x0`, `0o7`, `0b1`) are read as strings: nobody sets a scenario key that way, and
/// `batch.size=0x0` is a size, not the number 0.
pub fn parse_set(text: &str) -> anyhow::Result<(String, toml::Value)> {
    let (key, value) = text
        .split_once('=')
        .with_context(|| format!("--set {text:?}: expected key=value"))?;
    let (key, value) = (key.trim(), value.trim());
    if key.is_empty() {
        anyhow::bail!("--set {text:?}: the key before = is empty");
    }
    let radix = ["0x", "0o", "0b", "+0x", "-0x"]
        .iter()
        .any(|p| value.to_ascii_lowercase().starts_with(p));
    let parsed = if radix {
        None
    } else {
        toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|t| t.get("v").cloned())
    };
    let parsed = parsed.unwrap_or_else(|| toml::Value::String(value.to_owned()));
    Ok((key.to_owned(), parsed))
}

/// Every `--set key=value` of a command line, keyed by its dotted key.
pub fn parse_sets(texts: &[String]) -> anyhow::Result<BTreeMap<String, toml::Value>> {
    texts.iter().map(|t| parse_set(t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_checked_like_a_scenario_file() {
        let base: Scenario = toml::from_str("name = \"x\"").unwrap();
        let mut set = BTreeMap::new();
        set.insert(
            "server.storage.journal_mode".to_owned(),
            toml::Value::String("wal".into()),
        );
        set.insert("users.pollers".to_owned(), toml::Value::Integer(7));
        let s = apply(&base, &set).unwrap();
        assert_eq!(
            s.server.storage.journal_mode,
            lockbench_server::storage::JournalMode::Wal
        );
        assert_eq!(s.users.pollers, 7);
        let mut bad = BTreeMap::new();
        bad.insert(
            "server.storage.journal_mood".to_owned(),
            toml::Value::String("wal".into()),
        );
        assert!(apply(&base, &bad)
            .unwrap_err()
            .to_string()
            .contains("journal_mood"));
        assert_eq!(
            parse_set("users.pollers=5").unwrap().1,
            toml::Value::Integer(5)
        );
        assert_eq!(
            parse_set("batch.size=320x240").unwrap().1,
            toml::Value::String("320x240".into())
        );
        // A size that TOML would read as the hexadecimal integer 0.
        assert_eq!(
            parse_set("batch.size=0x0").unwrap().1,
            toml::Value::String("0x0".into())
        );
        let err = apply(
            &base,
            &BTreeMap::from([(
                "batch.size".to_owned(),
                parse_set("batch.size=0x0").unwrap().1,
            )]),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("batch.size"), "{err:#}");
        // An override error names the key, not a line of text the user never wrote.
        let err = format!("{:#}", apply(&base, &bad).unwrap_err());
        assert!(!err.contains("line"), "{err}");
    }
}
