//! The fix for each cause `lockbench doctor` finds, as data: what to change in plain words,
//! the reference server's `--set` keys that apply it, the same change in Django, SQLAlchemy,
//! Rails 8 and Go's database/sql, and a small scenario that reproduces the cause on the
//! reference server, with the `--set` pairs that apply the fix to it. Texts and TOML only;
//! runs nothing.

use std::collections::BTreeMap;

use crate::report::diagnosis::{FindingId, Fix, FrameworkFix};

/// The busy timeout the framework snippets use when the app's own is not known: the default
/// of Python's sqlite3 (5 s), mattn/go-sqlite3 and Rails' generated database.yml.
const DEFAULT_TIMEOUT_MS: u64 = 5000;

const SQLITE_TRANSACTION: &str = "https://www.sqlite.org/lang_transaction.html";
const SQLITE_WAL: &str = "https://www.sqlite.org/wal.html";
const SQLITE_WAL_SIZE: &str =
    "https://www.sqlite.org/wal.html#avoiding_excessively_large_wal_files";
const SQLITE_BACKUP: &str = "https://www.sqlite.org/backup.html";
const DJANGO_SQLITE: &str =
    "https://docs.djangoproject.com/en/5.2/ref/databases/#sqlite-transaction-behavior";
const SQLALCHEMY_PYSQLITE: &str = "https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl";
const MATTN_DSN: &str = "https://github.com/mattn/go-sqlite3#connection-string";
const MODERNC_DSN: &str = "https://pkg.go.dev/modernc.org/sqlite#Driver.Open";

/// The fix for one cause. `busy_timeout_ms` is the busy timeout the app believes it set, when
/// doctor knows it: the snippets keep it (a fix should not change a setting it is not about),
/// else they use 5 s. `scenario` and `scenario_fixed` are left for the caller, who writes
/// the reproduction's file.
pub fn fix(id: FindingId, busy_timeout_ms: Option<u64>) -> Fix {
    let ms = busy_timeout_ms
        .filter(|&ms| ms > 0)
        .unwrap_or(DEFAULT_TIMEOUT_MS);
    let (summary, settings, frameworks) = match id {
        FindingId::DeferredUpgrade => deferred_upgrade(ms),
        FindingId::RollbackJournalReaders => rollback_journal_readers(ms),
        FindingId::TimeoutNotApplied => timeout_not_applied(ms),
        FindingId::LongWriter => long_writer(busy_timeout_ms),
        FindingId::CommitOnlyRetry => commit_only_retry(),
        FindingId::CheckpointStarvation => checkpoint_starvation(),
        FindingId::NotALock => not_a_lock(),
    };
    Fix {
        summary,
        settings: settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        frameworks,
        scenario: None,
        scenario_fixed: None,
    }
}

type Parts = (String, Vec<(&'static str, &'static str)>, Vec<FrameworkFix>);

