//! `lockbench compare` as a user runs it: the real binary on report files written to a temp
//! folder, derived from the realistic fixture (tests/fixtures/report.json) by editing JSON
//! values; exit codes 0 (no regression), 1 (regression), 2 (cannot compare). The Markdown is
//! compared with an inline snapshot (regenerate with
//! `UPDATE_EXPECT=1 cargo test -p lockbench --test compare`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lockbench::decide::compare;
use lockbench::report::Report;
use serde_json::{json, Value};

/// The fixture: a real run against the reference server (`tests/fixtures/report.json`,
/// written by `scripts/report-fixture.sh`, then carried to schema 3 by hand): 204 lock
/// errors, four endpoints, a batch and an audit with 204 lost writes.
fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report.json");
    let text = std::fs::read_to_string(path).expect("reading the report fixture");
    serde_json::from_str(&text).expect("the fixture is JSON")
}

fn write(dir: &Path, name: &str, report: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(report).unwrap()).unwrap();
    path
}

/// Writes A (the fixture) and B (the fixture edited by `edit`) and runs
/// `lockbench compare A B ARGS...`.
fn compare_with(edit: impl FnOnce(&mut Value), args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.json", &fixture());
    let mut b = fixture();
    edit(&mut b);
    let b = write(dir.path(), "b.json", &b);
    lockbench(&a, &b, args)
}

fn lockbench(a: &Path, b: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .arg("compare")
        .arg(a)
        .arg(b)
        .args(args)
        .output()
        .expect("run lockbench compare")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

#[test]
fn more_lock_errors_past_the_tolerance_is_a_regression_named_in_the_output() {
    let out = compare_with(|b| b["lock_errors"]["total"] = json!(240), &[]);
    let text = stdout(&out);
    assert_eq!(code(&out), 1, "{text}{}", stderr(&out));
    assert!(
        text.contains("REGRESSION: lock_errors.total 204 → 240 (+17.6%, tolerance 10%)"),
        "{text}"
    );
    assert!(text.starts_with("# lockbench compare: report-fixture — 1 regression\n"));

    // The same change within a wider tolerance passes.
    let out = compare_with(
        |b| b["lock_errors"]["total"] = json!(240),
        &["--tolerance", "0.2"],
    );
    assert_eq!(code(&out), 0, "{}", stdout(&out));
}

#[test]
fn identical_reports_exit_0_with_no_regression() {
    let out = compare_with(|_| {}, &[]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    assert!(
        text.contains("**No regression** past the 10% tolerance (B against A), exit code 0."),
        "{text}"
    );
    assert!(!text.contains("REGRESSION"), "{text}");
    assert!(text.contains("None: both runs requested the same scenario"));
}

#[test]
fn a_different_schema_version_cannot_be_compared() {
    let out = compare_with(|b| b["schema_version"] = json!(4), &[]);
    assert_eq!(code(&out), 2);
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    assert!(err.contains("A has schema_version 3, B has 4"), "{err}");
}

#[test]
fn different_endpoint_sets_cannot_be_compared_and_the_endpoints_are_named() {
    let out = compare_with(
        |b| {
            let requests = b["requests"].as_object_mut().unwrap();
            let updates = requests.remove("GET /api/registrations/updates").unwrap();
            requests.insert("GET /healthz".into(), updates);
        },
        &[],
    );
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("only in A: GET /api/registrations/updates; only in B: GET /healthz"),
        "{err}"
    );
}

#[test]
fn other_scenarios_and_target_kinds_cannot_be_compared() {
    let out = compare_with(
        |b| {
            b["scenario"]["name"] = json!("recommended-675");
            b["target"]["kind"] = json!("external");
        },
        &[],
    );
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("A ran \"report-fixture\", B ran \"recommended-675\""),
        "{err}"
    );
    assert!(
        err.contains("A is \"reference\", B is \"external\""),
        "{err}"
    );
}

