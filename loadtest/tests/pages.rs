//! The sweep, breakpoint and run report pages in headless Chromium (WebDriver, as
//! `browser.rs` drives the admin page): a real small sweep's and breakpoint search's pages
//! say their verdict first and their tables match the JSON beside them, every row links to a
//! report that exists, and a run report's wide table stays inside the page at 1,400 px.
//!
//! With `LOCKBENCH_SCREENSHOTS=DIR` set, each test also saves a PNG of the page it checked
//! there; with `LOCKBENCH_SHOOT=PAGE.html=OUT.png,...` (absolute paths) the last test also
//! saves PNGs of the top 2,400 px of those pages at 1,400 px wide, as the README's
//! `docs/img/` were taken from real sweeps.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lockbench::decide::breakpoint::{breakpoint, BreakpointReport, Vary};
use lockbench::decide::sweep::{sweep, SweepReport, SweepRow};
use serde_json::Value;
use support::webdriver::Driver;

/// tests/sweep.rs's tiny scenario, with p99 gates the rows pass easily.
const BASE: &str = r#"
name = "tiny"
[server]
workers = 1
[server.storage]
journal_mode = "wal"
tx_mode = "immediate"
[batch]
count = 12
people = 2
size = "160x120"
[users]
pollers = 4
poll_interval = "200ms"
admins = 0
kiosks = 1
kiosk_interval = "200ms"
[duration]
tail = "500ms"
max = "60s"
[gates]
max_lock_errors = 0
max_lost_writes = 0
[gates.p99_ms]
"GET /api/registrations/updates" = 20000
"POST /api/registrations" = 20000
"#;

const GATED: [&str; 2] = ["GET /api/registrations/updates", "POST /api/registrations"];

fn exe() -> Option<PathBuf> {
    Some(PathBuf::from(env!("CARGO_BIN_EXE_lockbench")))
}

/// Where to save a screenshot of the page just checked, when asked.
fn screenshot(driver: &Driver, name: &str) {
    if let Some(dir) = std::env::var_os("LOCKBENCH_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        driver.screenshot_page(1400, 12_000, &Path::new(&dir).join(name));
    }
}

/// What a page must never hold: anything fetched or run.
fn assert_self_contained(page: &str) {
    for external in ["<script", "<link", "src=", "@import", "url("] {
        assert!(!page.contains(external), "the page holds {external:?}");
    }
}

/// The local file a `file://` URL names (the pages' paths need no decoding beyond spaces).
fn file_of(url: &str) -> PathBuf {
    PathBuf::from(
        url.strip_prefix("file://")
            .unwrap_or_else(|| panic!("not a file URL: {url}"))
            .replace("%20", " "),
    )
}

/// The rule the page states, worked out here on sweep.json: fewest lock errors + lost
/// writes (unaudited rows last), then the lowest of each row's highest gated p99.
fn best_row(rows: &[SweepRow], keep: impl Fn(&SweepRow) -> bool) -> Option<&SweepRow> {
    let p99 = |row: &SweepRow| {
        GATED
            .iter()
            .map(|e| row.p99_ms.get(*e).copied().unwrap_or(f64::INFINITY))
            .fold(0.0, f64::max)
    };
    rows.iter().filter(|r| keep(r)).min_by(|a, b| {
        let key = |r: &SweepRow| {
            (
                r.lost_writes.is_none(),
                r.lock_errors + r.lost_writes.unwrap_or(0),
            )
        };
        key(a).cmp(&key(b)).then(p99(a).total_cmp(&p99(b)))
    })
}

/// A table row's cells' text and its link (the `href` as written, and resolved).
type Row = (Vec<String>, Option<(String, String)>);

