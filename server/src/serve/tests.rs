//! Unit tests of the serve settings, the restart policy and the sync delay control file.

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
