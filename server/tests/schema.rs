//! One schema: the SQLite migrations and the PostgreSQL DDL describe the same tables, and
//! "now" is written one way and translated for PostgreSQL.
//!
//! The comparison creates both for real (a SQLite file through `Store::open`, a fresh
//! PostgreSQL schema through `postgres::create_schema`) and compares them table by table:
//! column names, kinds, nullability, whether a column has a default, the primary key, and
//! the indexes created by name. It needs a server: LOCKBENCH_TEST_PG (for example
//! postgres://postgres@127.0.0.1:5432/test); without it the test says it was skipped, and
//! with LOCKBENCH_REQUIRE_PG=1 a missing server fails it.

use std::collections::{BTreeMap, BTreeSet};

use lockbench_server::now_sql;
use lockbench_server::storage::postgres::{self, ReadOnlyPg, PG_NOW, SCHEMA_SQL};
use lockbench_server::storage::{
    Driver, Isolation, ReadOnlyDb, RetryPlan, StorageConfig, Store, Value, NOW_SQL,
};

/// The tables PostgreSQL has and SQLite keeps elsewhere: the schema version
/// (`PRAGMA user_version` on SQLite).
const POSTGRES_ONLY: &[&str] = &["lockbench_schema"];

/// The PostgreSQL URL of the tests, or None, with a line saying the test was skipped.
fn pg_url(test: &str) -> Option<String> {
    use std::io::Write;
    match std::env::var("LOCKBENCH_TEST_PG") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let line = format!(
                "PostgreSQL tests skipped ({test}): set LOCKBENCH_TEST_PG, for example postgres://postgres@127.0.0.1:5432/test"
            );
            assert!(
                std::env::var("LOCKBENCH_REQUIRE_PG").is_err(),
                "{line} (LOCKBENCH_REQUIRE_PG is set: they must run here)"
            );
            let _ = writeln!(std::io::stderr(), "{line}");
            None
        }
    }
}

/// Drops the test's schema however the test ends.
struct DropSchema {
    url: String,
    schema: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        let _ = postgres::drop_schema(&self.url, &self.schema);
    }
}

/// A column's kind, where the two dialects can be compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Text,
    Other,
}

impl Kind {
    fn of(declared: &str) -> Kind {
        let t = declared.to_ascii_lowercase();
        if t.contains("int") {
            Kind::Integer
        } else if t.contains("text") || t.contains("char") {
            Kind::Text
        } else {
            Kind::Other
        }
    }
}

/// One column as its database describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    name: String,
    kind: Kind,
    not_null: bool,
    has_default: bool,
    primary_key: bool,
}

