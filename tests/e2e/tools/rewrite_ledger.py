#!/usr/bin/env python3
"""Rewrites a ledger export as someone with the algorithm would: changes
entry SEQ (sets its actor to ACTOR; or, with --insert, puts a new entry
after it), then renumbers and rehashes every entry after it so the chain
holds again. Checkpoints are left as they were.

    rewrite_ledger.py [--insert] SEQ ACTOR < EXPORT > REWRITTEN

The canonical JSON here is RFC 8785's for what these tests' entries hold:
texts, whole numbers, booleans, null, objects with ASCII member names.
"""
import hashlib
import json
import sys


def canonical(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def rehash(prev, e):
    body = {k: e[k] for k in ("seq", "kind", "at", "run_id", "requirement_id", "actor", "body")}
    return hashlib.sha256(bytes.fromhex(prev) + canonical(body).encode()).hexdigest()


args = sys.argv[1:]
insert = args[:1] == ["--insert"]
seq, actor = int(args[-2]), args[-1]
lines = [json.loads(line) for line in sys.stdin if line.strip()]
start = [x for x in lines if x["type"] == "start"]
entries = [x for x in lines if x["type"] == "entry"]
points = [x for x in lines if x["type"] == "checkpoint"]
out = []
for e in entries:
    out.append(e)
    if e["seq"] == seq:
        if insert:
            forged = dict(e, kind="requirement.resolved", actor=actor,
                          body={"decision": "approved"})
            out.append(forged)
        else:
            e["actor"] = actor
prev = start[0]["prev_hash"] if start else "0" * 64
first = start[0]["after_seq"] + 1 if start else 1
for i, e in enumerate(out):
    e["seq"] = first + i
    e["hash"] = rehash(prev, e)
    prev = e["hash"]
for x in start + out + points:
    print(json.dumps(x, ensure_ascii=False))
