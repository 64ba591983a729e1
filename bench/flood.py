#!/usr/bin/env python3
"""bench/flood.py - what one hostile client costs the gateway (security review
F1 and F5), measured on a running release build on loopback. On demand, not
in CI.

  cargo build --release && python3 bench/flood.py

1. CPU: many-field bodies of 64 KiB at every form-parsing path (Funpoint
   notify and return, Sinopac notify, the legacy alias), sent 32 at a time.
   Prints the gateway's own CPU per request (utime+stime of its process from
   /proc) and /healthz latency (p50/p99) measured alongside. Goal: <= 5 ms of
   CPU per request, /healthz p99 < 50 ms.
2. Disk: one client posting junk unroutable Oen webhooks as fast as it can
   for FLOOD_SECONDS, then refused (rejected) Funpoint ones; prints the
   answers, the rows kept and the database growth, and from that the most one
   client can make the store keep per hour.

Everything runs in a temp dir on 127.0.0.1 and is stopped at the end.
"""

import http.client
import itertools
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "payrelay")
REQUESTS = int(os.environ.get("REQUESTS", "3200"))
CONCURRENCY = 32
FLOOD_SECONDS = float(os.environ.get("FLOOD_SECONDS", "10"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(port, path, body, content_type="application/x-www-form-urlencoded"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", path, body, {"Content-Type": content_type})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def many_fields(prefix, size=65000):
    alphabet = string.ascii_letters + string.digits
    keys = ("".join(t) for n in (1, 2, 3) for t in itertools.product(alphabet, repeat=n))
    parts, total = [prefix], len(prefix)
    for k in keys:
        if total + len(k) + 1 > size:
            break
        parts.append(k)
        total += len(k) + 1
    return "&".join(parts)


# /healthz is probed from a process of its own: a thread beside the 32
# senders would measure Python's GIL, not the gateway.
PROBE = """
import http.client, json, sys, threading, time
port = int(sys.argv[1]); stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
lat = []
while not stop.is_set():
    t = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/healthz"); c.getresponse().read(); c.close()
    lat.append((time.perf_counter() - t) * 1000)
    time.sleep(0.01)
print(json.dumps(lat))
"""


def cpu_round(port, pid, path, body):

    statuses = {}
    lock = threading.Lock()
    todo = iter(range(REQUESTS))

    def worker():
        for _ in todo:
            status, _ = post(port, path, body)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1

    prober = subprocess.Popen([sys.executable, "-c", PROBE, str(port)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    before = cpu_seconds(pid)
    t0 = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    took = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - before
    out, _ = prober.communicate("")
    latencies = sorted(json.loads(out))
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"  {path:45s} {len(body):6d} B  {REQUESTS / took:7.0f} req/s  cpu {cpu / REQUESTS * 1000:6.3f} ms/req"
          f"  /healthz p50 {statistics.median(latencies):5.1f} ms p99 {p99:5.1f} ms  answers {statuses}")


def db_bytes(data):
    return sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data))


def flood(port, data, path, make_body, label):
    sent = {}
    t_end = time.perf_counter() + FLOOD_SECONDS
    i = 0
    before = db_bytes(data)
    while time.perf_counter() < t_end:
        status, _ = post(port, path, make_body(i), "application/json")
        sent[status] = sent.get(status, 0) + 1
        i += 1
    time.sleep(0.5)
    grown = db_bytes(data) - before
    kept = sum(n for status, n in sent.items() if status != 429)
    print(f"  {label}: {i} requests in {FLOOD_SECONDS:.0f} s, answers {sent}, store grew {grown / 1024:.0f} KiB")
    # The limiter's burst (refused_per_minute) and then one a second: an hour
    # is at most 60 + 3600 kept rows, each costing what these cost.
    per_row = grown / max(kept, 1)
    print(f"    {kept} kept, {per_row / 1024:.1f} KiB of file each: at most {3660 * per_row / 2**20:.0f} MiB an hour")
    return grown


def main():
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    tmp = tempfile.mkdtemp(prefix="payrelay-flood-")
    data = os.path.join(tmp, "data")
    port = free_port()
    config = os.path.join(tmp, "routes.toml")
    with open(config, "w") as f:
        f.write(f"""
[server]
listen = "127.0.0.1:{port}"
[storage]
url = "sqlite://{data}/payrelay.db"
[[tenants]]
id = "shop"
base_url = "http://127.0.0.1:1"
allow_http = true
order_suffix = "02"
[tenants.funpoint]
hash_key = "5294y06JbISpM5x9"
hash_iv = "v77hoKGq4kWxNNIS"
[tenants.sinopac]
shop_no = "NA0249_001"
[tenants.oen]
merchant_id = "shop-oen"
""")
    gw = subprocess.Popen([BIN, "serve", "--config", config], stderr=subprocess.DEVNULL,
                          env={**os.environ, "RUST_LOG": "error"})
    try:
        for _ in range(100):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/healthz")
                c.getresponse().read()
                break
            except OSError:
                time.sleep(0.1)
        print(f"machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}")
        print(f"1. many-field 64 KiB bodies, {REQUESTS} each, {CONCURRENCY} at a time (goal: <= 5 ms cpu, p99 < 50 ms)")
        body = many_fields("MerchantTradeNo=CPU000102")
        for path in ["/funpoint/notify", "/funpoint/return", "/payment_background_funpoint_receive.php",
                     "/sinopac/notify"]:
            cpu_round(port, gw.pid, path, body)
        small = many_fields("MerchantTradeNo=CPU000102", 8000)
        cpu_round(port, gw.pid, "/funpoint/notify", small)
        print(f"2. one client flooding refused callbacks for {FLOOD_SECONDS:.0f} s each (default caps and rate limit)")
        pad = "z" * 30000
        g1 = flood(port, data, "/oen/notify",
                   lambda i: json.dumps({"id": f"junk{i}", "merchantId": f"nobody{i}", "pad": pad}), "unroutable Oen, 30 KB")
        g2 = flood(port, data, "/funpoint/notify",
                   lambda i: f"MerchantTradeNo=F{i}02&pad={'y' * 7000}&CheckMacValue=00", "rejected Funpoint, 7 KB")
        db = sqlite3.connect(os.path.join(data, "payrelay.db"))
        rows = db.execute("SELECT status, COUNT(*), SUM(length(body)) FROM callbacks GROUP BY status").fetchall()
        print("  rows kept:", ", ".join(f"{s} {n} ({b / 1024:.0f} KiB of bodies)" for s, n, b in rows))
        del g1, g2
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
