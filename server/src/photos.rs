//! Synthetic event-photo batches, and the image work the photo processor does on each file.
//!
//! The incident's app received a folder of event photos in shooting order: each guest first
//! held up the QR code of their kiosk registration, then was photographed a few times. The
//! processor walked the folder in name order, decoded every file, looked for a QR code, started
//! a new person at each QR photo and assigned the following photos to that person, committing
//! to SQLite at every step. This module makes such a folder deterministically (`generate`) and
//! does the per-file work (`scan`), so the storage load is driven by real decoding time.
//!
//! A batch is a function of its [`BatchSpec`]: the same spec gives byte-identical files, whatever
//! the number of worker threads. `manifest.json`, written last, is the ground truth: who is in
//! the batch, which file is whose, and the sha256 of every byte written.

use std::fmt;
use std::fs;
use std::io::{self, Cursor};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use clap::Args;
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageError, ImageFormat, ImageReader};
use qrcode::{EcLevel, QrCode};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// QR payloads of registrations: "LOCKBENCH-REG:" + email. The server computes the same payload
/// from a kiosk registration.
pub const QR_PREFIX: &str = "LOCKBENCH-REG:";

/// Version of `manifest.json`.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;

/// Name of the manifest inside a batch folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// JPEG quality of every generated photo (a phone or camera default).
pub const JPEG_QUALITY: u8 = 85;

/// Smallest and largest accepted side of a generated image, in pixels.
pub const MIN_SIDE: u32 = 64;
pub const MAX_SIDE: u32 = 8192;

/// Worker threads `generate` uses at most.
const GENERATE_WORKERS: usize = 2;

/// Smallest QR module, in pixels, where the frame allows it.
const MIN_MODULE_PX: usize = 3;

/// Narrowest quiet zone around a QR code, in modules, where the frame is tight.
const MIN_QUIET_MODULES: usize = 2;

/// RNG stream of the corrupt file number `j` (good files use their index in the good sequence).
const CORRUPT_STREAM_BASE: u64 = 1 << 40;

/// The QR payload of a registration.
pub fn registration_payload(email: &str) -> String {
    format!("{QR_PREFIX}{email}")
}

/// sha256 of `bytes`, lowercase hex.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum PhotoError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Bytes that are not a decodable image: empty, truncated, not an image, or invalid data.
    #[error("cannot decode image: {reason}")]
    Decode { reason: String },
    /// A batch setting out of range or malformed; `setting` is the flag/key name.
    #[error("invalid {setting}: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
    /// A manifest that cannot be read back.
    #[error("manifest {}: {reason}", path.display())]
    Manifest { path: PathBuf, reason: String },
    /// An output folder `generate` refuses to write into.
    #[error("output folder {}: {reason}", path.display())]
    OutDir { path: PathBuf, reason: String },
}

impl PhotoError {
    fn io(path: &Path, source: io::Error) -> Self {
        PhotoError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn decode(reason: impl Into<String>) -> Self {
        PhotoError::Decode {
            reason: reason.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Batch settings
// ---------------------------------------------------------------------------------------------

/// Width and height of an image in pixels; written `1024x768`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
}

impl ImageSize {
    pub const fn new(width: u32, height: u32) -> Self {
        ImageSize { width, height }
    }
}

impl Default for ImageSize {
    fn default() -> Self {
        ImageSize::new(1024, 768)
    }
}

impl fmt::Display for ImageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl FromStr for ImageSize {
    type Err = PhotoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PhotoError::Invalid {
            setting: "size",
            reason: format!("{s:?} is not WIDTHxHEIGHT in pixels (e.g. 1024x768)"),
        };
        let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let parse = |v: &str| -> Result<u32, PhotoError> {
            let v = v.trim();
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            v.parse::<u32>().map_err(|_| bad())
        };
        Ok(ImageSize::new(parse(w)?, parse(h)?))
    }
}

impl TryFrom<String> for ImageSize {
    type Error = PhotoError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ImageSize> for String {
    fn from(size: ImageSize) -> String {
        size.to_string()
    }
}

/// What `generate` makes; the flags of the batch generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct BatchSpec {
    /// Photo files in the batch, each person's QR photo included (corrupt files come on top).
    #[arg(long, default_value_t = 675)]
    pub count: usize,
    /// Registered people in the batch; each gets one QR photo followed by their photos.
    #[arg(long, default_value_t = 45)]
    pub people: usize,
    /// Image size in pixels, WIDTHxHEIGHT.
    #[arg(long, default_value_t = ImageSize::default())]
    pub size: ImageSize,
    /// Seed of every random choice; the same spec gives byte-identical files.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Extra corrupt files mixed in between the photos (truncated JPEG, empty file, text).
    #[arg(long, default_value_t = 0)]
    pub corrupt: usize,
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            count: 675,
            people: 45,
            size: ImageSize::default(),
            seed: 7,
            corrupt: 0,
        }
    }
}