#[test]
fn fewer_lock_errors_is_an_improvement_not_a_regression() {
    let out = compare_with(|b| b["lock_errors"]["total"] = json!(150), &[]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(
        text.contains("| lock_errors.total | 204 | 150 | -54 | -26.5% | ok |"),
        "{text}"
    );
}

#[test]
fn the_settings_that_differ_are_listed_as_dotted_keys() {
    let out = compare_with(
        |b| {
            b["settings_requested"]["server"]["storage"]["journal_mode"] = json!("delete");
            b["settings_requested"]["server"]["workers"] = json!(4);
        },
        &[],
    );
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(
        text.contains("- server.storage.journal_mode: wal → delete\n"),
        "{text}"
    );
    assert!(text.contains("- server.workers: 2 → 4\n"), "{text}");
}

#[test]
fn a_different_batch_cap_fault_or_gate_is_listed_and_never_called_the_same_settings() {
    let out = compare_with(
        |b| {
            let s = &mut b["settings_requested"];
            s["batch"]["count"] = json!(350);
            s["duration"]["max"] = json!("10m");
            s["gates"]["max_lock_errors"] = json!(5);
            s["faults"] = json!([{"kind": "kill-worker", "at_photo": 20, "worker": "processor"}]);
        },
        &[],
    );
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}");
    for line in [
        "- batch.count: 60 → 350\n",
        "- duration.max: 50s → 10m\n",
        "- gates.max_lock_errors: 0 → 5\n",
        "- faults[0].kind: (absent) → kill-worker\n",
        "- faults[0].at_photo: (absent) → 20\n",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    assert!(!text.contains("None: both runs"), "{text}");
}

#[test]
fn repeated_runs_noise_never_excuses_lost_writes_or_lock_errors() {
    // Combined reports of `run --repeat`: correctness counts are the largest run's, and
    // each figure's spread is under repeat.
    let repeated = |lost: u64, locks: u64, runs: &[(u64, u64)]| {
        let mut r = fixture();
        r["audit"]["lost_writes"] = json!(lost);
        r["lock_errors"]["total"] = json!(locks);
        let spread = |f: fn(&(u64, u64)) -> u64| {
            let mut v: Vec<u64> = runs.iter().map(f).collect();
            v.sort();
            json!({"median": v[v.len() / 2], "min": v[0], "max": v[v.len() - 1]})
        };
        r["repeat"] = json!({
            "runs": runs.len(),
            "reports": [],
            "spread": {
                "audit.lost_writes": spread(|r| r.0),
                "lock_errors.total": spread(|r| r.1),
            },
        });
        r
    };
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a.json",
        &repeated(0, 10, &[(0, 10), (0, 10), (0, 10)]),
    );
    let b = write(
        dir.path(),
        "b.json",
        &repeated(3, 50, &[(0, 10), (3, 50), (3, 50), (3, 50), (3, 50)]),
    );
    let out = lockbench(&a, &b, &[]);
    let text = stdout(&out);
    assert_eq!(code(&out), 1, "{text}{}", stderr(&out));
    assert!(
        text.contains("REGRESSION: audit.lost_writes 0 → 3 (new: A was 0)"),
        "{text}"
    );
    assert!(
        text.contains("REGRESSION: lock_errors.total 10 → 50 (+400.0%, tolerance 10%)"),
        "{text}"
    );
}

