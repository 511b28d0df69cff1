# Hostile input: what an attacker sends the approver and the workers.

# raw_get PATH: GET without a token; prints the status, the body in $WORK/raw.
raw_get() { curl -sS -o "$WORK/raw" -w '%{http_code}' --path-as-is "$SLUICE_APPROVER_URL$1"; }
approver_up() { [ "$(curl -sS -o /dev/null -w '%{http_code}' "$SLUICE_APPROVER_URL/healthz")" = 200 ]; }
# long_multibyte N: N two-byte characters.
long_multibyte() { printf '%*s' "$1" '' | sed 's/ /é/g'; }

# Regression: an error text that was not UTF-8 (raw bytes from the URL, or a
# buffer cut inside a character) made json_pack return NULL, and the
# approver dereferenced it; a filter value that was not UTF-8 got
# PostgreSQL's own error text in its 400.
t_not_utf8_requests() {
  local rid req key
  check "GET /%ff: 404" [ "$(raw_get /%ff)" = 404 ]
  check "with a JSON error" jq -e '.error | startswith("no such resource")' "$WORK/raw"
  check "the approver is up after GET /%ff" approver_up || return 1
  check "a long path of multibyte characters: 404" \
    [ "$(raw_get "/$(long_multibyte 400 | jq -sRr @uri)")" = 404 ]
  check "with a JSON error" jq -e .error "$WORK/raw"
  check "the approver is up after a long multibyte path" approver_up || return 1
  api GET "/v1/approvals?agent_id=%ff&status=pending" >/dev/null
  check "a filter value that is not UTF-8: 400" [ "$(http_status)" = 400 ]
  check "without the database's words ($(cat "$HTTP_STATUS_FILE.body"))" \
    [ "$(jq -r .error "$HTTP_STATUS_FILE.body")" = "query arguments must be UTF-8 text" ]
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

# Regression: command and stdio tools inherited the worker's whole
# environment (SLUICE_API_TOKENS, the database URL, OPENAI_API_KEY), and
# `dev up` gave the workers the approver's tokens.
t_tool_secrets() {
  local rid env worker mode
  rid=$(submit env-agent 'call show_env {"why":"audit"}')
  check "the run completes" eventually 30 run_is "$rid" completed || return 1
  env=$(api GET "/v1/runs/$rid" | jq -r .output)
  check "the tool gets executor.env's pair ($env)" grep -q 'CRM_REGION=eu-west' <<<"$env"
  check "and the name it passes through" grep -q "CRM_TOKEN=$CRM_TOKEN" <<<"$env"
  check "and nothing else: no SLUICE_ or OPENAI_ variable, no PATH or HOME" \
    lacks '(SLUICE_|OPENAI_|PATH=|HOME=)' "$env"
  check "a name the worker does not have is told of at start-up" \
    grep -q 'executor.env names NOT_SET_ANYWHERE' "$SLUICE_DEV_DIR/worker-1.log"
  for worker in $(cat "$SLUICE_DEV_DIR"/worker-*.pid); do
    [ -r "/proc/$worker/environ" ] || continue # a worker an earlier test killed
    check "worker $worker has no API token in its environment" \
      bash -c "! tr '\0' '\n' < /proc/$worker/environ | grep -q '^SLUICE_API_TOKEN'"
  done
  rid=$(submit http-agent "Where is order O-777?")
  check "an http run pauses" eventually 30 run_is "$rid" paused || return 1
  api POST "/v1/requirements/$(pending_requirement "$rid")/confirm" '{}' >/dev/null
  check "and completes" eventually 20 run_is "$rid" completed
  check "the http tool got executor.headers with the variable filled in" \
    grep -qx "Bearer $CRM_TOKEN acme" "$HTTP_TOOL_LOG.headers"
  check "the credential is in no log of the stack" \
    bash -c "! grep -rq '$CRM_TOKEN' '$SLUICE_DEV_DIR'/*.log"
  mode=$(stat -c %a "$ENV_FILE")
  check "the env file holding the admin token is 0600 (got $mode)" [ "$mode" = 600 ]
  mode=$(stat -c %a "$SLUICE_DEV_DIR")
  check "the stack's folder is 0700 (got $mode)" [ "$mode" = 700 ]
  mode=$(stat -c %a "$SLUICE_DEV_DIR/approver.log")
  check "its logs are 0600 (got $mode)" [ "$mode" = 600 ]
}

# A worker refuses to start when an agent's key would go in clear text, or
# when the variable its agent names for the key is not set.
t_model_key() {
  local out rc
  jq '.agents[0].model.base_url = "http://models.example.com/v1"' "$AGENTS" > "$WORK/plain-agents.json"
  out=$(OPENAI_API_KEY=sk-test SLUICE_AGENTS=$WORK/plain-agents.json timeout 20 "$BIN/sluice-worker" 2>&1)
  rc=$?
  check "a key for plain http off loopback: exit 1 (got $rc)" [ "$rc" = 1 ]
  check "naming the agent and the field: $out" grep -q "agent data-admin: field model.base_url" <<<"$out"
  check "without showing the key" lacks sk-test "$out"
  jq '.agents[0].model.api_key_env = "DATA_ADMIN_KEY"' "$AGENTS" > "$WORK/keyenv-agents.json"
  out=$(SLUICE_AGENTS=$WORK/keyenv-agents.json timeout 20 "$BIN/sluice-worker" 2>&1)
  check "an api_key_env that is not set: named ($out)" \
    grep -q "agent data-admin: field model.api_key_env names DATA_ADMIN_KEY, which is not set" <<<"$out"
}

# dlq_copy_of KEY: the DLQ's message of KEY as "HEADERS<TAB>PAYLOAD SIZE".
dlq_copy_of() {
  kcat -b "$SLUICE_KAFKA_BROKERS" -C -t sluice.dlq -e -q -f '%k\t%h\t%S\n' 2>/dev/null | grep "^$1	"
}

# Regression: a message too big to be dead-lettered as it is was retried
# every second, for ever, on the database thread that parsed it; one per
# database thread stopped a worker (and the approver's consumer loop had
# the same retry).
t_oversized_dead_letter() {
  local i rid copy
  { printf '{"specversion":"1.0","id":"huge","source":"t","type":"sluice.run.requested","data":{"agent_id":"data-admin","input":"'
    head -c 2500000 /dev/zero | tr '\0' 'x'
    printf '"}}'; } > "$WORK/huge"
  for i in 1 2 3 4 5 6; do
    produce sluice.runs "huge-run-$i" "$WORK/huge"
  done
  produce sluice.approvals huge-paused "$WORK/huge"
  for i in 1 2 3 4 5 6; do
    check "oversized run.requested $i reaches the DLQ" eventually 30 dlq_copy_of "huge-run-$i" || return 1
  done
  copy=$(dlq_copy_of huge-run-1)
  check "as a bounded copy: cut, with its size and reason ($(cut -c1-200 <<<"$copy"))" \
    grep -qE 'sluice-truncated=true' <<<"$copy"
  check "the original size is in a header" grep -q 'sluice-original-size=2500' <<<"$copy"
  check "the payload kept is 65536 bytes" [ "$(awk -F'\t' '{print $NF}' <<<"$copy")" = 65536 ]
  check "the oversized paused event reaches the DLQ from the approver" eventually 30 dlq_copy_of huge-paused
  rid=$(submit data-admin "Delete all data for user U-4242.")
  check "the workers are not wedged: a run still pauses" eventually 30 run_is "$rid" paused || return 1
  api POST "/v1/requirements/$(pending_requirement "$rid")/confirm" '{}' >/dev/null
  check "and completes" eventually 30 run_is "$rid" completed
}

# Regression: a run.requested reusing another request's event id left its
# run "running" for ever, with no DLQ entry and no result event.
t_reused_event_id() {
  local id=reuse-$RANDOM$RANDOM first=reuse-first-$RANDOM second=reuse-second-$RANDOM
  jq -cn --arg id "$id" --arg run "$first" \
    '{specversion:"1.0", id:$id, source:"test", type:"sluice.run.requested",
      data:{run_id:$run, agent_id:"env-agent", input:"call show_env {\"why\":\"first\"}"}}' > "$WORK/reuse1"
  produce sluice.runs "$first" "$WORK/reuse1"
  check "the first request's run completes" eventually 30 run_is "$first" completed || return 1
  jq -cn --arg id "$id" --arg run "$second" \
    '{specversion:"1.0", id:$id, source:"test", type:"sluice.run.requested",
      data:{run_id:$run, agent_id:"env-agent", input:"call show_env {\"why\":\"second\"}"}}' > "$WORK/reuse2"
  produce sluice.runs "$second" "$WORK/reuse2"
  check "a second request with the same event id is dead-lettered" \
    eventually 30 dlq_has sluice.runs "$second" "was used by another request"
  api GET "/v1/runs/$second" >/dev/null
  check "and no run was recorded for it" [ "$(http_status)" = 404 ]
  check "the first run is unchanged" run_is "$first" completed
}

