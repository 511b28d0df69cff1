# Agno's approval behaviours, made durable (issue: every approval behaviour).

# The pending requirement of run $1 for tool $2.
req_for() { api GET "/v1/requirements?status=pending&run_id=$1" | jq -r --arg t "$2" '[.data[] | select(.tool_name == $t)][0].id // empty'; }
approval_of() { api GET "/v1/approvals?run_id=$1" | jq -r "$2"; }
continues_of() { kcat -b "$SLUICE_KAFKA_BROKERS" -C -t sluice.continues -e -q | jq -cR "fromjson? | select(.subject == \"$1\")"; }
submit_as() { "$BIN/sluice" submit --agent "$1" --user-id "$2" --input "$3"; }

t_required() {
  local rid rid2 user="alice-$RANDOM" app req body
  rid=$(submit_as ops-admin "$user" 'call restart_service {"service":"api"}')
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  check "a pending required approval exists as soon as the run is paused" \
    [ "$(approval_of "$rid" '[.meta.total_count, .data[0].status, .data[0].approval_type, .data[0].pause_type, .data[0].user_id] | join(" ")')" = "1 pending required confirmation $user" ]
  check "the pending list shows it" \
    [ "$(api GET "/v1/approvals?status=pending&user_id=$user" | jq -r .meta.total_count)" = 1 ]
  check "the count shows it" [ "$(api GET "/v1/approvals/count?user_id=$user" | jq -r .count)" = 1 ]
  app=$(approval_of "$rid" '.data[0].id')
  body=$(api POST "/v1/approvals/$app/resolve" '{"status":"approved","resolution_data":{"note":"go ahead"}}')
  check "Agno's resolve answers 200 with the approval" [ "$(http_status)" = 200 ]
  check "the approval is approved with the note" \
    [ "$(jq -r '[.status, .resolution_data.note, .resolved_by] | join("|")' <<<"$body")" = "approved|go ahead|admin" ]
  check "its requirement agrees" \
    [ "$(api GET "/v1/runs/$rid" | jq -r '.requirements[0] | [.status, .confirmed, .note] | join(" ")')" = "resolved true go ahead" ]
  api POST "/v1/approvals/$app/resolve" '{"status":"rejected"}' >/dev/null
  check "a second resolve is 409" [ "$(http_status)" = 409 ]
  check "the run completes" eventually 20 run_is "$rid" completed
  check "the tool ran once" [ "$(grep -c 'restart_service {"service":"api"}' "$SLUICE_TOOL_LOG")" = 1 ]
  check "nothing is pending for the user any more" [ "$(api GET "/v1/approvals/count?user_id=$user" | jq -r .count)" = 0 ]
  # The same through the requirement endpoint, rejecting.
  rid2=$(submit_as ops-admin "$user" 'call restart_service {"service":"billing"}')
  check "second run pauses" eventually 30 run_is "$rid2" paused || return 1
  req=$(req_for "$rid2" restart_service)
  api POST "/v1/requirements/$req/reject" '{"note":"not during business hours"}' >/dev/null
  check "reject through the requirement: 200" [ "$(http_status)" = 200 ]
  check "the approval row agrees" \
    [ "$(approval_of "$rid2" '[.data[0].status, .data[0].resolution_data.note] | join("|")')" = "rejected|not during business hours" ]
  api POST "/v1/approvals/$(approval_of "$rid2" '.data[0].id')/resolve" '{"status":"approved"}' >/dev/null
  check "resolving the approval after the requirement: 409" [ "$(http_status)" = 409 ]
  check "the run completes" eventually 20 run_is "$rid2" completed
  check "the rejected tool never ran" [ "$(grep -c 'billing' "$SLUICE_TOOL_LOG")" = 0 ]
}