impl BatchSpec {
    /// Checks the settings; the error names the offending setting.
    pub fn validate(&self) -> Result<(), PhotoError> {
        if self.people == 0 {
            return Err(PhotoError::Invalid {
                setting: "people",
                reason: "must be at least 1".into(),
            });
        }
        if self.count < self.people {
            return Err(PhotoError::Invalid {
                setting: "count",
                reason: format!(
                    "{} photos cannot hold {} people: each person needs at least their QR photo",
                    self.count, self.people
                ),
            });
        }
        let ImageSize { width, height } = self.size;
        if !(MIN_SIDE..=MAX_SIDE).contains(&width) || !(MIN_SIDE..=MAX_SIDE).contains(&height) {
            return Err(PhotoError::Invalid {
                setting: "size",
                reason: format!(
                    "{} is outside {MIN_SIDE}x{MIN_SIDE} ..= {MAX_SIDE}x{MAX_SIDE}",
                    self.size
                ),
            });
        }
        // The QR code must be large enough for rqrr to read reliably after JPEG compression.
        let modules = qr_code(&registration_payload(
            &person_identity(self, self.people - 1).1,
        ))?
        .width();
        let needed = (modules + 2 * MIN_QUIET_MODULES) * MIN_MODULE_PX;
        if (width.min(height) as usize) < needed {
            return Err(PhotoError::Invalid {
                setting: "size",
                reason: format!(
                    "{} is too small for this batch's QR codes: {modules} modules of \
                     {MIN_MODULE_PX} px plus a quiet zone need {needed} px on the shorter side",
                    self.size
                ),
            });
        }
        if self.corrupt > 0 && self.count < 2 {
            return Err(PhotoError::Invalid {
                setting: "corrupt",
                reason: "corrupt files go between photos, so count must be at least 2".into(),
            });
        }
        if self.count.checked_add(self.corrupt).is_none() {
            return Err(PhotoError::Invalid {
                setting: "corrupt",
                reason: "count + corrupt overflows".into(),
            });
        }
        Ok(())
    }

    /// Files `generate` writes, manifest not counted.
    pub fn total_files(&self) -> usize {
        self.count.saturating_add(self.corrupt)
    }
}

// ---------------------------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------------------------

/// The ground truth of a batch, written to `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema_version: u32,
    pub spec: BatchSpec,
    /// People in shooting order.
    pub people: Vec<ManifestPerson>,
    /// Every file written, in name order (the processing order).
    pub files: Vec<ManifestFile>,
}

/// One registered person of the batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestPerson {
    /// Position in `Manifest::people` (0-based; "Guest 001" has index 0).
    pub index: usize,
    pub name: String,
    pub email: String,
    /// `registration_payload(email)`, what their QR photo encodes.
    pub qr_payload: String,
    /// File name of their QR photo.
    pub qr_photo: String,
    /// File names of their other photos, in order.
    pub photos: Vec<String>,
}

/// What a file of the batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// A person's QR photo, which starts that person.
    Qr,
    /// A regular photo of the current person.
    Photo,
    /// A file that does not decode; the processor fails it and keeps the current person.
    Corrupt,
}

/// How a corrupt file is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Corruption {
    /// The first part of a valid JPEG (an interrupted copy or upload).
    TruncatedJpeg,
    /// A zero-byte file.
    Empty,
    /// A text file named `.jpg`.
    NotAnImage,
}

