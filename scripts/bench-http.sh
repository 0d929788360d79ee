#!/usr/bin/env bash
# HTTP benchmark: can the dashboard's live polling keep up?
#
# Target: GET /api/registrations/updates with 1,000 registrations in the database and an idle
# processor serves at least half the requests per second that the same server serves on
# /healthz (no database), both measured with wrk in the same run.
#
# Steps: build the release binary; start `lockbench serve` (WAL, BEGIN IMMEDIATE, 1 worker)
# on a fresh database in a temp folder, on a port the kernel picks; register 1,000 guests
# through POST /api/registrations (one curl process, keep-alive) and check that all 1,000 are
# there; then run wrk on /healthz, on the updates route (since=0, since=900: 100 rows each;
# since=1000: nothing new, the steady-state poll) and on /healthz again, and print each
# req/s, its p50 latency and its ratio to the mean of the two /healthz runs. The server is
# stopped on exit, whatever happens.
#
# Settings (environment): WRK_THREADS (2), WRK_CONNECTIONS (32), WRK_DURATION (10s),
# WRK_WARMUP (2s, per URL, discarded), REGISTRATIONS (1000).
# Needs curl and wrk (scripts/test.sh installs wrk, the Debian package, when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

threads=${WRK_THREADS:-2}
connections=${WRK_CONNECTIONS:-32}
duration=${WRK_DURATION:-10s}
warmup=${WRK_WARMUP:-2s}
registrations=${REGISTRATIONS:-1000}

for tool in curl wrk; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "bench-http: $tool is missing (scripts/test.sh installs wrk)" >&2
        exit 2
    }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lockbench-bench-http.XXXXXX")
server_pid=""

stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$server_pid" 2>/dev/null; then
            echo "bench-http: server $server_pid ignored SIGTERM for 10 s; killing it" >&2
            kill -KILL "$server_pid" 2>/dev/null || true
        fi
        wait "$server_pid" 2>/dev/null || true
    fi
    server_pid=""
}

