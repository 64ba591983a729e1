#!/usr/bin/env python3
"""bench/ready.py PORT LOG CMD... - starts CMD (output to LOG) and polls
http://127.0.0.1:PORT/readyz every half millisecond from one process; prints
"PID MS": the child's pid (left running) and start -> first 200 in ms, or
"PID -1" if it exits or is not ready within 10 s; then stays to reap the
child when it is killed. A curl per poll costs ~10 ms of its own, as much as
what is measured."""
import socket
import subprocess
import sys
import time

port, log, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
t0 = time.monotonic()
child = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
while time.monotonic() < t0 + 10 and child.poll() is None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            if s.recv(12) == b"HTTP/1.1 200":
                print(child.pid, round((time.monotonic() - t0) * 1000), flush=True)
                sys.exit(child.wait() and 0)
    except OSError:
        pass
    time.sleep(0.0005)
print(child.pid, -1)
sys.exit(1)
