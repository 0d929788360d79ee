//! Every setting's default is written once, in its type's `Default`; the command line takes
//! it from there. This checks that a command line with no flags gives exactly `Default`,
//! for every settings type a flag can set, so a default changed in one place is the
//! default everywhere (flags, TOML files, scenarios).

use clap::Parser;
use lockbench_server::photos::BatchSpec;
use lockbench_server::probe::ProbeConfig;
use lockbench_server::processor::ProcessorConfig;
use lockbench_server::serve::ServeConfig;
use lockbench_server::storage::{RetryConfig, StorageConfig};

#[derive(Parser)]
struct Flags<T: clap::Args> {
    #[command(flatten)]
    settings: T,
}

fn no_flags<T: clap::Args>() -> T {
    Flags::<T>::try_parse_from(["lockbench"])
        .expect("no flags parse")
        .settings
}

#[test]
fn a_command_line_without_flags_gives_each_settings_types_default() {
    assert_eq!(no_flags::<StorageConfig>(), StorageConfig::default());
    assert_eq!(no_flags::<RetryConfig>(), RetryConfig::default());
    assert_eq!(no_flags::<ProcessorConfig>(), ProcessorConfig::default());
    assert_eq!(no_flags::<BatchSpec>(), BatchSpec::default());
    assert_eq!(no_flags::<ServeConfig>(), ServeConfig::default());
    // The probe's durations are written as text for the flags ("5s"): compared here.
    assert_eq!(
        format!("{:?}", no_flags::<ProbeConfig>()),
        format!("{:?}", ProbeConfig::default())
    );
}
