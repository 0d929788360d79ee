//! A "slow disk" SQLite VFS shim: wraps SQLite's default VFS (the unix VFS)
//! and sleeps for a configurable delay in every `xSync` before delegating.
//!
//! lockbench uses this to model a slow fsync (`sync_delay_ms`), which stretches
//! the time a writer holds its locks and so makes "database is locked" easier to
//! reproduce.
//!
//! # Why `unsafe` is needed
//!
//! A VFS is a C vtable (`sqlite3_vfs` plus `sqlite3_io_methods`) that SQLite
//! calls through raw pointers. Registering one and implementing its methods
//! necessarily means calling C functions through `libsqlite3-sys`, writing
//! `extern "C"` callbacks that receive raw pointers, and doing pointer
//! arithmetic on memory SQLite allocates for us. None of that can be expressed
//! in safe Rust, so this module (and only this module) opts out of the
//! workspace-wide `unsafe_code = "deny"`.
//!
//! # Invariants
//!
//! * Everything SQLite keeps a pointer to (the `sqlite3_vfs` object, its name,
//!   the per-VFS `DelayState` and its counters) is leaked and therefore
//!   lives for `'static`; a registered VFS is never unregistered or freed.
//! * The root (default) VFS is a built-in SQLite VFS, which lives in static
//!   storage inside SQLite and is never freed, so our copy of its pointer
//!   stays valid. It was declared in C as a complete `sqlite3_vfs`, so copying
//!   the whole struct reads only initialised memory whatever its `iVersion`.
//! * SQLite hands every file opened through our VFS a buffer of `szOsFile`
//!   bytes, aligned to at least 8 (not necessarily zeroed). We lay it out as
//!   a `#[repr(C)]` `DelayFile` header (whose first field is the
//!   `sqlite3_file` SQLite sees) followed, at `REAL_OFFSET` (a multiple of 8),
//!   by the root VFS's own file object of `root.szOsFile` bytes.
//! * Our `sqlite3_io_methods` are installed on a file only after the root
//!   `xOpen` succeeded and set a non-NULL `pMethods` on the inner file, so every
//!   io-method callback may assume the header is initialised and the inner
//!   file is open. On failure the outer `pMethods` stays NULL, so SQLite will
//!   not call `xClose` on it.
//! * The `iVersion` we advertise never exceeds the wrapped object's (capped at
//!   3, the highest version whose fields `libsqlite3-sys` knows), so SQLite
//!   never calls a method the wrapped object lacks.
//! * No callback unwinds into C: each one only forwards raw arguments, bumps an
//!   atomic counter and sleeps; the sleep (the only thing with a conceivable
//!   panic path inside std) is wrapped in `catch_unwind`.
//!
//! # The override (a slow disk switched on and off while the server runs)
//!
//! [`set_sync_delay_override`] sets one process-wide delay that every xSync of
//! every delay VFS of the process sleeps instead of its own, until it is
//! cleared. It is a plain atomic the sync shim reads, so it needs no `unsafe`
//! and takes effect at the next sync. It can only reach connections opened
//! through a delay VFS: a process that wants it (the server with
//! `sync_delay_control`) calls [`require_delay_vfs`] before opening its
//! connections, so they go through the shim even when their own delay is 0.
//!
//! Changes only when fsync returns; never what is written or read.

#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void};
use std::mem;
use std::panic;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use libsqlite3_sys as ffi;

/// Errors from registering the delay VFS.
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    #[error("no default SQLite VFS is registered")]
    NoDefault,
    #[error("sqlite3_vfs_register failed with code {0}")]
    Register(i32),
}

/// What the registry remembers about one registered delay VFS.
#[derive(Clone, Copy)]
struct Registered {
    name: &'static str,
    counters: &'static Counters,
}

/// What one delay VFS has done so far.
#[derive(Default)]
struct Counters {
    /// xSync calls.
    syncs: AtomicU64,
    /// Microseconds of delay its syncs asked to sleep (the delay in effect, own or
    /// override, added once per sync that slept: what was asked, not a measured time).
    slept_us: AtomicU64,
}

/// No override: every VFS sleeps its own delay.
const NO_OVERRIDE: u64 = u64::MAX;

/// The process-wide sync delay override in microseconds, or [`NO_OVERRIDE`].
static OVERRIDE_US: AtomicU64 = AtomicU64::new(NO_OVERRIDE);

/// Whether this process opens every store through a delay VFS, even at 0 delay.
static REQUIRE_DELAY_VFS: AtomicBool = AtomicBool::new(false);

