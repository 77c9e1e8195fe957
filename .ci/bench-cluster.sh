# .ci/bench-cluster.sh: the cluster rows that load both nodes, sourced by
# .ci/bench after its single-node burst (BENCH_CLUSTER=1). .ci/bench has
# started the two cluster nodes (P_C1, P_C2) on the shared NATS server and
# measured "cluster tapped (2 nodes)" through node 1 inside its rounds; here
# wrk loads both nodes at once (half the connections each), and a burst
# through both nodes with two webhooks measures the delivery drain time.
#   BENCH_CLUSTER_ROUNDS=3     rounds of the two-node row

cluster_both_nodes() {
  local rounds=${BENCH_CLUSTER_ROUNDS:-3} round d out0 out1 w0 w1 f
  local url1=http://127.0.0.1:$P_C1/orders url2=http://127.0.0.1:$P_C2/orders
  local half=$((CONNS / 2 > 0 ? CONNS / 2 : 1)) t1=$((THREADS / 2 > 0 ? THREADS / 2 : 1))
  local -a rps=() p99=()
  say ""
  say "== cluster, both nodes loaded: wrk -t$t1 -c$half on each node at once, $rounds round(s)"
  for ((round = 1; round <= rounds; round++)); do
    out0=$DIR/wrk-cluster-both-$round-1.txt out1=$DIR/wrk-cluster-both-$round-2.txt
    wrk -t"$t1" -c"$half" -d"$DURATION" --timeout 5s --latency -s testdata/bench/post.lua "$url1" >"$out0" 2>&1 &
    w0=$!
    wrk -t"$t1" -c"$half" -d"$DURATION" --timeout 5s --latency -s testdata/bench/post.lua "$url2" >"$out1" 2>&1 &
    w1=$!
    wait "$w0" || die "wrk failed against $url1: $(cat "$out0")"
    wait "$w1" || die "wrk failed against $url2: $(cat "$out1")"
    for f in "$out0" "$out1"; do
      [[ -z $(wrk_errors "$f") ]] || { invalid=1; say "INVALID round $round (both nodes): $(wrk_errors "$f")"; }
    done
    rps+=("$(awk '/^Requests\/sec:/ { s += $2 } END { printf "%.0f", s }' "$out0" "$out1")")
    p99+=("$(awk -v a="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out0")")" \
      -v b="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out1")")" 'BEGIN { printf "%.3f", (a > b ? a : b) }')")
    d=$(wait_drained)
    [[ $d == timeout ]] && { invalid=1; say "INVALID round $round (both nodes): not drained within $DRAIN_TIMEOUT s"; }
    printf '  round %s  %-32s %8.0f req/s  p99 %7.3f ms  drained %s s\n' "$round" "cluster, both nodes" "${rps[-1]}" "${p99[-1]}" "$d"
  done
  read -r CL_BOTH_RPS CL_BOTH_P99 < <(for i in "${!rps[@]}"; do printf '%s %s\n' "${rps[i]}" "${p99[i]}"; done | median)

  # Burst through both nodes; a second webhook, created on node 2, makes
  # two deliveries per event, split between the nodes' partitions.
  add_webhook /hook/c2 "http://127.0.0.1:$P_C2ADMIN"
  sleep 1 # the registry reaches the other node within a second
  local ev0 recv0 t_end
  ev0=$(metric eventtap_events_total) recv0=$(received)
  out0=$DIR/wrk-cluster-burst-1.txt out1=$DIR/wrk-cluster-burst-2.txt
  wrk -t"$t1" -c"$half" -d"$BURST" --timeout 5s -s testdata/bench/post.lua "$url1" >"$out0" 2>&1 &
  w0=$!
  wrk -t"$t1" -c"$half" -d"$BURST" --timeout 5s -s testdata/bench/post.lua "$url2" >"$out1" 2>&1 &
  w1=$!
  wait "$w0" || die "wrk failed in the cluster burst: $(cat "$out0")"
  wait "$w1" || die "wrk failed in the cluster burst: $(cat "$out1")"
  CL_DRAIN=$(wait_drained)
  [[ $CL_DRAIN == timeout ]] && invalid=1
  CL_BURST_EVENTS=$(($(metric eventtap_events_total) - ev0))
  CL_BURST_DELIVERED=$(($(received) - recv0))
  if ((CL_BURST_DELIVERED < 2 * CL_BURST_EVENTS)); then
    say "WARN cluster burst: $CL_BURST_DELIVERED of $((2 * CL_BURST_EVENTS)) deliveries received"
    invalid=1
  fi
  say "cluster, both nodes loaded: $CL_BOTH_RPS req/s summed, p99 $CL_BOTH_P99 ms (the worse node's; median round)"
  say "cluster burst through both nodes, 2 webhooks: $CL_BURST_EVENTS events, $CL_BURST_DELIVERED deliveries received; drained $CL_DRAIN s after the burst"
}
