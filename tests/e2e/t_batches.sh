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
    [ "$("$BIN/sluice" policy test --agent policy-ops --tool scale_service --args '{"replicas":9}' | jq -c '[.policy, .agents_sha256]')" = "[null,\"$sha\"]" ]
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