t_user_input() {
  local rid req fields
  rid=$(submit travel-agent 'call book_flight {"destination":"Lisbon"}')
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(req_for "$rid" book_flight)
  fields=$(api GET "/v1/runs/$rid" | jq -c '.requirements[0].user_input_schema | map([.name, .type])')
  check "the requirement lists the fields and their types ($fields)" \
    [ "$fields" = '[["passenger_name","string"],["seats","integer"]]' ]
  check "no audit row while paused" [ "$(approval_of "$rid" .meta.total_count)" = 0 ]
  api POST "/v1/requirements/$req/input" '{"values":{"passenger_name":"Ada Lovelace"}}' >/dev/null
  check "a missing field: 400" [ "$(http_status)" = 400 ]
  api POST "/v1/requirements/$req/input" '{"values":{"passenger_name":"Ada","seats":2,"meal":"veg"}}' >/dev/null
  check "an unknown field: 400" [ "$(http_status)" = 400 ]
  api POST "/v1/requirements/$req/input" '{"values":{"passenger_name":"Ada","seats":"two"}}' >/dev/null
  check "a field of the wrong type: 400" [ "$(http_status)" = 400 ]
  api POST "/v1/requirements/$req/input" '{"values":{"passenger_name":"Ada","seats":12}}' >/dev/null
  check "a value the tool's schema refuses: 400" [ "$(http_status)" = 400 ]
  api POST "/v1/requirements/$req/confirm" '{}' >/dev/null
  check "a bare confirm of a user-input tool: 400" [ "$(http_status)" = 400 ]
  check "none of that changed anything" \
    [ "$(api GET "/v1/runs/$rid" | jq -r '[.status, .requirements[0].status] | join(" ")')" = "paused pending" ]
  api POST "/v1/requirements/$req/input" '{"values":{"passenger_name":"Ada Lovelace","seats":2}}' >/dev/null
  check "all values: 200" [ "$(http_status)" = 200 ]
  check "the run completes" eventually 20 run_is "$rid" completed
  check "the tool ran with the values filled in" \
    [ "$(sed -n 's/^book_flight //p' "$SLUICE_TOOL_LOG" | grep Lisbon | jq -cS .)" = '{"destination":"Lisbon","passenger_name":"Ada Lovelace","seats":2}' ]
  check "one approved audit row of pause type user_input, with the values" \
    [ "$(approval_of "$rid" '[.meta.total_count, .data[0].status, .data[0].approval_type, .data[0].pause_type, .data[0].resolution_data.values.seats] | join(" ")')" = "1 approved audit user_input 2" ]
}

t_external() {
  local rid rid2 req
  rid=$(submit credit-agent "Check the credit of customer C-77.")
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(req_for "$rid" credit_check)
  check "no audit row while paused" [ "$(approval_of "$rid" .meta.total_count)" = 0 ]
  api POST "/v1/requirements/$req/confirm" '{}' >/dev/null
  check "confirming an external tool: 400" [ "$(http_status)" = 400 ]
  api POST "/v1/requirements/$req/result" '{"result":42}' >/dev/null
  check "a result that is not a string: 400" [ "$(http_status)" = 400 ]
  api POST "/v1/requirements/$req/result" '{"result":"score 720, low risk"}' >/dev/null
  check "the result: 200" [ "$(http_status)" = 200 ]
  check "the run completes" eventually 20 run_is "$rid" completed
  check "the model saw the given result" \
    [ "$(api GET "/v1/runs/$rid" | jq -r .output)" = "Done: score 720, low risk" ]
  check "one approved audit row of pause type external_execution" \
    [ "$(approval_of "$rid" '[.meta.total_count, .data[0].status, .data[0].pause_type] | join(" ")')" = "1 approved external_execution" ]
  rid2=$(submit credit-agent "Check the credit of customer C-78.")
  check "second run pauses" eventually 30 run_is "$rid2" paused || return 1
  api POST "/v1/requirements/$(req_for "$rid2" credit_check)/reject" '{"note":"no consent"}' >/dev/null
  check "the run completes after a rejection" eventually 20 run_is "$rid2" completed
  check "one rejected audit row" [ "$(approval_of "$rid2" '[.meta.total_count, .data[0].status] | join(" ")')" = "1 rejected" ]
}

