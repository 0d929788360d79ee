//! What does one writer's commit cost while N readers read?
//!
//! - `writer_commit_{rusqlite,sqlx}`: one id per journal mode x transaction mode x reader
//!   count (`delete/deferred/readers=4`), each on a fresh temp-file database. One writer (the
//!   bench thread) runs the timed write units while the readers loop over `store.read`; the
//!   readers are paused between samples, so criterion's analysis does not run under their
//!   load. The rusqlite group also holds `bare-rusqlite/wal/{deferred,immediate}/readers=0`:
//!   the same unit on a plain rusqlite connection.
//! - `write_path_overhead`: `lockbench` against `bare-rusqlite` with 1 writer, 0 readers,
//!   WAL, synchronous=normal, BEGIN IMMEDIATE. The ratio of the two is the point (target:
//!   lockbench reaches at least 80% of the bare loop's commits/s), so they share one group
//!   and one run.
//!
//! Criterion measures time only; after each group the lock errors seen per id are printed
//! to stderr (no retries: a unit that hits a lock error fails, and is counted, not re-run).
//!
//! Quick look: `cargo bench -p lockbench-benches --bench commit_contention -- --quick` (about
//! 35 s on 2 idle cores). `--quick` keeps 2 samples per id, so ids with readers are noisy;
//! drop it for 10 samples per id. On a disk, the WAL ids' time per commit is mostly the
//! amortized fsyncs of automatic checkpoints; `TMPDIR=/dev/shm` (tmpfs, where fsync is free)
//! leaves the CPU cost alone, which is what `write_path_overhead` is about.

use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use lockbench_benches::{format_codes, BareFixture, ReaderTally, Readers, Setting, StoreFixture};
use lockbench_server::storage::{Driver, JournalMode, LockCode, TxMode};

const JOURNAL_MODES: [JournalMode; 2] = [JournalMode::Delete, JournalMode::Wal];
const TX_MODES: [TxMode; 2] = [TxMode::Deferred, TxMode::Immediate];
const READERS: [u32; 3] = [0, 4, 16];

/// What one id did besides taking time, printed after its group.
struct Tally {
    name: String,
    units: u64,
    line: String,
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        // `--quick` stops once two samples (n and 2n units) agree within this fraction. At the
        // default 5%, ids with 16 readers stopped after 3 units, since the untimed waits for
        // the readers count towards its 100 ms minimum; at 1% they run to measurement_time.
        .significance_level(0.01)
        // One element is one committed (or failed) write unit: criterion prints commits/s.
        .throughput(Throughput::Elements(1));
}

fn print_tallies(tallies: &[Tally]) {
    for t in tallies {
        eprintln!("{}: lock errors {} (of {} units)", t.name, t.line, t.units);
    }
}

/// Times `iters` write units through the store on a fresh database with `setting.readers`
/// readers running. The database and readers are set up on the id's first call (criterion
/// calls the routine once per sample and skips ids a filter leaves out) and torn down after
/// the id; the readers read only while a sample is being timed.
fn bench_store(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    name: String,
    setting: Setting,
    tallies: &mut Vec<Tally>,
) {
    let mut fixture: Option<(StoreFixture, Readers)> = None;
    let mut units = 0;
    group.bench_function(id, |b| {
        let (fx, readers) = fixture.get_or_insert_with(|| {
            let fx =
                StoreFixture::open(&setting).unwrap_or_else(|e| panic!("opening {setting:?}: {e}"));
            let readers = Readers::start(fx.store(), fx.batch_id(), setting.readers)
                .unwrap_or_else(|e| panic!("starting readers: {e}"));
            (fx, readers)
        });
        b.iter_custom(|iters| {
            // Untimed: wake the readers and wait until each has read once.
            readers.resume();
            let started = Instant::now();
            for _ in 0..iters {
                match fx.write_unit() {
                    // A lock error fails the unit; the store's stats count it by code.
                    Err(e) if !e.is_lock() => panic!("write unit failed: {e}"),
                    _ => {}
                }
            }
            let elapsed = started.elapsed();
            readers.pause();
            units += iters;
            elapsed
        });
    });
    if let Some((fx, readers)) = fixture {
        let reads = readers.stop();
        let (all, writes) = fx.lock_errors();
        tallies.push(Tally {
            name,
            units,
            line: format!(
                "{} [writer {}; readers {} locked of {} reads{}]",
                format_codes(&all),
                format_codes(&writes),
                reads.reads_locked,
                reads.reads(),
                other_errors(&reads)
            ),
        });
    }
}

