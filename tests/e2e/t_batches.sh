# Approvals at batch scale (DESIGN.md, "Batches"): policies on a tool that
# decide its requirements as a person would, or ask more of the people who
# do.

# scale USER ARGS: submits a run of policy-ops, as USER, whose model calls
# scale_service with ARGS (JSON); prints the run id.
scale() { "$BIN/sluice" submit --agent policy-ops --user-id "$1" --input "call scale_service $2"; }

# requirement_of RUN_ID JQ: JQ over the run's first requirement.
requirement_of() { api GET "/v1/runs/$1" | jq -r ".requirements[0] | $2"; }

# ledger_entry RUN_ID KIND: "actor decision policy_sha256" of the run's entry of KIND.
ledger_entry() {
  psql -AtXq "$SLUICE_DATABASE_URL" -c "SELECT actor || ' ' || coalesce(body->>'decision', '-')
    || ' ' || coalesce(body->>'policy_sha256', '-') FROM ledger WHERE run_id = '$1' AND kind = '$2'"
}

# receipt_field RUN_ID JQ: JQ over the payload of the run's first
# requirement's receipt.
receipt_field() {
  requirement_of "$1" .receipt | cut -d. -f2 | tr '_-' '/+' | { cat; echo '=='; } | tr -d '\n' |
    base64 -d 2>/dev/null | jq -r "$2"
}

# Policies decide as a person would: a small change approved by policy
# (approval row, ledger entry with the agents file's digest, a receipt the
# worker checks, the tool run once); one over the budget rejected with the
# rule's note (the tool never runs, the model is told); a prod change needs
# two of group sre, whoever else may approve the tool; a rule on the run's
# user; a run no rule matches waits for a person.
t_policies() {
  local rid req sha ann bob carl out log=$WORK/policies-approver.log
  sha=$(sha256sum "$SLUICE_AGENTS" | cut -d' ' -f1)

  rid=$(scale zoe '{"service":"pol-small","replicas":2}')
  check "a small change is approved by policy small and the run completes" \
    eventually 30 run_is "$rid" completed || return 1
  check "its requirement: resolved by policy:small, confirmed, with the rule's note: $(requirement_of "$rid" '[.status, .resolved_by, .confirmed, .note] | tostring')" \
    [ "$(requirement_of "$rid" '[.status, .resolved_by, .confirmed, .note] | tostring')" = '["resolved","policy:small",true,"small enough"]' ]
  check "the tool ran once" [ "$(grep -c '"pol-small"' "$SLUICE_TOOL_LOG")" = 1 ]
  check "the approval: approved by policy:small, with the agents file's digest" \
    [ "$(approval_of "$rid" '.data[0] | .status + " " + .resolved_by + " " + .resolution_data.policy_sha256')" = "approved policy:small $sha" ]
  check "the receipt is the policy's: $(receipt_field "$rid" .decided_by)" \
    [ "$(receipt_field "$rid" '[.decided_by, .decision] | join(" ")')" = "policy:small approved" ]
  check "the ledger: created, resolved, executed" \
    eventually 10 kinds_are "$rid" requirement.created,requirement.resolved,tool.executed
  check "its resolved entry: by policy:small, approved, the digest: $(ledger_entry "$rid" requirement.resolved)" \
    [ "$(ledger_entry "$rid" requirement.resolved)" = "policy:small approved $sha" ]

  rid=$(scale zoe '{"service":"pol-big","replicas":2,"amount":20000}')
  check "a change over the budget is rejected by policy over-budget and the run completes" \
    eventually 30 run_is "$rid" completed || return 1
  check "rejected by policy:over-budget, with its note" \
    [ "$(requirement_of "$rid" '[.resolved_by, .confirmed, .note] | tostring')" = '["policy:over-budget",false,"over the limit"]' ]
  check "the tool never ran" [ "$(grep -c '"pol-big"' "$SLUICE_TOOL_LOG")" = 0 ]
  check "the approval says rejected" [ "$(approval_of "$rid" '.data[0].status')" = rejected ]
  check "the ledger: created, resolved (rejected)" \
    eventually 10 kinds_are "$rid" requirement.created,requirement.resolved
  check "by the policy: $(ledger_entry "$rid" requirement.resolved)" \
    [ "$(ledger_entry "$rid" requirement.resolved)" = "policy:over-budget rejected $sha" ]

  rid=$(scale zoe '{"service":"pol-free","replicas":7}')
  check "a change no rule matches waits for a person" eventually 30 run_is "$rid" paused || return 1
  sleep 1
  check "still pending, no policy named" \
    [ "$(requirement_of "$rid" '[.status, .quorum, .policy] | tostring')" = '["pending",1,null]' ]
  check "a person confirms it" confirm_pending "$rid"
  check "and the run completes" eventually 30 run_is "$rid" completed

  # prod: two of group sre, whoever else may approve the tool
  access_begin policies
  access_principal ann approver && ann=$TOKEN
  access_principal bob approver && bob=$TOKEN
  access_principal carl approver && carl=$TOKEN
  check "the approver starts" access_approver \
    "$(access_file 'map(if .name != "carl" then .groups = ["sre"] else . end)')" "$log" || return 1
  rid=$(scale zoe '{"service":"pol-prod","replicas":5,"env":"prod"}')
  check "a prod change pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  check "the rule is recorded with it: quorum 2, group sre" \
    eventually 10 eval '[ "$(requirement_of "$rid" "[.quorum, .policy.name, .policy.approvers.groups[0]] | tostring")" = "[2,\"prod\",\"sre\"]" ]'
  check "carl, an approver outside sre, may not decide it: 403" \
    [ "$(as "$carl" POST "/v1/requirements/$req/confirm" '{}')" = 403 ]
  check "saying why: $(cat "$WORK/as.body")" grep -q "policy prod of tool scale_service requires its approvers" "$WORK/as.body"
  as "$carl" GET "/v1/requirements/$req" > /dev/null
  check "and the API says he may not" [ "$(jq .may_decide "$WORK/as.body")" = false ]
  check "ann of sre votes yes: 200" [ "$(as "$ann" POST "/v1/requirements/$req/confirm" '{}')" = 200 ]
  check "1 of 2: still pending" [ "$(jq -r .status "$WORK/as.body")" = pending ]
  check "bob of sre votes yes: 200" [ "$(as "$bob" POST "/v1/requirements/$req/confirm" '{}')" = 200 ]
  check "the run completes" eventually 30 run_is "$rid" completed
  check "the tool ran once" [ "$(grep -c '"pol-prod"' "$SLUICE_TOOL_LOG")" = 1 ]
  check "the approval lists both votes" \
    [ "$(approval_of "$rid" '[.data[0].status, (.data[0].resolution_data.votes | map(.voter) | join(","))] | join(" ")')" = "approved ann,bob" ]

  # a rule on the run's user
  rid=$(scale bot-7 '{"service":"pol-bot","replicas":5}')
  check "a bot's change is rejected by policy bots" eventually 30 run_is "$rid" completed
  check "by policy:bots" [ "$(requirement_of "$rid" .resolved_by)" = policy:bots ]
  check "the tool never ran" [ "$(grep -c '"pol-bot"' "$SLUICE_TOOL_LOG")" = 0 ]
  access_approver_stop
  check "the approvers log what the policies did" \
    grep -qE "approved by policy:small|rejected by policy:(over-budget|bots)" "$log" "$SLUICE_DEV_DIR/approver.log"

  out=$("$BIN/sluice" policy test --agent policy-ops --tool scale_service --args '{"service":"x","replicas":5,"env":"prod"}')
  check "sluice policy test names the rule that would decide a call: $out" \
    [ "$(jq -c '[.policy, .effect, .quorum, .approvers.groups]' <<<"$out")" = '["prod","require",2,["sre"]]' ]
  out=$("$BIN/sluice" policy test --agent policy-ops --tool scale_service --args '{"replicas":9}' --user-id bot-2)
  check "a rule on the user: $out" [ "$(jq -c '[.policy, .effect, .note]' <<<"$out")" = '["bots","reject","no bots"]' ]
  check "none when no rule matches" \
    [ "$("$BIN/sluice" policy test --agent policy-ops --tool scale_service --args '{"replicas":9}' | jq -c '[.policy, .policies_sha256]')" = "[null,\"$sha\"]" ]
  jq '(.agents[] | select(.id == "policy-ops") | .tools[0].policies[1].when) = {"/env": {"like": "prod"}}' \
    "$SLUICE_AGENTS" > "$WORK/bad-policy.json"
  out=$(SLUICE_AGENTS=$WORK/bad-policy.json SLUICE_API_TOKENS=admin:0123456789abcdef0123456789abcdef \
    timeout 20 "$BIN/sluice-approver" 2>&1)
  check "an approver given a bad rule stops at start-up, naming it: $out" \
    grep -q "SLUICE_AGENTS: agent policy-ops: tool scale_service: policy prod: when: /env must be one comparison" <<<"$out"
}