/// Each row (less the heading) of the tables `selector` finds, in order.
fn table_rows(driver: &Driver, selector: &str) -> Vec<Row> {
    let v = driver.eval(&format!(
        "return [...document.querySelectorAll({selector:?})].map(t => [...t.querySelectorAll('tr')].slice(1).map(tr => {{\
           const a = tr.querySelector('a');\
           return [[...tr.children].map(c => c.textContent), a ? [a.getAttribute('href'), a.href] : null];\
         }}));"
    ));
    let tables = v.as_array().unwrap_or_else(|| panic!("no {selector}: {v}"));
    tables
        .iter()
        .flat_map(|t| t.as_array().unwrap().clone())
        .map(|row| {
            let cells = row[0]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect();
            let link = row[1].as_array().map(|l| {
                (
                    l[0].as_str().unwrap().to_owned(),
                    l[1].as_str().unwrap().to_owned(),
                )
            });
            (cells, link)
        })
        .collect()
}

fn text_of(driver: &Driver, selector: &str) -> String {
    let v = driver.eval(&format!(
        "const e = document.querySelector({selector:?}); return e ? e.textContent : null;"
    ));
    v.as_str()
        .unwrap_or_else(|| panic!("no {selector} in the page"))
        .to_owned()
}

/// Every table's right edge and the main column's, in CSS pixels at the window's width.
fn table_edges(driver: &Driver) -> (f64, Vec<(String, f64)>) {
    let v = driver.eval(
        "const main = document.querySelector('main').getBoundingClientRect().right;\
         return [main, [...document.querySelectorAll('table')].map(t => {\
           const h = t.previousElementSibling; return [h ? h.textContent : '', t.getBoundingClientRect().right]; })];",
    );
    let main = v[0].as_f64().unwrap();
    let tables = v[1]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t[0].as_str().unwrap().to_owned(), t[1].as_f64().unwrap()))
        .collect();
    (main, tables)
}

#[test]
fn a_real_sweeps_page_says_which_rows_passed_and_the_best_one_and_its_table_matches_sweep_json() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), BASE).unwrap();
    let file = dir.path().join("sweep.toml");
    std::fs::write(
        &file,
        "name = \"pages\"\nbase = \"tiny.toml\"\ndescription = \"<b>bold</b> & a deferred row\"\n\
         [[rows]]\nlabel = \"immediate\"\n\
         [[rows]]\nlabel = \"batch gate 1 ms\"\nset = { \"gates.max_batch_seconds\" = 0.001 }\n\
         [[rows]]\nlabel = \"deferred\"\nset = { \"server.storage.tx_mode\" = \"deferred\" }\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    sweep(&file, &out, exe(), false).expect("sweep");
    let report: SweepReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(report.rows.len(), 3);
    assert!(
        !report.rows[1].passed,
        "a 1 ms batch gate fails: {:?}",
        report.rows[1]
    );
    let page = std::fs::read_to_string(out.join("sweep.html")).unwrap();
    assert_self_contained(&page);

    let driver = Driver::start();
    driver.open(&out.join("sweep.html"));
    // The verdict first: n of N, and the best passing row by the rule it states.
    // A row that passes on an idle machine may not on a busy one: then the page names the
    // row closest to passing, by the same rule.
    let passed = report.rows.iter().filter(|r| r.passed).count();
    let verdict = text_of(&driver, "#verdict");
    let (opening, best) = match best_row(&report.rows, |r| r.passed) {
        Some(best) => (
            format!("{passed} of 3 rows passed their gates. The best passing row, by "),
            best,
        ),
        None => (
            "No row passed its gates (0 of 3). The row closest to passing, by ".to_owned(),
            best_row(&report.rows, |_| true).unwrap(),
        ),
    };
    assert!(verdict.starts_with(&opening), "{verdict}");
    assert!(
        verdict.contains("fewest lock errors + lost writes, then the lowest p99 of the gated requests (the highest of GET /api/registrations/updates, POST /api/registrations)"),
        "{verdict}"
    );
    assert!(
        verdict.contains(&format!("\"{}\"", best.label)),
        "best is {}: {verdict}",
        best.label
    );
    assert_eq!(text_of(&driver, ".verdict .word"), "FAILED");
    let header = driver.eval("return document.querySelector('header').getBoundingClientRect().top < document.querySelector('#rows').getBoundingClientRect().top;");
    assert_eq!(
        header,
        Value::Bool(true),
        "the verdict comes before the table"
    );
    // The description is text, not markup.
    assert!(text_of(&driver, ".meta").contains("<b>bold</b> & a deferred row"));

    // One table row per sweep row: label, pass/fail with the gates failed, lock errors,
    // lost writes, and a link to the row's own report.html.
    let rows = table_rows(&driver, "#rows");
    assert_eq!(rows.len(), report.rows.len());
    let head =
        driver.eval("return [...document.querySelectorAll('#rows th')].map(t => t.textContent);");
    for e in GATED {
        assert!(
            head.as_array()
                .unwrap()
                .iter()
                .any(|h| h == &format!("p99 ms {e}")),
            "{head}"
        );
    }
    for ((cells, link), row) in rows.iter().zip(&report.rows) {
        assert_eq!(cells[1], row.label);
        if row.passed {
            assert!(cells[2].starts_with("pass"), "{cells:?}");
        } else {
            assert!(cells[2].starts_with("FAIL: "), "{cells:?}");
            for gate in &row.gates_failed {
                assert!(cells[2].contains(gate.as_str()), "{cells:?} {gate}");
            }
        }
        assert_eq!(cells[3].replace(',', ""), row.lock_errors.to_string());
        assert_eq!(
            cells[4],
            row.lost_writes
                .map_or("not audited".into(), |n| n.to_string())
        );
        let (href, resolved) = link.as_ref().expect("each row links its report");
        assert!(
            href.starts_with("rows/") && href.ends_with("/report.html"),
            "{href}"
        );
        let target = file_of(resolved);
        assert!(target.is_file(), "{href} -> {}", target.display());
        assert_eq!(target, Path::new(&row.report).with_file_name("report.html"));
    }
    // A chart whose values are all 0 is one line that says so; the rest are bar charts.
    let no_locks = report
        .rows
        .iter()
        .all(|r| r.lock_errors == 0 && r.client_visible_lock_errors == 0);
    assert_eq!(page.contains("No row had a lock error."), no_locks);
    assert!(page.matches("<svg").count() >= 2, "p99 and batch charts");
    let (main, tables) = table_edges(&driver);
    for (before, right) in tables {
        assert!(
            right <= main + 0.5,
            "a table ({before}) ends at {right}, past the page at {main}"
        );
    }
    screenshot(&driver, "sweep.png");
}

