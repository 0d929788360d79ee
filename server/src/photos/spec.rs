//! What a batch is made of: the batch spec (`BatchSpec`, `ImageSize`) and its checks, and the
//! manifest that records the ground truth (`Manifest`, `read_manifest`). Describes batches;
//! never draws, encodes or writes photos.

use super::*;

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
    #[arg(long, default_value_t = BatchSpec::default().count)]
    pub count: usize,
    /// Registered people in the batch; each gets one QR photo followed by their photos.
    #[arg(long, default_value_t = BatchSpec::default().people)]
    pub people: usize,
    /// Image size in pixels, WIDTHxHEIGHT.
    #[arg(long, default_value_t = BatchSpec::default().size)]
    pub size: ImageSize,
    /// Seed of every random choice; the same spec gives byte-identical files.
    #[arg(long, default_value_t = BatchSpec::default().seed)]
    pub seed: u64,
    /// Extra corrupt files mixed in between the photos (truncated JPEG, empty file, text).
    #[arg(long, default_value_t = BatchSpec::default().corrupt)]
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
    pub(super) const CYCLE: [Corruption; 3] = [
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
