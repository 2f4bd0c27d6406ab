#!/usr/bin/env bash
# mTLS benchmark: a pair of trellis-proxies (A outbound -> B inbound -> nginx) with mutual TLS on
# the A->B hop, the same pair in plaintext, and a pair of HAProxies with mutual TLS on the A->B hop,
# in one run, with wrk (HTTP/1.1 keep-alive) and h2load (HTTP/2 prior knowledge, cleartext) from
# the load generator to A. Then the cost of handshakes: each pair again with a new A->B connection
# for every request (trellis: DestinationRule maxRequestsPerConnection: 1; HAProxy: http-reuse
# never + option http-server-close), giving CPU per new mTLS connection.
# Every proxy runs ONE worker thread; certificates are a throwaway CA and two SPIFFE leaves
# (openssl, EC P-256) shared by trellis and HAProxy.
#
#   bash bench/mtls.sh                                  # full run (10 s per measurement)
#   BENCH_SECONDS=3 BENCH_ROUNDS=1 bash bench/mtls.sh   # smoke run
#
# Environment (as bench/proxy.sh):
#   BENCH_SECONDS     seconds per measurement (default 10)
#   BENCH_ROUNDS      rounds over all targets (default 3), order rotated each round
#   BENCH_PICK        which round to report per target: best (default) or median, by req/s
#   BENCH_WARMUP      seconds of warm-up per target before measuring (default 1; 0 = none)
#   WRK_CONNS         wrk connections (default 50)
#   H2_CONNS          h2load connections (default 10)
#   H2_STREAMS        h2load max concurrent streams per connection (default 10)
#   BENCH_PORT_BASE   first of the loopback ports used (default 28200; uses BASE..BASE+42)
#   BENCH_NO_PIN=1    do not pin processes to CPUs
#   BENCH_CPU_PROXY, BENCH_CPU_LOAD, BENCH_CPU_UP
#                     taskset CPU lists for both proxies of a pair, the load generator and the
#                     upstream (defaults 1, 0, 0)
#   BENCH_NEWCONN=0   skip the new-connection-per-request (handshake cost) measurements
#   BENCH_NO_BUILD=1  skip `cargo build --release -p trellis-proxy`
#   BENCH_OUT         where to write the Markdown report (default bench/results/mtls-latest.md)
#   BENCH_PERF=DIR    also `perf record` both trellis proxies of a pair during its measurements into DIR
#   TRELLIS_PROXY_BIN use this binary instead of the one cargo builds
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECS="${BENCH_SECONDS:-10}"
ROUNDS="${BENCH_ROUNDS:-3}"
PICK="${BENCH_PICK:-best}"
[[ "$PICK" == best || "$PICK" == median ]] || { echo "BENCH_PICK must be best or median" >&2; exit 2; }
WARMUP="${BENCH_WARMUP:-1}"
WRK_CONNS="${WRK_CONNS:-50}"
H2_CONNS="${H2_CONNS:-10}"
H2_STREAMS="${H2_STREAMS:-10}"
NEWCONN="${BENCH_NEWCONN:-1}"
BASE="${BENCH_PORT_BASE:-28200}"
OUT="${BENCH_OUT:-$ROOT/bench/results/mtls-latest.md}"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_mesh_names

# Ports (all on 127.0.0.1): the upstream, then 8 per trellis pair (A: outbound, inbound, admin,
# stats; B: the same), then 3 per HAProxy pair (A HTTP/1.1, A proto h2, B TLS).
P_UP=$((BASE + 0))
tr_port() { echo $((BASE + 2 + 8 * $1)); } # pair index -> A's outbound port; B's ports are +4..+7
ha_port() { echo $((BASE + 34 + 3 * $1)); } # pair index -> A's HTTP/1.1 port; +1 h2, +2 B

bench_require_tools nginx haproxy wrk h2load awk curl openssl
bench_check_ports "$BASE" $((BASE + 42))
bench_pinning
if [[ "$PINNED" == 1 ]]; then
    PINNING="taskset: both proxies of the pair under test on CPU $CPU_PROXY, wrk/h2load on CPU $CPU_LOAD, nginx upstream on CPU $CPU_UP"
