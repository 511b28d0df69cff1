# Untrusted input: Kafka messages and the agents file.

dlq_has() { # SOURCE_TOPIC KEY REASON_PATTERN
  kcat -b "$SLUICE_KAFKA_BROKERS" -C -t sluice.dlq -e -q -K '\t' -f '%k\t%h\n' 2>/dev/null |
    grep "^$2	" | grep "sluice-source-topic=$1" | grep -q "sluice-error=.*$3"
}

produce() { # TOPIC KEY FILE
  kcat -b "$SLUICE_KAFKA_BROKERS" -P -t "$1" -k "$2" -X message.max.bytes=4000000 "$3"
}

envelope() { # TYPE DATA_JSON
  jq -cn --arg t "$1" --argjson d "$2" \
    '{specversion:"1.0", id:("bad-" + ($d|tostring|length|tostring) + "-" + $t), source:"test", type:$t, subject:"x", data:$d}'
}

t_malformed() {
  local topic rid
  for topic in runs continues approvals; do
    printf 'this is not json {' > "$WORK/bad.json"
    produce "sluice.$topic" "garbage-$topic" "$WORK/bad.json"
  done
  envelope sluice.run.paused '{"run_id":"r"}' > "$WORK/m1" && produce sluice.runs wrong-type "$WORK/m1"
  envelope sluice.run.requested '{"agent_id":"data-admin"}' > "$WORK/m2" && produce sluice.runs missing-input "$WORK/m2"
  envelope sluice.run.requested '{"agent_id":"nobody","input":"hi","run_id":"unknown-agent-run"}' > "$WORK/m3" && produce sluice.runs unknown-agent "$WORK/m3"
  envelope sluice.run.continue '{"run_id":"no-such-run","decisions":[{"requirement_id":"q","confirmed":true}]}' > "$WORK/m4" && produce sluice.continues unknown-run "$WORK/m4"
  envelope sluice.run.paused '{"run_id":"no-such-run","agent_id":"a","requirements":[{"id":"q","tool_call_id":"c","tool_name":"t","tool_args":{},"needs_confirmation":true,"needs_user_input":false,"external_execution":false}]}' > "$WORK/m5" && produce sluice.approvals unknown-run "$WORK/m5"
  { printf '{"specversion":"1.0","id":"big","source":"t","type":"sluice.run.requested","data":{"agent_id":"data-admin","input":"'
    head -c 1100000 /dev/zero | tr '\0' 'x'
    printf '"}}'; } > "$WORK/m6"
  produce sluice.runs oversized "$WORK/m6"
  for topic in runs continues approvals; do
    check "malformed JSON on sluice.$topic is dead-lettered with its reason" \
      eventually 30 dlq_has "sluice.$topic" "garbage-$topic" "malformed JSON"
  done
  check "wrong event type is dead-lettered" eventually 10 dlq_has sluice.runs wrong-type "unexpected type"
  check "missing field is dead-lettered" eventually 10 dlq_has sluice.runs missing-input "missing field input"
  check "unknown agent is dead-lettered" eventually 10 dlq_has sluice.runs unknown-agent "unknown agent nobody"
  check "continue for an unknown run is dead-lettered" eventually 10 dlq_has sluice.continues unknown-run "unknown run"
  check "paused event for an unknown run is dead-lettered" eventually 10 dlq_has sluice.approvals unknown-run "unknown run"
  check "oversized message is dead-lettered" eventually 10 dlq_has sluice.runs oversized "limit"
  api GET /v1/runs/unknown-agent-run >/dev/null
  check "nothing was recorded for the unknown agent" [ "$(http_status)" = 404 ]
  rid=$(submit data-admin "Delete all data for user U-2004.")
  check "the workers keep going: a valid run still pauses" eventually 30 run_is "$rid" paused || return 1
  envelope sluice.run.paused '{"run_id":"'"$rid"'","agent_id":"data-admin","requirements":[{"id":"never-recorded","tool_call_id":"c","tool_name":"delete_user_data","tool_args":{},"needs_confirmation":true,"needs_user_input":false,"external_execution":false}]}' > "$WORK/m7" && produce sluice.approvals forged-requirement "$WORK/m7"
  check "a paused event naming a requirement never recorded is dead-lettered" \
    eventually 10 dlq_has sluice.approvals forged-requirement "never recorded"
  check "the run's real pause was not" \
    bash -c "! kcat -b $SLUICE_KAFKA_BROKERS -C -t sluice.dlq -e -q -f '%k\n' | grep -qx '$rid'"
}

