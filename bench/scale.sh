#!/usr/bin/env bash
# bench/scale.sh - issue 14's figures that are not req/s: routing cost and
# start-up with 5 and 10,000 tenants, a 100,000-callback backlog drained to a
# fast tenant (rate, RSS with it pending), and one SQLite commit beside
# notify-unique's 1-connection p50. On demand, not in CI.
#
#   bench/scale.sh                      # BACKLOG=100000 DURATION=10s
#   BACKLOG=20000 DURATION=5s bench/scale.sh
#   PAYRELAY_BIN=/tmp/payrelay-before bench/scale.sh   # an earlier build, to compare
#   PARTS=backlog bench/scale.sh                       # only some of: tenants commit backlog
#
# Uses ../shared/bench (up.sh starts the fast nginx tenants on 18101-18105
# and installs wrk); loopback only; everything in /tmp/bench-scale.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
[ -x "$SHARED/up.sh" ] || { echo "bench/scale.sh: no baselines at $SHARED (set SHARED_BENCH)" >&2; exit 2; }
BACKLOG="${BACKLOG:-100000}"
PARTS="${PARTS:-tenants commit backlog}"   # which of the three parts to run
part() { [[ " $PARTS " == *" $1 "* ]]; }
DURATION="${DURATION:-10s}"
W=/tmp/bench-scale
BIN="${PAYRELAY_BIN:-$ROOT/target/release/payrelay}"   # PAYRELAY_BIN: a binary built earlier
PORT=18092

cd "$ROOT"
[ -n "${PAYRELAY_BIN:-}" ] || cargo build --release --locked
"$SHARED/up.sh" >/dev/null
rm -rf "$W" && mkdir -p "$W"
PID=""
# payrelay is ready.py's child, not ours: wait for it by polling.
stop() {
    [ -z "$PID" ] && return
    kill "$PID" 2>/dev/null || true
    for _ in $(seq 1 1000); do kill -0 "$PID" 2>/dev/null || break; sleep 0.01; done
    PID=""
}
cleanup() { stop; "$SHARED/down.sh" >/dev/null 2>&1 || true; }
trap cleanup EXIT

KEY=5294y06JbISpM5x9 IV=v77hoKGq4kWxNNIS
rss() { awk '/VmRSS/ {printf "%.1f MB", $2 / 1024}' "/proc/$PID/status"; }
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$PID/stat"; }

# Starts payrelay on config $1 (PID); START_MS: start → /readyz in ms.
# Polled by bench/ready.py from one process: a curl per poll would add ~10 ms.
start() {
    # Another server still on the port would answer for this one.
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        echo "bench/scale.sh: something already listens on 127.0.0.1:$PORT; stop it first" >&2; exit 1
    fi
    read -r PID START_MS < <(RUST_LOG=warn python3 "$ROOT/bench/ready.py" "$PORT" "$W/payrelay.log" \
        "$BIN" serve --config "$1" --listen "127.0.0.1:$PORT")
    [ "$START_MS" -ge 0 ] || { echo "bench/scale.sh: payrelay did not get ready:" >&2; cat "$W/payrelay.log" >&2; exit 1; }
}

# A routes table of $1 tenants (4-digit order suffixes), every one at the
# fast tenant on 18101 with the ECPay legacy test keys.
table() {
    local n="$1" out="$2"
    python3 - "$n" "$out" "$W" <<'PY'
import sys
n, out, w = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lines = ['[storage]', f'url = "sqlite://{w}/tenants-{n}.db"', '[delivery]', 'retry = ["1s"]',
         '[providers.funpoint]', 'order_suffix_len = 4', '']
for i in range(n):
    lines += ['[[tenants]]', f'id = "t{i:04d}"', 'base_url = "http://127.0.0.1:18101"', 'allow_http = true',
              f'domain_codes = ["t{i:04d}"]', f'order_suffix = "{i:04d}"', '[tenants.funpoint]',
              'hash_key = "5294y06JbISpM5x9"', 'hash_iv = "v77hoKGq4kWxNNIS"', '']
open(out, "w").write("\n".join(lines))
PY
}