else
    PINNING="no CPU pinning"
fi
bench_workdir
bench_trellis_proxy "$ROOT"
mkdir -p "$WORK/up" "$WORK/pki" "$WORK/res"

log "making a test CA and SPIFFE certificates for $CLIENT_ID and $SERVER_ID"
pki
# ---------------------------------------------------------------- nginx upstream
{
    nginx_common "$WORK/up"
    echo "http {"
    nginx_http_common "$WORK/up"
    cat <<EOF
    server {
        listen 127.0.0.1:$P_UP;
        location / { default_type text/plain; return 200 "hello"; }
    }
}
EOF
} >"$WORK/up/nginx.conf"
log "starting nginx upstream on :$P_UP"
start up "${PIN_UP[@]}" nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" -e "$WORK/up/error.log"
wait_http "http://127.0.0.1:$P_UP/" 200 "" "${PID[up]}"

# ---------------------------------------------------------------- trellis pairs
one_request_per_connection() {
    cat <<EOF
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: upstream, namespace: $NS}
spec:
  host: $HOST
  trafficPolicy:
    connectionPool: {http: {maxRequestsPerConnection: 1}}
EOF
}
# start_trellis_pair TARGET PAIR-INDEX MTLS(0|1) NEWCONN(0|1)
declare -A A_PID=() B_PID=() PORT_h1=() PORT_h2=() A_STATS=() B_STATS=() B_PLAIN=()
start_trellis_pair() {
    local target="$1" a b mtls="$3" newconn="$4"
    a="$(tr_port "$2")" b=$(($(tr_port "$2") + 4))
    local dir="$WORK/$target"
    mkdir -p "$dir/a" "$dir/b"
    service_entry $((b + 1)) "$mtls" >"$dir/a/upstream.yaml"
    [[ "$newconn" == 1 ]] && one_request_per_connection >>"$dir/a/upstream.yaml"
    local a_tls=() b_tls=()
    if [[ "$mtls" == 1 ]]; then
        strict >"$dir/b/peer-authentication.yaml"
        read -r -a a_tls <<<"$(tls_flags client)"
        read -r -a b_tls <<<"$(tls_flags server)"
    else
        a_tls=(--namespace "$NS" --service-account client)
        b_tls=(--namespace "$NS" --service-account server)
    fi
    log "starting trellis pair $target: A :$a -> B :$((b + 1)) -> nginx :$P_UP"
    start_trellis_proxy "${target}-b" "$b" --access-log off --config "$dir/b" --workload server \
        --labels app=upstream --app-port "$P_UP" "${b_tls[@]}"
    start_trellis_proxy "${target}-a" "$a" --access-log off --config "$dir/a" --workload client \
        --labels app=client "${a_tls[@]}"
    wait_http "http://127.0.0.1:$a/" 200 "$HOST" "${PID[${target}-a]}"
    A_PID[$target]="${PID[${target}-a]}" B_PID[$target]="${PID[${target}-b]}"
    PORT_h1[$target]=$a PORT_h2[$target]=$a
    A_STATS[$target]=$((a + 3)) B_STATS[$target]=$((b + 3))
    B_PLAIN[$target]=$((b + 1))
}