# raw_http REQUEST: sends REQUEST's bytes (printf escapes) to the approver on
# a connection of its own and prints the answer's status code.
raw_http() {
  python3 - "$SLUICE_APPROVER_URL" "$1" <<'PY'
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
req = sys.argv[2].encode().decode('unicode_escape').encode('latin-1')
s = socket.create_connection((u.hostname, u.port), timeout=10)
s.sendall(req)
print(s.recv(65536).split(b' ')[1].decode())
PY
}

# Regressions: the bearer scheme was case-sensitive; two Authorization or
# Content-Length fields were accepted; answers carried no security headers.
t_request_hygiene() {
  local h tok=$SLUICE_API_TOKEN
  check "'bearer' in lower case is accepted" \
    [ "$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: bearer $tok" "$SLUICE_APPROVER_URL/v1/approvals")" = 200 ]
  check "two Authorization fields: 400" \
    [ "$(raw_http "GET /v1/approvals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tok\r\nAuthorization: Bearer nobody\r\nConnection: close\r\n\r\n")" = 400 ]
  check "two different Content-Length fields: 400" \
    [ "$(raw_http "POST /v1/runs/r-1/cancel HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tok\r\nContent-Length: 2\r\nContent-Length: 40\r\nConnection: close\r\n\r\n{}")" = 400 ]
  check "the approver is up" approver_up
  h=$(curl -sS -D - -o /dev/null -H "Authorization: Bearer $tok" "$SLUICE_APPROVER_URL/v1/approvals" | tr -d '\r')
  check "API answers: Content-Security-Policy" grep -qi "^content-security-policy: default-src 'none'; frame-ancestors 'none'" <<<"$h"
  check "API answers: X-Frame-Options" grep -qi '^x-frame-options: DENY' <<<"$h"
  check "API answers: nosniff" grep -qi '^x-content-type-options: nosniff' <<<"$h"
  check "API answers: no-store" grep -qi '^cache-control: no-store' <<<"$h"
  h=$(curl -sS -D - -o /dev/null "$SLUICE_APPROVER_URL/nowhere" | tr -d '\r')
  check "errors carry them too" grep -qi '^x-frame-options: DENY' <<<"$h"
  h=$(curl -sS -D - -o /dev/null "$SLUICE_APPROVER_URL/" | tr -d '\r')
  check "the inbox: a policy naming its own script" grep -qi "^content-security-policy: default-src 'none'; script-src 'sha256-" <<<"$h"
  check "the inbox: no framing" grep -qi "frame-ancestors 'none'" <<<"$h"
}

