# Approval receipts (DESIGN.md, "Audit ledger and approval receipts"): the
# approver signs each decision; a worker runs a tool only on a receipt that
# verifies against SLUICE_RECEIPT_KEYS, names the requirement and covers
# the arguments. The gate-bypasses of issue 18, tried again: a decision
# row written by hand with the owner's role plus a continue event; another
# requirement's receipt replayed; the arguments changed after the
# decision; a key the workers do not know. Each: the tool does not run,
# the model is told, a tool.refused ledger entry says why.

# forge_continue RUN_ID REQ_ID: a continue event for the run, produced to
# Kafka as anyone who can write the topic could.
forge_continue() {
  jq -cn --arg r "$1" --arg q "$2" '{specversion:"1.0", id:("forged-" + $q), source:"mallory",
    type:"sluice.run.continue", subject:$r, data:{run_id:$r, decisions:[{requirement_id:$q, confirmed:true}]}}' |
    kcat -b "$SLUICE_KAFKA_BROKERS" -P -t sluice.continues -k "$1"
}

# refusal_of REQ_ID: the reason of the requirement's tool.refused entry.
refusal_of() {
  psql -AtXq "$SLUICE_DATABASE_URL" -c \
    "SELECT body->>'reason' FROM ledger WHERE kind = 'tool.refused' AND requirement_id = '$1'"
}

# refused_for REQ_ID REGEX: its tool.refused entry is there, its reason
# matching REGEX.
refused_for() { refusal_of "$1" | grep -qE -- "$2"; }

# workers SIGNAL: sends it to the stack's workers.
workers() { for f in "$SLUICE_DEV_DIR"/worker-*.pid; do kill -"$1" "$(cat "$f")"; done; }

t_receipts() {
  local rid req rid2 req2 r1 out
  rid=$(submit data-admin "Delete all data for user R-1001.")
  check "a run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  check "confirmed" confirm_pending "$rid"
  check "it completes" eventually 30 run_is "$rid" completed || return 1
  r1=$(api GET "/v1/runs/$rid" | jq -r '.requirements[0].receipt // empty')
  check "its requirement carries a receipt: ${r1:0:24}…" [ -n "$r1" ] || return 1
  check "a JWS, EdDSA, kid dev-1" [ "$(cut -d. -f1 <<<"$r1" | tr '_-' '/+' | base64 -d 2>/dev/null | jq -r '.alg + " " + .kid')" = "EdDSA dev-1" ]
  out=$(cut -d. -f2 <<<"$r1" | tr '_-' '/+' | { cat; echo '=='; } | tr -d '\n' | base64 -d 2>/dev/null)
  check "over the run, the requirement, the call, the tool, the arguments' digest, the decision: $out" \
    jq -e --arg r "$rid" --arg q "$req" '.run_id == $r and .requirement_id == $q and .tool_name == "delete_user_data"
      and (.args_sha256 | length) == 64 and .decision == "approved" and .decided_by == "admin" and .exp > .iat' <<<"$out"
  check "the continue event carried it" eventually 10 \
    topic_has sluice.continues ".subject == \"$rid\" and .data.decisions[0].receipt == \"$r1\""
  check "its tool ran" [ "$(tool_calls_for R-1001)" = 1 ]

  # 1. a decision written by hand, as the database's owner, and a continue
  rid2=$(submit data-admin "Delete all data for user R-1002.")
  check "a second run pauses" eventually 30 run_is "$rid2" paused || return 1
  req2=$(pending_requirement "$rid2")
  psql -AtXq "$SLUICE_DATABASE_URL" -c "UPDATE requirements SET status = 'resolved', confirmed = true,
    resolved_by = 'mallory', resolved_at = now() WHERE id = '$req2'" > /dev/null
  forge_continue "$rid2" "$req2"
  check "the run goes on" eventually 30 run_is "$rid2" completed || return 1
  check "the tool did not run" [ "$(tool_calls_for R-1002)" = 0 ]
  check "the model was told: $(api GET "/v1/runs/$rid2" | jq -r .output)" \
    grep -q "could not be verified (it has no receipt)" <<<"$(api GET "/v1/runs/$rid2" | jq -r .output)"
  check "tool.refused in the ledger: $(refusal_of "$req2")" eventually 5 refused_for "$req2" '^it has no receipt$'

  # 2. the first run's receipt, replayed on another requirement
  rid2=$(submit data-admin "Delete all data for user R-1003.")
  check "a third run pauses" eventually 30 run_is "$rid2" paused || return 1
  req2=$(pending_requirement "$rid2")
  psql -AtXq "$SLUICE_DATABASE_URL" -c "UPDATE requirements SET status = 'resolved', confirmed = true,
    resolved_by = 'admin', resolved_at = now(), receipt = '$r1' WHERE id = '$req2'" > /dev/null
  forge_continue "$rid2" "$req2"
  check "the run goes on" eventually 30 run_is "$rid2" completed || return 1
  check "the tool did not run" [ "$(tool_calls_for R-1003)" = 0 ]
  check "refused: $(refusal_of "$req2")" eventually 5 refused_for "$req2" "another requirement's"

  # 3. the arguments changed after the decision, before a worker ran it
  rid2=$(submit data-admin "Delete all data for user R-1004.")
  check "a fourth run pauses" eventually 30 run_is "$rid2" paused || return 1
  req2=$(pending_requirement "$rid2")
  workers STOP
  api POST "/v1/requirements/$req2/confirm" '{}' > /dev/null
  check "confirmed through the API: 200" [ "$(http_status)" = 200 ]
  psql -AtXq "$SLUICE_DATABASE_URL" -c "UPDATE requirements SET tool_args = '{\"user_id\": \"R-9999\"}'
    WHERE id = '$req2'" > /dev/null
  workers CONT
  check "the run goes on" eventually 30 run_is "$rid2" completed || return 1
  check "no tool ran, for either user" [ "$(tool_calls_for R-1004)$(tool_calls_for R-9999)" = 00 ]
  check "refused: $(refusal_of "$req2")" eventually 5 refused_for "$req2" 'not the ones approved'
  check "the ledger still holds" bash -c "'$BIN/sluice' audit verify | grep -q 'every hash holds'"
}