/// Sets (Some) or clears (None) the sync delay every delay VFS of this process sleeps before
/// each xSync, in place of its own delay. Takes effect at the next sync of every open
/// connection that goes through a delay VFS; connections on SQLite's default VFS never see it
/// (see [`require_delay_vfs`]). Truncated to whole microseconds.
pub fn set_sync_delay_override(delay: Option<Duration>) {
    let us = match delay {
        // u64::MAX is the "none" marker; one microsecond less is still 584,000 years.
        Some(d) => micros_of(d).min(NO_OVERRIDE - 1),
        None => NO_OVERRIDE,
    };
    OVERRIDE_US.store(us, Ordering::Relaxed);
}

/// The override [`set_sync_delay_override`] set, if any.
pub fn sync_delay_override() -> Option<Duration> {
    match OVERRIDE_US.load(Ordering::Relaxed) {
        NO_OVERRIDE => None,
        us => Some(Duration::from_micros(us)),
    }
}

/// From now on, every store this process opens goes through a delay VFS, even with
/// `sync_delay_ms = 0`, so that [`set_sync_delay_override`] reaches its connections.
/// Process-wide and one-way: a server calls it once, before opening its store.
pub fn require_delay_vfs() {
    REQUIRE_DELAY_VFS.store(true, Ordering::Relaxed);
}

/// Whether [`require_delay_vfs`] was called in this process.
pub fn delay_vfs_required() -> bool {
    REQUIRE_DELAY_VFS.load(Ordering::Relaxed)
}

/// Delay VFSes registered so far, keyed by delay in microseconds.
static REGISTRY: Mutex<BTreeMap<u64, Registered>> = Mutex::new(BTreeMap::new());

/// Per-VFS state, reachable from C through `sqlite3_vfs::pAppData`.
struct DelayState {
    /// The wrapped (default) VFS.
    root: *mut ffi::sqlite3_vfs,
    delay: Duration,
    counters: &'static Counters,
}

/// Header of every file opened through a delay VFS. The root VFS's own file
/// object follows at [`REAL_OFFSET`].
#[repr(C)]
struct DelayFile {
    /// Must be first: SQLite sees a `*mut DelayFile` as a `*mut sqlite3_file`.
    base: ffi::sqlite3_file,
    /// The inner file (points into the same allocation, at `REAL_OFFSET`).
    real: *mut ffi::sqlite3_file,
    delay: Duration,
    counters: &'static Counters,
}

/// Offset of the inner file in the buffer SQLite allocates: the header size
/// rounded up to 8 bytes (and to the header's own alignment).
const REAL_OFFSET: usize = {
    let align = if mem::align_of::<DelayFile>() > 8 {
        mem::align_of::<DelayFile>()
    } else {
        8
    };
    mem::size_of::<DelayFile>().div_ceil(align) * align
};

/// Registers once per distinct delay (idempotent, thread-safe) a VFS named
/// "lockbench-delay-{micros}us" wrapping the default VFS; every xSync on a file opened through it
/// sleeps `delay` then delegates.
/// Returns the VFS name to pass to sqlite3_open_v2 (rusqlite: Connection::open_with_flags_and_vfs;
/// sqlx: SqliteConnectOptions::vfs).
///
/// The delay is truncated to whole microseconds (delays that differ by less
/// than that share one VFS). The VFS is not made the default VFS.
///
/// # Errors
///
/// [`VfsError::NoDefault`] if SQLite has no default VFS (or cannot be
/// initialised); [`VfsError::Register`] if `sqlite3_vfs_register` fails.
pub fn delay_vfs(delay: Duration) -> Result<&'static str, VfsError> {
    let micros = micros_of(delay);
    // Holding the lock across registration makes concurrent first calls for
    // the same delay register exactly one VFS.
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(entry) = registry.get(&micros) {
        return Ok(entry.name);
    }
    let entry = register(micros)?;
    registry.insert(micros, entry);
    Ok(entry.name)
}

/// Number of xSync calls made so far through the VFS registered for `delay` (0 if none registered).
pub fn sync_calls(delay: Duration) -> u64 {
    let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    registry
        .get(&micros_of(delay))
        .map_or(0, |entry| entry.counters.syncs.load(Ordering::Relaxed))
}