# The inbox in Chromium: its policy lets its own script run and no other,
# the token leaves the address bar, and a click approves.
t_inbox_browser() {
  local rid out
  rid=$(submit ops-admin 'call restart_service {"service":"inbox-77"}')
  check "a required-approval run pauses" eventually 30 run_is "$rid" paused || return 1
  out=$(node tests/browser/inbox.mjs "$SLUICE_APPROVER_URL" "$SLUICE_API_TOKEN" "$rid" "$WORK/inbox.png" 2>&1)
  check "the browser checks pass: $out" grep -q '^ok: approved with a click' <<<"$out"
  check "the run completes" eventually 30 run_is "$rid" completed
  check "approved by the token's identity" \
    [ "$(approval_of "$rid" '.data[0].status + " " + .data[0].resolved_by')" = "approved admin" ]
}

# Regression: 8,200 slow connections locked everyone out of the approver
# for as long as they trickled their headers, and its log filled with
# libmicrohttpd's own unformatted lines. An approver of its own here, with
# small limits (20 connections from one client, 2 s for a request), so that
# the stack's is left alone.
t_slow_clients() {
  local port url pid out start ms
  port=$(free_port)
  url=http://127.0.0.1:$port
  SLUICE_KAFKA_BROKERS=127.0.0.1:1 SLUICE_APPROVER_LISTEN=127.0.0.1:$port \
    SLUICE_APPROVER_MAX_CLIENT_CONNECTIONS=20 SLUICE_APPROVER_REQUEST_TIMEOUT_S=2 \
    SLUICE_API_TOKENS=slow:$SLUICE_API_TOKEN SLUICE_DATABASE_URL="$(db_as sluice_approver)" \
    "$BIN/sluice-approver" > "$WORK/slow-approver.log" 2>&1 &
  pid=$!
  check "an approver with small limits starts" eventually 20 curl -sf "$url/healthz" || return 1
  python3 tests/e2e/tools/slow_client.py "$url" 100 127.0.0.2 8 > "$WORK/slow.json" &
  sleep 1
  start=$(date +%s%N)
  check "while 100 slow clients trickle headers, /healthz answers another client" \
    [ "$(curl -sS -m 5 -o /dev/null -w '%{http_code}' "$url/healthz")" = 200 ]
  ms=$((($(date +%s%N) - start) / 1000000))
  wait $!
  out=$(cat "$WORK/slow.json")
  check "connections past 20 from one address are closed at once ($out)" \
    [ "$(jq .at_once <<<"$out")" = 80 ]
  check "the 20 others are closed once their 2 s are over, trickling or not" \
    [ "$(jq '.later == 20 and .open == 0 and .latest < 5' <<<"$out")" = true ]
  check "the approver counts them" \
    grep -q '^sluice_approver_http_timed_out_total 20$' <<<"$(curl -sS "$url/metrics")"
  check "every line it logged is a Sluice log line" \
    [ "$(grep -cv '^[^ ]* sluice-approver\[[0-9]*\] \(debug\|info\|warn\|error\): ' "$WORK/slow-approver.log")" = 0 ]
  kill "$pid"
  check "it stops" eventually 20 process_gone "$pid"
  echo "# /healthz under the slow clients: $ms ms"
}

