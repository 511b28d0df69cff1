"""The fault suite's people: decides every pending requirement of the
chaos agent through the approver's HTTP API as it appears, and keeps
asking while the approver is down or answers 503.

    python3 decider.py APPROVER_URL DECISIONS_FILE   (token in SLUICE_API_TOKEN)

What it decides follows from the number N of the call's "ref" (C-N), so
that the verdict knows what was meant: delete_records is rejected when N
% 5 == 1, else confirmed; transfer_funds rejected when N % 5 == 2,
confirmed with its amount edited to 1 when N % 5 == 3, else confirmed;
book_seat rejected when N % 5 == 4, else given a name and a number of
seats. Each decision the approver recorded (200, or 409: an earlier
attempt of the same decision was recorded but its answer lost) is
appended to DECISIONS_FILE as one JSON line: requirement id, run id, tool
call id, tool, "confirm" or "reject", and the arguments the tool is to
run with. On SIGTERM it prints its counts to stderr and exits.
"""
import concurrent.futures
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

URL, OUT = sys.argv[1], sys.argv[2]
TOKEN = os.environ["SLUICE_API_TOKEN"]
COUNTS = {"decided": 0, "already": 0, "unreachable": 0, "refused": 0}
STOP = []


def call(method, path, body=None):
    """(status, parsed body); status 0 when the approver cannot be reached."""
    req = urllib.request.Request(
        URL + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None
    except (OSError, ValueError):
        return 0, None


def plan(req):
    """(verb, request body, decision, the arguments the tool is to get)."""
    args = req["tool_args"]
    n = int(args["ref"].split("-")[1])
    tool = req["tool_name"]
    if (tool, n % 5) in (("delete_records", 1), ("transfer_funds", 2), ("book_seat", 4)):
        return "reject", {"note": f"not {args['ref']}"}, "reject", args
    if tool == "transfer_funds" and n % 5 == 3:
        edited = dict(args, amount=1)
        return "confirm", {"tool_args": edited}, "confirm", edited
    if tool == "book_seat":
        values = {"passenger_name": f"P {args['ref']}", "seats": n % 3 + 1}
        return "input", {"values": values}, "confirm", dict(args, **values)
    return "confirm", {}, "confirm", args


def decide(req):
    """(done, the decision's line or None): not done when stopped first."""
    verb, body, decision, args = plan(req)
    while not STOP:
        status, _ = call("POST", f"/v1/requirements/{req['id']}/{verb}", body)
        if status in (200, 409):
            COUNTS["decided" if status == 200 else "already"] += 1
            return True, json.dumps({"id": req["id"], "run_id": req["run_id"],
                                     "tool_call_id": req["tool_call_id"],
                                     "tool": req["tool_name"], "decision": decision,
                                     "args": args})
        if status in (0, 502, 503):
            COUNTS["unreachable"] += 1
            time.sleep(0.2)
            continue
        COUNTS["refused"] += 1
        print(f"decider: {verb} {req['id']}: HTTP {status}", file=sys.stderr)
        return True, None
    return False, None


def main():
    signal.signal(signal.SIGTERM, lambda *_: STOP.append(1))
    done = set()
    with open(OUT, "a", encoding="utf-8") as out, \
            concurrent.futures.ThreadPoolExecutor(8) as pool:
        while not STOP:
            status, page = call("GET", "/v1/requirements?status=pending&limit=200")
            if status != 200:
                COUNTS["unreachable"] += status in (0, 502, 503)
                time.sleep(0.2)
                continue
            todo = [r for r in page["data"] if r["id"] not in done]
            for req, (finished, line) in zip(todo, pool.map(decide, todo)):
                if finished:
                    done.add(req["id"])
                if line:
                    out.write(line + "\n")
                    out.flush()
            if not todo:
                time.sleep(0.1)
    print("decider: " + " ".join(f"{k}={v}" for k, v in COUNTS.items()), file=sys.stderr)


main()