/// Total delay the syncs of the VFS registered for `delay` asked to sleep so far: for each
/// sync, the delay in effect at that moment (the override, or the VFS's own delay), summed.
/// It is what was asked, not a measured time, so it is exact: with an override of N ms, k
/// syncs add exactly k × N ms. Zero if no such VFS is registered.
pub fn sync_delay_slept(delay: Duration) -> Duration {
    let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    registry
        .get(&micros_of(delay))
        .map_or(Duration::ZERO, |entry| {
            Duration::from_micros(entry.counters.slept_us.load(Ordering::Relaxed))
        })
}

fn micros_of(delay: Duration) -> u64 {
    u64::try_from(delay.as_micros()).unwrap_or(u64::MAX)
}

/// Builds and registers the VFS for `micros`. Called with the registry locked.
fn register(micros: u64) -> Result<Registered, VfsError> {
    // SAFETY: sqlite3_initialize has no preconditions and is idempotent and
    // thread-safe.
    if unsafe { ffi::sqlite3_initialize() } != ffi::SQLITE_OK {
        // Without an initialised library there is no default VFS to wrap.
        return Err(VfsError::NoDefault);
    }
    // SAFETY: a NULL name asks for the default VFS; the result is NULL or a
    // pointer to a registered VFS.
    let root = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
    if root.is_null() {
        return Err(VfsError::NoDefault);
    }
    // SAFETY: `root` is non-NULL and points to a complete, live `sqlite3_vfs`
    // (see the module invariants); this is a plain bitwise copy.
    let mut vfs = unsafe { *root };

    let sz_os_file = usize::try_from(vfs.szOsFile)
        .ok()
        .and_then(|inner| inner.checked_add(REAL_OFFSET))
        .and_then(|total| c_int::try_from(total).ok())
        .ok_or(VfsError::Register(ffi::SQLITE_MISUSE))?;

    let counters: &'static Counters = Box::leak(Box::default());
    // One leaked allocation holds the name and its NUL terminator.
    let name_nul: &'static str =
        Box::leak(format!("lockbench-delay-{micros}us\0").into_boxed_str());
    let name = &name_nul[..name_nul.len() - 1];
    let state: &'static DelayState = Box::leak(Box::new(DelayState {
        root,
        delay: Duration::from_micros(micros),
        counters,
    }));

    vfs.iVersion = vfs.iVersion.clamp(1, 3);
    vfs.szOsFile = sz_os_file;
    vfs.pNext = ptr::null_mut();
    vfs.zName = name_nul.as_ptr().cast::<c_char>();
    vfs.pAppData = ptr::from_ref(state).cast_mut().cast::<c_void>();
    vfs.xOpen = Some(delay_open);
    // Every other method delegates to the root VFS (called with the root's
    // own `sqlite3_vfs*`, so a root that uses its pAppData keeps working).
    vfs.xDelete = vfs.xDelete.and(Some(vfs_delete));
    vfs.xAccess = vfs.xAccess.and(Some(vfs_access));
    vfs.xFullPathname = vfs.xFullPathname.and(Some(vfs_full_pathname));
    vfs.xDlOpen = vfs.xDlOpen.and(Some(vfs_dl_open));
    vfs.xDlError = vfs.xDlError.and(Some(vfs_dl_error));
    vfs.xDlSym = vfs.xDlSym.and(Some(vfs_dl_sym));
    vfs.xDlClose = vfs.xDlClose.and(Some(vfs_dl_close));
    vfs.xRandomness = vfs.xRandomness.and(Some(vfs_randomness));
    vfs.xSleep = vfs.xSleep.and(Some(vfs_sleep));
    vfs.xCurrentTime = vfs.xCurrentTime.and(Some(vfs_current_time));
    vfs.xGetLastError = vfs.xGetLastError.and(Some(vfs_get_last_error));
    vfs.xCurrentTimeInt64 = vfs.xCurrentTimeInt64.and(Some(vfs_current_time_int64));
    vfs.xSetSystemCall = vfs.xSetSystemCall.and(Some(vfs_set_system_call));
    vfs.xGetSystemCall = vfs.xGetSystemCall.and(Some(vfs_get_system_call));
    vfs.xNextSystemCall = vfs.xNextSystemCall.and(Some(vfs_next_system_call));

    let vfs = Box::into_raw(Box::new(vfs));
    // SAFETY: `vfs` is a fully initialised, heap-allocated VFS that is never
    // freed once registered; its name and pAppData are 'static.
    let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
    if rc != ffi::SQLITE_OK {
        // SAFETY: registration failed, so SQLite kept no pointer to `vfs`,
        // which came from Box::into_raw above and is freed exactly once.
        drop(unsafe { Box::from_raw(vfs) });
        return Err(VfsError::Register(rc));
    }
    Ok(Registered { name, counters })
}

