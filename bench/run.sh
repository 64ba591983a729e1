#!/usr/bin/env bash
# bench/run.sh - payrelay next to the baselines of ../shared/bench, in one run:
# (then bench/scale.sh's drain, RSS, start-up and routing figures, and the
# goal ratios of issue 14 as the last line)
# notify (fixed signed body: verify + dedup), notify-unique (every request a
# new durable insert and a delivery), checkout; 1, 16 and 128 connections;
# payrelay, the PHP original and a pure nginx hop, rounds interleaved.
#
#   bench/run.sh                     # defaults: ROUNDS=2 DURATION=10s
#   ROUNDS=1 DURATION=5s bench/run.sh
#
# Needs root for the first up.sh (it apt-get installs nginx, php-fpm, wrk).
# Loopback only; everything lives in /tmp/bench-run; stops what it started.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
[ -x "$SHARED/up.sh" ] || { echo "bench/run.sh: no baselines at $SHARED (set SHARED_BENCH)" >&2; exit 2; }

cd "$ROOT"
cargo build --release --locked
"$SHARED/up.sh"

mkdir -p /tmp/bench-run/log
rm -f /tmp/bench-run/payrelay.db /tmp/bench-run/payrelay.db-wal /tmp/bench-run/payrelay.db-shm
# The shared config, as today's rules need it: tenant "ro" (notify-unique's
# unsigned notifications) has no keys, so it says verify = "none" (a keyless
# tenant otherwise refuses every notification, SPEC §7).
CFG=/tmp/bench-run/payrelay-bench.toml
python3 - "$SHARED/payrelay-bench.toml" "$CFG" <<'PY'
import sys
text = open(sys.argv[1]).read()
head, ro = text.split('id = "ro"', 1)
ro = ro.replace("[tenants.funpoint]", '[tenants.funpoint]\nverify = "none"', 1)
open(sys.argv[2], "w").write(head + 'id = "ro"' + ro)
PY
STARTED=$(date +%s%N)
# The access log is off, as on every gateway under test (nginx's
# `access_log off`, ../shared/bench/nginx): the per-request line is
# tower_http's; everything else payrelay logs at info stays on.
RUST_LOG="${RUST_LOG:-info,tower_http=warn}" ./target/release/payrelay serve --config "$CFG" \
    > /tmp/bench-run/log/payrelay.log 2>&1 &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; "$SHARED/down.sh" >/dev/null 2>&1 || true; }
trap cleanup EXIT
for _ in $(seq 1 1000); do
    curl -fsS http://127.0.0.1:18082/readyz >/dev/null 2>&1 && break
    sleep 0.01
done
echo "start → /readyz: $(( ($(date +%s%N) - STARTED) / 1000000 )) ms (5 tenants; process start included)"
echo "idle RSS: $(awk '/VmRSS/ {print $2 / 1024 " MB"}' /proc/$PID/status)"

# What one fsync costs on this disk, for the 1-connection latency goal.
python3 - <<'PY'
import os, time, statistics
path = "/tmp/bench-run/fsync-probe"
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
lat = []
for _ in range(300):
    t = time.perf_counter(); os.write(fd, b"x" * 512); os.fsync(fd); lat.append((time.perf_counter() - t) * 1000)
os.close(fd); os.unlink(path)
lat.sort()
print("fsync of a 512-byte append: p50 %.2f ms, p99 %.2f ms" % (statistics.median(lat), lat[int(len(lat) * 0.99)]))
PY

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ)"
# The CPU each gateway's own processes spend per request (load.sh's
# cpu µs/req): payrelay's process, nginx + php-fpm, the proxy nginx.
export CPU_PIDS_PAYRELAY="echo $PID"
export CPU_PIDS_PHP="cat /tmp/bench-run/nginx-php.pid /tmp/bench-run/php-fpm.pid"
export CPU_PIDS_NGINX_PROXY="cat /tmp/bench-run/nginx-proxy.pid"
RESULTS=/tmp/bench-run/results.txt
SCENARIOS="${SCENARIOS:-notify notify-unique checkout}" ROUNDS="${ROUNDS:-2}" RESULTS="$RESULTS" \
    "$SHARED/compare.sh" payrelay=http://127.0.0.1:18082 php=http://127.0.0.1:18080 nginx-proxy=http://127.0.0.1:18081
echo "RSS after the load: $(awk '/VmRSS/ {print $2 / 1024 " MB"}' /proc/$PID/status)"

# What payrelay stored and delivered: once the queue drains (bounded wait),
# every accepted notification must be delivered, none pending or dead.
python3 - <<'PY'
import sqlite3, time
db = sqlite3.connect("/tmp/bench-run/payrelay.db")
for _ in range(120):
    pending = db.execute("SELECT COUNT(*) FROM callbacks WHERE status = 'pending'").fetchone()[0]
    if pending == 0:
        break
    time.sleep(0.5)
rows = db.execute("SELECT status, COUNT(*) FROM callbacks GROUP BY status").fetchall()
print("\npayrelay store after the run:", ", ".join("%s %d" % r for r in rows) or "empty")
PY

# The figures that are not req/s (drain, RSS with a backlog, start-up with
# 10,000 tenants, routing cost, one SQLite commit): bench/scale.sh, on the
# same build, with this payrelay stopped first.
kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true
echo
PAYRELAY_BIN="$ROOT/target/release/payrelay" "$ROOT/bench/scale.sh"

# The goal ratios of issue 14 at 128 connections (best round of each).
python3 - "$RESULTS" <<'PY'
import sys
best = {}
for line in open(sys.argv[1]):
    kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
    if "rps" not in kv or kv.get("conns") != "128":
        continue
    label = kv["label"].rsplit("#", 1)[0]
    key = (label, kv["scenario"])
    rps, cpu = float(kv["rps"]), kv.get("cpu_us_per_req", "-")
    cpu = float(cpu) if cpu not in ("-", "") else None
    if key not in best or rps > best[key][0]:
        best[key] = (rps, cpu)
goals = {"notify": (1.0, 1.0), "checkout": (1.0, 1.5), "notify-unique": (0.7, 2.0)}
out = []
for sc, (rps_goal, cpu_goal) in goals.items():
    p, n, h = best.get(("payrelay", sc)), best.get(("nginx-proxy", sc)), best.get(("php", sc))
    if not (p and n and h):
        continue
    cpu = "%.2f× (goal ≤ %.1f×)" % (p[1] / n[1], cpu_goal) if p[1] and n[1] else "-"
    out.append("%s: req/s %.2f× nginx (goal ≥ %.1f×), cpu %s, %.1f× PHP req/s (goal ≥ 5×)"
               % (sc, p[0] / n[0], rps_goal, cpu, p[0] / h[0]))
print("\ngoals at 128 connections: " + "; ".join(out))
PY
