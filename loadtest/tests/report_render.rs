//! The human renderings of a report: the Markdown is compared with a snapshot (regenerate
//! with `UPDATE_EXPECT=1 cargo test -p lockbench --test report_render`), the HTML is checked
//! for what a reader relies on: one file that opens offline, the verdict first, charts that
//! draw, and the report's text escaped.

use std::path::Path;

use lockbench::report::{html, markdown, Report};

/// A real run against the reference server (`tests/fixtures/report-fixture.toml`, written
/// by `scripts/report-fixture.sh`): lock errors, failing gates, lost writes, a batch that
/// did not finish, connections whose busy timeout differs, a 15-second time line, and a
/// scenario description with markup in it. Carried to schema 3 by hand (the whole scenario
/// as `settings_requested`, ticks unanswered at the stop, lockbench's own request, the
/// audit's new counts, how the batch ended); `scripts/report-fixture.sh` regenerates it from
/// a real run once the run side fills schema 3's fields.
fn incident_report() -> Report {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report.json");
    let json = std::fs::read_to_string(&path).expect("reading the report fixture");
    serde_json::from_str(&json).expect("the fixture follows the report schema")
}

/// The same run seen from outside (--target): no server-side figures, no time line, and an
/// endpoint that answered nothing within the run (all zeros).
fn external_report() -> Report {
    let mut r = incident_report();
    r.target.kind = "external".into();
    r.target.url = "https://photos.example.org".into();
    r.settings_effective = None;
    r.sqlite_version = None;
    r.retries = None;
    r.commit_only_dropped = None;
    r.batch = None;
    r.audit = None;
    r.wal = None;
    r.lock_errors.source = lockbench::report::LockSource::ClientsOnly;
    r.lock_errors.total = r.lock_errors.client_visible;
    r.lock_errors.by_code.clear();
    r.lock_errors.by_endpoint.clear();
    r.timeline.clear();
    r.requests.insert("GET /healthz".into(), Default::default());
    r.notes = vec![
        "Server-side figures need the reference server; --target measures only what clients see."
            .into(),
    ];
    r
}

/// Fails if a number in the page could not be drawn (`NaN`, `inf`, `-inf` as Rust prints
/// them), while words such as "info" stay allowed.
fn assert_no_broken_numbers(page: &str) {
    let bad: Vec<&str> = page
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| matches!(*w, "NaN" | "inf" | "Infinity"))
        .collect();
    assert!(bad.is_empty(), "broken numbers {bad:?} in:\n{page}");
}

#[test]
fn markdown_matches_the_snapshot() {
    let md = markdown::render(&incident_report());
    expect_test::expect_file!["snapshots/report.md"].assert_eq(&md);
}

