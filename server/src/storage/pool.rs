//! A small blocking connection pool, the same for both drivers.
//!
//! lockbench pools connections itself (rather than using sqlx's pool or r2d2) so that
//! "which connection got which setting" is under its control: connections open lazily, in
//! order, and `busy_timeout_scope = first-connection` really reaches only the first one, as a
//! PRAGMA run once through an application's pool does.
//!
//! Lends the connections its opener makes; never applies settings or retries units of work.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::config::PoolOrder;
use super::driver::RawConn;
use super::error::DbError;

pub(crate) struct Pooled {
    pub conn: Box<dyn RawConn>,
}

type Opener = Box<dyn Fn(u32) -> Result<Box<dyn RawConn>, DbError> + Send + Sync>;

pub(crate) struct Pool {
    size: u32,
    order: PoolOrder,
    timeout: Duration,
    state: Mutex<State>,
    freed: Condvar,
    open: Opener,
}

struct State {
    /// Returned connections at the back; FIFO takes from the front, LIFO from the back.
    idle: VecDeque<Pooled>,
    opened: u32,
}

impl Pool {
    pub fn new(size: u32, order: PoolOrder, timeout: Duration, open: Opener) -> Pool {
        Pool {
            size,
            order,
            timeout,
            state: Mutex::new(State {
                idle: VecDeque::with_capacity(size as usize),
                opened: 0,
            }),
            freed: Condvar::new(),
            open,
        }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// Takes an idle connection, opens a new one while under `size`, or waits for one. An
    /// error opening or configuring the new connection is returned as met by `op` (a lock
    /// error stays one, under `op`: see [`DbError::met_by`]).
    pub fn acquire(&self, op: &str) -> Result<Lease<'_>, DbError> {
        let started = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let next = match self.order {
                PoolOrder::Fifo => state.idle.pop_front(),
                PoolOrder::Lifo => state.idle.pop_back(),
            };
            if let Some(pooled) = next {
                return Ok(Lease {
                    pool: self,
                    pooled: Some(pooled),
                });
            }
            if state.opened < self.size {
                let index = state.opened;
                state.opened += 1;
                drop(state);
                return match (self.open)(index) {
                    Ok(conn) => Ok(Lease {
                        pool: self,
                        pooled: Some(Pooled { conn }),
                    }),
                    Err(e) => {
                        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                        state.opened -= 1;
                        drop(state);
                        self.freed.notify_one();
                        Err(e.met_by(op))
                    }
                };
            }
            let waited = started.elapsed();
            if waited >= self.timeout {
                return Err(DbError::PoolTimeout {
                    op: op.to_owned(),
                    waited_ms: waited.as_millis() as u64,
                });
            }
            state = self
                .freed
                .wait_timeout(state, self.timeout - waited)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn release(&self, pooled: Pooled) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.idle.push_back(pooled);
        drop(state);
        self.freed.notify_one();
    }
}

/// A borrowed connection; goes back to its pool on drop.
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    pooled: Option<Pooled>,
}

impl Lease<'_> {
    pub fn conn(&mut self) -> &mut dyn RawConn {
        // The Option is Some from creation until drop.
        match self.pooled.as_mut() {
            Some(p) => p.conn.as_mut(),
            None => unreachable!("lease used after release"),
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.pooled.take() {
            self.pool.release(p);
        }
    }
}
