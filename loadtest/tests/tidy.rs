//! Tidy tests, as rust-analyzer keeps its own: each greps the workspace's sources for what
//! must never appear and fails naming the file and line. They keep ARCHITECTURE.md's
//! invariants true as the code changes:
//!
//! - every source file opens with a comment saying what it owns;
//! - `rusqlite::` and `PRAGMA` appear only in `server/src/storage/` (the benches' bare
//!   baseline loop and test fixtures excepted);
//! - loadtest's modules form a one-way stack (`stop`, `scenario`, `report`, `load`, `run`,
//!   `decide`, then the command line), so no file under `report/` uses `run` or `decide`;
//! - no import circle between the files of one folder, nor between a crate's top-level
//!   modules;
//! - no source file over 700 lines, no function in `src/` over 80 lines, no test function
//!   over 150 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir` (relative to the repository), sorted.
fn rust_files(dir: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join(dir), &mut out);
    out.sort();
    out
}

fn shown(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The source with comments blanked out (newlines kept), and with string and character
/// literals' contents blanked too when `strings` is false: what the compiler reads as code.
fn blank(text: &str, strings: bool) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(b.len());
    let keep = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push(' ');
                    out.push(' ');
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push(' ');
                    out.push(' ');
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(keep(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&b, i) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.extend(&b[i..=j]);
            j += 1;
            let close: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                out.push(if strings { b[j] } else { keep(b[j]) });
                j += 1;
            }
            out.extend(&close);
            i = j + close.len();
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(if strings { b[i] } else { ' ' });
                    i += 1;
                }
                if i < b.len() {
                    out.push(if strings { b[i] } else { keep(b[i]) });
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' {
            // A character literal ('a', '\n', '\u{..}') or a lifetime ('a).
            let end = if next == Some('\\') {
                (i + 2..b.len()).find(|&k| b[k] == '\'')
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    out.push('\'');
                    out.extend(std::iter::repeat_n(' ', e - i - 1));
                    out.push('\'');
                    i = e + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out.into_iter().collect()
}

fn ident_before(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

/// The part of a file before its first `#[cfg(test)]`: the code that ships.
fn shipped(code: &str) -> &str {
    code.find("#[cfg(test)]").map_or(code, |i| &code[..i])
}

/// (first line, length in lines, name) of every function with a body.
fn functions(code: &str) -> Vec<(usize, usize, String)> {
    let chars: Vec<char> = code.chars().collect();
    let line_at = |pos: usize| chars[..pos].iter().filter(|c| **c == '\n').count() + 1;
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 < chars.len() {
        let is_fn = chars[i] == 'f'
            && chars[i + 1] == 'n'
            && chars[i + 2] == ' '
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'));
        if !is_fn {
            i += 1;
            continue;
        }
        let name: String = chars[i + 3..]
            .iter()
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .collect();
        // The body: the first `{` before any `;` (a declaration without a body has none).
        let mut j = i + 3;
        while j < chars.len() && chars[j] != '{' && chars[j] != ';' {
            j += 1;
        }
        if j >= chars.len() || chars[j] == ';' {
            i = j;
            continue;
        }
        let mut depth = 0;
        let mut k = j;
        while k < chars.len() {
            match chars[k] {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            k += 1;
        }
        let (from, to) = (line_at(i), line_at(k.min(chars.len() - 1)));
        out.push((from, to - from + 1, name));
        i += 3;
    }
    out
}

const SOURCE_DIRS: [&str; 4] = [
    "server/src",
    "loadtest/src",
    "benches/src",
    "benches/benches",
];

#[test]
fn every_source_file_opens_with_a_comment_saying_what_it_owns() {
    let mut bad = Vec::new();
    for dir in SOURCE_DIRS {
        for f in rust_files(dir) {
            let text = std::fs::read_to_string(&f).unwrap();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") {
                bad.push(format!("{}:1: no opening `//!` comment", shown(&f)));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn only_storage_opens_connections_or_issues_pragmas() {
    let mut bad = Vec::new();
    for dir in ["server/src", "loadtest/src"] {
        for f in rust_files(dir) {
            if shown(&f).starts_with("server/src/storage/") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            let code = blank(&text, true);
            for (n, line) in shipped(&code).lines().enumerate() {
                if line.contains("rusqlite::") || line.contains("PRAGMA") {
                    bad.push(format!("{}:{}: {}", shown(&f), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "outside server/src/storage/:\n{}",
        bad.join("\n")
    );
}

/// loadtest's top-level modules, lowest first: each may use only the ones before it.
const LAYERS: [&str; 10] = [
    "stop", "scenario", "report", "load", "run", "decide", "doctor", "cli", "commands", "lib",
];

fn layer_of(module: &str) -> usize {
    match module {
        "main" => LAYERS.len(),
        m => LAYERS.iter().position(|l| *l == m).unwrap_or(LAYERS.len()),
    }
}

/// The top-level module a file of `src` belongs to ("lib" for lib.rs).
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules a file names with `crate::`.
fn crate_uses(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        if i > 0
            && (code.as_bytes()[i - 1].is_ascii_alphanumeric() || code.as_bytes()[i - 1] == b'_')
        {
            continue;
        }
        let name: String = code[i + 7..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    // `use crate::{a, b}`.
    for (i, _) in code.match_indices("crate::{") {
        let end = code[i..].find('}').map_or(code.len(), |e| i + e);
        for part in code[i + 8..end].split(',') {
            let name: String = part
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn loadtest_is_a_one_way_stack_and_renderers_never_call_back() {
    let src = repo().join("loadtest/src");
    let mut bad = Vec::new();
    for f in rust_files("loadtest/src") {
        let module = top_module(&src, &f);
        let code = blank(&std::fs::read_to_string(&f).unwrap(), false);
        for used in crate_uses(&code) {
            if used != module && layer_of(&used) >= layer_of(&module) {
                bad.push(format!(
                    "{}: module `{module}` uses `crate::{used}`, which is not below it",
                    shown(&f)
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Finds a cycle in a graph, if any.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut c = path[at..].to_vec();
            c.push(n.to_owned());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_import_circles_between_sibling_files_or_top_level_modules() {
    let mut bad = Vec::new();
    for crate_src in ["server/src", "loadtest/src"] {
        let src = repo().join(crate_src);
        let files = rust_files(crate_src);
        // Top-level modules.
        let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        // Sibling files of each folder (a folder's mod.rs is its parent, not a sibling).
        let mut siblings: BTreeMap<PathBuf, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for f in &files {
            let code = blank(&std::fs::read_to_string(f).unwrap(), false);
            let module = top_module(&src, f);
            let known: BTreeSet<String> = files.iter().map(|g| top_module(&src, g)).collect();
            for used in crate_uses(&code).into_iter().filter(|u| known.contains(u)) {
                if used != module {
                    top.entry(module.clone()).or_default().insert(used);
                }
            }
            let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
            if stem == "mod" || stem == "lib" || stem == "main" {
                continue;
            }
            let dir = f.parent().unwrap().to_path_buf();
            let names: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p != f)
                .filter_map(|p| {
                    let name = p.file_stem()?.to_string_lossy().into_owned();
                    let is_module = p.is_dir() || p.extension().is_some_and(|x| x == "rs");
                    (is_module && name != "mod" && name != "tests").then_some(name)
                })
                .collect();
            let graph = siblings.entry(dir).or_default();
            let node = graph.entry(stem.clone()).or_default();
            for name in names {
                if code.contains(&format!("super::{name}::"))
                    || code.contains(&format!("super::{name};"))
                    || code.contains(&format!("super::{{{name}"))
                {
                    node.insert(name);
                }
            }
        }
        if let Some(c) = cycle(&top) {
            bad.push(format!("{crate_src}: modules {}", c.join(" -> ")));
        }
        for (dir, graph) in &siblings {
            if let Some(c) = cycle(graph) {
                bad.push(format!("{}: files {}", shown(dir), c.join(" -> ")));
            }
        }
    }
    assert!(bad.is_empty(), "import circles:\n{}", bad.join("\n"));
}

#[test]
fn files_and_functions_stay_small() {
    let mut bad = Vec::new();
    for dir in ["server/src", "loadtest/src", "benches/src"] {
        for f in rust_files(dir) {
            let text = std::fs::read_to_string(&f).unwrap();
            let lines = text.lines().count();
            if lines > 700 {
                bad.push(format!("{}: {lines} lines (at most 700)", shown(&f)));
            }
            let code = blank(&text, false);
            for (line, len, name) in functions(shipped(&code)) {
                if len > 80 {
                    bad.push(format!(
                        "{}:{line}: fn {name} is {len} lines (at most 80)",
                        shown(&f)
                    ));
                }
            }
        }
    }
    for dir in ["server/tests", "loadtest/tests", "benches/benches"] {
        for f in rust_files(dir) {
            let code = blank(&std::fs::read_to_string(&f).unwrap(), false);
            for (line, len, name) in functions(&code) {
                if len > 150 {
                    bad.push(format!(
                        "{}:{line}: test fn {name} is {len} lines (at most 150)",
                        shown(&f)
                    ));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_checks_see_through_comments_strings_and_chars() {
    let text = "fn a() {\n    let s = \"}\"; // }\n    let c = '}';\n    let r = r#\"{\"#;\n}\n\nfn b(x: &'static str) -> u8 { 1 }\ntrait T { fn c(&self); }\n";
    let code = blank(text, false);
    let found: Vec<(usize, usize, String)> = functions(&code);
    assert_eq!(
        found,
        [(1, 5, "a".to_owned()), (7, 1, "b".to_owned())],
        "{code}"
    );
    // A module that reaches up is seen, one that reaches down is not.
    assert_eq!(
        crate_uses("use crate::{report, run::http};\nlet x = crate::decide::compare;"),
        ["decide", "report", "run"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    let mut graph = BTreeMap::new();
    graph.insert("config".to_owned(), BTreeSet::from(["postgres".to_owned()]));
    graph.insert("postgres".to_owned(), BTreeSet::from(["config".to_owned()]));
    assert!(cycle(&graph).is_some());
}

/// SQL's "now" has one spelling, `now_sql!()` in `server/src/storage/now.rs`, so the
/// PostgreSQL translation can replace exactly it.
#[test]
fn now_is_spelled_only_in_storage_now_rs() {
    let mut elsewhere = Vec::new();
    for dir in SOURCE_DIRS {
        for f in rust_files(dir) {
            if shown(&f) == "server/src/storage/now.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            for (n, line) in text.lines().enumerate() {
                if line.contains("strftime(") {
                    elsewhere.push(format!("{}:{}: {}", shown(&f), n + 1, line.trim()));
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
