#!/usr/bin/env bash
# Regenerates loadtest/tests/fixtures/report.json, the report the rendering tests read, from
# a real run of loadtest/tests/fixtures/report-fixture.toml, then the Markdown snapshot.
# The tests' exact strings (the busy timeouts that differ, the counts) come from that run:
# check them after regenerating.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cargo build --locked -p lockbench --bin lockbench
./target/debug/lockbench run loadtest/tests/fixtures/report-fixture.toml --out "$out/run" || true
cp "$out/run/report.json" loadtest/tests/fixtures/report.json
UPDATE_EXPECT=1 cargo test --locked -p lockbench --test report_render markdown_matches_the_snapshot
