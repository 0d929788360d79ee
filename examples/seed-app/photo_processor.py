"""The background photo processor, committing to SQLite at every step as the incident did.

For each file of the batch folder, in name order: read it, decode it with Pillow and look
for QR codes (zxing-cpp). A QR code whose payload starts with LOCKBENCH-REG: saves and
uploads the previous person and starts a new one; any other photo is assigned to the
current person; a file that does not decode is recorded as failed. After every file a
processing_log row and the batch counters are written, each in its own commit.

In fix mode every commit goes through db_commit_with_retry(), the write-up's retry,
including its flaw: after a failed commit it rolls back and commits again, and that
second commit has nothing left to write, so it "succeeds" and the write is lost.
"""
import hashlib
import io
import json
import logging
import os
import shutil
import time

import zxingcpp
from PIL import Image
from sqlalchemy.exc import OperationalError

import settings
from app import Batch, Person, Photo, ProcessingLog, Registration, db, first_line, is_lock_error, utcnow

logger = logging.getLogger(__name__)

QR_PREFIX = "LOCKBENCH-REG:"


def list_photos(source_dir):
    """The batch's files in name order: regular files, without manifest.json and dot files."""
    names = []
    for name in sorted(os.listdir(source_dir)):
        if name == "manifest.json" or name.startswith("."):
            continue
        if os.path.isfile(os.path.join(source_dir, name)):
            names.append(name)
    return names


def db_commit_with_retry(max_retries=5, initial_delay=0.5):
    """The write-up's commit retry: up to 5 retries, waiting 0.5, 1, 2, 4, 8 s.

    On "database is locked" it rolls the session back and commits again. The rollback
    discards the pending changes, so the retried commit has nothing to write and returns
    as a success: the write is silently lost.
    """
    delay = initial_delay
    for attempt in range(max_retries + 1):
        try:
            db.session.commit()
            return True
        except OperationalError as e:
            if "database is locked" in str(e) and attempt < max_retries:
                logger.warning(
                    f"Database locked, retrying commit in {delay:g}s "
                    f"(attempt {attempt + 1}/{max_retries}): {first_line(e)}"
                )
                db.session.rollback()
                time.sleep(delay)
                delay *= 2
            else:
                db.session.rollback()
                raise
    return False


def commit():
    if settings.FIX:
        db_commit_with_retry()
    else:
        db.session.commit()


def scan_qr(data):
    """Decodes the image; returns the payloads of the QR codes found (raises if corrupt)."""
    if not data:
        raise ValueError("empty file")
    image = Image.open(io.BytesIO(data))
    image.load()  # decode now: a truncated file raises here
    gray = image.convert("L")
    results = zxingcpp.read_barcodes(gray, formats=zxingcpp.BarcodeFormat.QRCode)
    return [r.text for r in results if r.valid]


def folder_name(email):
    return "".join(c if c.isalnum() or c in "@.-_+" else "_" for c in email) or "person"


