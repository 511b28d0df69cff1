"""Test-only slow client: opens N connections to an HTTP server from a
source address of its own and trickles each request's header one byte every
half second for SECONDS, as a slow-headers attack does. Prints JSON:
how many the server closed at once (within 0.5 s), how many it closed
later, and how many were still open at the end.

    python3 slow_client.py URL N SOURCE_ADDRESS SECONDS
"""
import json
import select
import socket
import sys
import time
import urllib.parse

url, n, source, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
u = urllib.parse.urlparse(url)
start = time.monotonic()
socks = []
for _ in range(n):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect((u.hostname, u.port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    s.setblocking(False)
    socks.append(s)
closed_at = {}
while time.monotonic() - start < seconds and len(closed_at) < n:
    readable, _, _ = select.select([s for s in socks if s not in closed_at], [], [], 0.5)
    for s in readable:
        try:
            if not s.recv(4096):
                closed_at[s] = time.monotonic() - start
        except OSError:
            closed_at[s] = time.monotonic() - start
    for s in socks:
        if s not in closed_at:
            try:
                s.send(b"a")
            except OSError:
                closed_at[s] = time.monotonic() - start
at_once = sum(1 for t in closed_at.values() if t < 0.5)
print(json.dumps({"at_once": at_once, "later": len(closed_at) - at_once,
                  "open": n - len(closed_at),
                  "latest": max(closed_at.values(), default=0)}))
