# The approval flow over the real stack.

t_seed() {
  local out rid
  out=$(SLUICE_BIN=$BIN "$ROOT/scripts/demo" --env-file "$ENV_FILE" 2>&1)
  check "the demo's four steps pass: $out" grep -q "All checks passed" <<<"$out"
  check "step 2 saw zero approvals" grep -q "Total approvals before resolution: 0" <<<"$out"
  rid=$(sed -n 's/^Submitted run //p' <<<"$out")
  check "the run completed" run_is "$rid" completed
  check "the output names the deleted user" \
    grep -q "Deleted data for user U-99887" <<<"$(api GET "/v1/runs/$rid" | jq -r .output)"
  check "the tool ran exactly once" [ "$(tool_calls_for U-99887)" = 1 ]
  check "one audit approval, approved, resolved by the token's identity" \
    [ "$(api GET "/v1/approvals?run_id=$rid" | jq -r '[.meta.total_count, .data[0].status, .data[0].approval_type, .data[0].resolved_by, .data[0].pause_type] | join(" ")')" = "1 approved audit admin confirmation" ]
  check "a sluice.run.completed event was published" eventually 10 \
    topic_has sluice.results ".subject == \"$rid\" and .type == \"sluice.run.completed\" and .data.status == \"completed\""
}

t_reject() {
  local rid req approvals
  rid=$(submit data-admin "Delete all data for user U-2001.")
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  api POST "/v1/requirements/$req/reject" '{"note":"customer is under legal hold"}' >/dev/null
  check "reject answers 200" [ "$(http_status)" = 200 ]
  check "run completes" eventually 20 run_is "$rid" completed
  check "the model was told of the rejection and its reason" \
    grep -q "rejected.*legal hold" <<<"$(api GET "/v1/runs/$rid" | jq -r .output)"
  check "the tool never ran" [ "$(tool_calls_for U-2001)" = 0 ]
  approvals=$(api GET "/v1/approvals?run_id=$rid&approval_type=audit")
  check "one rejected audit record with the note" \
    [ "$(jq -r '[.meta.total_count, .data[0].status, .data[0].resolution_data.note] | join("|")' <<<"$approvals")" = "1|rejected|customer is under legal hold" ]
  check "the requirement shows the decision" \
    [ "$(api GET "/v1/runs/$rid" | jq -r '.requirements[0] | [.status, .confirmed] | join(" ")')" = "resolved false" ]
}

t_second_decision() {
  local rid req body
  rid=$(submit data-admin "Delete all data for user U-2002.")
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  api POST "/v1/requirements/$req/confirm" '{"note":"ok"}' >/dev/null
  check "first decision 200" [ "$(http_status)" = 200 ]
  body=$(api POST "/v1/requirements/$req/reject" '{"note":"changed my mind"}')
  check "second decision 409" [ "$(http_status)" = 409 ]
  check "409 body is a JSON error" jq -e '.error | test("already resolved")' <<<"$body"
  api POST "/v1/requirements/$req/confirm" >/dev/null
  check "third decision 409" [ "$(http_status)" = 409 ]
  check "run completes" eventually 20 run_is "$rid" completed
  check "the first decision stands" \
    [ "$(api GET "/v1/runs/$rid" | jq -r '.requirements[0] | [.confirmed, .note] | join(" ")')" = "true ok" ]
  check "one approval, approved" \
    [ "$(api GET "/v1/approvals?run_id=$rid" | jq -r '[.meta.total_count, .data[0].status] | join(" ")')" = "1 approved" ]
  check "the tool ran once" [ "$(tool_calls_for U-2002)" = 1 ]
}

t_auth_and_errors() {
  local code
  code=$(curl -s -o "$WORK/noauth" -w '%{http_code}' "$SLUICE_APPROVER_URL/v1/approvals")
  check "no token: 401" [ "$code" = 401 ]
  check "401 body is a JSON error" jq -e .error "$WORK/noauth"
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrong" "$SLUICE_APPROVER_URL/v1/requirements")
  check "wrong token: 401" [ "$code" = 401 ]
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$SLUICE_APPROVER_URL/v1/requirements/x/confirm")
  check "no token on a decision: 401" [ "$code" = 401 ]
  code=$(curl -s -o /dev/null -w '%{http_code}' "$SLUICE_APPROVER_URL/healthz")
  check "healthz needs no token" [ "$code" = 200 ]
  check "the web inbox page is served (its data needs the token)" \
    bash -c "curl -sf '$SLUICE_APPROVER_URL/' | grep -q '<title>Sluice inbox</title>'"
  api POST /v1/requirements/no-such-requirement/confirm '{}' >/dev/null
  check "unknown requirement: 404" [ "$(http_status)" = 404 ]
  api GET /v1/runs/no-such-run >/dev/null
  check "unknown run: 404" [ "$(http_status)" = 404 ]
  api GET "/v1/approvals?limit=0" >/dev/null
  check "limit 0: 400" [ "$(http_status)" = 400 ]
  api GET "/v1/approvals?status=maybe" >/dev/null
  check "unknown status filter: 400" [ "$(http_status)" = 400 ]
  api POST /v1/requirements/no-such-requirement/confirm 'not json' >/dev/null
  check "malformed body: 400" [ "$(http_status)" = 400 ]
  head -c 70000 /dev/zero | tr '\0' 'a' > "$WORK/big"
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $SLUICE_API_TOKEN" \
    --data-binary @"$WORK/big" "$SLUICE_APPROVER_URL/v1/requirements/x/confirm")
  check "oversized body: 413" [ "$code" = 413 ]
  check "the approver is still healthy" curl -sf "$SLUICE_APPROVER_URL/healthz" -o /dev/null
}