# ---------------------------------------------------------------- HAProxy pairs
# A: plain HTTP in (HTTP/1.1 and h2c), TLS with the client certificate to B, verifying B's chain;
# B: TLS in, client certificate required and verified, plain HTTP/1.1 to nginx. TLS 1.3 only,
# as trellis. HAProxy checks the chain only: it has no way to require a SPIFFE URI SAN.
start_haproxy_pair() { # target pair-index newconn(0|1) [hop: h1 (default) | h2]
    local target="$1" a b newconn="$3" hop="${4:-h1}" dir="$WORK/$1"
    a="$(ha_port "$2")" b=$(($(ha_port "$2") + 2))
    mkdir -p "$dir"
    local reuse="http-reuse always" close=""
    if [[ "$newconn" == 1 ]]; then reuse="http-reuse never"; close="option http-server-close"; fi
    # HTTP/2 on the A->B hop: ALPN h2 both ends, requests multiplexed on the reused connections.
    local alpn=""
    if [[ "$hop" == h2 ]]; then alpn="alpn h2"; fi
    {
        haproxy_common
        cat <<EOF

frontend fe
    bind 127.0.0.1:$a
    bind 127.0.0.1:$((a + 1)) proto h2
    default_backend be

backend be
    $reuse
    $close
    server b 127.0.0.1:$b ssl crt $WORK/pki/client-haproxy.pem ca-file $WORK/pki/ca.pem verify required ssl-min-ver TLSv1.3 $alpn
EOF
    } >"$dir/a.cfg"
    {
        haproxy_common
        cat <<EOF
    http-reuse always

frontend fe
    bind 127.0.0.1:$b ssl crt $WORK/pki/server-haproxy.pem ca-file $WORK/pki/ca.pem verify required ssl-min-ver TLSv1.3 $alpn
    default_backend be

backend be
    server up 127.0.0.1:$P_UP
EOF
    } >"$dir/b.cfg"
    log "starting HAProxy pair $target: A :$a (h1) :$((a + 1)) (h2) -> B :$b (TLS) -> nginx :$P_UP"
    start "${target}-b" "${PIN_PROXY[@]}" haproxy -db -f "$dir/b.cfg"
    start "${target}-a" "${PIN_PROXY[@]}" haproxy -db -f "$dir/a.cfg"
    wait_http "http://127.0.0.1:$a/" 200 "$HOST" "${PID[${target}-a]}"
    A_PID[$target]="${PID[${target}-a]}" B_PID[$target]="${PID[${target}-b]}"
    PORT_h1[$target]=$a PORT_h2[$target]=$((a + 1))
    B_PLAIN[$target]=$b
}

# ---------------------------------------------------------------- start everything
KEEPALIVE_TARGETS=(trellis-plain trellis-mtls haproxy-mtls haproxy-mtls-h2)
NEWCONN_TARGETS=(trellis-plain-nc trellis-mtls-nc haproxy-mtls-nc)
start_trellis_pair trellis-plain 0 0 0
start_trellis_pair trellis-mtls 1 1 0
start_haproxy_pair haproxy-mtls 0 0
start_haproxy_pair haproxy-mtls-h2 2 0 h2
if [[ "$NEWCONN" == 1 ]]; then
    start_trellis_pair trellis-plain-nc 2 0 1
    start_trellis_pair trellis-mtls-nc 3 1 1
    start_haproxy_pair haproxy-mtls-nc 1 1
else
    NEWCONN_TARGETS=()
fi
ALL_TARGETS=("${KEEPALIVE_TARGETS[@]}" "${NEWCONN_TARGETS[@]}")

# ---------------------------------------------------------------- checks before measuring
# Every pair answers the upstream's body over HTTP/1.1 and HTTP/2.
for t in "${ALL_TARGETS[@]}"; do
    body="$(curl -sS -H "Host: $HOST" "http://127.0.0.1:${PORT_h1[$t]}/")"
    [[ "$body" == hello ]] || { echo "$t (h1) answered '$body', not 'hello'" >&2; exit 1; }
    h2out="$(h2load -n 20 -c 1 -H ":authority: $HOST" "http://127.0.0.1:${PORT_h2[$t]}/" 2>&1 || true)"
    if ! grep -q '20 succeeded' <<<"$h2out"; then
        echo "$t does not answer HTTP/2 prior-knowledge requests:" >&2
        h2load -n 2 -c 1 -H ":authority: $HOST" "http://127.0.0.1:${PORT_h2[$t]}/" >&2 || true
        exit 1
    fi
