//! The processor on odd input and its acknowledgements: bad photos failed with their reason,
//! odd names recorded as they are, links never followed, nothing written outside the data
//! folder; every acknowledged write in the database (and, with the incident's commit-only
//! retries, acknowledged writes that are not). On real database files and real photos.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;
use lockbench_server::app;
use lockbench_server::processor::ProcessorConfig;
use lockbench_server::storage::{JournalMode, RetryConfig, StorageConfig, Store, TxMode};
use serde_json::json;
use support::*;

/// A PNG of the given QR payloads side by side on white: one code, or several in one photo.
fn qr_png(payloads: &[&str]) -> Vec<u8> {
    use image::{GrayImage, Luma};
    let codes: Vec<GrayImage> = payloads
        .iter()
        .map(|p| {
            qrcode::QrCode::new(p.as_bytes())
                .expect("QR code")
                .render::<Luma<u8>>()
                .module_dimensions(4, 4)
                .quiet_zone(true)
                .build()
        })
        .collect();
    let gap = 40;
    let width = codes.iter().map(|c| c.width()).sum::<u32>() + gap * (codes.len() as u32 + 1);
    let height = codes.iter().map(|c| c.height()).max().unwrap_or(0) + 2 * gap;
    let mut canvas = GrayImage::from_pixel(width, height, Luma([255]));
    let mut x = gap;
    for code in &codes {
        image::imageops::overlay(&mut canvas, code, i64::from(x), i64::from(gap));
        x += code.width() + gap;
    }
    encode(
        image::DynamicImage::ImageLuma8(canvas),
        image::ImageFormat::Png,
    )
}

/// A photo without a QR code; `shade` makes each one's bytes (and content hash) its own.
fn plain_photo(shade: u8, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(160, 120, |x, y| {
        image::Rgb([shade, (x % 256) as u8, (y % 256) as u8])
    });
    encode(image::DynamicImage::ImageRgb8(img), format)
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .expect("encode");
    out
}

