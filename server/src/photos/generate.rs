//! Writing a batch to disk: the plan of files in name order, the output folder's preparation
//! (reusing or refusing what is there), the worker threads that encode photos, and the
//! manifest written last. Drawing is `draw`'s; decoding is `scan`'s.

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) enum Content {
    Qr { person: usize },
    Photo { person: usize },
    Corrupt(Corruption),
}

#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub(super) name: String,
    pub(super) content: Content,
    /// RNG stream of this file: independent of the other files, so workers can run in any order.
    pub(super) stream: u64,
}

pub(super) fn digits(n: usize) -> usize {
    n.max(1).ilog10() as usize + 1
}

pub(super) fn person_identity(spec: &BatchSpec, index: usize) -> (String, String) {
    let width = digits(spec.people).max(3);
    let number = index + 1;
    let name = format!("Guest {number:0width$}");
    let email = format!("guest{number:0width$}.s{}@example.org", spec.seed);
    (name, email)
}

/// The files of a batch in name order. The spec must be valid.
pub(super) fn plan(spec: &BatchSpec) -> Vec<Planned> {
    // Good files: per person, the QR photo then their photos; the first people get the remainder.
    let base = spec.count / spec.people;
    let extra = spec.count % spec.people;
    let mut good = Vec::with_capacity(spec.count);
    for person in 0..spec.people {
        let files = base + usize::from(person < extra);
        good.push(Content::Qr { person });
        good.extend((1..files).map(|_| Content::Photo { person }));
    }

    // Corrupt file j goes into the inner gap after good file gap(j), spread evenly, so never
    // first nor last.
    let gap = |j: usize| ((2 * j + 1) * (spec.count - 1)) / (2 * spec.corrupt);
    let width = digits(spec.total_files()).max(4);
    let mut out = Vec::with_capacity(spec.total_files());
    let mut j = 0;
    for (g, content) in good.into_iter().enumerate() {
        out.push((content, g as u64));
        while j < spec.corrupt && gap(j) == g {
            let kind = Corruption::CYCLE[j % Corruption::CYCLE.len()];
            out.push((Content::Corrupt(kind), CORRUPT_STREAM_BASE + j as u64));
            j += 1;
        }
    }
    debug_assert_eq!(j, spec.corrupt);
    out.into_iter()
        .enumerate()
        .map(|(i, (content, stream))| Planned {
            name: format!("IMG_{:0width$}.jpg", i + 1),
            content,
            stream,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------------

/// Writes the batch `spec` describes into `out_dir` (created if missing), then `manifest.json`.
///
/// A folder that already holds a batch (has `manifest.json`) is reused: the previous manifest
/// goes first, then every `IMG_<n>.jpg` this batch does not overwrite, so the folder never holds
/// stale photos. A folder with `IMG_<n>.jpg` files but no manifest is refused (they are not ours
/// to overwrite). Other files are left alone. Up to two worker threads encode photos; the
/// output does not depend on the thread count.
pub fn generate(out_dir: &Path, spec: &BatchSpec) -> Result<Manifest, PhotoError> {
    spec.validate()?;
    let plan = plan(spec);
    prepare_out_dir(out_dir, &plan)?;
    let files = write_files(out_dir, spec, &plan)?;
    let manifest = Manifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        spec: spec.clone(),
        people: people_of(spec, &plan, &files),
        files,
    };
    write_manifest(out_dir, &manifest)?;
    tracing::debug!(
        dir = %out_dir.display(),
        files = manifest.files.len(),
        people = manifest.people.len(),
        "generated photo batch"
    );
    Ok(manifest)
}

/// Writes every planned file, on up to [`GENERATE_WORKERS`] threads; the files' records in
/// plan order, or the first error in plan order (the workers stop at the first).
fn write_files(
    out_dir: &Path,
    spec: &BatchSpec,
    plan: &[Planned],
) -> Result<Vec<ManifestFile>, PhotoError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, GENERATE_WORKERS)
        .min(plan.len());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut results: Vec<(usize, Result<ManifestFile, PhotoError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(planned) = plan.get(i) else { break };
                        let result = write_file(out_dir, spec, planned);
                        if result.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        done.push((i, result));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(done) => done,
                Err(payload) => panic::resume_unwind(payload),
            })
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, result)| result).collect()
}

/// The batch's people, each with their QR photo and photos as written.
fn people_of(spec: &BatchSpec, plan: &[Planned], files: &[ManifestFile]) -> Vec<ManifestPerson> {
    let mut people: Vec<ManifestPerson> = (0..spec.people)
        .map(|index| {
            let (name, email) = person_identity(spec, index);
            ManifestPerson {
                index,
                qr_payload: registration_payload(&email),
                name,
                email,
                qr_photo: String::new(),
                photos: Vec::new(),
            }
        })
        .collect();
    for (planned, file) in plan.iter().zip(files) {
        match planned.content {
            Content::Qr { person } => people[person].qr_photo = file.name.clone(),
            Content::Photo { person } => people[person].photos.push(file.name.clone()),
            Content::Corrupt(_) => {}
        }
    }
    people
}

