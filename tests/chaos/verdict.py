"""The fault suite's judge: reads what tests/chaos/faults collected in
WORK and checks every invariant, from outside Sluice.

    python3 verdict.py WORK RUNS

WORK holds PostgreSQL's tables as JSON (runs, requirements, approvals,
tool_executions, ledger), `sluice audit verify`'s output (ledger_verify),
the tool server's effects log (tools.log.effects: key,
tool, body, answer), the decider's decisions, the results topic
(results), the run ids submitted (submitted) and the faults made
(counts), how many calls workers made again with the same key
(asked_again: interrupted, unanswered) and any sanitizer's report
(sanitizer). Prints what failed, with
examples, then one line:

    chaos: runs=N completed=N lost=0 stuck=0 double_effects=0 ...

and exits 1 when an invariant failed.
"""
import collections
import hashlib
import json
import os
import sys

WORK, RUNS = sys.argv[1], int(sys.argv[2])


def load(name):
    with open(os.path.join(WORK, name), encoding="utf-8") as f:
        return json.load(f)


def lines(name):
    with open(os.path.join(WORK, name), encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


runs = {r["run_id"]: r for r in load("runs.json")}
requirements = load("requirements.json")
approvals = load("approvals.json")
executions = load("tool_executions.json")
ledger = load("ledger.json")
ledger_verify = lines("ledger_verify")
submitted = lines("submitted")
decisions = {}
for line in lines("decisions"):
    d = json.loads(line)
    decisions[(d["run_id"], d["tool_call_id"])] = d
effects = collections.defaultdict(list)  # (run_id, call_id) -> [(tool, args, answer)]
for line in lines("tools.log.effects"):
    key, tool, body, answer = line.split("\t", 3)
    run_id, call_id = key.split(":", 1)
    effects[(run_id, call_id)].append((tool, json.loads(body), answer))
faults = collections.Counter(lines("counts"))
sanitizer = lines("sanitizer")
asked_again = [int(n) for n in lines("asked_again")]  # interrupted, unanswered

failures = collections.defaultdict(list)  # invariant -> examples


def fail(what, example):
    failures[what].append(example)


# Runs: all there, all ended, and completed.
for run_id in submitted:
    if run_id not in runs:
        fail("lost", run_id)
status = collections.Counter(r["status"] for r in runs.values())
for r in runs.values():
    if r["status"] not in ("completed", "failed", "cancelled"):
        fail("stuck", f"{r['run_id']} {r['status']}")
    elif r["status"] != "completed":
        fail("not_completed", f"{r['run_id']} {r['status']}: {r['error']}")

# Effects: each confirmed call's effect exactly once, with the arguments
# decided; none for a rejected call, none without a decision.
by_ref = collections.Counter((tool, args.get("ref")) for calls in effects.values()
                             for tool, args, _ in calls)
for (tool, ref), n in by_ref.items():
    if n > 1:
        fail("double_effects", f"{tool} {ref}: {n} effects")
for key, calls in effects.items():
    if len(calls) > 1:
        fail("double_effects", f"{key}: {len(calls)} effects for one key")
    d = decisions.get(key)
    if not d:
        fail("effects_without_decision", f"{key} {calls[0][0]} {calls[0][1]}")
    elif d["decision"] == "reject":
        fail("rejected_but_ran", f"{key} {d['tool']} {d['args']}")
    elif calls[0][1] != d["args"]:
        fail("wrong_args", f"{key}: ran with {calls[0][1]}, decided {d['args']}")
for key, d in decisions.items():
    if d["decision"] == "confirm" and key not in effects and \
            runs.get(key[0], {}).get("status") == "completed":
        fail("effects_missing", f"{key} {d['tool']} {d['args']}")

# The model's transcript: a call that ran is told its answer; nothing is
# told "may or may not have run" (every tool here is idempotent).
for r in runs.values():
    told = {m.get("call_id"): m.get("output") for m in r["messages"] or []
            if isinstance(m, dict) and m.get("type") == "function_call_output"}
    for call_id, output in told.items():
        key = (r["run_id"], call_id)
        if key in effects and output != effects[key][0][2]:
            fail("effects_misreported", f"{key}: told {output!r}, answered {effects[key][0][2]!r}")
        if "may or may not have run" in (output or ""):
            fail("outcomes_unknown", f"{key}: {output}")
    if r["status"] == "completed":
        for key in effects:
            if key[0] == r["run_id"] and key[1] not in told:
                fail("effects_misreported", f"{key}: ran, and the model was never told")

# Requirements and approvals: each decided as the decider meant, with
# one approval row of the right status.
rows = collections.Counter(a["requirement_id"] for a in approvals)
approval_of = {a["requirement_id"]: a for a in approvals}
for req in requirements:
    key = (req["run_id"], req["tool_call_id"])
    d = decisions.get(key)
    if req["status"] != "resolved":
        if runs.get(req["run_id"], {}).get("status") == "completed":
            fail("requirements_unresolved", f"{req['id']} {req['status']}")
        continue
    if not d:
        fail("decisions_unexplained", f"{req['id']} resolved by {req['resolved_by']}")
        continue
    if req["confirmed"] != (d["decision"] == "confirm"):
        fail("decisions_wrong", f"{req['id']}: confirmed={req['confirmed']}, meant {d['decision']}")
    if rows[req["id"]] > 1:
        fail("duplicate_approvals", f"{req['id']}: {rows[req['id']]} rows")
    a = approval_of.get(req["id"])
    want = "approved" if d["decision"] == "confirm" else "rejected"
    if not a:
        fail("approvals_missing", req["id"])
    elif a["status"] != want:
        fail("approvals_wrong", f"{req['id']}: {a['status']}, meant {want}")
for e in executions:
    if e["status"] != "done":
        fail("executions_unfinished", f"{e['run_id']}:{e['tool_call_id']} {e['status']}")

# The ledger: its chain holds; each requirement created once, each
# decision resolved (or expired, cancelled) once as recorded, each gated
# call that ran executed once with its result's digest; no tool refused
# (every decision is the approver's, with its receipt).
if ledger_verify[-1:] != ["rc=0"]:
    fail("ledger_broken", " ".join(ledger_verify))
entries = collections.defaultdict(list)  # (kind, requirement_id) -> [entry]
for e in ledger:
    entries[(e["kind"], e["requirement_id"])].append(e)
for (kind, req_id), es in entries.items():
    if len(es) > 1 and kind != "requirement.vote":
        fail("ledger_duplicates", f"{kind} {req_id}: {len(es)} entries")
for e in ledger:
    if e["kind"] == "tool.refused":  # every decision here is the approver's, signed
        fail("tools_refused", f"{e['requirement_id']}: {e['body'].get('reason')}")
gated = {}
for req in requirements:
    gated[(req["run_id"], req["tool_call_id"])] = req["id"]
    if not entries.get(("requirement.created", req["id"])):
        fail("ledger_missing", f"requirement.created {req['id']}")
    end = {"resolved": "requirement.resolved", "expired": "requirement.expired",
           "cancelled": "requirement.cancelled"}.get(req["status"])
    if end and not entries.get((end, req["id"])):
        fail("ledger_missing", f"{end} {req['id']}")
    if req["status"] == "resolved":
        for e in entries.get(("requirement.resolved", req["id"]), []):
            want = "approved" if req["confirmed"] else "rejected"
            if e["body"].get("decision") != want or e["actor"] != req["resolved_by"]:
                fail("ledger_wrong", f"{req['id']}: {e['body'].get('decision')} by {e['actor']}, "
                                     f"recorded {want} by {req['resolved_by']}")
for x in executions:
    req_id = gated.get((x["run_id"], x["tool_call_id"]))
    if x["status"] != "done" or not req_id:
        continue
    es = entries.get(("tool.executed", req_id), [])
    digest = hashlib.sha256((x["result"] or "").encode()).hexdigest()
    if not es:
        fail("ledger_missing", f"tool.executed {req_id}")
    elif es[0]["body"].get("result_sha256") != digest:
        fail("ledger_wrong", f"tool.executed {req_id}: digest differs from the result's")

# The results topic: one result per run; a repeated event has one id.
results = collections.defaultdict(set)
for line in lines("results"):
    try:
        ev = json.loads(line)
    except ValueError:
        fail("results_unreadable", line[:80])
        continue
    results[ev["data"]["run_id"]].add(ev["id"])
for r in runs.values():
    ids = results.get(r["run_id"], set())
    if r["status"] in ("completed", "failed") and not ids:
        fail("results_missing", r["run_id"])
    if len(ids) > 1:
        fail("duplicate_results", f"{r['run_id']}: {len(ids)} event ids")

if sanitizer:
    fail("sanitizer_reports", "\n#   ".join(sanitizer[:8]))

for what, examples in sorted(failures.items()):
    print(f"# {what}: {len(examples)}, e.g.")
    for e in examples[:5]:
        print(f"#   {e}")
shown = ["lost", "stuck", "not_completed", "double_effects", "rejected_but_ran",
         "effects_missing", "effects_misreported", "effects_without_decision", "wrong_args",
         "outcomes_unknown", "duplicate_approvals", "approvals_missing", "approvals_wrong",
         "decisions_wrong", "results_missing", "duplicate_results", "ledger_broken",
         "ledger_missing", "ledger_duplicates", "ledger_wrong", "tools_refused",
         "sanitizer_reports"]
counts = [f"runs={RUNS}", f"completed={status['completed']}"]
counts += [f"{k}={len(failures.get(k, []))}" for k in shown]
counts += [f"{k}={len(failures[k])}" for k in sorted(failures) if k not in shown]
counts += [f"requirements={len(requirements)}", f"effects={sum(map(len, effects.values()))}",
           f"ledger={len(ledger)}",
           f"asked_again_interrupted={asked_again[0]}",
           f"asked_again_unanswered={asked_again[1]}"]
counts += [f"{k}={faults[k]}" for k in ("worker_kills", "worker_stops", "approver_kills",
                                        "broker_kills", "pg_kills", "pg_restarts",
                                        "partitions")]
print("chaos: " + " ".join(counts))
sys.exit(1 if failures or status["completed"] != RUNS or len(submitted) != RUNS else 0)
