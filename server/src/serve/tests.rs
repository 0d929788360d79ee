//! Unit tests of the serve settings (their TOML, JSON and flag forms, their checks), the
//! restart policy and log, and the sync delay control file.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn restart_delays_double_per_crash_reset_after_a_long_life_and_give_up_at_five_in_a_minute() {
    let policy = RestartPolicy::default();
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);

    // Crashes right after each start: 200, 400, 800, 1600 ms, then the fifth gives up.
    let mut h = CrashHistory::default();
    let delays: Vec<AfterDeath> = (0..5).map(|i| h.died(&policy, at(i), ms(100))).collect();
    assert_eq!(
        delays,
        [
            AfterDeath::Restart(ms(200)),
            AfterDeath::Restart(ms(400)),
            AfterDeath::Restart(ms(800)),
            AfterDeath::Restart(ms(1600)),
            AfterDeath::GiveUp,
        ]
    );

    // Crashes 20 s apart: never 5 in a minute, the wait grows to its cap of 5 s.
    let mut h = CrashHistory::default();
    let delays: Vec<AfterDeath> = (0..8)
        .map(|i| h.died(&policy, at(20 * i), Duration::from_secs(20)))
        .collect();
    assert_eq!(delays[4], AfterDeath::Restart(ms(3200)));
    assert_eq!(delays[5], AfterDeath::Restart(Duration::from_secs(5)));
    assert_eq!(delays[7], AfterDeath::Restart(Duration::from_secs(5)));

    // A worker that stayed up 30 s starts again from 200 ms.
    let mut h = CrashHistory::default();
    h.died(&policy, at(0), ms(10));
    h.died(&policy, at(1), ms(10));
    assert_eq!(
        h.died(&policy, at(40), Duration::from_secs(30)),
        AfterDeath::Restart(ms(200))
    );
    assert_eq!(
        h.died(&policy, at(41), ms(10)),
        AfterDeath::Restart(ms(400))
    );
    // Only crashes of the last 60 s count towards giving up: 4 in the window (40, 41,
    // 61, 62; 0 and 1 are older), then the fifth.
    assert_eq!(
        h.died(&policy, at(61), ms(10)),
        AfterDeath::Restart(ms(800))
    );
    assert_eq!(
        h.died(&policy, at(62), ms(10)),
        AfterDeath::Restart(ms(1600))
    );
    assert_eq!(h.died(&policy, at(63), ms(10)), AfterDeath::GiveUp);
}

#[test]
fn the_control_file_holds_whole_milliseconds_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl");
    assert_eq!(read_sync_delay_control(&path), Ok(None), "absent");
    for (text, expected) in [
        ("", Ok(None)),
        ("  \n", Ok(None)),
        ("0", Ok(Some(ms(0)))),
        ("20\n", Ok(Some(ms(20)))),
        (" 60000 ", Ok(Some(ms(60_000)))),
    ] {
        std::fs::write(&path, text).unwrap();
        assert_eq!(read_sync_delay_control(&path), expected, "{text:?}");
    }
    for (text, says) in [
        ("fast", "\"fast\" is not a whole number"),
        ("-5", "\"-5\" is not a whole number"),
        ("2.5", "\"2.5\" is not a whole number"),
        ("60001", "more than a minute"),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = read_sync_delay_control(&path).unwrap_err();
        assert!(err.contains(says), "{text:?}: {err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
    // A folder where the file should be is an error, not "absent".
    assert!(read_sync_delay_control(dir.path()).is_err());
}

#[test]
fn sync_delay_control_is_a_flag_and_a_toml_key() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeConfig,
    }
    use clap::Parser;
    let cli = Cli::try_parse_from(["serve", "--sync-delay-control", "/tmp/ctl"]).unwrap();
    assert_eq!(
        cli.serve.sync_delay_control,
        Some(PathBuf::from("/tmp/ctl"))
    );
    let from_toml: ServeConfig = toml::from_str("sync_delay_control = \"/tmp/ctl\"").unwrap();
    assert_eq!(from_toml.sync_delay_control, cli.serve.sync_delay_control);
    assert_eq!(ServeConfig::default().sync_delay_control, None);
    let err = toml::from_str::<ServeConfig>("sync_delay_contrl = \"x\"").unwrap_err();
    assert!(err.to_string().contains("sync_delay_contrl"), "{err}");
}

#[test]
fn a_serve_config_file_keeps_the_apps_keys_at_the_top_and_errors_point_at_the_line() {
    let text = r#"
workers = 3
threads = 8
photo_root = "/srv/photos"

[storage]
journal_mode = "wal"

[retry]
retry = "incident"

[processor]
lock_wait_ms = 250
"#;
    let config: ServeConfig = toml::from_str(text).unwrap();
    assert_eq!(config.app.workers, 3);
    assert_eq!(config.app.threads, 8);
    assert_eq!(
        config.app.storage.journal_mode,
        crate::storage::JournalMode::Wal
    );
    assert_eq!(config.app.retry.retry, crate::storage::RetryKind::Incident);
    assert_eq!(config.app.processor.lock_wait_ms, 250);
    assert_eq!(config.photo_root, Some(PathBuf::from("/srv/photos")));
    assert_eq!(
        config.port,
        ServeConfig::default().port,
        "missing keys default"
    );

    // Written back (TOML, or the JSON a child process gets), it reads as the same config.
    let written = toml::to_string(&config).unwrap();
    assert!(written.contains("workers = 3"), "{written}");
    assert!(written.contains("[storage]"), "{written}");
    assert_eq!(toml::from_str::<ServeConfig>(&written).unwrap(), config);
    let json: ServeConfig = serde_json::from_str(&config.to_json()).unwrap();
    assert_eq!(json, config);
    // A scenario's [server] table is the app's part alone, with the same keys.
    let server: AppSettings =
        toml::from_str("workers = 3\nthreads = 8\n[storage]\njournal_mode = \"wal\"").unwrap();
    assert_eq!(server.storage, config.app.storage);

    for (text, line, key) in [
        ("workers = 1\nport = 0\nwokers = 2\n", 3, "wokers"),
        (
            "workers = 1\n[storage]\njournal_mood = \"wal\"\n",
            3,
            "journal_mood",
        ),
        ("port = 0\nworkers = \"two\"\n", 2, "expected u32"),
    ] {
        let err = toml::from_str::<ServeConfig>(text).unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
        assert!(err.contains(&format!("line {line}")), "{err}");
    }
}

