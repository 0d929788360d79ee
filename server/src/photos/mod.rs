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
//!
//! Files and images only; never touches the database.

mod draw;
mod generate;
mod scan;
mod spec;

use draw::*;
pub use generate::*;
pub use scan::*;
pub use spec::*;
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

#[cfg(test)]
mod tests;
