//! The synthetic photo batch and `scan`, on real files in temporary folders.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use clap::Parser;
use lockbench_server::photos::{
    content_hash, generate, read_manifest, registration_payload, scan, BatchSpec, Corruption,
    FileKind, ImageSize, Manifest, PhotoError, MANIFEST_FILE, QR_PREFIX,
};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn small_spec() -> BatchSpec {
    BatchSpec {
        count: 24,
        people: 4,
        size: ImageSize::new(320, 240),
        seed: 3,
        corrupt: 3,
    }
}

/// Fewer and smaller images, for the tests that need files but not many (debug builds of the
/// codecs are slow).
fn tiny_spec() -> BatchSpec {
    BatchSpec {
        count: 6,
        people: 2,
        size: ImageSize::new(160, 120),
        seed: 3,
        corrupt: 1,
    }
}

/// Every file of the folder but the manifest, name -> bytes.
fn files_on_disk(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != MANIFEST_FILE)
        .map(|e| {
            let name = e.file_name().into_string().unwrap();
            (name, fs::read(e.path()).unwrap())
        })
        .collect()
}

fn decode_reason(result: Result<lockbench_server::photos::Scan, PhotoError>) -> String {
    match result {
        Err(PhotoError::Decode { reason }) => reason,
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn batch_matches_disk_and_scanning_reproduces_the_ground_truth() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("batch");
    let spec = small_spec();
    let manifest = generate(&dir, &spec).unwrap();
    assert_eq!(read_manifest(&dir).unwrap(), manifest);
    assert_eq!(manifest.schema_version, 1);
    assert_eq!(manifest.spec, spec);

    // Names, order and hashes are what is on disk.
    let disk = files_on_disk(&dir);
    let names: Vec<&String> = manifest.files.iter().map(|f| &f.name).collect();
    assert_eq!(
        names,
        disk.keys().collect::<Vec<_>>(),
        "manifest lists every file, in name order"
    );
    assert_eq!(names.first().unwrap().as_str(), "IMG_0001.jpg");
    assert_eq!(names.last().unwrap().as_str(), "IMG_0027.jpg");
    for f in &manifest.files {
        assert_eq!(f.content_hash, content_hash(&disk[&f.name]), "{}", f.name);
    }

    // 24 photo files for 4 people: each a QR photo and 5 photos; 3 corrupt files in between.
    let kinds = |k| manifest.files.iter().filter(|f| f.kind == k).count();
    assert_eq!(
        (
            kinds(FileKind::Qr),
            kinds(FileKind::Photo),
            kinds(FileKind::Corrupt)
        ),
        (4, 20, 3)
    );
    assert_eq!(manifest.files.first().unwrap().kind, FileKind::Qr);
    assert_ne!(manifest.files.last().unwrap().kind, FileKind::Corrupt);
    let mut corruptions: Vec<Corruption> =
        manifest.files.iter().filter_map(|f| f.corruption).collect();
    corruptions.dedup();
    assert_eq!(
        corruptions,
        [
            Corruption::TruncatedJpeg,
            Corruption::Empty,
            Corruption::NotAnImage
        ]
    );
    assert_eq!(manifest.people.len(), 4);
    for (i, p) in manifest.people.iter().enumerate() {
        assert_eq!(p.index, i);
        assert_eq!(p.name, format!("Guest {:03}", i + 1));
        assert_eq!(p.email, format!("guest{:03}.s3@example.org", i + 1));
        assert_eq!(p.qr_payload, registration_payload(&p.email));
        assert!(p.qr_payload.starts_with(QR_PREFIX));
        assert_eq!(p.photos.len(), 5);
    }

    // The processor's view: a QR photo starts a person, later photos belong to them, corrupt
    // files are skipped without changing the person.
    let mut current = None;
    let mut seen: Vec<(usize, Vec<String>)> = Vec::new();
    for f in &manifest.files {
        match f.kind {
            FileKind::Qr => {
                let p = f.person.unwrap();
                assert_eq!(manifest.people[p].qr_photo, f.name);
                current = Some(p);
                seen.push((p, Vec::new()));
            }
            FileKind::Photo => {
                assert_eq!(
                    f.person, current,
                    "{} belongs to the current person",
                    f.name
                );
                seen.last_mut().unwrap().1.push(f.name.clone());
            }
            FileKind::Corrupt => assert_eq!(f.person, None),
        }
    }
    let expected: Vec<(usize, Vec<String>)> = manifest
        .people
        .iter()
        .map(|p| (p.index, p.photos.clone()))
        .collect();
    assert_eq!(seen, expected);

    // Scanning every file gives back the ground truth (two threads: debug codecs are slow).
    let (first, second) = manifest.files.split_at(manifest.files.len() / 2);
    let scan_all = |files: &[lockbench_server::photos::ManifestFile]| -> Vec<_> {
        files.iter().map(|f| scan(&disk[&f.name])).collect()
    };
    let results = std::thread::scope(|s| {
        let other = s.spawn(|| scan_all(second));
        let mut results = scan_all(first);
        results.extend(other.join().unwrap());
        results
    });
    for (f, result) in manifest.files.iter().zip(results) {
        match f.kind {
            FileKind::Qr | FileKind::Photo => {
                let s = result.unwrap_or_else(|e| panic!("{}: {e}", f.name));
                assert_eq!((s.width, s.height), (320, 240));
                assert_eq!(s.content_hash, f.content_hash);
                let want = (f.kind == FileKind::Qr)
                    .then(|| manifest.people[f.person.unwrap()].qr_payload.clone());
                assert_eq!(s.qr_payload, want, "{}", f.name);
            }
            FileKind::Corrupt => {
                let reason = decode_reason(result);
                let expected = match f.corruption.unwrap() {
                    Corruption::TruncatedJpeg => "truncated",
                    Corruption::Empty => "empty",
                    Corruption::NotAnImage => "not an image",
                };
                assert!(reason.contains(expected), "{}: {reason}", f.name);
            }
        }
    }
}

#[test]
fn same_spec_gives_the_same_bytes_and_another_seed_other_people() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tiny_spec();
    let a = generate(&tmp.path().join("a"), &spec).unwrap();
    let b = generate(&tmp.path().join("b"), &spec).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        files_on_disk(&tmp.path().join("a")),
        files_on_disk(&tmp.path().join("b"))
    );
    assert_eq!(
        fs::read(tmp.path().join("a").join(MANIFEST_FILE)).unwrap(),
        fs::read(tmp.path().join("b").join(MANIFEST_FILE)).unwrap()
    );

    let other = BatchSpec { seed: 4, ..spec };
    let c = generate(&tmp.path().join("c"), &other).unwrap();
    for (pa, pc) in a.people.iter().zip(&c.people) {
        assert_ne!(pa.qr_payload, pc.qr_payload);
        assert_ne!(pa.email, pc.email);
    }
    for (fa, fc) in a.files.iter().zip(&c.files) {
        assert_eq!(
            (&fa.name, fa.kind, fa.person),
            (&fc.name, fc.kind, fc.person)
        );
        if fa.kind != FileKind::Corrupt {
            assert_ne!(fa.content_hash, fc.content_hash, "{}", fa.name);
        }
    }
    let s = scan(&fs::read(tmp.path().join("c").join(&c.people[1].qr_photo)).unwrap()).unwrap();
    assert_eq!(
        s.qr_payload.as_deref(),
        Some(c.people[1].qr_payload.as_str())
    );
}

