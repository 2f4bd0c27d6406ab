#!/usr/bin/env bash
# Proxy benchmark: trellis-proxy vs HAProxy vs nginx proxy_pass vs a direct connection, all in
# front of the same nginx upstream, each proxy given ONE worker thread, measured in one run with
# wrk (HTTP/1.1 keep-alive) and h2load (HTTP/2 prior knowledge, cleartext).
# trellis-proxy runs three ways: with its default telemetry (Istio metrics, peer metadata, 1% of
# traces, spans/logs/metrics over OTLP to a running `trellis control` collector), with everything
# on (100% of traces and a JSON access log file too), and with `--telemetry off`; the report gives
# the cost of telemetry as the ratio of their throughputs.
#
#   bash bench/proxy.sh                    # full run (10 s per measurement)
#   BENCH_SECONDS=2 bash bench/proxy.sh    # smoke run
#
# Environment:
#   BENCH_SECONDS     seconds per measurement (default 10)
#   BENCH_ROUNDS      rounds over all targets (default 3)
#   BENCH_PICK        which round to report per target: best (default) or median, by req/s
#   BENCH_WARMUP      seconds of warm-up per target before measuring (default 1; 0 = none)
#   WRK_CONNS         wrk connections (default 50)
#   H2_CONNS          h2load connections (default 10)
#   H2_STREAMS        h2load max concurrent streams per connection (default 10)
#   BENCH_PORT_BASE   first of the loopback ports used (default 28100; uses BASE..BASE+23)
#   BENCH_NO_PIN=1    do not pin processes to CPUs
#   BENCH_CPU_PROXY, BENCH_CPU_LOAD, BENCH_CPU_UP
#                     taskset CPU lists for the proxies, the load generator and the upstream
#                     (defaults 1, 0, 0)
#   BENCH_NO_BUILD=1  skip `cargo build --release -p trellis-proxy -p trellis-control`
#   BENCH_OUT         where to write the Markdown report (default bench/results/proxy-latest.md)
#   TRELLIS_PROXY_BIN use this binary instead of the one cargo builds
#   TRELLIS_BIN       the `trellis` binary for the collector (default: next to trellis-proxy)
#   BENCH_PERF=DIR    also `perf record` trellis-proxy during its measurements into DIR
#                     (perf's own overhead then lowers trellis's numbers; use for profiles only)
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
BASE="${BENCH_PORT_BASE:-28100}"
OUT="${BENCH_OUT:-$ROOT/bench/results/proxy-latest.md}"
HOST="upstream.bench.local"

# Ports (all on 127.0.0.1).
P_UP=$((BASE + 0))          # nginx upstream, HTTP/1.1
P_UP_H2=$((BASE + 1))       # nginx upstream, h2c (for the "direct" HTTP/2 baseline)
P_TR_OUT=$((BASE + 2))      # trellis outbound (h1 and h2c prior knowledge on one port)
P_TR_IN=$((BASE + 3))
P_TR_ADMIN=$((BASE + 4))
P_TR_STATS=$((BASE + 5))
P_HA=$((BASE + 6))          # haproxy, HTTP/1.1 (also accepts h2c preface)
P_HA_H2=$((BASE + 7))       # haproxy, proto h2
P_NG=$((BASE + 8))          # nginx proxy_pass, HTTP/1.1
P_NG_H2=$((BASE + 9))       # nginx proxy_pass, listen http2
P_OFF_OUT=$((BASE + 10))    # trellis --telemetry off: outbound, inbound, admin, stats
P_FULL_OUT=$((BASE + 14))   # trellis with 100% traces and an access log file: same four
P_CTL=$((BASE + 18))        # trellis control: push, console, OTLP gRPC, OTLP HTTP, Jaeger, metrics
P_OTLP=$((BASE + 20))

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_require_tools nginx haproxy wrk h2load awk curl
bench_check_ports "$BASE" $((BASE + 23))
bench_pinning
if [[ "$PINNED" == 1 ]]; then
    # CPU 1: the proxy under test.  CPU 0: load generator and nginx upstream.
    PINNING="taskset: proxy under test on CPU $CPU_PROXY, wrk/h2load on CPU $CPU_LOAD, nginx upstream on CPU $CPU_UP"
