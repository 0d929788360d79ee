//! The machine a run is measured on, for the report: cores, memory, kernel, the load
//! average at the start and the end, and the git commit of the project under test. Reads
//! the system; measures nothing of the run.

use crate::report::Machine;

/// Cores, memory and kernel of this machine; the load averages are filled by the run.
pub fn machine() -> Machine {
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    Machine {
        load_average_start: None,
        load_average_end: None,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes,
        os: format!(
            "{} {} {}",
            std::env::consts::OS,
            std::env::consts::ARCH,
            kernel.trim()
        ),
    }
}

/// The git commit of the checkout lockbench runs in, if it is one ("<sha>" or "<sha>-dirty").
pub fn git_commit() -> Option<String> {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let sha = run(&["rev-parse", "HEAD"]).filter(|s| !s.is_empty())?;
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{sha}-dirty") } else { sha })
}

/// The machine's load average over 1, 5 and 15 minutes (Linux), if it can be read.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<f64>().ok());
    Some([parts.next()??, parts.next()??, parts.next()??])
}