t_duplicate_continue() {
  local rid req event copy
  rid=$(submit data-admin "Delete all data for user U-2003.")
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  api POST "/v1/requirements/$req/confirm" '{}' >/dev/null
  check "run completes" eventually 20 run_is "$rid" completed || return 1
  event=$(kcat -b "$SLUICE_KAFKA_BROKERS" -C -t sluice.continues -e -q | jq -cR "fromjson? | select(.subject == \"$rid\")")
  check "one continue event was published" [ "$(grep -c . <<<"$event")" = 1 ] || return 1
  # The very same event again: recorded in processed_events, no second effect.
  printf '%s\n' "$event" | kcat -b "$SLUICE_KAFKA_BROKERS" -P -t sluice.continues -k "$rid"
  check "the worker saw it was processed before" eventually 20 \
    grep -q "continue event $(jq -r .id <<<"$event") was processed before" "$SLUICE_DEV_DIR"/worker-*.log
  # A new event with the same decisions: the run is finished, so it is refused.
  copy=$(jq -c '.id = "replayed-'"$rid"'"' <<<"$event")
  printf '%s\n' "$copy" | kcat -b "$SLUICE_KAFKA_BROKERS" -P -t sluice.continues -k "$rid"
  check "a continue for a finished run is dead-lettered" eventually 20 \
    bash -c "kcat -b $SLUICE_KAFKA_BROKERS -C -t sluice.dlq -e -q -f '%h\t%s\n' | grep 'replayed-$rid' | grep -q 'not paused'"
  check "the tool ran once" [ "$(tool_calls_for U-2003)" = 1 ]
  check "one approval" [ "$(api GET "/v1/approvals?run_id=$rid" | jq -r .meta.total_count)" = 1 ]
  check "the run is still completed" run_is "$rid" completed
}

t_chat_provider() {
  local rid req
  rid=$(submit chat-admin "Delete all data for user U-2005.")
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  check "the requirement has no approval type" \
    [ "$(api GET "/v1/runs/$rid" | jq -r '.requirements[0].approval_type')" = null ]
  api POST "/v1/requirements/$req/confirm" '{}' >/dev/null
  check "run completes" eventually 20 run_is "$rid" completed
  check "the model saw the tool result" \
    [ "$(api GET "/v1/runs/$rid" | jq -r .output)" = "Done: Deleted data for user U-2005" ]
  check "no approval row without approval" [ "$(api GET "/v1/approvals?run_id=$rid" | jq -r .meta.total_count)" = 0 ]
}

t_worker_killed_mid_tool() {
  local rid req log pid
  rid=$(submit slow-admin "Delete all data for user S-3001.")
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  api POST "/v1/requirements/$req/confirm" '{}' >/dev/null
  check "the tool starts" eventually 20 grep -q S-3001 "$SLUICE_TOOL_LOG" || return 1
  log=$(grep -l "run $rid: running tool" "$SLUICE_DEV_DIR"/worker-*.log)
  check "one worker runs it" [ -n "$log" ] || return 1
  pid=$(cat "${log%.log}.pid")
  kill -9 "$pid"
  check "another worker takes the run over and completes it" eventually 60 run_is "$rid" completed
  check "it says it resumed the unfinished continue" \
    grep -q "run $rid: resuming continue" "$SLUICE_DEV_DIR"/worker-*.log
  check "the tool was not run a second time" [ "$(tool_calls_for S-3001)" = 1 ]
  check "the model was told the outcome is unknown (a command tool is not idempotent)" \
    grep -q "interrupted: it may or may not have run" <<<"$(api GET "/v1/runs/$rid" | jq -r .output)"
  check "one approval" [ "$(api GET "/v1/approvals?run_id=$rid" | jq -r .meta.total_count)" = 1 ]
  check "the killed worker is started again and the group settles" \
    restart_worker "$(basename "${log%.log}")"
}