#[test]
fn markdown_puts_the_verdict_first_and_flags_the_odd_busy_timeout() {
    let md = markdown::render(&incident_report());
    let first_heading = md.lines().next().unwrap();
    assert!(first_heading.contains("FAILED"), "{first_heading}");
    let order = [
        "FAILED",
        "## Gates",
        "## Figures",
        "## Settings in effect",
        "## Machine",
        "## Notes",
    ];
    let positions: Vec<usize> = order.iter().map(|h| md.find(h).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert!(md.contains("**5000** ⚠ differs"));
    assert!(md.contains("5000 ms on worker 0 conn 1, worker 1 conn 1; 300 ms on the other 2."));
    assert!(
        !md.contains("<script>"),
        "markup from the report must not pass through raw"
    );
}

#[test]
fn html_is_one_self_contained_page_with_the_verdict_before_the_charts() {
    let page = html::render(&incident_report());
    // To look at the page: LOCKBENCH_RENDER_DIR=/tmp cargo test -p lockbench --test report_render
    if let Some(dir) = std::env::var_os("LOCKBENCH_RENDER_DIR") {
        std::fs::write(Path::new(&dir).join("report.html"), &page).expect("writing report.html");
    }
    for external in ["src=\"http", "<link", "<script", "@import", "url("] {
        assert!(!page.contains(external), "the page loads {external:?}");
    }
    assert!(page.matches("<svg").count() >= 3, "one <svg> per chart");
    let verdict = page.find("FAILED").expect("the verdict is stated");
    let first_chart = page.find("<svg").unwrap();
    assert!(verdict < first_chart, "the verdict comes before the charts");
    assert!(page.contains("class=\"verdict failed\""));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;"));
    assert!(page.contains("5000 &#9888; differs"));
    assert_no_broken_numbers(&page);
}

#[test]
fn html_charts_plot_every_timeline_point() {
    let report = incident_report();
    let page = html::render(&report);
    // Six series on the three time-line charts (sent, answered and lock errors per second;
    // p99 and photos processed; the WAL file's size), one dot per point.
    assert!(report.timeline.iter().any(|p| p.wal_bytes > 0));
    assert_eq!(page.matches("<circle").count(), 6 * report.timeline.len());
    assert_eq!(page.matches("<polyline").count(), 6);
    // Three bars per endpoint.
    let bars = page.matches("<rect x=").count() - 3; // less the legend's three squares
    assert_eq!(bars, 3 * report.requests.len());
}

#[test]
fn external_target_reports_render_without_server_side_sections_or_a_timeline() {
    let report = external_report();
    let md = markdown::render(&report);
    let page = html::render(&report);
    if let Some(dir) = std::env::var_os("LOCKBENCH_RENDER_DIR") {
        std::fs::write(Path::new(&dir).join("report-external.html"), &page)
            .expect("writing report-external.html");
    }
    for text in [&md, &page] {
        assert_no_broken_numbers(text);
        assert!(
            text.matches("not measured: external target").count() >= 5,
            "absent sections say why"
        );
    }
    assert!(md.contains("### Batch\n\nNot measured: external target."));
    assert!(md.contains("- Lost writes (audit): not measured: external target"));
    assert!(
        md.contains("| GET /healthz | 0 | – | 0 | 0 | 0 | 0 | – | – | – | – | – |"),
        "an endpoint that never answered has no latency, not 0 ms"
    );
    assert!(page.matches("<svg").count() >= 3);
    assert!(page.contains("no time line: the run recorded no points"));
    assert!(!page.contains("<polyline"));
}

#[test]
fn an_absent_section_quotes_the_note_that_explains_it() {
    let mut report = incident_report();
    report.wal = None;
    report.batch = None;
    report.notes.retain(|n| !n.contains("batch"));
    report
        .notes
        .push("No WAL figures: journal_mode = delete keeps no write-ahead log.".into());
    let md = markdown::render(&report);
    assert!(md.contains(
        "### WAL\n\nNot measured: No WAL figures: journal_mode = delete keeps no write-ahead log."
    ));
    assert!(md.contains("### Batch\n\nNot measured (the run gave no reason)."));
}

#[test]
fn a_report_with_nothing_in_it_still_renders() {
    let mut report = external_report();
    report.requests.clear();
    report.gates.clear();
    report.notes.clear();
    report.settings_requested = serde_json::Value::Null;
    report.lock_errors = Default::default();
    let md = markdown::render(&report);
    let page = html::render(&report);
    assert!(md.contains("No requests were sent."));
    assert!(md.contains("No gates: the scenario sets none."));
    assert!(page.contains("no requests"));
    assert_no_broken_numbers(&md);
    assert_no_broken_numbers(&page);
}

#[test]
fn what_could_not_be_measured_says_so_in_both_renderings() {
    use lockbench::report::{BatchEnd, GateResult};
    let mut report = incident_report();
    report.lock_errors.missing_workers = vec![2, 3];
    report.processor_failures.insert("upload_person".into(), 1);
    report.audit.as_mut().unwrap().not_processed = 12;
    let batch = report.batch.as_mut().unwrap();
    batch.ended = BatchEnd::Interrupted;
    batch.status = Some("running".into());
    report.gates.push(GateResult {
        name: "max_batch_seconds".into(),
        limit: 60.0,
        value: None,
        passed: false,
        note: Some("the batch did not finish: stopped by an interruption".into()),
    });
    let md = markdown::render(&report);
    let page = html::render(&report);
    assert!(md.contains(
        "| max_batch_seconds | 60 | unknown (the batch did not finish: stopped by an interruption) | **FAIL** |"
    ));
    assert!(page.contains("unknown (the batch did not finish: stopped by an interruption)"));
    for text in [&md, &page] {
        assert!(text.contains(
            "at least 204 (server-side counters; workers 2, 3 did not answer /api/stats)"
        ));
        assert!(text.contains("did not finish: stopped by an interruption"));
        assert!(text.contains("1 (upload_person 1): steps of the batch that did not happen"));
        assert!(text.contains(
            "Photos not processed (never acknowledged: work not reached, not lost writes)"
        ));
        assert!(
            text.contains("lockbench&#39;s own requests")
                || text.contains("lockbench's own requests")
        );
        assert!(text.contains("POST /api/batches"));
    }
    assert!(md.contains(
        "- Photos not processed (never acknowledged: work not reached, not lost writes): 12\n"
    ));
    assert!(md.contains("- Batch status: running\n"));
}

#[test]
fn a_repeated_runs_report_lists_each_run_and_what_each_table_holds() {
    use lockbench::report::{GateResult, Repeat, RunVerdict};
    let mut report = incident_report();
    let run = |k: u32, lost: Option<f64>| RunVerdict {
        run: k,
        passed: lost.is_none(),
        exit_code: u8::from(lost.is_some()),
        summary: format!("run {k}'s own verdict"),
        failed_gates: lost.iter().map(|_| "max_lost_writes".to_owned()).collect(),
        report: format!("run-{k}/report.json"),
        gates: lost
            .iter()
            .map(|v| GateResult {
                name: "max_lost_writes".into(),
                limit: 0.0,
                value: Some(*v),
                passed: false,
                note: None,
            })
            .collect(),
        batch_ended: None,
        flaky: false,
    };
    report.repeat = Some(Repeat {
        runs: 3,
        reports: Vec::new(),
        spread: Default::default(),
        verdicts: vec![run(1, None), run(2, None), run(3, Some(5.0))],
        tables: [
            (
                "audit".to_owned(),
                "the largest of each count across 3 runs".to_owned(),
            ),
            (
                "lock errors".to_owned(),
                "run 2, the one with the most".to_owned(),
            ),
        ]
        .into_iter()
        .collect(),
    });
    let md = markdown::render(&report);
    assert!(md.contains("## Runs"), "{md}");
    assert!(
        md.contains("| 3 | FAIL | max_lost_writes: 5 | run 3's own verdict | run-3/report.json |")
    );
    assert!(md.contains("| 1 | pass | – | run 1's own verdict | run-1/report.json |"));
    assert!(md.contains("- audit: the largest of each count across 3 runs\n"));
    assert!(md.contains("- lock errors: run 2, the one with the most\n"));
    let page = html::render(&report);
    assert!(page.contains("<h2>Runs</h2>"));
    assert!(page.contains("run 3&#39;s own verdict") || page.contains("run 3's own verdict"));
}
