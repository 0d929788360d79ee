//! The processor's acknowledgements, on disk: one line per write the processor was told had
//! succeeded, so that the runner's audit counts as lost only writes the app acknowledged.
//!
//! # The acks file
//!
//! `<data_dir>/processor-acks.jsonl` ([`ACKS_FILE`]), one JSON object per line (an [`Ack`]):
//!
//! ```text
//! {"batch_id":1,"kind":"photo","key":"9f2c…","file_name":"IMG_0001.jpg","person_id":1}
//! {"batch_id":1,"kind":"failed-photo","key":"failed:1:IMG_0009.jpg","file_name":"IMG_0009.jpg","person_id":null}
//! {"batch_id":1,"kind":"upload","key":"1","file_name":null,"person_id":1}
//! ```
//!
//! A line is written right after the unit of work that recorded the photo (or the upload)
//! returned success, a commit-only "success" after a dropped commit included: that is the
//! write the audit must find missing. Keys: for a recorded photo (`photo`) and for a photo
//! recorded as failed (`failed-photo`), what the row's `photos.content_hash` holds (the
//! content hash; `failed:{batch}:{name}` for a file that did not decode); for an upload, the
//! person's id as text. A re-processing that finds a photo already recorded writes nothing.
//!
//! Each line is written with one `write()` on a file opened with `O_APPEND`, so the lines of
//! several worker processes appending at once never interleave, and a line that `write()`
//! returned is in the page cache, which survives the process's death. Nothing is buffered.
//!
//! Reads and writes this one file; never touches the database.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::text::log_safe;

/// The acks file's name, directly under the server's data folder.
pub const ACKS_FILE: &str = "processor-acks.jsonl";

/// What an acknowledgement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckKind {
    /// A photo recorded for a person, or unassigned (a QR photo that starts a person, a
    /// regular photo, either granularity).
    Photo,
    /// A photo recorded as failed, with its reason.
    FailedPhoto,
    /// A person's folder uploaded and the person marked uploaded.
    Upload,
}

/// One acknowledged write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub batch_id: i64,
    pub kind: AckKind,
    /// What the audit looks for: `photos.content_hash` for photos, the person's id as text
    /// for uploads.
    pub key: String,
    /// The photo's file name as recorded (photos only).
    pub file_name: Option<String>,
    /// The person the photo went to, or who was uploaded (None for an unassigned or failed
    /// photo).
    pub person_id: Option<i64>,
}

/// Reads every acknowledgement of the file at `path`, in file order. A missing file is an
/// empty list (no processor acknowledged anything). A line that does not parse (none should:
/// every line is written whole) is an error of kind `InvalidData` naming the file and the
/// line, not skipped: an audit that cannot read every acknowledgement cannot say how many
/// writes were lost, and must say "unknown" rather than count from part of the file.
pub fn read_acks(path: &Path) -> io::Result<Vec<Ack>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut acks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ack = serde_json::from_str(line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} line {}: not an acknowledgement: {e}",
                    path.display(),
                    i + 1
                ),
            )
        })?;
        acks.push(ack);
    }
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: the last line is incomplete", path.display()),
        ));
    }
    Ok(acks)
}

/// Where one processor run appends its acknowledgements.
pub(super) struct AckLog {
    path: PathBuf,
    /// The open file, or why it could not be opened.
    file: Result<File, String>,
}

impl AckLog {
    /// Opens (creating it and its folder if needed) the acks file for appending. A failure is
    /// logged; every [`AckLog::append`] then reports that its line was not written.
    pub(super) fn open(path: &Path) -> AckLog {
        let file = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| OpenOptions::new().create(true).append(true).open(path))
            .map_err(|e| e.to_string());
        if let Err(e) = &file {
            warn!(path = %log_safe(&path.display().to_string()), error = %log_safe(e),
                "cannot open the processor's acks file; acknowledgements will be missing");
        }
        AckLog {
            path: path.to_path_buf(),
            file,
        }
    }

    /// Appends one acknowledgement as one line with a single `write()`. Returns false when
    /// it could not be written whole (logged).
    pub(super) fn append(&self, ack: &Ack) -> bool {
        let file = match &self.file {
            Ok(file) => file,
            Err(_) => return false,
        };
        let mut line = match serde_json::to_string(ack) {
            Ok(line) => line,
            Err(e) => {
                warn!(error = %e, "cannot encode an acknowledgement");
                return false;
            }
        };
        line.push('\n');
        let mut file: &File = file;
        match file.write(line.as_bytes()) {
            Ok(n) if n == line.len() => true,
            outcome => {
                let error = match outcome {
                    Ok(n) => format!("short write: {n} of {} bytes", line.len()),
                    Err(e) => e.to_string(),
                };
                warn!(path = %log_safe(&self.path.display().to_string()), error = %log_safe(&error),
                    "cannot write an acknowledgement; the audit will not look for this write");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(i: i64) -> Ack {
        Ack {
            batch_id: 1,
            kind: if i % 2 == 0 {
                AckKind::Photo
            } else {
                AckKind::FailedPhoto
            },
            key: format!("key-{i}"),
            file_name: Some(format!("IMG_{i:04}.jpg")),
            person_id: Some(i),
        }
    }

    #[test]
    fn lines_of_several_appenders_never_interleave_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join(ACKS_FILE);
        assert!(
            read_acks(&path).unwrap().is_empty(),
            "missing file: no acks"
        );
        std::thread::scope(|s| {
            for t in 0..4 {
                let path = &path;
                s.spawn(move || {
                    // Each thread its own open file description, as each worker process has.
                    let log = AckLog::open(path);
                    for i in 0..200 {
                        assert!(log.append(&ack(t * 1000 + i)));
                    }
                });
            }
        });
        let mut acks = read_acks(&path).unwrap();
        assert_eq!(acks.len(), 800);
        acks.sort_by_key(|a| a.person_id);
        assert_eq!(acks[0], ack(0));
        assert_eq!(acks[799], ack(3199));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().next().unwrap().contains(r#""kind":"photo""#));
        let upload = Ack {
            batch_id: 2,
            kind: AckKind::Upload,
            key: "7".into(),
            file_name: None,
            person_id: Some(7),
        };
        assert_eq!(
            serde_json::to_string(&upload).unwrap(),
            r#"{"batch_id":2,"kind":"upload","key":"7","file_name":null,"person_id":7}"#
        );
    }

    #[test]
    fn a_line_that_does_not_parse_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ACKS_FILE);
        let good = serde_json::to_string(&ack(2)).unwrap();
        std::fs::write(&path, format!("{good}\nnot json\n")).unwrap();
        let err = read_acks(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("line 2"), "{err}");
        std::fs::write(&path, format!("{good}\n{}", &good[..10])).unwrap();
        assert!(read_acks(&path).is_err());
        std::fs::write(&path, format!("{good}\n\n{good}\n")).unwrap();
        assert_eq!(read_acks(&path).unwrap().len(), 2);
    }
}
