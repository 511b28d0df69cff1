# The audit ledger (DESIGN.md, "Audit ledger and approval receipts"):
# entries for each change of an approval's life, chained by the
# approver's chainer, append-only in the database, checked by
# `sluice audit verify`, which names the first entry that was tampered
# with.

# kinds_of RUN_ID: the kinds of the run's ledger entries, in order.
kinds_of() {
  psql -AtXq "$SLUICE_DATABASE_URL" -c \
    "SELECT string_agg(kind, ',' ORDER BY seq) FROM ledger WHERE run_id = '$1'"
}

# as_superuser -c STATEMENT...: runs statements as the database's owner, with the
# ledger's triggers off (what a superuser could do); errors shown.
as_superuser() { psql -v ON_ERROR_STOP=1 -AtXq "$SLUICE_DATABASE_URL" -c "SET session_replication_role = replica" "$@"; }

# verify: sluice audit verify's output; its status in $WORK/verify.rc.
verify() {
  "$BIN/sluice" audit verify 2>&1
  echo $? > "$WORK/verify.rc"
}

t_ledger() {
  local rid req rid2 out
  rid=$(submit data-admin "Delete all data for user L-1001.")
  check "the run pauses" eventually 30 run_is "$rid" paused || return 1
  check "its requirement is in the ledger once the chainer has it" \
    eventually 5 bash -c "[ \"\$(psql -AtXq '$SLUICE_DATABASE_URL' -c \"SELECT count(*) FROM ledger WHERE run_id = '$rid'\")\" = 1 ]"
  check "confirmed" confirm_pending "$rid" || return 1
  check "the run completes" eventually 30 run_is "$rid" completed || return 1
  check "created, resolved, executed, in that order: $(kinds_of "$rid")" \
    eventually 5 bash -c "[ \"\$(psql -AtXq '$SLUICE_DATABASE_URL' -c \"SELECT string_agg(kind, ',' ORDER BY seq) FROM ledger WHERE run_id = '$rid'\")\" = requirement.created,requirement.resolved,tool.executed ]"
  check "the resolution names its decider and decision" [ "$(psql -AtXq "$SLUICE_DATABASE_URL" -c \
    "SELECT actor || ' ' || (body->>'decision') FROM ledger WHERE run_id = '$rid' AND kind = 'requirement.resolved'")" = "admin approved" ]
  check "the execution carries its result's SHA-256" [ "$(psql -AtXq "$SLUICE_DATABASE_URL" -c \
    "SELECT body->>'result_sha256' = encode(sha256(convert_to(result, 'UTF8')), 'hex') FROM ledger l
     JOIN tool_executions e ON e.run_id = l.run_id AND e.tool_call_id = l.body->>'tool_call_id'
     WHERE l.run_id = '$rid' AND l.kind = 'tool.executed'")" = t ]
  rid2=$(submit data-admin "Delete all data for user L-1002.")
  check "a second run pauses" eventually 30 run_is "$rid2" paused || return 1
  api POST "/v1/runs/$rid2/cancel" '{"reason":"wrong user"}' > /dev/null
  check "and is cancelled: created, cancelled" \
    eventually 5 bash -c "[ \"\$(psql -AtXq '$SLUICE_DATABASE_URL' -c \"SELECT string_agg(kind, ',' ORDER BY seq) FROM ledger WHERE run_id = '$rid2'\")\" = requirement.created,requirement.cancelled ]"
  check "nothing left queued" eventually 5 bash -c "[ \"\$(psql -AtXq '$SLUICE_DATABASE_URL' -c 'SELECT count(*) FROM ledger_queue')\" = 0 ]"
  check "numbered without gaps" [ "$(psql -AtXq "$SLUICE_DATABASE_URL" -c \
    "SELECT count(*) = max(seq) AND min(seq) = 1 FROM ledger")" = t ]
  out=$(verify)
  check "sluice audit verify: $out" [ "$(cat "$WORK/verify.rc")" = 0 ]
  check "says every hash holds" grep -q "every hash holds" <<<"$out"
  # append-only, for every role
  out=$(psql -AtXq "$SLUICE_DATABASE_URL" -c "UPDATE ledger SET actor = 'x'" 2>&1)
  check "the owner's update refused: $out" grep -q "the ledger is append-only: UPDATE refused" <<<"$out"
  out=$(psql -AtXq "$SLUICE_DATABASE_URL" -c "DELETE FROM ledger" 2>&1)
  check "the owner's delete refused: $out" grep -q "append-only: DELETE refused" <<<"$out"
  out=$(psql -AtXq "$SLUICE_DATABASE_URL" -c "TRUNCATE ledger" 2>&1)
  check "the owner's truncate refused: $out" grep -q "append-only: TRUNCATE refused" <<<"$out"
  check "the approver's role may not update" denied "$(db_as sluice_approver)" "UPDATE ledger SET actor = 'x'"
  check "nor delete" denied "$(db_as sluice_approver)" "DELETE FROM ledger"
  check "the worker's role may not write the ledger" denied "$(db_as sluice_worker)" \
    "INSERT INTO ledger (seq, kind, at, actor, body, hash) VALUES (999999, 'x', 'x', 'x', '{}', repeat('0', 64))"
  check "nor read its queue" denied "$(db_as sluice_worker)" "DELETE FROM ledger_queue"
}

