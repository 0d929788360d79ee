//! The photo processor, as the incident's app ran it.
//!
//! For each photo in name order: decode it and look for a QR code; a QR code carrying a
//! registration payload starts a new person (`start_new_person`), after saving and uploading
//! the previous one (`save_current_person`, `upload_person`); other photos go to the current
//! person (`assign_to_current_person`); every step writes a processing_log row (`log_action`)
//! and the batch status (`update_batch_status`). Each step is a write unit of work, committed
//! on its own (`per-step`, as in the incident) or all together (`per-photo`).
//!
//! Decoding and QR scanning run on two decoder threads ahead of the database thread, so the
//! image work uses both cores while the database steps stay in order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use tracing::{info, info_span, warn};

use crate::app::metrics::Metrics;
use crate::photos::{self, Scan};
use crate::storage::{DbError, JournalMode, Store, Tx, Value};

/// The pause between the processor's tries while the database stays locked.
const LOCK_WAIT_STEP: Duration = Duration::from_millis(100);

/// How often the processor commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CommitGranularity {
    /// Every step commits on its own, as the incident's app did.
    #[default]
    PerStep,
    /// One commit per photo, all its steps together.
    PerPhoto,
}

/// On or off, for settings that are a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Switch {
    On,
    #[default]
    Off,
}

/// The processor's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorConfig {
    /// per-step: every step commits (the incident); per-photo: one commit per photo.
    #[arg(long, value_enum, default_value_t = CommitGranularity::default())]
    pub commit_granularity: CommitGranularity,
    /// on: copying and uploading happen inside the step's open write transaction.
    #[arg(long, value_enum, default_value_t = Switch::default())]
    pub io_in_transaction: Switch,
    /// Latency per uploaded file, standing in for the Drive upload.
    #[arg(long, default_value_t = 0)]
    pub upload_latency_ms: u64,
    /// How long the processor keeps running a unit of work again that failed on a lock (after
    /// the retry policy gave up) before it gives up on that step: a background job can wait
    /// out a backup or a migration instead of dropping a photo. 0: it gives up at once, as
    /// the incident's processor did.
    #[arg(long, default_value_t = 0)]
    pub lock_wait_ms: u64,
}

/// Where the processor writes: per-person folders, the upload folder, and the batches' claim
/// files (see `app`'s POST /api/batches).
#[derive(Debug, Clone)]
pub struct DataDirs {
    pub persons: PathBuf,
    pub uploads: PathBuf,
    pub batches: PathBuf,
}

impl DataDirs {
    pub fn under(root: &Path) -> DataDirs {
        DataDirs {
            persons: root.join("persons"),
            uploads: root.join("uploads"),
            batches: root.join("batches"),
        }
    }
}

/// Lists a batch folder's photos in name order: the entries whose name ends in .jpg, .jpeg or
/// .png (any case) and that are not folders. Symbolic links are listed too, so that the
/// processor records them as failed (it never follows them) instead of leaving them out
/// without a word; so are names that are not UTF-8 (recorded under their lossy name).
pub fn list_photos(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut photos = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name();
        let lower = name.as_encoded_bytes().to_ascii_lowercase();
        if lower.ends_with(b".jpg") || lower.ends_with(b".jpeg") || lower.ends_with(b".png") {
            photos.push(entry.path());
        }
    }
    photos.sort();
    Ok(photos)
}

/// A photo's file name as recorded: the name itself, or its lossy form when it is not UTF-8.
fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The person whose photos are being collected.
#[derive(Debug, Clone)]
struct Person {
    id: i64,
    folder: String,
    photos: Vec<PathBuf>,
}

/// A photo's path and file name.
struct Named {
    path: PathBuf,
    name: String,
}

/// What one decoded photo turned out to be.
struct Decoded {
    path: PathBuf,
    name: String,
    result: Result<Scan, String>,
}

/// Keeps only characters that are safe in a folder name: `text::slug`, at most 40 characters,
/// "person" when nothing is left.
fn slug(text: &str) -> String {
    let s: String = crate::text::slug(text).chars().take(40).collect();
    if s.is_empty() {
        "person".into()
    } else {
        s
    }
}