done
# The mTLS pairs' B refuses plaintext (STRICT / a TLS-only bind), so what passes A->B is TLS;
# trellis B reports the requests it served as mutual_tls with A's SPIFFE ID, the plaintext B as none.
for t in trellis-mtls trellis-mtls-nc haproxy-mtls haproxy-mtls-h2 haproxy-mtls-nc; do
    [[ -n "${B_PLAIN[$t]:-}" ]] || continue
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: $HOST" "http://127.0.0.1:${B_PLAIN[$t]}/" || true)"
    [[ "$code" == 000 || "$code" == 400 ]] || { echo "$t: B answered a plaintext request with $code; mTLS is not enforced" >&2; exit 1; }
done
stats() { curl -s "http://127.0.0.1:$1/stats/prometheus"; }
# (The text is read whole before grep -q, which would otherwise cut curl off: a SIGPIPE under pipefail.)
policy_seen() { # stats-port policy -> 0 if B's istio_requests_total has that connection_security_policy
    local text
    text="$(stats "$1" | grep '^istio_requests_total{' | grep 'reporter="destination"' || true)"
    grep -q "connection_security_policy=\"$2\"" <<<"$text"
}
for t in trellis-mtls trellis-mtls-nc; do
    [[ -n "${B_STATS[$t]:-}" ]] || continue
    policy_seen "${B_STATS[$t]}" mutual_tls || {
        echo "$t: B's /stats/prometheus has no request with connection_security_policy=\"mutual_tls\":" >&2
        stats "${B_STATS[$t]}" | grep '^istio_requests_total{' >&2 || true
        exit 1
    }
    text="$(stats "${B_STATS[$t]}")"
    grep -q "source_principal=\"$CLIENT_ID\"" <<<"$text" || {
        echo "$t: B does not name $CLIENT_ID as the source principal" >&2; exit 1; }
done
for t in trellis-plain trellis-plain-nc; do
    [[ -n "${B_STATS[$t]:-}" ]] || continue
    policy_seen "${B_STATS[$t]}" none || { echo "$t: B saw no plaintext (connection_security_policy=\"none\") request" >&2; exit 1; }
done
log "checked: mTLS pairs refuse plaintext at B; trellis B reports connection_security_policy=\"mutual_tls\" and source_principal=\"$CLIENT_ID\""

# Mesh TLS handshakes A made (trellis_outbound_tls_handshakes_total{mode="istio_mutual",result="success"}).
handshakes() { # target
    if [[ -n "${A_STATS[$1]:-}" ]]; then
        stats "${A_STATS[$1]}" | awk '/^trellis_outbound_tls_handshakes_total\{mode="istio_mutual",result="success"\}/ { n += $NF } END { print n + 0 }'
    else
        echo -
    fi
}

# ---------------------------------------------------------------- measurement
# One line per measurement in $ROWS:
#   round target proto rps p50_ms p99_ms requests errors other_cpu_pct a_cpu_s b_cpu_s a_peak_kib b_peak_kib handshakes
ROWS="$WORK/res/rows.tsv"
: >"$ROWS"