else
    PINNING="no CPU pinning"
fi
bench_workdir

# ---------------------------------------------------------------- build
bench_trellis_proxy "$ROOT" -p trellis-control
CONTROL="${TRELLIS_BIN:-$(dirname "$TRELLIS")/trellis}"
[[ -x "$CONTROL" ]] || { echo "no trellis binary at $CONTROL (set TRELLIS_BIN)" >&2; exit 1; }

# ---------------------------------------------------------------- nginx upstream
mkdir -p "$WORK/up" "$WORK/ng" "$WORK/ha" "$WORK/tr/config" "$WORK/res" "$WORK/ctl"
{
    nginx_common "$WORK/up"
    echo "http {"
    nginx_http_common "$WORK/up"
    cat <<EOF
    server {
        listen 127.0.0.1:$P_UP;
        location / { default_type text/plain; return 200 "hello"; }
    }
    server {
        listen 127.0.0.1:$P_UP_H2 http2;
        location / { default_type text/plain; return 200 "hello"; }
    }
}
EOF
} >"$WORK/up/nginx.conf"

# ---------------------------------------------------------------- nginx proxy_pass
{
    nginx_common "$WORK/ng"
    echo "http {"
    nginx_http_common "$WORK/ng"
    cat <<EOF
    upstream backend {
        server 127.0.0.1:$P_UP;
        keepalive 256;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$P_NG;
        listen 127.0.0.1:$P_NG_H2 http2;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_buffering on;
        }
    }
}
EOF
} >"$WORK/ng/nginx.conf"

# ---------------------------------------------------------------- haproxy
{
    haproxy_common
    cat <<EOF
    http-reuse always

frontend fe
    bind 127.0.0.1:$P_HA
    bind 127.0.0.1:$P_HA_H2 proto h2
    default_backend be

backend be
    server up 127.0.0.1:$P_UP
EOF
} >"$WORK/ha/haproxy.cfg"

# ---------------------------------------------------------------- trellis config
cat >"$WORK/tr/config/upstream.yaml" <<EOF
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: upstream
  namespace: default
spec:
  hosts: [$HOST]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: $P_UP}}]
EOF

# ---------------------------------------------------------------- start everything

log "starting nginx upstream on :$P_UP (h1) and :$P_UP_H2 (h2c)"
start up "${PIN_UP[@]}" nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" -e "$WORK/up/error.log"
wait_http "http://127.0.0.1:$P_UP/" 200 "" "${PID[up]}"

log "starting nginx proxy_pass on :$P_NG (h1) and :$P_NG_H2 (h2c)"
start ng "${PIN_PROXY[@]}" nginx -p "$WORK/ng" -c "$WORK/ng/nginx.conf" -e "$WORK/ng/error.log"
wait_http "http://127.0.0.1:$P_NG/" 200 "$HOST" "${PID[ng]}"

log "starting haproxy on :$P_HA (h1/h2c) and :$P_HA_H2 (proto h2)"
start ha "${PIN_PROXY[@]}" haproxy -db -f "$WORK/ha/haproxy.cfg"
wait_http "http://127.0.0.1:$P_HA/" 200 "$HOST" "${PID[ha]}"

log "starting trellis control (collector) on :$P_CTL..$((P_CTL + 5))"
start ctl "${PIN_LOAD[@]}" "$CONTROL" control --data-dir "$WORK/ctl" \
    --push "127.0.0.1:$P_CTL" --console "127.0.0.1:$((P_CTL + 1))" \
    --otlp-grpc "127.0.0.1:$P_OTLP" --otlp-http "127.0.0.1:$((P_CTL + 3))" \
    --jaeger "127.0.0.1:$((P_CTL + 4))" --metrics "127.0.0.1:$((P_CTL + 5))"
wait_http "http://127.0.0.1:$((P_CTL + 5))/metrics" 200 "" "${PID[ctl]}"