# What a superuser does to the ledger, each undone after: every change is
# found by sluice audit verify, which names the first entry that does not
# match.
t_ledger_tamper() {
  local k out n
  n=$(psql -AtXq "$SLUICE_DATABASE_URL" -c "SELECT max(seq) FROM ledger")
  check "a ledger of a few entries to work on: $n" [ "${n:-0}" -ge 4 ] || return 1
  k=$((n / 2))
  as_superuser -c "CREATE TABLE ledger_saved AS SELECT * FROM ledger" > /dev/null
  as_superuser -c "UPDATE ledger SET body = body || '{\"note\":\"approved by ann\"}' WHERE seq = $k" > /dev/null
  out=$(verify)
  check "an edited body is found: $out" grep -q "entry $k does not match" <<<"$out"
  check "verify exits 1" [ "$(cat "$WORK/verify.rc")" = 1 ]
  as_superuser -c "UPDATE ledger l SET body = s.body FROM ledger_saved s WHERE l.seq = s.seq AND l.seq = $k" > /dev/null
  as_superuser -c "UPDATE ledger SET actor = 'mallory' WHERE seq = $k" > /dev/null
  out=$(verify)
  check "an edited actor is found: $out" grep -q "entry $k does not match" <<<"$out"
  as_superuser -c "UPDATE ledger l SET actor = s.actor FROM ledger_saved s WHERE l.seq = s.seq AND l.seq = $k" > /dev/null
  check "undone, it holds again" bash -c "'$BIN/sluice' audit verify | grep -q 'every hash holds'"
  as_superuser -c "DELETE FROM ledger WHERE seq = $k" > /dev/null
  out=$(verify)
  check "a deleted entry is found: $out" grep -q "entry $k is missing" <<<"$out"
  as_superuser -c "INSERT INTO ledger SELECT * FROM ledger_saved WHERE seq = $k" > /dev/null
  as_superuser -c "UPDATE ledger SET seq = 999999999 WHERE seq = $k" \
    -c "UPDATE ledger SET seq = $k WHERE seq = $((k + 1))" \
    -c "UPDATE ledger SET seq = $((k + 1)) WHERE seq = 999999999" > /dev/null
  out=$(verify)
  check "two entries swapped are found: $out" grep -q "entry $k does not match" <<<"$out"
  as_superuser -c "DELETE FROM ledger WHERE seq IN ($k, $((k + 1)))" \
    -c "INSERT INTO ledger SELECT * FROM ledger_saved WHERE seq IN ($k, $((k + 1)))" > /dev/null
  as_superuser -c "INSERT INTO ledger SELECT seq + 1, kind, at, run_id, requirement_id, 'mallory', body, hash
    FROM ledger WHERE seq = (SELECT max(seq) FROM ledger)" > /dev/null
  out=$(verify)
  check "an entry added at the end is found: $out" grep -q "does not match" <<<"$out"
  as_superuser -c "DELETE FROM ledger WHERE actor = 'mallory'" -c "DROP TABLE ledger_saved" > /dev/null
  check "all undone, it holds again" bash -c "'$BIN/sluice' audit verify | grep -q 'every hash holds'"
}

# GET /v1/audit: the ledger over HTTP, oldest first, filtered and paged,
# for auditors and admins only.
t_audit_api() {
  local rid body aud appr after log=$WORK/audit-approver.log
  rid=$(psql -AtXq "$SLUICE_DATABASE_URL" -c "SELECT run_id FROM ledger WHERE kind = 'tool.executed' ORDER BY seq LIMIT 1")
  check "a run with entries: $rid" [ -n "$rid" ] || return 1
  body=$(api GET "/v1/audit?run_id=$rid")
  check "an admin reads its entries: $(jq -c '[.data[].kind]' <<<"$body")" \
    [ "$(jq -r '[.data[].kind] | join(",")' <<<"$body")" = requirement.created,requirement.resolved,tool.executed ]
  check "each with its seq, time, actor, body and hash" \
    jq -e '.data | all(.seq > 0 and (.at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$")) and .actor and .body and (.hash | length) == 64)' <<<"$body"
  body=$(api GET "/v1/audit?kind=requirement.created&limit=2")
  check "by kind, two at a time: $(jq -c .meta <<<"$body")" \
    jq -e '(.data | length) == 2 and (.data | all(.kind == "requirement.created"))' <<<"$body"
  after=$(jq .meta.next_after_seq <<<"$body")
  body=$(api GET "/v1/audit?kind=requirement.created&limit=2&after_seq=$after")
  check "the next page starts after the last ($after): $(jq -c '[.data[].seq]' <<<"$body")" \
    jq -e --argjson after "$after" '(.data | length) > 0 and (.data | all(.seq > $after))' <<<"$body"
  check "since in the future: none" [ "$(api GET "/v1/audit?since=2999-01-01T00:00:00Z" | jq '.data | length')" = 0 ]
  api GET "/v1/audit?since=not-a-time" > /dev/null
  check "since that is not a time: 400" [ "$(http_status)" = 400 ]
  api GET "/v1/audit?limit=0" > /dev/null
  check "limit 0: 400" [ "$(http_status)" = 400 ]
  access_begin audit
  access_principal audrey auditor && aud=$TOKEN
  access_principal ann approver && appr=$TOKEN
  check "an approver of its own starts" access_approver "$(access_file)" "$log" || return 1
  check "an auditor reads the ledger: 200" [ "$(as "$aud" GET "/v1/audit?run_id=$rid")" = 200 ]
  check "an approver may not: 403" [ "$(as "$appr" GET "/v1/audit?run_id=$rid")" = 403 ]
  access_approver_stop
}
