#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 for the tests and prints the URL
# they use (LOCKBENCH_TEST_PG). Starts the machine's cluster when it is not running
# (PostgreSQL 15 from Debian's packages: pg_ctlcluster), and creates the database `test`
# when it is missing. Needs psql and a local server that lets the postgres user in on
# 127.0.0.1 without a password (trust authentication in pg_hba.conf).
set -euo pipefail

url="${LOCKBENCH_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}"
ready() { psql "postgres://postgres@127.0.0.1:5432/postgres" -Atqc 'select 1' >/dev/null 2>&1; }

if ! ready; then
    if command -v pg_ctlcluster >/dev/null 2>&1; then
        version="$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)"
        if [ -z "$version" ]; then
            echo "scripts/postgres.sh: no PostgreSQL cluster in /etc/postgresql" >&2
            exit 1
        fi
        echo "starting PostgreSQL $version (pg_ctlcluster)" >&2
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main start
    fi
    for _ in $(seq 1 60); do
        ready && break
        sleep 1
    done
fi
if ! ready; then
    echo "scripts/postgres.sh: PostgreSQL does not answer on 127.0.0.1:5432" >&2
    exit 1
fi
if ! psql "postgres://postgres@127.0.0.1:5432/postgres" -Atqc "select 1 from pg_database where datname = 'test'" | grep -q 1; then
    psql "postgres://postgres@127.0.0.1:5432/postgres" -qc 'create database test'
fi
echo "$url"