/// Writes `manifest.json` whole or not at all (a temporary file renamed over it).
fn write_manifest(out_dir: &Path, manifest: &Manifest) -> Result<(), PhotoError> {
    let path = out_dir.join(MANIFEST_FILE);
    let tmp = out_dir.join(format!("{MANIFEST_FILE}.tmp"));
    let mut json = serde_json::to_vec_pretty(manifest).map_err(|e| PhotoError::Manifest {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    json.push(b'\n');
    fs::write(&tmp, &json).map_err(|e| PhotoError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| PhotoError::io(&path, e))
}

pub(super) fn is_our_file_name(name: &str) -> bool {
    name.strip_prefix("IMG_")
        .and_then(|rest| rest.strip_suffix(".jpg"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

pub(super) fn prepare_out_dir(out_dir: &Path, plan: &[Planned]) -> Result<(), PhotoError> {
    match fs::metadata(out_dir) {
        Ok(meta) if !meta.is_dir() => {
            return Err(PhotoError::OutDir {
                path: out_dir.to_path_buf(),
                reason: "exists and is not a directory".into(),
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(PhotoError::io(out_dir, e)),
    }
    fs::create_dir_all(out_dir).map_err(|e| PhotoError::io(out_dir, e))?;

    // A folder with a manifest holds a batch of ours: every IMG_<n>.jpg in it is ours to replace.
    // The manifest goes first, so an interrupted run never leaves one that does not match.
    let manifest_path = out_dir.join(MANIFEST_FILE);
    let ours = manifest_path.exists();
    let keep: std::collections::BTreeSet<&str> = plan.iter().map(|p| p.name.as_str()).collect();
    let mut stale = Vec::new();
    for entry in fs::read_dir(out_dir).map_err(|e| PhotoError::io(out_dir, e))? {
        let entry = entry.map_err(|e| PhotoError::io(out_dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_our_file_name(&name) {
            continue;
        }
        if !ours {
            return Err(PhotoError::OutDir {
                path: out_dir.to_path_buf(),
                reason: format!(
                    "holds {name} but no {MANIFEST_FILE} (not a generated batch, or an \
                     interrupted one): delete those files or use another folder"
                ),
            });
        }
        if !keep.contains(name.as_str()) {
            stale.push(entry.path());
        }
    }
    if ours {
        fs::remove_file(&manifest_path).map_err(|e| PhotoError::io(&manifest_path, e))?;
    }
    for path in stale {
        fs::remove_file(&path).map_err(|e| PhotoError::io(&path, e))?;
    }
    Ok(())
}

pub(super) fn write_file(
    out_dir: &Path,
    spec: &BatchSpec,
    planned: &Planned,
) -> Result<ManifestFile, PhotoError> {
    let bytes = render_file(spec, planned)?;
    let path = out_dir.join(&planned.name);
    fs::write(&path, &bytes).map_err(|e| PhotoError::io(&path, e))?;
    let (kind, person, corruption) = match planned.content {
        Content::Qr { person } => (FileKind::Qr, Some(person), None),
        Content::Photo { person } => (FileKind::Photo, Some(person), None),
        Content::Corrupt(c) => (FileKind::Corrupt, None, Some(c)),
    };
    Ok(ManifestFile {
        name: planned.name.clone(),
        kind,
        person,
        content_hash: content_hash(&bytes),
        corruption,
    })
}

/// The bytes of one planned file.
pub(super) fn render_file(spec: &BatchSpec, planned: &Planned) -> Result<Vec<u8>, PhotoError> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(planned.stream);
    let ImageSize { width, height } = spec.size;
    match planned.content {
        Content::Photo { .. } => encode_jpeg(&render_photo(width, height, &mut rng), width, height),
        Content::Qr { person } => {
            let (_, email) = person_identity(spec, person);
            let rgb = render_qr_photo(width, height, &registration_payload(&email), &mut rng)?;
            encode_jpeg(&rgb, width, height)
        }
        Content::Corrupt(Corruption::Empty) => Ok(Vec::new()),
        Content::Corrupt(Corruption::NotAnImage) => Ok(format!(
            "This is not a photo.\nUpload placeholder for {} (batch seed {}).\n",
            planned.name, spec.seed
        )
        .into_bytes()),
        Content::Corrupt(Corruption::TruncatedJpeg) => {
            let mut jpeg = encode_jpeg(&render_photo(width, height, &mut rng), width, height)?;
            // Keep 30-70% of the file: the headers and part of the entropy-coded data.
            let keep = jpeg.len() * rng.random_range(30..=70) / 100;
            jpeg.truncate(keep.max(1));
            Ok(jpeg)
        }
    }
}

pub(super) fn encode_jpeg(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, PhotoError> {
    let mut out = Vec::with_capacity(rgb.len() / 8);
    JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode(rgb, width, height, ExtendedColorType::Rgb8)
        .map_err(|e| PhotoError::Invalid {
            setting: "size",
            reason: format!("JPEG encoding of {width}x{height} failed: {e}"),
        })?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Drawing
// ---------------------------------------------------------------------------------------------