#[test]
fn more_photos_in_more_time_at_a_higher_rate_is_not_a_batch_regression() {
    let dir = tempfile::tempdir().unwrap();
    let with_batch = |processed: u64, seconds: f64| {
        let mut r = fixture();
        r["batch"]["photos"] = json!(processed);
        r["batch"]["processed"] = json!(processed);
        r["batch"]["duration_s"] = json!(seconds);
        r["batch"]["photos_per_s"] = json!(((processed as f64 / seconds) * 100.0).round() / 100.0);
        r
    };
    let a = write(dir.path(), "a.json", &with_batch(62, 14.85));
    let b = write(dir.path(), "b.json", &with_batch(202, 27.0));
    let out = lockbench(&a, &b, &[]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(
        text.contains("| batch.seconds_per_photo | 0.240 | 0.134 | -0.106 | -44.2% | ok |"),
        "{text}"
    );
    assert!(
        text.contains("| batch.duration_s | 14.85 | 27.00 | +12.15 | +81.8% | info |"),
        "{text}"
    );
}

#[test]
fn a_bad_tolerance_exits_2_naming_the_flag() {
    for bad in ["lots", "10", "-5%"] {
        let flag = format!("--tolerance={bad}");
        let out = compare_with(|_| {}, &[&flag]);
        assert_eq!(code(&out), 2, "{bad}");
        let err = stderr(&out);
        assert!(err.contains("--tolerance"), "{bad}: {err}");
    }
}

#[test]
fn unreadable_non_json_and_foreign_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.json", &fixture());
    let not_json = dir.path().join("notes.txt");
    std::fs::write(&not_json, "p99 was fine").unwrap();
    let foreign = write(dir.path(), "package.json", &json!({"name": "x"}));
    let missing = dir.path().join("missing.json");

    let out = lockbench(&good, &missing, &[]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("B ("), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing.json): cannot read it"));

    let out = lockbench(&not_json, &good, &[]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("notes.txt): not JSON"),
        "{}",
        stderr(&out)
    );

    let out = lockbench(&good, &foreign, &[]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("package.json): not a lockbench report"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_lost_write_where_there_were_none_is_a_regression_whatever_the_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = fixture();
    a["audit"]["duplicate_writes"] = json!(0);
    let a = write(dir.path(), "a.json", &a);
    let mut b = fixture();
    b["audit"]["duplicate_writes"] = json!(1);
    let b = write(dir.path(), "b.json", &b);
    let out = lockbench(&a, &b, &["--tolerance", "500%"]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains("REGRESSION: audit.duplicate_writes 0 → 1 (new: A was 0)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn json_output_is_versioned_and_lists_regressions_figures_and_settings() {
    let out = compare_with(
        |b| {
            b["requests"]["POST /api/registrations"]["latency_us"]["p99"] = json!(7_000_000);
            b["settings_requested"]["server"]["storage"]["tx_mode"] = json!("immediate");
        },
        &["--format", "json"],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(doc["schema_version"], 2);
    assert_eq!(doc["exit_code"], 1);
    let name = "requests[POST /api/registrations].p99_ms";
    assert_eq!(doc["regressions"][0]["name"], name);
    let p99 = doc["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .expect("the p99 figure");
    assert_eq!(p99["a"], 2187.263);
    assert_eq!(p99["b"], 7000.0);
    assert_eq!(p99["regression"], true);
    let relative = p99["relative_pct"].as_f64().unwrap();
    assert!((relative - 220.03).abs() < 0.01, "{relative}");
    assert_eq!(
        doc["settings_diff"],
        json!([{"key": "server.storage.tx_mode", "a": "deferred", "b": "immediate"}])
    );
}

/// The library function the command calls, for sweep tooling: B is the fix (WAL, fewer
/// lock errors, a faster batch) but one endpoint got slower at p99.
#[test]
fn markdown_matches_the_snapshot() {
    let a: Report = serde_json::from_value(fixture()).unwrap();
    let mut b = a.clone();
    b.started_at = "2025-11-27T04:12:30Z".into();
    b.verdict.passed = true;
    b.verdict.exit_code = 0;
    b.verdict.summary = "all 3 gates passed; 40 lock errors; 0 lost writes".into();
    b.settings_requested["server"]["retry"]["retry"] = json!("backoff");
    b.lock_errors.total = 40;
    b.lock_errors.by_code.remove("SQLITE_BUSY_SNAPSHOT");
    b.lock_errors.by_code.insert("SQLITE_BUSY".into(), 40);
    b.lock_errors.client_visible = 0;
    let updates = b
        .requests
        .get_mut("GET /api/registrations/updates")
        .unwrap();
    updates.failures = 0;
    updates.status_503 = 0;
    updates.latency_us.p99 = 5_100_000;
    let batch = b.batch.as_mut().unwrap();
    batch.duration_s = 9.1;
    batch.photos_per_s = 38.5;
    b.audit.as_mut().unwrap().lost_writes = 0;

    let c = compare::compare(&a, &b, 0.1).expect("same scenario shape");
    assert_eq!(c.exit_code, 1);
    expect_test::expect![[r#"
        # lockbench compare: report-fixture — 1 regression

        **1 regression** past the 10% tolerance (B against A), exit code 1:

        - REGRESSION: requests[GET /api/registrations/updates].p99_ms 2,001.9 → 5,100.0 (+154.8%, tolerance 10%)

        - **A**: started 2026-11-27T18:24:26Z
        - **B**: started 2025-11-27T04:12:30Z

        ## Settings that differ

        - server.retry.retry: incident → backoff

        ## Per endpoint

        ### `GET /admin`

        | figure | A | B | Δ | Δ % | verdict |
        | --- | ---: | ---: | ---: | ---: | --- |
        | count | 14 | 14 | 0 | 0.0% | info |
        | error_rate_pct | 0.00 | 0.00 | 0.00 | 0.0% | ok |
        | status_503 | 0 | 0 | 0 | 0.0% | info |
        | lock_errors | 0 | 0 | 0 | 0.0% | info |
        | unanswered_at_stop | 0 | 0 | 0 | 0.0% | info |
        | p50_ms | 269.1 | 269.1 | 0.00 | 0.0% | info |
        | p95_ms | 702.5 | 702.5 | 0.00 | 0.0% | info |
        | p99_ms | 702.5 | 702.5 | 0.00 | 0.0% | ok |
        | max_ms | 702.5 | 702.5 | 0.00 | 0.0% | info |
        | p99_from_tick_ms | 704.0 | 704.0 | 0.00 | 0.0% | info |

        ### `GET /api/batches/{id}/status`

        | figure | A | B | Δ | Δ % | verdict |
        | --- | ---: | ---: | ---: | ---: | --- |
        | count | 552 | 552 | 0 | 0.0% | info |
        | error_rate_pct | 0.00 | 0.00 | 0.00 | 0.0% | ok |
        | status_503 | 0 | 0 | 0 | 0.0% | info |
        | lock_errors | 0 | 0 | 0 | 0.0% | info |
        | unanswered_at_stop | 0 | 0 | 0 | 0.0% | info |
        | p50_ms | 89.9 | 89.9 | 0.00 | 0.0% | info |
        | p95_ms | 1,089.5 | 1,089.5 | 0.00 | 0.0% | info |
        | p99_ms | 1,526.8 | 1,526.8 | 0.00 | 0.0% | ok |
        | max_ms | 2,013.2 | 2,013.2 | 0.00 | 0.0% | info |
        | p99_from_tick_ms | 3,242.0 | 3,242.0 | 0.00 | 0.0% | info |

        ### `GET /api/registrations/updates`

        | figure | A | B | Δ | Δ % | verdict |
        | --- | ---: | ---: | ---: | ---: | --- |
        | count | 552 | 552 | 0 | 0.0% | info |
        | error_rate_pct | 0.00 | 0.00 | 0.00 | 0.0% | ok |
        | status_503 | 0 | 0 | 0 | 0.0% | info |
        | lock_errors | 0 | 0 | 0 | 0.0% | info |
        | unanswered_at_stop | 0 | 0 | 0 | 0.0% | info |
        | p50_ms | 202.4 | 202.4 | 0.00 | 0.0% | info |
        | p95_ms | 1,525.8 | 1,525.8 | 0.00 | 0.0% | info |
        | p99_ms | 2,001.9 | 5,100.0 | +3,098.1 | +154.8% | **REGRESSION** |
        | max_ms | 2,101.2 | 2,101.2 | 0.00 | 0.0% | info |
        | p99_from_tick_ms | 2,004.0 | 2,004.0 | 0.00 | 0.0% | info |

        ### `POST /api/registrations`

        | figure | A | B | Δ | Δ % | verdict |
        | --- | ---: | ---: | ---: | ---: | --- |
        | count | 629 | 629 | 0 | 0.0% | info |
        | error_rate_pct | 0.00 | 0.00 | 0.00 | 0.0% | ok |
        | status_503 | 0 | 0 | 0 | 0.0% | info |
        | lock_errors | 0 | 0 | 0 | 0.0% | info |
        | unanswered_at_stop | 3 | 3 | 0 | 0.0% | info |
        | p50_ms | 228.4 | 228.4 | 0.00 | 0.0% | info |
        | p95_ms | 1,427.5 | 1,427.5 | 0.00 | 0.0% | info |
        | p99_ms | 2,187.3 | 2,187.3 | 0.00 | 0.0% | ok |
        | max_ms | 2,355.2 | 2,355.2 | 0.00 | 0.0% | info |
        | p99_from_tick_ms | 2,187.3 | 2,187.3 | 0.00 | 0.0% | info |

        ## Server side

        | figure | A | B | Δ | Δ % | verdict |
        | --- | ---: | ---: | ---: | ---: | --- |
        | lock_errors.total | 204 | 40 | -164 | -80.4% | ok |
        | lock_errors.by_code.SQLITE_BUSY | 204 | 40 | -164 | -80.4% | info |
        | lock_errors.client_visible | 0 | 0 | 0 | 0.0% | info |
        | retries | 204 | 204 | 0 | 0.0% | info |
        | commit_only_dropped | 204 | 204 | 0 | 0.0% | info |
        | processor_failures | 0 | 0 | 0 | 0.0% | ok |
        | batch.seconds_per_photo | 0.243 | 0.149 | -0.094 | -38.7% | ok |
        | batch.duration_s | 14.85 | 9.10 | -5.75 | -38.7% | info |
        | batch.photos_per_s | 4.11 | 38.50 | +34.39 | +836.7% | info |
        | audit.lost_writes | 204 | 0 | -204 | -100.0% | ok |
        | audit.duplicate_writes | 0 | 0 | 0 | 0.0% | ok |
        | audit.misassigned_photos | 27 | 27 | 0 | 0.0% | ok |
        | audit.not_processed | 0 | 0 | 0 | 0.0% | ok |
        | audit.lost_uploads | 3 | 3 | 0 | 0.0% | info |
        | audit.dropped_unaudited | 1 | 1 | 0 | 0.0% | info |
        | audit.unaudited_writes | 0 | 0 | 0 | 0.0% | info |
        | audit.missing_photos | 3 | 3 | 0 | 0.0% | info |

        ## Runs

        | | A | B |
        | --- | --- | --- |
        | started | 2026-11-27T18:24:26Z | 2025-11-27T04:12:30Z |
        | run verdict | exit 1: FAILED: 3 of 4 gates failed (max_lock_errors, p99_ms POST /api/registrations, max_lost_writes); 204 lock errors (server side); 204 lost writes; the batch was stopped at the hard cap | exit 0: all 3 gates passed; 40 lock errors; 0 lost writes |
        | lockbench | 0.1.0 | 0.1.0 |
        | target | http://127.0.0.1:42301 | http://127.0.0.1:42301 |
        | SQLite | 3.51.3 | 3.51.3 |
        | machine | 2 cores, 23.5 GiB, linux x86_64 6.18.44-fc-v595 | 2 cores, 23.5 GiB, linux x86_64 6.18.44-fc-v595 |
        | users | 40 pollers every 1,000 ms, 2 admins every 2,000 ms, 10 kiosks every 200 ms | 40 pollers every 1,000 ms, 2 admins every 2,000 ms, 10 kiosks every 200 ms |
    "#]].assert_eq(&compare::render_markdown(&c));
}

/// `--out DIR`: compare.json, compare.md and compare.html, each the bytes `--format` prints;
/// the page says the verdict first, marks the regression red and the improvement green, lists
/// the settings that differ, and escapes what the reports hold.
#[test]
fn out_writes_json_markdown_and_an_html_page_with_the_regression_marked() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.json", &fixture());
    let mut b = fixture();
    b["lock_errors"]["total"] = json!(240);
    b["audit"]["lost_writes"] = json!(100);
    b["settings_requested"]["server"]["storage"]["journal_mode"] = json!("delete");
    b["settings_requested"]["server"]["label"] = json!("<script>alert('x')</script>");
    let b = write(dir.path(), "b.json", &b);
    let out_dir = dir.path().join("cmp/out");
    let out = lockbench(&a, &b, &["--out", out_dir.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let read = |name: &str| {
        std::fs::read_to_string(out_dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let (json, md, html) = (
        read("compare.json"),
        read("compare.md"),
        read("compare.html"),
    );

    assert_eq!(md, stdout(&out), "compare.md is what the command printed");
    let as_json = lockbench(&a, &b, &["--format", "json"]);
    assert_eq!(code(&as_json), 1);
    assert_eq!(
        json,
        stdout(&as_json),
        "compare.json is --format json's output"
    );
    let as_html = lockbench(&a, &b, &["--format", "html"]);
    assert_eq!(code(&as_html), 1);
    assert_eq!(html, stdout(&as_html), "--format html prints compare.html");

    // Verdict first, then the figures, then the settings that differ, then the runs.
    let at = |needle: &str| {
        html.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing:\n{html}"))
    };
    let verdict =
        at("<span class=\"word\">1 regression</span><span class=\"code\">exit code 1</span>");
    let regression = at("<li>REGRESSION: lock_errors.total 204 → 240 (+17.6%, tolerance 10%)</li>");
    let figures = at("<h2>Per endpoint</h2>");
    let settings = at("<h2>Settings that differ</h2>");
    let runs = at("<h2>Runs</h2>");
    assert!(verdict < regression && regression < figures && figures < settings && settings < runs);
    assert!(html.starts_with("<!DOCTYPE html>\n") && html.ends_with("</html>\n"));

    // The two runs side by side, the regression red, the improvement green.
    at("<th>figure</th><th class=\"n\">A</th><th class=\"n\">B</th><th class=\"n\">change</th>");
    at(
        "<tr class=\"regression\"><td>lock_errors.total</td><td class=\"n\">204</td>\
        <td class=\"n\">240</td><td class=\"n fail\">+36</td><td class=\"n fail\">+17.6%</td>\
        <td class=\"fail\">REGRESSION</td></tr>",
    );
    at(
        "<tr class=\"better\"><td>audit.lost_writes</td><td class=\"n\">204</td>\
        <td class=\"n\">100</td><td class=\"n pass\">-104</td><td class=\"n pass\">-51.0%</td>\
        <td class=\"pass\">ok</td></tr>",
    );
    assert_eq!(
        html.matches("<tr class=\"regression\">").count(),
        1,
        "{html}"
    );

    // The settings that differ, escaped; the page fetches and runs nothing.
    at("<tr><td><code>server.storage.journal_mode</code></td><td>wal</td><td>delete</td></tr>");
    at("<td>(absent)</td><td>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</td>");
    for foreign in ["<script", "<link", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(foreign), "{foreign:?} in the page:\n{html}");
    }
    at(&format!(
        "<strong>A</strong>: <code>{}</code>, started",
        a.display()
    ));
}

#[test]
fn a_file_in_the_place_of_out_exits_2_naming_it_before_comparing() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.json", &fixture());
    let b = write(dir.path(), "b.json", &fixture());
    let in_the_way = dir.path().join("compare-out");
    std::fs::write(&in_the_way, "not a folder").unwrap();
    let out = lockbench(&a, &b, &["--out", in_the_way.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(
        stdout(&out).is_empty(),
        "compared anyway:\n{}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!("--out {}: is a file", in_the_way.display())),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&in_the_way).unwrap(),
        "not a folder"
    );
}