# Regression: a cancel after (or racing) the last confirm got 200 as well,
# and left an approved approval whose tool never ran.
t_cancel_vs_confirm() {
  local rid req i a b pa state
  rid=$(submit ops-admin 'call restart_service {"service":"race-0"}')
  check "a run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(req_for "$rid" restart_service)
  api POST "/v1/requirements/$req/confirm" '{}' >/dev/null
  check "the confirm: 200" [ "$(http_status)" = 200 ]
  api POST "/v1/runs/$rid/cancel" '{"reason":"too late"}' >/dev/null
  check "a cancel after the last confirm: 409" [ "$(http_status)" = 409 ]
  check "the run completes" eventually 30 run_is "$rid" completed
  check "its approval is approved" [ "$(approval_of "$rid" '.data[0].status')" = approved ]
  for i in 1 2 3 4 5 6; do
    rid=$(submit ops-admin "call restart_service {\"service\":\"race-$i\"}")
    check "run $i pauses" eventually 30 run_is "$rid" paused || return 1
    req=$(req_for "$rid" restart_service)
    curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $SLUICE_API_TOKEN" \
      "$SLUICE_APPROVER_URL/v1/requirements/$req/confirm" > "$WORK/race-a" &
    pa=$!
    curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $SLUICE_API_TOKEN" \
      "$SLUICE_APPROVER_URL/v1/runs/$rid/cancel" > "$WORK/race-b" &
    wait "$pa" $!
    a=$(cat "$WORK/race-a") b=$(cat "$WORK/race-b")
    check "race $i: exactly one of confirm ($a) and cancel ($b) wins, the other gets 409" \
      [ "$(printf '%s\n' "$a" "$b" | sort | tr '\n' ' ')" = "200 409 " ]
    if [ "$a" = 200 ]; then
      check "race $i: confirm won: the run completes" eventually 30 run_is "$rid" completed
      state=approved
    else
      check "race $i: cancel won: the run is cancelled" run_is "$rid" cancelled
      state=cancelled
    fi
    check "race $i: the approval agrees ($state)" [ "$(approval_of "$rid" '.data[0].status')" = "$state" ]
  done
}

