//! lockbench's library: the storage layer (every SQLite setting, lock errors as data, retry
//! policies) and the contention probe. The `lockbench` binary (crate `lockbench`, in
//! `loadtest/`) is a thin command line over it.

pub mod probe;
pub mod storage;
