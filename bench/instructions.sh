#!/usr/bin/env bash
# Instructions per request of the trellis mTLS pair, counted by valgrind's callgrind: the user-space
# work (the proxy's code and the libraries it calls; not the kernel) each proxy does for one request.
# Unlike req/s and CPU time on a shared 2-core VM, the count is the same from run to run (±0.5 %),
# so it shows the effect of a change to the request path that timing noise would hide.
#
# Setup as bench/mtls.sh's trellis-mtls pair: h2load -> A (outbound) -> HTTP/2 mutual TLS -> B
# (inbound, PeerAuthentication STRICT) -> nginx (HTTP/1.1), both proxies under callgrind with
# instrumentation off until a warm-up is done; then BENCH_REQUESTS requests are counted.
#
#   bash bench/instructions.sh                          # the binary cargo builds
#   BENCH_BINS="before=/tmp/old after=/tmp/new" bash bench/instructions.sh
#   bash bench/instructions.sh && callgrind_annotate --inclusive=yes "$BENCH_KEEP"/h2-a.cg | less
#
# Environment:
#   BENCH_BINS       space-separated NAME=PATH trellis-proxy binaries to compare (default: the build)
#   BENCH_REQUESTS   requests counted per protocol (default 3000)
#   BENCH_PROTOCOLS  load protocols from the client to A: h2 and/or h1 (default "h2 h1")
#   BENCH_PORT_BASE  first of 24 loopback ports used (default 28300)
#   BENCH_KEEP=DIR   keep the callgrind profiles (PROTO-a.cg, PROTO-b.cg per binary) in DIR
#   BENCH_NO_BUILD=1 skip `cargo build --release -p trellis-proxy`
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUESTS="${BENCH_REQUESTS:-3000}"
PROTOCOLS="${BENCH_PROTOCOLS:-h2 h1}"
BASE="${BENCH_PORT_BASE:-28300}"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_mesh_names
bench_require_tools nginx h2load curl openssl valgrind callgrind_control callgrind_annotate
bench_check_ports "$BASE" $((BASE + 23))
bench_workdir
if [[ -z "${BENCH_BINS:-}" ]]; then
    bench_trellis_proxy "$ROOT"
    BENCH_BINS="trellis-proxy=$TRELLIS"
fi
mkdir -p "$WORK/pki" "$WORK/up" "$WORK/b" "$WORK/cg"

pki

P_UP=$BASE
{
    nginx_common "$WORK/up"
    echo "http {"
    nginx_http_common "$WORK/up"
    echo "    server { listen 127.0.0.1:$P_UP; location / { default_type text/plain; return 200 \"hello\"; } }"
    echo "}"
} >"$WORK/up/nginx.conf"
start up nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" -e "$WORK/up/error.log"
wait_http "http://127.0.0.1:$P_UP/" 200 "" "${PID[up]}"

strict >"$WORK/b/peer-authentication.yaml"

# start_under_callgrind NAME BIN PORT OUT flags...: a proxy with instrumentation off until told.
start_under_callgrind() {
    local name="$1" bin="$2" port="$3" out="$4"; shift 4
    start "$name" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
        "$bin" --threads 1 --log warn --access-log off \
        --outbound "127.0.0.1:$port" --inbound "127.0.0.1:$((port + 1))" \
        --admin "127.0.0.1:$((port + 2))" --stats "127.0.0.1:$((port + 3))" "$@"
    for _ in $(seq 1 240); do
        curl -sf -o /dev/null "http://127.0.0.1:$((port + 2))/ready" && return 0
        kill -0 "${PID[$name]}" 2>/dev/null || break
        sleep 0.25
    done
    echo "$name did not become ready under valgrind; its log:" >&2
    cat "$WORK/$name.log" >&2
    exit 1
}

