//! The one spelling of "now" in the app's SQL: the current time as the app stores it (text,
//! UTC, milliseconds: `2025-01-31T12:00:00.123Z`). Every statement and the schema write it
//! with [`now_sql!`](crate::now_sql) (a literal, so it goes into `concat!`), and the
//! PostgreSQL translation replaces exactly this text (`postgres::translate`). Text only.

/// SQLite's expression for the current time as the app stores it, as a string literal:
/// `concat!("UPDATE batches SET updated_at = ", now_sql!(), " WHERE id = ?1")`.
#[macro_export]
macro_rules! now_sql {
    () => {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    };
}

/// [`now_sql!`](crate::now_sql) as a value, for code that looks for it in a statement.
pub const NOW_SQL: &str = crate::now_sql!();
