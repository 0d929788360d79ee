//! The quick benches CI runs on every change: the ratios this project cares about, each pair
//! measured side by side in one run, in alternating rounds, so a busy machine slows both
//! sides alike. Absolute times are recorded, never gated; a ratio that crosses its limit
//! fails the command (exit code 1).
//!
//! - `write_path`: lockbench's write path (Store, pool, transaction runner, counters) against
//!   the bare rusqlite loop doing the same unit (WAL, synchronous=normal, BEGIN IMMEDIATE, one
//!   writer). Commits/s of lockbench ÷ commits/s of the bare loop; floor 0.8.
//! - `rollback_vs_wal`, with 0 and 4 readers: the time per commit with a rollback journal ÷
//!   with WAL (one writer, BEGIN IMMEDIATE, through lockbench). Floor 1.0: WAL commits must stay
//!   cheaper.
//! - `processor_vs_image_work`: the processor's time for a batch ÷ the pure image work
//!   (decode and QR scan, same pipeline) for the same photos. Ceiling 1.5 (the database may
//!   add up to half the image work's time; measured 1.05-1.11 on a 45-photo batch).
//!
//! `cargo run --release -p lockbench-benches --bin ci-bench -- --out reports/ci` writes
//! `bench.json` and `bench.md` there. For a developer comparing two branches on one machine,
//! the criterion benches keep baselines: see the README.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use lockbench_benches::{BareFixture, Readers, Setting, StoreFixture};
use lockbench_server::app::metrics::Metrics;
use lockbench_server::photos::{self, BatchSpec, ImageSize};
use lockbench_server::processor::{self, DataDirs, ProcessorConfig};
use lockbench_server::storage::{
    Driver, JournalMode, RetryPlan, StorageConfig, Store, Synchronous, TxMode, Value,
};

/// Rounds per pair; the ratio is taken from the medians.
const ROUNDS: usize = 7;
/// Write units per side per round.
const UNITS: usize = 200;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One ratio as CI records it.
#[derive(serde::Serialize)]
struct Ratio {
    id: String,
    what: String,
    /// The two sides' median time per unit, microseconds (recorded, never gated).
    a_name: String,
    a_median_us: f64,
    b_name: String,
    b_median_us: f64,
    /// How the ratio is computed, in words.
    ratio_is: String,
    value: f64,
    /// The ratio must be at least this...
    floor: Option<f64>,
    /// ...or at most this.
    ceiling: Option<f64>,
    passed: bool,
    rounds: usize,
}

impl Ratio {
    fn judge(mut self) -> Ratio {
        self.passed = self.floor.is_none_or(|f| self.value >= f)
            && self.ceiling.is_none_or(|c| self.value <= c)
            && self.value.is_finite();
        self
    }
}

/// Times `units` calls of `f`; microseconds per call.
fn per_unit(units: usize, mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..units {
        f();
    }
    started.elapsed().as_secs_f64() * 1e6 / units as f64
}

fn fixture(e: Box<dyn std::error::Error + Send + Sync>) -> anyhow::Error {
    anyhow::anyhow!("opening a bench database: {e}")
}

fn store_setting(journal_mode: JournalMode, readers: u32) -> Setting {
    Setting {
        driver: Driver::Rusqlite,
        journal_mode,
        tx_mode: TxMode::Immediate,
        readers,
    }
}

fn write_path() -> anyhow::Result<Ratio> {
    let mut store = StoreFixture::open(&store_setting(JournalMode::Wal, 0)).map_err(fixture)?;
    let mut bare = BareFixture::open(JournalMode::Wal, TxMode::Immediate).map_err(fixture)?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        // Alternate which side goes first; round 0 only warms both up.
        let mut lockbench = || per_unit(UNITS, || drop(store.write_unit()));
        let mut plain = || per_unit(UNITS, || drop(bare.write_unit()));
        let (x, y) = if round % 2 == 0 {
            let x = lockbench();
            (x, plain())
        } else {
            let y = plain();
            (lockbench(), y)
        };
        if round > 0 {
            a.push(x);
            b.push(y);
        }
    }
    let (a, b) = (median(a), median(b));
    Ok(Ratio {
        id: "write_path".into(),
        what: "lockbench's write path against the bare rusqlite loop (WAL, synchronous=normal, BEGIN IMMEDIATE, 1 writer)".into(),
        a_name: "lockbench".into(),
        a_median_us: a,
        b_name: "bare rusqlite".into(),
        b_median_us: b,
        ratio_is: "commits/s of lockbench ÷ commits/s of the bare loop".into(),
        value: b / a,
        floor: Some(0.8),
        ceiling: None,
        passed: false,
        rounds: ROUNDS,
    }
    .judge())
}