t_several_requirements() {
  local rid input out decisions
  input=$'Three things:\ncall restart_service {"service":"api-7"}\ncall scale_service {"service":"web-7","replicas":3}\ncall service_status {"service":"db-7"}'
  rid=$(submit ops-admin "$input")
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  check "the ungated tool ran at once" grep -q 'service_status {"service":"db-7"}' "$SLUICE_TOOL_LOG"
  check "two requirements are pending" \
    [ "$(api GET "/v1/requirements?status=pending&run_id=$rid" | jq -r .meta.total_count)" = 2 ]
  api POST "/v1/requirements/$(req_for "$rid" restart_service)/confirm" '{}' >/dev/null
  check "confirm one: 200" [ "$(http_status)" = 200 ]
  sleep 0.5
  check "the run stays paused" run_is "$rid" paused
  check "the other stays pending and visible" \
    [ "$(api GET "/v1/requirements?status=pending&run_id=$rid" | jq -r '.data[0].tool_name')" = scale_service ]
  check "no continue event yet" [ -z "$(continues_of "$rid")" ]
  check "no tool ran yet" bash -c "! grep -q api-7 '$SLUICE_TOOL_LOG'"
  api POST "/v1/requirements/$(req_for "$rid" scale_service)/reject" '{"note":"too many"}' >/dev/null
  check "the run completes" eventually 20 run_is "$rid" completed || return 1
  decisions=$(continues_of "$rid" | jq -c '[.data.decisions[] | .confirmed]')
  check "one continue event carried both decisions ($decisions)" [ "$decisions" = "[true,false]" ]
  out=$(api GET "/v1/runs/$rid" | jq -r .output)
  check "the model saw all three results: $out" \
    bash -c "grep -q 'service_status done' <<<'$out' && grep -q 'restart_service done' <<<'$out' && grep -q 'scale_service was rejected' <<<'$out'"
  check "the confirmed tool ran once, the rejected never" \
    [ "$(grep -c 'api-7' "$SLUICE_TOOL_LOG") $(grep -c 'web-7' "$SLUICE_TOOL_LOG")" = "1 0" ]
}

t_multi_turn() {
  local rid
  rid=$(submit ops-admin 'call restart_service {"service":"api-8","next":"call restart_service {\"service\":\"web-8\"}"}')
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  api POST "/v1/requirements/$(req_for "$rid" restart_service)/confirm" '{}' >/dev/null
  check "the model calls another gated tool: the run pauses again" \
    eventually 20 bash -c "[ \"\$(curl -s -H 'Authorization: Bearer $SLUICE_API_TOKEN' '$SLUICE_APPROVER_URL/v1/requirements?status=pending&run_id=$rid' | jq -r '.data[0].tool_args.service')\" = web-8 ]" || return 1
  check "it is paused" run_is "$rid" paused
  check "both requirements are listed on the run" \
    [ "$(api GET "/v1/runs/$rid" | jq -c '[.requirements[] | .status]')" = '["resolved","pending"]' ]
  api POST "/v1/requirements/$(req_for "$rid" restart_service)/confirm" '{}' >/dev/null
  check "the run completes" eventually 20 run_is "$rid" completed
  check "the full history is kept (user, 2 calls, 2 results, answer)" \
    [ "$(psql "$SLUICE_DATABASE_URL" -Atc "SELECT jsonb_array_length(messages) FROM runs WHERE run_id = '$rid'")" = 6 ]
  check "each tool ran once" [ "$(grep -c 'api-8' "$SLUICE_TOOL_LOG") $(grep -c '"web-8"}$' "$SLUICE_TOOL_LOG")" = "1 1" ]
}

# A run with a user_id whose requirement expires: the expiry is no one's
# decision, and the check of who may decide once compared the run's user
# with no identity at all (the approver crashed on it).
t_expiry_of_a_users_run() {
  local rid pid
  pid=$(cat "$SLUICE_DEV_DIR/approver.pid")
  rid=$("$BIN/sluice" submit --agent ops-admin --user-id zoe --input 'call drop_database {"name":"prod-19"}')
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  check "the approver expires it and the run goes on" eventually 20 run_is "$rid" completed || return 1
  check "expired" [ "$(api GET "/v1/runs/$rid" | jq -r '.requirements[0].status')" = expired ]
  check "the approver is the same process, still up" kill -0 "$pid"
}

t_expiry() {
  local rid req
  rid=$(submit ops-admin 'call drop_database {"name":"prod-9"}')
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(req_for "$rid" drop_database)
  check "the requirement has expires_at" [ "$(api GET "/v1/runs/$rid" | jq -r '.requirements[0].expires_at')" != null ]
  check "the approver expires it and the run goes on" eventually 20 run_is "$rid" completed || return 1
  check "requirement and approval say expired" \
    [ "$(api GET "/v1/runs/$rid" | jq -r '.requirements[0].status') $(approval_of "$rid" '.data[0].status')" = "expired expired" ]
  check "the model was told it was not approved in time" \
    grep -q "not approved in time" <<<"$(api GET "/v1/runs/$rid" | jq -r .output)"
  check "the tool never ran" bash -c "! grep -q prod-9 '$SLUICE_TOOL_LOG'"
  api POST "/v1/requirements/$req/confirm" '{}' >/dev/null
  check "a decision after expiry: 409" [ "$(http_status)" = 409 ]
}

