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