class PhotoProcessor:
    def __init__(self, batch_id, source_dir, photos):
        self.batch_id = batch_id
        self.source_dir = source_dir
        self.photos = photos
        self.current_person = None
        self.current_photos = []  # paths of the current person's photos

    # -- entry point --------------------------------------------------------------------

    def run(self):
        started = time.monotonic()
        try:
            for name in self.photos:
                self._process_photo(name)
            self._save_current_person()
            batch = db.session.get(Batch, self.batch_id)
            batch.status = "done"
            batch.finished_at = utcnow()
            commit()
            logger.info(
                f"batch {self.batch_id} done: {len(self.photos)} files "
                f"in {time.monotonic() - started:.1f}s"
            )
        except Exception as e:
            # The end of the processor thread: one line, no traceback.
            if isinstance(e, OperationalError) and is_lock_error(e):
                logger.error(f"lock error in processor of batch {self.batch_id}, stopping: {first_line(e)}")
            else:
                logger.error(
                    f"processor of batch {self.batch_id} stopped: {type(e).__name__}: {first_line(e)}"
                )
            self._mark_failed()
        finally:
            db.session.remove()

    def _mark_failed(self):
        try:
            db.session.rollback()
            batch = db.session.get(Batch, self.batch_id)
            batch.status = "failed"
            batch.finished_at = utcnow()
            db.session.commit()
        except Exception as e:
            db.session.rollback()
            kind = "lock error" if is_lock_error(e) else type(e).__name__
            logger.error(f"could not mark batch {self.batch_id} failed ({kind}): {first_line(e)}")

    # -- one photo ----------------------------------------------------------------------

    def _process_photo(self, name):
        path = os.path.join(self.source_dir, name)
        content_hash = None
        try:
            with open(path, "rb") as f:
                data = f.read()
            content_hash = hashlib.sha256(data).hexdigest()
            payloads = scan_qr(data)
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"[:500]
            self._record_failed(name, content_hash, reason)
            self._log_action("photo_failed", name, reason)
            self._update_batch_status(failed=True)
            return

        payload = next((p for p in payloads if p.startswith(QR_PREFIX)), None)
        if payload is not None:
            self._save_current_person()
            self._start_new_person(payload, name, content_hash)
            self._log_action("new_person", name, payload)
        else:
            self._assign_to_current_person(name, content_hash, path)
            self._log_action("photo_assigned" if self.current_person else "photo_unassigned", name, None)
        self._update_batch_status(failed=False)

    # -- the steps, each with its own commit ---------------------------------------------

    def _log_action(self, action, file_name, detail):
        db.session.add(
            ProcessingLog(batch_id=self.batch_id, action=action, file_name=file_name, detail=detail)
        )
        commit()

    def _update_batch_status(self, failed):
        batch = db.session.get(Batch, self.batch_id)
        batch.processed += 1
        if failed:
            batch.failed += 1
        commit()

    def _record_failed(self, name, content_hash, reason):
        db.session.add(
            Photo(
                batch_id=self.batch_id,
                file_name=name,
                content_hash=content_hash,
                status="failed",
                error=reason,
            )
        )
        commit()

    def _start_new_person(self, payload, name, content_hash):
        email = payload[len(QR_PREFIX):]
        registration = Registration.query.filter_by(email=email).first()
        person = Person(
            batch_id=self.batch_id,
            email=email,
            qr_payload=payload,
            registration_id=registration.id if registration else None,
        )
        batch = db.session.get(Batch, self.batch_id)
        batch.persons += 1
        db.session.add(person)
        commit()
        self.current_person = person
        self.current_photos = []

        # The QR photo itself.
        db.session.add(
            Photo(
                batch_id=self.batch_id,
                file_name=name,
                content_hash=content_hash,
                status="qr",
                person_id=person.id,
            )
        )
        commit()

    def _assign_to_current_person(self, name, content_hash, path):
        person = self.current_person
        db.session.add(
            Photo(
                batch_id=self.batch_id,
                file_name=name,
                content_hash=content_hash,
                status="assigned" if person is not None else "unassigned",
                person_id=person.id if person is not None else None,
            )
        )
        commit()
        if person is not None:
            self.current_photos.append(path)

    def _save_current_person(self):
        person = self.current_person
        if person is None:
            return
        email = person.email
        folder = os.path.join(settings.OUTPUT_DIR, f"batch-{self.batch_id}", folder_name(email))
        os.makedirs(folder, exist_ok=True)

        # Copy the photos.
        for path in self.current_photos:
            shutil.copy(path, folder)
        person.folder = folder
        person.photo_count = len(self.current_photos)
        person.upload_state = "copied"
        commit()

        # Write the metadata file.
        metadata_file = os.path.join(folder, "metadata.json")
        with open(metadata_file, "w") as f:
            json.dump(
                {
                    "batch_id": self.batch_id,
                    "email": email,
                    "person_id": person.id,
                    "registration_id": person.registration_id,
                    "photos": [os.path.basename(p) for p in self.current_photos],
                },
                f,
                indent=2,
            )
        person.metadata_file = metadata_file
        person.upload_state = "saved"
        commit()

        self._upload_person(person)
        self.current_person = None
        self.current_photos = []

    def _upload_person(self, person):
        time.sleep(0.05)  # stands in for the Google Drive upload
        batch = db.session.get(Batch, self.batch_id)
        batch.uploaded += 1
        person.upload_state = "uploaded"
        commit()
        self._log_action("uploaded", None, person.email)
