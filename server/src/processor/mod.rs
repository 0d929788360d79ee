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
//!
//! Every write it is told succeeded (a photo recorded, a photo recorded as failed, an upload)
//! is acknowledged in an append-only file ([`acks`]) that the runner's audit reads.
//!
//! A batch is processed by whoever holds its claim ([`claim::claim_batch`]); [`start_batch`]
//! takes the claim and runs [`process_batch`] on a thread of its own, releasing the claim
//! when the batch is done.
//!
//! Reports what it does through [`ProcessorEvents`]; never depends on the HTTP layer or its
//! metrics.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use tracing::{info_span, Span};

use crate::storage::Store;
use acks::AckLog;

pub mod acks;
pub mod claim;
mod decode;
mod files;
mod units;

pub use claim::{claim_batch, Claim, ClaimError};
pub use decode::scan_photos;

use decode::decode_in_order;
use units::Processor;
#[cfg(test)]
use {files::*, units::*};

/// What the processor reports while it runs, so that whoever started it (the server's
/// metrics, a bench) can count it. The processor calls these from its own thread; they must
/// not block for long.
pub trait ProcessorEvents: Send + Sync {
    /// The batch's processor started running in this worker.
    fn batch_running(&self, batch_id: i64);
    /// The batch's processor stopped running here, finished or not (a panic included).
    fn batch_stopped(&self, batch_id: i64);
    /// The batch has `total` photos to go through.
    fn batch_started(&self, batch_id: i64, total: u64);
    /// `done` photos of the batch have been handled so far.
    fn batch_progress(&self, batch_id: i64, done: u64);
    /// The processor's run over the batch ended (whether or not its last writes landed).
    fn batch_finished(&self, batch_id: i64);
    /// A photo's unit of work committed.
    fn photo_processed(&self);
    /// A photo's unit of work failed even after its retries (the photo is then marked failed).
    fn unit_failed(&self);
    /// A photo was recorded as failed.
    fn photo_failed(&self);
    /// A failure record could not be written either.
    fn failure_record_lost(&self);
    /// A person was saved.
    fn person_saved(&self);
    /// A person's folder was uploaded.
    fn person_uploaded(&self);
    /// A passive WAL checkpoint ran; `completed` is false when it was busy or failed.
    fn checkpoint(&self, completed: bool);
    /// An acknowledgement could not be written to the acks file (`acks`): the audit will not
    /// look for that write.
    fn ack_unwritten(&self) {}
}

/// Shared events report through what they share.
impl<T: ProcessorEvents + ?Sized> ProcessorEvents for Arc<T> {
    fn batch_running(&self, batch_id: i64) {
        (**self).batch_running(batch_id);
    }
    fn batch_stopped(&self, batch_id: i64) {
        (**self).batch_stopped(batch_id);
    }
    fn batch_started(&self, batch_id: i64, total: u64) {
        (**self).batch_started(batch_id, total);
    }
    fn batch_progress(&self, batch_id: i64, done: u64) {
        (**self).batch_progress(batch_id, done);
    }
    fn batch_finished(&self, batch_id: i64) {
        (**self).batch_finished(batch_id);
    }
    fn photo_processed(&self) {
        (**self).photo_processed();
    }
    fn unit_failed(&self) {
        (**self).unit_failed();
    }
    fn photo_failed(&self) {
        (**self).photo_failed();
    }
    fn failure_record_lost(&self) {
        (**self).failure_record_lost();
    }
    fn person_saved(&self) {
        (**self).person_saved();
    }
    fn person_uploaded(&self) {
        (**self).person_uploaded();
    }
    fn checkpoint(&self, completed: bool) {
        (**self).checkpoint(completed);
    }
    fn ack_unwritten(&self) {
        (**self).ack_unwritten();
    }
}

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
    #[arg(long, value_enum, default_value_t = ProcessorConfig::default().commit_granularity)]
    pub commit_granularity: CommitGranularity,
    /// on: copying and uploading happen inside the step's open write transaction.
    #[arg(long, value_enum, default_value_t = ProcessorConfig::default().io_in_transaction)]
    pub io_in_transaction: Switch,
    /// Latency per uploaded file, standing in for the Drive upload.
    #[arg(long, default_value_t = ProcessorConfig::default().upload_latency_ms)]
    pub upload_latency_ms: u64,
    /// How long the processor keeps running a unit of work again that failed on a lock (after
    /// the retry policy gave up) before it gives up on that step: a background job can wait
    /// out a backup or a migration instead of dropping a photo. 0: it gives up at once, as
    /// the incident's processor did.
    #[arg(long, default_value_t = ProcessorConfig::default().lock_wait_ms)]
    pub lock_wait_ms: u64,
}

