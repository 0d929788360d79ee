#!/usr/bin/env bash
# lockbench against locust on the same app: scenarios/django-app.toml's mix (ten closed-loop
# visitors, reads weighted 10, four kinds of form-posted write weighted 1) sent to
# examples/django-app, first by locust (examples/locust/locustfile.py, headless), then by
# lockbench, each on a fresh database and a fresh app, for the same time. Prints one table:
# per view, the requests, failures and failure rate each tool saw, the lock errors lockbench
# counted in the app's log for that view, and the CPU seconds each tool used per 1,000
# requests: each whole process (getrusage of it and its children), and lockbench's load
# threads alone (its report's load_cpu_s, from /proc/self/task), without its start, its audit
# of the app's database and its reports.
#
# Usage: scripts/vs-locust.sh [RUNS]   (default 1; each run is one locust run then one
# lockbench run). Environment: VS_SECONDS (default 30), VS_PORT (default 8011),
# LOCKBENCH (a lockbench binary; default: built here with cargo build --release).
# Installs the app's and locust's pinned packages from PyPI on first use. Output: the table
# on stdout, every run's files under target/vs-locust/.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
runs="${1:-1}"
seconds="${VS_SECONDS:-30}"
port="${VS_PORT:-8011}"
out="$repo/target/vs-locust"
rm -rf "$out"
mkdir -p "$out"

if [ -z "${LOCKBENCH:-}" ]; then
    cargo build --release --locked -q -p lockbench --bin lockbench
    LOCKBENCH="$repo/target/release/lockbench"
fi
bash examples/django-app/setup.sh
bash examples/locust/setup.sh
locust="$repo/target/locust/venv/bin/locust"

# Runs a command with its output in FILE and prints the CPU seconds (user + system) it and
# its children used. Usage: cpu FILE COMMAND...
cpu() {
    python3 - "$@" <<'PY'
import resource, subprocess, sys
with open(sys.argv[1], "w") as out:
    code = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT).returncode
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{r.ru_utime + r.ru_stime:.3f} {code}")
PY
}

app_pid=""
stop_app() {
    if [ -n "$app_pid" ]; then
        kill -TERM -- "-$app_pid" 2>/dev/null || true
        wait "$app_pid" 2>/dev/null || true
        app_pid=""
    fi
}
trap stop_app EXIT

# A fresh database and log, and the app started on them.
start_app() {
    local dir="$1"
    mkdir -p "$dir"
    DJANGO_DB="$dir/app.db" DJANGO_LOG="$dir/app.log" DJANGO_APP_PORT="$port" \
        setsid examples/django-app/run.sh >"$dir/gunicorn.log" 2>&1 &
    app_pid=$!
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/read/" && return 0
        sleep 0.2
    done
    echo "vs-locust: the app did not start; see $dir/gunicorn.log" >&2
    exit 1
}

for run in $(seq "$runs"); do
    dir="$out/run-$run"
    start_app "$dir/locust"
    read -r cpu_locust _ < <(cpu "$dir/locust/locust.log" "$locust" \
        -f examples/locust/locustfile.py --headless --users 10 --spawn-rate 10 \
        --run-time "${seconds}s" --host "http://127.0.0.1:$port" \
        --csv "$dir/locust/stats" --only-summary --loglevel WARNING)
    echo "$cpu_locust" >"$dir/locust/cpu_seconds"
    stop_app

    start_app "$dir/lockbench"
    read -r cpu_lockbench _ < <(cpu "$dir/lockbench/lockbench.log" \
        "$LOCKBENCH" run scenarios/django-app.toml --out "$dir/lockbench/report" \
        --target "http://127.0.0.1:$port" \
        --set "target.log=\"$dir/lockbench/app.log\"" \
        --set "target.database=\"$dir/lockbench/app.db\"" \
        --set "duration.target_run=\"${seconds}s\"")
    echo "$cpu_lockbench" >"$dir/lockbench/cpu_seconds"
    stop_app
done

python3 - "$out" "$runs" <<'PY'
import csv, json, sys
out, runs = sys.argv[1], int(sys.argv[2])
views = ["read", "write", "read_write_transaction", "read_write_immediate", "write_read_transaction"]
rows = {v: {"lr": 0, "lf": 0, "br": 0, "bf": 0, "locks": 0} for v in views}
cpu = {"locust": 0.0, "lockbench": 0.0}
load_cpu = 0.0
for run in range(1, runs + 1):
    d = f"{out}/run-{run}"
    with open(f"{d}/locust/stats_stats.csv") as f:
        for row in csv.DictReader(f):
            if row["Name"] in rows:
                rows[row["Name"]]["lr"] += int(row["Request Count"])
                rows[row["Name"]]["lf"] += int(row["Failure Count"])
    report = json.load(open(f"{d}/lockbench/report/report.json"))
    by_view = report["lock_errors"].get("by_endpoint", {})
    for name, s in report["requests"].items():
        if name in rows:
            rows[name]["br"] += s["count"]
            rows[name]["bf"] += s["failures"]
            rows[name]["locks"] += by_view.get(name, 0)
    for tool in cpu:
        cpu[tool] += float(open(f"{d}/{tool}/cpu_seconds").read().split()[0])
    load_cpu += report.get("load_cpu_s") or float("nan")
requests = {
    "locust": sum(r["lr"] for r in rows.values()),
    "lockbench": sum(r["br"] for r in rows.values()),
}

def rate(f, n):
    return f"{100.0 * f / n:.1f}%" if n else "–"

print(f"# {runs} run(s) of each tool, examples/django-app, scenarios/django-app.toml's mix\n")
print("| view | locust requests | locust failures | locust rate | lockbench requests | lockbench failures | lockbench rate | lock errors in the app's log (lockbench) |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for v in views:
    r = rows[v]
    print(f"| {v} | {r['lr']} | {r['lf']} | {rate(r['lf'], r['lr'])} | {r['br']} | {r['bf']} | {rate(r['bf'], r['br'])} | {r['locks']} |")
per = {t: (1000.0 * cpu[t] / requests[t] if requests[t] else float("nan")) for t in cpu}
load = 1000.0 * load_cpu / requests["lockbench"] if requests["lockbench"] else float("nan")
print()
print("CPU seconds per 1,000 requests (user + system):")
print(f"  locust, its whole process:                        {per['locust']:.3f}")
print(f"  lockbench, its whole process (start, load, audit): {per['lockbench']:.3f}"
      f"  ({per['lockbench'] / per['locust']:.2f} of locust's)")
print(f"  lockbench, its load threads only (report.json):    {load:.3f}"
      f"  ({load / per['locust']:.2f} of locust's)")
PY