#[test]
fn output_folder_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("batch");
    let big = tiny_spec();
    generate(&dir, &big).unwrap();
    fs::write(dir.join("notes.txt"), "kept").unwrap();

    // A smaller batch into the same folder leaves no stale photo behind; other files stay.
    let small = BatchSpec {
        count: 3,
        people: 1,
        corrupt: 0,
        ..big.clone()
    };
    let m = generate(&dir, &small).unwrap();
    let mut on_disk: Vec<String> = files_on_disk(&dir).into_keys().collect();
    on_disk.retain(|n| n != "notes.txt");
    let listed: Vec<String> = m.files.iter().map(|f| f.name.clone()).collect();
    assert_eq!(on_disk, listed);
    assert_eq!(fs::read_to_string(dir.join("notes.txt")).unwrap(), "kept");

    // Photos without a manifest are not ours to overwrite.
    let foreign = tmp.path().join("foreign");
    fs::create_dir(&foreign).unwrap();
    fs::write(foreign.join("IMG_0001.jpg"), "someone's photo").unwrap();
    let err = generate(&foreign, &small).unwrap_err();
    assert!(matches!(err, PhotoError::OutDir { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&foreign.display().to_string()),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(foreign.join("IMG_0001.jpg")).unwrap(),
        "someone's photo"
    );

    // A file where the folder should be.
    let file = tmp.path().join("a-file");
    fs::write(&file, "x").unwrap();
    let err = generate(&file, &small).unwrap_err();
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );

    // A missing or broken manifest names its path.
    let err = read_manifest(tmp.path()).unwrap_err();
    assert!(matches!(err, PhotoError::Io { .. }), "{err:?}");
    fs::write(foreign.join(MANIFEST_FILE), "{}").unwrap();
    let err = read_manifest(&foreign).unwrap_err();
    assert!(matches!(err, PhotoError::Manifest { .. }), "{err:?}");
    assert!(err.to_string().contains(MANIFEST_FILE), "{err}");
}

