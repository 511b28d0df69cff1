# Hostile input: what an attacker sends the approver and the workers.

# raw_get PATH: GET without a token; prints the status, the body in $WORK/raw.
raw_get() { curl -sS -o "$WORK/raw" -w '%{http_code}' --path-as-is "$SLUICE_APPROVER_URL$1"; }
approver_up() { [ "$(curl -sS -o /dev/null -w '%{http_code}' "$SLUICE_APPROVER_URL/healthz")" = 200 ]; }
# long_multibyte N: N two-byte characters.
long_multibyte() { printf '%*s' "$1" '' | sed 's/ /é/g'; }

# Regression: an error text that was not UTF-8 (raw bytes from the URL, or a
# buffer cut inside a character) made json_pack return NULL, and the
# approver dereferenced it.
t_not_utf8_requests() {
  local rid req key
  check "GET /%ff: 404" [ "$(raw_get /%ff)" = 404 ]
  check "with a JSON error" jq -e '.error | startswith("no such resource")' "$WORK/raw"
  check "the approver is up after GET /%ff" approver_up || return 1
  check "a long path of multibyte characters: 404" \
    [ "$(raw_get "/$(long_multibyte 400 | jq -sRr @uri)")" = 404 ]
  check "with a JSON error" jq -e .error "$WORK/raw"
  check "the approver is up after a long multibyte path" approver_up || return 1
  key=$(long_multibyte 200)
  rid=$(submit travel-agent 'call book_flight {"destination":"Oslo"}')
  check "a user-input run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(req_for "$rid" book_flight)
  api POST "/v1/requirements/$req/input" "{\"values\":{\"passenger_name\":\"Ada\",\"seats\":1,\"$key\":1}}" >/dev/null
  check "a long multibyte field name in /input: 400" [ "$(http_status)" = 400 ]
  check "the approver is up after it" approver_up || return 1
  rid=$(submit ops-admin 'call scale_service {"service":"web-77","replicas":3}')
  check "an edit-before-approve run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(req_for "$rid" scale_service)
  api POST "/v1/requirements/$req/confirm" "{\"tool_args\":{\"service\":\"web-77\",\"replicas\":2,\"$key\":1}}" >/dev/null
  check "a long multibyte field name in tool_args: 400" [ "$(http_status)" = 400 ]
  check "the approver is up after it" approver_up
  check "and the requirement is still pending" \
    [ "$(api GET "/v1/runs/$rid" | jq -r '.requirements[0].status')" = pending ]
}

# Regression: a tool result that was not UTF-8 was dropped; the run ended
# failed and its tool_executions row stayed started.
t_tool_output_not_utf8() {
  local rid cut
  rid=$(submit bytes-agent 'call write_bytes {"mode":"latin1"}')
  cut=$(submit bytes-agent 'call write_bytes {"mode":"cut"}')
  check "a Latin-1 result: the run completes" eventually 30 run_is "$rid" completed
  check "with the invalid bytes replaced" \
    [ "$(api GET "/v1/runs/$rid" | jq -r .output)" = "Done: caf� cr�me" ]
  check "an error cut inside a character: the run completes" eventually 30 run_is "$cut" completed
  check "with the cut character replaced" grep -q 'aaaa�$' <<<"$(api GET "/v1/runs/$cut" | jq -r .output)"
  check "both tool executions are done" \
    [ "$(psql "$SLUICE_DATABASE_URL" -Atc "SELECT string_agg(status, ' ') FROM tool_executions WHERE run_id IN ('$rid', '$cut')")" = "done done" ]
}