/// Tables (by name) and their columns in declaration order, and the indexes created by name.
#[derive(Debug, Clone, Default)]
struct Schema {
    tables: BTreeMap<String, Vec<Column>>,
    indexes: BTreeSet<String>,
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The schema of a SQLite file, from `pragma_table_info` and `sqlite_schema`.
fn sqlite_schema(db: &ReadOnlyDb) -> Schema {
    let mut schema = Schema::default();
    let tables = db
        .query(
            "tables",
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            &[],
        )
        .unwrap();
    for table in tables.iter().map(|r| text(&r[0])) {
        let columns = db
            .query(
                "columns",
                "SELECT name, type, \"notnull\", dflt_value IS NOT NULL, pk FROM pragma_table_info(?1) ORDER BY cid",
                &[Value::from(table.as_str())],
            )
            .unwrap();
        let columns = columns
            .iter()
            .map(|r| {
                let primary_key = r[4].as_i64() != Some(0);
                Column {
                    name: text(&r[0]),
                    kind: Kind::of(&text(&r[1])),
                    // An INTEGER PRIMARY KEY is the rowid: never NULL, whatever table_info says.
                    not_null: r[2].as_i64() == Some(1) || primary_key,
                    has_default: r[3].as_i64() == Some(1),
                    primary_key,
                }
            })
            .collect();
        schema.tables.insert(table, columns);
    }
    let indexes = db
        .query(
            "indexes",
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL",
            &[],
        )
        .unwrap();
    schema.indexes = indexes.iter().map(|r| text(&r[0])).collect();
    schema
}

/// The schema of a PostgreSQL schema, from `information_schema` and `pg_indexes`.
fn postgres_schema(db: &mut ReadOnlyPg, name: &str) -> Schema {
    let mut schema = Schema::default();
    let columns = db
        .query(
            "columns",
            "SELECT c.table_name::text, c.column_name::text, c.data_type::text, c.is_nullable::text, \
                    (c.column_default IS NOT NULL)::int, \
                    (EXISTS (SELECT 1 FROM information_schema.table_constraints t \
                             JOIN information_schema.key_column_usage k \
                               ON k.constraint_name = t.constraint_name AND k.table_schema = t.table_schema \
                             WHERE t.table_schema = c.table_schema AND t.table_name = c.table_name \
                               AND t.constraint_type = 'PRIMARY KEY' AND k.column_name = c.column_name))::int \
             FROM information_schema.columns c WHERE c.table_schema = ?1 \
             ORDER BY c.table_name, c.ordinal_position",
            &[Value::from(name)],
        )
        .unwrap();
    for r in &columns {
        schema.tables.entry(text(&r[0])).or_default().push(Column {
            name: text(&r[1]),
            kind: Kind::of(&text(&r[2])),
            not_null: text(&r[3]) == "NO",
            has_default: r[4].as_i64() == Some(1),
            primary_key: r[5].as_i64() == Some(1),
        });
    }
    let indexes = db
        .query(
            "indexes",
            "SELECT i.indexname::text FROM pg_indexes i WHERE i.schemaname = ?1 \
             AND NOT EXISTS (SELECT 1 FROM information_schema.table_constraints t \
                             WHERE t.table_schema = i.schemaname AND t.constraint_name = i.indexname)",
            &[Value::from(name)],
        )
        .unwrap();
    schema.indexes = indexes.iter().map(|r| text(&r[0])).collect();
    schema
}

/// Every way the two schemas differ, one line each, naming the table, column or index.
fn differences(sqlite: &Schema, pg: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = sqlite.tables.keys().chain(pg.tables.keys()).collect();
    for table in names {
        match (sqlite.tables.get(table), pg.tables.get(table)) {
            (Some(_), None) => out.push(format!("table {table}: in SQLite only")),
            (None, Some(_)) if POSTGRES_ONLY.contains(&table.as_str()) => {}
            (None, Some(_)) => out.push(format!("table {table}: in PostgreSQL only")),
            (Some(a), Some(b)) => out.extend(column_differences(table, a, b)),
            (None, None) => unreachable!(),
        }
    }
    for index in sqlite.indexes.symmetric_difference(&pg.indexes) {
        let side = if sqlite.indexes.contains(index) {
            "SQLite"
        } else {
            "PostgreSQL"
        };
        out.push(format!("index {index}: in {side} only"));
    }
    out
}

fn column_differences(table: &str, sqlite: &[Column], pg: &[Column]) -> Vec<String> {
    let mut out = Vec::new();
    let order = |cols: &[Column]| cols.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    for a in sqlite {
        let Some(b) = pg.iter().find(|b| b.name == a.name) else {
            out.push(format!("{table}.{}: in SQLite only", a.name));
            continue;
        };
        let col = format!("{table}.{}", a.name);
        if a.kind != b.kind {
            out.push(format!(
                "{col}: {:?} in SQLite, {:?} in PostgreSQL",
                a.kind, b.kind
            ));
        }
        let null = |n: bool| if n { "NOT NULL" } else { "nullable" };
        if a.not_null != b.not_null {
            out.push(format!(
                "{col}: {} in SQLite, {} in PostgreSQL",
                null(a.not_null),
                null(b.not_null)
            ));
        }
        let default = |d: bool| if d { "a default" } else { "no default" };
        if a.has_default != b.has_default {
            out.push(format!(
                "{col}: {} in SQLite, {} in PostgreSQL",
                default(a.has_default),
                default(b.has_default)
            ));
        }
        if a.primary_key != b.primary_key {
            out.push(format!("{col}: the primary key in one database only"));
        }
    }
    for b in pg
        .iter()
        .filter(|b| !sqlite.iter().any(|a| a.name == b.name))
    {
        out.push(format!("{table}.{}: in PostgreSQL only", b.name));
    }
    if out.is_empty() && order(sqlite) != order(pg) {
        out.push(format!(
            "{table}: columns in another order ({:?} in SQLite, {:?} in PostgreSQL)",
            order(sqlite),
            order(pg)
        ));
    }
    out
}

#[test]
fn the_sqlite_migrations_and_the_postgres_ddl_describe_the_same_tables() {
    let Some(url) = pg_url("the_sqlite_migrations_and_the_postgres_ddl_describe_the_same_tables")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.db");
    drop(Store::open(&file, &StorageConfig::default(), &RetryPlan::default()).unwrap());
    let sqlite = sqlite_schema(&ReadOnlyDb::open(&file).unwrap());

    let name = postgres::unique_schema("schema_test");
    let _drop = DropSchema {
        url: url.clone(),
        schema: name.clone(),
    };
    postgres::create_schema(&url, &name).unwrap();
    let pg = postgres_schema(&mut ReadOnlyPg::open(&url, &name).unwrap(), &name);

    assert_eq!(sqlite.tables.len(), 5, "{:?}", sqlite.tables.keys());
    // Both sides were read, kinds and keys included.
    for schema in [&sqlite, &pg] {
        let batches = &schema.tables["batches"];
        assert_eq!(
            batches[0],
            Column {
                name: "id".into(),
                kind: Kind::Integer,
                not_null: true,
                has_default: false,
                primary_key: true,
            }
        );
        let status = batches.iter().find(|c| c.name == "status").unwrap();
        assert_eq!(
            (status.kind, status.not_null, status.has_default),
            (Kind::Text, true, true)
        );
    }
    assert!(
        sqlite.indexes.contains("batches_status"),
        "{:?}",
        sqlite.indexes
    );
    let found = differences(&sqlite, &pg);
    assert!(
        found.is_empty(),
        "the schemas differ:\n{}",
        found.join("\n")
    );

    // A difference is named: a column gone, a column that became nullable, an index gone.
    let mut changed = sqlite.clone();
    let batches = changed.tables.get_mut("batches").unwrap();
    batches.retain(|c| c.name != "updated_at");
    batches
        .iter_mut()
        .find(|c| c.name == "status")
        .unwrap()
        .not_null = false;
    changed.indexes.remove("photos_person");
    assert_eq!(
        differences(&changed, &pg),
        [
            "batches.status: nullable in SQLite, NOT NULL in PostgreSQL",
            "batches.updated_at: in PostgreSQL only",
            "index photos_person: in PostgreSQL only",
        ]
    );
}

#[test]
fn now_is_written_once_and_translated_for_postgres_as_that_one_spelling() {
    assert_eq!(now_sql!(), NOW_SQL);
    let sql = concat!(
        "UPDATE batches SET updated_at = ",
        now_sql!(),
        ", finished_at = ",
        now_sql!(),
        " WHERE id = ?1"
    );
    assert_eq!(
        postgres::translate(sql, Isolation::default()),
        format!("UPDATE batches SET updated_at = {PG_NOW}, finished_at = {PG_NOW} WHERE id = $1")
    );
    // Another spelling is not "now" as the app writes it: it is left as it is.
    let other = "SELECT strftime('%Y','now')";
    assert_eq!(postgres::translate(other, Isolation::default()), other);
    // The PostgreSQL DDL uses the one spelling too, and none is left once translated.
    assert!(SCHEMA_SQL.contains(NOW_SQL));
    assert!(!postgres::translate(SCHEMA_SQL, Isolation::default()).contains("strftime"));
}

/// The time a batch row gets from "now" on a store of `storage`.
fn started_at(storage: &StorageConfig, file: &std::path::Path) -> String {
    let store = Store::open(file, storage, &RetryPlan::default()).unwrap();
    store
        .write("now", |tx| {
            let id = tx.insert(
                concat!(
                    "INSERT INTO batches (source_dir, started_at) VALUES ('now', ",
                    now_sql!(),
                    ")"
                ),
                &[],
            )?;
            let rows = tx.query(
                "SELECT started_at FROM batches WHERE id = ?1",
                &[Value::Int(id)],
            )?;
            Ok(text(&rows[0][0]))
        })
        .unwrap()
}

#[test]
fn now_is_the_same_text_on_both_databases() {
    let Some(url) = pg_url("now_is_the_same_text_on_both_databases") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = postgres::unique_schema("now_test");
    let _drop = DropSchema {
        url: url.clone(),
        schema: name.clone(),
    };
    postgres::create_schema(&url, &name).unwrap();
    let pg = StorageConfig {
        driver: Driver::Postgres,
        database_url: Some(url.clone()),
        schema: Some(name.clone()),
        ..StorageConfig::default()
    };
    let times = [
        started_at(&StorageConfig::default(), &dir.path().join("app.db")),
        started_at(&pg, &dir.path().join("unused.db")),
    ];
    // 2025-01-31T12:00:00.123Z: UTC, milliseconds, the same 24 characters.
    for t in &times {
        let b = t.as_bytes();
        assert_eq!(b.len(), 24, "{t}");
        assert_eq!(
            (b[4], b[7], b[10], b[13], b[16], b[19], b[23]),
            (b'-', b'-', b'T', b':', b':', b'.', b'Z'),
            "{t}"
        );
        assert!(
            t.bytes()
                .enumerate()
                .all(|(i, c)| [4, 7, 10, 13, 16, 19, 23].contains(&i) || c.is_ascii_digit()),
            "{t}"
        );
    }
}
