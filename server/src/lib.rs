//! lockbench's library: the storage layer (every SQLite setting, lock errors as data, retry
//! policies), the contention probe, the photo batch generator, the photo processor and the
//! reference server. The `lockbench` binary (crate `lockbench`, in `loadtest/`) is a thin
//! command line over it.

pub mod app;
pub mod measure;
pub mod photos;
pub mod probe;
pub mod processor;
pub mod serve;
pub mod storage;
pub mod text;
