//! Nothing outlives lockbench: `serve`, started with `LOCKBENCH_PARENT_PID` naming its parent,
//! dies when that parent is killed with SIGKILL, and its workers die with it; a `serve` whose
//! parent is already gone does not start.
//!
//! The processes are real: this test binary runs itself in three roles, chosen by the
//! environment and reached through libtest's name filter. `child_process_entry` is the
//! intermediate parent (it starts `serve` and sleeps until it is killed) or the `serve`
//! process (a supervisor with two workers, `serve::serve` as `lockbench serve` runs it); the
//! supervisor starts its workers as `<its own binary> __worker`, which here is this binary
//! with the filter `__worker`, so `child__worker` runs `serve::worker_from_env` as
//! `lockbench __worker` does. Run normally, both do nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lockbench_server::serve::{
    self, AppSettings, ServeConfig, ENV_CONFIG, ENV_PARENT_PID, ENV_TOKEN,
};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// Which role a process of this binary plays ("parent", "serve"); unset in the test itself.
const ROLE: &str = "LOCKBENCH_TEST_ROLE";
/// The folder the roles share with the test.
const DIR: &str = "LOCKBENCH_TEST_DIR";

/// This binary running one test: `name`, exactly.
fn this_binary(name: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Not a test: the entry point of the intermediate parent and of the `serve` process.
#[test]
fn child_process_entry() {
    let Some(dir) = std::env::var_os(DIR).map(PathBuf::from) else {
        return;
    };
    match std::env::var(ROLE).as_deref() {
        Ok("parent") => {
            let mut child = this_binary("child_process_entry")
                .env(ROLE, "serve")
                .env(ENV_PARENT_PID, std::process::id().to_string())
                .spawn()
                .expect("starting serve");
            std::fs::write(dir.join("serve.pid"), child.id().to_string()).unwrap();
            // Until SIGKILL: this thread started serve, and must outlive it.
            let _ = child.wait();
        }
        Ok("serve") => {
            let config = ServeConfig {
                app: AppSettings {
                    workers: 2,
                    ..AppSettings::default()
                },
                port: 0,
                db: dir.join("app.db"),
                data_dir: Some(dir.join("data")),
                ..ServeConfig::default()
            };
            let ready = dir.join("ready");
            if let Err(e) = serve::serve(config, |addr, _| {
                std::fs::write(&ready, addr.to_string()).unwrap();
            }) {
                std::fs::write(dir.join("serve.err"), format!("{e:#}")).unwrap();
                panic!("{e:#}");
            }
        }
        _ => {}
    }
}

/// Not a test: a worker process of the `serve` role's supervisor (`lockbench __worker`).
#[test]
#[allow(non_snake_case)]
fn child__worker() {
    if std::env::var_os(ENV_CONFIG).is_some() {
        serve::worker_from_env().expect("worker");
    }
}

/// The state letter of a process in /proc, None when there is no such process.
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Alive: in the process table and not a zombie waiting to be reaped.
fn alive(pid: i32) -> bool {
    // Orphans come to this process (a subreaper); reap whatever has ended.
    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
    matches!(state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// The pids whose parent is `parent`.
fn children_of(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        // After the name: state, then the parent's pid.
        let ppid = stat[close + 1..].split_whitespace().nth(1);
        if ppid.and_then(|p| p.parse::<i32>().ok()) == Some(parent) {
            out.push(pid);
        }
    }
    out
}

fn wait_for_file(path: &Path, within: Duration) -> String {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.is_empty() {
                return text;
            }
        }
        assert!(
            started.elapsed() < within,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_and_its_workers_die_when_the_process_that_started_them_is_killed() {
    // Orphans are handed to this process rather than to PID 1, so that the test can reap
    // them and tell "ended" from "still running".
    nix::sys::prctl::set_child_subreaper(true).expect("subreaper");
    let dir = tempfile::tempdir().unwrap();
    let mut parent = this_binary("child_process_entry")
        .env(ROLE, "parent")
        .env(DIR, dir.path())
        .env(ENV_TOKEN, "token")
        .spawn()
        .expect("starting the intermediate parent");
    let serve_pid: i32 = wait_for_file(&dir.path().join("serve.pid"), Duration::from_secs(30))
        .parse()
        .unwrap();
    wait_for_file(&dir.path().join("ready"), Duration::from_secs(120));
    let workers = children_of(serve_pid);
    assert_eq!(workers.len(), 2, "the supervisor's workers: {workers:?}");
    assert!(alive(serve_pid));

    kill(Pid::from_raw(parent.id() as i32), Signal::SIGKILL).unwrap();
    parent.wait().unwrap();
    let killed = Instant::now();
    let mut left: Vec<i32> = std::iter::once(serve_pid).chain(workers).collect();
    while !left.is_empty() && killed.elapsed() < Duration::from_secs(15) {
        left.retain(|&pid| alive(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Whatever is left is killed, so that a failure leaves nothing behind either.
    for &pid in &left {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(pid), None);
    }
    assert!(
        left.is_empty(),
        "still running 15 s after their parent was killed: {left:?}"
    );
    assert!(
        !dir.path().join("serve.err").exists(),
        "serve stopped by its SIGTERM, not by an error"
    );
}

#[test]
fn serve_does_not_start_when_the_parent_it_names_is_already_gone() {
    let dir = tempfile::tempdir().unwrap();
    // Its parent is this test process, not the pid it is given: as if that parent had died
    // between starting it and its asking to die with it.
    let mut serve = this_binary("child_process_entry")
        .env(ROLE, "serve")
        .env(DIR, dir.path())
        .env(ENV_TOKEN, "token")
        .env(ENV_PARENT_PID, "1")
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(30) {
            // It started: stop it (and the workers die with it) before failing.
            let _ = kill(Pid::from_raw(serve.id() as i32), Signal::SIGTERM);
            let _ = serve.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let status = status.expect("serve exits at once when its parent is not the one named");
    assert!(!status.success());
    let err = std::fs::read_to_string(dir.path().join("serve.err")).unwrap();
    assert!(err.contains("LOCKBENCH_PARENT_PID=1"), "{err}");
    assert!(err.contains("is gone"), "{err}");
    assert!(!dir.path().join("ready").exists());
    assert!(!dir.path().join("app.db").exists(), "nothing was prepared");
}
