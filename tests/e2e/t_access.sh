# Who may decide (DESIGN.md): identities from an access file of token
# hashes (SLUICE_ACCESS), roles enforced on every route; a refusal is a
# 403 that says why, changes nothing, and is logged and counted.

# access_begin NAME: starts the access file $WORK/NAME.json, empty.
access_begin() {
  ACCESS_FILE=$WORK/$1.json
  ACCESS_ENTRIES=$WORK/$1.entries
  : > "$ACCESS_ENTRIES"
}

# access_file [JQ]: writes the access file from the entries made so far
# (JQ, when given, edits the list of principals); prints its path.
access_file() {
  jq -s "{principals: (. | ${1:-.})}" "$ACCESS_ENTRIES" > "$ACCESS_FILE" && echo "$ACCESS_FILE"
}

# access_principal NAME ROLES: makes a token for NAME with `sluice token
# new`, appends its entry to the access file's and sets TOKEN.
access_principal() {
  local out
  out=$("$BIN/sluice" token new "$1" --roles "$2" 2>/dev/null)
  TOKEN=$(awk '$1 == "token" {print $2}' <<<"$out")
  awk '$1 == "principal" {print $2}' <<<"$out" >> "$ACCESS_ENTRIES"
}

# as TOKEN METHOD PATH: the HTTP status of a call to the access test's
# approver with TOKEN (its body in $WORK/as.body).
as() {
  curl -s -o "$WORK/as.body" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $1" \
    -H 'Content-Type: application/json' ${4:+--data "$4"} "$ACCESS_URL$3"
}

# access_approver FILE LOG: starts an approver of the test's own on the
# access file FILE alone (no SLUICE_API_TOKENS), logging to LOG; sets
# ACCESS_URL and ACCESS_PID; true once it answers.
access_approver() {
  local port
  port=$(free_port)
  ACCESS_URL=http://127.0.0.1:$port
  env -u SLUICE_API_TOKENS SLUICE_ACCESS="$1" SLUICE_APPROVER_LISTEN=127.0.0.1:$port \
    SLUICE_DATABASE_URL="$(db_as sluice_approver)" "$BIN/sluice-approver" > "$2" 2>&1 &
  ACCESS_PID=$!
  eventually 20 curl -sf "$ACCESS_URL/healthz"
}

# access_approver_stop: stops it (SIGTERM) and waits for it.
access_approver_stop() {
  kill -TERM "$ACCESS_PID"
  wait "$ACCESS_PID"
}

t_access_roles() {
  local sub appr aud adm rid req out rc log=$WORK/access-approver.log
  access_begin access
  access_principal sam submitter && sub=$TOKEN
  access_principal ann approver && appr=$TOKEN
  access_principal audrey auditor && aud=$TOKEN
  access_principal ada admin && adm=$TOKEN
  check "the access file holds hashes, not tokens" lacks "$appr|$aud|$sub|$adm" "$(cat "$(access_file)")"
  check "an approver starts on SLUICE_ACCESS alone" access_approver "$ACCESS_FILE" "$log" || return 1
  rid=$(submit data-admin "Delete all data for user A-1701.")
  check "run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  check "an unknown token: 401" [ "$(as "not-a-token" GET /v1/requirements)" = 401 ]
  check "the auditor reads requirements" [ "$(as "$aud" GET "/v1/requirements?run_id=$rid")" = 200 ]
  check "the auditor reads the run" [ "$(as "$aud" GET "/v1/runs/$rid")" = 200 ]
  check "the auditor may not confirm: 403" [ "$(as "$aud" POST "/v1/requirements/$req/confirm" '{}')" = 403 ]
  check "saying why: $(cat "$WORK/as.body")" \
    grep -q '"audrey (roles auditor) may not POST /v1/requirements: that takes one of approver,admin"' "$WORK/as.body"
  check "nor resolve its approval by Agno's route" \
    [ "$(as "$aud" POST "/v1/approvals/$req/resolve" '{"status":"approved"}')" = 403 ]
  check "the submitter lists requirements: 200" [ "$(as "$sub" GET "/v1/requirements?run_id=$rid")" = 200 ]
  check "but sees none of a run not its own" [ "$(jq '.data | length' "$WORK/as.body")" = 0 ]
  check "nor the run itself: 404" [ "$(as "$sub" GET "/v1/runs/$rid")" = 404 ]
  check "nor confirm" [ "$(as "$sub" POST "/v1/requirements/$req/confirm" '{}')" = 403 ]
  check "the approver may not cancel a run (admins do): 403" \
    [ "$(as "$appr" POST "/v1/runs/$rid/cancel" '{}')" = 403 ]
  check "nothing changed: still pending" [ "$(pending_requirement "$rid")" = "$req" ]
  out=$(SLUICE_APPROVER_URL=$ACCESS_URL SLUICE_API_TOKEN=$aud "$BIN/sluice" requirements confirm "$req" 2>&1)
  rc=$?
  check "the CLI with the auditor's token fails (got $rc): $out" [ "$rc" = 1 ]
  check "saying why" grep -q "may not POST" <<<"$out"
  check "the approver confirms: 200" [ "$(as "$appr" POST "/v1/requirements/$req/confirm" '{}')" = 200 ]
  check "as ann" [ "$(jq -r .resolved_by "$WORK/as.body")" = ann ]
  check "the run completes" eventually 30 run_is "$rid" completed
  rid=$(submit data-admin "Delete all data for user A-1702.")
  check "another run pauses" eventually 30 run_is "$rid" paused || return 1
  check "the admin cancels it: 200" [ "$(as "$adm" POST "/v1/runs/$rid/cancel" '{}')" = 200 ]
  check "each refusal logged with the identity" \
    [ "$(grep -c 'refused: \(audrey\|sam\|ann\) (roles' "$log")" = 5 ]
  check "and counted" grep -qx 'sluice_approver_http_refused_total 5' <<<"$(curl -s "$ACCESS_URL/metrics")"
  access_approver_stop
}

