//! The facts a report states in words, worked out once as plain (unescaped) text: the
//! verdict's lines (`verdict.rs`), the tables of requests (the load's and lockbench's own),
//! roles, faults and restarts (`tables.rs`), the figures' lines: lock errors, retries, the
//! batch, the audit, the WAL, an external app's database (`figures.rs`), why a section is
//! absent (`absent.rs`), and the requested settings as `key = value` lists, the
//! per-connection settings with the busy timeout that stands out, and the machine
//! (`settings.rs`). The Markdown and HTML renderings lay out and escape the same text;
//! nothing here formats for either. The renderings name everything through this module.

mod absent;
mod figures;
mod settings;
mod tables;
mod verdict;

pub(crate) use absent::{audit_absent, by_map_absent, effective_absent};
pub(crate) use figures::{
    audit_lines, batch_lines, lock_error_origin, processor_failures_line, retry_lines,
    target_database_lines, wal_lines,
};
pub(crate) use settings::{connection_table, machine_lines, settings_sections};
pub(crate) use tables::{
    classes_words, fault_table, load_cpu_line, request_table, restart_line, restart_table,
    role_table, users_line, TextTable, LATENCY_NOTE, ROLE_NOTE, RUNNER_NOTE,
};
pub(crate) use verdict::{
    app_line, gate_value, headline, repeat_tables, run_table, target_words, verdict_word,
};
