//! Tidy checks over the server's own source: small rooms (no file in `server/src` over 700
//! lines, no function there over 80, no function in `server/tests` over 150), every file
//! opening with a comment saying what it owns, and "now" spelled in one place
//! (`storage/now.rs`) in every crate's sources. Each failure names the file and the line.
//! Reads files; runs nothing.

use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 700;
const MAX_FN_LINES: usize = 80;
const MAX_TEST_FN_LINES: usize = 150;

/// The workspace root (this crate is `server/`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The text with comments, string and char literals blanked (newlines kept), so that
/// braces and `fn` are found only in code.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        let ident_before = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        let end = if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len())
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            (i + 2..c.len())
                .find(|&j| c[j - 1] == '*' && c[j] == '/')
                .map_or(c.len(), |j| j + 1)
        } else if c[i] == 'r' && !ident_before && matches!(c.get(i + 1), Some('"' | '#')) {
            let hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
            if c.get(i + 1 + hashes) != Some(&'"') {
                i + 1
            } else {
                let close: String = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let rest: String = c[i + 2 + hashes..].iter().collect();
                rest.find(&close).map_or(c.len(), |k| {
                    i + 2 + hashes + rest[..k].chars().count() + close.len()
                })
            }
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            j + 1
        } else if c[i] == '\'' && (c.get(i + 2) == Some(&'\'') || c.get(i + 1) == Some(&'\\')) {
            let mut j = i + 2;
            while j < c.len() && c[j] != '\'' {
                j += 1;
            }
            j + 1
        } else {
            out.push(c[i]);
            i += 1;
            continue;
        };
        let end = end.min(c.len());
        out.extend(c[i..end].iter().map(|&ch| blank(ch)));
        i = end;
    }
    out
}

/// Every function with a body: its name, first line (1-based) and length in lines.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let code = code_only(text);
    let bytes = code.as_bytes();
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(k) = code[from..].find("fn ") {
        let at = from + k;
        from = at + 3;
        let before = at.checked_sub(1).map(|p| bytes[p]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let name: String = code[at + 3..]
            .chars()
            .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        let Some(open) = code[at..].find(['{', ';']).map(|o| at + o) else {
            continue;
        };
        if bytes[open] == b';' {
            continue;
        }
        let mut depth = 0;
        let close = (open..bytes.len()).find(|&p| {
            match bytes[p] {
                b'{' => depth += 1,
                b'}' => depth -= 1,
                _ => {}
            }
            depth == 0
        });
        if let Some(close) = close {
            out.push((name, line_of(at), line_of(close) - line_of(at) + 1));
        }
    }
    out
}

#[test]
fn the_length_check_sees_through_comments_strings_and_chars() {
    let text = "fn a() {\n    let s = \"}\"; // }\n    let c = '}';\n    let r = r#\"{\"#;\n}\n\nfn b(x: &'static str) -> u8 { 1 }\ntrait T { fn c(&self); }\n";
    assert_eq!(
        functions(text),
        [("a".to_owned(), 1, 5), ("b".to_owned(), 7, 1)]
    );
}

#[test]
fn server_files_and_functions_stay_small() {
    let root = workspace();
    let mut too_big = Vec::new();
    for (dir, max_fn, max_file) in [
        ("server/src", MAX_FN_LINES, Some(MAX_FILE_LINES)),
        ("server/tests", MAX_TEST_FN_LINES, None),
    ] {
        for file in rust_files(&root.join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            let shown = file.strip_prefix(&root).unwrap().display().to_string();
            let lines = text.lines().count();
            if max_file.is_some_and(|max| lines > max) {
                too_big.push(format!("{shown}: {lines} lines (at most {MAX_FILE_LINES})"));
            }
            for (name, line, len) in functions(&text) {
                if len > max_fn {
                    too_big.push(format!(
                        "{shown}:{line}: fn {name} is {len} lines (at most {max_fn})"
                    ));
                }
            }
        }
    }
    assert!(too_big.is_empty(), "split these:\n{}", too_big.join("\n"));
}

#[test]
fn every_source_file_opens_with_what_it_owns() {
    let root = workspace();
    let mut bare = Vec::new();
    for dir in [
        "server/src",
        "server/tests",
        "benches/src",
        "benches/benches",
    ] {
        for file in rust_files(&root.join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            if !text.starts_with("//!") {
                bare.push(file.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    assert!(bare.is_empty(), "no opening `//!` comment: {bare:?}");
}

#[test]
fn now_is_spelled_only_in_storage_now_rs() {
    let root = workspace();
    let home = root.join("server/src/storage/now.rs");
    let mut elsewhere = Vec::new();
    for dir in [
        "server/src",
        "benches/src",
        "benches/benches",
        "loadtest/src",
    ] {
        for file in rust_files(&root.join(dir)) {
            if file == home {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                if line.contains("strftime(") {
                    let shown = file.strip_prefix(&root).unwrap().display();
                    elsewhere.push(format!("{shown}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        elsewhere.is_empty(),
        "write \"now\" as now_sql!() (storage/now.rs), not:\n{}",
        elsewhere.join("\n")
    );
}
