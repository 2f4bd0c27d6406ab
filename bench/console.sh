#!/usr/bin/env bash
# The console's graph page on a large mesh (issue 6's target: 1,000 nodes and 3,000 edges rendered
# on the server in under 300 ms, and usable in the browser).
#
#   bash bench/console.sh                    # build, serve, measure; writes bench/results/console-latest.md
#   BENCH_REQUESTS=10 bash bench/console.sh  # fewer timed requests
#
# It builds and starts `console/examples/bench_server.rs` (the console's router over an in-memory
# backend holding `graph::sample::mesh(NODES, EDGES, 10)`), times BENCH_REQUESTS sequential GETs of
# the graph page and of its live-refresh fragment with curl (time_total: request to last byte), and
# records the page's size (raw and gzipped). If `chromium` is installed it then loads the page in
# headless Chromium over the DevTools protocol (a small stdlib-only Python client, no packages)
# and reports the navigation timing, a scripted pan + zoom and a live refresh (graph.js's own code
# paths, measured to the second animation frame after them, i.e. painted).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

NODES="${BENCH_NODES:-1000}"
EDGES="${BENCH_EDGES:-3000}"
REQUESTS="${BENCH_REQUESTS:-30}"
PORT="${BENCH_PORT_BASE:-28200}"
OUT="${BENCH_OUT:-$ROOT/bench/results/console-latest.md}"
CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}"
# The graph the page shows: every node and edge, request-rate labels, a find expression (so the
# highlight pass runs too).
PAGE_QUERY="${BENCH_QUERY:-graphType=workload&edges=rate&find=%25httperr%20%3E%201}"

bench_require_tools curl gzip awk python3
bench_check_ports "$PORT" "$PORT"
bench_workdir

if [[ -n "${CONSOLE_BENCH_BIN:-}" ]]; then
    SERVER="$CONSOLE_BENCH_BIN"