# wrk on /funpoint/notify with a fixed body for $CONNS connections; prints
# "req/s p50 cpu-µs/req".
hit() {
    local body="$1" conns="$2" before after line req
    before=$(ticks)
    line=$(WRK_BODY="$body" WRK_EXPECT='1|OK' WRK_UNIQUE="${UNIQUE:-0}" timeout 60 wrk -t1 -c"$conns" -d"$DURATION" \
        --timeout 10s -s "$SHARED/lua/post.lua" "http://127.0.0.1:$PORT/funpoint/notify" | grep '^RESULT')
    after=$(ticks)
    req=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$line")
    awk -v l="$line" -v a="$after" -v b="$before" -v n="$req" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        split(l, f, " "); for (i in f) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
        printf "%8.0f req/s  p50 %6.3f ms  p99 %6.3f ms  cpu %6.1f µs/req  errors %d\n",
            v["rps"], v["p50_ms"], v["p99_ms"], (a - b) * 1e6 / hz / n, v["sock_errors"] + v["bad_body"] }'
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ)"
echo
part tenants && echo "== routing cost and start-up by table size (signed notify, dedup hit, 128 connections)"
part tenants && for n in 5 10000; do
    table "$n" "$W/tenants-$n.toml"
    target=$(( n / 2 ))
    suffix=$(printf '%04d' "$target")
    fields=(MerchantID=2000132 "MerchantTradeNo=FP2411221530$suffix" RtnCode=1 RtnMsg=paid TradeNo=2411221530451234
            TradeAmt=500 "PaymentDate=2024/11/22 15:31:02" PaymentType=Credit_CreditCard PaymentTypeChargeFee=12
            "TradeDate=2024/11/22 15:30:45" SimulatePaid=0)
    mac=$("$BIN" checkmac --hash-key "$KEY" --hash-iv "$IV" "${fields[@]}")
    body=$(python3 -c 'import sys, urllib.parse as u; print(u.urlencode([tuple(a.split("=", 1)) for a in sys.argv[1:]]))' \
        "${fields[@]}" "CheckMacValue=$mac")
    start "$W/tenants-$n.toml"
    printf '%6d tenants: start → /readyz %4d ms, idle RSS %s\n' "$n" "$START_MS" "$(rss)"
    hit "$body" 16 >/dev/null   # warm-up
    printf '%6d tenants: %s\n' "$n" "$(hit "$body" 128)"
    stop
done

echo
part commit && echo "== one SQLite commit (WAL, synchronous=FULL, one row) beside notify-unique at 1 connection"
part commit && python3 - "$W" <<'PY'
import sqlite3, statistics, sys, time
db = sqlite3.connect(f"{sys.argv[1]}/commit-probe.db", isolation_level=None)
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
lat = []
for i in range(500):
    t = time.perf_counter()
    db.execute("BEGIN"); db.execute("INSERT INTO t (body) VALUES (?)", (b"x" * 400,)); db.execute("COMMIT")
    lat.append((time.perf_counter() - t) * 1000)
lat.sort()
print("one SQLite commit: p50 %.3f ms, p99 %.3f ms  (goal for notify-unique's 1-connection p50: ≤ p50 + 0.2 ms = %.3f ms)"
      % (statistics.median(lat), lat[int(len(lat) * 0.99)], statistics.median(lat) + 0.2))
PY
python3 - "$SHARED/payrelay-bench.toml" "$W/bench.toml" "$W" <<'PY'
import sys
text = open(sys.argv[1]).read().replace("/tmp/bench-run/", sys.argv[3] + "/")
head, ro = text.split('id = "ro"', 1)
ro = ro.replace("[tenants.funpoint]", '[tenants.funpoint]\nverify = "none"', 1)
open(sys.argv[2], "w").write(head + 'id = "ro"' + ro)
PY
if part commit; then
    start "$W/bench.toml"
    printf 'notify-unique, 1 connection: %s\n' "$(UNIQUE=1 hit "" 1)"
    stop
fi
part backlog || exit 0

echo
echo "== a backlog of $BACKLOG pending callbacks drained to a fast tenant"
# Tenant "ro" first points at a closed port, every first attempt fails and
# waits an hour; then the store is made due and the tenant fast again.
sed -e 's|http://127.0.0.1:18103"|http://127.0.0.1:1"|' "$W/bench.toml" \
    | python3 -c 'import sys; t = sys.stdin.read(); print(t.replace("[storage]", "[delivery]\nretry = [\"1h\"]\n\n[storage]", 1))' \
    > "$W/backlog.toml"
rm -f "$W/payrelay.db"*
start "$W/backlog.toml"
count() { python3 -c "import sqlite3; print(sqlite3.connect('$W/payrelay.db').execute(\"SELECT COUNT(*) FROM callbacks WHERE status = '$1'\").fetchone()[0])"; }
while [ "$(count pending)" -lt "$BACKLOG" ]; do
    WRK_UNIQUE=1 WRK_BODY="" timeout 60 wrk -t1 -c64 -d5s -s "$SHARED/lua/post.lua" \
        "http://127.0.0.1:$PORT/payment_background_funpoint_receive.php" >/dev/null
done
stop
python3 -c "import sqlite3; d = sqlite3.connect('$W/payrelay.db'); d.execute(\"UPDATE callbacks SET next_attempt_at = 0 WHERE status = 'pending'\"); d.commit()"
pending=$(count pending)
start "$W/bench.toml"
printf 'start → /readyz with %d pending: %d ms, RSS %s\n' "$pending" "$START_MS" "$(rss)"
t0=$(date +%s%N) peak=0
while :; do
    left=$(count pending)
    r=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$PID/status"); [ "$r" -gt "$peak" ] && peak=$r
    [ "$left" -eq 0 ] && break
    [ $(( ($(date +%s%N) - t0) / 1000000000 )) -lt 600 ] || { echo "not drained after 10 minutes ($left left)"; break; }
    sleep 0.2
done
secs=$(awk -v ns=$(( $(date +%s%N) - t0 )) 'BEGIN { printf "%.2f", ns / 1e9 }')
printf 'drained %d callbacks in %s s: %.0f/s (goal ≥ 10,000/s); peak RSS while draining %d MB (goal ≤ 150 MB); delivered %d, dead %d\n' \
    "$pending" "$secs" "$(awk -v n="$pending" -v s="$secs" 'BEGIN { print n / s }')" "$peak" "$(count delivered)" "$(count dead)"
