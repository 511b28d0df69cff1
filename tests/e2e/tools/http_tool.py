"""Test-only HTTP tool endpoint: answers a POST with an "order_id" with
"Looked up ORDER_ID" (order O-503: HTTP 503 "overloaded"; orders O-9...:
after 4 s, time enough to kill the worker that asked; orders O-8...: after
7 s, past the tool's 5 s time-out), any other POST to
/TOOL with "TOOL #N done: BODY" after DELAY seconds (default 0; N counts
effects, so no two answers are the same); appends "IDEMPOTENCY_KEY BODY" to the log file and
"AUTHORIZATION X-TENANT" to LOGFILE.headers, so tests can check what
Sluice's http executor sent.

It keeps the Idempotency-Key contract: a request repeating a key gets the
first request's answer (waiting for it if it is still being made), and the
effect happens once; LOGFILE.effects gets one line per effect, its fields
separated by tabs: IDEMPOTENCY_KEY, TOOL, BODY, the answer.

    python3 http_tool.py PORT LOGFILE [DELAY]
"""
import http.server
import json
import sys
import threading
import time

PORT, LOG = int(sys.argv[1]), sys.argv[2]
DELAY = float(sys.argv[3]) if len(sys.argv) > 3 else 0
LOCK = threading.Lock()
ANSWERS = {}  # key -> (threading.Event, [status, body])
EFFECTS = [0]


def effect(key, tool, body):
    """The tool's one effect for a key: the answer."""
    order = json.loads(body).get("order_id")
    time.sleep(DELAY if not order else 4 if order.startswith("O-9")
               else 7 if order.startswith("O-8") else 0)
    with LOCK:
        EFFECTS[0] += 1
        n = EFFECTS[0]
    if order == "O-503":
        status, answer = 503, "overloaded"
    else:
        status, answer = 200, f"Looked up {order}" if order else f"{tool} #{n} done: {body}"
    with open(LOG + ".effects", "a", encoding="utf-8") as f:
        f.write(f"{key}\t{tool}\t{body}\t{answer}\n")
    return status, answer.encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        key = self.headers.get("Idempotency-Key", "-")
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(f"{key} {body.decode()}\n")
        with open(LOG + ".headers", "a", encoding="utf-8") as f:
            f.write(f"{self.headers.get('Authorization', '-')} {self.headers.get('X-Tenant', '-')}\n")
        with LOCK:
            first = key == "-" or key not in ANSWERS
            done, answer = (threading.Event(), []) if first else ANSWERS[key]
            if first and key != "-":
                ANSWERS[key] = (done, answer)
        if first:
            answer.extend(effect(key, self.path.strip("/"), body.decode()))
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
