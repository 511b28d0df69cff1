# Helpers of the end-to-end tests: TAP output, the approver API, polling.
# Sourced by tests/e2e/run.

T_PASS=0
T_FAIL=0
T_NUM=0
T_CURRENT=""
T_ERRORS=""

# check DESCRIPTION COMMAND...: one assertion of the current test.
check() {
  local what=$1
  shift
  if "$@" >/dev/null; then
    return 0
  fi
  T_ERRORS="$T_ERRORS\n#   failed: $what"
  return 1
}

# run_test NAME FUNCTION: runs a test function and prints one TAP line; a
# failure also names the function and its file, to run it alone
# (tests/e2e/run FUNCTION).
run_test() {
  local name=$1 fn=$2 start
  T_CURRENT=$name
  T_ERRORS=""
  T_NUM=$((T_NUM + 1))
  start=$(date +%s%N)
  if "$fn" && [ -z "$T_ERRORS" ]; then
    T_PASS=$((T_PASS + 1))
    printf 'ok %d - %s (%d ms)\n' "$T_NUM" "$name" $((($(date +%s%N) - start) / 1000000))
  else
    T_FAIL=$((T_FAIL + 1))
    printf 'not ok %d - %s\n' "$T_NUM" "$name"
    printf '#   in %s, %s\n' "$(grep -l "^$fn()" "$ROOT"/tests/e2e/t_*.sh | sed "s|^$ROOT/||")" "$fn"
    [ -n "$T_ERRORS" ] && printf '%b\n' "$T_ERRORS"
  fi
  return 0
}

# api METHOD PATH [BODY]: prints the body; http_status tells the status.
HTTP_STATUS_FILE=$(mktemp)
api() {
  curl -sS -o "$HTTP_STATUS_FILE.body" -w '%{http_code}' -X "$1" \
    -H "Authorization: Bearer $SLUICE_API_TOKEN" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} "$SLUICE_APPROVER_URL$2" > "$HTTP_STATUS_FILE"
  cat "$HTTP_STATUS_FILE.body"
}
http_status() { cat "$HTTP_STATUS_FILE"; }

# lacks PATTERN TEXT: no line of TEXT matches the extended regex PATTERN.
lacks() { ! grep -qE -- "$1" <<<"$2"; }

# eventually SECONDS COMMAND...: retries COMMAND every 0.1 s until it succeeds.
eventually() {
  local limit=$1 i
  shift
  for i in $(seq 1 $((limit * 10))); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# free_port: prints a TCP port on 127.0.0.1 that nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

run_status() { api GET "/v1/runs/$1" | jq -r '.status // empty'; }
run_is() { [ "$(run_status "$1")" = "$2" ]; }
submit() { "$BIN/sluice" submit --agent "$1" --input "$2" ${3:+--run-id "$3"}; }
pending_requirement() { api GET "/v1/requirements?status=pending&run_id=$1" | jq -r '.data[0].id // empty'; }
tool_calls_for() { grep -c "\"$1\"" "$SLUICE_TOOL_LOG" || true; }

# confirm_pending RUN_ID: confirms the run's pending requirement; true on 200.
confirm_pending() {
  local req
  req=$(pending_requirement "$1")
  [ -n "$req" ] && api POST "/v1/requirements/$req/confirm" '{}' >/dev/null && [ "$(http_status)" = 200 ]
}

# check_tool_result RUN_ID OUTPUT: checks that the run completes, that the
# model was told OUTPUT (the tool's own answer, not an interrupted call's),
# and that every tool execution of the run is recorded done.
check_tool_result() {
  local out
  check "the run completes" eventually 60 run_is "$1" completed || return 1
  out=$(api GET "/v1/runs/$1" | jq -r .output)
  check "the model got the tool's result: $out" [ "$out" = "$2" ]
  check "its tool execution is recorded done" [ "$(psql -AtXq "$SLUICE_DATABASE_URL" -c \
    "SELECT string_agg(status, ',') FROM tool_executions WHERE run_id = '$1'")" = done ]
}

# A zombie (exited, parent gone) counts as stopped.
# (/proc/PID/stat read once: a zombie being reaped vanishes between two reads)
process_gone() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
  [ -z "$state" ] || [ "$state" = Z ]
}
no_process_matching() { ! pgrep -f "$1" >/dev/null; }

# topic_has TOPIC JQ_CONDITION: some JSON message of TOPIC satisfies the
# condition. (jq 1.6's -e looks at the last input only, hence the grep.)
topic_has() {
  kcat -b "$SLUICE_KAFKA_BROKERS" -C -t "$1" -e -q 2>/dev/null |
    jq -cR "fromjson? | select($2)" 2>/dev/null | grep -q .
}

# Messages of a topic as "HEADERS<TAB>PAYLOAD" lines.
topic_dump() {
  kcat -b "$SLUICE_KAFKA_BROKERS" -C -t "$1" -e -q -f '%h\t%s\n' 2>/dev/null
}

# The stack's PostgreSQL (`sluice dev up`'s) stopped (fast: sessions
# ended) and started again with its own options (port, socket folder).
pg_ctl_stack() { runuser -u postgres -- "$(ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)" "$@"; }
pg_stop() { pg_ctl_stack -D "$SLUICE_DEV_DIR/pg" -m fast -w -t 60 stop; }
# (postmaster.opts, the server's command line, outlives it)
pg_start() {
  pg_ctl_stack -D "$SLUICE_DEV_DIR/pg" -l "$SLUICE_DEV_DIR/postgres.log" \
    -o "$(sed 's/^[^ ]* //' "$SLUICE_DEV_DIR/pg/postmaster.opts")" -w -t 60 start
}

# db_as ROLE: the stack's database URL for ROLE (sluice_worker,
# sluice_approver, sluice_reader): services connect as their own role, as
# `sluice dev up` starts them; SLUICE_DATABASE_URL is the owner's.
db_as() { printf '%s\n' "$SLUICE_DATABASE_URL" | sed "s|://[^@]*@|://$1@|"; }

# restart_worker NAME: starts NAME (worker-1, ...) again as `sluice dev up`
# did, after a test killed it (same log and pid file, no API token), and
# waits until it has joined the group and the group is settled, so that
# the tests after it have the stack they expect.
restart_worker() {
  local log=$SLUICE_DEV_DIR/$1.log mark
  mark=$(wc -l < "$log")
  env -u SLUICE_API_TOKEN -u SLUICE_SIGNING_KEY SLUICE_RELAY_POLL_MS=5000 \
    SLUICE_DATABASE_URL="$(db_as sluice_worker)" \
    "$BIN/sluice-worker" < /dev/null >> "$log" 2>&1 &
  echo $! > "$SLUICE_DEV_DIR/$1.pid"
  eventually 30 bash -c "tail -n +$((mark + 1)) '$log' | grep -q 'partition(s) assigned'" &&
    eventually 30 settled
}