# A request for a run that exists (a repeated submit, a redelivery) starts
# nothing new: the run is left as it is; for another agent it is refused.
t_repeated_request() {
  local rid="repeat-$$-$RANDOM"
  submit data-admin "Delete all data for user U-2010." "$rid" >/dev/null
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  submit data-admin "Delete all data for user U-2010." "$rid" >/dev/null
  check "the same request again is ignored" eventually 20 \
    grep -q "run $rid is already paused; request .* ignored" "$SLUICE_DEV_DIR"/worker-*.log
  submit chat-admin "Delete all data for user U-2010." "$rid" >/dev/null
  check "a request for the run with another agent is dead-lettered" eventually 20 \
    bash -c "kcat -b $SLUICE_KAFKA_BROKERS -C -t sluice.dlq -e -q -f '%h\t%s\n' | grep -F '$rid' | grep -q 'another agent'"
  check "still paused, one requirement" \
    [ "$(api GET "/v1/runs/$rid" | jq -r '.status + " " + (.requirements | length | tostring)')" = "paused 1" ]
  check "no tool ran" [ "$(tool_calls_for U-2010)" = 0 ]
}

# Decisions that arrive together are resolved together (one transaction per
# batch); each keeps its own outcome: of two contradicting decisions on one
# requirement exactly one wins, and the two requirements of one run decided
# at the same moment give one continue event with both decisions.
t_decisions_at_once() {
  local ops rid q i holder batches0 batches1 out="$WORK/decisions-at-once"
  local -a rids=() reqs=() urls=() args=()
  ops=$(submit ops-admin $'Two things:\ncall restart_service {"service":"api-9"}\ncall scale_service {"service":"web-9","replicas":2}')
  for i in 1 2 3 4 5 6 7 8; do
    rids+=("$(submit data-admin "Delete all data for user U-40$i.")")
  done
  check "the ops run pauses" eventually 30 run_is "$ops" paused || return 1
  for rid in "${rids[@]}"; do
    check "run $rid pauses" eventually 30 run_is "$rid" paused || return 1
    reqs+=("$(pending_requirement "$rid")")
  done
  urls=("$(req_for "$ops" restart_service)/confirm" "$(req_for "$ops" scale_service)/confirm")
  for q in "${reqs[@]}"; do
    urls+=("$q/confirm" "$q/reject")
  done
  args=()
  for q in "${urls[@]}"; do
    args+=(-o /dev/null "$SLUICE_APPROVER_URL/v1/requirements/$q")
  done
  # The run of the first requirement is held locked, so that the batch
  # that has it waits while the other decisions come in.
  psql "$SLUICE_DATABASE_URL" -qAt >/dev/null <<SQL &
BEGIN;
SELECT 1 FROM runs WHERE run_id = '${rids[0]}' FOR UPDATE;
SELECT pg_sleep(1.5);
COMMIT;
SQL
  holder=$!
  sleep 0.3
  batches0=$(curl -sf "$SLUICE_APPROVER_URL/metrics" | awk '/^sluice_approver_decision_batches_total/ {print $2}')
  # all at once: one request per connection, all sent before any answer
  curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max 20 -X POST \
    -H "Authorization: Bearer $SLUICE_API_TOKEN" -w '%{http_code} %{url_effective}\n' "${args[@]}" |
    awk '{ n = split($2, p, "/"); print $1, p[n - 1], p[n] }' > "$out"
  wait "$holder"
  batches1=$(curl -sf "$SLUICE_APPROVER_URL/metrics" | awk '/^sluice_approver_decision_batches_total/ {print $2}')
  check "18 answers, each 200 or 409" \
    [ "$(grep -cE '^(200|409) ' "$out")" = 18 ]
  check "the decisions that waited shared a batch (18 decisions, $((batches1 - batches0)) batches)" \
    test $((batches1 - batches0)) -ge 1 -a $((batches1 - batches0)) -le 4
  for q in "${reqs[@]}"; do
    check "requirement $q: one decision won, the other got 409" \
      [ "$(grep " $q " "$out" | cut -d' ' -f1 | sort | tr '\n' ' ')" = "200 409 " ]
  done
  check "the ops run completes" eventually 30 run_is "$ops" completed
  check "one continue event with both of its decisions" \
    [ "$(continues_of "$ops" | jq -c '[.data.decisions[] | .confirmed]')" = "[true,true]" ]
  check "both of its tools ran once" \
    [ "$(grep -c 'api-9' "$SLUICE_TOOL_LOG") $(grep -c 'web-9' "$SLUICE_TOOL_LOG")" = "1 1" ]
  for i in "${!rids[@]}"; do
    local won status
    rid=${rids[$i]}
    won=$(awk -v q="${reqs[$i]}" '$1 == 200 && $2 == q {print $3}' "$out")
    check "run $rid completes" eventually 30 run_is "$rid" completed || continue
    status=$(api GET "/v1/approvals?run_id=$rid" | jq -r '[.meta.total_count, .data[0].status] | join(" ")')
    if [ "$won" = confirm ]; then
      check "run $rid: confirm won: one approved record ($status), the tool ran once" \
        [ "$status $(tool_calls_for "U-40$((i + 1))")" = "1 approved 1" ]
    else
      check "run $rid: reject won: one rejected record ($status), the tool never ran" \
        [ "$status $(tool_calls_for "U-40$((i + 1))")" = "1 rejected 0" ]
    fi
  done
}