t_cancel() {
  local rid body
  rid=$(submit ops-admin 'call restart_service {"service":"api-10"}')
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  body=$(api POST "/v1/runs/$rid/cancel" '{"reason":"maintenance window closed"}')
  check "cancel: 200" [ "$(http_status)" = 200 ]
  check "the run is cancelled" [ "$(jq -r .status <<<"$body")" = cancelled ]
  check "its pending approval is cancelled" [ "$(approval_of "$rid" '.data[0].status')" = cancelled ]
  check "its requirement is cancelled" [ "$(jq -r '.requirements[0].status' <<<"$body")" = cancelled ]
  check "a sluice.run.failed event says why" eventually 10 \
    topic_has sluice.results ".subject == \"$rid\" and .type == \"sluice.run.failed\" and .data.status == \"cancelled\" and (.data.error | test(\"maintenance window closed\"))"
  api POST "/v1/runs/$rid/cancel" '{}' >/dev/null
  check "cancelling again: 409" [ "$(http_status)" = 409 ]
  api POST "/v1/requirements/$(jq -r '.requirements[0].id' <<<"$body")/confirm" '{}' >/dev/null
  check "a decision after cancel: 409" [ "$(http_status)" = 409 ]
  sleep 0.5
  check "no tool ran" bash -c "! grep -q api-10 '$SLUICE_TOOL_LOG'"
  api POST /v1/runs/no-such-run/cancel '{}' >/dev/null
  check "cancelling an unknown run: 404" [ "$(http_status)" = 404 ]
}

t_strict_continue() {
  local rid req forged
  rid=$(submit ops-admin 'call restart_service {"service":"api-11"}')
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(req_for "$rid" restart_service)
  forged=$(jq -cn --arg r "$rid" --arg q "$req" '{specversion:"1.0", id:("forged-" + $r), source:"attacker", type:"sluice.run.continue", subject:$r, data:{run_id:$r, decisions:[{requirement_id:$q, confirmed:true}]}}')
  printf '%s\n' "$forged" | kcat -b "$SLUICE_KAFKA_BROKERS" -P -t sluice.continues -k "$rid"
  check "a continue claiming an unrecorded decision is dead-lettered" eventually 20 \
    bash -c "kcat -b $SLUICE_KAFKA_BROKERS -C -t sluice.dlq -e -q -f '%h\t%s\n' | grep 'forged-$rid' | grep -q 'not resolved'"
  forged=$(jq -c '.id = "forged2-" + .subject | .data.decisions[0].requirement_id = "someone-else"' <<<"$forged")
  printf '%s\n' "$forged" | kcat -b "$SLUICE_KAFKA_BROKERS" -P -t sluice.continues -k "$rid"
  check "a continue naming another requirement is dead-lettered" eventually 20 \
    bash -c "kcat -b $SLUICE_KAFKA_BROKERS -C -t sluice.dlq -e -q -f '%h\t%s\n' | grep 'forged2-$rid' | grep -q 'not waiting for'"
  check "the run is still paused, its requirement pending" \
    [ "$(api GET "/v1/runs/$rid" | jq -r '[.status, .requirements[0].status] | join(" ")')" = "paused pending" ]
  check "the tool did not run" bash -c "! grep -q api-11 '$SLUICE_TOOL_LOG'"
  api POST "/v1/requirements/$req/confirm" '{}' >/dev/null
  check "the real decision still works" eventually 20 run_is "$rid" completed
}

