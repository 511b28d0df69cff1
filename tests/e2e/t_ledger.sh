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

# kinds_are RUN_ID KINDS: the run's entries are of KINDS (a,b,c), in order.
kinds_are() { [ "$(kinds_of "$1")" = "$2" ]; }

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
    eventually 5 kinds_are "$rid" requirement.created
  check "confirmed" confirm_pending "$rid" || return 1
  check "the run completes" eventually 30 run_is "$rid" completed || return 1
  check "created, resolved, executed, in that order: $(kinds_of "$rid")" \
    eventually 5 kinds_are "$rid" requirement.created,requirement.resolved,tool.executed
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
    eventually 5 kinds_are "$rid2" requirement.created,requirement.cancelled
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
# match; the tail cut back to before the last signed checkpoint too.
t_ledger_tamper() {
  local k out n rid
  rid=$(submit data-admin "Delete all data for user L-2001.")
  check "a run pauses" eventually 30 run_is "$rid" paused || return 1
  check "confirmed" confirm_pending "$rid"
  check "and completes" eventually 30 run_is "$rid" completed || return 1
  check "its entries chained" \
    eventually 5 kinds_are "$rid" requirement.created,requirement.resolved,tool.executed
  n=$(psql -AtXq "$SLUICE_DATABASE_URL" -c "SELECT max(seq) FROM ledger")
  check "a ledger of a few entries to work on: $n" [ "${n:-0}" -ge 3 ] || return 1
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
  # (an entry added, the rest renumbered and rehashed: t_ledger_checkpoints,
  # on an export, where the chainer cannot sign the forged head meanwhile)
  # the tail cut off, back to before the last checkpoint
  check "a checkpoint of this ledger is signed" eventually 12 bash -c \
    "[ \"\$(psql -AtXq '$SLUICE_DATABASE_URL' -c 'SELECT max(tree_size) FROM ledger_checkpoints')\" = $n ]" || return 1
  as_superuser -c "DELETE FROM ledger WHERE seq >= $k" > /dev/null
  out=$(verify)
  check "the tail cut off before a checkpoint is found: $out" \
    grep -q "the ledger ends at entry $((k - 1)), but a checkpoint was signed for $n entries" <<<"$out"
  as_superuser -c "INSERT INTO ledger SELECT * FROM ledger_saved WHERE seq >= $k" \
    -c "DROP TABLE ledger_saved" > /dev/null
  check "all undone, it holds again" bash -c "'$BIN/sluice' audit verify | grep -q 'every hash holds'"
}

