#!/usr/bin/python3
"""Writes one bench/replicas-suite run into bench/RESULTS.md (its "Several
servers" section, between marker comments; nothing else is touched).

  replicas_report.py --jsonl=F --commands=F --machine=F --results=F
"""
import argparse

from suite_report import load, machine, replace_block

CONFIGS = [("sqlite-1", "SQLite, one taskd"),
           ("postgres-1", "PostgreSQL, 1 replica"),
           ("postgres-2", "PostgreSQL, 2 replicas"),
           ("postgres-3", "PostgreSQL, 3 replicas")]
SCENARIOS = [("create", "CreateTask"), ("get", "GetTask"),
             ("moves", "moves (assign, start, complete)"), ("mix", "mix"),
             ("mixw", "mix, 1,000 watchers")]


def rate(run):
    return f"{run['ops_per_s']:,.0f}" if run else "–"


def section(runs, facts, commands):
    out = []
    w = out.append
    w("### Several servers (bench/replicas-suite)")
    w("")
    w(f"Run {facts.get('start', '?')} to {facts.get('end', '?')} at commit "
      f"`{facts.get('commit', '?')[:12]}` ({facts.get('uncommitted', '?')} "
      f"files uncommitted); {facts.get('nproc', '?')} cores "
      f"({facts.get('cpu', '?')}); {facts.get('postgres', '')}; "
      f"{facts.get('placement', '')}; load average "
      f"{facts.get('load_start', '?')} at the start, "
      f"{facts.get('load_end', '?')} at the end.")
    w("")
    w("Calls per second (p99 latency, ms), 64 in flight; the connections "
      "spread over the replicas:")
    w("")
    w("| scenario | " + " | ".join(title for _, title in CONFIGS) + " |")
    w("|---|" + "---:|" * len(CONFIGS))
    for key, title in SCENARIOS:
        cells = []
        for config, _ in CONFIGS:
            run = runs.get(f"{config}-{key}")
            cells.append(f"{rate(run)} ({run['p99_us'] / 1000:.0f})"
                         if run else "–")
        w(f"| {title} | " + " | ".join(cells) + " |")
    w("")
    base = runs.get("sqlite-1-create")
    if base:
        w("PostgreSQL against SQLite in the same run (calls per second, "
          "ratio):")
        w("")
        w("| scenario | " + " | ".join(t for c, t in CONFIGS[1:]) + " |")
        w("|---|" + "---:|" * (len(CONFIGS) - 1))
        for key, title in SCENARIOS:
            s = runs.get(f"sqlite-1-{key}")
            cells = []
            for config, _ in CONFIGS[1:]:
                p = runs.get(f"{config}-{key}")
                cells.append(f"{p['ops_per_s'] / s['ops_per_s']:.2f}"
                             if p and s and s["ops_per_s"] else "–")
            w(f"| {title} | " + " | ".join(cells) + " |")
        w("")
    w("Commit-to-delivery delay, creates paced through the first server, "
      "100 watchers of every change (ms):")
    w("")
    w("| watchers on | p50 | p90 | p99 | p99.9 | events/s |")
    w("|---|---:|---:|---:|---:|---:|")
    for label, title in [
            ("sqlite-1-delay-same", "SQLite: the same taskd"),
            ("postgres-2-delay-same", "PostgreSQL: the same replica"),
            ("postgres-2-delay-cross", "PostgreSQL: another replica")]:
        run = runs.get(label)
        if not run:
            continue
        w(f"| {title} | {run['delivery_p50_us'] / 1000:.1f} | "
          f"{run['delivery_p90_us'] / 1000:.1f} | "
          f"{run['delivery_p99_us'] / 1000:.1f} | "
          f"{run['delivery_p999_us'] / 1000:.1f} | "
          f"{run.get('events_per_s', 0):,.0f} |")
    w("")
    w("<details><summary>Commands</summary>")
    w("")
    w("```")
    w(commands.rstrip())
    w("```")
    w("")
    w("</details>")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser()
    for flag in ["jsonl", "commands", "machine", "results"]:
        parser.add_argument(f"--{flag}", required=True)
    args = parser.parse_args()
    runs = load(args.jsonl)
    facts = machine(args.machine)
    with open(args.commands) as f:
        commands = f.read()
    try:
        with open(args.results) as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    text = replace_block(text, "replicas",
                         section(runs, facts, commands))
    with open(args.results, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