/// Joins a file name read from disk (or a folder name read from the database) under `dir`,
/// refusing anything that is not a plain name, so that nothing is written outside `dir`.
/// A backslash is refused too: it is a plain character here, but a separator wherever the
/// uploads may be copied next.
fn inside(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." {
        Some("it names a folder, not a file")
    } else if name.contains('/') || name.contains('\\') {
        Some("it contains a path separator")
    } else if name.contains('\0') {
        Some("it contains a NUL byte")
    } else {
        None
    };
    match why {
        Some(why) => Err(format!("refusing file name {name:?}: {why}")),
        None => Ok(dir.join(name)),
    }
}

/// Creates `folder` (and its parents) and checks it is a real folder, not a symbolic link to
/// somewhere else.
fn real_folder(folder: &Path) -> Result<(), String> {
    std::fs::create_dir_all(folder).map_err(|e| format!("creating {}: {e}", folder.display()))?;
    let meta = std::fs::symlink_metadata(folder)
        .map_err(|e| format!("checking {}: {e}", folder.display()))?;
    if !meta.file_type().is_dir() {
        return Err(format!(
            "refusing to write into {}: it is not a folder (a symbolic link?)",
            folder.display()
        ));
    }
    Ok(())
}

/// Copies `from` to `to`, first removing a symbolic link found at `to` (copying onto it would
/// write wherever it points).
fn copy_file(from: &Path, to: &Path, label: &str) -> Result<(), String> {
    if std::fs::symlink_metadata(to).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(to).map_err(|e| format!("removing the link {}: {e}", to.display()))?;
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("{label}: {e}"))
}

/// Runs one batch to the end. Returns the number of photos processed in this run.
pub fn process_batch(
    store: &Store,
    config: &ProcessorConfig,
    dirs: &DataDirs,
    batch_id: i64,
    photos: Vec<PathBuf>,
    metrics: &Arc<Metrics>,
) -> u64 {
    let span = info_span!("processor", batch = batch_id);
    let _enter = span.enter();
    let _running = Running::start(metrics, batch_id);
    let total = photos.len() as u64;
    metrics
        .batches
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(batch_id, (total, 0));
    let mut proc = Processor {
        store,
        config,
        dirs,
        batch_id,
        current: None,
        metrics,
    };
    proc.log_or_warn("batch_started", None, &format!("{total} photos"));

    let mut done = 0;
    decode_in_order(&photos, |decoded| {
        proc.photo(decoded);
        done += 1;
        if let Some(entry) = metrics
            .batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&batch_id)
        {
            entry.1 = done;
        }
    });
    proc.finish_person();
    proc.finish_batch();
    metrics
        .finished
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(batch_id);
    done
}

/// Marks a batch's processor as running in this worker's metrics while it lives (a panic
/// included).
struct Running<'a> {
    metrics: &'a Metrics,
    batch_id: i64,
}

impl<'a> Running<'a> {
    fn start(metrics: &'a Metrics, batch_id: i64) -> Running<'a> {
        metrics
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(batch_id);
        Running { metrics, batch_id }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.metrics
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.batch_id);
    }
}

/// Decodes and scans photos on two threads, handing them to `each` in name order.
fn decode_in_order(photos: &[PathBuf], mut each: impl FnMut(Decoded)) {
    let (tx, rx) = mpsc::sync_channel::<(usize, Decoded)>(4);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut expected = 0;
    let mut pending: BTreeMap<usize, Decoded> = BTreeMap::new();
    std::thread::scope(|scope| {
        for d in 0..2 {
            let tx = tx.clone();
            let next = &next;
            let spawned = std::thread::Builder::new()
                .name(format!("decoder-{d}"))
                .spawn_scoped(scope, move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = photos.get(i) else { break };
                    if tx.send((i, decode(path))).is_err() {
                        break;
                    }
                });
            if let Err(e) = spawned {
                warn!(error = %e, "could not start a decoder thread");
            }
        }
        drop(tx);
        // Put the decoded photos back in name order.
        for (i, decoded) in rx.iter() {
            pending.insert(i, decoded);
            while let Some(decoded) = pending.remove(&expected) {
                each(decoded);
                expected += 1;
            }
        }
    });
    // Whatever no decoder delivered (no decoder could start, or one died) is decoded here,
    // so that every photo is handled, in order.
    for (i, path) in photos.iter().enumerate().skip(expected) {
        match pending.remove(&i) {
            Some(decoded) => each(decoded),
            None => each(decode(path)),
        }
    }
}