# A continue that names the wrong requirements of a pause that is decided
# (the worker claims and reads such a run in one statement): with the
# workers stopped, a forged continue goes into Kafka before the real one.
t_strict_continue_decided() {
  local rid req forged pids
  rid=$(submit ops-admin 'call restart_service {"service":"api-13"}')
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(req_for "$rid" restart_service)
  pids=$(cat "$SLUICE_DEV_DIR"/worker-*.pid)
  kill -STOP $pids
  forged=$(jq -cn --arg r "$rid" '{specversion:"1.0", id:("forged3-" + $r), source:"attacker", type:"sluice.run.continue", subject:$r, data:{run_id:$r, decisions:[{requirement_id:"someone-else", confirmed:true}]}}')
  printf '%s\n' "$forged" | kcat -b "$SLUICE_KAFKA_BROKERS" -P -t sluice.continues -k "$rid"
  api POST "/v1/requirements/$req/confirm" '{}' >/dev/null
  check "confirm: 200" [ "$(http_status)" = 200 ]
  kill -CONT $pids
  check "the forged continue, first in Kafka, is dead-lettered" eventually 20 \
    bash -c "kcat -b $SLUICE_KAFKA_BROKERS -C -t sluice.dlq -e -q -f '%h\t%s\n' | grep 'forged3-$rid' | grep -q 'not waiting for'"
  check "the real continue completes the run" eventually 20 run_is "$rid" completed
  check "the tool ran once" [ "$(grep -c api-13 "$SLUICE_TOOL_LOG")" = 1 ]
}

approval_is() { [ "$(approval_of "$1" '.data[0].status')" = "$2" ]; }

t_listing() {
  local all page1 page2 sql i rid
  # rows of its own, whatever ran before: three required approvals pending
  # and one expired
  for i in 1 2 3; do
    rid=$(submit ops-admin "call restart_service {\"service\":\"list-$i\"}")
  done
  check "the runs to list pause" eventually 30 run_is "$rid" paused || return 1
  rid=$(submit ops-admin 'call drop_database {"name":"list-db"}')
  check "an approval to list expires" eventually 30 approval_is "$rid" expired || return 1
  all=$(api GET "/v1/approvals?agent_id=ops-admin&approval_type=required&limit=1000")
  sql=$(psql "$SLUICE_DATABASE_URL" -Atc "SELECT count(*) FROM approvals WHERE agent_id = 'ops-admin' AND approval_type = 'required'")
  check "total_count is exact under filters ($sql)" [ "$(jq -r .meta.total_count <<<"$all")" = "$sql" ]
  check "there are several" [ "$sql" -ge 3 ]
  check "newest first" jq -e '[.data[].created_at] | . == (sort | reverse)' <<<"$all"
  page1=$(api GET "/v1/approvals?agent_id=ops-admin&approval_type=required&limit=1&page=1")
  page2=$(api GET "/v1/approvals?agent_id=ops-admin&approval_type=required&limit=1&page=2")
  check "paging: page 2 holds the second newest" \
    [ "$(jq -r '.data[0].id' <<<"$page2")" = "$(jq -r '.data[1].id' <<<"$all")" ]
  check "meta tells the pages" \
    [ "$(jq -r '[.meta.page, .meta.limit, .meta.total_pages] | join(" ")' <<<"$page1")" = "1 1 $sql" ]
  check "status + pause_type + tool_name filters" \
    [ "$(api GET "/v1/approvals?status=expired&pause_type=confirmation&tool_name=drop_database" | jq -r '[.data[].tool_name] | unique | join(",")')" = drop_database ]
  check "session_id filter" \
    [ "$(api GET "/v1/approvals?session_id=$(jq -r '.data[0].session_id' <<<"$all")" | jq -r .meta.total_count)" = 1 ]
  api GET "/v1/approvals?limit=1001" >/dev/null
  check "limit over 1000: 400" [ "$(http_status)" = 400 ]
  api GET "/v1/requirements?status=resolved&limit=2&page=1" >/dev/null
  check "requirements list: 200" [ "$(http_status)" = 200 ]
  check "requirements total_count is exact" \
    [ "$(api GET "/v1/requirements?status=resolved&limit=2" | jq -r .meta.total_count)" = "$(psql "$SLUICE_DATABASE_URL" -Atc "SELECT count(*) FROM requirements WHERE status = 'resolved'")" ]
}