fn rollback_vs_wal(readers: u32) -> anyhow::Result<Ratio> {
    let mut delete =
        StoreFixture::open(&store_setting(JournalMode::Delete, readers)).map_err(fixture)?;
    let mut wal = StoreFixture::open(&store_setting(JournalMode::Wal, readers)).map_err(fixture)?;
    let r_delete = Readers::start(delete.store(), delete.batch_id(), readers)?;
    let r_wal = Readers::start(wal.store(), wal.batch_id(), readers)?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    // A round must span the WAL's occasional checkpoint: with 50 units a round, whether a
    // round held one decided the WAL side's median, and the ratio under 4 readers went from
    // 0.82 to 1.35 in three runs; with 200 it stayed between 2.7 and 5.0 in four.
    let units = UNITS;
    for round in 0..=ROUNDS {
        r_delete.resume();
        let x = per_unit(units, || drop(delete.write_unit()));
        r_delete.pause();
        r_wal.resume();
        let y = per_unit(units, || drop(wal.write_unit()));
        r_wal.pause();
        if round > 0 {
            a.push(x);
            b.push(y);
        }
    }
    r_delete.stop();
    r_wal.stop();
    let (a, b) = (median(a), median(b));
    Ok(Ratio {
        id: format!("rollback_vs_wal/readers={readers}"),
        what: format!(
            "time per commit, rollback journal against WAL, with {readers} readers (1 writer, BEGIN IMMEDIATE, synchronous=normal, through lockbench)"
        ),
        a_name: "rollback journal (delete)".into(),
        a_median_us: a,
        b_name: "wal".into(),
        b_median_us: b,
        ratio_is: "rollback journal time per commit ÷ WAL time per commit".into(),
        value: a / b,
        floor: Some(1.0),
        ceiling: None,
        passed: false,
        rounds: ROUNDS,
    }
    .judge())
}

/// One processor run over `photos` on a fresh database (the batch's people registered
/// first), in µs per photo.
fn processor_us_per_photo(
    storage: &StorageConfig,
    manifest: &photos::Manifest,
    photos: &[std::path::PathBuf],
) -> anyhow::Result<f64> {
    let tmp = tempfile::tempdir()?;
    let store = Store::open(&tmp.path().join("app.db"), storage, &RetryPlan::default())?;
    for p in &manifest.people {
        store.write("register", |tx| {
            tx.insert(
                "INSERT INTO registrations (name, email, qr_payload) VALUES (?1, ?2, ?3)",
                &[
                    Value::from(p.name.as_str()),
                    Value::from(p.email.as_str()),
                    Value::from(p.qr_payload.as_str()),
                ],
            )
        })?;
    }
    let batch_id = store.write("create_batch", |tx| {
        tx.insert(
            "INSERT INTO batches (source_dir, status, total) VALUES ('ci-bench', 'running', ?1)",
            &[Value::Int(photos.len() as i64)],
        )
    })?;
    let metrics = Arc::new(Metrics::default());
    let dirs = DataDirs::under(&tmp.path().join("data"));
    let started = Instant::now();
    let done = processor::process_batch(
        &store,
        &ProcessorConfig::default(),
        &dirs,
        batch_id,
        photos.to_vec(),
        &metrics,
    );
    let took = started.elapsed();
    anyhow::ensure!(
        done == photos.len() as u64,
        "the processor handled {done} photos"
    );
    Ok(took.as_secs_f64() * 1e6 / photos.len() as f64)
}

