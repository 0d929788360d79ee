//! lockbench as a CI citizen: every command gates with its exit code, JUnit XML that a real
//! XML parser reads, GitHub's step summary, and scenario checks before a run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lockbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run lockbench")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (name, failure message) of every test case in a JUnit file, read with an XML parser.
fn junit_cases(path: &Path) -> Vec<(String, Option<String>)> {
    let text = std::fs::read_to_string(path).expect("the JUnit file");
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    root.descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|case| {
            let failure = case
                .children()
                .find(|c| c.has_tag_name("failure"))
                .map(|f| f.attribute("message").unwrap_or_default().to_owned());
            (
                case.attribute("name").unwrap_or_default().to_owned(),
                failure,
            )
        })
        .collect()
}

#[test]
fn run_writes_junit_with_one_test_case_per_gate_and_a_failing_gate_is_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    let junit = dir.path().join("junit.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args(["run", "scenarios/ci-smoke.toml", "--out"])
        .arg(dir.path().join("ok"))
        .arg("--junit")
        .arg(&junit)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("ok/report.json")).unwrap())
            .unwrap();
    let gates: Vec<&str> = report["gates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    let cases = junit_cases(&junit);
    assert_eq!(
        cases.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        gates,
        "one test case per gate"
    );
    assert!(cases.iter().all(|(_, f)| f.is_none()), "{cases:?}");
    // The step summary has the verdict and the gate table.
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("# lockbench: ci-smoke — PASSED"), "{md}");
    assert!(md.contains("| gate | limit | value | result |"), "{md}");
    assert!(!md.contains("## Figures"), "{md}");
    // The report says where it came from.
    assert!(report["machine"]["load_average_start"].is_array());

    // A gate that cannot pass: exit 1, and its test case is a <failure> naming the figure.
    let junit = dir.path().join("failing.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .args([
            "run",
            "scenarios/ci-smoke.toml",
            "--set",
            "gates.max_batch_seconds=0.001",
        ])
        .arg("--out")
        .arg(dir.path().join("failing"))
        .arg("--junit")
        .arg(&junit)
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let cases = junit_cases(&junit);
    let failed: Vec<&(String, Option<String>)> =
        cases.iter().filter(|(_, f)| f.is_some()).collect();
    assert_eq!(failed.len(), 1, "{cases:?}");
    assert_eq!(failed[0].0, "max_batch_seconds");
    let message = failed[0].1.as_deref().unwrap();
    assert!(
        message.contains("max_batch_seconds") && message.contains("limit 0.001"),
        "{message}"
    );
}

#[test]
fn contend_gates_exit_1_on_the_incident_settings_and_0_on_the_recommended_ones() {
    // Whether writers collide within 2 s depends on the scheduler: on a loaded machine one
    // probe may see none. Up to three probes; each that passes its gate must have counted 0.
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let incident = lockbench(&[
            "contend",
            "--journal-mode",
            "delete",
            "--tx-mode",
            "deferred",
            "--writers",
            "4",
            "--readers",
            "4",
            "--duration",
            "2s",
            "--max-lock-errors",
            "0",
        ]);
        let err = String::from_utf8_lossy(&incident.stderr).into_owned();
        let out = String::from_utf8_lossy(&incident.stdout).into_owned();
        match incident.status.code() {
            Some(1) => {
                assert!(err.contains("gate failed: max_lock_errors"), "{err}");
                outcomes.clear();
                break;
            }
            Some(0) => assert!(
                out.contains(" 0 lock errors") || out.contains("no lock"),
                "{out}"
            ),
            other => panic!("contend exited {other:?}: {err}"),
        }
        outcomes.push(out);
    }
    assert!(
        outcomes.is_empty(),
        "three probes on the incident's settings met no lock error: {outcomes:?}"
    );
    let recommended = lockbench(&[
        "contend",
        "--journal-mode",
        "wal",
        "--tx-mode",
        "immediate",
        "--writers",
        "4",
        "--readers",
        "4",
        "--duration",
        "2s",
        "--max-lock-errors",
        "0",
        "--max-lost-writes",
        "0",
    ]);
    assert_eq!(
        recommended.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&recommended.stdout)
    );
}