impl Corruption {
    const CYCLE: [Corruption; 3] = [
        Corruption::TruncatedJpeg,
        Corruption::Empty,
        Corruption::NotAnImage,
    ];
}

/// One file of the batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub name: String,
    pub kind: FileKind,
    /// Index of the person a QR photo or photo belongs to; `None` for corrupt files.
    pub person: Option<usize>,
    /// sha256 (lowercase hex) of the bytes written.
    pub content_hash: String,
    /// How a corrupt file is broken; `None` for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corruption: Option<Corruption>,
}

/// Reads `dir/manifest.json`.
pub fn read_manifest(dir: &Path) -> Result<Manifest, PhotoError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = fs::read(&path).map_err(|e| PhotoError::io(&path, e))?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| PhotoError::Manifest {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if manifest.schema_version != MANIFEST_SCHEMA_VERSION {
        return Err(PhotoError::Manifest {
            path,
            reason: format!(
                "schema_version {} (this build reads {MANIFEST_SCHEMA_VERSION})",
                manifest.schema_version
            ),
        });
    }
    Ok(manifest)
}

// ---------------------------------------------------------------------------------------------
// Layout: which file is what
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Content {
    Qr { person: usize },
    Photo { person: usize },
    Corrupt(Corruption),
}

#[derive(Debug, Clone)]
struct Planned {
    name: String,
    content: Content,
    /// RNG stream of this file: independent of the other files, so workers can run in any order.
    stream: u64,
}

fn digits(n: usize) -> usize {
    n.max(1).ilog10() as usize + 1
}

fn person_identity(spec: &BatchSpec, index: usize) -> (String, String) {
    let width = digits(spec.people).max(3);
    let number = index + 1;
    let name = format!("Guest {number:0width$}");
    let email = format!("guest{number:0width$}.s{}@example.org", spec.seed);
    (name, email)
}

