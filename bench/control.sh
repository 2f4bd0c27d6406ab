#!/usr/bin/env bash
# Control-plane benchmark: config push convergence. Starts the release `trellis control` as its own
# process, applies a mesh of services over the REST API, connects simulated proxies over the push
# protocol, then times rounds of changes from the apply to the last proxy's ACK and reads the
# control plane's RSS and CPU from /proc. The work is done by control/benches/convergence.rs.
#
#   bash bench/control.sh                                          # full run, a few minutes
#   BENCH_SERVICES=50 BENCH_PROXIES=10 BENCH_ROUNDS=3 bash bench/control.sh   # smoke, < 1 min once built
#
# Environment (all optional):
#   BENCH_SERVICES               services, one ServiceEntry + DestinationRule each (default 1000)
#   BENCH_ENDPOINTS_PER_SERVICE  endpoints per ServiceEntry (default 10)
#   BENCH_VIRTUAL_SERVICES       services that also get a weighted VirtualService (default 200)
#   BENCH_PROXIES                simulated proxies (default 200)
#   BENCH_ROUNDS                 single-VirtualService change rounds (default 30)
#   BENCH_ENDPOINT_ROUNDS        add-one-endpoint rounds (default 2)
#   BENCH_MESH_ROUNDS            mesh-wide rounds, each a Sidecar and an all-DestinationRule change (default 1)
#   BENCH_SIM_THREADS            tokio worker threads for the simulated proxies (default 1)
#   BENCH_SOURCE_LABELS=1        add a sourceLabels rule so proxies split into BENCH_APPS compile classes
#   BENCH_APPS                   distinct `app` label values among the proxies (default 50)
#   BENCH_VERIFY=0               skip checking every proxy's config against a local compile
#   BENCH_CONTROL_LOG            RUST_LOG for the control plane (default info,trellis_control::push::epoch=debug)
#   BENCH_ROUND_TIMEOUT          seconds a round may take before the run fails (default 60)
#   BENCH_OUT                    report path (default bench/results/control-latest.md)
#   BENCH_NO_BUILD=1             skip the cargo builds
#   TRELLIS_BIN                  the trellis binary to start (default $CARGO_TARGET_DIR/release/trellis)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export TRELLIS_BIN="${TRELLIS_BIN:-$CARGO_TARGET_DIR/release/trellis}"

if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
    cargo build --release -p trellis-control --bin trellis
    cargo bench -p trellis-control --bench convergence --no-run
fi
[[ -x "$TRELLIS_BIN" ]] || { echo "$TRELLIS_BIN is missing; build it or set TRELLIS_BIN" >&2; exit 1; }

# The bench stops the control plane itself (also on SIGINT/SIGTERM); this trap is the backstop
# for a bench that dies without cleaning up. It only signals the process group of the control
# plane the bench started, whose pid the bench writes to this file.
WORK="$(mktemp -d)"
export BENCH_PIDFILE="$WORK/control.pid"
cleanup() {
    if [[ -s "$BENCH_PIDFILE" ]]; then
        local pid
        pid="$(cat "$BENCH_PIDFILE")"
        if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "control --push"; then
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
for v in BENCH_SERVICES BENCH_ENDPOINTS_PER_SERVICE BENCH_VIRTUAL_SERVICES BENCH_PROXIES BENCH_ROUNDS \
         BENCH_ENDPOINT_ROUNDS BENCH_MESH_ROUNDS BENCH_SIM_THREADS BENCH_SOURCE_LABELS BENCH_APPS BENCH_VERIFY; do
    [[ -n "${!v:-}" ]] && knobs+="$v=${!v} "
done
export BENCH_COMMAND="${knobs}bash bench/control.sh"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain -- control/src api/src api/proto api/build.rs Cargo.lock 2>/dev/null)" ]]; then
    commit+=" + uncommitted changes"
fi
export BENCH_COMMIT="$commit"

cargo bench -q -p trellis-control --bench convergence