else
    if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
        log "cargo build --release -p trellis-console --example bench_server"
        (cd "$ROOT" && cargo build --release -p trellis-console --example bench_server >&2)
    fi
    td="${CARGO_TARGET_DIR:-target}"
    [[ "$td" = /* ]] || td="$ROOT/$td"
    SERVER="$td/release/examples/bench_server"
fi
[[ -x "$SERVER" ]] || { echo "no bench_server binary at $SERVER" >&2; exit 1; }

BASE="http://127.0.0.1:$PORT"
start console "$SERVER" "127.0.0.1:$PORT" "$NODES" "$EDGES"
wait_http "$BASE/static/console.css" 200 "" "${PID[console]}"

# Sequential GETs; prints "p50 p95 max" of time_total in ms and leaves the last body in $2.
time_get() { # url body-file
    local i
    curl -s -o "$2" "$1" # warm-up (not timed)
    for i in $(seq 1 "$REQUESTS"); do
        curl -s -o "$2" -w '%{http_code} %{time_total}\n' "$1"
    done | awk '$1 != 200 { bad++ } { print $2 * 1000 } END { if (bad) { print "non-200 answers: " bad > "/dev/stderr"; exit 1 } }' \
        | sort -n | awk '{ v[NR] = $1 } END {
            i50 = int(NR * 0.50 + 0.999999); i95 = int(NR * 0.95 + 0.999999)
            printf "%.1f %.1f %.1f\n", v[i50], v[i95], v[NR] }'
}
size_kib() { awk -v b="$(wc -c <"$1")" 'BEGIN { printf "%.0f", b / 1024 }'; }
gzip_kib() { awk -v b="$(gzip -c "$1" | wc -c)" 'BEGIN { printf "%.0f", b / 1024 }'; }

log "timing $REQUESTS GETs of the graph page ($NODES nodes, $EDGES edges)"
read -r PAGE_P50 PAGE_P95 PAGE_MAX < <(time_get "$BASE/graph?$PAGE_QUERY" "$WORK/page.html")
read -r FRAG_P50 FRAG_P95 FRAG_MAX < <(time_get "$BASE/graph/fragment?$PAGE_QUERY" "$WORK/fragment.html")
read -r OVER_P50 OVER_P95 OVER_MAX < <(time_get "$BASE/" "$WORK/overview.html")
SHOWN_NODES="$(grep -o '<a class="node ' "$WORK/page.html" | wc -l)"
SHOWN_EDGES="$(grep -o '<a class="edge ' "$WORK/page.html" | wc -l)"
PAGE_KIB="$(size_kib "$WORK/page.html")"; PAGE_GZ="$(gzip_kib "$WORK/page.html")"
FRAG_KIB="$(size_kib "$WORK/fragment.html")"; FRAG_GZ="$(gzip_kib "$WORK/fragment.html")"

BROWSER="not measured: no chromium found (apt-get install -y chromium, or set CHROMIUM=/path)"
if [[ -n "$CHROMIUM" ]]; then
    log "loading the page in headless $("$CHROMIUM" --version 2>/dev/null | head -n 1)"
    mkdir -p "$WORK/profile"
    start chromium "$CHROMIUM" --headless=new --no-sandbox --disable-gpu --no-first-run \
        --disable-extensions --window-size=1400,900 --remote-debugging-port=0 \
        --user-data-dir="$WORK/profile" about:blank
    BROWSER="$(python3 - "$WORK/profile" "$BASE/graph?$PAGE_QUERY" "${PID[chromium]}" <<'PY'
# A minimal DevTools-protocol client over a stdlib WebSocket (text frames only, as CDP uses).
import base64, json, os, socket, struct, sys, time, urllib.parse, urllib.request

profile, url, browser_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])

def devtools_port():
    path = os.path.join(profile, "DevToolsActivePort")
    for _ in range(300):
        try:
            os.kill(browser_pid, 0)
        except OSError:
            sys.exit("chromium exited before opening DevTools")
        if os.path.exists(path):
            with open(path) as f:
                first = f.readline().strip()
                if first:
                    return int(first)
        time.sleep(0.1)
    sys.exit("chromium did not open DevTools within 30 s")

class WebSocket:
    def __init__(self, ws_url):
        u = urllib.parse.urlparse(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=120)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            sys.exit("DevTools refused the WebSocket: " + head.decode(errors="replace"))

    def _recv(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError("DevTools closed the connection")
        return chunk

    def _take(self, n):
        while len(self.buf) < n:
            self.buf += self._recv()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text):
        data, mask = text.encode(), os.urandom(4)
        head = bytearray([0x81])
        n = len(data)
        if n < 126:
            head.append(0x80 | n)
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(bytes(head) + mask + masked)

    def recv(self):
        message = b""
        while True:
            b0, b1 = self._take(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._take(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._take(8))[0]
            mask = self._take(4) if b1 & 0x80 else None
            payload = self._take(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = b0 & 0x0F
            if opcode == 8:
                raise EOFError("DevTools closed the WebSocket")
            if opcode in (9, 10):  # ping / pong: Chromium does not ping; ignore
                continue
            message += payload
            if b0 & 0x80:
                return message.decode()

port = devtools_port()
new = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
target = json.load(urllib.request.urlopen(new, timeout=30))
ws = WebSocket(target["webSocketDebuggerUrl"])
ids = iter(range(1, 1 << 30))
events = []

def call(method, **params):
    n = next(ids)
    ws.send(json.dumps({"id": n, "method": method, "params": params}))
    while True:
        msg = json.loads(ws.recv())
        if msg.get("id") == n:
            if "error" in msg:
                sys.exit(f"{method}: {msg['error']}")
            return msg.get("result", {})
        events.append(msg)

def wait_event(name, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for i, e in enumerate(events):
            if e.get("method") == name:
                return events.pop(i)
        events.append(json.loads(ws.recv()))
    sys.exit(f"no {name} within {timeout} s")

def js(expression):
    r = call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
    if "exceptionDetails" in r:
        sys.exit("page script failed: " + json.dumps(r["exceptionDetails"])[:500])
    return r["result"].get("value")

PAINTED = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
call("Page.enable")
call("Page.navigate", url=url)
wait_event("Page.loadEventFired")
nav = js("""(async () => { await %s;
  const n = performance.getEntriesByType('navigation')[0];
  return { dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd, ttfb: n.responseStart,
           nodes: document.querySelectorAll('svg.graph-svg .node').length,
           edges: document.querySelectorAll('svg.graph-svg .edge').length,
           live: !!window.trellisGraph }; })()""" % PAINTED)
if not nav["live"]:
    sys.exit("graph.js did not start (window.trellisGraph missing)")
panzoom = []
for _ in range(5):
    panzoom.append(js("""(async () => { const t = performance.now();
      trellisGraph.zoomAt(1.5); trellisGraph.panBy(120, 80); await %s;
      return performance.now() - t; })()""" % PAINTED))
refresh = []
for _ in range(3):
    refresh.append(js("""(async () => { const t = performance.now();
      await trellisGraph.refresh(); await %s;
      const ok = document.querySelectorAll('svg.graph-svg .node').length;
      return ok ? performance.now() - t : -1; })()"""  % PAINTED))
if min(refresh) < 0:
    sys.exit("the live refresh left no drawing")
panzoom.sort(); refresh.sort()
print(f"{nav['ttfb']:.0f} {nav['dcl']:.0f} {nav['load']:.0f} {nav['nodes']} {nav['edges']} "
      f"{panzoom[len(panzoom)//2]:.1f} {panzoom[-1]:.1f} {refresh[len(refresh)//2]:.0f} {refresh[-1]:.0f}")
PY
)" || { echo "the browser measurement failed (see above)" >&2; exit 1; }
    # Stop Chromium now and let its helper processes finish writing the profile, so the exit
    # trap can remove the work directory.
    kill "${PID[chromium]}" 2>/dev/null || true
    wait "${PID[chromium]}" 2>/dev/null || true
    for _ in 1 2 3 4 5; do rm -rf "$WORK/profile" 2>/dev/null && break; sleep 0.5; done
    read -r B_TTFB B_DCL B_LOAD B_NODES B_EDGES B_PZ50 B_PZMAX B_RF50 B_RFMAX <<<"$BROWSER"
    CHROMIUM_VERSION="$("$CHROMIUM" --version 2>/dev/null | head -n 1)"
fi

{
    echo "# Console graph page benchmark"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -sr); mesh: \`graph::sample::mesh($NODES, $EDGES, 10)\`"
    echo "in the in-memory backend; page \`/graph?$PAGE_QUERY\` (drawn: $SHOWN_NODES nodes, $SHOWN_EDGES edges)."
    echo
    echo "## Server (curl, $REQUESTS sequential requests after one warm-up, request to last byte)"
    echo
    echo "| what | p50 ms | p95 ms | max ms | size KiB | gzipped KiB |"
    echo "|---|---|---|---|---|---|"
    echo "| graph page | $PAGE_P50 | $PAGE_P95 | $PAGE_MAX | $PAGE_KIB | $PAGE_GZ |"
    echo "| live fragment (\`/graph/fragment\`) | $FRAG_P50 | $FRAG_P95 | $FRAG_MAX | $FRAG_KIB | $FRAG_GZ |"
    echo "| overview | $OVER_P50 | $OVER_P95 | $OVER_MAX | | |"
    echo
    echo "Target: the graph page under 300 ms on the server: $(awk -v p="$PAGE_P95" 'BEGIN { print (p < 300 ? "met" : "NOT met") }') at p95."
    echo
    echo "## Browser"
    echo
    if [[ -n "$CHROMIUM" ]]; then
        echo "$CHROMIUM_VERSION, headless, 1400x900, driven over the DevTools protocol."
        echo
        echo "| measurement | ms |"
        echo "|---|---|"
        echo "| first byte (navigation \`responseStart\`) | $B_TTFB |"
        echo "| DOMContentLoaded | $B_DCL |"
        echo "| load | $B_LOAD |"
        echo "| pan + zoom to painted (p50 / max of 5) | $B_PZ50 / $B_PZMAX |"
        echo "| live refresh: fetch, swap, painted (p50 / max of 3) | $B_RF50 / $B_RFMAX |"
        echo
        echo "The browser drew $B_NODES nodes and $B_EDGES edges."
    else
        echo "$BROWSER."
    fi
} | tee "$OUT"
log "wrote $OUT"