# Regression: an http tool that took the request and whose answer never
# came (here: it answers after the 5 s time-out) was reported to the model
# as "could not be reached", though it had acted. Idempotent, it is asked
# again with the same key, and the model gets what it did.
t_http_tool_unanswered_asked_again() {
  local rid call key
  rid=$(submit http-agent "Where is order O-8001?")
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  call=$(api GET "/v1/runs/$rid" | jq -r '.requirements[0].tool_call_id')
  key=$rid:$call
  check "its requirement is confirmed" confirm_pending "$rid" || return 1
  check_tool_result "$rid" "Done: Looked up O-8001"
  check "it asked again, with the same key" [ "$(grep -c "^$key " "$HTTP_TOOL_LOG")" = 2 ]
  check "the tool acted once" [ "$(cut -f1 "$HTTP_TOOL_LOG.effects" | grep -cx "$key")" = 1 ]
  check "the worker said why" grep -q "call $call gave no answer (.*); asking again" \
    "$SLUICE_DEV_DIR"/worker-*.log
}

# An idempotent tool (http: its Idempotency-Key) whose worker died while
# the call was out is asked again, with the same key, by the worker that
# takes the run over: the model gets what the tool did, and the tool's
# server, which keeps the key's contract, acted once.
t_http_tool_asked_again() {
  local rid call log pid key
  rid=$(submit http-agent "Where is order O-9001?")
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  call=$(api GET "/v1/runs/$rid" | jq -r '.requirements[0].tool_call_id')
  key=$rid:$call
  check "its requirement is confirmed" confirm_pending "$rid" || return 1
  check "the tool is asked (it answers after 4 s)" \
    eventually 20 grep -q "^$key " "$HTTP_TOOL_LOG" || return 1
  log=$(grep -l "run $rid: running tool" "$SLUICE_DEV_DIR"/worker-*.log)
  check "one worker asked it" [ -n "$log" ] || return 1
  pid=$(cat "${log%.log}.pid")
  kill -9 "$pid"
  # another worker takes the run over and completes it
  check_tool_result "$rid" "Done: Looked up O-9001"
  check "it asked the tool again, with the same key" [ "$(grep -c "^$key " "$HTTP_TOOL_LOG")" = 2 ]
  check "the tool acted once" [ "$(cut -f1 "$HTTP_TOOL_LOG.effects" | grep -cx "$key")" = 1 ]
  check "the killed worker is back and the group settled" restart_worker "$(basename "${log%.log}")"
}

# A worker stopped with SIGTERM while a tool runs lets it finish: the
# result is recorded and the run completed by that worker before it exits
# (within its 10 s drain), so nothing reads as interrupted.
t_worker_sigterm_drains() {
  local rid log pid out stopped_at completed_at
  rid=$(submit slow-admin "Delete all data for user S-3401.")
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  check "its requirement is confirmed" confirm_pending "$rid" || return 1
  check "the tool starts (it takes 4 s)" eventually 20 grep -q S-3401 "$SLUICE_TOOL_LOG" || return 1
  log=$(grep -l "run $rid: running tool" "$SLUICE_DEV_DIR"/worker-*.log)
  check "one worker runs it" [ -n "$log" ] || return 1
  pid=$(cat "${log%.log}.pid")
  kill -TERM "$pid"
  check "the worker exits within its drain" eventually 15 process_gone "$pid"
  stopped_at=$(grep -n "worker stopping" "$log" | tail -1 | cut -d: -f1)
  completed_at=$(grep -n "run $rid: completed" "$log" | tail -1 | cut -d: -f1)
  check "having completed the run itself, after it was told to stop" \
    [ "${completed_at:-0}" -gt "${stopped_at:-999999}" ]
  out=$(api GET "/v1/runs/$rid" | jq -r .output)
  check "the model got the tool's result: $out" [ "$out" = "Done: Deleted data for user S-3401" ]
  check "the tool ran once" [ "$(tool_calls_for S-3401)" = 1 ]
  check "nothing left unfinished" lacks "message\\(s\\) unfinished" "$(cat "$log")"
  check "the worker is back and the group settled" restart_worker "$(basename "${log%.log}")"
}
