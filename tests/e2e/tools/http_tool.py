"""Test-only HTTP tool endpoint: answers POSTs with "Looked up ORDER_ID"
(order O-503: HTTP 503 "overloaded"; orders O-9...: after 4 s, time enough
to kill the worker that asked) and appends "IDEMPOTENCY_KEY BODY" to the
log file and "AUTHORIZATION X-TENANT" to LOGFILE.headers, so tests can
check what Sluice's http executor sent.

It keeps the Idempotency-Key contract: a request repeating a key gets the
first request's answer (waiting for it if it is still being made), and the
effect happens once; LOGFILE.effects gets one "IDEMPOTENCY_KEY" line per
effect.

    python3 http_tool.py PORT LOGFILE
"""
import http.server
import json
import sys
import threading
import time

PORT, LOG = int(sys.argv[1]), sys.argv[2]
LOCK = threading.Lock()
ANSWERS = {}  # key -> (threading.Event, [status, body])


def effect(key, order):
    """The tool's one effect for a key: the answer."""
    if order.startswith("O-9"):
        time.sleep(4)
    with open(LOG + ".effects", "a", encoding="utf-8") as f:
        f.write(f"{key}\n")
    return (503, b"overloaded") if order == "O-503" else (200, f"Looked up {order}".encode())


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        key = self.headers.get("Idempotency-Key", "-")
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(f"{key} {body.decode()}\n")
        with open(LOG + ".headers", "a", encoding="utf-8") as f:
            f.write(f"{self.headers.get('Authorization', '-')} {self.headers.get('X-Tenant', '-')}\n")
        order = json.loads(body).get("order_id", "?")
        with LOCK:
            first = key == "-" or key not in ANSWERS
            done, answer = (threading.Event(), []) if first else ANSWERS[key]
            if first and key != "-":
                ANSWERS[key] = (done, answer)
        if first:
            answer.extend(effect(key, order))
            done.set()
        else:
            done.wait()
        status, out = answer
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
