//! Stopping: lockbench's signal handler and the registry of what it started, so that every way
//! it can be stopped leaves nothing behind.
//!
//! - The first Ctrl-C, SIGTERM (what a CI cancel and `timeout` send) or SIGHUP asks the run,
//!   sweep or search to stop: it stops its load, its batch and its servers within seconds,
//!   writes its report marked interrupted, and exits with [`INTERRUPTED_EXIT`]. A second
//!   signal stops every child process group and removes every temporary folder at once, then
//!   exits.
//! - A panic stops every child process group and removes every temporary folder before the
//!   default panic message.
//! - The child processes themselves die with lockbench even when it is killed outright
//!   (SIGKILL): they are started with [`PARENT_PID_ENV`], and `lockbench serve` and
//!   `lockbench __fault` ask the kernel for SIGTERM when their parent dies.
//!
//! Knows processes and folders only; never a run's figures.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// The exit code of a run stopped by a signal (128 + SIGINT, as shells report Ctrl-C).
pub const INTERRUPTED_EXIT: u8 = 130;

/// Set in every child process lockbench starts: lockbench's own pid. The child asks the
/// kernel to send it SIGTERM when that parent dies, and exits at once if its parent is
/// already another process (`lockbench_server::serve::die_with_parent`). The kernel ties
/// the signal to the parent *thread*: children are started from threads that outlive them.
pub use lockbench_server::serve::ENV_PARENT_PID as PARENT_PID_ENV;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static FOLDERS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static HANDLER: OnceLock<()> = OnceLock::new();

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Installs lockbench's handler for Ctrl-C, SIGTERM and SIGHUP once per process, and the
/// panic hook. goose's own Ctrl-C handler is then refused (a process has one), so the load
/// answers to this one.
pub fn install() {
    HANDLER.get_or_init(|| {
        let result = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("lockbench: second signal, stopping at once");
                stop_everything();
                std::process::exit(i32::from(INTERRUPTED_EXIT));
            }
            eprintln!(
                "lockbench: interrupted, stopping and writing what was measured (interrupt again to quit at once)"
            );
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not install the signal handler");
        }
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            stop_everything();
            default(info);
        }));
    });
}

/// Whether lockbench was asked to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The flag [`interrupted`] reads, for code outside this crate that polls it (the contention
/// probe).
pub fn flag() -> &'static AtomicBool {
    &INTERRUPTED
}

/// Starts `command` as the leader of its own process group (so the terminal's Ctrl-C reaches
/// only lockbench, which stops it in order), with [`PARENT_PID_ENV`] set, and remembers it so
/// that a second signal or a panic can stop it.
pub fn spawn_group(command: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let child = command
        .env(PARENT_PID_ENV, std::process::id().to_string())
        .process_group(0)
        .spawn()?;
    locked(&CHILDREN).push(child.id());
    Ok(child)
}

/// Forgets a child that has been waited for.
pub fn forget_child(pid: u32) {
    locked(&CHILDREN).retain(|p| *p != pid);
}

/// A temporary folder that is removed when dropped, and also by a second signal or a panic.
pub struct TempFolder {
    dir: Option<tempfile::TempDir>,
}

impl TempFolder {
    pub fn new() -> std::io::Result<TempFolder> {
        let dir = tempfile::Builder::new().prefix("lockbench-").tempdir()?;
        locked(&FOLDERS).push(dir.path().to_path_buf());
        Ok(TempFolder { dir: Some(dir) })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }
}

impl Drop for TempFolder {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            locked(&FOLDERS).retain(|p| p != dir.path());
            let _ = dir.close();
        }
    }
}

/// SIGTERM to every child process group, then the temporary folders removed.
fn stop_everything() {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    // try_lock: this may run inside a panic while the registry is held.
    if let Ok(children) = CHILDREN.try_lock() {
        for pid in children.iter() {
            let _ = killpg(Pid::from_raw(*pid as i32), Signal::SIGTERM);
        }
    }
    if let Ok(folders) = FOLDERS.try_lock() {
        for dir in folders.iter() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