fn other_errors(reads: &ReaderTally) -> String {
    match &reads.first_other_error {
        Some(e) => format!(", {} other errors, first: {e}", reads.reads_failed_other),
        None => String::new(),
    }
}

/// Times `iters` write units of the bare rusqlite loop (no readers).
fn bench_bare(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    name: String,
    journal_mode: JournalMode,
    tx_mode: TxMode,
    tallies: &mut Vec<Tally>,
) {
    let mut fixture: Option<BareFixture> = None;
    let mut units = 0;
    group.bench_function(id, |b| {
        let fx = fixture.get_or_insert_with(|| {
            BareFixture::open(journal_mode, tx_mode)
                .unwrap_or_else(|e| panic!("opening the bare fixture: {e}"))
        });
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                if let Err(e) = fx.write_unit() {
                    let locked = matches!(&e, rusqlite::Error::SqliteFailure(f, _)
                        if LockCode::from_extended(f.extended_code).is_some());
                    assert!(locked, "bare write unit failed: {e}");
                }
            }
            let elapsed = started.elapsed();
            units += iters;
            elapsed
        });
    });
    if let Some(fx) = fixture {
        tallies.push(Tally {
            name,
            units,
            line: format_codes(fx.lock_errors()),
        });
    }
}

fn writer_commit(c: &mut Criterion, driver: Driver) {
    let group_name = match driver {
        Driver::Rusqlite => "writer_commit_rusqlite",
        Driver::Sqlx => "writer_commit_sqlx",
        // This bench compares SQLite journal modes; PostgreSQL has none.
        Driver::Postgres => return,
    };
    let mut group = c.benchmark_group(group_name);
    configure(&mut group);
    let mut tallies = Vec::new();
    for journal_mode in JOURNAL_MODES {
        for tx_mode in TX_MODES {
            for readers in READERS {
                let setting = Setting {
                    driver,
                    journal_mode,
                    tx_mode,
                    readers,
                };
                let id = BenchmarkId::new(
                    format!(
                        "{}/{}",
                        journal_mode.as_sql(),
                        lockbench_benches::tx_mode_name(tx_mode)
                    ),
                    format!("readers={readers}"),
                );
                let name = format!("{group_name}/{}", setting.id());
                bench_store(&mut group, id, name, setting, &mut tallies);
            }
        }
    }
    if driver == Driver::Rusqlite {
        for tx_mode in TX_MODES {
            let mode = format!("wal/{}", lockbench_benches::tx_mode_name(tx_mode));
            let name = format!("{group_name}/bare-rusqlite/{mode}/readers=0");
            let id = BenchmarkId::new(format!("bare-rusqlite/{mode}"), "readers=0");
            bench_bare(
                &mut group,
                id,
                name,
                JournalMode::Wal,
                tx_mode,
                &mut tallies,
            );
        }
    }
    group.finish();
    print_tallies(&tallies);
}

fn writer_commit_rusqlite(c: &mut Criterion) {
    writer_commit(c, Driver::Rusqlite);
}

fn writer_commit_sqlx(c: &mut Criterion) {
    writer_commit(c, Driver::Sqlx);
}

fn write_path_overhead(c: &mut Criterion) {
    let group_name = "write_path_overhead";
    let mut group = c.benchmark_group(group_name);
    configure(&mut group);
    let mut tallies = Vec::new();
    let setting = Setting {
        driver: Driver::Rusqlite,
        journal_mode: JournalMode::Wal,
        tx_mode: TxMode::Immediate,
        readers: 0,
    };
    bench_store(
        &mut group,
        BenchmarkId::from_parameter("lockbench"),
        format!("{group_name}/lockbench"),
        setting,
        &mut tallies,
    );
    bench_bare(
        &mut group,
        BenchmarkId::from_parameter("bare-rusqlite"),
        format!("{group_name}/bare-rusqlite"),
        setting.journal_mode,
        setting.tx_mode,
        &mut tallies,
    );
    group.finish();
    print_tallies(&tallies);
}

criterion_group!(
    name = benches;
    // Plots cost about 5 s per id on 2 cores, more than the measuring; the figures are in
    // the terminal and in target/criterion/<group>/<id>/new/estimates.json.
    config = Criterion::default().without_plots();
    targets = write_path_overhead, writer_commit_rusqlite, writer_commit_sqlx
);
criterion_main!(benches);
