# Operations: migrations, the compose file, the dev stack's life cycle,
# sanitizers.

t_migrate() {
  local out
  out=$("$BIN/sluice" migrate 2>&1)
  check "a second migrate applies nothing: $out" grep -q "up to date" <<<"$out"
  check "versions and checksums are recorded" \
    [ "$(psql "$SLUICE_DATABASE_URL" -Atc "SELECT count(*) FROM schema_migrations WHERE length(checksum) = 64")" -ge 1 ]
  mkdir -p "$WORK/migrations"
  cp migrations/*.sql "$WORK/migrations/"
  echo "-- an edit after the fact" >> "$WORK/migrations/0001_init.sql"
  out=$("$BIN/sluice" migrate --dir "$WORK/migrations" 2>&1)
  check "a changed applied migration fails (exit $?)" [ $? -ne 0 ]
  check "and says so: $out" grep -q "0001_init.sql was changed after it was applied" <<<"$out"
}

# Retention: sent outbox rows older than an hour and processed events older
# than 7 days go; recent ones stay (the relays prune every minute too).
t_prune() {
  local tag="prune-$RANDOM" out
  psql "$SLUICE_DATABASE_URL" -qAt >/dev/null <<SQL
INSERT INTO outbox (topic, key, payload, created_at, sent_at) VALUES
  ('sluice.results', '$tag-old', '{}', now() - interval '3 hours', now() - interval '2 hours'),
  ('sluice.results', '$tag-new', '{}', now() - interval '30 minutes', now() - interval '29 minutes');
INSERT INTO processed_events (consumer, event_id, processed_at) VALUES
  ('test', '$tag-old', now() - interval '8 days'),
  ('test', '$tag-new', now() - interval '6 days');
SQL
  out=$("$BIN/sluice" prune 2>&1)
  check "sluice prune reports: $out" grep -Eq "^pruned [1-9][0-9]* sent outbox rows and [1-9][0-9]* processed events" <<<"$out"
  check "the old sent outbox row is gone" \
    [ "$(psql "$SLUICE_DATABASE_URL" -Atc "SELECT count(*) FROM outbox WHERE key = '$tag-old'")" = 0 ]
  check "the recent sent outbox row stays" \
    [ "$(psql "$SLUICE_DATABASE_URL" -Atc "SELECT count(*) FROM outbox WHERE key = '$tag-new'")" = 1 ]
  check "the old processed event is gone" \
    [ "$(psql "$SLUICE_DATABASE_URL" -Atc "SELECT count(*) FROM processed_events WHERE event_id = '$tag-old'")" = 0 ]
  check "the recent processed event stays" \
    [ "$(psql "$SLUICE_DATABASE_URL" -Atc "SELECT count(*) FROM processed_events WHERE event_id = '$tag-new'")" = 1 ]
}

# One relay publishes the outbox (it holds an advisory lock); when its
# connection ends, another takes over: a row no writer publishes goes out,
# and runs still go through.
t_relay_failover() {
  local holder rid req lock_holder tag="failover-$RANDOM"
  lock_holder() {
    psql "$SLUICE_DATABASE_URL" -Atc "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 3027650415 AND granted"
  }
  holder=$(lock_holder)
  check "one relay holds the publishing lock" [ -n "$holder" ] || return 1
  check "exactly one" [ "$(wc -l <<<"$holder")" = 1 ]
  psql "$SLUICE_DATABASE_URL" -Atc "SELECT pg_terminate_backend($holder)" >/dev/null
  check "another relay takes the lock" eventually 10 bash -c "[ -n \"\$(psql '$SLUICE_DATABASE_URL' -Atc \"SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 3027650415 AND granted AND pid <> $holder\")\" ]"
  psql "$SLUICE_DATABASE_URL" -qAt >/dev/null <<SQL
INSERT INTO outbox (topic, key, payload) VALUES ('sluice.results', '$tag', '{}');
NOTIFY sluice_outbox;
SQL
  check "it publishes a row no writer publishes" eventually 10 bash -c \
    "[ \"\$(psql '$SLUICE_DATABASE_URL' -Atc \"SELECT sent_at IS NOT NULL FROM outbox WHERE key = '$tag'\")\" = t ]"
  rid=$(submit data-admin "Delete all data for user U-7001.")
  check "a run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  api POST "/v1/requirements/$req/confirm" '{}' >/dev/null
  check "and completes: its continue and result were published" eventually 30 run_is "$rid" completed
}

# Every write of outbox rows is published by its writer as soon as it has
# committed (sl_relay_publish): the workers' pauses and results, the
# approver's continues and a cancel's result alike; the publishing relay
# only takes what a writer left. This stack's relays look for such rows only
# every 5 s (SLUICE_RELAY_POLL_MS). Each write here waits for the one before
# to be published, so none rides on another's: one that went out only when
# a relay looked would wait up to 5 s, and 20 such all under 1 s by chance
# is 1 in 5^20.
t_published_by_writer() {
  local rids=() rid poll slow k
  published() {
    [ "$(psql "$SLUICE_DATABASE_URL" -Atc "SELECT count(*) FROM outbox WHERE key = '$1' AND topic = '$2' AND sent_at IS NOT NULL")" = 1 ]
  }
  poll=$(tr '\0' '\n' < "/proc/$(cat "$SLUICE_DEV_DIR/approver.pid")/environ" |
    sed -n 's/^SLUICE_RELAY_POLL_MS=//p')
  check "the relays look unwoken every 5 s here" [ "$poll" = 5000 ] || return 1
  for k in 1 2 3 4 5 6 7; do
    rid=$(submit data-admin "Delete all data for user U-720$k.")
    rids+=("$rid")
    check "run $k pauses" eventually 30 run_is "$rid" paused || return 1
    check "its pause is published" eventually 30 published "$rid" sluice.approvals || return 1
    if [ "$k" = 7 ]; then
      api POST "/v1/runs/$rid/cancel" '{"reason":"relay test"}' >/dev/null
    else
      api POST "/v1/requirements/$(pending_requirement "$rid")/confirm" '{}' >/dev/null
      check "it continues" eventually 30 published "$rid" sluice.continues || return 1
    fi
    check "its result is published" eventually 30 published "$rid" sluice.results || return 1
  done
  slow=$(psql "$SLUICE_DATABASE_URL" -Atc "SELECT string_agg(topic || ' ' || round(extract(epoch FROM sent_at - created_at)::numeric, 3) || ' s', ', ') FROM outbox WHERE key IN ($(printf "'%s'," "${rids[@]}" | sed 's/,$//')) AND sent_at - created_at >= interval '1 s'")
  check "each of the 20 within 1 s of its transaction (slower: ${slow:-none})" [ -z "$slow" ]
}

# An event Kafka refuses (over the producer's 1,000,000-byte message limit)
# stays unsent; the event written with it goes, and the relay says why.
t_relay_refused() {
  local tag="refused-$RANDOM"
  psql "$SLUICE_DATABASE_URL" -qAt >/dev/null <<SQL
BEGIN;
INSERT INTO outbox (topic, key, payload) VALUES
  ('sluice.results', '$tag-big', repeat('x', 2000000)),
  ('sluice.results', '$tag-ok', '{}');
NOTIFY sluice_outbox;
COMMIT;
SQL
  check "the event Kafka takes is sent, the one it refuses is not" \
    eventually 15 bash -c "[ \"\$(psql '$SLUICE_DATABASE_URL' -Atc \"SELECT string_agg(key || '=' || (sent_at IS NOT NULL), ',' ORDER BY id) FROM outbox WHERE key LIKE '$tag-%'\")\" = '$tag-big=false,$tag-ok=true' ]"
  check "the relay says so" eventually 10 bash -c "cat '$SLUICE_DEV_DIR'/*.log | grep -Eq 'outbox relay: [0-9]+ of [0-9]+ outbox events not delivered'"
  # else every batch would try it again
  psql "$SLUICE_DATABASE_URL" -qAtc "DELETE FROM outbox WHERE key = '$tag-big'" >/dev/null
}

# An outbox row its writer was to publish but did not get delivered (here
# the writer, a second approver, cannot reach Kafka) is the publishing
# relay's once its lease is over: the run continues all the same. A row
# whose lease is not over is left alone, however often the relay is woken.
t_outbox_lease() {
  local port url rid req pid tag="lease-$RANDOM"
  port=$(free_port)
  url=http://127.0.0.1:$port
  SLUICE_KAFKA_BROKERS=127.0.0.1:1 SLUICE_APPROVER_LISTEN=127.0.0.1:$port \
    SLUICE_API_TOKENS=lease:$SLUICE_API_TOKEN SLUICE_DATABASE_URL="$(db_as sluice_approver)" \
    "$BIN/sluice-approver" \
    > "$WORK/lease-approver.log" 2>&1 &
  pid=$!
  check "a second approver, without Kafka, starts" eventually 20 curl -sf "$url/healthz" || return 1
  rid=$(submit data-admin "Delete all data for user U-7301.")
  check "a run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  SLUICE_APPROVER_URL=$url api POST "/v1/requirements/$req/confirm" '{}' >/dev/null
  check "the second approver records the decision (HTTP $(http_status))" [ "$(http_status)" = 200 ]
  psql "$SLUICE_DATABASE_URL" -qAt >/dev/null <<SQL
INSERT INTO outbox (topic, key, payload, relay_after) VALUES
  ('sluice.results', '$tag', '{}', now() + interval '1 hour');
NOTIFY sluice_outbox;
SQL
  check "its continue waits for its lease" [ "$(psql "$SLUICE_DATABASE_URL" -Atc \
    "SELECT count(*) FROM outbox WHERE key = '$rid' AND topic = 'sluice.continues' AND sent_at IS NULL AND relay_after > now()")" = 1 ]
  check "then the publishing relay sends it and the run completes" eventually 40 run_is "$rid" completed
  check "not before its lease was over" [ "$(psql "$SLUICE_DATABASE_URL" -Atc \
    "SELECT sent_at >= relay_after FROM outbox WHERE key = '$rid' AND topic = 'sluice.continues'")" = t ]
  check "a row whose lease is not over stays unsent" [ "$(psql "$SLUICE_DATABASE_URL" -Atc \
    "SELECT sent_at IS NULL FROM outbox WHERE key = '$tag'")" = t ]
  kill "$pid"
  check "the second approver stops" eventually 20 process_gone "$pid"
  psql "$SLUICE_DATABASE_URL" -qAtc "DELETE FROM outbox WHERE key = '$tag'" >/dev/null
}

# Secrets come from the environment: without them the file is refused, and
# none is written in it.
t_compose() {
  local out section
  export SLUICE_WORKER_DB_PASSWORD=pw-w SLUICE_APPROVER_DB_PASSWORD=pw-a \
    SLUICE_RECEIPT_KEYS_FILE=/etc/keys.json SLUICE_SIGNING_KEY_FILE=/etc/signing.pem
  check "docker-compose config -q, with the secrets set" \
    env POSTGRES_PASSWORD=pw-x SLUICE_ACCESS_FILE=/etc/access.json docker-compose -f docker-compose.yml config -q
  check "refused without POSTGRES_PASSWORD" \
    bash -c '! env -u POSTGRES_PASSWORD SLUICE_ACCESS_FILE=/etc/access.json docker-compose -f docker-compose.yml config -q 2>/dev/null'
  check "refused without an access file" \
    bash -c '! env -u SLUICE_ACCESS_FILE POSTGRES_PASSWORD=pw-x docker-compose -f docker-compose.yml config -q 2>/dev/null'
  check "refused without the workers' database password" \
    bash -c '! env -u SLUICE_WORKER_DB_PASSWORD POSTGRES_PASSWORD=pw-x SLUICE_ACCESS_FILE=/etc/access.json docker-compose -f docker-compose.yml config -q 2>/dev/null'
  check "no password written in the file" lacks 'PASSWORD: [^$]|sluice:sluice@' "$(cat docker-compose.yml)"
  out=$(POSTGRES_PASSWORD=pw-x SLUICE_ACCESS_FILE=/etc/access.json SLUICE_API_TOKENS=ops:t-x \
    docker-compose -f docker-compose.yml config)
  unset SLUICE_WORKER_DB_PASSWORD SLUICE_APPROVER_DB_PASSWORD SLUICE_RECEIPT_KEYS_FILE \
    SLUICE_SIGNING_KEY_FILE
  check "the approver reads the access file" grep -q '/etc/access.json:/etc/sluice/access.json' <<<"$out"
  section=$(sed -n '/^  worker:/,/^  [a-z]/p' <<<"$out")
  check "the workers get no API token nor access file" \
    lacks 'SLUICE_API_TOKENS|SLUICE_ACCESS|access.json' "$section"
  check "the workers connect as sluice_worker" \
    grep -q 'SLUICE_DATABASE_URL: postgresql://sluice_worker:pw-w@postgres' <<<"$section"
  check "and know no other database password" lacks 'pw-x|pw-a' "$section"
  check "they get the public keys" grep -q '/etc/keys.json:/etc/sluice/receipt-keys.json:ro' <<<"$section"
  check "and not the signing key" lacks 'signing' "$section"
  section=$(sed -n '/^  approver:/,/^  [a-z]/p' <<<"$out")
  check "the approver connects as sluice_approver" \
    grep -q 'SLUICE_DATABASE_URL: postgresql://sluice_approver:pw-a@postgres' <<<"$section"
  check "and knows no other database password" lacks 'pw-x|pw-w' "$section"
  check "it mounts the signing key" grep -q '/etc/signing.pem:/etc/sluice/signing-key.pem:ro' <<<"$section"
  check "refused without a signing key" \
    bash -c '! env -u SLUICE_SIGNING_KEY_FILE SLUICE_WORKER_DB_PASSWORD=w SLUICE_APPROVER_DB_PASSWORD=a SLUICE_RECEIPT_KEYS_FILE=/k POSTGRES_PASSWORD=pw-x SLUICE_ACCESS_FILE=/etc/access.json docker-compose -f docker-compose.yml config -q 2>/dev/null'
  section=$(sed -n '/^  migrate:/,/^  [a-z]/p' <<<"$out")
  check "migrate connects as the owner and sets the roles' passwords" \
    grep -q 'SLUICE_WORKER_DB_PASSWORD: pw-w' <<<"$section"
}

t_down_cleans() {
  local pid
  check "the folder is gone" [ ! -e "$SLUICE_DEV_DIR" ]
  check "the env file is gone" [ ! -e "$ENV_FILE" ]
  for pid in $STACK_PIDS; do
    check "process $pid stopped" process_gone "$pid"
  done
}

t_crashed_up() {
  local env2=$WORK/crashed.env dir up
  "$BIN/sluice" dev up --env-file "$env2" --agents "$AGENTS" > "$WORK/crashed-up.log" 2>&1 &
  up=$!
  check "up names its folder early" eventually 20 grep -q SLUICE_DEV_DIR "$env2" || return 1
  dir=$(sed -n 's/^SLUICE_DEV_DIR=//p' "$env2")
  check "PostgreSQL got started" eventually 30 test -e "$dir/pg/postmaster.pid"
  kill -9 "$up"
  wait "$up" 2>/dev/null
  "$BIN/sluice" dev down --env-file "$env2" > "$WORK/crashed-down.log" 2>&1
  check "down removes the folder" [ ! -e "$dir" ]
  check "no process of that stack is left" no_process_matching "$dir"
}

t_sanitizers() {
  local reports
  reports=$(ls "$WORK"/asan.* "$WORK"/ubsan.* 2>/dev/null)
  if [ -n "$reports" ]; then
    head -50 $reports
  fi
  check "no reports: $reports" [ -z "$reports" ]
}

# The dev broker's connections answer without Nagle's algorithm (dev/broker.c
# replaces the mock cluster's accept()): every client's connection says so.
t_broker_nagle_off() {
  local n
  n=$(grep -c "a client connected (Nagle's algorithm off)" "$SLUICE_DEV_DIR/broker.log" || true)
  check "the dev broker turned Nagle's algorithm off on $n connections" [ "$n" -ge 3 ]
  check "and on no connection failed to" \
    bash -c "! grep -q \"Nagle's algorithm stays on\" '$SLUICE_DEV_DIR/broker.log'"
}

# answered_200 N PATH: N requests of PATH in a row, each answered 200.
answered_200() {
  local i
  for ((i = 0; i < $1; i++)); do
    api GET "$2" >/dev/null
    [ "$(http_status)" = 200 ] || { echo "# request $i: $(http_status) $(cat "$HTTP_STATUS_FILE.body")" >&2; return 1; }
  done
}

# PostgreSQL restarted under a running stack: every service reconnects and
# carries on, and none prepares a statement twice on one session (the
# PREPARE "already exists" reported against the relay after restarts; not
# reproduced here yet, under ASan or -O2).
t_db_restart() {
  local pgctl mark rid i
  pgctl=$(ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)
  rid=$(submit data-admin "Delete all data for user U-5501.")
  check "a run pauses" eventually 30 run_is "$rid" paused || return 1
  mark=$(wc -l < "$SLUICE_DEV_DIR/postgres.log")
  check "PostgreSQL restarts" runuser -u postgres -- "$pgctl" -D "$SLUICE_DEV_DIR/pg" \
    -l "$SLUICE_DEV_DIR/postgres.log" -m fast -w -t 60 restart || return 1
  # Each HTTP thread holds a connection the restart ended: it sees that
  # before using it and connects again, so no request is refused.
  check "every request right after the restart is answered 200 (not 503)" \
    answered_200 16 "/v1/requirements?run_id=$rid" || return 1
  check "a decision after the restart is taken at once" confirm_pending "$rid" || return 1
  check "the run completes after the restart" eventually 60 run_is "$rid" completed
  for i in 1 2 3; do
    rid=$(submit data-admin "Delete all data for user U-550$((i + 1)).")
    check "run $i pauses" eventually 30 run_is "$rid" paused || return 1
    check "run $i is confirmed" confirm_pending "$rid" || return 1
    check "and completes" eventually 30 run_is "$rid" completed
  done
  sleep 2 # the relays' next passes
  check "no statement was prepared twice on one session since ($(tail -n +"$mark" "$SLUICE_DEV_DIR/postgres.log" | grep -m1 'already exists'))" \
    lacks 'prepared statement .* already exists' "$(tail -n +"$mark" "$SLUICE_DEV_DIR/postgres.log")"
}

# Regression: when PostgreSQL went away while a tool ran, the worker could
# not record the result, started the continue over, found the call claimed
# and not recorded, and told the model "interrupted" although the tool had
# acted. The result is kept and recorded once PostgreSQL is back.
t_tool_result_kept_db_down() {
  local rid
  rid=$(submit slow-admin "Delete all data for user S-3301.")
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  check "its requirement is confirmed" confirm_pending "$rid" || return 1
  check "the tool starts (it takes 4 s)" eventually 20 grep -q S-3301 "$SLUICE_TOOL_LOG" || return 1
  check "PostgreSQL stops while the tool runs" pg_stop || return 1
  sleep 6 # the tool ends meanwhile, and its result cannot be written
  check "PostgreSQL starts again" pg_start || return 1
  check_tool_result "$rid" "Done: Deleted data for user S-3301"
  check "the tool ran once" [ "$(tool_calls_for S-3301)" = 1 ]
}

# Regression: a tool's result was committed without waiting for the disk,
# so a crash of PostgreSQL soon after lost it, and the run went on telling
# the model the call might not have run although it had. The result must
# survive the crash. To make "soon after" certain, PostgreSQL's WAL writer
# (which flushes asynchronous commits within 200 ms) is stopped first; the
# model takes 3 s after the tool, when PostgreSQL is killed (-9).
t_tool_result_survives_pg_crash() {
  local rid pm walwriter
  rid=$(submit slow-model-tool "Delete all data for user U-9317.")
  check "run pauses (the model takes 3 s)" eventually 30 run_is "$rid" paused || return 1
  pm=$(head -1 "$SLUICE_DEV_DIR/pg/postmaster.pid")
  walwriter=$(pgrep -P "$pm" -f walwriter)
  check "PostgreSQL's WAL writer found" [ -n "$walwriter" ] || return 1
  kill -STOP "$walwriter"
  check "its requirement is confirmed" confirm_pending "$rid"
  check "the tool runs" eventually 20 grep -q U-9317 "$SLUICE_TOOL_LOG"
  sleep 1 # its result written; the model's next answer 2 s away
  # the postmaster and its processes at once, as a machine's crash would
  # shellcheck disable=SC2046
  kill -KILL "$pm" $(pgrep -P "$pm")
  check "PostgreSQL is gone" eventually 10 process_gone "$pm" || return 1
  # its lock files name a process that is gone (or a zombie no one reaped)
  rm -f "$SLUICE_DEV_DIR/pg/postmaster.pid" "$SLUICE_DEV_DIR"/.s.PGSQL.*.lock
  check "PostgreSQL starts again (crash recovery)" pg_start || return 1
  check_tool_result "$rid" "Done: Deleted data for user U-9317"
  check "the tool ran once" [ "$(tool_calls_for U-9317)" = 1 ]
}

# An approver stopped with SIGTERM while confirms pour in: the decisions it
# took are answered and their continues published before it exits 0; the
# rest are refused (503) or find it gone, and nothing is half done.
t_approver_sigterm_drains() {
  local port url pid rc i code n200=0 others=0 rids=() reqs=() curls=()
  port=$(free_port)
  url=http://127.0.0.1:$port
  SLUICE_APPROVER_LISTEN=127.0.0.1:$port SLUICE_API_TOKENS=drain:$SLUICE_API_TOKEN \
    SLUICE_DATABASE_URL="$(db_as sluice_approver)" \
    "$BIN/sluice-approver" > "$WORK/drain-approver.log" 2>&1 &
  pid=$!
  check "a second approver answers" eventually 20 curl -sf "$url/healthz" || return 1
  for i in $(seq 10 29); do
    rids+=("$(submit data-admin "Delete all data for user D-36$i.")")
  done
  for i in "${!rids[@]}"; do
    check "run $i pauses" eventually 30 run_is "${rids[i]}" paused || return 1
    reqs+=("$(pending_requirement "${rids[i]}")")
  done
  for i in "${!reqs[@]}"; do
    curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $SLUICE_API_TOKEN" \
      -H 'Content-Type: application/json' --data '{}' "$url/v1/requirements/${reqs[i]}/confirm" \
      > "$WORK/drain-code.$i" &
    curls+=($!)
  done
  sleep 0.05
  kill -TERM "$pid"
  wait "$pid"
  rc=$?
  wait "${curls[@]}"
  check "the approver exits with status 0 (got $rc)" [ "$rc" = 0 ]
  check "saying it stops" grep -q "approver stopping" "$WORK/drain-approver.log"
  for i in "${!reqs[@]}"; do
    code=$(cat "$WORK/drain-code.$i")
    case $code in
      200) n200=$((n200 + 1)) ;;
      503 | 000) ;;
      *) others=$((others + 1)) ;;
    esac
    # a confirm it took is recorded; the others are confirmed by the stack's approver
    if [ "$code" = 200 ]; then
      check "requirement $i, confirmed with 200, is recorded" [ "$(psql -AtXq "$SLUICE_DATABASE_URL" \
        -c "SELECT confirmed FROM requirements WHERE id = '${reqs[i]}'")" = t ]
    else
      check "requirement $i ($code) is confirmed by the stack's approver" confirm_pending "${rids[i]}"
    fi
  done
  check "every confirm got 200, or 503 or no connection once it stopped ($others others)" [ "$others" = 0 ]
  check "some confirms were taken before it stopped ($n200)" [ "$n200" -gt 0 ]
  for i in "${!rids[@]}"; do
    check "run $i completes" eventually 30 run_is "${rids[i]}" completed
    check "its tool ran once" [ "$(tool_calls_for "D-36$((i + 10))")" = 1 ]
  done
}

# GET /readyz: 200 while PostgreSQL and Kafka answer the approver, 503 with
# the reason while one does not (the broker stopped with SIGSTOP: it takes
# connections and answers nothing), 200 again once it does; each change
# logged once. (An answer is kept for a second: anyone may ask.)
readyz_is() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$SLUICE_APPROVER_URL/readyz")" = "$1" ]; }
t_readyz() {
  local broker mark body
  mark=$(wc -l < "$SLUICE_DEV_DIR/approver.log")
  check "ready: 200" readyz_is 200 || return 1
  check "without a token (a probe has none)" \
    [ "$(curl -s "$SLUICE_APPROVER_URL/readyz" | jq -r .status)" = ready ]
  broker=$(cat "$SLUICE_DEV_DIR/broker.pid")
  sleep 1.1 # an answer is kept for a second
  kill -STOP "$broker"
  body=$(curl -s "$SLUICE_APPROVER_URL/readyz")
  kill -CONT "$broker"
  check "Kafka silent: 503 saying so: $body" \
    [ "$(jq -r '[.status, (.kafka | startswith("no broker answered")), .database] | join("|")' <<<"$body")" = "not ready|true|" ]
  check "ready again once the broker answers" eventually 20 readyz_is 200
  check "PostgreSQL stops" pg_stop || return 1
  sleep 1.1
  body=$(curl -s "$SLUICE_APPROVER_URL/readyz")
  check "PostgreSQL down: 503 saying so: $body" \
    [ "$(jq -r '[.status, (.database | length > 0), .kafka] | join("|")' <<<"$body")" = "not ready|true|" ]
  check "PostgreSQL starts again" pg_start || return 1
  check "ready again once it answers" eventually 30 readyz_is 200
  check "each change logged once" [ "$(tail -n +"$((mark + 1))" "$SLUICE_DEV_DIR/approver.log" | grep -c 'not ready:\|ready again:')" = 4 ]
}

# A worker's probes (SLUICE_WORKER_LISTEN): /healthz while it runs;
# /readyz 503 naming PostgreSQL or Kafka while it does not answer, 200
# again once it does, each change logged once; a listen address it cannot
# use stops it at start-up.
t_worker_readyz() {
  local port url pid log=$WORK/probed-worker.log body out rc
  out=$(SLUICE_WORKER_LISTEN=127.0.0.1:99999 timeout 30 "$BIN/sluice-worker" 2>&1)
  rc=$?
  check "a worker told to listen where it cannot exits with status 1 (got $rc)" [ "$rc" = 1 ]
  check "naming the setting: $(tail -1 <<<"$out")" grep -q "SLUICE_WORKER_LISTEN" <<<"$out"
  port=$(free_port)
  url=http://127.0.0.1:$port
  env -u SLUICE_API_TOKEN SLUICE_WORKER_LISTEN=127.0.0.1:$port \
    SLUICE_DATABASE_URL="$(db_as sluice_worker)" "$BIN/sluice-worker" > "$log" 2>&1 &
  pid=$!
  check "it answers /healthz" eventually 30 curl -sf "$url/healthz" || return 1
  check "ready: 200" eventually 10 curl -sf "$url/readyz" || return 1
  check "PostgreSQL stops" pg_stop || return 1
  sleep 1.1 # an answer is kept for a second
  body=$(curl -s "$url/readyz")
  check "PostgreSQL down: 503 saying so: $body" \
    [ "$(jq -r '[.status, (.database | length > 0), .kafka] | join("|")' <<<"$body")" = "not ready|true|" ]
  check "alive all the same" curl -sf "$url/healthz"
  check "PostgreSQL starts again" pg_start || return 1
  check "ready again once it answers" eventually 30 curl -sf "$url/readyz"
  kill -STOP "$(cat "$SLUICE_DEV_DIR/broker.pid")"
  sleep 1.1
  body=$(curl -s "$url/readyz")
  kill -CONT "$(cat "$SLUICE_DEV_DIR/broker.pid")"
  check "Kafka silent: 503 saying so: $body" \
    [ "$(jq -r '[.status, (.kafka | startswith("no broker answered")), .database] | join("|")' <<<"$body")" = "not ready|true|" ]
  check "ready again once the broker answers" eventually 20 curl -sf "$url/readyz"
  check "each change logged once" [ "$(grep -c 'not ready:\|ready again:' "$log")" = 4 ]
  kill -TERM "$pid"
  wait "$pid"
  rc=$?
  check "it stops on SIGTERM with status 0 (got $rc)" [ "$rc" = 0 ]
  check "the workers' group settles again" eventually 30 settled
}

# A worker or an approver whose topics are missing refuses to start, naming
# one, rather than relying on topics being created when first used.
t_missing_topics() {
  local out rc prefix="t$RANDOM."
  out=$(SLUICE_TOPIC_PREFIX=$prefix timeout 30 "$BIN/sluice-worker" 2>&1)
  rc=$?
  check "a worker whose topics are missing exits with status 1 (got $rc)" [ "$rc" = 1 ]
  check "naming one: $out" grep -q "topic ${prefix}runs does not exist" <<<"$out"
  out=$(SLUICE_TOPIC_PREFIX=$prefix SLUICE_API_TOKENS=ops:secret timeout 30 "$BIN/sluice-approver" 2>&1)
  rc=$?
  check "so does an approver (got $rc)" [ "$rc" = 1 ]
  check "naming one: $out" grep -q "topic ${prefix}.* does not exist" <<<"$out"
}

# `sluice topics create` makes the five topics through Kafka's admin API
# (which the dev broker, librdkafka's mock cluster, does not serve: it makes
# its topics itself), and says of those there already that they exist.
t_topics_create() {
  local out prefix="t$RANDOM."
  out=$("$BIN/sluice" topics create 2>&1)
  check "the stack's topics are there already: $out" grep -q "^exists ${SLUICE_TOPIC_PREFIX}dlq$" <<<"$out"
  out=$(SLUICE_TOPIC_PREFIX=$prefix "$BIN/sluice" topics create --partitions 3 2>&1)
  check "topics create makes them: $out" grep -q "^created ${prefix}dlq$" <<<"$out"
  check "with the partitions asked for" \
    [ "$(kcat -b "$SLUICE_KAFKA_BROKERS" -L -t "${prefix}continues" | grep -c 'partition ')" = 3 ]
  out=$(SLUICE_TOPIC_PREFIX=$prefix "$BIN/sluice" topics create 2>&1)
  check "a second run says they exist: $out" grep -q "^exists ${prefix}runs$" <<<"$out"
}

# Kafka as a company runs it, behind TLS and SASL: a broker of the test's
# own with SASL_SSL listeners (a CA and a broker certificate made here with
# openssl, a SCRAM-SHA-512 user made when its storage is formatted), and a
# worker and an approver of their own (own database) configured through
# SLUICE_KAFKA_* only. A wrong password stops a worker at start-up, named,
# and it consumes nothing; with the right one the seed scenario passes.
# (Apache Kafka only: the test starts it.)
t_sasl_ssl() {
  local dir=$WORK/sasl kafka_pid="" worker_pid="" approver_pid="" rc
  # what the scenario exports is this test's only
  local -x SLUICE_KAFKA_BROKERS SLUICE_KAFKA_SECURITY_PROTOCOL SLUICE_KAFKA_SASL_MECHANISMS \
    SLUICE_KAFKA_SASL_USERNAME SLUICE_KAFKA_SASL_PASSWORD SLUICE_KAFKA_SSL_CA_LOCATION \
    SLUICE_DATABASE_URL=$SLUICE_DATABASE_URL SLUICE_APPROVER_LISTEN SLUICE_API_TOKENS \
    SLUICE_APPROVER_URL SLUICE_API_TOKEN SLUICE_TOOL_LOG=$dir/tool.log
  mkdir -p "$dir"
  sasl_ssl_scenario "$dir"
  rc=$?
  for pid in $worker_pid $approver_pid; do
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  [ -z "$SLUICE_KAFKA_SASL_PASSWORD" ] ||
    check "the password is in no log of the worker or the approver" \
      lacks "$SLUICE_KAFKA_SASL_PASSWORD" "$(cat "$dir/worker.log" "$dir/approver.log" 2>/dev/null)"
  [ -n "$kafka_pid" ] && kill -KILL "$kafka_pid" 2>/dev/null && wait "$kafka_pid" 2>/dev/null
  return $rc
}

# t_sasl_ssl's steps, in DIR; sets the pids t_sasl_ssl stops.
sasl_ssl_scenario() {
  local dir=$1 pw="scram-$RANDOM$RANDOM" wrong="wrong-$RANDOM$RANDOM" db="sasl_$RANDOM"
  local port cport cluster out rc rid
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=sluice-test-ca -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
      -keyout "$dir/broker.key" -out "$dir/broker.csr" 2>/dev/null &&
    openssl x509 -req -in "$dir/broker.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -days 1 \
      -extfile <(echo 'subjectAltName=IP:127.0.0.1') -out "$dir/broker.pem" 2>/dev/null &&
    openssl pkcs8 -topk8 -nocrypt -in "$dir/broker.key" -out "$dir/keystore.pem" &&
    cat "$dir/broker.pem" >> "$dir/keystore.pem"
  check "openssl made a CA and the broker's certificate" [ -s "$dir/keystore.pem" ] || return 1
  port=$(free_port)
  cport=$(free_port)
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=SASL_SSL://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=SASL_SSL://127.0.0.1:$port
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="sluice" password="$pw";
ssl.keystore.type=PEM
ssl.keystore.location=$dir/keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$dir/ca.pem
log.dirs=$dir/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
PROPS
  cluster=$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))')
  check "the broker's storage is formatted with a SCRAM-SHA-512 user" \
    java -Xmx256m -cp "$ROOT/build/kafka/libs/*" kafka.tools.StorageTool format -t "$cluster" \
    -c "$dir/server.properties" --add-scram "SCRAM-SHA-512=[name=sluice,password=$pw]" || return 1
  java -Xmx512m -Xms128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$ROOT/build/kafka/libs/*" \
    kafka.Kafka "$dir/server.properties" > "$dir/kafka.log" 2>&1 &
  kafka_pid=$!
  SLUICE_KAFKA_BROKERS=127.0.0.1:$port
  SLUICE_KAFKA_SECURITY_PROTOCOL=SASL_SSL
  SLUICE_KAFKA_SASL_MECHANISMS=SCRAM-SHA-512
  SLUICE_KAFKA_SASL_USERNAME=sluice
  SLUICE_KAFKA_SASL_PASSWORD=$pw
  SLUICE_KAFKA_SSL_CA_LOCATION=$dir/ca.pem
  # a database of its own: its relays publish none of the stack's events
  psql -q "$SLUICE_DATABASE_URL" -c "CREATE DATABASE $db" > "$dir/psql.log" 2>&1 &&
    SLUICE_DATABASE_URL=${SLUICE_DATABASE_URL%/*}/$db &&
    "$BIN/sluice" migrate > "$dir/migrate.log" 2>&1
  check "its database is migrated" [ $? = 0 ] || return 1
  check "sluice topics create makes the topics over SASL_SSL" \
    eventually 90 "$BIN/sluice" topics create --replication-factor 1 || return 1
  SLUICE_APPROVER_LISTEN=127.0.0.1:$(free_port)
  SLUICE_API_TOKEN=sasl-token-$RANDOM$RANDOM
  SLUICE_API_TOKENS=sasl:$SLUICE_API_TOKEN
  SLUICE_APPROVER_URL=http://$SLUICE_APPROVER_LISTEN
  rid=$("$BIN/sluice" submit --agent data-admin --input "Delete all data for user U-7001." 2>"$dir/submit.log")
  check "a run is submitted over SASL_SSL" [ -n "$rid" ] || return 1
  out=$(SLUICE_KAFKA_SASL_PASSWORD=$wrong timeout 60 "$BIN/sluice-worker" 2>&1)
  rc=$?
  check "a worker with a wrong password exits with status 1 (got $rc)" [ "$rc" = 1 ]
  check "saying Kafka refused its login: $(grep -m1 refused <<<"$out")" \
    grep -q "Kafka refused the login: .*SASL authentication error" <<<"$out"
  check "the wrong password is printed nowhere" lacks "$wrong" "$out"
  check "and it consumed nothing" \
    [ "$(psql -Atq "$SLUICE_DATABASE_URL" -c 'SELECT count(*) FROM runs')" = 0 ]
  "$BIN/sluice-worker" > "$dir/worker.log" 2>&1 &
  worker_pid=$!
  "$BIN/sluice-approver" > "$dir/approver.log" 2>&1 &
  approver_pid=$!
  check "the run submitted before pauses once the right worker is up" \
    eventually 60 run_is "$rid" paused || return 1
  printf '%s\n' "SLUICE_KAFKA_BROKERS=$SLUICE_KAFKA_BROKERS" "SLUICE_DATABASE_URL=$SLUICE_DATABASE_URL" \
    "SLUICE_TOPIC_PREFIX=$SLUICE_TOPIC_PREFIX" "SLUICE_APPROVER_URL=$SLUICE_APPROVER_URL" \
    "SLUICE_API_TOKEN=$SLUICE_API_TOKEN" > "$dir/stack.env"
  out=$(SLUICE_BIN=$BIN "$ROOT/scripts/demo" --env-file "$dir/stack.env" 2>&1)
  check "the seed scenario passes over SASL_SSL: $out" grep -q "All checks passed" <<<"$out"
  check "step 2 saw zero approvals" grep -q "Total approvals before resolution: 0" <<<"$out"
  check "the seed's tool ran once" [ "$(grep -c U-99887 "$SLUICE_TOOL_LOG")" = 1 ]
}
