//! Reading, decoding and QR-scanning photos on two threads ahead of the database thread,
//! handed over in name order. Image work only; never touches the database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use tracing::warn;

use crate::photos::{self, Scan};

use super::files::file_name_of;

/// A photo's path and file name.
pub(super) struct Named {
    pub(super) path: PathBuf,
    pub(super) name: String,
}

/// What one decoded photo turned out to be.
pub(super) struct Decoded {
    pub(super) path: PathBuf,
    pub(super) name: String,
    pub(super) result: Result<Scan, String>,
}

/// Decodes and scans photos on two threads, handing them to `each` in name order.
pub(super) fn decode_in_order(photos: &[PathBuf], mut each: impl FnMut(Decoded)) {
    let (tx, rx) = mpsc::sync_channel::<(usize, Decoded)>(4);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut expected = 0;
    let mut pending: BTreeMap<usize, Decoded> = BTreeMap::new();
    std::thread::scope(|scope| {
        for d in 0..2 {
            let tx = tx.clone();
            let next = &next;
            let spawned = std::thread::Builder::new()
                .name(format!("decoder-{d}"))
                .spawn_scoped(scope, move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = photos.get(i) else { break };
                    if tx.send((i, decode(path))).is_err() {
                        break;
                    }
                });
            if let Err(e) = spawned {
                warn!(error = %e, "could not start a decoder thread");
            }
        }
        drop(tx);
        // Put the decoded photos back in name order.
        for (i, decoded) in rx.iter() {
            pending.insert(i, decoded);
            while let Some(decoded) = pending.remove(&expected) {
                each(decoded);
                expected += 1;
            }
        }
    });
    // Whatever no decoder delivered (no decoder could start, or one died) is decoded here,
    // so that every photo is handled, in order.
    for (i, path) in photos.iter().enumerate().skip(expected) {
        match pending.remove(&i) {
            Some(decoded) => each(decoded),
            None => each(decode(path)),
        }
    }
}

/// The pure image work of a batch (read, decode, QR scan; no database), through the same
/// two-thread pipeline the processor uses: the baseline of the processor's benchmark.
/// Returns each photo's QR payload (None when it has none or does not decode).
pub fn scan_photos(photos: &[PathBuf]) -> Vec<Option<String>> {
    let mut out = Vec::with_capacity(photos.len());
    decode_in_order(photos, |d| {
        out.push(d.result.ok().and_then(|s| s.qr_payload))
    });
    out
}

pub(super) fn decode(path: &Path) -> Decoded {
    let name = file_name_of(path);
    let result = read_photo(path).and_then(|bytes| photos::scan(&bytes).map_err(|e| e.to_string()));
    Decoded {
        path: path.to_path_buf(),
        name,
        result,
    }
}

/// A photo's bytes; a symbolic link is refused, not followed (it may point anywhere, `../`
/// included).
pub(super) fn read_photo(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)
            .map(|t| format!(" (to {})", t.display()))
            .unwrap_or_default();
        return Err(format!(
            "is a symbolic link{target}, not a photo file: links are not followed"
        ));
    }
    if !meta.file_type().is_file() {
        return Err("is not a regular file".into());
    }
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}