# An access file the approver cannot use stops it at start-up, naming the
# entry and the field.
t_access_file_invalid() {
  local out rc
  printf '{"principals":[{"name":"x","token_sha256":"%064d","roles":["boss"]}]}' 0 > "$WORK/bad-access.json"
  out=$(env -u SLUICE_API_TOKENS SLUICE_ACCESS="$WORK/bad-access.json" timeout 20 "$BIN/sluice-approver" 2>&1)
  rc=$?
  check "an unknown role: exit 1 (got $rc)" [ "$rc" = 1 ]
  check "naming it: $out" grep -q 'principals\[0\] (x): roles\[0\] must be submitter, approver, auditor or admin' <<<"$out"
  printf '{"principals":[{"name":"x","token_sha256":"abc","roles":["admin"]}]}' > "$WORK/bad-access.json"
  out=$(env -u SLUICE_API_TOKENS SLUICE_ACCESS="$WORK/bad-access.json" timeout 20 "$BIN/sluice-approver" 2>&1)
  check "a hash that is not one: $out" grep -q 'token_sha256 must be 64 hex digits' <<<"$out"
  out=$(env -u SLUICE_API_TOKENS timeout 20 "$BIN/sluice-approver" 2>&1)
  rc=$?
  check "no identity at all: exit 1 (got $rc)" [ "$rc" = 1 ]
  check "saying so: $out" grep -q 'no identity: set SLUICE_ACCESS' <<<"$out"
}