/// The pure image work of a batch (read, decode, QR scan; no database), through the same
/// two-thread pipeline the processor uses: the baseline of the processor's benchmark.
/// Returns each photo's QR payload (None when it has none or does not decode).
pub fn scan_photos(photos: &[PathBuf]) -> Vec<Option<String>> {
    let mut out = Vec::with_capacity(photos.len());
    decode_in_order(photos, |d| {
        out.push(d.result.ok().and_then(|s| s.qr_payload))
    });
    out
}

fn decode(path: &Path) -> Decoded {
    let name = file_name_of(path);
    let result = read_photo(path).and_then(|bytes| photos::scan(&bytes).map_err(|e| e.to_string()));
    Decoded {
        path: path.to_path_buf(),
        name,
        result,
    }
}

/// A photo's bytes; a symbolic link is refused, not followed (it may point anywhere, `../`
/// included).
fn read_photo(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)
            .map(|t| format!(" (to {})", t.display()))
            .unwrap_or_default();
        return Err(format!(
            "is a symbolic link{target}, not a photo file: links are not followed"
        ));
    }
    if !meta.file_type().is_file() {
        return Err("is not a regular file".into());
    }
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}

struct Processor<'a> {
    store: &'a Store,
    config: &'a ProcessorConfig,
    dirs: &'a DataDirs,
    batch_id: i64,
    current: Option<Person>,
    metrics: &'a Arc<Metrics>,
}

type Step<'s> = Box<dyn FnMut(&mut dyn Tx) -> Result<(), DbError> + 's>;