measure() { # round target proto(h1|h2|nc)
    local round="$1" target="$2" proto="$3"
    local out="$WORK/res/$target-$proto-$round.txt" reqlog="$WORK/res/$target-$proto-$round.log"
    local port="${PORT_h1[$target]}"
    [[ "$proto" == h2 ]] && port="${PORT_h2[$target]}"
    local url="http://127.0.0.1:$port/"
    local wrk=(wrk -t1 -c"$WRK_CONNS" -H "Host: $HOST")
    local h2=(h2load -c"$H2_CONNS" -m"$H2_STREAMS" -H ":authority: $HOST")
    if [[ "$WARMUP" != 0 ]]; then
        if [[ "$proto" == h2 ]]; then load /dev/null "${h2[@]}" -D "$WARMUP" "$url"
        else load /dev/null "${wrk[@]}" -d"${WARMUP}s" "$url"; fi
    fi
    local apid="${A_PID[$target]}" bpid="${B_PID[$target]}" a0 b0 a1 b1 hs0 hs1
    local sa="$WORK/res/rss-a-$target-$proto-$round.txt" sb="$WORK/res/rss-b-$target-$proto-$round.txt"
    hs0="$(handshakes "$target")"
    a0="$(cpu_ticks "$apid")" b0="$(cpu_ticks "$bpid")"
    sampler_start "$apid" "$sa"
    sampler_start "$bpid" "$sb"
    other_start
    local perfs=()
    if [[ -n "${BENCH_PERF:-}" && "$target" == trellis* ]]; then
        mkdir -p "$BENCH_PERF"
        for side in a b; do
            local ppid="$apid"; [[ "$side" == b ]] && ppid="$bpid"
            perf record -F 999 -g --call-graph dwarf,16384 -p "$ppid" -o "$BENCH_PERF/$target-$proto-$round-$side.data" \
                -- sleep "$SECS" >/dev/null 2>&1 &
            perfs+=($!)
        done
    fi
    if [[ "$proto" == h2 ]]; then
        load "$out" "${h2[@]}" -D "$SECS" --log-file="$reqlog" "$url"
    else
        load "$out" "${wrk[@]}" -d"${SECS}s" --latency "$url"
    fi
    a1="$(cpu_ticks "$apid")" b1="$(cpu_ticks "$bpid")"
    sampler_stop
    for p in "${perfs[@]}"; do wait "$p" || true; done
    local other rps p50 p99 reqs errs hs label
    other="$(other_pct)"
    hs1="$(handshakes "$target")"
    if [[ "$hs0" == - ]]; then hs=-; else hs=$((hs1 - hs0)); fi
    case "$proto" in
        h1) label=HTTP/1.1; read -r rps p50 p99 reqs errs < <(parse_wrk "$out") ;;
        nc) label=new-conn; read -r rps p50 p99 reqs errs < <(parse_wrk "$out") ;;
        h2) label=HTTP/2; read -r rps p50 p99 reqs errs < <(parse_h2load "$out" "$reqlog") ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$target" "$label" "$rps" "$p50" "$p99" \
        "$reqs" "$errs" "$other" \
        "$(awk -v a="$a0" -v b="$a1" -v t="$CLK_TCK" 'BEGIN { printf "%.3f", (b - a) / t }')" \
        "$(awk -v a="$b0" -v b="$b1" -v t="$CLK_TCK" 'BEGIN { printf "%.3f", (b - a) / t }')" \
        "$(sort -n "$sa" | tail -1)" "$(sort -n "$sb" | tail -1)" "$hs" >>"$ROWS"
    log "round $round $target $label: $rps req/s, p50 $p50 ms, p99 $p99 ms, $errs errors, other load ${other}% CPU"
}

log "measuring: $ROUNDS round(s), ${SECS}s each; wrk -t1 -c$WRK_CONNS; h2load -c$H2_CONNS -m$H2_STREAMS; $PINNING"
other_start; sleep 1; IDLE_OTHER="$(other_pct)"
if [[ "$IDLE_OTHER" -gt 10 ]]; then
    log "WARNING: other processes use ${IDLE_OTHER}% of a CPU before the run; results will be noisy"