/// The per-VFS state behind one of our registered VFS objects.
///
/// # Safety
/// `vfs` must be a VFS registered by [`register`].
unsafe fn state_of(vfs: *mut ffi::sqlite3_vfs) -> &'static DelayState {
    // SAFETY: per the contract, pAppData is a leaked `&'static DelayState`.
    unsafe { &*(*vfs).pAppData.cast::<DelayState>() }
}

unsafe extern "C" fn delay_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite calls xOpen with the VFS object we registered.
    let state = unsafe { state_of(vfs) };
    let header = file.cast::<DelayFile>();
    // SAFETY: `file` points to `szOsFile` = REAL_OFFSET + root.szOsFile
    // writable bytes, so the inner file starts in bounds; REAL_OFFSET is a
    // multiple of 8, so it stays 8-aligned.
    let real = unsafe { file.byte_add(REAL_OFFSET) };
    // SAFETY: the buffer is at least 8-aligned and large enough for the
    // header and for the inner file's `pMethods` (root.szOsFile >= its size).
    unsafe {
        header.write(DelayFile {
            base: ffi::sqlite3_file {
                pMethods: ptr::null(),
            },
            real,
            delay: state.delay,
            counters: state.counters,
        });
        (*real).pMethods = ptr::null();
    }
    // SAFETY: `state.root` is the live default VFS (module invariants).
    let Some(root_open) = (unsafe { (*state.root).xOpen }) else {
        return ffi::SQLITE_CANTOPEN;
    };
    // SAFETY: the inner file buffer has root.szOsFile bytes as the root
    // VFS requires; the other arguments are SQLite's, passed through.
    let rc = unsafe { root_open(state.root, name, real, flags, out_flags) };
    // SAFETY: `real` was initialised above and possibly updated by xOpen.
    let inner_methods = unsafe { (*real).pMethods };
    if inner_methods.is_null() {
        // Outer pMethods stays NULL: SQLite treats the file as not open.
        return if rc == ffi::SQLITE_OK {
            ffi::SQLITE_CANTOPEN
        } else {
            rc
        };
    }
    if rc != ffi::SQLITE_OK {
        // The inner VFS wants xClose even though xOpen failed; do that here
        // since SQLite won't close the outer file (its pMethods stays NULL).
        // SAFETY: `inner_methods` is the inner file's non-NULL method table.
        if let Some(close) = unsafe { (*inner_methods).xClose } {
            // SAFETY: closing the inner file exactly once, as it requested.
            unsafe { close(real) };
        }
        return rc;
    }
    // SAFETY: non-NULL method table installed by the root xOpen.
    let version = unsafe { (*inner_methods).iVersion }.clamp(1, 3);
    // `version` is 1..=3, so the index is 0..=2.
    let methods: &'static ffi::sqlite3_io_methods = match version {
        1 => &IO_METHODS[0],
        2 => &IO_METHODS[1],
        _ => &IO_METHODS[2],
    };
    // SAFETY: `header` was initialised above.
    unsafe { (*header).base.pMethods = methods };
    rc
}

/// The inner file and a copy of its method table.
///
/// # Safety
/// `file` must be a file successfully opened by [`delay_open`] (i.e. one whose
/// io methods are ours) that has not been closed yet.
unsafe fn inner(file: *mut ffi::sqlite3_file) -> (*mut ffi::sqlite3_file, ffi::sqlite3_io_methods) {
    // SAFETY: per the contract the header is initialised.
    let real = unsafe { (*file.cast::<DelayFile>()).real };
    // SAFETY: the inner file is open, so its pMethods is a valid, non-NULL
    // table (checked in delay_open).
    let methods = unsafe { *(*real).pMethods };
    (real, methods)
}

/// Defines an io method that forwards to the inner file's method, or returns
/// `missing` if the inner file has none (unreachable in practice: we never
/// advertise a higher `iVersion` than the inner file's).
macro_rules! delegate_io {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*), missing = $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            // SAFETY: SQLite calls our io methods only on files `delay_open`
            // opened successfully and has not closed yet.
            let (real, methods) = unsafe { inner(file) };
            match methods.$field {
                // SAFETY: `f` is the inner file's own method, called on that
                // open file with SQLite's arguments passed through unchanged.
                Some(f) => unsafe { f(real, $($arg),*) },
                None => $missing,
            }
        }
    };
}

