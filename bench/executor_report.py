#!/usr/bin/python3
"""Prints the figures of bench/executor-suite as Markdown tables.

  bench/executor_report.py /tmp/taskd-executor-bench/executor.jsonl

(a) per executor count: each run's moves/s and chains/s, and the ratio
chains/s / (moves/s / 3) of the runs side by side (>= 1 meets the goal "an
acquire->start->complete chain costs no more than three moves"); (b) wake;
(c) heartbeat.
"""
import json
import statistics
import sys


def main():
    runs = {}
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.strip()
            if line:
                record = json.loads(line)
                runs[record["label"]] = record

    print("| executors | run | moves calls/s | acquire chains/s | ratio | "
          "acquire p50/p99 ms | start p50/p99 ms | complete p50/p99 ms | "
          "moves call p50/p99 ms | taskd CPU (moves, acquire) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c in (1, 8, 64):
        ratios = []
        for rep in range(1, 10):
            m, a = runs.get(f"moves-{c}-{rep}"), runs.get(f"acquire-{c}-{rep}")
            if not m or not a:
                continue
            ratio = a["chains_per_s"] / (m["ops_per_s"] / 3)
            ratios.append(ratio)
            ms = lambda r, k: f"{r.get(k + '_p50_us', 0) / 1000:.1f}/{r.get(k + '_p99_us', 0) / 1000:.1f}"
            print(f"| {c} | {rep} | {m['ops_per_s']:,.0f} | "
                  f"{a['chains_per_s']:,.0f} | {ratio:.2f} | "
                  f"{ms(a, 'acquire')} | {ms(a, 'start')} | "
                  f"{ms(a, 'complete')} | "
                  f"{m['p50_us'] / 1000:.1f}/{m['p99_us'] / 1000:.1f} | "
                  f"{m.get('server_cpu', 0):.0%}, {a.get('server_cpu', 0):.0%} |")
            if a.get("errors") or m.get("errors") or a.get("empty_acquires"):
                print(f"|   | errors: moves {m['errors']}, acquire "
                      f"{a['errors']}, empty acquires {a['empty_acquires']} |")
        if ratios:
            print(f"| {c} | median | | | **{statistics.median(ratios):.2f}** | | | | | |")
    print()
    for label, r in runs.items():
        if r["scenario"] == "wake":
            print(f"wake {label}: {r['tasks_woken']} tasks at {r['rate']}/s, "
                  f"{r['executors']} executors; from CreateTask's answer "
                  f"p50 {r['wake_p50_us'] / 1000:.2f} ms, p99 "
                  f"{r['wake_p99_us'] / 1000:.2f} ms, max "
                  f"{r['wake_max_us'] / 1000:.2f} ms; from its send p50 "
                  f"{r['from_send_p50_us'] / 1000:.2f}, p99 "
                  f"{r['from_send_p99_us'] / 1000:.2f}, max "
                  f"{r['from_send_max_us'] / 1000:.2f} ms; missing "
                  f"{r['tasks_missing']}, errors {r['errors']}, before the "
                  f"create's answer {r['received_before_create_answer']}; "
                  f"taskd CPU {r.get('server_cpu', 0):.0%}")
    print()
    print("| run | tasks | heartbeats/s (expected) | p50/p99 ms | lag p99/max s "
          "| errors | revisions (/s) | taskd CPU | busiest taskd threads |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, r in runs.items():
        if r["scenario"] != "heartbeat":
            continue
        threads = ", ".join(f"{k} {v:.0%}" for k, v in
                            list(r.get("server_cpu_by_thread", {}).items())[:4])
        print(f"| {label} | {r['tasks']:,} | {r['ops_per_s']:,.0f} "
              f"({r['expected_per_s']:,.0f}) | {r['p50_us'] / 1000:.1f}/"
              f"{r['p99_us'] / 1000:.1f} | {r['lag_p99_us'] / 1e6:.2f}/"
              f"{r['lag_max_us'] / 1e6:.2f} | {r['errors']} | "
              f"{r['revisions']:,} ({r['revisions_per_s']:,.0f}) | "
              f"{r.get('server_cpu', 0):.0%} | {threads} |")


if __name__ == "__main__":
    main()
