#!/usr/bin/env bash
# Collector benchmark: OTLP span ingest with SQLite storage on. Starts the release `trellis control`
# as its own process (telemetry in a temporary directory), sends OTLP/gRPC span batches from
# concurrent clients for a fixed time, waits until what was accepted is stored, and reports spans/s
# accepted and stored and stored spans per second of the collector's CPU time (per core, from /proc).
# The work is done by control/benches/ingest.rs.
#
#   bash bench/collector.sh                         # 20 s of load, about a minute once built
#   BENCH_SECONDS=5 bash bench/collector.sh         # smoke run
#
# Environment (all optional):
#   BENCH_SECONDS    seconds of load (default 20)
#   BENCH_CLIENTS    concurrent OTLP/gRPC clients, one connection each (default 4)
#   BENCH_BATCH      spans per export request (default 512, the SDKs' batch size)
#   BENCH_OUT        report path (default bench/results/collector-latest.md)
#   BENCH_NO_BUILD=1 skip the cargo builds
#   TRELLIS_BIN      the trellis binary to start (default: the one cargo builds for the bench)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
    cargo bench -p trellis-control --bench ingest --no-run
fi

# The bench stops the control plane itself; this trap is the backstop for a bench that dies
# without cleaning up. It only signals the process group whose pid the bench wrote to this file.
WORK="$(mktemp -d)"
export BENCH_PIDFILE="$WORK/control.pid"
cleanup() {
    if [[ -s "$BENCH_PIDFILE" ]]; then
        local pid
        pid="$(cat "$BENCH_PIDFILE")"
        if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "control --console"; then
            kill -TERM -- "-$pid" 2>/dev/null || true
            for _ in $(seq 30); do [[ -d "/proc/$pid" ]] || break; sleep 0.1; done
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

knobs=""
for v in BENCH_SECONDS BENCH_CLIENTS BENCH_BATCH; do
    [[ -n "${!v:-}" ]] && knobs+="$v=${!v} "
done
export BENCH_COMMAND="${knobs}bash bench/collector.sh"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain -- control/src control/migrations-telemetry Cargo.lock 2>/dev/null)" ]]; then
    commit+=" + uncommitted changes"
fi
export BENCH_COMMIT="$commit"

cargo bench -q -p trellis-control --bench ingest
