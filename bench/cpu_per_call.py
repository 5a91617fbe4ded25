#!/usr/bin/python3
"""Prints the server's CPU per call in bench/run-suite runs, split by thread.

Reads the JSON lines run-suite (and taskd_loadgen) write, and for each
scenario prints calls per second, the server's CPU in cores, its CPU per
call, and for taskd where that CPU went: the store's writer thread (named
`taskd-commit` since 2026-12-04; in older runs, taskd's busiest thread named
`taskd`) and gRPC's threads (`nexting_thread`, `default-executo`,
`event_engine`, `resolver-execut`, `grpc*`). taskd_loadgen records only
threads that used at least 0.5% of a core, so the split is of those.
The last table gives each figure's range over all the files.

  bench/cpu_per_call.py bench/peer-runs/cache-*.jsonl
"""
import json
import sys

SCENARIOS = ("create-64", "moves-64", "get-64", "etcd-put-64",
             "etcd-range-64")
GRPC_PREFIXES = ("nexting_thread", "default-executo", "event_engine",
                 "resolver-execut", "grpc")


def split(threads):
    """(writer cores, gRPC cores) from server_cpu_by_thread."""
    writer = 0.0
    named = [v for k, v in threads.items() if k.startswith("taskd-commit/")]
    if named:
        writer = sum(named)
    else:
        unnamed = [v for k, v in threads.items() if k.startswith("taskd/")]
        writer = max(unnamed, default=0.0)
    grpc = sum(v for k, v in threads.items() if k.startswith(GRPC_PREFIXES))
    return writer, grpc


def main(paths):
    if not paths:
        sys.exit(__doc__)
    ranges = {}
    print("| file | scenario | calls/s | server CPU | µs per call "
          "| writer µs | gRPC µs |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for path in paths:
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
        for r in records:
            if r.get("label") not in SCENARIOS or not r.get("ops_per_s"):
                continue
            rate, cpu = r["ops_per_s"], r.get("server_cpu", 0.0)
            per_call = 1e6 * cpu / rate
            writer, grpc = split(r.get("server_cpu_by_thread", {}))
            is_taskd = not r["label"].startswith("etcd")
            row = [per_call]
            cells = ["%.1f" % per_call, "–", "–"]
            if is_taskd:
                row += [1e6 * writer / rate, 1e6 * grpc / rate]
                cells[1:] = ["%.1f" % row[1], "%.1f" % row[2]]
            print("| %s | %s | %s | %.2f | %s |" %
                  (path.rsplit("/", 1)[-1], r["label"], format(round(rate), ","),
                   cpu, " | ".join(cells)))
            for i, value in enumerate(row):
                ranges.setdefault((r["label"], i), []).append(value)
    print()
    print("| scenario | µs per call | writer µs | gRPC µs | runs |")
    print("|---|---:|---:|---:|---:|")
    for label in SCENARIOS:
        if (label, 0) not in ranges:
            continue
        cells = []
        for i in range(3):
            values = ranges.get((label, i))
            cells.append("%.0f–%.0f" % (min(values), max(values))
                         if values else "–")
        print("| %s | %s | %d |" % (label, " | ".join(cells),
                                   len(ranges[(label, 0)])))


if __name__ == "__main__":
    main(sys.argv[1:])
