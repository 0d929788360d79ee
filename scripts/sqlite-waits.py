#!/usr/bin/env python3
"""The waits `lockbench doctor` reads a cause from, measured with Python's own sqlite3 module
(no lockbench, no third-party package): how long a failing statement waited before
"database is locked", with a busy timeout of TIMEOUT seconds (default 2), in each case
doctor tells apart.

- deferred-upgrade: a deferred transaction reads, another connection writes and commits, the
  first then writes: refused at once, whatever the timeout (rollback journal and WAL).
- immediate: the same with BEGIN IMMEDIATE, while the other connection holds the write lock
  for half the timeout: waits, then succeeds.
- long-writer: another connection holds the write lock for twice the timeout: fails after
  about the whole timeout.
- timeout-not-applied: the same connection with timeout=0 (no busy timeout on it): fails at
  once, on a plain INSERT that no upgrade is involved in.

Usage: scripts/sqlite-waits.py [TIMEOUT]. Prints one line per case and journal mode:
case, journal, outcome, wait in ms.
"""
import os
import sqlite3
import sys
import tempfile
import threading
import time

TIMEOUT = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0


def connect(path, timeout):
    # isolation_level=None: the driver sends no BEGIN of its own; each case sends its own.
    return sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)


def fresh(journal):
    path = os.path.join(tempfile.mkdtemp(), "waits.db")
    c = connect(path, TIMEOUT)
    c.execute(f"PRAGMA journal_mode={journal}")
    c.execute("CREATE TABLE t (x INTEGER)")
    c.execute("INSERT INTO t VALUES (1)")
    c.close()
    return path


def hold_write_lock(path, seconds, started):
    c = connect(path, TIMEOUT)
    c.execute("BEGIN IMMEDIATE")
    c.execute("INSERT INTO t VALUES (2)")
    started.set()
    time.sleep(seconds)
    c.execute("COMMIT")
    c.close()


def timed(f):
    t0 = time.monotonic()
    try:
        f()
        outcome = "ok"
    except sqlite3.OperationalError as e:
        outcome = str(e)
    return outcome, (time.monotonic() - t0) * 1000


def deferred_upgrade(path):
    reader = connect(path, TIMEOUT)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()
    writer = connect(path, TIMEOUT)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (3)")
    done = threading.Timer(TIMEOUT / 2, lambda: writer.execute("COMMIT"))
    done.start()
    outcome, ms = timed(lambda: reader.execute("INSERT INTO t VALUES (4)"))
    # In a rollback journal the writer's COMMIT waits for this reader's shared lock.
    reader.execute("ROLLBACK")
    done.join()
    return outcome, ms


def with_holder(path, hold, timeout, statement_begin):
    started = threading.Event()
    t = threading.Thread(target=hold_write_lock, args=(path, hold, started))
    t.start()
    started.wait()
    c = connect(path, timeout)

    def work():
        if statement_begin:
            c.execute(statement_begin)
        c.execute("INSERT INTO t VALUES (5)")
        if statement_begin:
            c.execute("COMMIT")

    outcome, ms = timed(work)
    t.join()
    return outcome, ms


def main():
    print(f"busy timeout {TIMEOUT:g} s; sqlite {sqlite3.sqlite_version}")
    print(f"{'case':<22} {'journal':<8} {'outcome':<20} {'wait ms':>8}")
    for journal in ["delete", "wal"]:
        cases = [
            ("deferred-upgrade", lambda p: deferred_upgrade(p)),
            ("immediate", lambda p: with_holder(p, TIMEOUT / 2, TIMEOUT, "BEGIN IMMEDIATE")),
            ("long-writer", lambda p: with_holder(p, TIMEOUT * 2, TIMEOUT, "BEGIN IMMEDIATE")),
            ("timeout-not-applied", lambda p: with_holder(p, TIMEOUT / 2, 0, None)),
        ]
        for name, case in cases:
            outcome, ms = case(fresh(journal))
            print(f"{name:<22} {journal:<8} {outcome:<20} {ms:>8.0f}")


if __name__ == "__main__":
    main()