# Per tool, who may decide: the run's own user may not (self_approval is
# off by default), and a tool that names its approvers takes only them, by
# name or group. Each refusal is a 403 that says why and changes nothing.
t_access_deciders() {
  local ann bob carl rid req log=$WORK/deciders-approver.log
  access_begin deciders
  access_principal ann approver && ann=$TOKEN
  access_principal bob approver && bob=$TOKEN
  access_principal carl approver && carl=$TOKEN
  # bob is in the sre group
  check "the approver starts" access_approver \
    "$(access_file 'map(if .name == "bob" then .groups = ["sre"] else . end)')" "$log" || return 1

  rid=$("$BIN/sluice" submit --agent guarded-admin --user-id bob --input "Delete all data for user G-1801.")
  check "bob's run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  as "$ann" GET "/v1/requirements?run_id=$rid" > /dev/null
  check "listed as ann's to decide" [ "$(jq '.data[0].may_decide' "$WORK/as.body")" = true ]
  as "$carl" GET "/v1/requirements?run_id=$rid" > /dev/null
  check "not carl's" [ "$(jq '.data[0].may_decide' "$WORK/as.body")" = false ]
  as "$bob" GET "/v1/requirements?run_id=$rid" > /dev/null
  check "nor bob's" [ "$(jq '.data[0].may_decide' "$WORK/as.body")" = false ]
  as "$ann" GET "/v1/approvals/count?user_id=bob" > /dev/null
  check "counted among what ann may decide" [ "$(jq .count "$WORK/as.body")" = 1 ]
  as "$carl" GET "/v1/approvals/count?user_id=bob" > /dev/null
  check "not among what carl may decide" [ "$(jq .count "$WORK/as.body")" = 0 ]
  as "$bob" GET "/v1/approvals/count?user_id=bob" > /dev/null
  check "nor bob, whose run it is" [ "$(jq .count "$WORK/as.body")" = 0 ]
  as "$ann" GET "/v1/requirements?run_id=$rid" > /dev/null
  check "the requirement shows who may decide: $(jq -c '.data[0] | [.approvers, .self_approval]' "$WORK/as.body")" \
    [ "$(jq -c '.data[0] | [.approvers, .self_approval]' "$WORK/as.body")" = '[{"users":["ann"],"groups":["sre"]},false]' ]
  check "carl, not named, may not confirm: 403" [ "$(as "$carl" POST "/v1/requirements/$req/confirm" '{}')" = 403 ]
  check "saying why: $(cat "$WORK/as.body")" grep -q "carl may not decide requirement $req: it is not among tool delete_user_data's approvers" "$WORK/as.body"
  check "bob, in group sre but the run's own user, may not: 403" \
    [ "$(as "$bob" POST "/v1/requirements/$req/confirm" '{}')" = 403 ]
  check "saying why: $(cat "$WORK/as.body")" grep -q "the run is bob's own, and tool delete_user_data does not allow self-approval" "$WORK/as.body"
  check "nor reject it" [ "$(as "$bob" POST "/v1/requirements/$req/reject" '{"note":"mine"}')" = 403 ]
  check "nothing changed: still pending" [ "$(pending_requirement "$rid")" = "$req" ]
  check "ann, named, confirms: 200" [ "$(as "$ann" POST "/v1/requirements/$req/confirm" '{}')" = 200 ]
  check "the run completes" eventually 30 run_is "$rid" completed
  check "its tool ran once" [ "$(tool_calls_for G-1801)" = 1 ]

  rid=$("$BIN/sluice" submit --agent guarded-admin --user-id ann --input "Delete all data for user G-1802.")
  check "ann's run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  check "ann may not decide her own run: 403" [ "$(as "$ann" POST "/v1/requirements/$req/confirm" '{}')" = 403 ]
  as "$ann" GET "/v1/approvals?run_id=$rid" > /dev/null
  check "nor by Agno's resolve of its approval: 403" [ "$(as "$ann" POST \
    "/v1/approvals/$(jq -r '.data[0].id' "$WORK/as.body")/resolve" '{"status":"approved"}')" = 403 ]
  check "bob, by group sre, confirms: 200" [ "$(as "$bob" POST "/v1/requirements/$req/confirm" '{}')" = 200 ]
  check "as bob" [ "$(jq -r .resolved_by "$WORK/as.body")" = bob ]
  check "that run completes" eventually 30 run_is "$rid" completed

  rid=$("$BIN/sluice" submit --agent data-admin --user-id carl --input "Delete all data for user G-1803.")
  check "carl's run of a tool naming no approvers pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  check "carl may not decide his own run: 403" [ "$(as "$carl" POST "/v1/requirements/$req/confirm" '{}')" = 403 ]
  check "any other approver may: 200" [ "$(as "$ann" POST "/v1/requirements/$req/confirm" '{}')" = 200 ]
  check "each refusal logged with the identity" [ "$(grep -c 'refused: \(ann\|bob\|carl\) may not decide' "$log")" = 6 ]
  access_approver_stop
}