#[test]
fn serve_flags_set_the_apps_settings_and_the_photo_root() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeConfig,
    }
    use clap::Parser;
    let cli = Cli::try_parse_from([
        "serve",
        "--workers",
        "4",
        "--threads",
        "2",
        "--journal-mode",
        "wal",
        "--retry",
        "exponential",
        "--lock-wait-ms",
        "9",
        "--photo-root",
        "/srv/photos",
    ])
    .unwrap();
    let app = &cli.serve.app;
    assert_eq!((app.workers, app.threads), (4, 2));
    assert_eq!(app.storage.journal_mode, crate::storage::JournalMode::Wal);
    assert_eq!(app.retry.retry, crate::storage::RetryKind::Exponential);
    assert_eq!(app.processor.lock_wait_ms, 9);
    assert_eq!(cli.serve.photo_root, Some(PathBuf::from("/srv/photos")));
}

#[test]
fn the_check_names_a_wrong_setting_and_returns_the_retry_plan() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig {
        db: dir.path().join("app.db"),
        ..ServeConfig::default()
    };
    assert_eq!(config.check().unwrap(), RetryPlan::default());
    assert_eq!(
        config.photo_root(),
        config.data_dir(),
        "the data folder by default"
    );
    let incident = ServeConfig {
        app: AppSettings {
            retry: crate::storage::RetryConfig {
                retry: crate::storage::RetryKind::Incident,
                ..Default::default()
            },
            ..AppSettings::default()
        },
        ..config.clone()
    };
    assert_eq!(
        incident.check().unwrap().write,
        crate::storage::RetryPolicy::incident_commits()
    );

    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let wrong = |change: &dyn Fn(&mut ServeConfig)| {
        let mut c = config.clone();
        change(&mut c);
        c.check().unwrap_err().to_string()
    };
    for (err, says) in [
        (wrong(&|c| c.app.workers = 0), "invalid setting workers: 0"),
        (
            wrong(&|c| c.app.threads = 10_001),
            "invalid setting threads: 10001",
        ),
        (
            wrong(&|c| {
                c.app.retry.retry = crate::storage::RetryKind::Fixed;
                c.app.retry.retry_attempts = 0;
            }),
            "retry_attempts",
        ),
        (
            wrong(&|c| c.photo_root = Some(file.clone())),
            "invalid setting photo_root",
        ),
        (
            wrong(&|c| c.photo_root = Some(dir.path().join("none"))),
            "is not a folder",
        ),
    ] {
        assert!(err.contains(says), "{err} should say {says}");
    }
}

#[test]
fn serve_command_passes_the_whole_config_in_one_variable() {
    let config = ServeConfig {
        port: 0,
        photo_root: Some(PathBuf::from("/srv/photos")),
        ..ServeConfig::default()
    };
    let cmd = serve_command(Path::new("/bin/lockbench"), &config);
    assert_eq!(cmd.get_program(), "/bin/lockbench");
    assert_eq!(
        cmd.get_args().collect::<Vec<_>>(),
        [std::ffi::OsStr::new(SERVE_SUBCOMMAND)]
    );
    let envs: Vec<_> = cmd.get_envs().collect();
    assert_eq!(envs.len(), 1, "{envs:?}");
    let (name, value) = envs[0];
    assert_eq!(name, ENV_CONFIG);
    let passed: ServeConfig = serde_json::from_str(value.unwrap().to_str().unwrap()).unwrap();
    assert_eq!(passed, config);
}

#[test]
fn restart_events_are_written_and_read_as_one_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = restarts_path(dir.path());
    assert_eq!(
        read_restart_events(&path).unwrap(),
        [],
        "no log: no restart"
    );
    let restarted = RestartEvent {
        unix_ms: 1_700_000_000_000,
        worker: 1,
        pid: 41,
        status: "signal: 9 (SIGKILL)".into(),
        action: RestartAction::Restarted,
        delay_ms: 200,
        new_pid: Some(42),
    };
    let gave_up = RestartEvent {
        action: RestartAction::GaveUp,
        delay_ms: 0,
        new_pid: None,
        ..restarted.clone()
    };
    append_restart_event(&path, &restarted);
    append_restart_event(&path, &gave_up);
    assert_eq!(
        read_restart_events(&path).unwrap(),
        [restarted.clone(), gave_up]
    );
    // The line as it always was.
    let text = std::fs::read_to_string(&path).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["action"], "restarted");
    assert_eq!(first["new_pid"], 42);
    assert!(text
        .lines()
        .nth(1)
        .unwrap()
        .contains(r#""action":"gave-up""#));
    assert!(text.lines().nth(1).unwrap().contains(r#""new_pid":null"#));
    // A line that is not an event is an error naming the file and the line.
    std::fs::write(
        &path,
        format!("{}\n{{\"worker\": 1}}\n", text.lines().next().unwrap()),
    )
    .unwrap();
    let err = read_restart_events(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("line 2"), "{err}");
}