cleanup() {
    local status=$?
    stop_server
    if [ "$status" -ne 0 ] && [ -s "$tmp/server.err" ]; then
        echo "bench-http: server stderr (last lines):" >&2
        tail -n 20 "$tmp/server.err" >&2
    fi
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== building (cargo build --release -p lockbench)"
cargo build --release -p lockbench

echo "== starting the server"
LOCKBENCH_ADMIN_TOKEN=x ./target/release/lockbench serve \
    --port 0 --db "$tmp/app.db" --journal-mode wal --tx-mode immediate --workers 1 \
    >"$tmp/server.out" 2>"$tmp/server.err" &
server_pid=$!

# Port 0: the kernel picks a free port, which the server prints once it takes requests.
base=""
for _ in $(seq 1 600); do
    line=$(grep -m1 -o 'listening on http://[^ ]*' "$tmp/server.out" 2>/dev/null || true)
    if [ -n "$line" ]; then
        base=${line#listening on }
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || {
        echo "bench-http: the server exited before listening" >&2
        exit 1
    }
    sleep 0.1
done
[ -n "$base" ] || {
    echo "bench-http: no 'listening on' line from the server within 60 s" >&2
    exit 1
}
curl -fsS "$base/healthz" >/dev/null
echo "server pid $server_pid at $base (db $tmp/app.db)"

echo "== registering $registrations guests"
{
    for i in $(seq 1 "$registrations"); do
        [ "$i" -gt 1 ] && echo "next"
        echo "url = \"$base/api/registrations\""
        echo 'header = "Content-Type: application/json"'
        echo "data = \"{\\\"name\\\": \\\"Guest $i\\\", \\\"email\\\": \\\"guest$i@example.org\\\"}\""
        echo 'output = "/dev/null"'
        echo 'write-out = "%{http_code}\n"'
    done
} >"$tmp/register.curl"
curl -sS -K "$tmp/register.curl" >"$tmp/register.codes"
created=$(grep -c '^201$' "$tmp/register.codes" || true)
if [ "$created" -ne "$registrations" ]; then
    echo "bench-http: $created of $registrations registrations answered 201; codes:" >&2
    sort "$tmp/register.codes" | uniq -c >&2
    exit 1
fi

# Count them back through the updates route itself, page by page.
count=0
since=0
while :; do
    page=$(curl -fsS "$base/api/registrations/updates?since=$since")
    n=$( (grep -o '"id":[0-9]*' <<<"$page" || true) | wc -l)
    [ "$n" -eq 0 ] && break
    count=$((count + n))
    since=$(grep -o '"last_id":[0-9]*' <<<"$page" | cut -d: -f2)
done
if [ "$count" -ne "$registrations" ]; then
    echo "bench-http: the updates route lists $count registrations, expected $registrations" >&2
    exit 1
fi
echo "$count registrations in the database (last id $since); processor idle (no batch posted)"

# Runs wrk on one path and appends "req/s p50 non2xx socket-errors" to $tmp/results. Runs in
# this shell (not in a subshell), so that Ctrl-C and a failure stop the whole script.
run_wrk() {
    local path=$1 rps p50 non2xx errors
    wrk -t"$threads" -c"$connections" -d"$warmup" "$base$path" >/dev/null
    wrk -t"$threads" -c"$connections" -d"$duration" --latency "$base$path" >"$tmp/wrk.out"
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "bench-http: the server is gone (interrupted, or it crashed)" >&2
        exit 1
    fi
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk.out")
    p50=$(awk '$1 == "50%" {print $2}' "$tmp/wrk.out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$tmp/wrk.out")
    errors=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$tmp/wrk.out")
    if [ -z "$rps" ]; then
        echo "bench-http: no Requests/sec in wrk's output for $path:" >&2
        cat "$tmp/wrk.out" >&2
        exit 1
    fi
    echo "$rps ${p50:--} ${non2xx:-0} ${errors:-0}" >>"$tmp/results"
}

paths=(
    "/healthz"
    "/api/registrations/updates?since=0"
    "/api/registrations/updates?since=900"
    "/api/registrations/updates?since=1000"
    "/healthz"
)
: >"$tmp/results"
for path in "${paths[@]}"; do
    echo "== wrk -t$threads -c$connections -d$duration $path"
    run_wrk "$path"
done
stop_server

cores=$(nproc)
echo
echo "== results: GET /api/registrations/updates against /healthz (target: ratio >= 0.50)"
echo "caveat: wrk and the server share this machine's $cores core(s); figures are relative,"
echo "        compare the ratios measured side by side, not the absolute req/s."
echo "settings: lockbench serve --journal-mode wal --tx-mode immediate --workers 1;" \
    "$registrations registrations; processor idle;" \
    "wrk -t$threads -c$connections -d$duration (after a $warmup warm-up per URL)"
awk -v results="$(cat "$tmp/results")" -v paths="$(printf '%s\n' "${paths[@]}")" '
BEGIN {
    n = split(paths, p, "\n")
    split(results, r, "\n")
    for (i = 1; i <= n; i++) {
        split(r[i], f, " ")
        rps[i] = f[1]; p50[i] = f[2]; non2xx[i] = f[3]; sockerr[i] = f[4]
    }
    health = (rps[1] + rps[n]) / 2
    printf "%-40s %10s %9s %8s %8s %6s\n", "path", "req/s", "p50", "non-2xx", "sockerr", "ratio"
    for (i = 1; i <= n; i++)
        printf "%-40s %10.0f %9s %8d %8d %6.2f\n", p[i], rps[i], p50[i], non2xx[i], sockerr[i], rps[i] / health
    printf "ratio = req/s over the mean of the two /healthz runs (%.0f req/s)\n", health
    verdict = "met"
    for (i = 2; i < n; i++)
        if (rps[i] / health < 0.5 || non2xx[i] > 0) verdict = "NOT met"
    printf "verdict: target %s (every updates row at ratio >= 0.50, no non-2xx responses)\n", verdict
}'