# POST /v1/runs: a submitter's run goes out through the outbox with the
# caller's identity as its user_id, never the body's.
t_http_submit() {
  local sub aud rid other log=$WORK/submit-approver.log
  access_begin submit
  access_principal sam submitter && sub=$TOKEN
  access_principal audrey auditor && aud=$TOKEN
  check "the approver starts" access_approver "$(access_file)" "$log" || return 1
  check "a submitter submits a run: 202" [ "$(as "$sub" POST /v1/runs \
    '{"agent_id":"data-admin","input":"Delete all data for user H-1901."}')" = 202 ]
  rid=$(jq -r .run_id "$WORK/as.body")
  check "answering its id: $rid" [ -n "$rid" ] || return 1
  check "published through the outbox" [ "$(psql -AtXq "$SLUICE_DATABASE_URL" -c \
    "SELECT count(*) FROM outbox WHERE topic = '${SLUICE_TOPIC_PREFIX}runs' AND key = '$rid'")" = 1 ]
  check "a worker takes it: it pauses" eventually 30 run_is "$rid" paused || return 1
  check "its user_id is the caller's identity" [ "$(psql -AtXq "$SLUICE_DATABASE_URL" -c \
    "SELECT user_id FROM runs WHERE run_id = '$rid'")" = sam ]
  check "sam reads its own run: 200" [ "$(as "$sub" GET "/v1/runs/$rid")" = 200 ]
  as "$sub" GET "/v1/requirements?status=pending" > /dev/null
  check "and lists only its own requirements: $(jq -c '[.data[].run_id]' "$WORK/as.body")" \
    [ "$(jq -c '[.data[].run_id]' "$WORK/as.body")" = "[\"$rid\"]" ]
  other=$("$BIN/sluice" submit --agent ops-admin --user-id zoe --input 'call restart_service {"service":"h-1901"}')
  check "zoe's run pauses" eventually 30 run_is "$other" paused || return 1
  check "sam may not read zoe's run: 404, not 403" [ "$(as "$sub" GET "/v1/runs/$other")" = 404 ]
  check "nor its requirement: 404" [ "$(as "$sub" GET "/v1/requirements/$(pending_requirement "$other")")" = 404 ]
  check "sam reads its own requirement: 200" [ "$(as "$sub" GET "/v1/requirements/$(pending_requirement "$rid")")" = 200 ]
  check "which sam may not decide" [ "$(jq .may_decide "$WORK/as.body")" = false ]
  as "$sub" GET "/v1/approvals?status=pending" > /dev/null
  check "nor list its approval" lacks "$other" "$(jq -r '.data[].run_id' "$WORK/as.body")"
  as "$aud" GET "/v1/approvals?status=pending&run_id=$other" > /dev/null
  check "which an auditor sees" [ "$(jq -r '.data[0].run_id' "$WORK/as.body")" = "$other" ]
  check "nor read it by id: 404" [ "$(as "$sub" GET "/v1/approvals/$(jq -r '.data[0].id' "$WORK/as.body")")" = 404 ]
  check "zoe's run is cancelled (by the stack's admin)" [ "$(api POST "/v1/runs/$other/cancel" '{}' >/dev/null; http_status)" = 200 ]
  check "its requirement is confirmed" confirm_pending "$rid"
  check_tool_result "$rid" "Done: Deleted data for user H-1901"
  check "a body naming another user_id: 400" [ "$(as "$sub" POST /v1/runs \
    '{"agent_id":"data-admin","user_id":"mallory","input":"Delete all data for user H-1902."}')" = 400 ]
  check "saying why: $(cat "$WORK/as.body")" grep -q "user_id is the caller's identity (sam): leave it out" "$WORK/as.body"
  check "a bad agent id: 400 naming it" [ "$(as "$sub" POST /v1/runs '{"agent_id":"no such agent","input":"x"}')" = 400 ]
  check "($(cat "$WORK/as.body"))" grep -q "agent_id" "$WORK/as.body"
  check "an unknown field: 400" [ "$(as "$sub" POST /v1/runs '{"agent_id":"data-admin","input":"x","priority":9}')" = 400 ]
  check "an auditor may not submit: 403" [ "$(as "$aud" POST /v1/runs '{"agent_id":"data-admin","input":"x"}')" = 403 ]
  sleep 1
  check "none of the refused ones became a run" [ "$(psql -AtXq "$SLUICE_DATABASE_URL" -c \
    "SELECT count(*) FROM outbox WHERE topic = '${SLUICE_TOPIC_PREFIX}runs'")" = 1 ]
  # Agno's initiator rule: a submitter may cancel its own run, unless it
  # waits on a required approval (an admin may)
  as "$sub" POST /v1/runs '{"agent_id":"ops-admin","input":"call restart_service {\"service\":\"h-1903\"}"}' > /dev/null
  rid=$(jq -r .run_id "$WORK/as.body")
  check "sam's run of a tool with a required approval pauses" eventually 30 run_is "$rid" paused || return 1
  check "sam may not cancel it: 403" [ "$(as "$sub" POST "/v1/runs/$rid/cancel" '{}')" = 403 ]
  check "saying why: $(cat "$WORK/as.body")" grep -q "it waits on a required approval, which only an admin may override" "$WORK/as.body"
  check "still paused" run_is "$rid" paused
  check "an admin may: 200" [ "$(api POST "/v1/runs/$rid/cancel" '{}' >/dev/null; http_status)" = 200 ]
  as "$sub" POST /v1/runs '{"agent_id":"data-admin","input":"Delete all data for user H-1904."}' > /dev/null
  rid=$(jq -r .run_id "$WORK/as.body")
  check "sam's run of an audited tool pauses" eventually 30 run_is "$rid" paused || return 1
  check "sam cancels it: 200" [ "$(as "$sub" POST "/v1/runs/$rid/cancel" '{}')" = 200 ]
  check "cancelled" run_is "$rid" cancelled
  check "sam may not cancel zoe's run: 404" [ "$(as "$sub" POST "/v1/runs/$other/cancel" '{}')" = 404 ]
  access_approver_stop
}

