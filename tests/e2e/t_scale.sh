# Scale: a worker keeps many runs in flight.

# 200 runs of an agent whose model answers after 3 s, submitted at once to
# a stack of two workers, each with 8 database threads: a worker that held a
# thread per run (16 in all) would have at most 16 calls at the model at
# once; these workers hand waiting runs to curl multi and keep taking more.
t_many_in_flight() {
  local n=200 prefix="inflight-$RANDOM" peak done
  check "the slow model is up" eventually 10 curl -sf "$SLOW_MODEL_URL/healthz" || return 1
  for i in $(seq 1 $n); do
    printf '%s-%d\t{"specversion":"1.0","id":"%s-%d","source":"test","type":"sluice.run.requested","subject":"%s-%d","data":{"agent_id":"slow-model","input":"Say hello %d.","run_id":"%s-%d"}}\n' \
      "$prefix" "$i" "$prefix" "$i" "$prefix" "$i" "$i" "$prefix" "$i"
  done | kcat -b "$SLUICE_KAFKA_BROKERS" -P -t sluice.runs -K $'\t'
  completed() {
    [ "$(psql "$SLUICE_DATABASE_URL" -Atc "SELECT count(*) FROM runs WHERE run_id LIKE '$prefix-%' AND status = 'completed'")" = "$n" ]
  }
  check "all $n runs complete" eventually 120 completed || return 1
  peak=$(curl -sf "$SLOW_MODEL_URL/stats" | jq -r .peak_in_flight)
  check "the model held at least 150 of the calls at once (it held $peak)" test "$peak" -ge 150
  check "no run failed" test "$(psql "$SLUICE_DATABASE_URL" -Atc "SELECT count(*) FROM runs WHERE run_id LIKE '$prefix-%' AND status <> 'completed'")" = 0
}