#[test]
fn a_real_breakpoint_searchs_page_says_where_each_configuration_broke_and_its_steps_match_the_json()
{
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny.toml");
    std::fs::write(&tiny, BASE).unwrap();
    // Fails at the lowest value: its batch gate is 1 ms. Its own name, so its steps' folders
    // are its own.
    let strict = dir.path().join("strict.toml");
    std::fs::write(
        &strict,
        BASE.replace("name = \"tiny\"", "name = \"strict\"")
            .replace("[gates]\n", "[gates]\nmax_batch_seconds = 0.001\n"),
    )
    .unwrap();
    let out = dir.path().join("bp");
    breakpoint(
        &[tiny, strict],
        Vary::Kiosks,
        2,
        &BTreeMap::new(),
        &out,
        exe(),
    )
    .expect("breakpoint");
    let report: BreakpointReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("breakpoint.json")).unwrap())
            .unwrap();
    let (open, broken) = (&report.results[0], &report.results[1]);
    assert_eq!(
        (open.breaking_point, open.first_failure),
        (Some(2), None),
        "{open:?}"
    );
    assert_eq!(
        (broken.breaking_point, broken.first_failure),
        (None, Some(1)),
        "{broken:?}"
    );
    assert!(
        report
            .results
            .iter()
            .flat_map(|r| &r.steps)
            .all(|s| !s.gates.is_empty()),
        "each step keeps its gates"
    );
    let page = std::fs::read_to_string(out.join("breakpoint.html")).unwrap();
    assert_self_contained(&page);

    let driver = Driver::start();
    driver.open(&out.join("breakpoint.html"));
    let outcomes = driver
        .eval("return [...document.querySelectorAll('#outcomes li')].map(l => l.textContent);");
    let outcomes: Vec<&str> = outcomes
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 2);
    assert!(
        outcomes[0].contains("never broke up to --max 2: the last passing value is 2."),
        "{}",
        outcomes[0]
    );
    let gate = broken.steps[0]
        .gates
        .iter()
        .find(|g| g.name == "max_batch_seconds")
        .unwrap();
    assert!(
        outcomes[1].contains(
            "failed at the lowest value tried, users.kiosks = 1 (max_batch_seconds failed: "
        ) && outcomes[1].contains("against a limit of 0.001): no passing value."),
        "{}",
        outcomes[1]
    );
    // The summary: last passing and first failing values per configuration.
    let summary = table_rows(&driver, "#summary");
    assert_eq!(
        summary[0].0[1..3],
        ["2".to_owned(), "none up to 2".to_owned()]
    );
    assert_eq!(
        summary[1].0[1..4],
        [
            "none (the lowest value failed)".to_owned(),
            "1".to_owned(),
            "max_batch_seconds".to_owned()
        ]
    );
    // Each configuration's steps: the value, passed or not, the figure that decided, a
    // link to the step's report.
    let steps = table_rows(&driver, "table.steps");
    let all: Vec<_> = report.results.iter().flat_map(|r| &r.steps).collect();
    assert_eq!(steps.len(), all.len());
    for ((cells, link), step) in steps.iter().zip(&all) {
        assert_eq!(cells[0], step.value.to_string());
        assert_eq!(cells[1], if step.passed { "pass" } else { "FAIL" });
        assert_eq!(
            cells[2],
            step.first_failed_gate.clone().unwrap_or_else(|| "–".into())
        );
        let (href, resolved) = link.as_ref().expect("each step links its report");
        assert!(!href.starts_with('/'), "relative to the page: {href}");
        assert!(file_of(resolved).is_file(), "{resolved}");
        assert_eq!(
            file_of(resolved),
            Path::new(&step.report).with_file_name("report.html")
        );
    }
    let figure: f64 = steps[2].0[3].replace(',', "").parse().unwrap();
    assert!(
        (figure - gate.value.unwrap()).abs() < 0.01,
        "{figure} {gate:?}"
    );
    // One chart per configuration; the broken one's gate limit drawn across it.
    assert_eq!(page.matches("<svg").count(), 2);
    assert!(page.contains("stroke-dasharray") && page.contains(">limit 0.001<"));
    screenshot(&driver, "breakpoint.png");
}