# The inbox in Chromium for two identities: one that may not decide the
# requirement (an auditor) sees it with no buttons; one that may approves
# it with a click.
t_inbox_not_yours() {
  local ann aud rid out log=$WORK/inbox-approver.log
  access_begin inbox
  access_principal ann approver && ann=$TOKEN
  access_principal audrey auditor && aud=$TOKEN
  check "the approver starts" access_approver "$(access_file)" "$log" || return 1
  rid=$("$BIN/sluice" submit --agent guarded-admin --user-id bob --input "Delete all data for user I-2001.")
  check "the run pauses" eventually 30 run_is "$rid" paused || return 1
  out=$(node tests/browser/inbox.mjs "$ACCESS_URL" "$ann" "$rid" "$WORK/inbox-ann.png" "$aud" 2>&1)
  check "the browser checks pass: $out" grep -q '^ok: approved with a click' <<<"$out"
  check "including the auditor's view" grep -q '^ok: an identity that may not decide sees no buttons' <<<"$out"
  check "the run completes" eventually 30 run_is "$rid" completed
  check "approved by ann" [ "$(approval_of "$rid" '.data[0].status + " " + .data[0].resolved_by')" = "approved ann" ]
  access_approver_stop
}

# A tool asking for a quorum of 2: one vote per identity, the requirement
# pending until two have confirmed, the first rejection rejects; the
# approval row lists every vote.
t_access_quorum() {
  local ann bob carl rid req out log=$WORK/quorum-approver.log
  access_begin quorum
  access_principal ann approver && ann=$TOKEN
  access_principal bob approver && bob=$TOKEN
  access_principal carl approver && carl=$TOKEN
  check "the approver starts" access_approver "$(access_file)" "$log" || return 1
  rid=$("$BIN/sluice" submit --agent quorum-admin --user-id zoe --input "Delete all data for user Q-2101.")
  check "the run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  check "ann votes yes: 200" [ "$(as "$ann" POST "/v1/requirements/$req/confirm" '{"note":"ok by me"}')" = 200 ]
  check "still pending, 1 of 2: $(jq -c '[.status, .quorum, [.votes[].voter]]' "$WORK/as.body")" \
    [ "$(jq -c '[.status, .quorum, [.votes[].voter]]' "$WORK/as.body")" = '["pending",2,["ann"]]' ]
  check "the run still paused" run_is "$rid" paused
  as "$bob" GET "/v1/requirements/$req" > /dev/null
  check "who may still vote: any approver but ann and zoe (the run's): $(jq -cS .may_still_vote "$WORK/as.body")" \
    [ "$(jq -cS .may_still_vote "$WORK/as.body")" = '{"approvers":null,"except":["ann","zoe"]}' ]
  as "$ann" GET "/v1/requirements?run_id=$rid" > /dev/null
  check "no longer ann's to decide" [ "$(jq '.data[0].may_decide' "$WORK/as.body")" = false ]
  as "$bob" GET "/v1/requirements?run_id=$rid" > /dev/null
  check "still bob's" [ "$(jq '.data[0].may_decide' "$WORK/as.body")" = true ]
  check "ann again: 409" [ "$(as "$ann" POST "/v1/requirements/$req/confirm" '{}')" = 409 ]
  check "saying why" grep -q "ann has already voted on requirement $req" "$WORK/as.body"
  out=$(ROW_TEXT="1 of 2 approvals" node tests/browser/inbox.mjs "$ACCESS_URL" "$bob" "$rid" "$WORK/inbox-quorum.png" 2>&1)
  check "in the inbox, bob sees 1 of 2 and votes yes with a click: $out" grep -q '^ok: approved with a click' <<<"$out"
  check "the row said so" grep -q '^ok: the row shows "1 of 2 approvals"' <<<"$out"
  check "resolved by bob" [ "$(api GET "/v1/runs/$rid" | jq -r '.requirements[0] | .status + " " + .resolved_by')" = "resolved bob" ]
  check "and no one may still vote" [ "$(api GET "/v1/requirements/$req" | jq -c .may_still_vote)" = null ]
  check "a requirement that does not exist: 404" [ "$(as "$bob" GET /v1/requirements/no-such-id)" = 404 ]
  check "the run completes" eventually 30 run_is "$rid" completed
  check "its tool ran once" [ "$(tool_calls_for Q-2101)" = 1 ]
  check "the approval lists both votes: $(approval_of "$rid" '.data[0].resolution_data.votes | tostring')" \
    [ "$(approval_of "$rid" '[.data[0].status, (.data[0].resolution_data.votes | map(.voter + ":" + (.confirmed | tostring)) | join(","))] | join(" ")')" = "approved ann:true,bob:true" ]

  rid=$("$BIN/sluice" submit --agent quorum-admin --user-id zoe --input "Delete all data for user Q-2102.")
  check "another run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  check "ann votes yes" [ "$(as "$ann" POST "/v1/requirements/$req/confirm" '{}')" = 200 ]
  check "carl votes no: 200" [ "$(as "$carl" POST "/v1/requirements/$req/reject" '{"note":"no"}')" = 200 ]
  check "the first rejection rejects" [ "$(jq -r '.status + " " + (.confirmed | tostring)' "$WORK/as.body")" = "resolved false" ]
  check "the run completes without the tool" eventually 30 run_is "$rid" completed
  check "its tool never ran" [ "$(tool_calls_for Q-2102)" = 0 ]
  check "the approval: rejected, both votes" \
    [ "$(approval_of "$rid" '[.data[0].status, (.data[0].resolution_data.votes | map(.voter + ":" + (.confirmed | tostring)) | join(","))] | join(" ")')" = "rejected ann:true,carl:false" ]
  access_approver_stop
}