fi
for ((round = 1; round <= ROUNDS; round++)); do
    for proto in h1 h2 nc; do
        if [[ "$proto" == nc ]]; then targets=("${NEWCONN_TARGETS[@]}"); else targets=("${KEEPALIVE_TARGETS[@]}"); fi
        # Rotate the order each round so no target always runs first or last.
        for ((i = 0; i < ${#targets[@]}; i++)); do
            measure "$round" "${targets[$(((i + round - 1) % ${#targets[@]}))]}" "$proto"
        done
    done
done
declare -A HWM_A=() HWM_B=()
for t in "${ALL_TARGETS[@]}"; do HWM_A[$t]="$(hwm_kib "${A_PID[$t]}")" HWM_B[$t]="$(hwm_kib "${B_PID[$t]}")"; done

# ---------------------------------------------------------------- report
# SUMMARY: target proto rps p50 p99 errors min max other_cpu pair_cpu_us_per_req a_peak_kib b_peak_kib
#          handshakes_per_req a_cpu_us_per_req b_cpu_us_per_req
# Per target and protocol, the best round (BENCH_PICK=best, default: interference from other
# processes only ever lowers throughput) or the median round by req/s, with the req/s range.
SUMMARY="$WORK/res/summary.tsv"
sort -t$'\t' -k2,2 -k3,3 -k4,4n "$ROWS" | awk -F'\t' -v OFS='\t' -v pick="$PICK" '
    { key = $2 OFS $3; n[key]++; row[key, n[key]] = $0; err[key] += $8; if (!(key in order)) order[key] = ++nk; keys[order[key]] = key }
    END {
        for (j = 1; j <= nk; j++) {
            key = keys[j]; m = (pick == "median" ? int((n[key] + 1) / 2) : n[key])
            split(row[key, m], f, "\t"); split(row[key, 1], lo, "\t"); split(row[key, n[key]], hi, "\t")
            req = (f[7] > 0 ? f[7] : 1)
            print f[2], f[3], f[4], f[5], f[6], err[key], lo[4], hi[4], f[9], (f[10] + f[11]) / req * 1e6, f[12], f[13],
                (f[14] == "-" ? "-" : sprintf("%.2f", f[14] / req)), f[10] / req * 1e6, f[11] / req * 1e6
        }
    }' >"$SUMMARY"

mkdir -p "$(dirname "$OUT")"
REPORT="$WORK/res/report.md"
table() { # protocol label
    echo "| target | req/s | p50 ms | p99 ms | CPU µs/req (A + B) | peak RSS A / B MiB | req/s range | errors | other CPU % |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' -v p="$1" '$2 == p {
        printf "| %s | %d | %s | %s | %.1f (%.1f + %.1f) | %.1f / %.1f | %d–%d | %d | %s |\n", $1, $3, $4, $5, $10, $14, $15,
            $11 / 1024, $12 / 1024, $7, $8, $6, $9 }' "$SUMMARY"
}
{
    echo "## mTLS benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -sr)."
    echo "Tools: $(tool_versions), $(openssl version | awk '{ print $1, $2 }'), trellis-proxy $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '(no commit)')."
    echo "Method: load generator → proxy A (outbound) → proxy B (inbound) → nginx (1 worker, 5-byte body), all on"
    echo "127.0.0.1; every proxy runs ONE worker thread. The upstream speaks HTTP/1.1 (ServiceEntry port protocol HTTP)."
    echo "A→B hop: trellis-mtls multiplexes the requests over one HTTP/2 mutual TLS connection (ALPN"
    echo "\`trellis-h2-http/1.1\`; B speaks HTTP/1.1 to nginx), as trellis does between proxies; trellis-plain uses pooled"
    echo "HTTP/1.1 keep-alive connections (no mTLS, so no proxy-to-proxy protocol); HAProxy \`http-reuse always\` (HTTP/1.1)."
    echo "trellis-mtls: A and B have SPIFFE certificates ($CLIENT_ID, $SERVER_ID; EC P-256 from a test CA made"
    echo "with openssl), the endpoint is labelled \`security.istio.io/tlsMode: istio\` with \`serviceAccount: server\` (auto"
    echo "mTLS, TLS 1.3, A verifies B's SPIFFE ID), B has PeerAuthentication STRICT; checked before measuring: B refuses"
    echo "plaintext and reports \`connection_security_policy=\"mutual_tls\"\`. trellis-plain: no certificates. Both with"
    echo "default telemetry (Istio metrics, peer metadata; no OTLP exporter configured, access log off)."
    echo "haproxy-mtls: A plain in, \`server ... ssl crt client verify required\` to B, B \`bind ... ssl crt server"
    echo "ca-file ca verify required\`, TLS 1.3, same CA and leaves (HAProxy verifies the chain only, not the SPIFFE ID)."
    echo "haproxy-mtls-h2: the same with \`alpn h2\` on both ends of the A→B hop (HTTP/2, multiplexed on reused connections)."
    echo "$PINNING."
    echo "HTTP/1.1: \`wrk -t1 -c$WRK_CONNS --latency\` (keep-alive); HTTP/2: \`h2load -c$H2_CONNS -m$H2_STREAMS\` (h2c prior knowledge to A)."
    echo "$ROUNDS round(s) of ${SECS}s per target and protocol (after ${WARMUP}s warm-up), order rotated each round;"
    echo "the row shows the $PICK round by req/s, with the range over rounds. \"CPU µs/req\" is utime+stime of both"
    echo "proxies of the pair (A + B) per request in that round; \"other CPU\" is CPU used during the measurement by"
    echo "processes the benchmark did not start (100 = one whole core): high values mean a noisy run."
    echo "Other CPU before the run: ${IDLE_OTHER}%."
    for proto in HTTP/1.1 HTTP/2; do
        echo
        echo "### $proto"
        echo
        table "$proto"
    done
    echo
    echo "| ratio | HTTP/1.1 | HTTP/2 | target |"
    echo "|---|---:|---:|---|"
    awk -F'\t' '
        { rps[$1 "|" $2] = $3; p99[$1 "|" $2] = $5; cpu[$1 "|" $2] = $10 }
        function r(a, b) { return (b > 0 ? sprintf("%.2f", a / b) : "-") }
        function met(a, b, min) { return (b > 0 && a > 0 ? (a / b >= min ? "met" : "**missed**") : "-") }
        function row(name, x, y, min, goal) {
            h1 = r(rps[x "|HTTP/1.1"], rps[y "|HTTP/1.1"]); h2 = r(rps[x "|HTTP/2"], rps[y "|HTTP/2"])
            printf "| %s | %s | %s | ≥ %s: %s / %s |\n", name, h1, h2, goal,
                met(rps[x "|HTTP/1.1"], rps[y "|HTTP/1.1"], min), met(rps[x "|HTTP/2"], rps[y "|HTTP/2"], min)
        }
        END {
            row("req/s trellis mTLS / trellis plaintext", "trellis-mtls", "trellis-plain", 0.85, "0.85")
            row("req/s trellis mTLS / HAProxy mTLS", "trellis-mtls", "haproxy-mtls", 1.0, "1.0")
            # HAProxy told to multiplex too (alpn h2, not its default): a comparison, not the issue 5 target.
            printf "| req/s trellis mTLS / HAProxy mTLS with HTTP/2 between the proxies | %s | %s | comparison |\n", r(rps["trellis-mtls|HTTP/1.1"], rps["haproxy-mtls-h2|HTTP/1.1"]), r(rps["trellis-mtls|HTTP/2"], rps["haproxy-mtls-h2|HTTP/2"])
            printf "| CPU per request trellis mTLS / trellis plaintext | %s | %s | |\n", r(cpu["trellis-mtls|HTTP/1.1"], cpu["trellis-plain|HTTP/1.1"]), r(cpu["trellis-mtls|HTTP/2"], cpu["trellis-plain|HTTP/2"])
            printf "| CPU per request trellis mTLS / HAProxy mTLS | %s | %s | |\n", r(cpu["trellis-mtls|HTTP/1.1"], cpu["haproxy-mtls|HTTP/1.1"]), r(cpu["trellis-mtls|HTTP/2"], cpu["haproxy-mtls|HTTP/2"])
            printf "| CPU per request trellis mTLS / HAProxy mTLS HTTP/2 hop | %s | %s | |\n", r(cpu["trellis-mtls|HTTP/1.1"], cpu["haproxy-mtls-h2|HTTP/1.1"]), r(cpu["trellis-mtls|HTTP/2"], cpu["haproxy-mtls-h2|HTTP/2"])
            printf "| p99 trellis mTLS / HAProxy mTLS | %s | %s | |\n", r(p99["trellis-mtls|HTTP/1.1"], p99["haproxy-mtls|HTTP/1.1"]), r(p99["trellis-mtls|HTTP/2"], p99["haproxy-mtls|HTTP/2"])
        }' "$SUMMARY"
    if [[ "$NEWCONN" == 1 ]]; then
        echo
        echo "### Handshake cost: a new A→B connection for every request"
        echo
        echo "trellis: DestinationRule \`connectionPool.http.maxRequestsPerConnection: 1\`; HAProxy A: \`http-reuse never\` +"
        echo "\`option http-server-close\`. Load: \`wrk -t1 -c$WRK_CONNS\` HTTP/1.1 keep-alive to A (only A→B is new per request)."
        echo "\"TLS handshakes/req\" is A's \`trellis_outbound_tls_handshakes_total{mode=\"istio_mutual\",result=\"success\"}\` over the round's requests."
        echo
        echo "| target | req/s | p50 ms | p99 ms | CPU µs/req (A + B) | TLS handshakes/req | peak RSS A / B MiB | errors | other CPU % |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        awk -F'\t' '$2 == "new-conn" {
            printf "| %s | %d | %s | %s | %.1f (%.1f + %.1f) | %s | %.1f / %.1f | %d | %s |\n", $1, $3, $4, $5, $10, $14, $15, $13,
                $11 / 1024, $12 / 1024, $6, $9 }' "$SUMMARY"
        echo
        awk -F'\t' '
            { rps[$1 "|" $2] = $3; cpu[$1 "|" $2] = $10 }
            function d(a, b) { return (a > 0 && b > 0 ? sprintf("%.0f", a - b) : "-") }
            function r(a, b) { return (b > 0 ? sprintf("%.2f", a / b) : "-") }
            END {
                printf "| derived | value |\n|---|---:|\n"
                printf "| **CPU µs per new mTLS connection** (trellis mTLS − trellis plaintext, new conn per request; both proxies) | %s |\n", d(cpu["trellis-mtls-nc|new-conn"], cpu["trellis-plain-nc|new-conn"])
                printf "| CPU µs per new plaintext connection (trellis plaintext: new conn − keep-alive, HTTP/1.1) | %s |\n", d(cpu["trellis-plain-nc|new-conn"], cpu["trellis-plain|HTTP/1.1"])
                printf "| CPU µs per new mTLS connection incl. TCP (trellis mTLS: new conn − keep-alive, HTTP/1.1) | %s |\n", d(cpu["trellis-mtls-nc|new-conn"], cpu["trellis-mtls|HTTP/1.1"])
                printf "| CPU µs per new mTLS connection incl. TCP (HAProxy mTLS: new conn − keep-alive, HTTP/1.1) | %s |\n", d(cpu["haproxy-mtls-nc|new-conn"], cpu["haproxy-mtls|HTTP/1.1"])
                printf "| req/s trellis mTLS / HAProxy mTLS, new conn per request | %s |\n", r(rps["trellis-mtls-nc|new-conn"], rps["haproxy-mtls-nc|new-conn"])
                printf "| req/s trellis mTLS / trellis plaintext, new conn per request | %s |\n", r(rps["trellis-mtls-nc|new-conn"], rps["trellis-plain-nc|new-conn"])
            }' "$SUMMARY"
    fi
    echo
    echo "Lifetime peak RSS (VmHWM) at the end, A / B MiB:"
    for t in "${ALL_TARGETS[@]}"; do
        awk -v t="$t" -v a="${HWM_A[$t]}" -v b="${HWM_B[$t]}" 'BEGIN { printf "%s %.1f / %.1f; ", t, a / 1024, b / 1024 }'
    done
    echo
    echo
    echo "<details><summary>every measurement</summary>"
    echo
    echo "| round | target | protocol | req/s | p50 ms | p99 ms | CPU µs/req A + B | TLS handshakes | errors | other CPU % |"
    echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' '{ req = ($7 > 0 ? $7 : 1); printf "| %s | %s | %s | %s | %s | %s | %.1f + %.1f | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $10 / req * 1e6, $11 / req * 1e6, $14, $8, $9 }' "$ROWS"
    echo
    echo "</details>"
} >"$REPORT"
cp "$REPORT" "$OUT"
echo
cat "$REPORT"
echo
log "report written to $OUT"