# Keys: a receipt signed by a key the workers do not know is refused; the
# key added to their JWKS (rotation), it is taken, and the old key's
# receipts still are.
t_receipt_keys() {
  local port url pid rid req log=$WORK/other-approver.log keys=$WORK/both-keys.json
  "$BIN/sluice" keys new --kid other-1 --private-key "$WORK/other-1.pem" --jwks "$WORK/other-1.json" > /dev/null
  jq -s '{keys: (.[0].keys + .[1].keys)}' "$SLUICE_RECEIPT_KEYS" "$WORK/other-1.json" > "$keys"
  port=$(free_port)
  url=http://127.0.0.1:$port
  SLUICE_APPROVER_LISTEN=127.0.0.1:$port SLUICE_API_TOKENS=other:$SLUICE_API_TOKEN \
    SLUICE_SIGNING_KEY=$WORK/other-1.pem SLUICE_RECEIPT_KEYS=$keys \
    SLUICE_DATABASE_URL="$(db_as sluice_approver)" "$BIN/sluice-approver" > "$log" 2>&1 &
  pid=$!
  check "an approver signing with another key starts" eventually 20 curl -sf "$url/healthz" || return 1
  check "it serves both public keys" [ "$(curl -s "$url/v1/keys" | jq -c '[.keys[].kid]')" = '["dev-1","other-1"]' ]
  rid=$(submit data-admin "Delete all data for user R-2001.")
  check "a run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  check "confirmed through it: 200" [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $SLUICE_API_TOKEN" \
    -H 'Content-Type: application/json' --data '{}' "$url/v1/requirements/$req/confirm")" = 200 ]
  check "the run goes on" eventually 30 run_is "$rid" completed || return 1
  check "its tool did not run: the workers do not know other-1" [ "$(tool_calls_for R-2001)" = 0 ]
  check "refused as such" eventually 5 refused_for "$req" 'not in SLUICE_RECEIPT_KEYS'
  # rotation: the workers given both keys
  cp "$keys" "$SLUICE_RECEIPT_KEYS"
  for w in worker-1 worker-2; do
    kill -TERM "$(cat "$SLUICE_DEV_DIR/$w.pid")"
    eventually 20 process_gone "$(cat "$SLUICE_DEV_DIR/$w.pid")"
    restart_worker "$w"
  done
  rid=$(submit data-admin "Delete all data for user R-2002.")
  check "after the rotation a run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  check "confirmed through the approver with the new key" [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $SLUICE_API_TOKEN" \
    -H 'Content-Type: application/json' --data '{}' "$url/v1/requirements/$req/confirm")" = 200 ]
  check "its tool runs" eventually 30 bash -c "[ \"\$(grep -c R-2002 '$SLUICE_TOOL_LOG')\" = 1 ]"
  rid=$(submit data-admin "Delete all data for user R-2003.")
  check "another run pauses" eventually 30 run_is "$rid" paused || return 1
  check "confirmed through the stack's approver (the old key)" confirm_pending "$rid"
  check "its tool runs too" eventually 30 bash -c "[ \"\$(grep -c R-2003 '$SLUICE_TOOL_LOG')\" = 1 ]"
  kill -TERM "$pid"
  wait "$pid"
}