fn processor_vs_image_work() -> anyhow::Result<Ratio> {
    let spec = BatchSpec {
        count: 24,
        people: 3,
        size: ImageSize::new(1024, 768),
        seed: 7,
        corrupt: 0,
    };
    let dir = tempfile::tempdir()?;
    let manifest = photos::generate(dir.path(), &spec)?;
    let photos = processor::list_photos(dir.path())?;
    let storage = StorageConfig {
        journal_mode: JournalMode::Wal,
        tx_mode: TxMode::Immediate,
        synchronous: Synchronous::Normal,
        ..StorageConfig::default()
    };
    let run_processor = || processor_us_per_photo(&storage, &manifest, &photos);
    let image_work = || {
        let started = Instant::now();
        let payloads = processor::scan_photos(&photos);
        let took = started.elapsed();
        assert_eq!(payloads.len(), photos.len());
        took.as_secs_f64() * 1e6 / photos.len() as f64
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let rounds = 5;
    for round in 0..=rounds {
        let (x, y) = if round % 2 == 0 {
            let x = run_processor()?;
            (x, image_work())
        } else {
            let y = image_work();
            (run_processor()?, y)
        };
        if round > 0 {
            a.push(x);
            b.push(y);
        }
    }
    let (a, b) = (median(a), median(b));
    Ok(Ratio {
        id: "processor_vs_image_work".into(),
        what: format!(
            "the processor against the pure image work (decode, QR scan) on {} photos of 1024x768 (WAL, BEGIN IMMEDIATE, synchronous=normal, per-step commits)",
            photos.len()
        ),
        a_name: "processor".into(),
        a_median_us: a,
        b_name: "image work only".into(),
        b_median_us: b,
        ratio_is: "processor time per photo ÷ image work time per photo".into(),
        value: a / b,
        floor: None,
        ceiling: Some(1.5),
        passed: false,
        rounds,
    }
    .judge())
}

fn markdown(ratios: &[Ratio], passed: bool, load: (Option<String>, Option<String>)) -> String {
    let mut s = format!(
        "# lockbench CI benches — {}\n\nRatios measured side by side in one run (alternating rounds, medians); absolute times are recorded, never gated.\n\n| ratio | value | limit | result | A (median µs/unit) | B (median µs/unit) | what |\n| --- | ---: | ---: | --- | ---: | ---: | --- |\n",
        if passed { "PASSED" } else { "FAILED" }
    );
    for r in ratios {
        let limit = match (r.floor, r.ceiling) {
            (Some(f), _) => format!("≥ {f}"),
            (None, Some(c)) => format!("≤ {c}"),
            (None, None) => "–".into(),
        };
        s.push_str(&format!(
            "| {} | {:.3} | {limit} | {} | {}: {:.1} | {}: {:.1} | {}; {} |\n",
            r.id,
            r.value,
            if r.passed { "pass" } else { "**FAIL**" },
            r.a_name,
            r.a_median_us,
            r.b_name,
            r.b_median_us,
            r.what,
            r.ratio_is
        ));
    }
    s.push_str(&format!(
        "\nMachine: {} cores; load average (1, 5, 15 min) at start {}, at end {}.\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load.0.unwrap_or_else(|| "not read".into()),
        load.1.unwrap_or_else(|| "not read".into())
    ));
    s
}

fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn main() -> std::process::ExitCode {
    let mut out = PathBuf::from("reports/ci");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--out", Some(dir)) => out = PathBuf::from(dir),
            _ => {
                eprintln!("usage: ci-bench [--out DIR]   (got {arg:?})");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let started = Instant::now();
    let load_start = load_average();
    let measured: anyhow::Result<Vec<Ratio>> = (|| {
        Ok(vec![
            write_path()?,
            rollback_vs_wal(0)?,
            rollback_vs_wal(4)?,
            processor_vs_image_work()?,
        ])
    })();
    let ratios = match measured {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: ci-bench: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let load_end = load_average();
    let passed = ratios.iter().all(|r| r.passed);
    let json = serde_json::json!({
        "schema_version": 1,
        "lockbench_version": env!("CARGO_PKG_VERSION"),
        "passed": passed,
        "wall_s": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "load_average_start": load_start,
        "load_average_end": load_end,
        "ratios": ratios,
    });
    let md = markdown(&ratios, passed, (load_start, load_end));
    print!("{md}");
    let written = std::fs::create_dir_all(&out)
        .and_then(|()| {
            std::fs::write(
                out.join("bench.json"),
                serde_json::to_string_pretty(&json).unwrap_or_default() + "\n",
            )
        })
        .and_then(|()| std::fs::write(out.join("bench.md"), &md));
    if let Err(e) = written {
        eprintln!("error: ci-bench: writing {}: {e}", out.display());
        return std::process::ExitCode::from(2);
    }
    std::process::ExitCode::from(if passed { 0 } else { 1 })
}
