//! The processor's file work: safe folder names, paths that stay inside their folder, and
//! copying and uploading photos. Touches only the file system; never the database.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A photo's file name as recorded: the name itself, or its lossy form when it is not UTF-8.
pub(super) fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Keeps only characters that are safe in a folder name: `text::slug`, at most 40 characters,
/// "person" when nothing is left.
pub(super) fn slug(text: &str) -> String {
    let s: String = crate::text::slug(text).chars().take(40).collect();
    if s.is_empty() {
        "person".into()
    } else {
        s
    }
}

/// Joins a file name read from disk (or a folder name read from the database) under `dir`,
/// refusing anything that is not a plain name, so that nothing is written outside `dir`.
/// A backslash is refused too: it is a plain character here, but a separator wherever the
/// uploads may be copied next.
pub(super) fn inside(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." {
        Some("it names a folder, not a file")
    } else if name.contains('/') || name.contains('\\') {
        Some("it contains a path separator")
    } else if name.contains('\0') {
        Some("it contains a NUL byte")
    } else {
        None
    };
    match why {
        Some(why) => Err(format!("refusing file name {name:?}: {why}")),
        None => Ok(dir.join(name)),
    }
}

/// Creates `folder` (and its parents) and checks it is a real folder, not a symbolic link to
/// somewhere else.
pub(super) fn real_folder(folder: &Path) -> Result<(), String> {
    std::fs::create_dir_all(folder).map_err(|e| format!("creating {}: {e}", folder.display()))?;
    let meta = std::fs::symlink_metadata(folder)
        .map_err(|e| format!("checking {}: {e}", folder.display()))?;
    if !meta.file_type().is_dir() {
        return Err(format!(
            "refusing to write into {}: it is not a folder (a symbolic link?)",
            folder.display()
        ));
    }
    Ok(())
}

/// Copies `from` to `to`, first removing a symbolic link found at `to` (copying onto it would
/// write wherever it points).
pub(super) fn copy_file(from: &Path, to: &Path, label: &str) -> Result<(), String> {
    if std::fs::symlink_metadata(to).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(to).map_err(|e| format!("removing the link {}: {e}", to.display()))?;
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("{label}: {e}"))
}

/// Copies a person's photos into their folder with a metadata file.
pub(super) fn copy_photos(
    photos: &[PathBuf],
    folder: &Path,
    person_id: i64,
    latency: Duration,
) -> Result<(), String> {
    real_folder(folder)?;
    let mut names = Vec::with_capacity(photos.len());
    for photo in photos {
        let name = file_name_of(photo);
        let target = inside(folder, &name)?;
        copy_file(photo, &target, &format!("copying {name}"))?;
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        names.push(name);
    }
    let metadata = serde_json::json!({"person_id": person_id, "photos": names});
    let path = inside(folder, "metadata.json")?;
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&path).map_err(|e| format!("removing {}: {e}", path.display()))?;
    }
    std::fs::write(&path, metadata.to_string())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Copies a person's folder into the upload folder, `latency` per file (the Drive upload).
pub(super) fn upload_folder(source: &Path, target: &Path, latency: Duration) -> Result<(), String> {
    real_folder(target)?;
    let entries =
        std::fs::read_dir(source).map_err(|e| format!("reading {}: {e}", source.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    files.sort();
    for file in files {
        let name = file_name_of(&file);
        let dest = inside(target, &name)?;
        copy_file(&file, &dest, &format!("uploading {name}"))?;
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
    }
    Ok(())
}
