//! Why a section of a report is absent, as plain text: an external target measures no
//! server-side figure; otherwise the first of the report's notes that names the section,
//! else a plain "not measured".

use crate::report::{LockSource, Report};

/// Why a section is absent: the external target, else the first note that names the
/// section, else a plain "not measured".
pub(super) fn absent_reason(r: &Report, keywords: &[&str]) -> String {
    if r.target.kind == "external" {
        return "not measured: external target".to_owned();
    }
    let note = r.notes.iter().find(|n| {
        let lower = n.to_lowercase();
        keywords.iter().any(|k| contains_word(&lower, k))
    });
    match note {
        Some(note) => format!("not measured: {note}"),
        None => "not measured (the run gave no reason)".to_owned(),
    }
}

/// Whether `haystack` contains `word` with no letter or digit on either side.
fn contains_word(haystack: &str, word: &str) -> bool {
    haystack.match_indices(word).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + word.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

pub(crate) fn audit_absent(r: &Report) -> String {
    absent_reason(r, &["audit", "lost writes"])
}

pub(crate) fn effective_absent(r: &Report) -> String {
    absent_reason(
        r,
        &["/api/settings", "effective settings", "settings_effective"],
    )
}

/// Why a by-code or by-endpoint breakdown is empty.
pub(crate) fn by_map_absent(r: &Report) -> String {
    if r.lock_errors.source == LockSource::ServerCounters {
        "none".to_owned()
    } else {
        absent_reason(r, &["server-side", "server side", "counters"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_names_a_section_only_as_a_whole_word() {
        assert!(contains_word("no wal: journal_mode = delete", "wal"));
        assert!(!contains_word("walked away", "wal"));
        assert!(contains_word("see /api/settings.", "/api/settings"));
    }
}