delegate_io!(io_close, xClose, (), missing = ffi::SQLITE_OK);
delegate_io!(
    io_read,
    xRead,
    (buf: *mut c_void, amt: c_int, offset: ffi::sqlite3_int64),
    missing = ffi::SQLITE_IOERR_READ
);
delegate_io!(
    io_write,
    xWrite,
    (buf: *const c_void, amt: c_int, offset: ffi::sqlite3_int64),
    missing = ffi::SQLITE_IOERR_WRITE
);
delegate_io!(
    io_truncate,
    xTruncate,
    (size: ffi::sqlite3_int64),
    missing = ffi::SQLITE_IOERR_TRUNCATE
);
delegate_io!(
    io_file_size,
    xFileSize,
    (size: *mut ffi::sqlite3_int64),
    missing = ffi::SQLITE_IOERR_FSTAT
);
delegate_io!(io_lock, xLock, (level: c_int), missing = ffi::SQLITE_IOERR_LOCK);
delegate_io!(
    io_unlock,
    xUnlock,
    (level: c_int),
    missing = ffi::SQLITE_IOERR_UNLOCK
);
delegate_io!(
    io_check_reserved_lock,
    xCheckReservedLock,
    (res: *mut c_int),
    missing = ffi::SQLITE_IOERR_CHECKRESERVEDLOCK
);
delegate_io!(
    io_file_control,
    xFileControl,
    (op: c_int, arg: *mut c_void),
    missing = ffi::SQLITE_NOTFOUND
);
delegate_io!(io_sector_size, xSectorSize, (), missing = 4096);
delegate_io!(
    io_device_characteristics,
    xDeviceCharacteristics,
    (),
    missing = 0
);
delegate_io!(
    io_shm_map,
    xShmMap,
    (region: c_int, size: c_int, extend: c_int, pp: *mut *mut c_void),
    missing = ffi::SQLITE_IOERR_SHMMAP
);
delegate_io!(
    io_shm_lock,
    xShmLock,
    (offset: c_int, n: c_int, flags: c_int),
    missing = ffi::SQLITE_IOERR_SHMLOCK
);
delegate_io!(
    io_shm_unmap,
    xShmUnmap,
    (delete_flag: c_int),
    missing = ffi::SQLITE_OK
);
delegate_io!(
    io_fetch,
    xFetch,
    (offset: ffi::sqlite3_int64, amt: c_int, pp: *mut *mut c_void),
    missing = ffi::SQLITE_IOERR
);
delegate_io!(
    io_unfetch,
    xUnfetch,
    (offset: ffi::sqlite3_int64, p: *mut c_void),
    missing = ffi::SQLITE_OK
);

unsafe extern "C" fn io_shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: as in `delegate_io!`: `file` is an open file of ours.
    let (real, methods) = unsafe { inner(file) };
    if let Some(f) = methods.xShmBarrier {
        // SAFETY: the inner file's own method, called on that open file.
        unsafe { f(real) };
    }
}

/// The point of the shim: count, sleep (the override if one is set, else the VFS's own
/// delay), then delegate.
unsafe extern "C" fn io_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: SQLite calls xSync only on files `delay_open` opened
    // successfully, whose header is initialised and not mutated afterwards.
    let header = unsafe { &*file.cast::<DelayFile>() };
    let counters = header.counters;
    let delay = sync_delay_override().unwrap_or(header.delay);
    counters.syncs.fetch_add(1, Ordering::Relaxed);
    if !delay.is_zero() {
        counters
            .slept_us
            .fetch_add(micros_of(delay), Ordering::Relaxed);
        if panic::catch_unwind(|| std::thread::sleep(delay)).is_err() {
            return ffi::SQLITE_IOERR_FSYNC;
        }
    }
    // SAFETY: as in `delegate_io!`: `file` is an open file of ours.
    let (real, methods) = unsafe { inner(file) };
    match methods.xSync {
        // SAFETY: the inner file's own method, called on that open file.
        Some(f) => unsafe { f(real, flags) },
        None => ffi::SQLITE_IOERR_FSYNC,
    }
}

