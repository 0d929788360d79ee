#!/usr/bin/env bash
# Is the load generator the bottleneck? Against an idle reference server, in the same run:
# wrk's requests/s on GET /healthz, then lockbench on the same endpoint (`lockbench run
# --target`): 32 closed-loop users, as wrk's 32 connections are, and the browser model, 256
# pollers each on a 4 ms schedule (up to 64,000 req/s offered, more than wrk reaches).
# Prints each and its ratio to wrk (target for the closed loop: at least 0.6), then the
# closed loop without and with the live view (--live, its page read once a second).
# Caveat: 2 cores are shared by the server and the load generator in both measurements.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p lockbench >/dev/null
command -v wrk >/dev/null || { echo "wrk is missing: scripts/test.sh installs it"; exit 2; }

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LOCKBENCH_ADMIN_TOKEN=x ./target/release/lockbench serve --port "$port" --db "$work/app.db" \
    --journal-mode wal --tx-mode immediate --workers 1 > "$work/serve.out" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

wrk_rps=$(wrk -t2 -c32 -d10s "http://127.0.0.1:$port/healthz" | awk '/Requests\/sec/ {print $2}')

# lockbench's load on two threads, as wrk -t2 (its default is one; LOCKBENCH_LOAD_THREADS).
export LOCKBENCH_LOAD_THREADS="${LOCKBENCH_LOAD_THREADS:-2}"

# Like wrk: 32 users, each sending its next request as soon as the last is answered.
cat > "$work/closed.toml" <<TOML
name = "loadgen-closed"
[duration]
target_run = "10s"
[gates]
max_error_rate = 1.0
[[users]]
name = "closed"
count = 32
pace = "closed"
[[users.requests]]
name = "healthz"
path = "/healthz"
TOML
./target/release/lockbench run "$work/closed.toml" --target "http://127.0.0.1:$port" --out "$work/closed" >/dev/null
closed_rps=$(python3 -c "import json; r=json.load(open('$work/closed/report.json')); print(round(r['requests']['healthz']['count']/10.0))")

# The browser model: 256 pollers each on a 4 ms schedule (up to 64,000 req/s offered).
cat > "$work/loadgen.toml" <<TOML
name = "loadgen"
[users]
pollers = 256
poll_interval = "4ms"
admins = 0
kiosks = 0
[duration]
target_run = "10s"
[gates]
max_error_rate = 1.0
[endpoints]
poller = { method = "GET", path = "/healthz" }
TOML
./target/release/lockbench run "$work/loadgen.toml" --target "http://127.0.0.1:$port" --out "$work/report" >/dev/null
lb_rps=$(python3 -c "import json; r=json.load(open('$work/report/report.json')); n=r['requests']['poller']['count']; print(round(n/10.0))")

# The live view's cost: the closed loop again, three rounds alternating without and with
# --live (a page reading /state.json once a second, as an open browser tab does), medians.
closed_run() { # OUT [--live ...]
    local out="$1"; shift
    ./target/release/lockbench run "$work/closed.toml" --target "http://127.0.0.1:$port" \
        --out "$out" "$@" >/dev/null 2>"$out.err" &
    local pid=$!
    if [ "$#" -gt 0 ]; then
        local url=""
        for _ in $(seq 50); do
            url=$(grep -o 'http://[0-9.:]*' "$out.err" 2>/dev/null | head -1 || true)
            [ -n "$url" ] && break
            sleep 0.1
        done
        while kill -0 "$pid" 2>/dev/null; do curl -fs "$url/state.json" >/dev/null || true; sleep 1; done &
    fi
    wait "$pid"
    python3 -c "import json; r=json.load(open('$out/report.json')); print(r['requests']['healthz']['count']/10.0)"
}
plain=(); live=()
for k in 1 2 3; do
    plain+=("$(closed_run "$work/plain-$k")")
    live+=("$(closed_run "$work/live-$k" --live 127.0.0.1:0)")
done

python3 - "$wrk_rps" "$closed_rps" "$lb_rps" "${plain[*]}" "${live[*]}" <<'PY'
import statistics, sys
wrk, closed, lb = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
plain = [float(x) for x in sys.argv[4].split()]
live = [float(x) for x in sys.argv[5].split()]
print(f"GET /healthz, idle reference server, 1 worker, 10 s each, same run:")
print(f"  wrk -t2 -c32:                              {wrk:10.0f} req/s")
print(f"  lockbench, 32 closed-loop users (as wrk):  {closed:10.0f} req/s   ratio {closed / wrk:.2f} (target >= 0.6)")
print(f"  lockbench, 256 pollers every 4 ms:         {lb:10.0f} req/s   ratio {lb / wrk:.2f}")
print(f"  32 closed-loop users, 3 rounds each, alternating (medians):")
print(f"    without --live: {statistics.median(plain):10.0f} req/s   rounds {', '.join(f'{x:.0f}' for x in plain)}")
print(f"    with --live:    {statistics.median(live):10.0f} req/s   rounds {', '.join(f'{x:.0f}' for x in live)}   ratio {statistics.median(live) / statistics.median(plain):.2f}")
print("  caveat: the 2 cores are shared by the server and the load generator")
PY