t_edit_before_approve() {
  local rid req
  rid=$(submit ops-admin 'call scale_service {"service":"web-12","replicas":3}')
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(req_for "$rid" scale_service)
  api POST "/v1/requirements/$req/confirm" '{"tool_args":{"service":"web-12","replicas":20}}' >/dev/null
  check "arguments over the schema's maximum: 400" [ "$(http_status)" = 400 ]
  api POST "/v1/requirements/$req/confirm" '{"tool_args":{"service":"web-12","replicas":"five"}}' >/dev/null
  check "arguments of the wrong type: 400" [ "$(http_status)" = 400 ]
  api POST "/v1/requirements/$req/confirm" '{"tool_args":{"service":"web-12","replicas":2,"force":true}}' >/dev/null
  check "an argument the schema does not allow: 400" [ "$(http_status)" = 400 ]
  api POST "/v1/requirements/$req/confirm" '{"tool_args":{"replicas":2}}' >/dev/null
  check "a required argument missing: 400" [ "$(http_status)" = 400 ]
  api POST "/v1/requirements/$req/confirm" '{"tool_args":{"service":"web-12","replicas":5},"note":"5 is enough"}' >/dev/null
  check "valid edited arguments: 200" [ "$(http_status)" = 200 ]
  check "the run completes" eventually 20 run_is "$rid" completed
  check "the tool ran with the edited arguments" grep -q 'scale_service {"service":"web-12","replicas":5}' "$SLUICE_TOOL_LOG"
  check "and not with the original ones" bash -c "! grep -q '\"replicas\":3}' <(grep web-12 '$SLUICE_TOOL_LOG')"
  check "the approval keeps the original and the edited arguments" \
    [ "$(approval_of "$rid" '[.data[0].tool_args.replicas, .data[0].resolution_data.tool_args.replicas] | join(" ")')" = "3 5" ]
}

t_concurrent_continues() {
  local rid req copy p n w
  rid=$(submit chat-admin "Delete all data for user U-3013.")
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  # The workers held still while the decision is recorded (with its
  # receipt: a decision written by hand would run nothing) and four copies
  # of its continue land on four partitions, so that both workers contend
  # for the run with five events once they go on.
  for w in "$SLUICE_DEV_DIR"/worker-*.pid; do kill -STOP "$(cat "$w")"; done
  api POST "/v1/requirements/$req/confirm" '{}' > /dev/null
  check "confirmed: $(http_status)" [ "$(http_status)" = 200 ]
  # The first two and the last two partitions: with range assignment, each
  # worker has some of them.
  n=$(kcat -b "$SLUICE_KAFKA_BROKERS" -L -t sluice.continues | grep -c 'partition [0-9]')
  for p in 0 1 $((n - 2)) $((n - 1)); do
    copy=$(jq -cn --arg r "$rid" --arg q "$req" --arg id "copy-$p-$rid" '{specversion:"1.0", id:$id, source:"test", type:"sluice.run.continue", subject:$r, data:{run_id:$r, decisions:[{requirement_id:$q, confirmed:true}]}}')
    printf '%s\n' "$copy" | kcat -b "$SLUICE_KAFKA_BROKERS" -P -t sluice.continues -p "$p" -k "$rid"
  done
  for w in "$SLUICE_DEV_DIR"/worker-*.pid; do kill -CONT "$(cat "$w")"; done
  check "the run completes" eventually 20 run_is "$rid" completed
  check "the four others are refused" eventually 20 bash -c \
    "[ \$(kcat -b $SLUICE_KAFKA_BROKERS -C -t sluice.dlq -e -q -f '%h\t%s\n' | grep '$rid' | grep -c 'not paused') = 4 ]"
  check "both workers took part" \
    [ "$(grep -l "run $rid" "$SLUICE_DEV_DIR"/worker-*.log | wc -l)" = 2 ]
  check "the tool ran once ($(grep -c 'U-3013' "$SLUICE_TOOL_LOG") times)" [ "$(grep -c 'U-3013' "$SLUICE_TOOL_LOG")" = 1 ]
}