load_requests() { # proto port n
    local args=(-n "$3" -c 10 -H ":authority: $HOST")
    if [[ "$1" == h2 ]]; then args+=(-m 10); else args+=(--h1 -m 1); fi
    local out
    out="$(h2load "${args[@]}" "http://127.0.0.1:$2/")"
    grep -q "$3 succeeded" <<<"$out" || { echo "h2load: not all $3 requests succeeded:" >&2; echo "$out" >&2; exit 1; }
}

total_ir() { # callgrind file -> instructions
    callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
}

RESULTS="$WORK/results.tsv"
: >"$RESULTS"
index=0
for entry in $BENCH_BINS; do
    name="${entry%%=*}" bin="${entry#*=}"
    [[ -x "$bin" ]] || { echo "$name: no executable at $bin" >&2; exit 1; }
    for proto in $PROTOCOLS; do
        a=$((BASE + 2 + 8 * (index % 2))) b=$((BASE + 6 + 8 * (index % 2)))
        index=$((index + 1))
        mkdir -p "$WORK/a-$index"
        service_entry $((b + 1)) 1 >"$WORK/a-$index/upstream.yaml"
        log "$name, $proto: starting the pair under callgrind (A :$a -> B :$((b + 1)) -> nginx :$P_UP)"
        # shellcheck disable=SC2046
        start_under_callgrind "b-$index" "$bin" "$b" "$WORK/cg/$name-$proto-b.cg" --config "$WORK/b" \
            --workload server --labels app=upstream --app-port "$P_UP" $(tls_flags server)
        # shellcheck disable=SC2046
        start_under_callgrind "a-$index" "$bin" "$a" "$WORK/cg/$name-$proto-a.cg" --config "$WORK/a-$index" \
            --workload client --labels app=client $(tls_flags client)
        body="$(curl -sS -H "Host: $HOST" "http://127.0.0.1:$a/")"
        [[ "$body" == hello ]] || { echo "$name: the pair answered '$body', not 'hello'" >&2; exit 1; }
        load_requests "$proto" "$a" 500 # warm-up: connections, pools, caches
        pa="${PID[a-$index]}" pb="${PID[b-$index]}"
        callgrind_control -i on "$pa" >/dev/null 2>&1
        callgrind_control -i on "$pb" >/dev/null 2>&1
        load_requests "$proto" "$a" "$REQUESTS"
        # The first dump on request is FILE.1 (the one at exit, FILE, is not used).
        callgrind_control -d "$pa" >/dev/null 2>&1
        callgrind_control -d "$pb" >/dev/null 2>&1
        for f in "$WORK/cg/$name-$proto-a.cg.1" "$WORK/cg/$name-$proto-b.cg.1"; do
            for _ in $(seq 1 40); do [[ -s "$f" ]] && break; sleep 0.25; done
        done
        ia="$(total_ir "$WORK/cg/$name-$proto-a.cg.1")"
        ib="$(total_ir "$WORK/cg/$name-$proto-b.cg.1")"
        kill "$pa" "$pb" 2>/dev/null || true
        wait "$pa" "$pb" 2>/dev/null || true
        printf '%s\t%s\t%s\t%s\n' "$name" "$proto" $((ia / REQUESTS)) $((ib / REQUESTS)) >>"$RESULTS"
        log "$name, $proto: A $((ia / REQUESTS)), B $((ib / REQUESTS)) instructions per request"
    done
done

if [[ -n "${BENCH_KEEP:-}" ]]; then
    mkdir -p "$BENCH_KEEP"
    for f in "$WORK"/cg/*.cg.1; do
        base="$(basename "$f" .1)"
        cp "$f" "$BENCH_KEEP/$base"
    done
    log "callgrind profiles kept in $BENCH_KEEP"
fi

echo "| binary | client → A | A instructions/req | B instructions/req | A + B |"
echo "|---|---|---:|---:|---:|"
awk -F'\t' '{ printf "| %s | %s | %d | %d | %d |\n", $1, ($2 == "h2" ? "HTTP/2" : "HTTP/1.1"), $3, $4, $3 + $4 }' "$RESULTS"