fn fw(framework: &str, code: impl Into<String>, note: impl Into<String>) -> FrameworkFix {
    FrameworkFix {
        framework: framework.to_owned(),
        code: code.into(),
        note: note.into(),
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

fn django_options(ms: u64) -> String {
    format!(
        r#"# settings.py (Django 5.1+)
DATABASES["default"]["OPTIONS"] = {{
    "transaction_mode": "IMMEDIATE",
    "timeout": {secs},
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
}}"#,
        secs = seconds(ms)
    )
}

fn go_dsns(ms: u64) -> String {
    format!(
        r#"// github.com/mattn/go-sqlite3
db, err := sql.Open("sqlite3", "file:app.db?_txlock=immediate&_busy_timeout={ms}&_journal_mode=WAL")
// modernc.org/sqlite
db, err := sql.Open("sqlite", "file:app.db?_txlock=immediate&_pragma=busy_timeout({ms})&_pragma=journal_mode(WAL)")"#
    )
}

fn deferred_upgrade(ms: u64) -> Parts {
    let summary = "Begin every write transaction with BEGIN IMMEDIATE, so that it takes the write \
lock at its start, where the busy timeout waits for it. A transaction that begins deferred, reads, \
then writes must upgrade its read to a write, and SQLite refuses that upgrade at once \
(SQLITE_BUSY or SQLITE_BUSY_SNAPSHOT, without waiting) when another connection is writing or has \
written since the read, whatever the busy timeout."
        .to_owned();
    let frameworks = vec![
        fw(
            "Django",
            django_options(ms),
            format!(
                "transaction_mode (Django 5.1+) makes every atomic() block send BEGIN IMMEDIATE; \
timeout is Python sqlite3's busy timeout in seconds (default 5); init_command runs on every new \
connection. {DJANGO_SQLITE} {SQLITE_TRANSACTION}"
            ),
        ),
        fw(
            "SQLAlchemy",
            format!(
                r#"from sqlalchemy import create_engine, event

engine = create_engine("sqlite:///app.db", connect_args={{"timeout": {secs}}})

@event.listens_for(engine, "connect")
def _connect(dbapi_connection, connection_record):
    # pysqlite stops sending its own BEGIN (and its COMMIT before DDL)
    dbapi_connection.isolation_level = None

@event.listens_for(engine, "begin")
def _begin(conn):
    conn.exec_driver_sql("BEGIN IMMEDIATE")"#,
                secs = seconds(ms)
            ),
            format!(
                "The documented pysqlite recipe, with BEGIN IMMEDIATE where it sends BEGIN. Every \
transaction of this engine then takes the write lock, read-only ones too: give read-only work an \
engine of its own if reads must run side by side. {SQLALCHEMY_PYSQLITE}"
            ),
        ),
        fw(
            "Rails 8",
            format!(
                r#"# config/database.yml: nothing to add for the transaction mode
default: &default
  adapter: sqlite3
  timeout: {ms}"#
            ),
            "Rails 8.0's sqlite3 adapter begins its transactions with BEGIN IMMEDIATE \
(begin_db_transaction, rails/rails#50371); timeout is the busy timeout in milliseconds. Before \
8.0, Rails began them deferred: upgrade. https://github.com/rails/rails/pull/50371",
        ),
        fw(
            "Go database/sql",
            go_dsns(ms),
            format!(
                "_txlock=immediate makes every db.BeginTx send BEGIN IMMEDIATE, on every \
connection the pool opens; read-only transactions too, so run reads without BeginTx or on a second \
*sql.DB. Another way: one writer pool, db.SetMaxOpenConns(1), beside a pool for reads. {MATTN_DSN} \
{MODERNC_DSN}"
            ),
        ),
    ];
    (
        summary,
        vec![("server.storage.tx_mode", "immediate")],
        frameworks,
    )
}

fn rollback_journal_readers(ms: u64) -> Parts {
    let summary = "Switch the database to WAL (PRAGMA journal_mode=WAL): readers then read a \
snapshot while the one writer commits, so reads and writes stop blocking each other. With a \
rollback journal a commit waits for every reader to finish and readers wait for the commit. WAL \
is stored in the database file once set; it needs every process on the same host (not a network \
filesystem)."
        .to_owned();
    let frameworks = vec![
        fw(
            "Django",
            django_options(ms),
            format!(
                "init_command (Django 5.1+) runs on every new connection; before 5.1 run PRAGMA \
journal_mode=WAL once on the file (sqlite3 app.db 'PRAGMA journal_mode=WAL;'), it persists. \
{DJANGO_SQLITE} {SQLITE_WAL}"
            ),
        ),
        fw(
            "SQLAlchemy",
            r#"from sqlalchemy import event

@event.listens_for(engine, "connect")
def _wal(dbapi_connection, connection_record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()"#,
            format!(
                "A connect event runs on every connection the pool opens. synchronous=NORMAL is \
safe in WAL (a power loss can lose the last commits, never corrupt the file). {SQLITE_WAL}"
            ),
        ),
        fw(
            "Rails 8",
            "# Nothing to add: Rails 8's sqlite3 adapter sets journal_mode=WAL and\n\
# synchronous=NORMAL on every connection. Check config/database.yml does not undo it:\n\
#   pragmas:\n\
#     journal_mode: delete   # remove this",
            "The adapter's DEFAULT_PRAGMAS include journal_mode: wal; a pragmas: key in \
database.yml overrides them (rails/rails#50460). https://api.rubyonrails.org/classes/ActiveRecord/ConnectionAdapters/SQLite3Adapter.html",
        ),
        fw(
            "Go database/sql",
            go_dsns(ms),
            format!(
                "_journal_mode=WAL (mattn) or _pragma=journal_mode(WAL) (modernc) runs on every \
connection the pool opens. {MATTN_DSN} {MODERNC_DSN}"
            ),
        ),
    ];
    (
        summary,
        vec![("server.storage.journal_mode", "wal")],
        frameworks,
    )
}

fn timeout_not_applied(ms: u64) -> Parts {
    let summary = format!(
        "Set the busy timeout ({ms} ms) where every pooled connection gets it: a connection \
option or a hook that runs on each new connection. A PRAGMA busy_timeout run once reaches only the \
one connection it ran on; the others keep the driver's default (5 s in Python's sqlite3, \
mattn/go-sqlite3 and rusqlite, none at all in the bare C API) and give up that much sooner."
    );
    let secs = seconds(ms);
    let frameworks = vec![
        fw(
            "Django",
            format!(
                r#"# settings.py: every connection Django opens gets it
DATABASES["default"]["OPTIONS"] = {{"timeout": {secs}}}"#
            ),
            format!(
                "timeout is Python sqlite3's busy timeout in seconds. Not a cursor.execute(\"PRAGMA \
busy_timeout=...\") in a view, a signal or AppConfig.ready(): Django opens a connection per \
thread, and that PRAGMA reaches one of them. {DJANGO_SQLITE}"
            ),
        ),
        fw(
            "SQLAlchemy",
            format!(
                r#"engine = create_engine("sqlite:///app.db", connect_args={{"timeout": {secs}}})

# or, for a PRAGMA, a connect event (runs on every pooled connection):
@event.listens_for(engine, "connect")
def _timeout(dbapi_connection, connection_record):
    dbapi_connection.execute("PRAGMA busy_timeout={ms}")"#
            ),
            "Not a session.execute(text(\"PRAGMA busy_timeout=...\")) at startup: it runs on the \
one pooled connection that served it, and the pool's other connections keep sqlite3's 5 s.",
        ),
        fw(
            "Rails 8",
            format!(
                r#"# config/database.yml
default: &default
  adapter: sqlite3
  timeout: {ms}"#
            ),
            "timeout (milliseconds) is applied to every connection Rails opens; Rails 8 waits with \
the sqlite3 gem's busy_handler_timeout, which releases the GVL (rails/rails#51958). Not \
ActiveRecord::Base.connection.execute(\"PRAGMA busy_timeout=...\") in an initializer: one \
connection of the pool. https://github.com/rails/rails/pull/51958",
        ),
        fw(
            "Go database/sql",
            format!(
                r#"// every connection database/sql opens gets the DSN's parameters:
db, err := sql.Open("sqlite3", "file:app.db?_busy_timeout={ms}")                 // mattn
db, err := sql.Open("sqlite", "file:app.db?_pragma=busy_timeout({ms})")          // modernc
// not: db.Exec("PRAGMA busy_timeout={ms}")  (one pooled connection only)"#
            ),
            format!(
                "db.Exec runs on whichever pooled connection is free and returns it to the pool; \
connections opened later never see the PRAGMA. A DSN parameter applies to each one. {MATTN_DSN} \
{MODERNC_DSN}"
            ),
        ),
    ];
    (
        summary,
        vec![("server.storage.busy_timeout_scope", "every-connection")],
        frameworks,
    )
}

fn long_writer(busy_timeout_ms: Option<u64>) -> Parts {
    let timeout = busy_timeout_ms
        .map(|ms| format!("the {ms} ms busy timeout"))
        .unwrap_or_else(|| "the busy timeout".to_owned());
    let summary = format!(
        "Another writer held the write lock longer than {timeout}. Find it (a migration, a batch \
or import job, a backup on a rollback journal, a long transaction in the app, someone in the \
sqlite3 shell) and make it hold the lock for less: commit per batch of rows, keep file and network \
I/O out of write transactions, copy the database with the online backup API a few pages per step \
or with VACUUM INTO. Raising the busy timeout above the writer's longest hold is only a stop-gap."
    );
    let frameworks = vec![
        fw(
            "Django",
            r#"from django.db import transaction

# a job or a data migration writing many rows: one short transaction per batch
for start in range(0, len(rows), 500):
    with transaction.atomic():
        Model.objects.bulk_create(rows[start:start + 500])"#,
            "Each atomic() block holds the write lock for its batch only; other writers get their \
turn between batches. A data migration runs in one transaction unless the Migration sets \
atomic = False.",
        ),
        fw(
            "SQLAlchemy",
            r#"for start in range(0, len(rows), 500):
    with Session() as session, session.begin():   # commits at the end of the block
        session.add_all(rows[start:start + 500])"#,
            "One transaction per batch instead of one for the whole job.",
        ),
        fw(
            "Rails 8",
            r#"rows.each_slice(500) do |batch|
  ActiveRecord::Base.transaction { Model.insert_all(batch) }
end"#,
            "One transaction per batch instead of one for the whole job.",
        ),
        fw(
            "Go database/sql",
            r#"for start := 0; start < len(rows); start += 500 {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := insert(tx, rows[start:min(start+500, len(rows))]); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
}"#,
            "One transaction per batch instead of one for the whole job.",
        ),
        fw(
            "SQLite (backups)",
            r#"-- a copy taken as a reader, never holding the write lock:
VACUUM INTO '/backups/app-copy.db';
# or Python: src.backup(dst, pages=100, sleep=0.25)"#,
            format!(
                "In WAL a backup is a reader and blocks no writer. With a rollback journal its \
read lock keeps writers from committing: VACUUM INTO holds it for the whole copy, and the sqlite3 \
shell's .backup copies 100 pages per sqlite3_backup_step with no pause between steps; copy a few \
pages per step with a sleep between (sqlite3_backup_step(p, 5) then sqlite3_sleep(250), as \
sqlite.org's example does), or switch to WAL. {SQLITE_BACKUP}"
            ),
        ),
    ];
    (summary, Vec::new(), frameworks)
}

fn commit_only_retry() -> Parts {
    let summary = "Retry the whole unit of work (the function that opens the transaction, reads \
and writes), never COMMIT again after a rollback: once rolled back there is nothing left to \
commit, so the second COMMIT \"succeeds\" and the write is lost while the client is told it was \
saved. Begin write transactions with BEGIN IMMEDIATE too, so that most of these lock errors do not \
happen at all."
        .to_owned();
    let frameworks = vec![
        fw(
            "Django",
            r#"import time
from django.db import OperationalError, transaction

def save_with_retry(work, attempts=3):
    for attempt in range(attempts):
        try:
            with transaction.atomic():   # the retry wraps the whole block
                return work()            # every read and write of the unit of work
        except OperationalError as e:
            if "locked" not in str(e) or attempt == attempts - 1:
                raise
            time.sleep(0.01)"#,
            format!(
                "Retry around the whole transaction.atomic() block, never inside it (with \
ATOMIC_REQUESTS the block is the whole view). With transaction_mode IMMEDIATE (Django 5.1+) the \
retry is rarely needed. {DJANGO_SQLITE}"
            ),
        ),
        fw(
            "SQLAlchemy",
            r#"import time
from sqlalchemy.exc import OperationalError

def with_retry(work, attempts=3):
    for attempt in range(attempts):
        try:
            with Session() as session, session.begin():   # commits on leaving the block
                return work(session)                       # reads and writes, from scratch
        except OperationalError as e:
            if "locked" not in str(e.orig) or attempt == attempts - 1:
                raise
            time.sleep(0.01)"#,
            "Wrap the function that opens the session; never session.rollback() followed by \
session.commit() again: after the rollback the session has nothing left to commit.",
        ),
        fw(
            "Rails 8",
            r#"def with_retry(attempts: 3)
  tries = 0
  begin
    ActiveRecord::Base.transaction { yield }   # the whole block runs again
  rescue ActiveRecord::StatementInvalid => e
    raise unless e.cause.is_a?(SQLite3::BusyException) && (tries += 1) < attempts
    sleep 0.01
    retry
  end
end"#,
            "Retry the whole transaction do ... end block, never a save or a commit alone.",
        ),
        fw(
            "Go database/sql",
            r#"func withRetry(ctx context.Context, db *sql.DB, attempts int, work func(*sql.Tx) error) (err error) {
	for i := 0; i < attempts; i++ {
		if err = once(ctx, db, work); err == nil || !isBusy(err) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

// once runs the unit of work from BeginTx to Commit; a retry runs all of it again.
func once(ctx context.Context, db *sql.DB, work func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := work(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}"#,
            "isBusy: with mattn, errors.As(err, &e) && e.Code == sqlite3.ErrBusy (e a \
sqlite3.Error). Re-run the closure that does BeginTx..Commit, never Commit alone.",
        ),
    ];
    (
        summary,
        vec![
            ("server.retry.retry_scope", "unit-of-work"),
            ("server.storage.tx_mode", "immediate"),
        ],
        frameworks,
    )
}

fn checkpoint_starvation() -> Parts {
    let summary = format!(
        "A read transaction that stays open keeps every checkpoint from passing it, so the WAL \
cannot be reset and grows with every commit (and reads slow down as it grows). Close read \
transactions promptly: read result sets to the end or close them, close sessions and cursors at \
the end of each request or job, hold no transaction across a long report, stream or idle time. \
Then run PRAGMA wal_checkpoint(TRUNCATE) when the app is idle, and cap what a reset WAL keeps with \
PRAGMA journal_size_limit. {SQLITE_WAL_SIZE}"
    );
    let frameworks = vec![
        fw(
            "Django",
            r#"# a long export: short queries by primary key instead of one open read
last = 0
while batch := list(Model.objects.filter(pk__gt=last).order_by("pk")[:1000]):
    handle(batch)        # slow work while no read is open
    last = batch[-1].pk"#,
            "A queryset's .iterator() keeps its SELECT, and so its read transaction, open until \
it is exhausted; so does a request under ATOMIC_REQUESTS for as long as the view runs.",
        ),
        fw(
            "SQLAlchemy",
            r#"with Session() as session:      # closed, and its transaction ended, on leaving
    rows = session.scalars(select(Model).where(...)).all()
handle(rows)                     # slow work after the read is over"#,
            "A Session keeps its transaction open from its first query until commit(), \
rollback() or close(): close it at the end of each request (scoped_session.remove()) and do not \
keep one across idle time; yield_per() streams hold the read open until the last row.",
        ),
        fw(
            "Rails 8",
            r#"Model.where(...).find_each(batch_size: 1000) do |record|
  handle(record)
end"#,
            "find_each runs one short query per batch; a long-running transaction do ... end \
block around reads holds the snapshot for its whole length.",
        ),
        fw(
            "Go database/sql",
            r#"rows, err := db.QueryContext(ctx, query)
if err != nil {
	return err
}
defer rows.Close() // an open *sql.Rows holds its read transaction, and the WAL, open
for rows.Next() {
	// scan; keep slow work for after the loop
}
return rows.Err()"#,
            "A *sql.Rows not read to the end and not closed keeps its statement active on its \
connection; so does a read-only *sql.Tx never committed or rolled back.",
        ),
        fw(
            "SQLite",
            r#"PRAGMA wal_checkpoint(TRUNCATE);      -- when idle: copies the WAL back and empties it
PRAGMA journal_size_limit = 67108864; -- a reset WAL is truncated to at most 64 MiB"#,
            format!(
                "A checkpoint cannot pass the oldest open read, however it is run: these help \
once the long readers are gone. {SQLITE_WAL_SIZE}"
            ),
        ),
    ];
    (summary, Vec::new(), frameworks)
}

fn not_a_lock() -> Parts {
    let summary = "These errors are not lock contention, and no busy timeout, retry or journal \
mode fixes them. \"unable to open database file\": the path is wrong (a relative path resolved \
from another working directory), the directory is not writable by the app's user (SQLite creates \
the -journal, -wal and -shm files beside the database), or the process ran out of file \
descriptors (ulimit -n). \"attempt to write a readonly database\": the file or its directory is \
not writable by the app's user, or the connection was opened read-only. \"disk I/O error\": a full \
or failing disk, a network filesystem, or a database file removed or replaced under the running app."
        .to_owned();
    let frameworks = vec![fw(
        "Any (shell)",
        r#"ls -ld /srv/app /srv/app/app.db*           # owner and write bits, for the app's user
sudo -u app test -w /srv/app && echo dir-writable
df -h /srv/app                                # a full disk
ulimit -n; ls /proc/<pid>/fd | wc -l          # descriptors in use against the limit"#,
        "Run them as the user the app runs as, on the path the app opens (make it absolute: \
Django's NAME, SQLAlchemy's sqlite:////abs/path.db with four slashes, Rails' database:, Go's DSN). \
https://www.sqlite.org/rescode.html",
    )];
    (summary, Vec::new(), frameworks)
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

/// The reproduction of a lock cause; None for `not-a-lock`, which no load reproduces.
pub fn reproduction(id: FindingId) -> Option<Reproduction> {
    let (file_name, about, body, sets, note): (_, _, _, Vec<(&str, &str)>, _) = match id {
        FindingId::DeferredUpgrade => (
            "doctor-deferred-upgrade.toml",
            "deferred-upgrade: WAL, transactions begun DEFERRED, 16 kiosks whose registrations \
read then write while the processor commits a batch; the upgrades from read to write are refused \
at once (SQLITE_BUSY_SNAPSHOT), with no retry to hide them.",
            DEFERRED_UPGRADE,
            vec![("server.storage.tx_mode", "\"immediate\"")],
            "With the fix every write transaction begins IMMEDIATE and waits its turn: no lock \
errors.",
        ),
        FindingId::RollbackJournalReaders => (
            "doctor-rollback-journal-readers.toml",
            "rollback-journal-readers: the incident's stack at a small scale: a rollback journal, \
BEGIN just before the first write (Python's sqlite3), a 5 s busy timeout, 200 dashboard pollers \
and 10 kiosks while the processor commits at every step on a slow disk (20 ms per sync): readers \
and writers wait for each other past the 5 s.",
            ROLLBACK_JOURNAL_READERS,
            vec![("server.storage.journal_mode", "\"wal\"")],
            "With the fix (WAL) readers no longer wait for the writer nor it for them.",
        ),
        FindingId::TimeoutNotApplied => (
            "doctor-timeout-not-applied.toml",
            "timeout-not-applied: the app sets a 30 s busy timeout with a PRAGMA run once \
(busy_timeout_scope = \"first-connection\"), so all but the first of each worker's 8 pooled \
connections keep the driver's 5 s; while another process holds the write lock for 12 s, the \
requests on those connections fail after waiting 5 s, far short of the 30 s the app believes it \
set.",
            TIMEOUT_NOT_APPLIED,
            vec![("server.storage.busy_timeout_scope", "\"every-connection\"")],
            "With the fix every connection waits up to 30 s, past the 12 s hold: no lock errors.",
        ),
        FindingId::LongWriter => (
            "doctor-long-writer.toml",
            "long-writer: another process (a backup, a migration, someone in the sqlite3 shell) \
holds the write lock for 6 s, longer than the app's 2 s busy timeout: writes that wait for it \
fail after waiting the whole timeout.",
            LONG_WRITER,
            vec![(
                "faults",
                "[{ kind = \"external-lock\", at = \"3s\", hold = \"1s\" }]",
            )],
            "The fix is outside the app's settings: the fixed command replaces the fault with \
one that holds the lock for 1s, under the timeout, as a writer committing per batch would. A \
busy_timeout_ms above the hold hides the cause too, as a stop-gap only.",
        ),
        FindingId::CommitOnlyRetry => (
            "doctor-commit-only-retry.toml",
            "commit-only-retry: transactions begun DEFERRED, and a retry helper that rolls back \
and issues COMMIT again (retry_scope = \"commit-only\"), as the incident's db_commit_with_retry \
did: each refused upgrade is rolled back, the second COMMIT has nothing to commit, and the write \
is answered as saved and lost (the audit counts it).",
            COMMIT_ONLY_RETRY,
            vec![
                ("server.retry.retry_scope", "\"unit-of-work\""),
                ("server.storage.tx_mode", "\"immediate\""),
            ],
            "With the fix the whole unit of work is retried and begins IMMEDIATE: no lost writes.",
        ),
        FindingId::CheckpointStarvation => (
            "doctor-checkpoint-starvation.toml",
            "checkpoint-starvation: another process keeps one read transaction open for 40 s \
while the processor commits a 240-photo batch: no checkpoint can pass it, so the WAL grows far \
past the 1,000-page autocheckpoint. No gate measures the WAL: the report's time line shows its \
size (wal_bytes in report.json).",
            CHECKPOINT_STARVATION,
            vec![("faults", "[]")],
            "The fix is outside the app's settings (close the long read): the fixed command \
removes the long reader, and the WAL stays under the autocheckpoint size.",
        ),
        FindingId::NotALock => return None,
    };
    let fixed_sets: Vec<(String, String)> = sets
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let fixed_args: Vec<String> = fixed_sets.iter().map(|(k, v)| set_arg(k, v)).collect();
    let mut header = String::new();
    for line in wrap(&format!("Reproduces {about}"), 94) {
        header.push_str(&format!("# {line}\n"));
    }
    for line in wrap(note, 94) {
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

const DEFERRED_UPGRADE: &str = r#"name = "doctor-deferred-upgrade"
description = "deferred-upgrade: WAL, BEGIN DEFERRED, kiosks that read then write during an 80-photo batch, no retries"

[server]
workers = 2

[server.storage]
journal_mode = "wal"
synchronous = "normal"
tx_mode = "deferred"
busy_timeout_ms = 5000
busy_timeout_scope = "every-connection"
pool_size = 4

[server.retry]
retry = "none"
read_retry = "none"

[server.processor]
upload_latency_ms = 20

[batch]
count = 80
people = 8
size = "320x240"
seed = 5

[users]
pollers = 6
poll_interval = "200ms"
admins = 0
kiosks = 16
kiosk_interval = "10ms"

[duration]
tail = "1s"
max = "60s"

[gates]
max_lock_errors = 0
max_lost_writes = 0
"#;

const ROLLBACK_JOURNAL_READERS: &str = r#"name = "doctor-rollback-journal-readers"
description = "rollback-journal-readers: rollback journal, BEGIN before the first write, 5 s busy timeout, 200 pollers and 10 kiosks during a 60-photo batch on a 20 ms-per-sync disk"

[server]
workers = 4
threads = 4

[server.storage]
journal_mode = "delete"
synchronous = "full"
tx_mode = "lazy"
busy_timeout_ms = 5000
busy_timeout_scope = "every-connection"
pool_size = 10
pool_order = "fifo"
sync_delay_ms = 20

[server.retry]
retry = "none"
read_retry = "none"

[server.processor]
commit_granularity = "per-step"
upload_latency_ms = 50

[batch]
count = 60
people = 6
size = "1024x768"
seed = 7

[users]
pollers = 200
poll_interval = "5s"
admins = 3
admin_interval = "10s"
kiosks = 10
kiosk_interval = "1s"

[duration]
tail = "5s"
max = "90s"

[gates]
max_lock_errors = 0
max_lost_writes = 0
"#;

const TIMEOUT_NOT_APPLIED: &str = r#"name = "doctor-timeout-not-applied"
description = "timeout-not-applied: a 30 s busy timeout set by a PRAGMA run once (first connection only), pools of 8, BEGIN IMMEDIATE, and a write lock held 12 s by another process"

[server]
workers = 2

[server.storage]
journal_mode = "wal"
synchronous = "normal"
tx_mode = "immediate"
busy_timeout_ms = 30000
busy_timeout_scope = "first-connection"
pool_size = 8
pool_order = "fifo"

[server.retry]
retry = "none"
read_retry = "none"

[server.processor]
upload_latency_ms = 20
# The processor waits out the lock (as a background job would); the requests show the cause.
lock_wait_ms = 60000

[batch]
count = 60
people = 6
size = "320x240"
seed = 5

[users]
pollers = 6
poll_interval = "500ms"
admins = 0
kiosks = 16
kiosk_interval = "100ms"

[duration]
tail = "2s"
max = "60s"

[gates]
max_lock_errors = 0
max_lost_writes = 0

[[faults]]
kind = "external-lock"
at = "3s"
hold = "12s"
"#;

const LONG_WRITER: &str = r#"name = "doctor-long-writer"
description = "long-writer: another process holds the write lock 6 s against a 2 s busy timeout on every connection, BEGIN IMMEDIATE, WAL"

[server]
workers = 2

[server.storage]
journal_mode = "wal"
synchronous = "normal"
tx_mode = "immediate"
busy_timeout_ms = 2000
busy_timeout_scope = "every-connection"
pool_size = 4

[server.retry]
retry = "none"
read_retry = "none"

[server.processor]
upload_latency_ms = 20
# The processor waits out the lock (as a background job would); the requests show the cause.
lock_wait_ms = 60000

[batch]
count = 60
people = 6
size = "320x240"
seed = 5

[users]
pollers = 6
poll_interval = "500ms"
admins = 0
kiosks = 8
kiosk_interval = "100ms"

[duration]
tail = "2s"
max = "60s"

[gates]
max_lock_errors = 0
max_lost_writes = 0

[[faults]]
kind = "external-lock"
at = "3s"
hold = "6s"
"#;

const COMMIT_ONLY_RETRY: &str = r#"name = "doctor-commit-only-retry"
description = "commit-only-retry: WAL, BEGIN DEFERRED, kiosks that read then write during an 80-photo batch, retries that roll back and COMMIT again"

[server]
workers = 2

[server.storage]
journal_mode = "wal"
synchronous = "normal"
tx_mode = "deferred"
busy_timeout_ms = 5000
busy_timeout_scope = "every-connection"
pool_size = 4

[server.retry]
retry = "fixed"
retry_attempts = 3
retry_delay_ms = 5
retry_scope = "commit-only"
read_retry = "none"

[server.processor]
upload_latency_ms = 20

[batch]
count = 80
people = 8
size = "320x240"
seed = 5

[users]
pollers = 6
poll_interval = "200ms"
admins = 0
kiosks = 16
kiosk_interval = "10ms"

[duration]
tail = "1s"
max = "60s"

[gates]
max_lock_errors = 0
max_lost_writes = 0
"#;

const CHECKPOINT_STARVATION: &str = r#"name = "doctor-checkpoint-starvation"
description = "checkpoint-starvation: a read transaction held open 40 s by another process while a 240-photo batch commits in WAL"

[server]
workers = 2

[server.storage]
journal_mode = "wal"
synchronous = "normal"
tx_mode = "immediate"
busy_timeout_ms = 5000
busy_timeout_scope = "every-connection"
pool_size = 4
wal_autocheckpoint = 1000

[server.retry]
retry = "fixed"
retry_attempts = 5
retry_delay_ms = 5
retry_scope = "unit-of-work"
read_retry = "none"

[server.processor]
upload_latency_ms = 20

[batch]
count = 240
people = 16
size = "320x240"
seed = 5

[users]
pollers = 6
poll_interval = "200ms"
admins = 0
kiosks = 1
kiosk_interval = "100ms"

[duration]
tail = "1s"
max = "60s"

[gates]
max_lock_errors = 0
max_lost_writes = 0

[[faults]]
kind = "long-reader"
at = "0s"
hold = "40s"
"#;

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
}