# GET /v1/audit: the ledger over HTTP, oldest first, filtered and paged,
# for auditors and admins only.
t_audit_api() {
  local rid req body aud appr after u log=$WORK/audit-approver.log
  for u in A-4001 A-4002; do # entries enough to page through
    rid=$(submit data-admin "Delete all data for user $u.")
    check "run $u pauses" eventually 30 run_is "$rid" paused || return 1
    api POST "/v1/requirements/$(pending_requirement "$rid")/reject" '{}' > /dev/null
  done
  rid=$(psql -AtXq "$SLUICE_DATABASE_URL" -c "SELECT run_id FROM ledger WHERE kind = 'tool.executed' ORDER BY seq LIMIT 1")
  check "a run with entries: $rid" [ -n "$rid" ] || return 1
  body=$(api GET "/v1/audit?run_id=$rid")
  check "an admin reads its entries: $(jq -c '[.data[].kind]' <<<"$body")" \
    [ "$(jq -r '[.data[].kind] | join(",")' <<<"$body")" = requirement.created,requirement.resolved,tool.executed ]
  check "each with its seq, time, actor, body and hash" \
    jq -e '.data | all(.seq > 0 and (.at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$")) and .actor and .body and (.hash | length) == 64)' <<<"$body"
  req=$(jq -r '.data[0].requirement_id' <<<"$body")
  body=$(api GET "/v1/audit?requirement_id=$req")
  check "by requirement: $(jq -c '[.data[].kind]' <<<"$body")" \
    [ "$(jq -r '[.data[] | select(.requirement_id == "'"$req"'") | .kind] | join(",")' <<<"$body")" = requirement.created,requirement.resolved,tool.executed ]
  check "and no other's" [ "$(jq '.data | length' <<<"$body")" = 3 ]
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

# Checkpoints, keys, export and offline verification: `sluice dev up`
# made a key pair; the approver signs a checkpoint of the ledger at least
# every 10 s while it grows (C2SP signed note), serves it and the public
# keys; an export verifies offline against the JWKS alone; a ledger
# rewritten from an entry on, or cut short before a checkpoint, is found,
# and one cut after the last checkpoint is not (the stated limit).
t_ledger_checkpoints() {
  local out cp size rid f=$WORK/ledger.ndjson keys2=$WORK/other-keys.json
  check "dev up set SLUICE_RECEIPT_KEYS" [ -s "$SLUICE_RECEIPT_KEYS" ]
  check "and SLUICE_SIGNING_KEY" [ -s "$SLUICE_SIGNING_KEY" ]
  check "the signing key is the approver's alone (mode 0600)" [ "$(stat -c %a "$SLUICE_SIGNING_KEY")" = 600 ]
  out=$(curl -s "$SLUICE_APPROVER_URL/v1/keys")
  check "GET /v1/keys, no token: the public key: $out" \
    jq -e '.keys | length == 1 and .[0].kid == "dev-1" and .[0].kty == "OKP" and .[0].crv == "Ed25519" and (.[0] | has("d") | not)' <<<"$out"
  check "a workers' environment has no signing key" bash -c \
    "! tr '\\0' '\\n' < /proc/$(cat "$SLUICE_DEV_DIR/worker-1.pid")/environ | grep -q SLUICE_SIGNING_KEY"
  rid=$(submit data-admin "Delete all data for user L-3001.")
  check "a run pauses" eventually 30 run_is "$rid" paused || return 1
  check "confirmed" confirm_pending "$rid"
  check "a checkpoint is signed within 12 s" eventually 12 bash -c \
    "[ \"\$(psql -AtXq '$SLUICE_DATABASE_URL' -c \"SELECT count(*) FROM ledger_checkpoints WHERE tree_size >= (SELECT max(seq) FROM ledger WHERE run_id = '$rid')\")\" -ge 1 ]" || return 1
  cp=$(api GET /v1/audit/checkpoints/latest)
  check "GET /v1/audit/checkpoints/latest: $(jq -c '{tree_size, kid}' <<<"$cp")" \
    jq -e '.kid == "dev-1" and (.note | startswith("sluice/ledger\n"))' <<<"$cp"
  check "a signed note: origin, size, head, a blank line, a signature line" \
    jq -e --arg em "$(printf '\xe2\x80\x94')" '.note | split("\n") | length == 6 and .[3] == "" and (.[4] | startswith($em + " dev-1 "))' <<<"$cp"
  out=$("$BIN/sluice" audit verify 2>&1)
  check "sluice audit verify checks the chain and the checkpoints: $out" grep -q "every hash holds, [1-9][0-9]* signed checkpoint(s) match" <<<"$out"
  out=$(env -u SLUICE_RECEIPT_KEYS "$BIN/sluice" audit verify 2>&1)
  check "without keys it says to give them (exit 1): $out" grep -q "give the keys" <<<"$out"
  "$BIN/sluice" audit export > "$f"
  check "sluice audit export writes a start line, the entries, the checkpoints" \
    jq -se '.[0].type == "start" and .[0].after_seq == 0 and (map(select(.type == "entry")) | length) > 0 and (map(select(.type == "checkpoint")) | length) > 0' "$f"
  out=$("$BIN/sluice" audit verify --file "$f" --keys "$SLUICE_RECEIPT_KEYS" 2>&1)
  check "the export verifies offline: $out" grep -q "every hash holds" <<<"$out"
  check "to the same head as the database" \
    [ "${out##* }" = "$("$BIN/sluice" audit verify | sed 's/.* //')" ]
  size=$(jq -r 'select(.type == "checkpoint") | .tree_size' "$f" | tail -1)
  # an edited entry, in the file
  jq -c 'if .type == "entry" and .seq == 2 then .actor = "mallory" else . end' "$f" > "$WORK/edited.ndjson"
  out=$("$BIN/sluice" audit verify --file "$WORK/edited.ndjson" --keys "$SLUICE_RECEIPT_KEYS" 2>&1)
  check "an edited entry is named offline: $out" grep -q "entry 2 does not match" <<<"$out"
  # the chain rewritten from entry 1 on, every hash recomputed: the checkpoints catch it
  python3 tests/e2e/tools/rewrite_ledger.py 1 mallory < "$f" > "$WORK/rewritten.ndjson"
  out=$("$BIN/sluice" audit verify --file "$WORK/rewritten.ndjson" --keys "$SLUICE_RECEIPT_KEYS" 2>&1)
  check "a chain rewritten and rehashed is found by a checkpoint: $out" grep -q "does not match the checkpoint signed for" <<<"$out"
  python3 tests/e2e/tools/rewrite_ledger.py --insert 1 mallory < "$f" > "$WORK/inserted.ndjson"
  out=$("$BIN/sluice" audit verify --file "$WORK/inserted.ndjson" --keys "$SLUICE_RECEIPT_KEYS" 2>&1)
  check "an entry inserted, the rest renumbered and rehashed, is found: $out" grep -q "does not match the checkpoint signed for" <<<"$out"
  # cut short: before the last checkpoint found, after it not (the limit)
  jq -c --argjson n "$((size - 1))" 'select(.type != "entry" or .seq <= $n)' "$f" > "$WORK/cut.ndjson"
  out=$("$BIN/sluice" audit verify --file "$WORK/cut.ndjson" --keys "$SLUICE_RECEIPT_KEYS" 2>&1)
  check "entries removed before the last checkpoint are found: $out" grep -q "entries after $((size - 1)) were removed" <<<"$out"
  jq -c --argjson n "$size" 'select(.type != "entry" or .seq <= $n)' "$f" > "$WORK/cut-after.ndjson"
  out=$("$BIN/sluice" audit verify --file "$WORK/cut-after.ndjson" --keys "$SLUICE_RECEIPT_KEYS" 2>&1)
  check "entries removed after it are not (the limit the README states): $out" grep -q "every hash holds" <<<"$out"
  # other keys: no checkpoint verifies
  "$BIN/sluice" keys new --kid other-1 --private-key "$WORK/other.pem" --jwks "$keys2" > /dev/null
  out=$("$BIN/sluice" audit verify --file "$f" --keys "$keys2" 2>&1)
  check "against keys that did not sign: refused: $out" grep -q "no signature by a known key" <<<"$out"
  # rotation: a second key in the JWKS, the old checkpoints still verify
  cp "$SLUICE_RECEIPT_KEYS" "$WORK/rotated.json"
  "$BIN/sluice" keys new --kid dev-2 --private-key "$WORK/dev-2.pem" --jwks "$WORK/rotated.json" > /dev/null
  check "the JWKS now holds two keys" [ "$(jq '.keys | length' "$WORK/rotated.json")" = 2 ]
  out=$("$BIN/sluice" audit verify --file "$f" --keys "$WORK/rotated.json" 2>&1)
  check "and the checkpoints signed before still verify: $out" grep -q "every hash holds" <<<"$out"
  out=$("$BIN/sluice" keys new --kid dev-2 --private-key "$WORK/dev-3.pem" --jwks "$WORK/rotated.json" 2>&1)
  check "a kid given twice is refused: $out" grep -q "already has a key dev-2" <<<"$out"
}