const fn io_methods(version: c_int) -> ffi::sqlite3_io_methods {
    ffi::sqlite3_io_methods {
        iVersion: version,
        xClose: Some(io_close),
        xRead: Some(io_read),
        xWrite: Some(io_write),
        xTruncate: Some(io_truncate),
        xSync: Some(io_sync),
        xFileSize: Some(io_file_size),
        xLock: Some(io_lock),
        xUnlock: Some(io_unlock),
        xCheckReservedLock: Some(io_check_reserved_lock),
        xFileControl: Some(io_file_control),
        xSectorSize: Some(io_sector_size),
        xDeviceCharacteristics: Some(io_device_characteristics),
        xShmMap: Some(io_shm_map),
        xShmLock: Some(io_shm_lock),
        xShmBarrier: Some(io_shm_barrier),
        xShmUnmap: Some(io_shm_unmap),
        xFetch: Some(io_fetch),
        xUnfetch: Some(io_unfetch),
    }
}

/// Our io method tables for inner files of `iVersion` 1, 2 and 3 (index =
/// version - 1). Only `iVersion` differs; it tells SQLite which of the
/// methods it may call.
static IO_METHODS: [ffi::sqlite3_io_methods; 3] = [io_methods(1), io_methods(2), io_methods(3)];

/// Defines a VFS method that forwards to the root VFS, called with the root's
/// own `sqlite3_vfs*`. Only installed when the root has that method.
macro_rules! delegate_vfs {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*) $(-> $ret:ty)?, missing = $missing:expr) => {
        unsafe extern "C" fn $name(vfs: *mut ffi::sqlite3_vfs, $($arg: $ty),*) $(-> $ret)? {
            // SAFETY: SQLite calls VFS methods with the VFS we registered.
            let root = unsafe { state_of(vfs) }.root;
            // SAFETY: `root` is the live default VFS (module invariants).
            match unsafe { (*root).$field } {
                // SAFETY: the root's own method, called with the root VFS
                // and SQLite's arguments passed through unchanged.
                Some(f) => unsafe { f(root, $($arg),*) },
                None => $missing,
            }
        }
    };
}

delegate_vfs!(
    vfs_delete,
    xDelete,
    (name: *const c_char, sync_dir: c_int) -> c_int,
    missing = ffi::SQLITE_IOERR_DELETE
);
delegate_vfs!(
    vfs_access,
    xAccess,
    (name: *const c_char, flags: c_int, res: *mut c_int) -> c_int,
    missing = ffi::SQLITE_IOERR_ACCESS
);
delegate_vfs!(
    vfs_full_pathname,
    xFullPathname,
    (name: *const c_char, n_out: c_int, out: *mut c_char) -> c_int,
    missing = ffi::SQLITE_CANTOPEN_FULLPATH
);
delegate_vfs!(
    vfs_dl_open,
    xDlOpen,
    (filename: *const c_char) -> *mut c_void,
    missing = ptr::null_mut()
);
delegate_vfs!(
    vfs_dl_error,
    xDlError,
    (n: c_int, msg: *mut c_char),
    missing = ()
);
delegate_vfs!(
    vfs_dl_sym,
    xDlSym,
    (handle: *mut c_void, symbol: *const c_char) -> DlSym,
    missing = None
);
delegate_vfs!(vfs_dl_close, xDlClose, (handle: *mut c_void), missing = ());
delegate_vfs!(
    vfs_randomness,
    xRandomness,
    (n: c_int, out: *mut c_char) -> c_int,
    missing = 0
);
delegate_vfs!(
    vfs_sleep,
    xSleep,
    (micros: c_int) -> c_int,
    missing = 0
);
delegate_vfs!(
    vfs_current_time,
    xCurrentTime,
    (out: *mut f64) -> c_int,
    missing = ffi::SQLITE_ERROR
);
delegate_vfs!(
    vfs_get_last_error,
    xGetLastError,
    (n: c_int, out: *mut c_char) -> c_int,
    missing = 0
);
delegate_vfs!(
    vfs_current_time_int64,
    xCurrentTimeInt64,
    (out: *mut ffi::sqlite3_int64) -> c_int,
    missing = ffi::SQLITE_ERROR
);
delegate_vfs!(
    vfs_set_system_call,
    xSetSystemCall,
    (name: *const c_char, call: ffi::sqlite3_syscall_ptr) -> c_int,
    missing = ffi::SQLITE_NOTFOUND
);
delegate_vfs!(
    vfs_get_system_call,
    xGetSystemCall,
    (name: *const c_char) -> ffi::sqlite3_syscall_ptr,
    missing = None
);
delegate_vfs!(
    vfs_next_system_call,
    xNextSystemCall,
    (name: *const c_char) -> *const c_char,
    missing = ptr::null()
);

/// Return type of `xDlSym` (a nullable C function pointer).
type DlSym = Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)>;

#[cfg(test)]
mod tests;
