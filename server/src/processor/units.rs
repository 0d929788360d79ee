//! The processor's write units of work, one per step of the incident's app (start a person,
//! assign a photo, record a failure, save, upload, finish the batch), each run with the
//! store's patience of `lock_wait_ms` (`Store::write_patiently`). Reports what happened through `ProcessorEvents`; never knows
//! about HTTP or the metrics page.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, info_span, warn};

use super::acks::{Ack, AckKind, AckLog};
use super::decode::{Decoded, Named};
use super::files::*;
use super::{DataDirs, ProcessorConfig, ProcessorEvents, Switch};
use crate::now_sql;
use crate::photos::{self, Scan};
use crate::storage::{DbError, JournalMode, Store, Tx, Value};
use crate::text::{log_safe, LogSafe};

/// The person whose photos are being collected.
#[derive(Debug, Clone)]
pub(super) struct Person {
    id: i64,
    folder: String,
    photos: Vec<PathBuf>,
}

pub(super) struct Processor<'a> {
    pub(super) store: &'a Store,
    pub(super) config: &'a ProcessorConfig,
    pub(super) dirs: &'a DataDirs,
    pub(super) batch_id: i64,
    pub(super) current: Option<Person>,
    pub(super) events: &'a dyn ProcessorEvents,
    pub(super) acks: AckLog,
}

pub(super) type Step<'s> = Box<dyn FnMut(&mut dyn Tx) -> Result<(), DbError> + 's>;

