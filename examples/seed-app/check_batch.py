#!/usr/bin/env python3
"""Compares what the seed app recorded for a photo batch with the batch's manifest.json.

Usage: check_batch.py --db PATH --photos DIR [--batch ID] [--output DIR] [--quiet]

The batch is the latest one whose source_dir is DIR (or --batch). Checks, against the
manifest written by `lockbench photos`:
  - the batch row: status done, processed = files, failed = corrupt files,
    persons and uploaded = people;
  - one person row per person of the manifest, in order, with its QR payload, uploaded;
  - one photo row per file: a QR photo 'qr', a photo 'assigned' to its person (or
    'unassigned' before the first QR photo), a corrupt file 'failed'; content hashes;
  - the copied files: <output>/batch-<id>/<email>/ holds exactly the person's photos
    (output defaults to <dirname(db)>/output, as the app uses).
Prints one line per mismatch and a summary; exits 0 if none, 1 if any, 2 on usage errors.
Standard library only, so any python3 can run it.
"""
import argparse
import json
import os
import sqlite3
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="the app's SQLite file")
    parser.add_argument("--photos", required=True, help="the batch folder (holds manifest.json)")
    parser.add_argument("--batch", type=int, help="batch id (default: the latest for --photos)")
    parser.add_argument("--output", help="the app's output folder (default: <dirname(db)>/output)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    args = parser.parse_args()

    photos_dir = os.path.abspath(args.photos)
    manifest_path = os.path.join(photos_dir, "manifest.json")
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        print(f"cannot read {manifest_path}: {e}", file=sys.stderr)
        return 2
    if not os.path.exists(args.db):
        print(f"no database at {args.db}", file=sys.stderr)
        return 2
    output_dir = args.output or os.path.join(os.path.dirname(os.path.abspath(args.db)), "output")

    db = sqlite3.connect(f"file:{os.path.abspath(args.db)}?mode=ro", uri=True, timeout=30)
    db.row_factory = sqlite3.Row

    if args.batch is not None:
        batch = db.execute("SELECT * FROM batch WHERE id = ?", (args.batch,)).fetchone()
    else:
        batch = db.execute(
            "SELECT * FROM batch WHERE source_dir = ? ORDER BY id DESC LIMIT 1", (photos_dir,)
        ).fetchone()
    if batch is None:
        print(f"no batch for {photos_dir} in {args.db}", file=sys.stderr)
        return 2
    batch_id = batch["id"]

    problems = []

    def problem(text):
        problems.append(text)
        if not args.quiet:
            print(f"MISMATCH batch {batch_id}: {text}")

    people = manifest["people"]
    files = manifest["files"]
    corrupt = sum(1 for f in files if f["kind"] == "corrupt")

    # The batch row.
    expected = {
        "status": "done",
        "total": len(files),
        "processed": len(files),
        "failed": corrupt,
        "persons": len(people),
        "uploaded": len(people),
    }
    for column, value in expected.items():
        if batch[column] != value:
            problem(f"batch.{column} is {batch[column]!r}, expected {value!r}")

    # Persons, in shooting order.
    persons = db.execute(
        "SELECT * FROM person WHERE batch_id = ? ORDER BY id", (batch_id,)
    ).fetchall()
    if len(persons) != len(people):
        problem(f"{len(persons)} person rows, expected {len(people)}")
    person_by_email = {}
    for row in persons:
        if row["email"] in person_by_email:
            problem(f"person {row['email']} recorded twice (ids {person_by_email[row['email']]['id']} and {row['id']})")
        person_by_email.setdefault(row["email"], row)
    for i, p in enumerate(people):
        row = person_by_email.get(p["email"])
        if row is None:
            problem(f"person {p['email']} (QR photo {p['qr_photo']}) not found")
            continue
        if i < len(persons) and persons[i]["email"] != p["email"]:
            problem(f"person #{i + 1} is {persons[i]['email']}, expected {p['email']}")
        if row["qr_payload"] != p["qr_payload"]:
            problem(f"person {p['email']}: qr_payload {row['qr_payload']!r}, expected {p['qr_payload']!r}")
        if row["upload_state"] != "uploaded":
            problem(f"person {p['email']}: upload_state {row['upload_state']!r}, expected 'uploaded'")
        if row["photo_count"] != len(p["photos"]):
            problem(f"person {p['email']}: photo_count {row['photo_count']}, expected {len(p['photos'])}")
    for email in person_by_email:
        if email not in {p["email"] for p in people}:
            problem(f"person {email} is not in the manifest")

    # Photos.
    person_email_by_id = {row["id"]: row["email"] for row in persons}
    rows = db.execute(
        "SELECT * FROM photo WHERE batch_id = ? ORDER BY id", (batch_id,)
    ).fetchall()
    photo_by_name = {}
    for row in rows:
        if row["file_name"] in photo_by_name:
            problem(f"photo {row['file_name']} recorded twice")
        photo_by_name.setdefault(row["file_name"], row)
    for f in files:
        name = f["name"]
        row = photo_by_name.get(name)
        if row is None:
            problem(f"photo {name} ({f['kind']}) not recorded")
            continue
        if f["kind"] == "corrupt":
            want_status, want_email = "failed", None
        elif f["person"] is None:
            want_status, want_email = "unassigned", None
        else:
            want_status = "qr" if f["kind"] == "qr" else "assigned"
            want_email = people[f["person"]]["email"]
        if row["status"] != want_status:
            problem(f"photo {name}: status {row['status']!r}, expected {want_status!r}")
        got_email = person_email_by_id.get(row["person_id"]) if row["person_id"] is not None else None
        if row["person_id"] is not None and got_email is None:
            got_email = f"<missing person {row['person_id']}>"
        if got_email != want_email:
            problem(f"photo {name}: person {got_email}, expected {want_email}")
        if row["content_hash"] is not None and row["content_hash"] != f["content_hash"]:
            problem(f"photo {name}: content_hash differs from the manifest")
        if row["content_hash"] is None and f["kind"] != "corrupt":
            problem(f"photo {name}: no content_hash")
    manifest_names = {f["name"] for f in files}
    for name in photo_by_name:
        if name not in manifest_names:
            problem(f"photo {name} is not in the manifest")

    # Copied files.
    for p in people:
        folder = os.path.join(output_dir, f"batch-{batch_id}", p["email"])
        if not os.path.isdir(folder):
            problem(f"person {p['email']}: no output folder {folder}")
            continue
        copied = sorted(n for n in os.listdir(folder) if n != "metadata.json")
        if copied != sorted(p["photos"]):
            missing = sorted(set(p["photos"]) - set(copied))
            extra = sorted(set(copied) - set(p["photos"]))
            problem(f"person {p['email']}: output folder missing {missing}, extra {extra}")
        if not os.path.isfile(os.path.join(folder, "metadata.json")):
            problem(f"person {p['email']}: no metadata.json")

    log_rows = db.execute(
        "SELECT count(*) FROM processing_log WHERE batch_id = ?", (batch_id,)
    ).fetchone()[0]
    summary = (
        f"batch {batch_id}: {len(files)} files ({corrupt} corrupt), {len(people)} people; "
        f"db has {len(rows)} photo rows, {len(persons)} person rows, {log_rows} log rows, "
        f"status {batch['status']}; "
    )
    if problems:
        print(summary + f"{len(problems)} mismatches")
        return 1
    print(summary + "OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
