#!/usr/bin/env bash
# bench/run.sh - payrelay next to the baselines of ../shared/bench, in one run:
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
RUST_LOG="${RUST_LOG:-info}" ./target/release/payrelay serve --config "$SHARED/payrelay-bench.toml" \
    > /tmp/bench-run/log/payrelay.log 2>&1 &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; "$SHARED/down.sh" >/dev/null 2>&1 || true; }
trap cleanup EXIT
for _ in $(seq 1 100); do
    curl -fsS http://127.0.0.1:18082/healthz >/dev/null 2>&1 && break
    sleep 0.1
done

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
SCENARIOS="${SCENARIOS:-notify notify-unique checkout}" ROUNDS="${ROUNDS:-2}" \
    "$SHARED/compare.sh" payrelay=http://127.0.0.1:18082 php=http://127.0.0.1:18080 nginx-proxy=http://127.0.0.1:18081

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