impl Processor<'_> {
    /// A write unit of work, run again by the store while it fails on a lock, for up to
    /// `lock_wait_ms` (`Store::write_patiently`: each lock error counted and logged once,
    /// each new try a retry, the unit ok or failed once).
    fn write<T>(
        &self,
        op: &str,
        work: impl FnMut(&mut dyn Tx) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let patience = Duration::from_millis(self.config.lock_wait_ms);
        self.store.write_patiently(op, patience, work)
    }

    fn io_in_tx(&self) -> bool {
        self.config.io_in_transaction == Switch::On
    }

    /// Runs the photo's steps: each its own unit of work, or all in one. The first step
    /// records the photo: `recorded` is called right after the unit of work that holds it
    /// returned success (the first step's, or the whole photo's), before anything else.
    fn run_steps(
        &self,
        steps: Vec<(&'static str, Step<'_>)>,
        recorded: impl FnOnce(),
    ) -> Result<(), DbError> {
        match self.config.commit_granularity {
            crate::processor::CommitGranularity::PerStep => {
                let mut recorded = Some(recorded);
                for (op, mut step) in steps {
                    self.write(op, |tx| step(tx))?;
                    if let Some(recorded) = recorded.take() {
                        recorded();
                    }
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
                })?;
                recorded();
                Ok(())
            }
        }
    }

    /// Writes one acknowledgement (see `acks`); one that cannot be written is reported.
    fn ack(&self, kind: AckKind, key: &str, file_name: Option<&str>, person_id: Option<i64>) {
        let ack = Ack {
            batch_id: self.batch_id,
            kind,
            key: key.to_owned(),
            file_name: file_name.map(str::to_owned),
            person_id,
        };
        if !self.acks.append(&ack) {
            self.events.ack_unwritten();
        }
    }

    pub(super) fn log_or_warn(&self, action: &str, photo: Option<&str>, detail: &str) {
        let batch_id = self.batch_id;
        let result = self.write("log_action", |tx| {
            log_action(tx, batch_id, action, photo, detail)
        });
        if let Err(e) = result {
            warn!(action, error = %LogSafe(&e), "could not write the processing log");
        }
    }

    pub(super) fn photo(&mut self, decoded: Decoded) {
        let span = info_span!("photo", name = %log_safe(&decoded.name));
        let _enter = span.enter();
        let Decoded { path, name, result } = decoded;
        let decoded = Named { path, name };
        if let Err(reason) = inside(Path::new(""), &decoded.name) {
            // Never copied anywhere: the name could not be written safely.
            info!(reason = %log_safe(&reason), "photo refused by name");
            self.record_failed(&decoded.name, None, &reason);
            return;
        }
        let scan = match result {
            Ok(scan) => scan,
            Err(reason) => {
                info!(reason = %log_safe(&reason), "photo failed to decode");
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
                info!(reason = %log_safe(&reason), "photo's QR code refused");
                self.record_failed(&decoded.name, Some(&scan.content_hash), &reason);
                return;
            }
        };
        match outcome {
            Ok(()) => {
                self.events.photo_processed();
            }
            Err(e) => {
                self.events.unit_failed();
                warn!(error = %LogSafe(&e), "photo's unit of work failed; marking it failed");
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
        let person_id = std::cell::Cell::new(0_i64);
        let mut folder = String::new();
        {
            let person_id = &person_id;
            let folder = &mut folder;
            let steps: Vec<(&'static str, Step<'_>)> = vec![
                (
                    "start_new_person",
                    Box::new(|tx: &mut dyn Tx| {
                        let (id, dir) = record_new_person(tx, batch_id, &payload, &name, &hash)?;
                        person_id.set(id);
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
            self.run_steps(steps, || {
                self.ack(AckKind::Photo, &hash, Some(&name), Some(person_id.get()))
            })?;
        }
        self.current = Some(Person {
            id: person_id.get(),
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
        self.run_steps(steps, || {
            self.ack(AckKind::Photo, &hash, Some(&name), person_id)
        })?;
        if let Some(p) = self.current.as_mut() {
            p.photos.push(decoded.path.clone());
        }
        Ok(())
    }

    /// A photo that could not be processed: recorded as failed, with the reason.
    fn record_failed(&self, name: &str, hash: Option<&str>, reason: &str) {
        self.events.photo_failed();
        let batch_id = self.batch_id;
        // Undecodable files have no trustworthy content; key them by batch and name.
        let key = hash.map_or_else(|| format!("failed:{batch_id}:{name}"), str::to_owned);
        // Returns whether this unit recorded the photo (false: it was recorded before).
        let result = self.write("record_failed_photo", |tx| {
            let exists = tx.query_i64("SELECT id FROM photos WHERE content_hash = ?1", &[Value::from(key.as_str())])?;
            if exists.is_none() {
                tx.insert(
                    "INSERT INTO photos (batch_id, file_name, content_hash, status, error) VALUES (?1, ?2, ?3, 'failed', ?4)",
                    &[Value::Int(batch_id), Value::from(name), Value::from(key.as_str()), Value::from(reason)],
                )?;
                tx.execute(
                    concat!("UPDATE batches SET failed = failed + 1, processed = processed + 1, current_photo = ?2, updated_at = ", now_sql!(), " WHERE id = ?1"),
                    &[Value::Int(batch_id), Value::from(name)],
                )?;
            }
            log_action(tx, batch_id, "photo_failed", Some(name), reason)?;
            Ok(exists.is_none())
        });
        if let Ok(true) = result {
            self.ack(AckKind::FailedPhoto, &key, Some(name), None);
        }
        if let Err(e) = result {
            self.events.failure_record_lost();
            warn!(photo = %log_safe(name), error = %LogSafe(&e), "could not record the failed photo");
        }
    }

    /// _save_current_person and the upload step for the person being collected.
    pub(super) fn finish_person(&mut self) {
        let Some(person) = self.current.take() else {
            return;
        };
        // A re-run (second POST, or after a crash) leaves a finished person as it is.
        if matches!(self.person_state(person.id).as_deref(), Ok("uploaded")) {
            return;
        }
        if let Err(e) = self.save_person(&person) {
            warn!(person = person.id, error = %LogSafe(&e), "saving the person failed");
            return;
        }
        self.events.person_saved();
        if let Err(e) = self.upload_person(&person) {
            warn!(person = person.id, error = %LogSafe(&e), "uploading the person failed");
            return;
        }
        self.ack(
            AckKind::Upload,
            &person.id.to_string(),
            None,
            Some(person.id),
        );
        self.events.person_uploaded();
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
        let completed = matches!(self.store.checkpoint_passive(), Ok(true));
        self.events.checkpoint(completed);
    }

    pub(super) fn finish_batch(&self) {
        let batch_id = self.batch_id;
        let result = self.write("finish_batch", |tx| {
            tx.query_i64(
                "SELECT processed FROM batches WHERE id = ?1",
                &[Value::Int(batch_id)],
            )?;
            tx.execute(
                concat!(
                    "UPDATE batches SET status = 'done', current_photo = NULL, finished_at = ",
                    now_sql!(),
                    ", updated_at = ",
                    now_sql!(),
                    " WHERE id = ?1"
                ),
                &[Value::Int(batch_id)],
            )?;
            log_action(tx, batch_id, "batch_done", None, "")
        });
        match result {
            Ok(()) => info!("batch done"),
            Err(e) => warn!(error = %LogSafe(&e), "could not mark the batch done"),
        }
    }
}

/// What the QR codes of one photo mean to the processor.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum QrMeaning {
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

pub(super) fn qr_meaning(payloads: &[String]) -> QrMeaning {
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

pub(super) fn folder_of(store: &Store, person_id: i64) -> Result<String, DbError> {
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

pub(super) fn io_error(op: &'static str) -> impl Fn(String) -> DbError {
    move |message| DbError::Driver {
        op: op.to_owned(),
        message,
    }
}

/// _log_action.
/// The first step of `start_new_person`: the person of `payload` in this batch (created,
/// and counted in the batch, the first time; tied to its registration, if any), its folder
/// name, and the QR photo recorded as theirs. Returns the person's id and folder.
fn record_new_person(
    tx: &mut dyn Tx,
    batch_id: i64,
    payload: &str,
    name: &str,
    hash: &str,
) -> Result<(i64, String), DbError> {
    let reg = tx.query(
        "SELECT id, name FROM registrations WHERE qr_payload = ?1",
        &[Value::from(payload)],
    )?;
    let (reg_id, reg_name) = match reg.first() {
        Some(r) => (r[0].as_i64(), r[1].as_str().unwrap_or("person").to_owned()),
        None => (None, "unregistered".to_owned()),
    };
    let existing = tx.query_i64(
        "SELECT id FROM persons WHERE batch_id = ?1 AND qr_payload = ?2",
        &[Value::Int(batch_id), Value::from(payload)],
    )?;
    let id = match existing {
        Some(id) => id,
        None => {
            let id = tx.insert(
                "INSERT INTO persons (batch_id, registration_id, qr_payload) VALUES (?1, ?2, ?3)",
                &[Value::Int(batch_id), reg_id.into(), Value::from(payload)],
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
        &[Value::Int(batch_id), Value::Int(id), Value::from(name), Value::from(hash)],
    )?;
    Ok((id, dir))
}

pub(super) fn log_action(
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
pub(super) fn update_batch_status(
    tx: &mut dyn Tx,
    batch_id: i64,
    photo: &str,
) -> Result<(), DbError> {
    tx.query_i64(
        "SELECT processed FROM batches WHERE id = ?1",
        &[Value::Int(batch_id)],
    )?;
    tx.execute(
        concat!(
            "UPDATE batches SET processed = processed + 1, current_photo = ?2, updated_at = ",
            now_sql!(),
            " WHERE id = ?1"
        ),
        &[Value::Int(batch_id), Value::from(photo)],
    )
    .map(|_| ())
}