start_trellis() { # name first-port extra-flags...
    local name="$1" port="$2"; shift 2
    log "starting trellis-proxy $name ($TRELLIS) on :$port"
    start_trellis_proxy "$name" "$port" --config "$WORK/tr/config" "$@"
    wait_http "http://127.0.0.1:$port/" 200 "$HOST"
}
OTLP_FLAGS=(--otlp-endpoint "http://127.0.0.1:$P_OTLP" --metrics-push-seconds 5)
start_trellis tr "$P_TR_OUT" --access-log off "${OTLP_FLAGS[@]}"
start_trellis tr_off "$P_OFF_OUT" --access-log off --telemetry off
start_trellis tr_full "$P_FULL_OUT" --access-log "$WORK/tr-full-access.log" --trace-sampling 100 --otlp-access-log true "${OTLP_FLAGS[@]}"

# Sanity: every target returns the upstream's body for an HTTP/1.1 and an HTTP/2 request.
for port in $P_UP $P_TR_OUT $P_OFF_OUT $P_FULL_OUT $P_HA $P_NG; do
    body="$(curl -sS -H "Host: $HOST" "http://127.0.0.1:$port/")"
    [[ "$body" == hello ]] || { echo "port $port (h1) answered '$body', not 'hello'" >&2; exit 1; }
done
for port in $P_UP_H2 $P_TR_OUT $P_OFF_OUT $P_FULL_OUT $P_HA_H2 $P_NG_H2; do
    if ! h2load -n 20 -c 1 -H ":authority: $HOST" "http://127.0.0.1:$port/" 2>&1 | grep -q '20 succeeded'; then
        echo "port $port does not answer HTTP/2 prior-knowledge requests:" >&2
        h2load -n 2 -c 1 -H ":authority: $HOST" "http://127.0.0.1:$port/" >&2 || true
        exit 1
    fi
done

# ---------------------------------------------------------------- measurement helpers
TR_PID="${PID[tr]}"

# One line per measurement in $ROWS:
#   round target proto rps p50_ms p99_ms requests errors other_cpu_pct server_cpu_s server_peak_rss_kib server_user_s
# where "server" is the proxy under test (for "direct": the upstream nginx).
ROWS="$WORK/res/rows.tsv"
: >"$ROWS"

measure() { # round target proto port
    local round="$1" target="$2" proto="$3" port="$4"
    local out="$WORK/res/$target-$proto-$round.txt" reqlog="$WORK/res/$target-$proto-$round.log"
    local url="http://127.0.0.1:$port/"
    local wrk=(wrk -t1 -c"$WRK_CONNS" -H "Host: $HOST")
    local h2=(h2load -c"$H2_CONNS" -m"$H2_STREAMS" -H ":authority: $HOST")
    if [[ "$WARMUP" != 0 ]]; then
        if [[ "$proto" == h1 ]]; then load /dev/null "${wrk[@]}" -d"${WARMUP}s" "$url"
        else load /dev/null "${h2[@]}" -D "$WARMUP" "$url"; fi
    fi
    local spid="${SERVER_PID[$target]}" samples="$WORK/res/rss-$target-$proto-$round.txt" c0 u0
    c0="$(cpu_ticks "$spid")" u0="$(user_ticks "$spid")"
    sampler_start "$spid" "$samples"
    other_start
    local perf_pid=""
    if [[ -n "${BENCH_PERF:-}" && "$target" == trellis* ]]; then
        mkdir -p "$BENCH_PERF"
        perf record -F 999 -g --call-graph dwarf,16384 -p "$spid" -o "$BENCH_PERF/$target-$proto-$round.data" \
            -- sleep "$SECS" >"$WORK/perf.log" 2>&1 &
        perf_pid=$!
    fi
    if [[ "$proto" == h1 ]]; then
        load "$out" "${wrk[@]}" -d"${SECS}s" --latency "$url"
    else
        load "$out" "${h2[@]}" -D "$SECS" --log-file="$reqlog" "$url"
    fi
    local c1 u1 other cpu_s user_s peak
    c1="$(cpu_ticks "$spid")" u1="$(user_ticks "$spid")"
    if [[ -n "$perf_pid" ]]; then wait "$perf_pid" || true; fi
    sampler_stop
    other="$(other_pct)"
    cpu_s="$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN { printf "%.3f", (b - a) / t }')"
    user_s="$(awk -v a="$u0" -v b="$u1" -v t="$CLK_TCK" 'BEGIN { printf "%.3f", (b - a) / t }')"
    peak="$(sort -n "$samples" | tail -1)"
    local rps p50 p99 reqs errs label
    if [[ "$proto" == h1 ]]; then
        label=HTTP/1.1
        read -r rps p50 p99 reqs errs < <(parse_wrk "$out")
    else
        label=HTTP/2
        read -r rps p50 p99 reqs errs < <(parse_h2load "$out" "$reqlog")
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$target" "$label" "$rps" "$p50" "$p99" \
        "$reqs" "$errs" "$other" "$cpu_s" "$peak" "$user_s" >>"$ROWS"
    log "round $round $target $label: $rps req/s, p50 $p50 ms, p99 $p99 ms, $errs errors, other load ${other}% CPU"
}