# ops RUN_USER SERVICE REPLICAS: a run of ops-admin (no policies) whose
# model asks to scale SERVICE; prints the run id.
ops() {
  "$BIN/sluice" submit --agent ops-admin --user-id "$1" \
    --input "call scale_service {\"service\":\"$2\",\"replicas\":$3}"
}

# Bulk decisions: a filter (run ids and an argument) picks the pending
# requirements; a dry run counts them and shows a sample; a real one
# decides each as if alone (its receipt, its ledger entry, the caller's own
# run refused and said why, a quorum tool only voted on); the CLI too; bad
# requests 400, a submitter 403.
t_bulk_decisions() {
  local ann bob sam a=() b c q ids out log=$WORK/bulk-approver.log
  access_begin bulk
  access_principal ann approver && ann=$TOKEN
  access_principal bob approver && bob=$TOKEN
  access_principal sam submitter && sam=$TOKEN
  check "the approver starts" access_approver "$(access_file)" "$log" || return 1
  for i in 1 2 3 4; do a+=("$(ops zoe "bulk-a$i" 2)"); done
  b=$(ops zoe bulk-b 9)
  c=$(ops ann bulk-c 2)
  for r in "${a[@]}" "$b" "$c"; do
    check "run ${r:0:13}… pauses" eventually 30 run_is "$r" paused || return 1
  done
  ids=$(printf '%s\n' "${a[@]}" "$b" "$c" | jq -R . | jq -sc .)

  check "a dry run: 200" [ "$(as "$ann" POST /v1/requirements/decide \
    "{\"filter\":{\"run_ids\":$ids,\"tool_name\":\"scale_service\",\"args\":{\"/replicas\":2}},\"decision\":\"confirm\",\"dry_run\":true}")" = 200 ]
  check "it counts the five with 2 replicas and shows them: $(jq -c '[.matched, (.sample | length)]' "$WORK/as.body")" \
    [ "$(jq -c '[.matched, (.sample | map(.tool_args.service) | sort)]' "$WORK/as.body")" = '[5,["bulk-a1","bulk-a2","bulk-a3","bulk-a4","bulk-c"]]' ]
  check "and decides nothing" [ "$(requirement_of "${a[0]}" .status)" = pending ]

  check "the decision: 200" [ "$(as "$ann" POST /v1/requirements/decide \
    "{\"filter\":{\"run_ids\":$ids,\"args\":{\"/replicas\":2}},\"decision\":\"confirm\",\"note\":\"scaled in bulk\"}")" = 200 ]
  check "four decided, ann's own run refused, saying why: $(jq -c '[.matched, (.decided | length), .refused[0].status]' "$WORK/as.body")" \
    [ "$(jq -c '[.matched, (.decided | length), (.voted | length), (.refused | map(.status))]' "$WORK/as.body")" = '[5,4,0,["forbidden"]]' ]
  check "the refusal names the rule" grep -q "the run is ann's own" <<<"$(jq -r '.refused[0].error' "$WORK/as.body")"
  for r in "${a[@]}"; do
    check "run ${r:0:13}… completes" eventually 30 run_is "$r" completed
  done
  check "each tool ran once" [ "$(grep -c '"bulk-a[1-4]"' "$SLUICE_TOOL_LOG")" = 4 ]
  check "each decision is ann's, with the note and a receipt" \
    [ "$(for r in "${a[@]}"; do requirement_of "$r" '[.resolved_by, .note, (.receipt | length > 0)] | tostring'; done | sort -u)" = '["ann","scaled in bulk",true]' ]
  check "and in the ledger as ann's" eventually 10 kinds_are "${a[0]}" requirement.created,requirement.resolved,tool.executed
  check "the filtered-out run and ann's own still wait" [ "$(run_status "$b") $(run_status "$c")" = "paused paused" ]

  out=$(SLUICE_API_TOKEN=$bob SLUICE_APPROVER_URL=$ACCESS_URL "$BIN/sluice" requirements decide \
    --filter "{\"run_ids\":[\"$b\",\"$c\"]}" --decision reject --note "not today")
  check "the CLI: bob rejects the other two: $out" [ "$(jq -c '[.matched, (.decided | length)]' <<<"$out")" = '[2,2]' ]
  check "both runs complete without their tools" eventually 30 run_is "$c" completed
  check "neither tool ran" [ "$(grep -c '"bulk-[bc]"' "$SLUICE_TOOL_LOG")" = 0 ]
  out=$(SLUICE_API_TOKEN=$bob SLUICE_APPROVER_URL=$ACCESS_URL "$BIN/sluice" requirements decide \
    --filter "{\"run_ids\":[\"$b\"]}" --decision confirm --dry-run)
  check "nothing pending matches any more: $out" [ "$(jq .matched <<<"$out")" = 0 ]

  q=$("$BIN/sluice" submit --agent quorum-admin --user-id zoe --input "Delete all data for user B-1901.")
  check "a quorum run pauses" eventually 30 run_is "$q" paused || return 1
  check "ann's bulk confirm is a vote" [ "$(as "$ann" POST /v1/requirements/decide \
    "{\"filter\":{\"run_ids\":[\"$q\"]},\"decision\":\"confirm\"}")" = 200 ]
  check "listed as voted: $(cat "$WORK/as.body")" [ "$(jq -c '[(.decided | length), (.voted | length)]' "$WORK/as.body")" = '[0,1]' ]
  check "bob's meets the quorum" [ "$(as "$bob" POST /v1/requirements/decide \
    "{\"filter\":{\"run_ids\":[\"$q\"]},\"decision\":\"confirm\"}")" = 200 ]
  check "the quorum run completes" eventually 30 run_is "$q" completed

  check "an empty filter: 400" [ "$(as "$ann" POST /v1/requirements/decide '{"filter":{},"decision":"confirm"}')" = 400 ]
  check "saying so" grep -q "filter must be an object naming at least one" "$WORK/as.body"
  check "an unknown criterion: 400" [ "$(as "$ann" POST /v1/requirements/decide '{"filter":{"user":"x"},"decision":"confirm"}')" = 400 ]
  check "a decision that is neither: 400" [ "$(as "$ann" POST /v1/requirements/decide '{"filter":{"tool_name":"x"},"decision":"maybe"}')" = 400 ]
  check "a time that is not one: 400" [ "$(as "$ann" POST /v1/requirements/decide '{"filter":{"created_before":"not a time"},"decision":"confirm"}')" = 400 ]
  check "an argument that is not a pointer: 400" [ "$(as "$ann" POST /v1/requirements/decide '{"filter":{"args":{"replicas":2}},"decision":"confirm"}')" = 400 ]
  check "a submitter may not: 403" [ "$(as "$sam" POST /v1/requirements/decide '{"filter":{"tool_name":"x"},"decision":"confirm"}')" = 403 ]
  access_approver_stop
}

# "Decide many" in the inbox, in Chromium: the count first, then "Approve
# all N" decides exactly those.
t_inbox_bulk() {
  local r=() out
  for i in 1 2 3; do r+=("$(ops zoe "inbox-bulk-$i" 4)"); done
  for x in "${r[@]}"; do
    check "run ${x:0:13}… pauses" eventually 30 run_is "$x" paused || return 1
  done
  # other tests' runs may wait on scale_service too, none with 4 replicas
  out=$(node tests/browser/inbox_bulk.mjs "$SLUICE_APPROVER_URL" "$SLUICE_API_TOKEN" scale_service \
    '{"/replicas": 4}' 3 "$WORK/inbox-bulk.png" 2>&1)
  check "the inbox counts three, then approves all three: $out" grep -q '^ok: approved with a click' <<<"$out"
  for x in "${r[@]}"; do
    check "run ${x:0:13}… completes" eventually 30 run_is "$x" completed
  done
  check "each tool ran once" [ "$(grep -c '"inbox-bulk-[123]"' "$SLUICE_TOOL_LOG")" = 3 ]
  check "each with the note" \
    [ "$(for x in "${r[@]}"; do requirement_of "$x" .note; done | sort -u)" = "all at once" ]
}

# A finished run says how each of its requirements was decided: the
# completed event and GET /v1/runs/{id} list the decisions (who, a person or
# a policy; when; what; the note), and its approval rows' run_status follows
# the run to its end rather than saying "paused" for ever.
t_run_decisions() {
  local rid req by p c
  rid=$(submit data-admin "Delete all data for user D-1901.")
  check "the run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  check "confirmed with a note" [ "$(api POST "/v1/requirements/$req/confirm" '{"note":"checked the ticket"}' | jq -r .status)" = resolved ]
  check "the run completes" eventually 30 run_is "$rid" completed || return 1
  by=$(requirement_of "$rid" .resolved_by)
  check "the completed event lists the decision: who, what, the note" eventually 10 topic_has sluice.results \
    ".subject == \"$rid\" and .type == \"sluice.run.completed\" and (.data.decisions | length) == 1 and .data.decisions[0].requirement_id == \"$req\" and .data.decisions[0].decision == \"approved\" and .data.decisions[0].resolved_by == \"$by\" and .data.decisions[0].note == \"checked the ticket\" and .data.decisions[0].resolved_at != null"
  check "and so does GET /v1/runs/{id}" \
    [ "$(api GET "/v1/runs/$rid" | jq -c '.decisions | map([.tool_name, .decision, .resolved_by, .note])')" = "[[\"delete_user_data\",\"approved\",\"$by\",\"checked the ticket\"]]" ]
  check "its approval row says the run completed" [ "$(approval_of "$rid" '.data[0].run_status')" = completed ]

  p=$(scale zoe '{"service":"dec-small","replicas":1}')
  check "a policy's run completes" eventually 30 run_is "$p" completed || return 1
  check "its event names the policy" eventually 10 topic_has sluice.results \
    ".subject == \"$p\" and .data.decisions[0].resolved_by == \"policy:small\" and .data.decisions[0].decision == \"approved\""
  check "its approval row: completed" [ "$(approval_of "$p" '.data[0].run_status')" = completed ]

  c=$(scale zoe '{"service":"dec-cancel","replicas":8}')
  check "a run to cancel pauses" eventually 30 run_is "$c" paused || return 1
  check "its required approval opens with the run paused" [ "$(approval_of "$c" '.data[0].run_status')" = paused ]
  check "cancelled" [ "$(api POST "/v1/runs/$c/cancel" '{"reason":"not needed"}' | jq -r .status)" = cancelled ]
  check "its approval row: cancelled" [ "$(approval_of "$c" '.data[0].run_status')" = cancelled ]
  check "the failed event lists the cancelled requirement" eventually 10 topic_has sluice.results \
    ".subject == \"$c\" and .type == \"sluice.run.failed\" and .data.decisions[0].decision == \"cancelled\" and (.data.decisions[0].note | test(\"not needed\"))"
}

# gate_pending: the gated-batch agent's pending requirements now.
gate_pending() {
  psql -AtXq "$SLUICE_DATABASE_URL" -c "SELECT count(*) FROM requirements q JOIN runs u
    ON u.run_id = q.run_id WHERE q.status = 'pending' AND u.agent_id = 'gated-batch'"
}

# decide_slowly PATTERN N FILTER_FN: one person deciding slowly: every 0.2 s
# (400 times at most) confirms in bulk what the filter FILTER_FN prints
# picks, until N runs whose id is LIKE PATTERN have completed; prints how
# many did.
decide_slowly() {
  local done=0 rounds=0
  while [ "$rounds" -lt 400 ]; do
    rounds=$((rounds + 1))
    done=$(psql -AtXq "$SLUICE_DATABASE_URL" -c \
      "SELECT count(*) FROM runs WHERE run_id LIKE '$1' AND status = 'completed'")
    [ "$done" = "$2" ] && break
    api POST /v1/requirements/decide "{\"filter\":$("$3"),\"decision\":\"confirm\"}" > /dev/null
    sleep 0.2
  done
  echo "$done"
}

# ten_gated: a filter of the ten oldest pending requirements of gated-batch.
ten_gated() {
  api POST /v1/requirements/decide '{"filter":{"agent_id":"gated-batch"},"decision":"confirm","dry_run":true}' |
    jq -c '{ids: [.sample[].id]}'
}

# sg_waiting: a filter of the requirements of runs SG_IDS waiting 0.3 s.
sg_waiting() {
  printf '{"run_ids":%s,"created_before":"%s"}' "$SG_IDS" "$(date -u -d '-0.3 seconds' +%Y-%m-%dT%H:%M:%S.%3NZ)"
}

# gate_pending_reaches N: the gated-batch agent has N pending or more.
gate_pending_reaches() { [ "$(gate_pending)" -ge "$1" ]; }

# Back-pressure on people: 500 runs of an agent with max_pending_approvals
# 50, on three workers, while one person decides ten at a time: the
# pending count, sampled all along, never passes 50; the other runs wait
# to start (logged, counted in a worker's /metrics, the pending count in
# the approver's); another agent's run goes through meanwhile; all 500
# complete, each tool run once.
t_back_pressure() {
  local port wlog=$WORK/gated-worker.log wpid spid peak=0 done=0 other m
  port=$(free_port)
  env -u SLUICE_API_TOKEN SLUICE_WORKER_LISTEN=127.0.0.1:$port \
    SLUICE_DATABASE_URL="$(db_as sluice_worker)" "$BIN/sluice-worker" > "$wlog" 2>&1 &
  wpid=$!
  check "a third worker starts" eventually 20 curl -sf "http://127.0.0.1:$port/healthz" || return 1
  # a sampler of the pending count, every 50 ms
  ( while :; do gate_pending; sleep 0.05; done > "$WORK/gate.samples" ) &
  spid=$!
  for i in $(seq 1 500); do
    printf 'gate-%s-%s:{"specversion":"1.0","id":"gate-ev-%s-%s","source":"test","type":"sluice.run.requested","data":{"agent_id":"gated-batch","input":"Delete all data for user BP-%s.","run_id":"gate-%s-%s"}}\n' \
      "$i" "$$" "$i" "$$" "$i" "$i" "$$"
  done | kcat -b "$SLUICE_KAFKA_BROKERS" -P -t sluice.runs -K:
  check "the first 50 pause" eventually 60 gate_pending_reaches 50 || { kill "$spid" "$wpid"; return 1; }
  sleep 2
  check "and no more: $(gate_pending) pending" [ "$(gate_pending)" = 50 ]
  other=$(submit data-admin "Delete all data for user BP-OTHER.")
  check "another agent's run is not held up" eventually 30 run_is "$other" paused
  check "and is decided" confirm_pending "$other"
  m=$(curl -s "http://127.0.0.1:$port/metrics")
  check "the third worker counts deferred starts: $(grep deferred <<<"$m" | tr '\n' ' ')" \
    [ "$(awk '/^sluice_worker_runs_deferred_total/ {print ($2 > 0)}' <<<"$m")" = 1 ]
  check "the approver shows the pending count" \
    grep -q '^sluice_approver_pending_requirements{agent_id="gated-batch"} 50$' <<<"$(curl -sf "$SLUICE_APPROVER_URL/metrics")"
  check "the workers log the deferral" grep -qh "of agent gated-batch: start deferred" "$wlog" "$SLUICE_DEV_DIR"/worker-*.log
  done=$(decide_slowly "gate-%-$$" 500 ten_gated)
  kill "$spid"
  wait "$spid" 2>/dev/null
  peak=$(sort -n "$WORK/gate.samples" | tail -1)
  check "all 500 complete" [ "$done" = 500 ]
  check "the pending count never passed 50: at most $peak in $(wc -l < "$WORK/gate.samples") samples" [ "$peak" -le 50 ]
  check "each tool ran once" \
    [ "$(grep -o '"BP-[0-9]*"' "$SLUICE_TOOL_LOG" | sort | uniq -c | awk '$1 != 1' | wc -l) $(grep -c '"BP-[0-9]*"' "$SLUICE_TOOL_LOG")" = "0 500" ]
  check "none is held any more" [ "$(psql -AtXq "$SLUICE_DATABASE_URL" -c "SELECT count(*) FROM run_gate")" = 0 ]
  kill -TERM "$wpid"
  wait "$wpid"
}

# grant_of RUN_ID: the id of the grant that decided the run's latest requirement.
granted_by_grant() { api GET "/v1/runs/$1" | jq -r '.requirements[-1].resolved_by'; }

# Grants ("always allow for this run / session"): a confirmation with a
# grant approves the tool's later calls in that run, or in that session
# when their arguments match, each recorded as the grant's (resolved_by,
# ledger, receipt); other sessions and other arguments still wait for a
# person; listed; revoked only by whoever granted it (or an admin), after
# which a person decides again; a grant is refused on a reject, on a tool
# that needs a quorum, from someone who may not decide the tool, and when
# malformed.
t_grants() {
  local ann bob carl rid req gid s=grant-s-$$ r1 r2 r3 r4 r5 q out log=$WORK/grants-approver.log
  access_begin grants
  access_principal ann approver && ann=$TOKEN
  access_principal bob approver && bob=$TOKEN
  access_principal carl approver && carl=$TOKEN
  check "the approver starts" access_approver "$(access_file)" "$log" || return 1

  # scope run: the run's second call of the tool is approved by the grant
  rid=$("$BIN/sluice" submit --agent ops-admin --user-id zoe --input \
    'call restart_service {"service":"gr-1","next":"call restart_service {\"service\":\"gr-2\"}"}')
  check "a run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  check "ann confirms with a grant for the run: 200" \
    [ "$(as "$ann" POST "/v1/requirements/$req/confirm" '{"note":"both","grant":{"scope":"run","ttl_s":600}}')" = 200 ]
  check "the run completes without another person" eventually 30 run_is "$rid" completed || return 1
  check "both calls ran" [ "$(grep -c '"gr-[12]"' "$SLUICE_TOOL_LOG")" = 2 ]
  gid=$(as "$ann" GET "/v1/grants?run_id=$rid" > /dev/null; jq -r '.data[0].id' "$WORK/as.body")
  check "the grant is listed: ann's, for the run, active" \
    [ "$(jq -c '.data[0] | [.scope, .scope_id == "'"$rid"'", .granted_by, .tool_name, .active]' "$WORK/as.body")" = '["run",true,"ann","restart_service",true]' ]
  check "the second requirement was approved by it" [ "$(granted_by_grant "$rid")" = "grant:$gid" ]
  check "its receipt says so" \
    [ "$(api GET "/v1/runs/$rid" | jq -r '.requirements[-1].receipt' | cut -d. -f2 | tr '_-' '/+' | { cat; echo '=='; } | tr -d '\n' | base64 -d 2>/dev/null | jq -r .decided_by)" = "grant:$gid" ]
  check "the ledger: the grant made with ann's decision, used by the next" eventually 10 eval \
    '[ "$(psql -AtXq "$SLUICE_DATABASE_URL" -c "SELECT string_agg(actor || '"'"':'"'"' || coalesce(body->'"'"'grant'"'"'->>'"'"'scope'"'"', body->>'"'"'grant_id'"'"', '"'"'-'"'"'), '"'"','"'"' ORDER BY seq) FROM ledger WHERE run_id = '"'"'$rid'"'"' AND kind = '"'"'requirement.resolved'"'"'")" = "ann:run,grant:$gid:$gid" ]'

  # scope session, with an argument to match
  r1=$("$BIN/sluice" submit --agent ops-admin --user-id zoe --session-id "$s" --input 'call scale_service {"service":"gs-1","replicas":2}')
  check "a session's run pauses" eventually 30 run_is "$r1" paused || return 1
  out=$(SLUICE_API_TOKEN=$ann SLUICE_APPROVER_URL=$ACCESS_URL "$BIN/sluice" requirements confirm \
    "$(pending_requirement "$r1")" --grant '{"scope":"session","ttl_s":600,"args":{"/replicas":2}}' 2>&1) || true
  check "the CLI confirms with a grant for the session" [ "$(jq -r .status <<<"$out")" = resolved ]
  check "the run completes" eventually 30 run_is "$r1" completed
  r2=$("$BIN/sluice" submit --agent ops-admin --user-id zoe --session-id "$s" --input 'call scale_service {"service":"gs-2","replicas":2}')
  r3=$("$BIN/sluice" submit --agent ops-admin --user-id zoe --session-id "$s" --input 'call scale_service {"service":"gs-3","replicas":5}')
  r4=$("$BIN/sluice" submit --agent ops-admin --user-id zoe --session-id "$s-other" --input 'call scale_service {"service":"gs-4","replicas":2}')
  check "the session's next run with 2 replicas is approved by the grant" eventually 30 run_is "$r2" completed
  check "with 5 replicas it waits for a person" eventually 30 run_is "$r3" paused
  check "in another session it waits too" eventually 30 run_is "$r4" paused
  sleep 1
  check "both still pending" [ "$(run_status "$r3") $(run_status "$r4")" = "paused paused" ]
  gid=$(granted_by_grant "$r2")
  gid=${gid#grant:}
  out=$(SLUICE_API_TOKEN=$bob SLUICE_APPROVER_URL=$ACCESS_URL "$BIN/sluice" grants list --session-id "$s" --active true 2>&1) || true
  check "sluice grants list shows it: $out" [ "$(jq -r '.data[0].id' <<<"$out")" = "$gid" ]
  check "bob may not revoke ann's grant: 403" [ "$(as "$bob" DELETE "/v1/grants/$gid")" = 403 ]
  out=$(SLUICE_API_TOKEN=$ann SLUICE_APPROVER_URL=$ACCESS_URL "$BIN/sluice" grants revoke "$gid" 2>&1) || true
  check "ann revokes it with the CLI" [ "$(jq -c '[.active, .revoked_by]' <<<"$out")" = '[false,"ann"]' ]
  check "twice: 409" [ "$(as "$ann" DELETE "/v1/grants/$gid")" = 409 ]
  check "an unknown grant: 404" [ "$(as "$ann" DELETE "/v1/grants/no-such-grant")" = 404 ]
  r5=$("$BIN/sluice" submit --agent ops-admin --user-id zoe --session-id "$s" --input 'call scale_service {"service":"gs-5","replicas":2}')
  check "after the revocation a person decides again" eventually 30 run_is "$r5" paused
  sleep 1
  check "still paused" run_is "$r5" paused
  for x in "$r3" "$r4" "$r5"; do
    check "decided by bob" [ "$(as "$bob" POST "/v1/requirements/$(pending_requirement "$x")/reject" '{}')" = 200 ]
  done

  # refusals: nothing granted
  q=$("$BIN/sluice" submit --agent quorum-admin --user-id zoe --input "Delete all data for user GR-1.")
  check "a quorum run pauses" eventually 30 run_is "$q" paused || return 1
  req=$(pending_requirement "$q")
  check "a grant on a tool that needs a quorum: 400" \
    [ "$(as "$ann" POST "/v1/requirements/$req/confirm" '{"grant":{"scope":"run","ttl_s":60}}')" = 400 ]
  check "saying why" grep -q "a grant is one person's decision" "$WORK/as.body"
  check "a grant with a rejection: 400" \
    [ "$(as "$ann" POST "/v1/requirements/$req/reject" '{"grant":{"scope":"run","ttl_s":60}}')" = 400 ]
  check "a scope that is neither: 400" \
    [ "$(as "$ann" POST "/v1/requirements/$req/confirm" '{"grant":{"scope":"tenant","ttl_s":60}}')" = 400 ]
  check "no time limit: 400" \
    [ "$(as "$ann" POST "/v1/requirements/$req/confirm" '{"grant":{"scope":"run"}}')" = 400 ]
  check "an argument that is not a pointer: 400" \
    [ "$(as "$ann" POST "/v1/requirements/$req/confirm" '{"grant":{"scope":"run","ttl_s":60,"args":{"x":1}}}')" = 400 ]
  rid=$("$BIN/sluice" submit --agent guarded-admin --user-id zoe --input "Delete all data for user GR-2.")
  check "a guarded run pauses" eventually 30 run_is "$rid" paused || return 1
  check "carl, not among its approvers, may not grant: 403" \
    [ "$(as "$carl" POST "/v1/requirements/$(pending_requirement "$rid")/confirm" '{"grant":{"scope":"session","ttl_s":60}}')" = 403 ]
  as "$ann" GET "/v1/grants?run_id=$rid" > /dev/null
  check "and nothing was granted" [ "$(jq '.data | length' "$WORK/as.body")" = 0 ]
  check "ann may" [ "$(as "$ann" POST "/v1/requirements/$(pending_requirement "$rid")/confirm" '{}')" = 200 ]
  check "bob votes no on the quorum run" [ "$(as "$bob" POST "/v1/requirements/$req/reject" '{}')" = 200 ]
  access_approver_stop
}

# run_is_at URL RUN_ID STATUS: the run has STATUS, as the approver at URL says.
run_is_at() {
  [ "$(curl -s -H "Authorization: Bearer $SLUICE_API_TOKEN" "$1/v1/runs/$2" | jq -r '.status // empty')" = "$3" ]
}

# all_partitions_in LOG: an approver's last assignment, in its log, is of
# both its topics' partitions (8 each on the dev broker).
all_partitions_in() { grep "partition(s) assigned" "$1" | tail -1 | grep -q ": 16 partition"; }

# hook_log LOG JQ: the JSON lines of a receiver's log that JQ selects, compact.
hook_log() { jq -c "select($2)" "$1" 2>/dev/null; }
# hook_got LOG JQ: some line of the log satisfies JQ.
hook_got() { [ -n "$(hook_log "$1" "$2")" ]; }

# Notifications: webhooks for requirement.pending, .decided, .expired,
# run.completed and run.failed, each delivered from its own outbox, signed
# per Standard Webhooks (every request verified by the receiver), with a
# link to the requirement in the inbox; a receiver that answers 503 at first
# gets its notification once it answers; nothing is delivered twice to a
# receiver that took it; a webhook whose secret is not set stops the
# approver, named.
t_webhooks() {
  local p1 p2 l1=$WORK/hooks-1.log l2=$WORK/hooks-2.log pid1 pid2 stack ours port rid req x c out
  local log=$WORK/hooks-approver.log secret
  secret="whsec_$(head -c 24 /dev/urandom | base64)"
  p1=$(free_port)
  p2=$(free_port)
  python3 tests/e2e/tools/webhook_receiver.py "$p1" "$l1" "$secret" > /dev/null 2>&1 &
  pid1=$!
  python3 tests/e2e/tools/webhook_receiver.py "$p2" "$l2" "$secret" 3 > /dev/null 2>&1 &
  pid2=$!
  jq -n --arg a "http://127.0.0.1:$p1/hooks" --arg b "http://127.0.0.1:$p2/hooks" \
    '[{url: $a, events: ["requirement.pending", "requirement.decided", "requirement.expired",
                         "run.completed", "run.failed"], secret_env: "HOOK_SECRET"},
      {url: $b, events: ["requirement.decided"], secret_env: "HOOK_SECRET"}]' > "$WORK/hooks.json"
  out=$(env -u HOOK_SECRET SLUICE_WEBHOOKS=$WORK/hooks.json SLUICE_API_TOKENS=admin:0123456789abcdef0123456789abcdef \
    timeout 20 "$BIN/sluice-approver" 2>&1)
  check "without its secret set the approver stops, naming it: $out" \
    grep -q "SLUICE_WEBHOOKS: webhooks\[0\]: HOOK_SECRET is not set" <<<"$out"

  # this test's approver alone consumes the paused events: the stack's is
  # stopped (SIGSTOP) until its session is over and the group gives its
  # partitions to the other
  port=$(free_port)
  HOOK_SECRET=$secret SLUICE_WEBHOOKS=$WORK/hooks.json SLUICE_PUBLIC_URL=https://inbox.example/ \
    SLUICE_API_TOKENS="admin:$SLUICE_API_TOKEN" \
    SLUICE_APPROVER_LISTEN=127.0.0.1:$port SLUICE_DATABASE_URL="$(db_as sluice_approver)" \
    "$BIN/sluice-approver" > "$log" 2>&1 &
  ours=$!
  stack=$(cat "$SLUICE_DEV_DIR/approver.pid")
  # the end, also of a failure midway: the stack's approver goes on, the
  # receivers and this approver stop
  hooks_done() {
    kill -CONT "$stack"
    kill -TERM "$ours" 2>/dev/null
    wait "$ours"
    kill "$pid1" "$pid2"
  }
  check "an approver with webhooks starts" eventually 20 curl -sf "http://127.0.0.1:$port/healthz" ||
    { hooks_done; return 1; }
  kill -STOP "$stack"
  check "it takes all the stack approver's partitions (paused events and results)" \
    eventually 40 all_partitions_in "$log"
  sleep 2
  x="http://127.0.0.1:$port"

  rid=$(submit data-admin "Delete all data for user W-1001.")
  check "a run pauses" eventually 30 run_is_at "$x" "$rid" paused || { hooks_done; return 1; }
  req=$(curl -s -H "Authorization: Bearer $SLUICE_API_TOKEN" "$x/v1/requirements?status=pending&run_id=$rid" | jq -r '.data[0].id')
  check "requirement.pending arrives, verified, with its link" eventually 20 hook_got "$l1" \
    ".type == \"requirement.pending\" and .verified and .data.id == \"$req\" and .data.link == \"https://inbox.example/?requirement=$req\""
  out=$(node tests/browser/inbox_link.mjs "$x/?requirement=$req" "$SLUICE_API_TOKEN" "$req" 2>&1)
  check "its link, opened in Chromium, shows the requirement first: $out" grep -q '^ok:' <<<"$out"
  check "it is confirmed" [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $SLUICE_API_TOKEN" \
    -H 'Content-Type: application/json' -d '{"note":"hooked"}' "$x/v1/requirements/$req/confirm")" = 200 ]
  check "requirement.decided arrives, verified" eventually 20 hook_got "$l1" \
    ".type == \"requirement.decided\" and .verified and .data.id == \"$req\" and .data.status == \"resolved\" and .data.note == \"hooked\""
  check "run.completed arrives with its decisions" eventually 30 hook_got "$l1" \
    ".type == \"run.completed\" and .verified and .data.run_id == \"$rid\" and .data.decisions[0].decision == \"approved\""
  check "the second receiver answers 503 three times, then takes it" eventually 30 hook_got "$l2" \
    ".type == \"requirement.decided\" and .verified and .status == 200 and .data.id == \"$req\""
  check "the three refusals came first, all of the same message" \
    [ "$(hook_log "$l2" ".data.id == \"$req\"" | jq -s -c 'map(.status)')" = '[503,503,503,200]' ]

  c=$(submit ops-admin 'call drop_database {"name":"hooks-9"}')
  check "a requirement that times out" eventually 30 run_is_at "$x" "$c" completed
  check "requirement.expired arrives" eventually 20 hook_got "$l1" \
    ".type == \"requirement.expired\" and .verified and .data.run_id == \"$c\""
  c=$(submit data-admin "Delete all data for user W-1002.")
  check "a run to cancel pauses" eventually 30 run_is_at "$x" "$c" paused
  check "cancelled" [ "$(curl -s -X POST -H "Authorization: Bearer $SLUICE_API_TOKEN" -H 'Content-Type: application/json' \
    -d '{}' "$x/v1/runs/$c/cancel" | jq -r .status)" = cancelled ]
  check "run.failed arrives" eventually 30 hook_got "$l1" ".type == \"run.failed\" and .verified and .data.run_id == \"$c\""
  check "every request verified" [ "$(jq -s 'map(select(.verified | not)) | length' "$l1" "$l2")" = 0 ]
  check "none delivered twice" [ "$(jq -s '[.[] | select(.status == 200) | .id] | length - (unique | length)' "$l1")" = 0 ]
  check "the approver counts them" \
    grep -q '^sluice_approver_webhooks_retried_total [3-9]' <<<"$(curl -s "$x/metrics")"
  hooks_done
  check "the stack's approver works again" eventually 30 curl -sf "$SLUICE_APPROVER_URL/readyz"
}

# Expiry actions and escalation: a tool whose run is cancelled when no one
# answers in time; one that reminds after 1 s and adds group sre to its
# approvers after 2 s (each recorded on the requirement), rejected at 6 s by
# default, but approved then for the calls a require policy with on_timeout
# approve matches.
t_expiry_actions() {
  local ann bob a b c k out log=$WORK/timeout-approver.log
  access_begin timeouts
  access_principal ann approver && ann=$TOKEN
  access_principal bob approver && bob=$TOKEN
  check "the approver starts" access_approver \
    "$(access_file 'map(if .name == "bob" then .groups = ["sre"] else . end)')" "$log" || return 1
  k=$("$BIN/sluice" submit --agent timeout-ops --user-id zoe --input 'call cancel_me {"service":"to-k"}')
  a=$("$BIN/sluice" submit --agent timeout-ops --user-id zoe --input 'call risky_change {"service":"to-a","level":"high"}')
  b=$("$BIN/sluice" submit --agent timeout-ops --user-id zoe --input 'call risky_change {"service":"to-b","level":"high"}')
  c=$("$BIN/sluice" submit --agent timeout-ops --user-id zoe --input 'call risky_change {"service":"to-c","level":"low"}')
  for r in "$k" "$a" "$b" "$c"; do
    check "run ${r:0:13}… pauses" eventually 30 run_is "$r" paused || return 1
  done
  check "bob, outside the tool's approvers, may not decide yet: 403" \
    [ "$(as "$bob" POST "/v1/requirements/$(pending_requirement "$a")/confirm" '{}')" = 403 ]
  check "a reminder is recorded after a second" eventually 10 eval \
    '[ "$(requirement_of "$a" ".reminded_at != null")" = true ]'
  check "after two, the escalation: group sre among the approvers" eventually 10 eval \
    '[ "$(requirement_of "$a" "[.escalated_at != null, .approvers.groups]" | jq -c .)" = "[true,[\"sre\"]]" ]'
  check "now bob may: 200" [ "$(as "$bob" POST "/v1/requirements/$(pending_requirement "$a")/confirm" '{}')" = 200 ]
  check "that run completes, its tool run" eventually 30 run_is "$a" completed
  check "no one answers the cancel_me call: its run is cancelled" eventually 20 run_is "$k" cancelled
  check "its requirement says so" [ "$(requirement_of "$k" '[.status, .resolved_by] | join(" ")')" = "cancelled sluice" ]
  check "no one answers a high one: it expires (rejected) and its run goes on" eventually 20 run_is "$b" completed
  check "expired" [ "$(requirement_of "$b" .status)" = expired ]
  check "no one answers a low one: policy low-risk approves it as its time runs out" eventually 20 run_is "$c" completed
  check "approved by the policy, saying why" \
    [ "$(requirement_of "$c" '[.status, .resolved_by, .confirmed, (.note | test("no one decided in time"))] | tostring')" = '["resolved","policy:low-risk",true,true]' ]
  check "the tools of the approved calls ran, the others not" \
    [ "$(grep -c '"to-[abck]"' "$SLUICE_TOOL_LOG") $(grep -c '"to-a"' "$SLUICE_TOOL_LOG") $(grep -c '"to-c"' "$SLUICE_TOOL_LOG")" = "2 1 1" ]
  check "the approvers log the reminders, escalations and time-outs" \
    grep -qE "escalated|timed out" "$log" "$SLUICE_DEV_DIR/approver.log"
  access_approver_stop
}

# all_pending: every pending requirement of the stack.
all_pending() { psql -AtXq "$SLUICE_DATABASE_URL" -c "SELECT count(*) FROM requirements WHERE status = 'pending'"; }

# Back-pressure for the whole stack: an agents file's own
# max_pending_approvals counts every agent's requirements together. The
# stack's workers are stopped (SIGSTOP) until this test's worker, with such
# a file, has all the partitions; 100 runs of two agents, decided in bulk a
# little at a time: the stack's pending count never passes its limit (those
# other tests left pending, plus 20), and all 100 complete.
t_back_pressure_stack() {
  local wlog=$WORK/stack-gate-worker.log wpid spid base limit ids i done=0 peak stopped
  base=$(all_pending)
  limit=$((base + 20))
  jq --argjson n "$limit" '.max_pending_approvals = $n' "$SLUICE_AGENTS" > "$WORK/stack-gate-agents.json"
  stopped=$(cat "$SLUICE_DEV_DIR"/worker-*.pid)
  kill -STOP $stopped
  env -u SLUICE_API_TOKEN SLUICE_AGENTS="$WORK/stack-gate-agents.json" \
    SLUICE_DATABASE_URL="$(db_as sluice_worker)" "$BIN/sluice-worker" > "$wlog" 2>&1 &
  wpid=$!
  check "the worker takes every partition of its topics" eventually 40 \
    grep -q ": 16 partition(s) assigned" "$wlog" || { kill -CONT $stopped; kill "$wpid"; return 1; }
  ( while :; do all_pending; sleep 0.05; done > "$WORK/stack-gate.samples" ) &
  spid=$!
  for i in $(seq 1 50); do
    printf 'sg-d-%s-%s:{"specversion":"1.0","id":"sg-ev-d-%s-%s","source":"test","type":"sluice.run.requested","data":{"agent_id":"data-admin","input":"Delete all data for user SG-%s.","run_id":"sg-d-%s-%s"}}\n' "$i" "$$" "$i" "$$" "$i" "$i" "$$"
    printf 'sg-o-%s-%s:{"specversion":"1.0","id":"sg-ev-o-%s-%s","source":"test","type":"sluice.run.requested","data":{"agent_id":"ops-admin","input":"call scale_service {\\"service\\":\\"sg-%s\\",\\"replicas\\":2}","run_id":"sg-o-%s-%s"}}\n' "$i" "$$" "$i" "$$" "$i" "$i" "$$"
  done | kcat -b "$SLUICE_KAFKA_BROKERS" -P -t sluice.runs -K:
  ids=$(for i in $(seq 1 50); do printf 'sg-d-%s-%s\nsg-o-%s-%s\n' "$i" "$$" "$i" "$$"; done | jq -R . | jq -sc .)
  check "the stack fills up to its limit" eventually 60 eval '[ "$(all_pending)" -ge '"$limit"' ]'
  sleep 2
  check "and no further: $(all_pending) of $limit" [ "$(all_pending)" = "$limit" ]
  SG_IDS=$ids
  done=$(decide_slowly "sg-%-$$" 100 sg_waiting)
  kill "$spid"
  wait "$spid" 2>/dev/null
  peak=$(sort -n "$WORK/stack-gate.samples" | tail -1)
  check "all 100 complete" [ "$done" = 100 ]
  check "the stack's pending count never passed $limit: at most $peak" [ "$peak" -le "$limit" ]
  check "the worker logged deferred starts" grep -q "start deferred" "$wlog"
  kill -TERM "$wpid"
  wait "$wpid"
  kill -CONT $stopped
  check "the stack's workers go on" eventually 30 run_is "$(confirm_seed_run)" completed
}

# confirm_seed_run: a seed run submitted, paused and confirmed; prints its id.
confirm_seed_run() {
  local rid
  rid=$(submit data-admin "Delete all data for user SG-AFTER.")
  eventually 30 run_is "$rid" paused && confirm_pending "$rid"
  echo "$rid"
}
