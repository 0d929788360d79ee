#!/usr/bin/env bash
# Can lockbench simulate thousands of open dashboards? Against an idle reference server (one
# worker, no thread limit), N pollers each GET /healthz every 5 s for 20 s (N/5 requests per
# second offered), for N = 500, 2,000 and 10,000 (or the counts given as arguments), under each
# connection model (keep-alive: each user its own persistent connection; pooled: the class's
# users share a pool; close: a connection per request; CONNECTIONS="pooled close" picks). For each:
# lockbench's peak memory (RSS) and memory per user, the ticks that came due against the
# schedule (N x 20 s / 5 s), the offered and achieved request rates, and lockbench's CPU
# seconds per 1,000 requests (getrusage of the `lockbench run` process).
# Usage: scripts/bench-scale.sh [N ...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p lockbench --bin lockbench
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(500 2000 10000)
run_s=20
every_s=5

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LOCKBENCH_ADMIN_TOKEN=x ./target/release/lockbench serve --port "$port" --db "$work/app.db" \
    --journal-mode wal --tx-mode immediate --workers 1 --threads 0 > "$work/serve.out" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

connections=(${CONNECTIONS:-keep-alive pooled close})
echo "| users | connection | peak RSS MB | KB per user | ticks due | ticks on the schedule | due / schedule | offered req/s | achieved req/s | achieved / offered | CPU s per 1,000 requests |"
echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for n in "${counts[@]}"; do
for connection in "${connections[@]}"; do
    cat > "$work/scale.toml" <<TOML
name = "scale-$n"
[duration]
target_run = "${run_s}s"
[gates]
max_error_rate = 1.0

[[users]]
name = "dashboard"
count = $n
pace = "interval"
every = "${every_s}s"
connection = "$connection"

[[users.requests]]
name = "healthz"
path = "/healthz"
TOML
    python3 - "$work" "$n" "$port" "$run_s" "$every_s" "$connection" <<'PY'
import json, resource, subprocess, sys
work, n, port, run_s, every_s, connection = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
subprocess.run(
    ["./target/release/lockbench", "run", f"{work}/scale.toml", "--target", f"http://127.0.0.1:{port}",
     "--out", f"{work}/report-{n}"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
r = json.load(open(f"{work}/report-{n}/report.json"))
c = r["roles"]["dashboard"]
requests = r["requests"]["healthz"]["count"]
schedule = n * run_s // every_s
cpu = usage.ru_utime + usage.ru_stime
rss_mb = usage.ru_maxrss / 1024
print(f"| {n:,} | {connection} | {rss_mb:.0f} | {usage.ru_maxrss / n:.0f} | {c['ticks_due']:,} | {schedule:,} | "
      f"{c['ticks_due'] / schedule:.3f} | {c['offered_rps']:.0f} | {c['achieved_rps']:.0f} | "
      f"{c['achieved_rps'] / c['offered_rps']:.3f} | {1000 * cpu / max(requests, 1):.3f} |")
PY
done
done
