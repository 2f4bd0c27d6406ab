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
HOST="upstream.bench.local"
NS="bench"
TRUST_DOMAIN="cluster.local"
# (Used by mtls.sh's pki(), evaluated below.)
# shellcheck disable=SC2034
CLIENT_ID="spiffe://$TRUST_DOMAIN/ns/$NS/sa/client"
# shellcheck disable=SC2034
SERVER_ID="spiffe://$TRUST_DOMAIN/ns/$NS/sa/server"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_require_tools nginx h2load curl openssl valgrind callgrind_control callgrind_annotate
bench_check_ports "$BASE" $((BASE + 23))
bench_workdir
if [[ -z "${BENCH_BINS:-}" ]]; then
    bench_trellis_proxy "$ROOT"
    BENCH_BINS="trellis-proxy=$TRELLIS"
fi
mkdir -p "$WORK/pki" "$WORK/up" "$WORK/a" "$WORK/b" "$WORK/cg"

# The certificates, as bench/mtls.sh makes them (a throwaway CA, EC P-256 SPIFFE leaves).
eval "$(sed -n '/^pki() {/,/^}/p' "$ROOT/bench/mtls.sh")"
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

cat >"$WORK/a/upstream.yaml" <<EOF
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: upstream, namespace: $NS}
spec:
  hosts: [$HOST]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - address: 127.0.0.1
    ports: {http: PORT_B_INBOUND}
    labels: {app: upstream, security.istio.io/tlsMode: istio}
    serviceAccount: server
EOF
cat >"$WORK/b/peer-authentication.yaml" <<EOF
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: $NS}
spec: {mtls: {mode: STRICT}}
EOF
tls_flags() { # client|server
    echo --cert-chain "$WORK/pki/$1.pem" --key "$WORK/pki/$1.key" --trust-bundle "$WORK/pki/ca.pem" \
        --trust-domain "$TRUST_DOMAIN" --namespace "$NS" --service-account "$1"
}

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
        sed "s/PORT_B_INBOUND/$((b + 1))/" "$WORK/a/upstream.yaml" >"$WORK/a/upstream.yaml.now"
        mkdir -p "$WORK/a-$index"
        mv "$WORK/a/upstream.yaml.now" "$WORK/a-$index/upstream.yaml"
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
