//! What does the database cost the photo processor?
//!
//! One group, `processor_per_photo`, on one generated batch (45 photos of 1024x768, 3
//! people, seed 7, no corrupt files), with throughput in photos so criterion prints
//! photos/s:
//!
//! - `image_work_only`: `processor::scan_photos`, the pure image work (read, decode, QR scan)
//!   through the same two-thread pipeline the processor uses; no database.
//! - `processor/wal-immediate`: `processor::process_batch` with WAL, `BEGIN IMMEDIATE`,
//!   synchronous=normal, per-step commits (the processor's default), no upload latency.
//! - `processor/delete-deferred`: the same with the incident's storage settings (rollback
//!   journal, `BEGIN DEFERRED`, synchronous=full, SQLite's and the drivers' defaults), for
//!   contrast.
//!
//! Target: the processor's time per photo in `wal-immediate` is within 10% of
//! `image_work_only`, both measured in the same run (same group), so quote the ratio of the
//! medians, not the absolute times.
//!
//! Each processor iteration runs on a fresh database file: the temp folder, the `Store`, the
//! registrations of the batch's people and the batch row are made before the clock starts,
//! and the store and folders are dropped after it stops; only `process_batch` is timed
//! (`iter_custom`). The processor's own file copies (person folders, the stand-in upload) are
//! part of its work and so are timed. Before its first sample, each setting processes the
//! batch once, untimed, and the result is checked against the manifest (every photo
//! processed, none failed, each person with their photos, all uploaded), so the bench
//! measures real work. The batch is generated (and the baseline's QR payloads checked) on the
//! first id criterion runs, so a filter that leaves this group out costs nothing.
//!
//! `cargo bench -p lockbench-benches --bench processor` (add `-- --quick` for a quick look).

use std::cell::OnceCell;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use lockbench_server::app::metrics::Metrics;
use lockbench_server::photos::{self, BatchSpec, ImageSize, Manifest};
use lockbench_server::processor::{self, DataDirs, ProcessorConfig};
use lockbench_server::storage::{
    JournalMode, RetryPlan, StorageConfig, Store, Synchronous, TxMode, Value,
};
use tempfile::TempDir;

const SPEC: BatchSpec = BatchSpec {
    count: 45,
    people: 3,
    size: ImageSize::new(1024, 768),
    seed: 7,
    corrupt: 0,
};

/// A processor setting: its id in the group and the storage settings it runs with.
struct Setting {
    id: &'static str,
    storage: StorageConfig,
}

fn settings() -> [Setting; 2] {
    [
        Setting {
            id: "processor/wal-immediate",
            storage: StorageConfig {
                journal_mode: JournalMode::Wal,
                tx_mode: TxMode::Immediate,
                synchronous: Synchronous::Normal,
                ..StorageConfig::default()
            },
        },
        Setting {
            id: "processor/delete-deferred",
            storage: StorageConfig {
                journal_mode: JournalMode::Delete,
                tx_mode: TxMode::Deferred,
                synchronous: Synchronous::Full,
                ..StorageConfig::default()
            },
        },
    ]
}

/// The generated batch, kept on disk for the whole run.
struct Batch {
    _dir: TempDir,
    manifest: Manifest,
    photos: Vec<PathBuf>,
}

fn generate_batch() -> Batch {
    let dir = tempfile::tempdir().expect("creating the batch folder");
    let manifest = photos::generate(dir.path(), &SPEC).expect("generating the photo batch");
    let photos = processor::list_photos(dir.path()).expect("listing the batch's photos");
    assert_eq!(photos.len(), SPEC.count, "listed photos");
    Batch {
        _dir: dir,
        manifest,
        photos,
    }
}

/// A fresh database ready to process the batch: people registered, batch row inserted.
struct Run {
    tmp: TempDir,
    store: Store,
    batch_id: i64,
}

impl Run {
    fn prepare(storage: &StorageConfig, manifest: &Manifest, total: usize) -> Run {
        let tmp = tempfile::tempdir().expect("creating the database folder");
        let store = Store::open(&tmp.path().join("app.db"), storage, &RetryPlan::default())
            .expect("opening the store");
        for person in &manifest.people {
            store
                .write("register", |tx| {
                    tx.insert(
                        "INSERT INTO registrations (name, email, qr_payload) VALUES (?1, ?2, ?3)",
                        &[
                            Value::from(person.name.as_str()),
                            Value::from(person.email.as_str()),
                            Value::from(person.qr_payload.as_str()),
                        ],
                    )
                })
                .expect("registering a person");
        }
        let batch_id = store
            .write("create_batch", |tx| {
                tx.insert(
                    "INSERT INTO batches (source_dir, status, total) VALUES (?1, 'running', ?2)",
                    &[Value::from("bench"), Value::Int(total as i64)],
                )
            })
            .expect("inserting the batch row");
        Run {
            tmp,
            store,
            batch_id,
        }
    }

    fn data_dirs(&self) -> DataDirs {
        DataDirs::under(&self.tmp.path().join("data"))
    }

    /// The timed part: the processor runs the whole batch.
    fn process(&self, photos: &[PathBuf], metrics: &Arc<Metrics>) -> (Duration, u64) {
        let config = ProcessorConfig::default();
        let dirs = self.data_dirs();
        let photos = photos.to_vec();
        let started = Instant::now();
        let done =
            processor::process_batch(&self.store, &config, &dirs, self.batch_id, photos, metrics);
        (started.elapsed(), done)
    }
}