#[test]
fn invalid_specs_name_the_setting() {
    let cases = [
        (
            BatchSpec {
                people: 0,
                ..small_spec()
            },
            "people",
        ),
        (
            BatchSpec {
                count: 3,
                ..small_spec()
            },
            "count",
        ),
        (
            BatchSpec {
                size: ImageSize::new(32, 240),
                ..small_spec()
            },
            "size",
        ),
        (
            BatchSpec {
                size: ImageSize::new(8193, 240),
                ..small_spec()
            },
            "size",
        ),
        // Inside the range but too small for the QR code to decode reliably.
        (
            BatchSpec {
                size: ImageSize::new(80, 80),
                ..small_spec()
            },
            "size",
        ),
        (
            BatchSpec {
                count: 1,
                people: 1,
                corrupt: 1,
                ..small_spec()
            },
            "corrupt",
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (spec, setting) in cases {
        let err = spec.validate().unwrap_err();
        match &err {
            PhotoError::Invalid { setting: s, .. } => assert_eq!(*s, setting, "{err}"),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains(setting), "{err}");
        let dir = tmp.path().join(setting);
        assert!(generate(&dir, &spec).is_err());
        assert!(!dir.exists(), "nothing is written for an invalid spec");
    }
    assert!(small_spec().validate().is_ok());
    assert!(BatchSpec::default().validate().is_ok());

    // The size setting, as a string, a flag and a JSON value.
    let err = "1024*768".parse::<ImageSize>().unwrap_err().to_string();
    assert!(err.contains("size") && err.contains("1024*768"), "{err}");
    assert_eq!(
        "640x480".parse::<ImageSize>().unwrap(),
        ImageSize::new(640, 480)
    );

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        spec: BatchSpec,
    }
    let cli = Cli::try_parse_from(["gen"]).unwrap();
    assert_eq!(cli.spec, BatchSpec::default());
    let cli = Cli::try_parse_from([
        "gen",
        "--count",
        "24",
        "--people",
        "4",
        "--size",
        "320x240",
        "--seed",
        "3",
        "--corrupt",
        "3",
    ])
    .unwrap();
    assert_eq!(cli.spec, small_spec());
    let err = Cli::try_parse_from(["gen", "--size", "big"])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("big"), "{err}");

    let json = serde_json::to_value(small_spec()).unwrap();
    assert_eq!(json["size"], "320x240");
    let back: BatchSpec = serde_json::from_value(json).unwrap();
    assert_eq!(back, small_spec());
    let partial: BatchSpec = serde_json::from_str(r#"{"count": 10}"#).unwrap();
    assert_eq!(
        partial,
        BatchSpec {
            count: 10,
            ..BatchSpec::default()
        }
    );
    assert!(serde_json::from_str::<BatchSpec>(r#"{"cuont": 10}"#).is_err());
    assert!(serde_json::from_str::<BatchSpec>(r#"{"size": "320"}"#).is_err());
}

#[test]
fn scan_never_panics_and_reads_png_too() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("batch");
    let spec = BatchSpec {
        count: 2,
        people: 1,
        corrupt: 0,
        seed: 9,
        ..tiny_spec()
    };
    let manifest: Manifest = generate(&dir, &spec).unwrap();
    let qr = fs::read(dir.join(&manifest.people[0].qr_photo)).unwrap();
    let photo = fs::read(dir.join(&manifest.people[0].photos[0])).unwrap();
    let payload = manifest.people[0].qr_payload.clone();

    let no_panic = |bytes: &[u8]| match scan(bytes) {
        Ok(s) => assert_eq!(s.content_hash, content_hash(bytes)),
        Err(PhotoError::Decode { reason }) => {
            assert!(!reason.contains("panicked"), "a decoder panicked: {reason}")
        }
        Err(other) => panic!("unexpected error {other:?}"),
    };

    assert!(decode_reason(scan(&[])).contains("empty"));
    assert!(decode_reason(scan(b"hello, world")).contains("not an image"));

    // A PNG of the QR photo is read the same way.
    let rgb = image::load_from_memory(&qr).unwrap().into_rgb8();
    let mut png = Vec::new();
    rgb.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let s = scan(&png).unwrap();
    assert_eq!(s.qr_payload.as_deref(), Some(payload.as_str()));
    assert_eq!((s.width, s.height), (160, 120));
    let reason = decode_reason(scan(&png[..png.len() / 2]));
    assert!(reason.contains("Png"), "{reason}");

    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for base in [&qr, &photo, &png] {
        // Every truncation point near the start, then random ones.
        for len in (0..64).chain((0..20).map(|_| rng.random_range(0..base.len()))) {
            let cut = &base[..len.min(base.len())];
            no_panic(cut);
            if !cut.is_empty() {
                assert!(scan(cut).is_err(), "a {len}-byte prefix decoded");
            }
        }
        // Random byte changes, keeping the length.
        for _ in 0..20 {
            let mut bytes = base.clone();
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
            no_panic(&bytes);
        }
    }
    // Random bytes, with and without an image signature in front.
    for prefix in [
        &b""[..],
        &[0xff, 0xd8, 0xff],
        b"\x89PNG\r\n\x1a\n",
        b"GIF89a",
        b"BM",
    ] {
        for _ in 0..10 {
            let mut bytes = prefix.to_vec();
            let mut tail = vec![0u8; rng.random_range(0..2048)];
            rng.fill_bytes(&mut tail);
            bytes.extend(tail);
            no_panic(&bytes);
        }
    }
}

#[test]
fn scan_reads_every_qr_code_of_a_photo_and_registration_payloads_are_checked() {
    use image::{GrayImage, Luma};
    let code = |p: &str| -> GrayImage {
        qrcode::QrCode::new(p.as_bytes())
            .unwrap()
            .render::<Luma<u8>>()
            .module_dimensions(4, 4)
            .quiet_zone(true)
            .build()
    };
    let (a, b) = (
        registration_payload("ada@example.org"),
        registration_payload("bob@example.org"),
    );
    let (ca, cb) = (code(&a), code(&b));
    let mut canvas =
        GrayImage::from_pixel(ca.width() + cb.width() + 60, ca.height() + 40, Luma([255]));
    image::imageops::overlay(&mut canvas, &ca, 20, 20);
    image::imageops::overlay(&mut canvas, &cb, i64::from(ca.width()) + 40, 20);
    let mut png = Vec::new();
    canvas
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let s = scan(&png).unwrap();
    let mut found = s.qr_payloads.clone();
    found.sort();
    assert_eq!(found, [a.clone(), b.clone()]);
    assert_eq!(s.qr_payload.as_ref(), s.qr_payloads.first());

    use lockbench_server::photos::{email_problem, registration_email};
    assert_eq!(registration_email(&a), Ok("ada@example.org"));
    let err = registration_email("https://example.org").unwrap_err();
    assert!(err.contains("is not a registration"), "{err}");
    for (email, problem) in [
        ("", "is empty"),
        ("ada", "no @"),
        ("@example.org", "no @"),
        ("ada@", "no @"),
        ("a da@example.org", "whitespace"),
    ] {
        assert!(email_problem(email).unwrap().contains(problem), "{email:?}");
        let err = registration_email(&format!("{QR_PREFIX}{email}")).unwrap_err();
        assert!(
            err.starts_with("malformed registration QR payload"),
            "{err}"
        );
    }
    assert!(email_problem(&format!("{}@example.org", "a".repeat(250))).is_some());
}