/// Every file under `root` (relative paths), not following symbolic links, skipping `skip`.
fn files_under(root: &Path, skip: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let rel = entry
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if skip
                .iter()
                .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
            {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

const ADA: &str = "LOCKBENCH-REG:ada@example.org";
const BOB: &str = "LOCKBENCH-REG:bob@example.org";

/// Writes the odd batch into `<root>/photos`: QR photos, photos with odd names, empty,
/// truncated and non-image files, QR codes that are not registrations or are two in one
/// photo, a name with path separators, a link leading out of the folder (to
/// `<root>/outside/secret.jpg`, whose bytes are returned) and a folder named like a photo.
fn write_odd_batch(root: &Path) -> (PathBuf, Vec<u8>) {
    use image::ImageFormat::{Jpeg, Png};
    let outside = root.join("outside");
    std::fs::create_dir(&outside).unwrap();
    let secret = plain_photo(200, Jpeg);
    std::fs::write(outside.join("secret.jpg"), &secret).unwrap();

    let dir = root.join("photos");
    std::fs::create_dir(&dir).unwrap();
    let jpeg = plain_photo(3, Jpeg);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("IMG_0001.jpg", qr_png(&[ADA])),
        ("IMG_0002 with spaces.jpg", plain_photo(1, Jpeg)),
        ("IMG_0003 Café ü 写真.png", plain_photo(2, Png)),
        ("IMG_0004.jpg", Vec::new()),
        ("IMG_0005.jpg", jpeg[..jpeg.len() / 2].to_vec()),
        ("IMG_0006.jpg", b"this is not an image\n".to_vec()),
        ("IMG_0007.png", qr_png(&["https://example.org/poster"])),
        ("IMG_0008.png", qr_png(&["LOCKBENCH-REG:not-an-email"])),
        ("IMG_0009.png", qr_png(&[ADA, BOB])),
        ("IMG_0011 a\\..\\..\\b.jpg", plain_photo(4, Jpeg)),
        ("IMG_0012.png", qr_png(&[BOB])),
        ("IMG_0013.png", plain_photo(5, Png)),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    // A name that leads out of the folder can only be a link: it is refused, not followed.
    std::os::unix::fs::symlink("../outside/secret.jpg", dir.join("IMG_0010.jpg")).unwrap();
    // A folder named like a photo is not one.
    std::fs::create_dir(dir.join("IMG_0014.jpg")).unwrap();
    (dir, secret)
}

/// What the odd batch's photos must be recorded as: (file, status, person's QR payload or
/// "-", what the error must say, "" for none).
const ODD_BATCH_ROWS: &[(&str, &str, &str, &str)] = &[
    ("IMG_0001.jpg", "qr", ADA, ""),
    ("IMG_0002 with spaces.jpg", "assigned", ADA, ""),
    ("IMG_0003 Café ü 写真.png", "assigned", ADA, ""),
    ("IMG_0004.jpg", "failed", "-", "empty file (0 bytes)"),
    ("IMG_0005.jpg", "failed", "-", "truncated JPEG"),
    ("IMG_0006.jpg", "failed", "-", "not an image"),
    (
        "IMG_0007.png",
        "assigned",
        ADA,
        "QR code ignored: QR payload \"https://example.org/poster\" is not a registration",
    ),
    (
        "IMG_0008.png",
        "failed",
        "-",
        "malformed registration QR payload \"LOCKBENCH-REG:not-an-email\"",
    ),
    (
        "IMG_0009.png",
        "failed",
        "-",
        "2 registration QR codes in one photo",
    ),
    (
        "IMG_0010.jpg",
        "failed",
        "-",
        "is a symbolic link (to ../outside/secret.jpg)",
    ),
    (
        "IMG_0011 a\\..\\..\\b.jpg",
        "failed",
        "-",
        "it contains a path separator",
    ),
    ("IMG_0012.png", "qr", BOB, ""),
    ("IMG_0013.png", "assigned", BOB, ""),
];

/// Every photo row, in file-name order: (file, status, person's QR payload or "-", error).
fn recorded_photos(store: &Store) -> Vec<(String, String, String, String)> {
    let rows = store
        .read("audit", |tx| {
            tx.query(
                "SELECT ph.file_name, ph.status, p.qr_payload, coalesce(ph.error, '') \
                 FROM photos ph LEFT JOIN persons p ON p.id = ph.person_id ORDER BY ph.file_name",
                &[],
            )
        })
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r[0].as_str().unwrap_or_default().to_owned(),
                r[1].as_str().unwrap_or_default().to_owned(),
                r[2].as_str().unwrap_or("-").to_owned(),
                r[3].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The people's folders hold their photos under their own names, uploaded as well.
fn assert_person_folders(root: &Path, store: &Store) {
    let folders: Vec<String> = store
        .read("folders", |tx| {
            tx.query("SELECT folder FROM persons ORDER BY id", &[])
        })
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(folders, ["00001-ada", "00002-bob"]);
    for (folder, photos) in [
        (
            "00001-ada",
            vec![
                "IMG_0002 with spaces.jpg",
                "IMG_0003 Café ü 写真.png",
                "IMG_0007.png",
                "metadata.json",
            ],
        ),
        ("00002-bob", vec!["IMG_0013.png", "metadata.json"]),
    ] {
        for under in ["data/persons", "data/uploads"] {
            let mut names: Vec<String> = std::fs::read_dir(root.join(under).join(folder))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            assert_eq!(names, photos, "{under}/{folder}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_photos_are_failed_with_their_reason_and_odd_names_are_recorded_as_they_are() {
    let f = fixture(StorageConfig {
        journal_mode: JournalMode::Wal,
        tx_mode: TxMode::Immediate,
        ..StorageConfig::default()
    });
    for (name, email) in [("Ada", "ada@example.org"), ("Bob", "bob@example.org")] {
        let body = json!({"name": name, "email": email}).to_string();
        let r = call(&f.router, "POST", "/api/registrations", Some(&body), None).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let (dir, secret) = write_odd_batch(&f.root);

    let r = post_batch(&f.router, &dir).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["photos"], 13);
    let batch_id = r.body["batch_id"].as_i64().unwrap();
    let status = wait_done(&f.router, batch_id).await;
    assert_eq!(status["processed"], 13, "{status}");
    assert_eq!(status["failed"], 7, "{status}");
    assert_eq!(status["persons"], 2, "{status}");
    assert_eq!(status["uploaded"], 2, "{status}");

    let got = recorded_photos(&f.store);
    assert_eq!(got.len(), ODD_BATCH_ROWS.len(), "{got:#?}");
    for (row, (file, status, person, error)) in got.iter().zip(ODD_BATCH_ROWS) {
        assert_eq!(row.0, *file);
        assert_eq!(row.1, *status, "{row:?}");
        assert_eq!(row.2, *person, "{row:?}");
        if error.is_empty() {
            assert_eq!(row.3, "", "{row:?}");
        } else {
            assert!(row.3.contains(error), "{row:?} should say {error:?}");
        }
    }
    assert_person_folders(&f.root, &f.store);
    // Nothing was written outside the data folder, and the link's target is untouched.
    assert_eq!(
        files_under(
            &f.root,
            &["data", "photos", "app.db", "app.db-wal", "app.db-shm"]
        ),
        ["outside/secret.jpg"]
    );
    assert_eq!(
        std::fs::read(f.root.join("outside/secret.jpg")).unwrap(),
        secret
    );

    // Posting it again records nothing twice and fails nothing twice.
    let before = counts(&f.store);
    let r = post_batch(&f.router, &dir).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    wait_done(&f.router, batch_id).await;
    wait_idle(&f.router).await;
    assert_eq!(counts(&f.store), before);
}

/// A batch processed by `process_batch` itself on a fresh database in `root`, with the
/// given settings; `hold_ms`: another connection holds the write lock that long from just
/// before the processor starts. Returns the store, the batch id and the acks file.
fn process_directly(
    root: &Path,
    storage: &StorageConfig,
    retry: &RetryConfig,
    config: &ProcessorConfig,
    hold_ms: Option<u64>,
) -> (Store, i64, PathBuf) {
    use lockbench_server::processor::{self, DataDirs};
    let db = root.join("app.db");
    let store = Store::open(&db, storage, &retry.plan().expect("retry plan")).expect("open");
    let (dir, _manifest) = batch(root, 12, 3, 2);
    let batch_id = store
        .write("create", |tx| {
            tx.insert(
                "INSERT INTO batches (source_dir, status, total) VALUES ('x', 'running', 14)",
                &[],
            )
        })
        .unwrap();
    let photos = processor::list_photos(&dir).unwrap();
    let dirs = DataDirs::under(&root.join("data"));
    let metrics = app::metrics::Metrics::default();
    let holder = hold_ms.map(|ms| {
        let (held_tx, held) = std::sync::mpsc::channel::<()>();
        let db = db.clone();
        let t = std::thread::spawn(move || {
            lockbench_server::storage::hold::hold_write_lock(
                &db,
                Duration::from_millis(ms),
                Duration::from_secs(5),
                |_| {
                    let _ = held_tx.send(());
                },
            )
        });
        held.recv().unwrap();
        t
    });
    processor::process_batch(&store, config, &dirs, batch_id, photos, &metrics);
    if let Some(t) = holder {
        t.join().unwrap().unwrap();
    }
    (store, batch_id, dirs.acks)
}

/// The photos table: content_hash -> (file name, person, status).
fn photo_rows(store: &Store) -> std::collections::BTreeMap<String, (String, Option<i64>, String)> {
    store
        .read("rows", |tx| {
            tx.query(
                "SELECT content_hash, file_name, person_id, status FROM photos",
                &[],
            )
        })
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                (
                    r[1].as_str().unwrap().to_owned(),
                    r[2].as_i64(),
                    r[3].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

#[test]
fn the_processors_acks_match_the_rows_it_recorded_and_a_second_run_adds_none() {
    use lockbench_server::processor::acks::{read_acks, AckKind};
    use lockbench_server::processor::CommitGranularity;
    for granularity in [CommitGranularity::PerStep, CommitGranularity::PerPhoto] {
        let dir = tempfile::tempdir().unwrap();
        let config = ProcessorConfig {
            commit_granularity: granularity,
            ..ProcessorConfig::default()
        };
        let storage = StorageConfig::default();
        let (store, batch_id, acks_path) =
            process_directly(dir.path(), &storage, &RetryConfig::default(), &config, None);
        assert_eq!(
            acks_path,
            dir.path()
                .join("data")
                .join(lockbench_server::processor::acks::ACKS_FILE)
        );
        let acks = read_acks(&acks_path).unwrap();
        let rows = photo_rows(&store);
        assert_eq!(rows.len(), 14, "{granularity:?}");
        // One photo ack per recorded photo, one failed-photo ack per failed one, keyed as the
        // row is, with its name and person.
        let photo_acks: Vec<_> = acks.iter().filter(|a| a.kind != AckKind::Upload).collect();
        assert_eq!(photo_acks.len(), rows.len(), "{granularity:?}: {acks:#?}");
        for ack in &photo_acks {
            assert_eq!(ack.batch_id, batch_id);
            let (name, person, status) = &rows[&ack.key];
            assert_eq!(ack.file_name.as_deref(), Some(name.as_str()));
            assert_eq!(ack.person_id, *person, "{ack:?}");
            let failed = status == "failed";
            assert_eq!(ack.kind == AckKind::FailedPhoto, failed, "{ack:?} {status}");
        }
        let failed_keys: Vec<&str> = photo_acks
            .iter()
            .filter(|a| a.kind == AckKind::FailedPhoto)
            .map(|a| a.key.as_str())
            .collect();
        assert_eq!(failed_keys.len(), 2, "{granularity:?}");
        assert!(
            failed_keys
                .iter()
                .all(|k| k.starts_with(&format!("failed:{batch_id}:"))),
            "undecodable files are keyed by batch and name: {failed_keys:?}"
        );
        // One upload ack per uploaded person, keyed by the person's id.
        let uploaded: Vec<i64> = store
            .read("up", |tx| {
                tx.query(
                    "SELECT id FROM persons WHERE upload_state = 'uploaded' ORDER BY id",
                    &[],
                )
            })
            .unwrap()
            .iter()
            .map(|r| r[0].as_i64().unwrap())
            .collect();
        let upload_acks: Vec<_> = acks.iter().filter(|a| a.kind == AckKind::Upload).collect();
        assert_eq!(uploaded.len(), 3);
        assert_eq!(
            upload_acks
                .iter()
                .map(|a| (a.key.clone(), a.person_id))
                .collect::<Vec<_>>(),
            uploaded
                .iter()
                .map(|id| (id.to_string(), Some(*id)))
                .collect::<Vec<_>>()
        );

        // Processing the same photos again records nothing and acknowledges nothing.
        let photos = lockbench_server::processor::list_photos(&dir.path().join("photos")).unwrap();
        lockbench_server::processor::process_batch(
            &store,
            &config,
            &lockbench_server::processor::DataDirs::under(&dir.path().join("data")),
            batch_id,
            photos,
            &app::metrics::Metrics::default(),
        );
        assert_eq!(read_acks(&acks_path).unwrap(), acks, "{granularity:?}");
        assert_eq!(photo_rows(&store), rows);
    }
}

#[test]
fn with_commit_only_retries_an_acknowledged_photo_can_be_missing_from_the_database() {
    use lockbench_server::processor::acks::{read_acks, AckKind};
    use lockbench_server::storage::{RetryKind, RetryScope};
    let dir = tempfile::tempdir().unwrap();
    // The incident's stack: lazy transactions, the commit-only helper; a lock held by another
    // connection for longer than the busy timeout (a backup, a migration).
    let storage = StorageConfig {
        journal_mode: JournalMode::Wal,
        tx_mode: TxMode::Lazy,
        busy_timeout_ms: 100,
        ..StorageConfig::default()
    };
    let retry = RetryConfig {
        retry: RetryKind::Fixed,
        retry_attempts: 2,
        retry_delay_ms: 1,
        retry_scope: RetryScope::CommitOnly,
        ..RetryConfig::default()
    };
    let (store, _batch_id, acks_path) = process_directly(
        dir.path(),
        &storage,
        &retry,
        &ProcessorConfig::default(),
        Some(1500),
    );
    let acks = read_acks(&acks_path).unwrap();
    let rows = photo_rows(&store);
    let lost: Vec<&str> = acks
        .iter()
        .filter(|a| a.kind != AckKind::Upload && !rows.contains_key(&a.key))
        .map(|a| a.key.as_str())
        .collect();
    let dropped: u64 = store
        .stats()
        .snapshot()
        .values()
        .map(|s| s.commit_only_dropped)
        .sum();
    assert!(
        !lost.is_empty(),
        "photos acknowledged while the lock was held are not in the database: {acks:#?}"
    );
    assert!(
        dropped >= lost.len() as u64,
        "{dropped} drops, {} lost",
        lost.len()
    );
    // Every row the database holds was acknowledged: nothing is recorded behind the acks.
    for key in rows.keys() {
        assert!(acks.iter().any(|a| &a.key == key), "{key} has no ack");
    }
}