# denied URL SQL: the statement fails, for want of a grant or by the
# approvals' row policy; prints the error.
denied() {
  local out
  out=$(psql "$1" -v ON_ERROR_STOP=1 -AtXqc "$2" 2>&1) && return 1
  grep -E "permission denied|violates row-level security" <<<"$out"
}

# Each service connects to PostgreSQL as its own role, with only the grants
# it needs (migrations/0009_service_roles.sql): the worker's role cannot
# write a decision, a vote, or an approval row other than a pending one;
# the approver's cannot write tool executions or a run's transcript; the
# reader's only reads. The stack still runs the seed scenario on them.
t_db_roles() {
  local w a r rid req n
  w=$(db_as sluice_worker)
  a=$(db_as sluice_approver)
  r=$(db_as sluice_reader)
  n=$(psql "$SLUICE_DATABASE_URL" -AtXqc "SELECT string_agg(DISTINCT usename, ',' ORDER BY usename)
    FROM pg_stat_activity WHERE datname = current_database() AND usename LIKE 'sluice%'")
  check "the stack's services connect as their roles: $n" \
    grep -q 'sluice_approver,sluice_worker' <<<"$n"
  rid=$(submit data-admin "Delete all data for user U-7706.")
  check "the run pauses" eventually 30 run_is "$rid" paused || return 1
  req=$(pending_requirement "$rid")
  check "the worker's role may not decide a requirement" denied "$w" \
    "UPDATE requirements SET status = 'resolved', confirmed = true, resolved_by = 'mallory' WHERE id = '$req'"
  check "nor vote" denied "$w" \
    "INSERT INTO requirement_votes (requirement_id, voter, confirmed) VALUES ('$req', 'mallory', true)"
  check "nor write an approved approval row" denied "$w" \
    "INSERT INTO approvals (id, run_id, session_id, requirement_id, agent_id, approval_type,
       pause_type, status, tool_name, tool_args) SELECT 'forged-$req', run_id, 's', id, 'a',
       'audit', 'confirmation', 'approved', tool_name, tool_args FROM requirements WHERE id = '$req'"
  check "nor a pending one with a resolution" denied "$w" \
    "INSERT INTO approvals (id, run_id, session_id, requirement_id, agent_id, approval_type,
       pause_type, status, tool_name, tool_args, resolved_by) SELECT 'forged-$req', run_id, 's',
       id, 'a', 'audit', 'confirmation', 'pending', tool_name, tool_args, 'mallory'
       FROM requirements WHERE id = '$req'"
  check "nor resolve an approval row" denied "$w" "UPDATE approvals SET status = 'approved'"
  check "nor delete a requirement" denied "$w" "DELETE FROM requirements WHERE id = '$req'"
  check "the approver's role may not write a tool execution" denied "$a" \
    "INSERT INTO tool_executions (run_id, tool_call_id, tool_name, status, result)
       VALUES ('$rid', 'forged', 'delete_user_data', 'done', 'ok')"
  check "nor mark one done" denied "$a" "UPDATE tool_executions SET status = 'done'"
  check "nor rewrite a run's transcript" denied "$a" \
    "UPDATE runs SET messages = '[]' WHERE run_id = '$rid'"
  check "the reader's role may not change a run" denied "$r" \
    "UPDATE runs SET status = 'failed' WHERE run_id = '$rid'"
  check "and reads approvals" psql "$r" -v ON_ERROR_STOP=1 -AtXqc "SELECT count(*) FROM approvals"
  check "nothing changed: the requirement is pending, no vote, no approval row" \
    [ "$(psql "$SLUICE_DATABASE_URL" -AtXqc "SELECT (SELECT status FROM requirements WHERE id = '$req')
      || (SELECT count(*) FROM requirement_votes WHERE requirement_id = '$req')
      || (SELECT count(*) FROM approvals WHERE run_id = '$rid')")" = pending00 ]
  check "a confirmation through the API" confirm_pending "$rid" || return 1
  check "completes the run" eventually 30 run_is "$rid" completed || return 1
  check "with one approval, approved, audit" [ "$(api GET "/v1/approvals?run_id=$rid" |
    jq -r '[.data[] | .status + "/" + .approval_type] | join(",")')" = approved/audit ]
}