#[test]
fn a_run_reports_wide_tables_stay_inside_the_page_at_1400_px() {
    let json = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report.json");
    let report: lockbench::report::Report =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert!(
        !report.roles.is_empty(),
        "the fixture has its users per role"
    );
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, lockbench::report::html::render(&report)).unwrap();
    let driver = Driver::start();
    driver.resize(1400, 900);
    driver.open(&page);
    assert_eq!(driver.eval("return window.innerWidth;"), Value::from(1400));
    let (main, tables) = table_edges(&driver);
    let roles = tables
        .iter()
        .find(|(before, _)| before == "User classes")
        .expect("the user classes' table");
    assert!(
        roles.1 <= main + 0.5,
        "the user classes' table ends at {}, past the page at {main}",
        roles.1
    );
    for (before, right) in &tables {
        assert!(
            *right <= main + 0.5,
            "a table ({before}) ends at {right}, past the page at {main}"
        );
    }
    // Its columns are all still there, behind a scroll inside the table's box.
    let wide = driver.eval(
        "const t = [...document.querySelectorAll('table')].find(t => t.previousElementSibling && t.previousElementSibling.textContent == 'User classes');\
         return [t.scrollWidth, t.clientWidth, t.querySelectorAll('th').length];",
    );
    assert_eq!(wide[2], Value::from(16), "{wide}");
    assert!(wide[0].as_f64() >= wide[1].as_f64(), "{wide}");
    let png = dir.path().join("report.png");
    driver.screenshot(&png);
    assert!(
        std::fs::read(&png)
            .unwrap()
            .starts_with(b"\x89PNG\r\n\x1a\n"),
        "a PNG"
    );
    for pair in std::env::var("LOCKBENCH_SHOOT")
        .unwrap_or_default()
        .split(',')
    {
        if let Some((page, png)) = pair.split_once('=') {
            driver.open(Path::new(page));
            driver.screenshot_page(1400, 2_400, Path::new(png));
        }
    }
}