impl Processor<'_> {
    /// A write unit of work, run again while it fails on a lock, for up to `lock_wait_ms`;
    /// every new try is counted as a retry.
    fn write<T>(
        &self,
        op: &str,
        mut work: impl FnMut(&mut dyn Tx) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let wait = Duration::from_millis(self.config.lock_wait_ms);
        let started = Instant::now();
        loop {
            match self.store.write(op, &mut work) {
                Err(e) if e.is_lock() && started.elapsed() < wait => {
                    warn!(op, error = %e, "the database stays locked; the processor waits and tries again");
                    self.store.count_retry(op);
                    std::thread::sleep(LOCK_WAIT_STEP.min(wait.saturating_sub(started.elapsed())));
                }
                other => return other,
            }
        }
    }

    fn io_in_tx(&self) -> bool {
        self.config.io_in_transaction == Switch::On
    }

    /// Runs the photo's steps: each its own unit of work, or all in one.
    fn run_steps(&self, steps: Vec<(&'static str, Step<'_>)>) -> Result<(), DbError> {
        match self.config.commit_granularity {
            crate::processor::CommitGranularity::PerStep => {
                for (op, mut step) in steps {
                    self.write(op, |tx| step(tx))?;
                }
                Ok(())
            }
            crate::processor::CommitGranularity::PerPhoto => {
                let mut steps = steps;
                self.write("process_photo", |tx| {
                    for (_, step) in steps.iter_mut() {
                        step(tx)?;
                    }
                    Ok(())
                })
            }
        }
    }

    fn log_or_warn(&self, action: &str, photo: Option<&str>, detail: &str) {
        let batch_id = self.batch_id;
        let result = self.write("log_action", |tx| {
            log_action(tx, batch_id, action, photo, detail)
        });
        if let Err(e) = result {
            warn!(action, error = %e, "could not write the processing log");
        }
    }

    fn photo(&mut self, decoded: Decoded) {
        let span = info_span!("photo", name = %decoded.name);
        let _enter = span.enter();
        let Decoded { path, name, result } = decoded;
        let decoded = Named { path, name };
        if let Err(reason) = inside(Path::new(""), &decoded.name) {
            // Never copied anywhere: the name could not be written safely.
            info!(reason, "photo refused by name");
            self.record_failed(&decoded.name, None, &reason);
            return;
        }
        let scan = match result {
            Ok(scan) => scan,
            Err(reason) => {
                info!(reason, "photo failed to decode");
                self.record_failed(&decoded.name, None, &reason);
                return;
            }
        };
        match self.already_recorded(&scan.content_hash) {
            Ok(Some((_, _, true))) => {
                // Failed before (a refused QR code, a unit of work that failed): it belongs to
                // nobody, and failing it again would count it twice.
                return;
            }
            Ok(Some((person_id, is_qr, false))) => {
                // Re-processing (a second POST, or after a crash): nothing new to record, but
                // the person sequence must be followed.
                if is_qr {
                    self.finish_person();
                    self.current = person_id.map(|id| Person {
                        id,
                        folder: format!("{id}"),
                        photos: Vec::new(),
                    });
                    if let Some(p) = self.current.as_mut() {
                        if let Ok(folder) = folder_of(self.store, p.id) {
                            p.folder = folder;
                        }
                    }
                }
                if let Some(p) = self.current.as_mut() {
                    if !is_qr {
                        p.photos.push(decoded.path.clone());
                    }
                }
                return;
            }
            Ok(None) => {}
            Err(e) => {
                self.record_failed(&decoded.name, Some(&scan.content_hash), &e.to_string());
                return;
            }
        }
        let outcome = match qr_meaning(&scan.qr_payloads) {
            QrMeaning::Registration(payload) => {
                self.finish_person();
                self.start_new_person(&decoded, &scan, &payload)
            }
            QrMeaning::None => self.assign_to_current_person(&decoded, &scan, None),
            QrMeaning::Foreign(note) => self.assign_to_current_person(&decoded, &scan, Some(&note)),
            QrMeaning::Refused(reason) => {
                // The current person stays: a photo that cannot say whose it is does not
                // start anyone.
                info!(reason, "photo's QR code refused");
                self.record_failed(&decoded.name, Some(&scan.content_hash), &reason);
                return;
            }
        };
        match outcome {
            Ok(()) => {
                self.metrics
                    .processor
                    .photos_processed
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.metrics
                    .processor
                    .units_failed
                    .fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "photo's unit of work failed; marking it failed");
                self.record_failed(&decoded.name, Some(&scan.content_hash), &e.to_string());
            }
        }
    }

    /// The photo already recorded with this content: (person, is a QR photo, failed).
    fn already_recorded(&self, hash: &str) -> Result<Option<(Option<i64>, bool, bool)>, DbError> {
        let rows = self.store.read("photo_lookup", |tx| {
            tx.query(
                "SELECT person_id, is_qr, status FROM photos WHERE content_hash = ?1",
                &[Value::from(hash)],
            )
        })?;
        Ok(rows.first().map(|r| {
            (
                r[0].as_i64(),
                r[1].as_i64() == Some(1),
                r[2].as_str() == Some("failed"),
            )
        }))
    }

    /// _start_new_person: a QR photo for a registration.
    fn start_new_person(
        &mut self,
        decoded: &Named,
        scan: &Scan,
        payload: &str,
    ) -> Result<(), DbError> {
        let batch_id = self.batch_id;
        let name = decoded.name.clone();
        let hash = scan.content_hash.clone();
        let payload = payload.to_owned();
        let mut person_id = 0_i64;
        let mut folder = String::new();
        {
            let person_id = &mut person_id;
            let folder = &mut folder;
            let steps: Vec<(&'static str, Step<'_>)> = vec![
                (
                    "start_new_person",
                    Box::new(|tx: &mut dyn Tx| {
                        let reg = tx.query(
                            "SELECT id, name FROM registrations WHERE qr_payload = ?1",
                            &[Value::from(payload.as_str())],
                        )?;
                        let (reg_id, reg_name) = match reg.first() {
                            Some(r) => {
                                (r[0].as_i64(), r[1].as_str().unwrap_or("person").to_owned())
                            }
                            None => (None, "unregistered".to_owned()),
                        };
                        let existing = tx.query_i64(
                            "SELECT id FROM persons WHERE batch_id = ?1 AND qr_payload = ?2",
                            &[Value::Int(batch_id), Value::from(payload.as_str())],
                        )?;
                        let id = match existing {
                            Some(id) => id,
                            None => {
                                let id = tx.insert(
                                    "INSERT INTO persons (batch_id, registration_id, qr_payload) VALUES (?1, ?2, ?3)",
                                    &[Value::Int(batch_id), reg_id.into(), Value::from(payload.as_str())],
                                )?;
                                tx.execute(
                                    "UPDATE batches SET persons = persons + 1 WHERE id = ?1",
                                    &[Value::Int(batch_id)],
                                )?;
                                id
                            }
                        };
                        let dir = format!("{id:05}-{}", slug(&reg_name));
                        tx.execute(
                            "UPDATE persons SET folder = ?1 WHERE id = ?2",
                            &[Value::from(dir.as_str()), Value::Int(id)],
                        )?;
                        tx.insert(
                            "INSERT INTO photos (batch_id, person_id, file_name, content_hash, is_qr, status) VALUES (?1, ?2, ?3, ?4, 1, 'qr')",
                            &[Value::Int(batch_id), Value::Int(id), Value::from(name.as_str()), Value::from(hash.as_str())],
                        )?;
                        *person_id = id;
                        *folder = dir;
                        Ok(())
                    }),
                ),
                (
                    "log_action",
                    Box::new(|tx: &mut dyn Tx| {
                        log_action(tx, batch_id, "start_new_person", Some(&name), &payload)
                    }),
                ),
                (
                    "update_batch_status",
                    Box::new(|tx: &mut dyn Tx| update_batch_status(tx, batch_id, &name)),
                ),
            ];
            self.run_steps(steps)?;
        }
        self.current = Some(Person {
            id: person_id,
            folder,
            photos: Vec::new(),
        });
        Ok(())
    }

    /// _assign_to_current_person: a regular photo. `note` (a QR code that is not a
    /// registration) is kept in the photo's `error` column and in the log.
    fn assign_to_current_person(
        &mut self,
        decoded: &Named,
        scan: &Scan,
        note: Option<&str>,
    ) -> Result<(), DbError> {
        let batch_id = self.batch_id;
        let name = decoded.name.clone();
        let hash = scan.content_hash.clone();
        let note: Option<String> = note.map(str::to_owned);
        let person_id = self.current.as_ref().map(|p| p.id);
        let steps: Vec<(&'static str, Step<'_>)> = vec![
            (
                "assign_to_current_person",
                Box::new(|tx: &mut dyn Tx| {
                    match person_id {
                        Some(pid) => {
                            // The ORM loads the person before changing it.
                            tx.query_i64(
                                "SELECT photo_count FROM persons WHERE id = ?1",
                                &[Value::Int(pid)],
                            )?;
                            tx.insert(
                                "INSERT INTO photos (batch_id, person_id, file_name, content_hash, status, error) VALUES (?1, ?2, ?3, ?4, 'assigned', ?5)",
                                &[Value::Int(batch_id), Value::Int(pid), Value::from(name.as_str()), Value::from(hash.as_str()), Value::from(note.clone())],
                            )?;
                            tx.execute(
                                "UPDATE persons SET photo_count = photo_count + 1 WHERE id = ?1",
                                &[Value::Int(pid)],
                            )?;
                        }
                        None => {
                            tx.insert(
                                "INSERT INTO photos (batch_id, file_name, content_hash, status, error) VALUES (?1, ?2, ?3, 'unassigned', ?4)",
                                &[Value::Int(batch_id), Value::from(name.as_str()), Value::from(hash.as_str()), Value::from(note.clone())],
                            )?;
                        }
                    }
                    Ok(())
                }),
            ),
            (
                "log_action",
                Box::new(|tx: &mut dyn Tx| {
                    let mut detail =
                        person_id.map_or("no current person".to_owned(), |p| format!("person {p}"));
                    if let Some(note) = &note {
                        detail = format!("{detail}; {note}");
                    }
                    log_action(
                        tx,
                        batch_id,
                        "assign_to_current_person",
                        Some(&name),
                        &detail,
                    )
                }),
            ),
            (
                "update_batch_status",
                Box::new(|tx: &mut dyn Tx| update_batch_status(tx, batch_id, &name)),
            ),
        ];
        self.run_steps(steps)?;
        if let Some(p) = self.current.as_mut() {
            p.photos.push(decoded.path.clone());
        }
        Ok(())
    }

    /// A photo that could not be processed: recorded as failed, with the reason.
    fn record_failed(&self, name: &str, hash: Option<&str>, reason: &str) {
        self.metrics
            .processor
            .photos_failed
            .fetch_add(1, Ordering::Relaxed);
        let batch_id = self.batch_id;
        // Undecodable files have no trustworthy content; key them by batch and name.
        let key = hash.map_or_else(|| format!("failed:{batch_id}:{name}"), str::to_owned);
        let result = self.write("record_failed_photo", |tx| {
            let exists = tx.query_i64("SELECT id FROM photos WHERE content_hash = ?1", &[Value::from(key.as_str())])?;
            if exists.is_none() {
                tx.insert(
                    "INSERT INTO photos (batch_id, file_name, content_hash, status, error) VALUES (?1, ?2, ?3, 'failed', ?4)",
                    &[Value::Int(batch_id), Value::from(name), Value::from(key.as_str()), Value::from(reason)],
                )?;
                tx.execute(
                    "UPDATE batches SET failed = failed + 1, processed = processed + 1, current_photo = ?2, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
                    &[Value::Int(batch_id), Value::from(name)],
                )?;
            }
            log_action(tx, batch_id, "photo_failed", Some(name), reason)
        });
        if let Err(e) = result {
            self.metrics
                .processor
                .failure_records_lost
                .fetch_add(1, Ordering::Relaxed);
            warn!(photo = name, error = %e, "could not record the failed photo");
        }
    }

    /// _save_current_person and the upload step for the person being collected.
    fn finish_person(&mut self) {
        let Some(person) = self.current.take() else {
            return;
        };
        // A re-run (second POST, or after a crash) leaves a finished person as it is.
        if matches!(self.person_state(person.id).as_deref(), Ok("uploaded")) {
            return;
        }
        if let Err(e) = self.save_person(&person) {
            warn!(person = person.id, error = %e, "saving the person failed");
            return;
        }
        self.metrics
            .processor
            .persons_saved
            .fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.upload_person(&person) {
            warn!(person = person.id, error = %e, "uploading the person failed");
            return;
        }
        self.metrics
            .processor
            .persons_uploaded
            .fetch_add(1, Ordering::Relaxed);
        self.checkpoint();
    }

    fn person_state(&self, id: i64) -> Result<String, DbError> {
        self.store.read("person_state", |tx| {
            let rows = tx.query(
                "SELECT upload_state FROM persons WHERE id = ?1",
                &[Value::Int(id)],
            )?;
            Ok(rows
                .first()
                .and_then(|r| r[0].as_str())
                .unwrap_or_default()
                .to_owned())
        })
    }

    fn save_person(&self, person: &Person) -> Result<(), DbError> {
        let folder =
            inside(&self.dirs.persons, &person.folder).map_err(io_error("save_current_person"))?;
        let copy = || copy_photos(&person.photos, &folder, person.id, Duration::ZERO);
        if !self.io_in_tx() {
            copy().map_err(io_error("save_current_person"))?;
        }
        let batch_id = self.batch_id;
        let folder_text = folder.display().to_string();
        self.write("save_current_person", |tx| {
            tx.query_i64(
                "SELECT photo_count FROM persons WHERE id = ?1",
                &[Value::Int(person.id)],
            )?;
            tx.execute(
                "UPDATE persons SET upload_state = 'saved' WHERE id = ?1",
                &[Value::Int(person.id)],
            )?;
            log_action(tx, batch_id, "save_current_person", None, &folder_text)?;
            if self.io_in_tx() {
                // The write lock is held while the files are copied.
                copy().map_err(io_error("save_current_person"))?;
            }
            Ok(())
        })
    }

    fn upload_person(&self, person: &Person) -> Result<(), DbError> {
        let source =
            inside(&self.dirs.persons, &person.folder).map_err(io_error("upload_person"))?;
        let target =
            inside(&self.dirs.uploads, &person.folder).map_err(io_error("upload_person"))?;
        let latency = Duration::from_millis(self.config.upload_latency_ms);
        let upload = || upload_folder(&source, &target, latency);
        if !self.io_in_tx() {
            upload().map_err(io_error("upload_person"))?;
        }
        let batch_id = self.batch_id;
        self.write("upload_person", |tx| {
            tx.query_i64(
                "SELECT upload_state FROM persons WHERE id = ?1",
                &[Value::Int(person.id)],
            )?;
            tx.execute(
                "UPDATE persons SET upload_state = 'uploaded' WHERE id = ?1",
                &[Value::Int(person.id)],
            )?;
            tx.execute(
                "UPDATE batches SET uploaded = uploaded + 1 WHERE id = ?1",
                &[Value::Int(batch_id)],
            )?;
            log_action(
                tx,
                batch_id,
                "upload",
                None,
                &format!("person {}", person.id),
            )?;
            if self.io_in_tx() {
                upload().map_err(io_error("upload_person"))?;
            }
            Ok(())
        })
    }

    /// A passive checkpoint after each person in WAL mode, its result counted.
    fn checkpoint(&self) {
        if self.store.config().journal_mode != JournalMode::Wal {
            return;
        }
        match self.store.checkpoint_passive() {
            Ok(true) => self
                .metrics
                .processor
                .checkpoints_ok
                .fetch_add(1, Ordering::Relaxed),
            _ => self
                .metrics
                .processor
                .checkpoints_busy
                .fetch_add(1, Ordering::Relaxed),
        };
    }

    fn finish_batch(&self) {
        let batch_id = self.batch_id;
        let result = self.write("finish_batch", |tx| {
            tx.query_i64("SELECT processed FROM batches WHERE id = ?1", &[Value::Int(batch_id)])?;
            tx.execute(
                "UPDATE batches SET status = 'done', current_photo = NULL, finished_at = strftime('%Y-%m-%dT%H:%M:%fZ','now'), updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
                &[Value::Int(batch_id)],
            )?;
            log_action(tx, batch_id, "batch_done", None, "")
        });
        match result {
            Ok(()) => info!("batch done"),
            Err(e) => warn!(error = %e, "could not mark the batch done"),
        }
    }
}

