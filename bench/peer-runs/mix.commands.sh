#!/bin/bash
# As run on 2026-12-04 for bench/RESULTS.md §10: "before" is commit 1825bb8
# built in /work/tmp-before/build, "after" is ca6e0c7 in /work/main/build
# (both RelWithDebInfo). Rounds 1-3 as below; rounds 4-6 with the loops
# changed to `for round in 4 5 6` and `for side in after before`.
# The mix and the mix with 1,000 watchers (run-suite's commands), before and after, alternating.
set -u
LOADGEN=/work/main/build/bench/taskd_loadgen
OUT=/tmp/mix-r; mkdir -p $OUT; rm -f $OUT/*.jsonl
W=/tmp/mix-w
run() {  # run SIDE BINARY NAME loadgen-flags...
  local side=$1 bin=$2 name=$3; shift 3
  rm -rf $W; mkdir -p $W
  taskset -c 1 $bin --listen=127.0.0.1:0 --http_listen=127.0.0.1:0 --db=$W/t.db --max_watchers=30000 --max_watchers_per_tenant=0 2> $W/log &
  local pid=$!
  for _ in $(seq 200); do grep -q "taskd serving" $W/log && break; sleep 0.05; done
  local port=$(sed -n 's/.*taskd serving address=[^ ]* port=\([0-9]*\).*/\1/p' $W/log)
  echo "$side $name port=$port $(date +%T) load=$(cut -d' ' -f1 /proc/loadavg)"
  taskset -c 0 $LOADGEN --server=127.0.0.1:$port --server_pid=$pid --label=$name --json_out=$OUT/$side.jsonl --warmup=2s --duration=10s "$@" > $W/out 2>&1 || cat $W/out
  kill -TERM $pid; wait $pid
}
for round in 1 2 3; do
  for side in before after; do
    if [ $side = before ]; then B=/work/tmp-before/build/server/taskd; else B=/work/main/build/server/taskd; fi
    run $side-$round $B mix-64 --scenario=mix --concurrency=64 --prefill=10000
    run $side-$round $B mix-64-1000-watchers --scenario=mix --concurrency=64 --prefill=10000 --watchers=1000 --watch_filter=tenant
  done
done
echo DONE $(date +%T)