t_http_executor() {
  local rid call
  rid=$(submit http-agent "Where is order O-4711?")
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  call=$(api GET "/v1/runs/$rid" | jq -r '.requirements[0].tool_call_id')
  api POST "/v1/requirements/$(pending_requirement "$rid")/confirm" '{}' >/dev/null
  check "the run completes" eventually 20 run_is "$rid" completed
  check "the tool got the arguments with Idempotency-Key RUN_ID:TOOL_CALL_ID" \
    grep -qx "$rid:$call {\"order_id\":\"O-4711\"}" "$HTTP_TOOL_LOG"
  check "the 2xx body is the result the model saw" \
    [ "$(api GET "/v1/runs/$rid" | jq -r .output)" = "Done: Looked up O-4711" ]
  rid=$(submit http-agent "Where is order O-503?")
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  api POST "/v1/requirements/$(pending_requirement "$rid")/confirm" '{}' >/dev/null
  check "another status: the run completes" eventually 20 run_is "$rid" completed
  check "the model is told the status and body" \
    [ "$(api GET "/v1/runs/$rid" | jq -r .output)" = "Done: error: tool lookup_order answered HTTP 503: overloaded" ]
}

# The "stdio" executor: one long-running process per tool answers calls as
# JSON lines, many at once and in any order; a process that misbehaves fails
# only the calls it had, and is started again.
t_stdio_executor() {
  local rid ok exit_rid silent_rid garbage_rid after_rid i peak
  local -a slow=() jobs=()
  rid=$(submit stdio-admin "Delete all data for user U-5150.")
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  api POST "/v1/requirements/$(pending_requirement "$rid")/confirm" '{}' >/dev/null
  check "the run completes" eventually 20 run_is "$rid" completed
  check "the process's answer is the result the model saw" \
    [ "$(api GET "/v1/runs/$rid" | jq -r .output)" = "Done: Deleted data for user U-5150" ]
  check "the tool got its arguments once" \
    [ "$(grep -cx 'delete_user_data {"user_id":"U-5150"}' "$SLUICE_TOOL_LOG")" = 1 ]
  check "one approved audit record" \
    [ "$(approval_of "$rid" '[.data[] | select(.status == "approved" and .approval_type == "audit")] | length')" = 1 ]

  for i in $(seq 10); do
    submit stdio-admin "call flaky {\"mode\":\"slow\"}" > "$WORK/slow-$i" &
    jobs+=($!)
  done
  wait "${jobs[@]}"
  for i in $(seq 10); do slow+=("$(cat "$WORK/slow-$i")"); done
  for ok in "${slow[@]}"; do
    check "slow call of run $ok completes" eventually 30 run_is "$ok" completed || return 1
    check "its answer came back" [ "$(api GET "/v1/runs/$ok" | jq -r .output)" = "Done: slow done" ]
  done
  # calls outstanding at once, from the order of the processes' own log
  # lines (two workers, a process each: serial calls would peak at 2)
  peak=$(awk '/^flaky slow start/ {n++; if (n > m) m = n} /^flaky slow end/ {n--} END {print m + 0}' "$SLUICE_TOOL_LOG")
  check "the calls overlapped in the tool processes (peak $peak of 10, at least 5)" [ "$peak" -ge 5 ]

  garbage_rid=$(submit stdio-admin 'call flaky {"mode":"garbage"}')
  check "a line that is not an answer is skipped; the answer counts" eventually 20 run_is "$garbage_rid" completed
  check "garbage: the answer is the result" \
    [ "$(api GET "/v1/runs/$garbage_rid" | jq -r .output)" = "Done: ok after garbage" ]

  silent_rid=$(submit stdio-admin 'call flaky {"mode":"silent"}')
  check "a call with no answer fails after timeout_ms; the run completes" eventually 30 run_is "$silent_rid" completed
  check "silent: the model is told it timed out" \
    [ "$(api GET "/v1/runs/$silent_rid" | jq -r .output)" = "Done: error: tool flaky timed out after 5000 ms" ]

  exit_rid=$(submit stdio-admin 'call flaky {"mode":"exit"}')
  check "a process that ends mid-call fails that call; the run completes" eventually 20 run_is "$exit_rid" completed
  check "exit: the model is told, and the call is not run again" \
    [ "$(api GET "/v1/runs/$exit_rid" | jq -r .output)" = "Done: error: the process of tool flaky ended during the call; it is not run again" ]
  check "exit: the process saw the call once" [ "$(grep -c '^flaky exit' "$SLUICE_TOOL_LOG")" = 1 ]
  after_rid=$(submit stdio-admin 'call flaky {"mode":"ok"}')
  check "the process is started again for the next call" eventually 20 run_is "$after_rid" completed
  check "after a restart: answered" [ "$(api GET "/v1/runs/$after_rid" | jq -r .output)" = "Done: ok" ]
}