/// Processes the batch once with `setting` and checks the result against the manifest.
fn verify(setting: &Setting, batch: &Batch) {
    let id = setting.id;
    let run = Run::prepare(&setting.storage, &batch.manifest, batch.photos.len());
    let metrics = Arc::new(Metrics::default());
    let (_, done) = run.process(&batch.photos, &metrics);
    assert_eq!(
        done,
        batch.photos.len() as u64,
        "{id}: photos handed to the processor"
    );

    let row = run
        .store
        .read("verify", |tx| {
            tx.query(
                "SELECT status, processed, failed, persons, uploaded FROM batches WHERE id = ?1",
                &[Value::Int(run.batch_id)],
            )
        })
        .expect("reading the batch row");
    let row = row.first().expect("the batch row");
    let counts: Vec<Option<i64>> = row[1..].iter().map(Value::as_i64).collect();
    let people = batch.manifest.people.len() as i64;
    assert_eq!(row[0].as_str(), Some("done"), "{id}: batch status");
    assert_eq!(
        counts,
        [
            Some(batch.photos.len() as i64),
            Some(0),
            Some(people),
            Some(people)
        ],
        "{id}: batches.processed, failed, persons, uploaded"
    );

    // Each person has exactly their photos, in the registration their QR code names.
    for person in &batch.manifest.people {
        let rows = run
            .store
            .read("verify", |tx| {
                tx.query(
                    "SELECT p.photo_count, p.upload_state, \
                        (SELECT count(*) FROM photos f WHERE f.person_id = p.id AND f.status = 'assigned') \
                     FROM persons p JOIN registrations r ON r.id = p.registration_id \
                     WHERE p.batch_id = ?1 AND r.email = ?2",
                    &[Value::Int(run.batch_id), Value::from(person.email.as_str())],
                )
            })
            .expect("reading a person");
        let n = person.photos.len() as i64;
        let row = rows
            .first()
            .unwrap_or_else(|| panic!("{id}: no person for {}", person.email));
        assert_eq!(
            row[0].as_i64(),
            Some(n),
            "{id}: photo_count of {}",
            person.email
        );
        assert_eq!(
            row[1].as_str(),
            Some("uploaded"),
            "{id}: upload_state of {}",
            person.email
        );
        assert_eq!(
            row[2].as_i64(),
            Some(n),
            "{id}: assigned photos of {}",
            person.email
        );
    }
    let uploaded = std::fs::read_dir(run.data_dirs().uploads)
        .expect("reading the upload folder")
        .count();
    assert_eq!(
        uploaded,
        batch.manifest.people.len(),
        "{id}: uploaded folders"
    );

    // Nothing failed or hit a lock: the processor is alone on its database.
    let ops = run.store.stats().snapshot();
    let units: u64 = ops.values().map(|o| o.ok).sum();
    let failed: u64 = ops
        .values()
        .map(|o| o.failed_locked + o.failed_other + o.lock_errors_total())
        .sum();
    assert_eq!(failed, 0, "{id}: failed units or lock errors: {ops:?}");
    eprintln!(
        "{id}: verified: {done} photos, {people} people, {units} units of work \
         ({:.1} per photo) including setup, no failures",
        units as f64 / done as f64
    );
}

/// The baseline finds the same QR codes the manifest says are there.
fn verify_image_work(batch: &Batch) {
    let payloads = processor::scan_photos(&batch.photos);
    let expected: Vec<Option<String>> = batch
        .manifest
        .files
        .iter()
        .map(|f| {
            f.person
                .filter(|_| f.kind == photos::FileKind::Qr)
                .map(|p| batch.manifest.people[p].qr_payload.clone())
        })
        .collect();
    assert_eq!(payloads, expected, "image_work_only: QR payloads per photo");
}

fn processor_per_photo(c: &mut Criterion) {
    let batch: OnceCell<Batch> = OnceCell::new();
    let batch = || {
        batch.get_or_init(|| {
            let batch = generate_batch();
            verify_image_work(&batch);
            batch
        })
    };

    let mut group = c.benchmark_group("processor_per_photo");
    group
        .sample_size(10)
        // An iteration is a whole batch (about a second): one iteration per sample.
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(SPEC.count as u64));

    group.bench_function("image_work_only", |b| {
        let batch = batch();
        b.iter(|| black_box(processor::scan_photos(black_box(&batch.photos))));
    });

    for setting in &settings() {
        let mut verified = false;
        group.bench_function(setting.id, |b| {
            let batch = batch();
            if !verified {
                verify(setting, batch);
                verified = true;
            }
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    // Untimed: fresh folder, store, registrations and batch row.
                    let run = Run::prepare(&setting.storage, &batch.manifest, batch.photos.len());
                    let metrics = Arc::new(Metrics::default());
                    let (elapsed, done) = run.process(&batch.photos, &metrics);
                    assert_eq!(done, batch.photos.len() as u64, "{}: photos", setting.id);
                    timed += elapsed;
                    // Untimed: closing the store and removing the folder.
                    drop(run);
                }
                timed
            });
        });
    }
    group.finish();
}

criterion_group!(benches, processor_per_photo);
criterion_main!(benches);