t_bad_agents_file() {
  local out rc
  jq '.agents[0].tools[0] |= del(.requires_confirmation)' "$AGENTS" > "$WORK/bad-agents.json"
  out=$(SLUICE_AGENTS=$WORK/bad-agents.json timeout 20 "$BIN/sluice-worker" 2>&1)
  rc=$?
  check "the worker exits with status 1 (got $rc)" [ "$rc" = 1 ]
  check "the message names agent, tool and field: $out" \
    grep -q "agent data-admin: tool delete_user_data: field approval" <<<"$out"
  jq '.agents[0].tools[0].executor.argv = ["/nonexistent/tool"]' "$AGENTS" > "$WORK/bad-agents.json"
  out=$(SLUICE_AGENTS=$WORK/bad-agents.json timeout 20 "$BIN/sluice-worker" 2>&1)
  check "a missing tool program is named" grep -q "field executor.argv\[0\]" <<<"$out"
}

# A number setting out of range stops a process at start-up, naming it.
t_bad_number_setting() {
  local bin out rc
  for bin in sluice-worker sluice-approver; do
    out=$(SLUICE_RELAY_POLL_MS=soon SLUICE_API_TOKENS=ops:secret timeout 20 "$BIN/$bin" 2>&1)
    rc=$?
    check "$bin exits with status 1 (got $rc)" [ "$rc" = 1 ]
    check "and names the setting: $out" grep -q "SLUICE_RELAY_POLL_MS must be a number from 10 to 3600000" <<<"$out"
  done
}

# Kafka properties from SLUICE_KAFKA_CONFIG and SLUICE_KAFKA_* reach every
# client; an unknown one, a bad line, or one Sluice's guarantees rest on
# stops the program at start-up, named; a secret is never printed.
t_kafka_settings() {
  local out rc props=$WORK/kafka.properties secret="pw-$RANDOM$RANDOM"
  out=$(SLUICE_KAFKA_NO_SUCH_THING=1 timeout 20 "$BIN/sluice-worker" 2>&1)
  rc=$?
  check "an unknown property stops the worker (status $rc)" [ "$rc" = 1 ]
  check "naming it and its variable: $out" \
    grep -q "SLUICE_KAFKA_NO_SUCH_THING: unknown Kafka property no.such.thing" <<<"$out"
  out=$(SLUICE_KAFKA_ENABLE_AUTO_OFFSET_STORE=true SLUICE_API_TOKENS=ops:secret timeout 20 "$BIN/sluice-approver" 2>&1)
  rc=$?
  check "a property Sluice's guarantees rest on stops the approver (status $rc)" [ "$rc" = 1 ]
  check "naming it: $out" grep -q "enable.auto.offset.store cannot be changed" <<<"$out"
  printf '# test\nclient.id=sluice-test\nlinger.ms never\n' > "$props"
  out=$(SLUICE_KAFKA_CONFIG=$props timeout 20 "$BIN/sluice" submit --agent data-admin --input hello 2>&1)
  rc=$?
  check "a bad line of the file stops the CLI (status $rc)" [ "$rc" != 0 ]
  check "naming the file and line: $out" grep -q "$props:3: not a name=value line" <<<"$out"
  # Valid settings for TLS and SASL reach the worker's clients: against the
  # plaintext dev broker they fail the TLS handshake, and say so, without
  # the password.
  printf 'security.protocol=SASL_SSL\nsasl.mechanisms=SCRAM-SHA-512\n' > "$props"
  out=$(SLUICE_KAFKA_CONFIG=$props SLUICE_KAFKA_SASL_USERNAME=sluice SLUICE_KAFKA_SASL_PASSWORD=$secret \
    timeout -s TERM 6 "$BIN/sluice-worker" 2>&1)
  check "the worker's clients speak TLS to the broker (and fail): $(grep -m1 "SSL handshake" <<<"$out")" \
    grep -q "sasl_ssl://.*SSL handshake failed" <<<"$out"
  check "the password is printed nowhere" lacks "$secret" "$out"
}