/// Where the processor writes: per-person folders, the upload folder, the batches' claim
/// files ([`claim`]), and its acknowledgements ([`acks`]).
#[derive(Debug, Clone)]
pub struct DataDirs {
    pub persons: PathBuf,
    pub uploads: PathBuf,
    pub batches: PathBuf,
    /// The acks file, `<root>/processor-acks.jsonl` ([`acks::ACKS_FILE`]).
    pub acks: PathBuf,
}

impl DataDirs {
    pub fn under(root: &Path) -> DataDirs {
        DataDirs {
            persons: root.join("persons"),
            uploads: root.join("uploads"),
            batches: root.join("batches"),
            acks: root.join(acks::ACKS_FILE),
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

/// Runs one batch to the end. Returns the number of photos processed in this run.
pub fn process_batch(
    store: &Store,
    config: &ProcessorConfig,
    dirs: &DataDirs,
    batch_id: i64,
    photos: Vec<PathBuf>,
    events: &dyn ProcessorEvents,
) -> u64 {
    let span = info_span!("processor", batch = batch_id);
    let _enter = span.enter();
    let _running = Running::start(events, batch_id);
    let total = photos.len() as u64;
    events.batch_started(batch_id, total);
    let mut proc = Processor {
        store,
        config,
        dirs,
        batch_id,
        current: None,
        events,
        acks: AckLog::open(&dirs.acks),
    };
    proc.log_or_warn("batch_started", None, &format!("{total} photos"));

    let mut done = 0;
    decode_in_order(&photos, |decoded| {
        proc.photo(decoded);
        done += 1;
        events.batch_progress(batch_id, done);
    });
    proc.finish_person();
    proc.finish_batch();
    events.batch_finished(batch_id);
    done
}

/// Runs the claimed batch to the end on a thread of its own (`processor-<id>`, in the
/// caller's tracing span), and releases the claim only after the batch was marked done.
/// The thread returns what [`process_batch`] returns; an error is a thread that could not be
/// started (the claim is then released at once).
pub fn start_batch(
    claim: Claim,
    store: Store,
    config: Arc<ProcessorConfig>,
    dirs: Arc<DataDirs>,
    photos: Vec<PathBuf>,
    events: Arc<dyn ProcessorEvents>,
) -> std::io::Result<JoinHandle<u64>> {
    let batch_id = claim.batch_id();
    let span = Span::current();
    std::thread::Builder::new()
        .name(format!("processor-{batch_id}"))
        .spawn(move || {
            let _enter = span.enter();
            let done = process_batch(&store, &config, &dirs, batch_id, photos, events.as_ref());
            drop(claim);
            done
        })
}

/// Tells the events that a batch's processor runs in this worker while it lives (a panic
/// included).
struct Running<'a> {
    events: &'a dyn ProcessorEvents,
    batch_id: i64,
}

impl<'a> Running<'a> {
    fn start(events: &'a dyn ProcessorEvents, batch_id: i64) -> Running<'a> {
        events.batch_running(batch_id);
        Running { events, batch_id }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.events.batch_stopped(self.batch_id);
    }
}

#[cfg(test)]
mod tests;
