//! A batch's claim: whoever holds it processes the batch, so across all workers (and, on
//! PostgreSQL, all machines) at most one processor runs a batch at a time. On SQLite the
//! claim is an exclusive `flock` on `<data_dir>/batches/<id>.lock`; on PostgreSQL, whose
//! servers share the database and not a folder, a session advisory lock
//! (`storage::postgres::PgClaim`). Either dies with its process, so a worker killed
//! mid-batch never leaves a stale claim. Takes and holds claims only; runs no processor
//! (`start_batch` takes a claim to run one).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::DataDirs;
use crate::storage::postgres::PgClaim;
use crate::storage::{DbError, Store};

/// A batch's claim, held until dropped; dropping it lets the next one take over.
pub struct Claim {
    batch_id: i64,
    held: Held,
}

/// What keeps the claim.
enum Held {
    /// An exclusive flock on `<data_dir>/batches/<id>.lock` (one machine, one SQLite file).
    File { _lock: File },
    /// A PostgreSQL advisory lock (servers on several machines, one database).
    Postgres { _lock: PgClaim },
}

impl Claim {
    /// The batch this claim is on.
    pub fn batch_id(&self) -> i64 {
        self.batch_id
    }
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.held {
            Held::File { .. } => "file",
            Held::Postgres { .. } => "postgres",
        };
        f.debug_struct("Claim")
            .field("batch_id", &self.batch_id)
            .field("held", &kind)
            .finish()
    }
}

/// Why a claim could not be asked for (a claim held by someone else is not an error).
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// PostgreSQL: the claim's connection or query failed (a lock error among them).
    #[error(transparent)]
    Db(#[from] DbError),
    /// SQLite: the claim's file could not be created or locked.
    #[error("cannot claim batch {batch_id} in {}: {source}", dir.display())]
    File {
        batch_id: i64,
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Takes the batch's claim without waiting: `Some` holds it until dropped, `None` when a
/// processor (in this process or another) holds it. Blocks (a file lock, or a PostgreSQL
/// connection): call it off the async workers.
pub fn claim_batch(
    store: &Store,
    dirs: &DataDirs,
    batch_id: i64,
) -> Result<Option<Claim>, ClaimError> {
    let held = if store.config().driver.is_postgres() {
        store
            .claim_batch_postgres(batch_id)?
            .map(|lock| Held::Postgres { _lock: lock })
    } else {
        lock_file(&dirs.batches, batch_id)
            .map_err(|source| ClaimError::File {
                batch_id,
                dir: dirs.batches.clone(),
                source,
            })?
            .map(|lock| Held::File { _lock: lock })
    };
    Ok(held.map(|held| Claim { batch_id, held }))
}

/// The flock on `<dir>/<batch_id>.lock`, taken without waiting; None when it is held.
fn lock_file(dir: &Path, batch_id: i64) -> std::io::Result<Option<File>> {
    std::fs::create_dir_all(dir)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{batch_id}.lock")))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}