#[test]
fn validate_accepts_the_shipped_scenarios_and_names_what_is_wrong_in_a_bad_one() {
    let mut files: Vec<String> = std::fs::read_dir(repo().join("scenarios"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| format!("scenarios/{}", e.file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".toml"))
        .collect();
    files.sort();
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = lockbench(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in &files {
        assert!(
            text.contains(&format!("# {f}: valid")),
            "{f} not listed: {text}"
        );
    }
    // Resolved settings, defaults included, are printed.
    assert!(text.contains("pool_order = \"fifo\""), "{text}");

    let dir = tempfile::tempdir().unwrap();
    for (key, text) in [
        (
            "journal_mood",
            "name = \"x\"\n[server.storage]\njournal_mood = \"wal\"\n",
        ),
        (
            "GET /api/registrations/updatez",
            "name = \"x\"\n[gates.p99_ms]\n\"GET /api/registrations/updatez\" = 100\n",
        ),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = lockbench(&["validate", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(key), "{key} not named: {err}");
    }
}

#[test]
fn a_sweep_exits_1_when_a_row_fails_its_gates_and_writes_one_test_case_per_row() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tiny.toml"),
        r#"
name = "tiny"
[server.storage]
journal_mode = "wal"
tx_mode = "immediate"
[batch]
count = 8
people = 2
size = "160x120"
[users]
pollers = 2
poll_interval = "200ms"
admins = 0
kiosks = 1
kiosk_interval = "200ms"
[duration]
tail = "300ms"
max = "60s"
"#,
    )
    .unwrap();
    let sweep = dir.path().join("sweep.toml");
    std::fs::write(
        &sweep,
        "name = \"s\"\nbase = \"tiny.toml\"\n[[rows]]\nlabel = \"fine\"\n[[rows]]\nlabel = \"impossible\"\nset = { \"gates.max_batch_seconds\" = 0.0001 }\n",
    )
    .unwrap();
    let junit = dir.path().join("sweep.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .arg("sweep")
        .arg(&sweep)
        .arg("--out")
        .arg(dir.path().join("out"))
        .args(["--max-lost-writes", "0", "--junit"])
        .arg(&junit)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases = junit_cases(&junit);
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0], ("fine".to_owned(), None));
    assert_eq!(cases[1].0, "impossible");
    assert!(cases[1].1.as_deref().unwrap().contains("max_batch_seconds"));
    // The gate given on the command line was applied to every row.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/sweep.json")).unwrap())
            .unwrap();
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(json["rows"][0]["report"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert!(report["gates"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["name"] == "max_lost_writes"));
}

/// A tiny scenario for repeated runs, written into `dir`.
fn tiny_repeat_scenario(dir: &Path) -> PathBuf {
    let scenario = dir.join("tiny.toml");
    std::fs::write(
        &scenario,
        r#"
name = "tiny-repeat"
[server.storage]
journal_mode = "wal"
tx_mode = "immediate"
[batch]
count = 6
people = 2
size = "160x120"
[users]
pollers = 3
poll_interval = "100ms"
admins = 0
kiosks = 1
kiosk_interval = "100ms"
[duration]
tail = "300ms"
max = "60s"
[gates]
max_lost_writes = 0
"#,
    )
    .unwrap();
    scenario
}

#[test]
fn repeated_runs_keep_medians_and_spreads_and_name_each_run() {
    use lockbench::report::Report;
    let dir = tempfile::tempdir().unwrap();
    let scenario = tiny_repeat_scenario(dir.path());
    let out = dir.path().join("repeat");
    let junit = dir.path().join("repeat.xml");
    let status = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .arg("run")
        .arg(&scenario)
        .args(["--repeat", "3", "--out"])
        .arg(&out)
        .arg("--junit")
        .arg(&junit)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let repeat = report.repeat.as_ref().expect("the repeat section");
    assert_eq!(repeat.runs, 3);
    for k in 1..=3 {
        assert!(out.join(format!("run-{k}/report.json")).is_file());
    }
    let p99 = "requests[GET /api/registrations/updates].p99_ms";
    let s = &repeat.spread[p99];
    assert!(s.min <= s.median && s.median <= s.max, "{s:?}");
    assert_eq!(
        report.requests["GET /api/registrations/updates"]
            .latency_us
            .p99 as f64
            / 1000.0,
        s.median
    );
    // Each run's own verdict is kept; the combined one says they all passed; each table
    // says what it holds; JUnit has the gate and one case per run.
    assert_eq!(repeat.verdicts.len(), 3);
    assert!(repeat.verdicts.iter().all(|v| v.passed && !v.flaky));
    assert!(
        report.verdict.summary.ends_with("; all 3 runs passed"),
        "{}",
        report.verdict.summary
    );
    assert!(repeat.tables["requests"].starts_with("medians of 3 runs"));
    assert!(repeat.tables["audit"].starts_with("the largest of each count"));
    assert_eq!(
        junit_cases(&junit),
        [
            ("max_error_rate".to_owned(), None),
            ("max_lost_writes".to_owned(), None),
            ("run 1".to_owned(), None),
            ("run 2".to_owned(), None),
            ("run 3".to_owned(), None),
        ]
    );
}

/// B is A with one p99 grown by 50%: a regression past a 10% tolerance, unless A's own runs
/// went that high; B's spread never excuses it.
#[test]
fn compare_excuses_a_timing_only_within_as_own_range() {
    use lockbench::report::{Repeat, Report, Spread};
    let report: Report = serde_json::from_str(
        &std::fs::read_to_string(repo().join("loadtest/tests/fixtures/report.json")).unwrap(),
    )
    .unwrap();
    let p99 = "requests[GET /api/registrations/updates].p99_ms";
    let with_spread = |r: &Report, below: f64, above: f64| {
        let mut r = r.clone();
        let v = r.requests["GET /api/registrations/updates"].latency_us.p99 as f64 / 1000.0;
        r.repeat = Some(Repeat {
            runs: 3,
            reports: Vec::new(),
            spread: [(
                p99.to_owned(),
                Spread {
                    median: v,
                    min: v - below,
                    max: v + above,
                },
            )]
            .into_iter()
            .collect(),
            verdicts: Vec::new(),
            tables: Default::default(),
        });
        r
    };
    let mut b = report.clone();
    let base = b.requests["GET /api/registrations/updates"].latency_us.p99;
    b.requests
        .get_mut("GET /api/registrations/updates")
        .unwrap()
        .latency_us
        .p99 = base + base / 2 + 2_000;
    let grown =
        (b.requests["GET /api/registrations/updates"].latency_us.p99 - base) as f64 / 1000.0;
    let regressed = |a: &Report, b: &Report| {
        lockbench::decide::compare::compare(a, b, 0.1)
            .unwrap()
            .regressions
            .iter()
            .any(|r| r.name == p99)
    };
    assert!(regressed(
        &with_spread(&report, 0.0, 0.0),
        &with_spread(&b, 0.0, 0.0)
    ));
    // A's largest run is above B: within A's range.
    assert!(!regressed(
        &with_spread(&report, 0.0, grown * 1.5),
        &with_spread(&b, 0.0, 0.0)
    ));
    // A's runs stayed below B, however wide B's own spread.
    assert!(regressed(
        &with_spread(&report, grown / 2.0, grown / 2.0),
        &with_spread(&b, grown * 5.0, grown * 5.0)
    ));
}

#[test]
fn repeated_runs_that_fail_a_gate_exit_1_naming_each_run() {
    use lockbench::report::Report;
    let dir = tempfile::tempdir().unwrap();
    let scenario = tiny_repeat_scenario(dir.path());
    // Two runs that both fail a gate: exit 1, each run named and a failing JUnit case.
    let out = dir.path().join("failing");
    let junit = dir.path().join("failing.xml");
    let status = Command::new(env!("CARGO_BIN_EXE_lockbench"))
        .arg("run")
        .arg(&scenario)
        .args([
            "--repeat",
            "2",
            "--set",
            "gates.max_batch_seconds=0.000001",
            "--out",
        ])
        .arg(&out)
        .arg("--junit")
        .arg(&junit)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let summary = &report.verdict.summary;
    assert!(
        summary.starts_with("FAILED: 1 of 3 gates failed (max_batch_seconds)"),
        "{summary}"
    );
    for k in 1..=2 {
        assert!(
            summary.contains(&format!("run {k} of 2 failed: max_batch_seconds (")),
            "{summary}"
        );
    }
    let cases = junit_cases(&junit);
    let names: Vec<&str> = cases.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "max_error_rate",
            "max_lost_writes",
            "max_batch_seconds",
            "run 1",
            "run 2"
        ]
    );
    for (name, failure) in &cases[3..] {
        let message = failure
            .as_deref()
            .unwrap_or_else(|| panic!("{name} failed"));
        assert!(
            message.contains("max_batch_seconds") && message.contains("limit 0.000001"),
            "{message}"
        );
    }
}