# ---------------------------------------------------------------- run
log "measuring: $ROUNDS round(s), ${SECS}s each; wrk -t1 -c$WRK_CONNS; h2load -c$H2_CONNS -m$H2_STREAMS; $PINNING"
other_start; sleep 1; IDLE_OTHER="$(other_pct)"
if [[ "$IDLE_OTHER" -gt 10 ]]; then
    log "WARNING: other processes use ${IDLE_OTHER}% of a CPU before the run; results will be noisy"
fi
RSS_IDLE="$(rss_kib "$TR_PID")"
read -r -a TARGETS <<<"${BENCH_TARGETS:-direct trellis trellis-off trellis-full haproxy nginx}"
declare -A SERVER_PID=([direct]=${PID[up]} [trellis]=${PID[tr]} [trellis-off]=${PID[tr_off]} [trellis-full]=${PID[tr_full]} [haproxy]=${PID[ha]} [nginx]=${PID[ng]})
declare -A PORT_h1=([direct]=$P_UP [trellis]=$P_TR_OUT [trellis-off]=$P_OFF_OUT [trellis-full]=$P_FULL_OUT [haproxy]=$P_HA [nginx]=$P_NG)
declare -A PORT_h2=([direct]=$P_UP_H2 [trellis]=$P_TR_OUT [trellis-off]=$P_OFF_OUT [trellis-full]=$P_FULL_OUT [haproxy]=$P_HA_H2 [nginx]=$P_NG_H2)
for ((round = 1; round <= ROUNDS; round++)); do
    for proto in h1 h2; do
        # Rotate the order each round so no target always runs first or last.
        for ((i = 0; i < ${#TARGETS[@]}; i++)); do
            t="${TARGETS[$(((i + round - 1) % ${#TARGETS[@]}))]}"
            if [[ "$proto" == h1 ]]; then port="${PORT_h1[$t]}"; else port="${PORT_h2[$t]}"; fi
            measure "$round" "$t" "$proto" "$port"
        done
    done
done
HWM="$(hwm_kib "$TR_PID")"
dropped() { # stats-port -> telemetry items the proxy dropped (all signals)
    curl -s "http://127.0.0.1:$1/stats/prometheus" | awk '/^trellis_telemetry_dropped_total/ { n += $NF } END { print n + 0 }'
}
DROPPED_ON="$(dropped $((P_TR_OUT + 3)))"
DROPPED_FULL="$(dropped $((P_FULL_OUT + 3)))"

# ---------------------------------------------------------------- report
# SUMMARY: target proto rps p50 p99 errors min max other_cpu cpu_s_per_100k peak_rss_kib
# Per target and protocol, the best round (BENCH_PICK=best, default: interference from other
# processes only ever lowers throughput) or the median round (BENCH_PICK=median) by req/s is
# reported, its p50/p99 with it, along with the lowest and highest req/s over the rounds.
SUMMARY="$WORK/res/summary.tsv"
sort -t$'\t' -k2,2 -k3,3 -k4,4n "$ROWS" | awk -F'\t' -v OFS='\t' -v pick="$PICK" '
    { key = $2 OFS $3; n[key]++; row[key, n[key]] = $0; err[key] += $8; if (!(key in order)) order[key] = ++nk; keys[order[key]] = key }
    END {
        for (j = 1; j <= nk; j++) {
            key = keys[j]; m = (pick == "median" ? int((n[key] + 1) / 2) : n[key])
            split(row[key, m], f, "\t"); split(row[key, 1], lo, "\t"); split(row[key, n[key]], hi, "\t")
            print f[2], f[3], f[4], f[5], f[6], err[key], lo[4], hi[4], f[9], f[10] / f[7] * 100000, f[11]
        }
    }' >"$SUMMARY"

mkdir -p "$(dirname "$OUT")"
REPORT="$WORK/res/report.md"
{
    echo "## trellis-proxy benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -sr)."
    echo "Tools: $(tool_versions), trellis-proxy $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '(no commit)')."
    echo "Method: upstream nginx (1 worker) returns a 5-byte body; each proxy runs ONE worker thread and"
    echo "speaks HTTP/1.1 keep-alive to the upstream; \"direct\" is the load generator straight to the upstream."
    echo "$PINNING."
    echo "HTTP/1.1: \`wrk -t1 -c$WRK_CONNS --latency\` (keep-alive); HTTP/2: \`h2load -c$H2_CONNS -m$H2_STREAMS\` (h2c prior knowledge)."
    echo "$ROUNDS round(s) of ${SECS}s per target and protocol (after ${WARMUP}s warm-up), order rotated each round;"
    echo "the row shows the $PICK round by req/s, with the range over rounds. \"other CPU\" is CPU used during that"
    echo "measurement by processes the benchmark did not start (100 = one whole core): high values mean a noisy run."
    echo "\"CPU s/100k\" and \"peak RSS\" are the proxy's (for direct: the upstream nginx's) in that round."
    echo "trellis = default telemetry (Istio metrics, peer metadata, 1% of traces, spans and metrics over OTLP to a"
    echo "\`trellis control\` collector on the load CPU); trellis-full = also 100% of traces, access logs over OTLP and to a JSON file;"
    echo "trellis-off = \`--telemetry off\`. Telemetry items dropped by the proxies during the run (collector or queue"
    echo "could not keep up; traffic never waits): trellis $DROPPED_ON, trellis-full $DROPPED_FULL."
    echo
    echo "| target | protocol | req/s | p50 ms | p99 ms | vs direct | CPU s/100k req | peak RSS MiB | req/s range | errors | other CPU % |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' '
        { rps[$1 "|" $2] = $3; rows[NR] = $0 }
        END {
            for (i = 1; i <= NR; i++) {
                split(rows[i], f, "\t")
                d = rps["direct|" f[2]]
                printf "| %s | %s | %d | %s | %s | %s | %.2f | %.1f | %d–%d | %d | %s |\n", f[1], f[2], f[3], f[4], f[5],
                    (d > 0 ? sprintf("%.2f", f[3] / d) : "-"), f[10], f[11] / 1024, f[7], f[8], f[6], f[9]
            }
        }' "$SUMMARY"
    echo
    echo "| ratio | HTTP/1.1 | HTTP/2 |"
    echo "|---|---:|---:|"
    awk -F'\t' '
        { rps[$1 "|" $2] = $3; p99[$1 "|" $2] = $5; cpu[$1 "|" $2] = $10 }
        function r(a, b) { return (b > 0 ? sprintf("%.2f", a / b) : "-") }
        END {
            printf "| req/s trellis (telemetry on) / trellis-off | %s | %s |\n", r(rps["trellis|HTTP/1.1"], rps["trellis-off|HTTP/1.1"]), r(rps["trellis|HTTP/2"], rps["trellis-off|HTTP/2"])
            printf "| req/s trellis-full / trellis-off | %s | %s |\n", r(rps["trellis-full|HTTP/1.1"], rps["trellis-off|HTTP/1.1"]), r(rps["trellis-full|HTTP/2"], rps["trellis-off|HTTP/2"])
            printf "| CPU per request trellis / trellis-off | %s | %s |\n", r(cpu["trellis|HTTP/1.1"], cpu["trellis-off|HTTP/1.1"]), r(cpu["trellis|HTTP/2"], cpu["trellis-off|HTTP/2"])
            printf "| req/s trellis / HAProxy | %s | %s |\n", r(rps["trellis|HTTP/1.1"], rps["haproxy|HTTP/1.1"]), r(rps["trellis|HTTP/2"], rps["haproxy|HTTP/2"])
            printf "| req/s trellis / nginx | %s | %s |\n", r(rps["trellis|HTTP/1.1"], rps["nginx|HTTP/1.1"]), r(rps["trellis|HTTP/2"], rps["nginx|HTTP/2"])
            printf "| p99 trellis / HAProxy | %s | %s |\n", r(p99["trellis|HTTP/1.1"], p99["haproxy|HTTP/1.1"]), r(p99["trellis|HTTP/2"], p99["haproxy|HTTP/2"])
            printf "| p99 trellis / nginx | %s | %s |\n", r(p99["trellis|HTTP/1.1"], p99["nginx|HTTP/1.1"]), r(p99["trellis|HTTP/2"], p99["nginx|HTTP/2"])
            printf "| CPU per request trellis / HAProxy | %s | %s |\n", r(cpu["trellis|HTTP/1.1"], cpu["haproxy|HTTP/1.1"]), r(cpu["trellis|HTTP/2"], cpu["haproxy|HTTP/2"])
            printf "| CPU per request trellis / nginx | %s | %s |\n", r(cpu["trellis|HTTP/1.1"], cpu["nginx|HTTP/1.1"]), r(cpu["trellis|HTTP/2"], cpu["nginx|HTTP/2"])
        }' "$SUMMARY"
    echo
    echo "CPU per request of each proxy, all rounds pooled (user-space / kernel, from utime/stime):"
    echo
    echo "| µs per request (user + kernel) | HTTP/1.1 | HTTP/2 |"
    echo "|---|---:|---:|"
    awk -F'\t' '
        { cpu[$2 "|" $3] += $10; usr[$2 "|" $3] += $12; req[$2 "|" $3] += $7 }
        function c(k) { return (req[k] > 0 ? sprintf("%.1f (%.1f + %.1f)", cpu[k] / req[k] * 1e6, usr[k] / req[k] * 1e6, (cpu[k] - usr[k]) / req[k] * 1e6) : "-") }
        END {
            n = split("trellis trellis-full trellis-off haproxy nginx direct", t, " ")
            for (i = 1; i <= n; i++)
                printf "| %s | %s | %s |\n", (t[i] == "direct" ? "upstream nginx alone (direct)" : t[i]), c(t[i] "|HTTP/1.1"), c(t[i] "|HTTP/2")
        }' "$ROWS"
    echo
    echo "| trellis-proxy (all rounds) | HTTP/1.1 | HTTP/2 |"
    echo "|---|---:|---:|"
    awk -F'\t' -v idle="$RSS_IDLE" -v hwm="$HWM" '
        $2 == "trellis" { cpu[$3] += $10; req[$3] += $7; if ($11 > rss[$3]) rss[$3] = $11 }
        function per100k(p) { return (req[p] > 0 ? sprintf("%.2f", cpu[p] / req[p] * 100000) : "-") }
        END {
            printf "| peak RSS during load (MiB, VmRSS sampled every 100 ms) | %.1f | %.1f |\n", rss["HTTP/1.1"] / 1024, rss["HTTP/2"] / 1024
            printf "| CPU seconds per 100k requests (utime+stime) | %s | %s |\n", per100k("HTTP/1.1"), per100k("HTTP/2")
            printf "| CPU seconds / requests served | %.2f / %d | %.2f / %d |\n", cpu["HTTP/1.1"], req["HTTP/1.1"], cpu["HTTP/2"], req["HTTP/2"]
            printf "\nRSS idle before load: %.1f MiB; VmHWM (lifetime peak) at the end: %.1f MiB.\n", idle / 1024, hwm / 1024
        }' "$ROWS"
    echo
    echo "<details><summary>every measurement</summary>"
    echo
    echo "| round | target | protocol | req/s | p50 ms | p99 ms | CPU s/100k req | errors | other CPU % |"
    echo "|---:|---|---|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %.2f | %s | %s |\n", $1, $2, $3, $4, $5, $6, $10 / $7 * 100000, $8, $9 }' "$ROWS"
    echo
    echo "</details>"
} >"$REPORT"
cp "$REPORT" "$OUT"
echo
cat "$REPORT"
echo
log "report written to $OUT"
