"""Test-only HTTP tool endpoint: answers POSTs with "Looked up ORDER_ID"
(order O-503: HTTP 503 "overloaded") and
appends "IDEMPOTENCY_KEY BODY" to the log file and "AUTHORIZATION X-TENANT"
to LOGFILE.headers, so tests can check what Sluice's http executor sent.

    python3 http_tool.py PORT LOGFILE
"""
import http.server
import json
import sys

PORT, LOG = int(sys.argv[1]), sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(f"{self.headers.get('Idempotency-Key', '-')} {body.decode()}\n")
        with open(LOG + ".headers", "a", encoding="utf-8") as f:
            f.write(f"{self.headers.get('Authorization', '-')} {self.headers.get('X-Tenant', '-')}\n")
        order = json.loads(body).get("order_id", "?")
        status, out = (503, b"overloaded") if order == "O-503" else (200, f"Looked up {order}".encode())
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
