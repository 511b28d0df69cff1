"""Test-only webhook receiver: checks each POST as the Standard Webhooks
specification says a receiver must (webhook-id, webhook-timestamp within
five minutes, webhook-signature "v1,BASE64" of HMAC-SHA256 over
"ID.TIMESTAMP.BODY" under the secret, which is "whsec_" and base64), and
appends one JSON line per request to LOGFILE: {"id", "type", "verified",
"status", "data"}. A request that does not verify is answered 401. The
first FAIL requests (default 0) are answered 503 after being logged, to see
the sender try again.

    python3 webhook_receiver.py PORT LOGFILE SECRET [FAIL]
"""
import base64
import hashlib
import hmac
import http.server
import json
import sys
import threading
import time

PORT, LOG, SECRET = int(sys.argv[1]), sys.argv[2], sys.argv[3]
FAIL = [int(sys.argv[4]) if len(sys.argv) > 4 else 0]
KEY = base64.b64decode(SECRET[len("whsec_"):])
LOCK = threading.Lock()


def verified(headers, body):
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature", "")
    if not msg_id or not ts or abs(time.time() - int(ts)) > 300:
        return False
    want = base64.b64encode(hmac.new(KEY, f"{msg_id}.{ts}.".encode() + body,
                                     hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(s.partition(",")[2], want)
               for s in sigs.split() if s.startswith("v1,"))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ok = verified(self.headers, body)
        with LOCK:
            status = 200 if ok else 401
            if ok and FAIL[0] > 0:
                FAIL[0] -= 1
                status = 503
            try:
                payload = json.loads(body)
            except ValueError:
                payload = {}
            with open(LOG, "a") as f:
                f.write(json.dumps({"id": self.headers.get("webhook-id"),
                                    "type": payload.get("type"), "verified": ok,
                                    "status": status, "data": payload.get("data")}) + "\n")
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