/// What the QR codes of one photo mean to the processor.
#[derive(Debug, PartialEq, Eq)]
enum QrMeaning {
    /// No QR code: a regular photo.
    None,
    /// Exactly one registration code, well formed: the photo starts that person.
    Registration(String),
    /// Only codes that are not registrations (a poster, a URL): a regular photo, with a note.
    Foreign(String),
    /// A registration code that is malformed, or several different ones: the photo is failed
    /// with this reason, since it cannot say whose it is.
    Refused(String),
}

fn qr_meaning(payloads: &[String]) -> QrMeaning {
    let (registrations, foreign): (Vec<&String>, Vec<&String>) = payloads
        .iter()
        .partition(|p| p.starts_with(photos::QR_PREFIX));
    match registrations.as_slice() {
        [] if foreign.is_empty() => QrMeaning::None,
        [] => QrMeaning::Foreign(format!(
            "QR code ignored: {}",
            foreign
                .iter()
                .map(|p| photos::registration_email(p).unwrap_err())
                .collect::<Vec<_>>()
                .join("; ")
        )),
        [one] => match photos::registration_email(one) {
            Ok(_) => QrMeaning::Registration((*one).clone()),
            Err(reason) => QrMeaning::Refused(reason),
        },
        several => QrMeaning::Refused(format!(
            "{} registration QR codes in one photo ({}): cannot tell whose photo it is",
            several.len(),
            several
                .iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn folder_of(store: &Store, person_id: i64) -> Result<String, DbError> {
    store.read("person_folder", |tx| {
        let rows = tx.query(
            "SELECT folder FROM persons WHERE id = ?1",
            &[Value::Int(person_id)],
        )?;
        Ok(rows
            .first()
            .and_then(|r| r[0].as_str())
            .map_or_else(|| format!("{person_id:05}-person"), str::to_owned))
    })
}

fn io_error(op: &'static str) -> impl Fn(String) -> DbError {
    move |message| DbError::Driver {
        op: op.to_owned(),
        message,
    }
}

/// _log_action.
fn log_action(
    tx: &mut dyn Tx,
    batch_id: i64,
    action: &str,
    photo: Option<&str>,
    detail: &str,
) -> Result<(), DbError> {
    let text = match photo {
        Some(p) => format!("{p}: {detail}"),
        None => detail.to_owned(),
    };
    tx.insert(
        "INSERT INTO processing_log (batch_id, action, detail) VALUES (?1, ?2, ?3)",
        &[Value::Int(batch_id), Value::from(action), Value::from(text)],
    )
    .map(|_| ())
}

/// _update_batch_status.
fn update_batch_status(tx: &mut dyn Tx, batch_id: i64, photo: &str) -> Result<(), DbError> {
    tx.query_i64(
        "SELECT processed FROM batches WHERE id = ?1",
        &[Value::Int(batch_id)],
    )?;
    tx.execute(
        "UPDATE batches SET processed = processed + 1, current_photo = ?2, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
        &[Value::Int(batch_id), Value::from(photo)],
    )
    .map(|_| ())
}

/// Copies a person's photos into their folder with a metadata file.
fn copy_photos(
    photos: &[PathBuf],
    folder: &Path,
    person_id: i64,
    latency: Duration,
) -> Result<(), String> {
    real_folder(folder)?;
    let mut names = Vec::with_capacity(photos.len());
    for photo in photos {
        let name = file_name_of(photo);
        let target = inside(folder, &name)?;
        copy_file(photo, &target, &format!("copying {name}"))?;
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        names.push(name);
    }
    let metadata = serde_json::json!({"person_id": person_id, "photos": names});
    let path = inside(folder, "metadata.json")?;
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&path).map_err(|e| format!("removing {}: {e}", path.display()))?;
    }
    std::fs::write(&path, metadata.to_string())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Copies a person's folder into the upload folder, `latency` per file (the Drive upload).
fn upload_folder(source: &Path, target: &Path, latency: Duration) -> Result<(), String> {
    real_folder(target)?;
    let entries =
        std::fs::read_dir(source).map_err(|e| format!("reading {}: {e}", source.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    files.sort();
    for file in files {
        let name = file_name_of(&file);
        let dest = inside(target, &name)?;
        copy_file(&file, &dest, &format!("uploading {name}"))?;
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_disk_cannot_escape_their_folder() {
        let dir = Path::new("/out");
        assert!(inside(dir, "../etc/passwd").is_err());
        assert!(inside(dir, "..").is_err());
        assert!(inside(dir, "a/b.jpg").is_err());
        assert!(inside(dir, "").is_err());
        assert_eq!(
            inside(dir, "IMG_0001.jpg").unwrap(),
            Path::new("/out/IMG_0001.jpg")
        );
        assert_eq!(slug("../../Ada Lovelace!"), "ada-lovelace");
        assert_eq!(slug("///"), "person");
        assert!(inside(dir, "a\\..\\b.jpg")
            .unwrap_err()
            .contains("separator"));
        assert_eq!(
            inside(dir, "Café ü 写真 (1).jpg").unwrap(),
            Path::new("/out/Café ü 写真 (1).jpg")
        );
        assert_eq!(inside(dir, "..jpg").unwrap(), Path::new("/out/..jpg"));
    }

    #[test]
    fn qr_codes_mean_a_person_only_when_there_is_one_well_formed_registration() {
        let reg = |e: &str| format!("{}{e}", photos::QR_PREFIX);
        let of = |p: &[String]| qr_meaning(p);
        assert_eq!(of(&[]), QrMeaning::None);
        assert_eq!(
            of(&[reg("ada@example.org")]),
            QrMeaning::Registration(reg("ada@example.org"))
        );
        // A registration beside a poster's code still starts the person.
        assert_eq!(
            of(&["https://example.org".into(), reg("ada@example.org")]),
            QrMeaning::Registration(reg("ada@example.org"))
        );
        match of(&["https://example.org".into()]) {
            QrMeaning::Foreign(note) => {
                assert!(note.contains("https://example.org"), "{note}");
                assert!(note.contains("not a registration"), "{note}");
            }
            other => panic!("{other:?}"),
        }
        for bad in ["", "nobody", "@example.org", "ada@", "a b@example.org"] {
            match of(&[reg(bad)]) {
                QrMeaning::Refused(reason) => {
                    assert!(reason.contains("malformed registration"), "{reason}");
                    assert!(reason.contains(&format!("{bad:?}")), "{reason}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        match of(&[reg("ada@example.org"), reg("bob@example.org")]) {
            QrMeaning::Refused(reason) => {
                assert!(reason.starts_with("2 registration QR codes"), "{reason}");
                assert!(reason.contains("bob@example.org"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