# `sluice migrate` sets the service roles' passwords from the environment,
# hashed before they leave it (SCRAM): the server stores the hash, and the
# password is in neither its catalogue nor its log.
t_db_role_passwords() {
  local pw="pw-$RANDOM-$RANDOM" out stored
  out=$(SLUICE_WORKER_DB_PASSWORD=$pw "$BIN/sluice" migrate 2>&1)
  check "migrate says so: $out" grep -q "set the password of sluice_worker" <<<"$out"
  stored=$(psql "$SLUICE_DATABASE_URL" -AtXqc "SELECT rolpassword FROM pg_authid WHERE rolname = 'sluice_worker'")
  check "the role has a SCRAM hash: ${stored:0:20}" grep -q '^SCRAM-SHA-256\$' <<<"$stored"
  check "the password is not in the server's log" bash -c "! grep -qF '$pw' '$SLUICE_DEV_DIR/postgres.log'"
  check "nor does migrate print it" lacks "$pw" "$out"
}

# jwt KEY ALG KID CLAIMS: a token from tests/e2e/tools/jwt.py, with the
# keys of $WORK/oidc-keys.
jwt() { python3 tests/e2e/tools/jwt.py token "$WORK/oidc-keys" "$@"; }

# OIDC bearer tokens, keys and tokens made with openssl: RS256 and ES256
# tokens of the configured issuer and audience name their holder, whose
# groups give the roles; expired, not yet valid, wrong audience or issuer,
# wrong key, alg none and HS256 keyed with the public key are all 401; the
# JWKS URL is fetched at start and again for a key id it does not know, at
# most once in 10 s; OIDC identities decide, submit and are bound by the
# same rules as the access file's.
t_access_oidc() {
  local log=$WORK/oidc-approver.log port pid now ann ops sam rid req fetches out
  python3 tests/e2e/tools/jwt.py keys "$WORK/oidc-keys" || return 1
  mkdir -p "$WORK/oidc-www" && cp "$WORK/oidc-keys/jwks.json" "$WORK/oidc-www/jwks.json"
  port=$(free_port)
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$WORK/oidc-www" \
    2> "$WORK/oidc-www.log" > /dev/null &
  pid=$!
  check "the JWKS server answers" eventually 10 curl -sf "http://127.0.0.1:$port/" || return 1
  jq -n --arg url "http://127.0.0.1:$port/jwks.json" '{principals: [], oidc: {
      issuer: "https://idp.test", audience: "sluice", jwks_url: $url,
      roles: {sre: ["approver"], ops: ["admin"], staff: ["submitter"]}}}' > "$WORK/oidc.json"
  check "an approver with OIDC alone starts" access_approver "$WORK/oidc.json" "$log" || return 1
  check "fetching the JWKS once" [ "$(grep -c 'GET /jwks.json' "$WORK/oidc-www.log")" = 1 ]
  good='"iss":"https://idp.test","aud":"sluice","exp":"+300"'
  ann=$(jwt rsa-1 RS256 rsa-1 "{$good,\"sub\":\"ann\",\"groups\":[\"sre\"]}")
  ops=$(jwt ec-1 ES256 ec-1 "{$good,\"sub\":\"ops-bot\",\"groups\":[\"ops\"]}")
  sam=$(jwt rsa-1 RS256 rsa-1 "{$good,\"sub\":\"sam\",\"groups\":[\"staff\"]}")
  check "an RS256 token of an approver reads requirements: 200" \
    [ "$(as "$ann" GET /v1/requirements)" = 200 ]
  check "an ES256 token of an admin: 200" [ "$(as "$ops" GET /v1/approvals)" = 200 ]
  check "a token with no role's group: 403" \
    [ "$(as "$(jwt rsa-1 RS256 rsa-1 "{$good,\"sub\":\"bob\"}")" GET /v1/approvals)" = 403 ]
  check "saying so: $(cat "$WORK/as.body")" grep -q "bob (roles none) may not" "$WORK/as.body"
  check "expired: 401" [ "$(as "$(jwt rsa-1 RS256 rsa-1 \
    '{"iss":"https://idp.test","aud":"sluice","exp":"-120","sub":"ann","groups":["ops"]}')" GET /v1/approvals)" = 401 ]
  check "saying so: $(cat "$WORK/as.body")" grep -q "invalid bearer token: it has expired" "$WORK/as.body"
  check "not yet valid: 401" [ "$(as "$(jwt rsa-1 RS256 rsa-1 \
    '{"iss":"https://idp.test","aud":"sluice","exp":"+600","nbf":"+300","sub":"ann","groups":["ops"]}')" GET /v1/approvals)" = 401 ]
  check "another audience: 401" [ "$(as "$(jwt rsa-1 RS256 rsa-1 \
    '{"iss":"https://idp.test","aud":"other","exp":"+300","sub":"ann","groups":["ops"]}')" GET /v1/approvals)" = 401 ]
  check "another issuer: 401" [ "$(as "$(jwt rsa-1 RS256 rsa-1 \
    '{"iss":"https://evil.test","aud":"sluice","exp":"+300","sub":"ann","groups":["ops"]}')" GET /v1/approvals)" = 401 ]
  check "signed by another key under rsa-1's kid: 401" [ "$(as "$(jwt rsa-2 RS256 rsa-1 \
    "{$good,\"sub\":\"mallory\",\"groups\":[\"ops\"]}")" GET /v1/approvals)" = 401 ]
  check "alg none: 401" [ "$(as "$(jwt rsa-1 none rsa-1 \
    "{$good,\"sub\":\"mallory\",\"groups\":[\"ops\"]}")" GET /v1/approvals)" = 401 ]
  check "HS256 keyed with the public key: 401" [ "$(as "$(jwt rsa-1 HS256 rsa-1 \
    "{$good,\"sub\":\"mallory\",\"groups\":[\"ops\"]}")" GET /v1/approvals)" = 401 ]
  check "each refusal logged with its reason" grep -q "invalid bearer token: it has expired" "$log"
  check "never with the token" lacks "${ann%%.*}" "$(cat "$log")"
  # an OIDC identity submits, is its run's user, and may not approve it
  check "sam submits a run: 202" [ "$(as "$sam" POST /v1/runs \
    '{"agent_id":"data-admin","input":"Delete all data for user O-5150."}')" = 202 ]
  rid=$(jq -r .run_id "$WORK/as.body")
  check "it pauses" eventually 30 run_is "$rid" paused || return 1
  check "its user_id is the token's name" [ "$(psql -AtXq "$SLUICE_DATABASE_URL" -c \
    "SELECT user_id FROM runs WHERE run_id = '$rid'")" = sam ]
  req=$(pending_requirement "$rid")
  check "sam, also an approver, may not confirm its own run: 403" [ "$(as "$(jwt rsa-1 RS256 rsa-1 \
    "{$good,\"sub\":\"sam\",\"groups\":[\"staff\",\"sre\"]}")" POST "/v1/requirements/$req/confirm" '{}')" = 403 ]
  check "ann confirms it: 200" [ "$(as "$ann" POST "/v1/requirements/$req/confirm" '{}')" = 200 ]
  check_tool_result "$rid" "Done: Deleted data for user O-5150"
  check "the approval names ann" [ "$(psql -AtXq "$SLUICE_DATABASE_URL" -c \
    "SELECT resolved_by FROM approvals WHERE run_id = '$rid'")" = ann ]
  # rotation: a token under a new kid makes it fetch the JWKS again, once
  cp "$WORK/oidc-keys/jwks-rotated.json" "$WORK/oidc-www/jwks.json"
  sleep 10.5  # past the 10 s between fetches since the start
  fetches=$(grep -c 'GET /jwks.json' "$WORK/oidc-www.log")
  check "a token of the new key rsa-2: 200" [ "$(as "$(jwt rsa-2 RS256 rsa-2 \
    "{$good,\"sub\":\"ann\",\"groups\":[\"sre\"]}")" GET /v1/approvals)" = 200 ]
  check "after one more fetch" [ "$(grep -c 'GET /jwks.json' "$WORK/oidc-www.log")" = $((fetches + 1)) ]
  check "a token of an unknown kid right after: 401" [ "$(as "$(jwt rsa-2 RS256 rsa-3 \
    "{$good,\"sub\":\"ann\",\"groups\":[\"sre\"]}")" GET /v1/approvals)" = 401 ]
  check "with no fetch (at most one in 10 s)" [ "$(grep -c 'GET /jwks.json' "$WORK/oidc-www.log")" = $((fetches + 1)) ]
  check "the old key still works" [ "$(as "$ann" GET /v1/approvals)" = 200 ]
  access_approver_stop
  kill "$pid"
  wait "$pid" 2>/dev/null
  out=$(jq '.oidc.roles.sre = ["boss"]' "$WORK/oidc.json" > "$WORK/oidc-bad.json";
    env -u SLUICE_API_TOKENS SLUICE_ACCESS="$WORK/oidc-bad.json" timeout 20 "$BIN/sluice-approver" 2>&1)
  check "a bad OIDC setting stops the approver, named: $(tail -1 <<<"$out")" \
    grep -q "oidc.roles.sre\[0\] must be" <<<"$out"
}