# big_pending TAG N: the N runs of TAG have their approvals pending.
big_pending() {
  [ "$(psql "$SLUICE_DATABASE_URL" -Atc "SELECT count(*) FROM approvals WHERE run_id LIKE '$1-%' AND status = 'pending'")" = "$2" ]
}

# Regression: list answers were bounded by row count only (1,000 rows of
# large arguments made one answer of ~256 MB). Now a page stops past
# AP_API_MAX_ANSWER (4 MiB) with a link to the rest: 20 rows of 250 KB.
t_big_pages() {
  local i rid first size next ids total rows seen tag=big$RANDOM
  # (an argument this big cannot go through a command line: kcat reads a file)
  head -c 250000 /dev/zero | tr '\0' 'b' > "$WORK/big"
  for i in $(seq 1 20); do
    rid=$tag-$i
    jq -cn --arg run "$rid" --rawfile big "$WORK/big" \
      '{specversion:"1.0", id:$run, source:"test", type:"sluice.run.requested",
        data:{run_id:$run, agent_id:"ops-admin",
              input:("call restart_service " + ({service:$run, next:$big} | tojson))}}' \
      > "$WORK/big-run"
    produce sluice.runs "$rid" "$WORK/big-run"
  done
  check "the 20 big runs pause" eventually 60 big_pending "$tag" 20 || return 1
  first=$(api GET "/v1/approvals?agent_id=ops-admin&tool_name=restart_service&status=pending&limit=100")
  size=${#first}
  total=$(jq .meta.total_count <<<"$first")
  rows=$(jq '.data | length' <<<"$first")
  check "the first page stays under 4.5 MB ($size bytes)" [ "$size" -lt 4700000 ]
  check "it is cut short ($rows of $total rows)" [ "$rows" -lt "$total" ]
  next=$(jq -r '.meta.next // empty' <<<"$first")
  check "with a link to the rest ($next)" grep -q '^/v1/approvals?.*offset=' <<<"$next" || return 1
  ids=$(jq -r '.data[].id' <<<"$first")
  for i in $(seq 1 20); do
    [ -n "$next" ] || break
    rest=$(api GET "$next")
    ids="$ids
$(jq -r '.data[].id' <<<"$rest")"
    next=$(jq -r '.meta.next // empty' <<<"$rest")
  done
  seen=$(grep -c . <<<"$ids")
  check "following the links gives every row ($seen of $total)" [ "$seen" = "$total" ]
  check "each once" [ "$(sort -u <<<"$ids" | grep -c .)" = "$total" ]
}