/// The files of a batch in name order. The spec must be valid.
fn plan(spec: &BatchSpec) -> Vec<Planned> {
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
    let mut files = Vec::with_capacity(plan.len());
    for (_, result) in results {
        files.push(result?);
    }

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
    for (planned, file) in plan.iter().zip(&files) {
        match planned.content {
            Content::Qr { person } => people[person].qr_photo = file.name.clone(),
            Content::Photo { person } => people[person].photos.push(file.name.clone()),
            Content::Corrupt(_) => {}
        }
    }

    let manifest = Manifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        spec: spec.clone(),
        people,
        files,
    };
    let path = out_dir.join(MANIFEST_FILE);
    let tmp = out_dir.join(format!("{MANIFEST_FILE}.tmp"));
    let mut json = serde_json::to_vec_pretty(&manifest).map_err(|e| PhotoError::Manifest {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    json.push(b'\n');
    fs::write(&tmp, &json).map_err(|e| PhotoError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| PhotoError::io(&path, e))?;
    tracing::debug!(
        dir = %out_dir.display(),
        files = manifest.files.len(),
        people = manifest.people.len(),
        "generated photo batch"
    );
    Ok(manifest)
}

fn is_our_file_name(name: &str) -> bool {
    name.strip_prefix("IMG_")
        .and_then(|rest| rest.strip_suffix(".jpg"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn prepare_out_dir(out_dir: &Path, plan: &[Planned]) -> Result<(), PhotoError> {
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

fn write_file(
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
fn render_file(spec: &BatchSpec, planned: &Planned) -> Result<Vec<u8>, PhotoError> {
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

fn encode_jpeg(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, PhotoError> {
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

/// An RGB8 canvas with soft-edged, alpha-blended shapes.
struct Canvas {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

type Color = [f32; 3];

fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn random_color(rng: &mut ChaCha8Rng, lo: u8, hi: u8) -> Color {
    [0; 3].map(|_: u8| f32::from(rng.random_range(lo..=hi)))
}

/// A color near `base`, each channel moved by up to `spread`.
fn tint(rng: &mut ChaCha8Rng, base: f32, spread: f32) -> Color {
    [0; 3].map(|_: u8| (base + rng.random_range(-spread..=spread)).clamp(0.0, 255.0))
}

impl Canvas {
    /// A vertical two-color gradient around a horizon line, lit from one point (vignette).
    fn gradient(
        width: u32,
        height: u32,
        top: Color,
        bottom: Color,
        rng: &mut ChaCha8Rng,
        vignette: f32,
    ) -> Canvas {
        let (w, h) = (width as usize, height as usize);
        let horizon: f32 = rng.random_range(0.3..0.7);
        let blur: f32 = rng.random_range(0.1..0.35);
        let light_x: f32 = rng.random_range(0.2..0.8);
        let light_y: f32 = rng.random_range(0.1..0.5);
        let mut rgb = vec![0u8; w * h * 3];
        for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
            let fy = y as f32 / h as f32;
            let t = smoothstep(horizon - blur, horizon + blur, fy);
            let base = [0, 1, 2].map(|c| lerp(top[c], bottom[c], t));
            let dy = fy - light_y;
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let dx = x as f32 / w as f32 - light_x;
                let light = 1.0 - vignette * (dx * dx + dy * dy);
                for c in 0..3 {
                    px[c] = (base[c] * light).clamp(0.0, 255.0) as u8;
                }
            }
        }
        Canvas {
            width: w,
            height: h,
            rgb,
        }
    }

    /// Blends `color` over the pixels in `[x0, x1) x [y0, y1)` with the alpha `coverage(x, y)`
    /// returns (0 = untouched); `shade(y)` scales the color (lighting).
    fn paint(
        &mut self,
        bounds: (f32, f32, f32, f32),
        color: Color,
        coverage: impl Fn(f32, f32) -> f32,
        shade: impl Fn(f32) -> f32,
    ) {
        let (x0, y0, x1, y1) = bounds;
        let xs = x0.floor().max(0.0) as usize;
        let ys = y0.floor().max(0.0) as usize;
        let xe = (x1.ceil().max(0.0) as usize).min(self.width);
        let ye = (y1.ceil().max(0.0) as usize).min(self.height);
        for y in ys..ye {
            let fy = y as f32 + 0.5;
            let s = shade(fy);
            let row = &mut self.rgb[y * self.width * 3..(y + 1) * self.width * 3];
            for x in xs..xe {
                let a = coverage(x as f32 + 0.5, fy);
                if a <= 0.0 {
                    continue;
                }
                let a = a.min(1.0);
                let px = &mut row[x * 3..x * 3 + 3];
                for c in 0..3 {
                    let v = f32::from(px[c]);
                    px[c] = lerp(v, (color[c] * s).clamp(0.0, 255.0), a) as u8;
                }
            }
        }
    }

    /// A soft-edged filled ellipse.
    fn ellipse(
        &mut self,
        (cx, cy): (f32, f32),
        (rx, ry): (f32, f32),
        soft: f32,
        color: Color,
        alpha: f32,
    ) {
        let r_min = rx.min(ry);
        self.paint(
            (
                cx - rx - soft,
                cy - ry - soft,
                cx + rx + soft,
                cy + ry + soft,
            ),
            color,
            |x, y| {
                let (u, v) = ((x - cx) / rx, (y - cy) / ry);
                let d = (u * u + v * v).sqrt();
                ((1.0 - d) * r_min / soft + 0.5).clamp(0.0, 1.0) * alpha
            },
            |_| 1.0,
        );
    }

    /// A soft-edged rectangle, darker towards its bottom by `falloff`.
    fn rect(
        &mut self,
        (x0, y0, x1, y1): (f32, f32, f32, f32),
        soft: f32,
        color: Color,
        alpha: f32,
        falloff: f32,
    ) {
        let height = (y1 - y0).max(1.0);
        self.paint(
            (x0 - soft, y0 - soft, x1 + soft, y1 + soft),
            color,
            |x, y| {
                let edge = (x - x0).min(x1 - x).min(y - y0).min(y1 - y);
                (edge / soft + 0.5).clamp(0.0, 1.0) * alpha
            },
            |y| 1.0 - falloff * ((y - y0) / height).clamp(0.0, 1.0),
        );
    }

    /// Sensor noise: gaussian-like luminance noise (sd `luma_sd`) plus uniform chroma noise
    /// (amplitude `chroma`), one RNG word per pixel.
    fn noise(&mut self, rng: &mut ChaCha8Rng, luma_sd: f32, chroma: f32) {
        // The sum of four uniform bytes has sd 147.2 around 510.
        let k_luma = luma_sd / 147.2;
        let k_chroma = chroma / 127.5;
        for px in self.rgb.chunks_exact_mut(3) {
            let r = rng.next_u64().to_le_bytes();
            let sum = u32::from(r[0]) + u32::from(r[1]) + u32::from(r[2]) + u32::from(r[3]);
            let luma = (sum as f32 - 510.0) * k_luma;
            for c in 0..3 {
                let chroma_n = (f32::from(r[4 + c]) - 127.5) * k_chroma;
                px[c] = (f32::from(px[c]) + luma + chroma_n)
                    .round()
                    .clamp(0.0, 255.0) as u8;
            }
        }
    }
}

const SKIN_TONES: [Color; 6] = [
    [255.0, 219.0, 172.0],
    [241.0, 194.0, 125.0],
    [224.0, 172.0, 105.0],
    [198.0, 134.0, 66.0],
    [141.0, 85.0, 36.0],
    [92.0, 56.0, 30.0],
];

/// A camera-like event photo: a lit two-tone scene, some people and objects, sensor noise.
fn render_photo(width: u32, height: u32, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let top = random_color(rng, 70, 235);
    let bottom = random_color(rng, 25, 190);
    let vignette = rng.random_range(0.15..0.45);
    let mut canvas = Canvas::gradient(width, height, top, bottom, rng, vignette);
    let (w, h) = (width as f32, height as f32);
    let side = w.min(h);

    let shapes = rng.random_range(8..=18);
    for _ in 0..shapes {
        let soft = 0.8 + side * rng.random_range(0.002..0.02);
        match rng.random_range(0..3u8) {
            0 => {
                let cx = rng.random_range(0.0..w);
                let cy = rng.random_range(0.0..h);
                let rx = side * rng.random_range(0.03..0.22);
                let ry = side * rng.random_range(0.03..0.22);
                let color = random_color(rng, 0, 255);
                let alpha = rng.random_range(0.5..1.0);
                canvas.ellipse((cx, cy), (rx, ry), soft, color, alpha);
            }
            1 => {
                let x0 = rng.random_range(-0.1 * w..w);
                let y0 = rng.random_range(-0.1 * h..h);
                let x1 = x0 + side * rng.random_range(0.05..0.45);
                let y1 = y0 + side * rng.random_range(0.05..0.55);
                let color = random_color(rng, 0, 255);
                let alpha = rng.random_range(0.6..1.0);
                let falloff = rng.random_range(0.0..0.4);
                canvas.rect((x0, y0, x1, y1), soft, color, alpha, falloff);
            }
            _ => {
                // A person: torso down to the bottom edge, head above it.
                let body_w = side * rng.random_range(0.12..0.3);
                let cx = rng.random_range(0.05 * w..0.95 * w);
                let top_y = h * rng.random_range(0.3..0.7);
                let head_r = body_w * rng.random_range(0.3..0.4);
                let clothes = random_color(rng, 0, 255);
                let skin = SKIN_TONES[rng.random_range(0..SKIN_TONES.len())];
                let skin =
                    [0, 1, 2].map(|c| (skin[c] + rng.random_range(-12.0..12.0)).clamp(0.0, 255.0));
                let falloff = rng.random_range(0.1..0.4);
                canvas.rect(
                    (cx - body_w / 2.0, top_y, cx + body_w / 2.0, h + soft),
                    soft,
                    clothes,
                    1.0,
                    falloff,
                );
                canvas.ellipse(
                    (cx, top_y - head_r * 0.9),
                    (head_r * 0.85, head_r),
                    soft,
                    skin,
                    1.0,
                );
            }
        }
    }
    let luma_sd = rng.random_range(4.0..7.0);
    canvas.noise(rng, luma_sd, luma_sd * 0.8);
    canvas.rgb
}

/// The QR code of a registration payload (error correction M, the smallest version that fits).
fn qr_code(payload: &str) -> Result<QrCode, PhotoError> {
    QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::M).map_err(|e| {
        PhotoError::Invalid {
            setting: "people",
            reason: format!("cannot encode QR payload {payload:?}: {e}"),
        }
    })
}

/// A QR photo: `payload` as a QR code on a light card (quiet zone kept), large in the frame,
/// over a light, slightly noisy scene.
fn render_qr_photo(
    width: u32,
    height: u32,
    payload: &str,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<u8>, PhotoError> {
    let code = qr_code(payload)?;
    let modules = code.width();
    let colors = code.to_colors();

    let top_level = rng.random_range(200.0..240.0);
    let top = tint(rng, top_level, 12.0);
    let bottom_level = rng.random_range(180.0..230.0);
    let bottom = tint(rng, bottom_level, 12.0);
    let vignette = rng.random_range(0.08..0.2);
    let mut canvas = Canvas::gradient(width, height, top, bottom, rng, vignette);
    let (w, h) = (width as f32, height as f32);
    let side = w.min(h);
    for _ in 0..rng.random_range(3..=7) {
        let cx = rng.random_range(0.0..w);
        let cy = rng.random_range(0.0..h);
        let rx = side * rng.random_range(0.05..0.25);
        let ry = side * rng.random_range(0.05..0.25);
        let color = random_color(rng, 150, 235);
        let alpha = rng.random_range(0.3..0.6);
        canvas.ellipse((cx, cy), (rx, ry), 2.0 + side * 0.01, color, alpha);
    }

    // Module size: the code spans 40-60% of the shorter side, with a 4-module quiet zone.
    // Small frames get bigger modules than that (rqrr's 1:1:3:1:1 finder test is integer
    // arithmetic on run lengths, which 1-2 px modules after JPEG fail now and then) and a
    // quiet zone narrowed to what fits, at least two modules on the card.
    let short = width.min(height) as usize;
    let share = rng.random_range(0.40..0.60);
    let by_share = ((short as f64 * share) / modules as f64).floor() as usize;
    let max_module = (short / (modules + 2 * MIN_QUIET_MODULES)).max(1);
    let module = by_share.max(MIN_MODULE_PX).min(max_module);
    let quiet = ((short / module).saturating_sub(modules) / 2).clamp(MIN_QUIET_MODULES, 4);
    let card = (modules + 2 * quiet) * module;
    let slack_x = (width as usize).saturating_sub(card);
    let slack_y = (height as usize).saturating_sub(card);
    let card_x = slack_x / 2 + rng.random_range(0..=slack_x / 4) - slack_x / 8;
    let card_y = slack_y / 2 + rng.random_range(0..=slack_y / 4) - slack_y / 8;
    let paper_level = rng.random_range(238.0..250.0);
    let paper = tint(rng, paper_level, 4.0);
    canvas.rect(
        (
            card_x as f32,
            card_y as f32,
            (card_x + card) as f32,
            (card_y + card) as f32,
        ),
        0.8,
        paper,
        1.0,
        0.03,
    );
    let ink_level = rng.random_range(15.0..40.0);
    let ink = tint(rng, ink_level, 6.0);
    let ink = ink.map(|v| v as u8);
    let origin_x = card_x + quiet * module;
    let origin_y = card_y + quiet * module;
    for (i, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules, i / modules);
        for y in origin_y + my * module..origin_y + (my + 1) * module {
            if y >= canvas.height {
                break;
            }
            let row = y * canvas.width * 3;
            for x in origin_x + mx * module..origin_x + (mx + 1) * module {
                if x >= canvas.width {
                    break;
                }
                canvas.rgb[row + x * 3..row + x * 3 + 3].copy_from_slice(&ink);
            }
        }
    }
    let luma_sd = rng.random_range(2.0..3.5);
    canvas.noise(rng, luma_sd, luma_sd * 0.6);
    Ok(canvas.rgb)
}

// ---------------------------------------------------------------------------------------------
// Scanning
// ---------------------------------------------------------------------------------------------

/// What the processor learns from one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scan {
    pub content_hash: String,
    pub width: u32,
    pub height: u32,
    /// Text of the first QR code found that decodes, if any.
    pub qr_payload: Option<String>,
    /// Texts of every QR code found that decodes, each once, in the order found (the first is
    /// `qr_payload`). More than one means several codes in one photo.
    #[serde(default)]
    pub qr_payloads: Vec<String>,
}

/// Why an email address is refused, or `None` when it is one: 1 to 254 bytes, an `@` with
/// something on both sides, no whitespace. The kiosk endpoint and the QR payloads of
/// registrations apply the same rule.
pub fn email_problem(email: &str) -> Option<&'static str> {
    if email.is_empty() {
        return Some("is empty");
    }
    if email.len() > 254 {
        return Some("is longer than 254 bytes");
    }
    if email.contains(char::is_whitespace) {
        return Some("contains whitespace");
    }
    match email.find('@') {
        Some(i) if i > 0 && i + 1 < email.len() => None,
        _ => Some("has no @ with text on both sides"),
    }
}

/// The email of a registration QR payload (`LOCKBENCH-REG:` + an email), or why the payload
/// is not one.
pub fn registration_email(payload: &str) -> Result<&str, String> {
    let Some(email) = payload.strip_prefix(QR_PREFIX) else {
        return Err(format!(
            "QR payload {payload:?} is not a registration (expected {QR_PREFIX} + an email)"
        ));
    };
    match email_problem(email) {
        None => Ok(email),
        Some(problem) => Err(format!(
            "malformed registration QR payload {payload:?}: the email {email:?} {problem}"
        )),
    }
}

/// Decodes the image bytes (format guessed from the content) and looks for a QR code (rqrr on
/// the grayscale image, first grid that decodes). A file that does not decode is a
/// `PhotoError::Decode` naming why: empty, not an image, truncated, or invalid data.
///
/// A JPEG without an end-of-image marker after its scan data is refused as truncated, as
/// Pillow refuses it by default, rather than decoded with its missing part filled in. Never
/// panics: a panic inside a decoder becomes a `Decode` error.
pub fn scan(bytes: &[u8]) -> Result<Scan, PhotoError> {
    let content_hash = content_hash(bytes);
    let (width, height, qr_payloads) =
        match panic::catch_unwind(AssertUnwindSafe(|| scan_image(bytes))) {
            Ok(result) => result?,
            Err(payload) => {
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                return Err(PhotoError::decode(format!("decoder panicked: {what}")));
            }
        };
    Ok(Scan {
        content_hash,
        width,
        height,
        qr_payload: qr_payloads.first().cloned(),
        qr_payloads,
    })
}

fn scan_image(bytes: &[u8]) -> Result<(u32, u32, Vec<String>), PhotoError> {
    let image = decode_image(bytes)?;
    let (width, height) = (image.width(), image.height());
    let luma = to_luma(image);
    let mut prepared = rqrr::PreparedImage::prepare(luma);
    let mut payloads: Vec<String> = Vec::new();
    for grid in prepared.detect_grids() {
        if let Ok((_, text)) = grid.decode() {
            if !payloads.contains(&text) {
                payloads.push(text);
            }
        }
    }
    Ok((width, height, payloads))
}

/// Grayscale for rqrr. RGB8 (every JPEG photo) takes an integer Rec. 709 conversion, several
/// times faster than `into_luma8`'s generic one; the rest goes through `into_luma8`.
fn to_luma(image: image::DynamicImage) -> image::GrayImage {
    match image {
        image::DynamicImage::ImageLuma8(gray) => gray,
        image::DynamicImage::ImageRgb8(rgb) => {
            let (w, h) = rgb.dimensions();
            let luma: Vec<u8> = rgb
                .as_raw()
                .chunks_exact(3)
                .map(|p| {
                    let y = 54 * u32::from(p[0]) + 183 * u32::from(p[1]) + 19 * u32::from(p[2]);
                    ((y + 128) >> 8) as u8
                })
                .collect();
            image::GrayImage::from_raw(w, h, luma)
                .unwrap_or_else(|| image::DynamicImage::ImageRgb8(rgb).into_luma8())
        }
        other => other.into_luma8(),
    }
}

fn decode_image(bytes: &[u8]) -> Result<image::DynamicImage, PhotoError> {
    if bytes.is_empty() {
        return Err(PhotoError::decode("empty file (0 bytes)"));
    }
    let format = image::guess_format(bytes).map_err(|_| {
        let head: String = bytes
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        PhotoError::decode(format!(
            "not an image: unknown content ({} bytes, starting {head})",
            bytes.len()
        ))
    })?;
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(PhotoError::decode(format!(
            "truncated JPEG: no end-of-image marker after the scan data ({} bytes)",
            bytes.len()
        )));
    }
    ImageReader::with_format(Cursor::new(bytes), format)
        .decode()
        .map_err(|e| {
            PhotoError::decode(match &e {
                ImageError::IoError(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
                    format!("truncated {format:?}: {e}")
                }
                ImageError::Unsupported(_) => format!("unsupported image format {format:?}: {e}"),
                ImageError::Limits(_) => format!("{format:?} image too large: {e}"),
                _ => format!("invalid {format:?} data: {e}"),
            })
        })
}

/// Whether a JPEG has an end-of-image marker (FF D9) after its first start-of-scan (FF DA).
/// Entropy-coded data stuffs every FF with 00, so a truncated scan has no FF D9 in it.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let find = |marker: u8| bytes.windows(2).position(|w| w == [0xff, marker]);
    let eoi = bytes.windows(2).rposition(|w| w == [0xff, 0xd9]);
    match (find(0xda), eoi) {
        (Some(sos), Some(eoi)) => eoi > sos,
        // No scan at all: let the decoder say what is wrong.
        (None, _) => true,
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_parses_and_prints() {
        let s: ImageSize = "1024x768".parse().unwrap();
        assert_eq!(s, ImageSize::new(1024, 768));
        assert_eq!(s.to_string(), "1024x768");
        for bad in [
            "",
            "1024",
            "x768",
            "1024x",
            "10 24x768",
            "-1x5",
            "1024x768x3",
            "axb",
        ] {
            let err = bad.parse::<ImageSize>().unwrap_err().to_string();
            assert!(
                err.contains("size") && err.contains(&format!("{bad:?}")),
                "{err}"
            );
        }
    }

    #[test]
    fn plan_spreads_people_and_corrupt_files() {
        let spec = BatchSpec {
            count: 10,
            people: 3,
            corrupt: 4,
            ..BatchSpec::default()
        };
        let files = plan(&spec);
        assert_eq!(files.len(), 14);
        assert_eq!(files[0].name, "IMG_0001.jpg");
        assert!(matches!(files[0].content, Content::Qr { person: 0 }));
        assert!(!matches!(
            files.last().unwrap().content,
            Content::Corrupt(_)
        ));
        let per_person: Vec<usize> = (0..3)
            .map(|p| {
                files.iter()
                    .filter(|f| {
                        matches!(f.content, Content::Qr { person } | Content::Photo { person } if person == p)
                    })
                    .count()
            })
            .collect();
        assert_eq!(per_person, [4, 3, 3]);
        let corrupt = files
            .iter()
            .filter(|f| matches!(f.content, Content::Corrupt(_)))
            .count();
        assert_eq!(corrupt, 4);
        // Many more corrupt files than gaps still keeps them inside.
        let spec = BatchSpec {
            count: 2,
            people: 1,
            corrupt: 5,
            ..BatchSpec::default()
        };
        let files = plan(&spec);
        assert!(matches!(files[0].content, Content::Qr { .. }));
        assert!(matches!(files[6].content, Content::Photo { .. }));
    }

    #[test]
    fn jpeg_completeness() {
        assert!(jpeg_is_complete(&[
            0xff, 0xd8, 0xff, 0xda, 1, 2, 0xff, 0xd9
        ]));
        assert!(!jpeg_is_complete(&[0xff, 0xd8, 0xff, 0xda, 1, 2, 0xff]));
        assert!(!jpeg_is_complete(&[0xff, 0xd8, 0xff, 0xd9, 0xff, 0xda, 1]));
    }

    #[test]
    fn hash_is_lowercase_hex_sha256() {
        assert_eq!(
            content_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
