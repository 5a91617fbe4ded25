#!/bin/bash
# As run on 2026-12-04 for bench/RESULTS.md §11: "before" is commit 1825bb8
# built in /work/tmp-before/build, "after" is 939ecf2 in /work/main/build
# (both RelWithDebInfo).
set -u
LOADGEN=/work/main/build/bench/taskd_loadgen
OUT=/tmp/hb-r; mkdir -p $OUT; rm -f $OUT/*
W=/tmp/hb-w
run() {  # run SIDE BINARY TASKS
  local side=$1 bin=$2 n=$3
  rm -rf $W; mkdir -p $W
  taskset -c 1 $bin --listen=127.0.0.1:0 --http_listen=127.0.0.1:0 --db=$W/t.db --progress_interval=5s 2> $W/log &
  local pid=$!
  for _ in $(seq 200); do grep -q "taskd serving" $W/log && break; sleep 0.05; done
  local port=$(sed -n 's/.*taskd serving address=[^ ]* port=\([0-9]*\).*/\1/p' $W/log)
  echo "$side $n $(date +%T) load=$(cut -d' ' -f1 /proc/loadavg)"
  taskset -c 0 $LOADGEN --server=127.0.0.1:$port --server_pid=$pid --label=heartbeat-$n --json_out=$OUT/$side.jsonl --scenario=heartbeat --prefill=$n --heartbeat_interval=10s --heartbeat_pool=256 --concurrency=64 --warmup=12s --duration=15s > $W/out 2>&1 || cat $W/out
  kill -TERM $pid; wait $pid
}
for n in 20000 100000; do
  run before-a /work/tmp-before/build/server/taskd $n
  run after-a /work/main/build/server/taskd $n
  run after-b /work/main/build/server/taskd $n
  run before-b /work/tmp-before/build/server/taskd $n
done
echo DONE $(date +%T)
