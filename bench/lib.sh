# shellcheck shell=bash disable=SC2034  # variables are set here for the sourcing script
# Shell helpers shared by the proxy benchmarks (bench/proxy.sh, bench/mtls.sh, bench/instructions.sh);
# sourced, not run.
#
# A script sources this after `set -euo pipefail`, then calls, in order:
#   bench_require_tools TOOL...         exit with an install hint if a tool is missing
#   bench_check_ports FIRST LAST        exit if a loopback port in FIRST..LAST is taken
#   bench_pinning                       sets PIN_PROXY, PIN_LOAD, PIN_UP (taskset prefixes) and PINNED
#   bench_workdir                       makes $WORK and installs the EXIT trap that stops everything
# and then uses start, wait_http, start_trellis_proxy, the config pieces, the measurement helpers
# and the output parsers below. The mTLS benchmarks also call bench_mesh_names, then pki, and use
# tls_flags, service_entry and strict for their trellis pair.

log() { echo "[bench] $*" >&2; }

bench_require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || {
            echo "missing $tool; install with: apt-get install -y nginx haproxy wrk nghttp2-client curl openssl valgrind" >&2
            exit 1
        }
    done
}

bench_check_ports() { # first last
    local port
    for port in $(seq "$1" "$2"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "port $port is already in use on 127.0.0.1; choose other ports with BENCH_PORT_BASE" >&2
            exit 1
        fi
    done
}

# CPU 1 for the proxies, CPU 0 for the load generator and the upstream (BENCH_CPU_* override;
# BENCH_NO_PIN=1 or a single CPU: no pinning). PINNED=1 when pinning is in effect.
bench_pinning() {
    if [[ "${BENCH_NO_PIN:-0}" != 1 && "$(nproc)" -ge 2 ]] && command -v taskset >/dev/null; then
        CPU_PROXY="${BENCH_CPU_PROXY:-1}"
        CPU_LOAD="${BENCH_CPU_LOAD:-0}"
        CPU_UP="${BENCH_CPU_UP:-0}"
        PIN_PROXY=(taskset -c "$CPU_PROXY")
        PIN_LOAD=(taskset -c "$CPU_LOAD")
        PIN_UP=(taskset -c "$CPU_UP")
        PINNED=1
    else
        PIN_PROXY=(); PIN_LOAD=(); PIN_UP=()
        PINNED=0
    fi
}

# The work directory and the EXIT trap: on any exit the load generator, the RSS samplers and
# every server started with `start` are stopped (by pid) and $WORK is removed; on failure the
# last lines of every log are shown first.
PIDS=()
declare -A PID=()
LOAD_PID=""
SAMPLERS=()
bench_workdir() {
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/trellis-bench.XXXXXX")"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}
bench_cleanup() {
    local rc=$? pid f
    if [[ -n "${LOAD_PID:-}" ]]; then kill "$LOAD_PID" 2>/dev/null || true; wait "$LOAD_PID" 2>/dev/null || true; fi
    for pid in "${SAMPLERS[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ $rc -ne 0 ]]; then
        for f in "$WORK"/*.log "$WORK"/*/error.log; do
            [[ -s "$f" ]] || continue
            echo "--- ${f#"$WORK"/} (last lines)" >&2
            tail -n 20 "$f" >&2
        done
    fi
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}

start() { # name cmd...  (runs in background, output to $WORK/NAME.log; pid in PID[name])
    local name="$1"; shift
    "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
    PID[$name]=$!
}

wait_http() { # url [expected-status] [host-header] [pid that must stay alive]
    local url="$1" want="${2:-200}" hosthdr="${3:-}" pid="${4:-}" code
    for _ in $(seq 1 200); do
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            echo "process $pid exited while waiting for $url" >&2
            return 1
        fi
        code="$(curl -s -o /dev/null -w '%{http_code}' ${hosthdr:+-H "Host: $hosthdr"} "$url" || true)"
        [[ "$code" == "$want" ]] && return 0
        sleep 0.05
    done
    echo "timed out waiting for $url (last status: ${code:-none})" >&2
    return 1
}

# The release trellis-proxy: $TRELLIS_PROXY_BIN, or built by cargo (unless BENCH_NO_BUILD=1) into
# $CARGO_TARGET_DIR (default target/). Extra cargo arguments (more packages) may be given.
bench_trellis_proxy() { # root [cargo build args...]
    local root="$1"; shift
    if [[ -n "${TRELLIS_PROXY_BIN:-}" ]]; then
        TRELLIS="$TRELLIS_PROXY_BIN"
    else
        if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
            log "cargo build --release -p trellis-proxy $*"
            (cd "$root" && cargo build --release -p trellis-proxy "$@" --bins >&2)
        fi
        local td="${CARGO_TARGET_DIR:-target}"
        [[ "$td" = /* ]] || td="$root/$td"
        TRELLIS="$td/release/trellis-proxy"
    fi
    [[ -x "$TRELLIS" ]] || { echo "no trellis-proxy binary at $TRELLIS" >&2; exit 1; }
}

# ---------------------------------------------------------------- nginx config pieces
nginx_common() { # prefix
    cat <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 4096; multi_accept on; }
EOF
}
nginx_http_common() { # prefix
    cat <<EOF
    access_log off;
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    http2_max_concurrent_streams 256;
EOF
}

# The global and defaults sections every HAProxy in the benchmarks shares (one thread, HTTP
# keep-alive); the caller appends the rest of `defaults` and its frontends and backends.
haproxy_common() {
    cat <<EOF
global
    nbthread 1
    maxconn 4096
    tune.bufsize 16384

defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    option http-keep-alive
EOF
}

# ---------------------------------------------------------------- trellis-proxy
# Starts $TRELLIS as NAME with one worker thread on four consecutive loopback ports from PORT
# (outbound, inbound, admin, stats), pinned to the proxy CPU, and waits for its /ready; the
# extra flags give it its config and identity.
start_trellis_proxy() { # name port flags...
    local name="$1" port="$2"; shift 2
    start "$name" "${PIN_PROXY[@]}" "$TRELLIS" --threads 1 --log warn \
        --outbound "127.0.0.1:$port" --inbound "127.0.0.1:$((port + 1))" \
        --admin "127.0.0.1:$((port + 2))" --stats "127.0.0.1:$((port + 3))" "$@"
    if ! wait_http "http://127.0.0.1:$((port + 2))/ready" 200 "" "${PID[$name]}"; then
        echo "trellis-proxy $name did not become ready; its log:" >&2
        cat "$WORK/$name.log" >&2
        exit 1
    fi
}

# ---------------------------------------------------------------- measurement helpers
CLK_TCK="$(getconf CLK_TCK)"
SELF_PID="$BASHPID"
cpu_ticks() { # pid -> utime+stime in clock ticks (fields 14, 15 of /proc/PID/stat)
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
user_ticks() { awk '{ sub(/^.*\) /, ""); print $12 }' "/proc/$1/stat"; }
child_ticks() { # this shell's waited-for children (the load generators): cutime+cstime
    awk '{ sub(/^.*\) /, ""); print $14 + $15 }' "/proc/$SELF_PID/stat"
}
daemons_ticks() { # all servers this script started
    local pid n=0
    for pid in "${PIDS[@]}"; do n=$((n + $(cpu_ticks "$pid" 2>/dev/null || echo 0))); done
    echo "$n"
}
# user+nice+system+steal; irq/softirq time is left out: on loopback it is mostly our own traffic
# (the kernel does not charge it to any process).
system_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $9 }' /proc/stat; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# Samples VmRSS of a process every 100 ms into a file until sampler_stop (several may run).
sampler_start() { # pid file
    (
        while kill -0 "$1" 2>/dev/null; do
            rss_kib "$1" 2>/dev/null || true
            sleep 0.1
        done
    ) >"$2" &
    SAMPLERS+=("$!")
}
sampler_stop() {
    local pid
    for pid in "${SAMPLERS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    SAMPLERS=()
}

# CPU used on the machine by processes this script did not start, as % of one CPU, over an interval.
OTHER0=()
other_start() { OTHER0=("$(system_busy_ticks)" "$(daemons_ticks)" "$(child_ticks)" "$(date +%s%N)"); }
other_pct() {
    local sys ours kids now
    sys="$(system_busy_ticks)"; ours="$(daemons_ticks)"; kids="$(child_ticks)"; now="$(date +%s%N)"
    awk -v s="$((sys - OTHER0[0]))" -v o="$((ours - OTHER0[1]))" -v k="$((kids - OTHER0[2]))" \
        -v ns="$((now - OTHER0[3]))" -v t="$CLK_TCK" \
        'BEGIN { x = (s - o - k) / t / (ns / 1e9) * 100; if (x < 0) x = 0; printf "%.0f", x }'
}

# Runs a load generator pinned to the load CPU. In the background + wait, so that a signal to
# this script is handled at once (the EXIT trap then stops it with everything else).
load() { # outfile cmd...
    local out="$1"; shift
    "${PIN_LOAD[@]}" "$@" >"$out" &
    LOAD_PID=$!
    wait "$LOAD_PID"
    LOAD_PID=""
}

to_ms() { # wrk duration ("1.23ms", "456.00us", "1.02s") -> ms
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else printf "%s", v }'
}

# `wrk --latency` output -> "rps p50_ms p99_ms requests errors" (errors: non-2xx/3xx + socket errors).
parse_wrk() { # outfile
    local rps p50 p99 reqs errs
    rps="$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$1")"
    p50="$(to_ms "$(awk '$1 == "50%" { print $2 }' "$1")")"
    p99="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$1")")"
    reqs="$(awk '/requests in/ { print $1 }' "$1")"
    errs="$(awk '/Non-2xx or 3xx responses:/ { n += $NF }
                 /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$1")"
    echo "${rps:-0} ${p50:-nan} ${p99:-nan} ${reqs:-0} $errs"
}

# h2load output and its --log-file -> "rps p50_ms p99_ms requests errors"; removes the log file.
parse_h2load() { # outfile reqlog
    local rps reqs errs p50 p99
    rps="$(awk '/^finished in/ { gsub(/,/, ""); for (i = 1; i <= NF; i++) if ($i == "req/s") printf "%.0f", $(i - 1) }' "$1")"
    # "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout"
    reqs="$(awk '/^requests:/ { print $8 }' "$1")"
    errs="$(awk '/^requests:/ { print $10 + $12 + $14 }' "$1")"
    # --log-file lines: start time (us since epoch) \t status \t request duration (us)
    read -r p50 p99 < <(awk -F'\t' '$2 >= 200 && $2 < 400 { print $3 }' "$2" | sort -n | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "nan nan"; exit }
            i50 = int(NR * 0.50 + 0.999999); i99 = int(NR * 0.99 + 0.999999)
            printf "%.3f %.3f\n", v[i50] / 1000, v[i99] / 1000
        }')
    rm -f "$2"
    echo "${rps:-0} $p50 $p99 ${reqs:-0} ${errs:-0}"
}

# The report's tool line.
tool_versions() {
    echo "$(nginx -v 2>&1 | sed 's/^nginx version: //'), HAProxy $(haproxy -v | awk 'NR == 1 { print $3 }'), $(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }'), h2load $(h2load --version | awk '{ print $2 }')"
}

# ---------------------------------------------------------------- a mesh pair (mtls.sh, instructions.sh)
# Names of the pair: A (client) calls the upstream service through B (server).
bench_mesh_names() {
    HOST="upstream.bench.local"
    NS="bench"
    TRUST_DOMAIN="cluster.local"
    CLIENT_ID="spiffe://$TRUST_DOMAIN/ns/$NS/sa/client"
    SERVER_ID="spiffe://$TRUST_DOMAIN/ns/$NS/sa/server"
}

# A throwaway CA and two leaves as Istio issues them: EC P-256, CA:false, serverAuth+clientAuth,
# the SPIFFE ID as the URI SAN. The trust bundle is the CA certificate.
pki() {
    local d="$WORK/pki" who id
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$d/ca.key" -sha256 -days 2 -subj "/O=trellis-bench/CN=Bench Root CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$d/ca.pem" 2>/dev/null
    for who in client server; do
        if [[ "$who" == client ]]; then id="$CLIENT_ID"; else id="$SERVER_ID"; fi
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$who.key" 2>/dev/null
        openssl req -new -key "$d/$who.key" -subj "/O=trellis-bench" -out "$d/$who.csr" 2>/dev/null
        cat >"$d/$who.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=URI:$id
EOF
        openssl x509 -req -in "$d/$who.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -sha256 \
            -days 2 -extfile "$d/$who.ext" -out "$d/$who.pem" 2>/dev/null
        cat "$d/$who.pem" "$d/$who.key" >"$d/$who-haproxy.pem" # HAProxy's crt: chain + key
    done
    openssl verify -CAfile "$d/ca.pem" "$d/client.pem" "$d/server.pem" >/dev/null
}
tls_flags() { # client|server -> trellis-proxy credential flags
    echo --cert-chain "$WORK/pki/$1.pem" --key "$WORK/pki/$1.key" --trust-bundle "$WORK/pki/ca.pem" \
        --trust-domain "$TRUST_DOMAIN" --namespace "$NS" --service-account "$1"
}

# A's ServiceEntry: upstream.bench.local -> B's inbound listener. With mTLS the endpoint is marked
# as a sidecar with B's service account (Istio's auto mTLS), so A verifies B's SPIFFE ID.
service_entry() { # B-inbound-port mtls(0|1)
    cat <<EOF
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
    ports: {http: $1}
EOF
    if [[ "$2" == 1 ]]; then
        cat <<EOF
    labels: {app: upstream, security.istio.io/tlsMode: istio}
    serviceAccount: server
EOF
    fi
}
strict() {
    cat <<EOF
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: $NS}
spec: {mtls: {mode: STRICT}}
EOF
}
