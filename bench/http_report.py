#!/usr/bin/env python3
"""Tables of one bench/http-suite run, from its JSON lines.

  bench/http_report.py bench/http-suite-run1.jsonl [more.jsonl ...]

With several files, every table gets one column group per run, so that two
runs of the noisy 2-core machine sit side by side.
"""
import json
import sys

KINDS = [("sse", "SSE"), ("grpcweb", "gRPC-Web"), ("native", "native gRPC")]


def load(path):
    runs = {}
    for line in open(path):
        line = line.strip()
        if line:
            d = json.loads(line)
            if d.get("server_gone"):
                continue  # taskd ended during the run (the run was redone)
            runs[d["label"]] = d
    return runs


def ms(us):
    return "%.1f" % (us / 1000.0) if us is not None else "-"


def pct(x):
    return "%.0f%%" % (100 * x) if x is not None else "-"


def ratio(a, b):
    return "%.2f" % (a / b) if a is not None and b else "-"


def table(title, header, rows):
    print("\n### " + title + "\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")


def main(paths):
    runs = [(p, load(p)) for p in paths]
    names = [p.split("/")[-1].replace(".jsonl", "") for p in paths]

    for name, r in zip(names, (r for _, r in runs)):
        m = r.get("machine-start", {})
        e = r.get("machine-end", {})
        print("%s: nproc %s, %s, kernel %s, %s MiB; %s to %s; load %s -> %s"
              % (name, m.get("nproc"), m.get("cpu"), m.get("kernel"),
                 m.get("memory_mib"), m.get("time"), e.get("time"),
                 m.get("loadavg"), e.get("loadavg")))

    # 1. Counts in the store.
    rows = []
    questions = [k for k in runs[0][1] if k.startswith("count-")]
    for q in questions:
        row = [q[len("count-"):], runs[0][1][q]["path"]]
        for _, r in runs:
            d = r.get(q)
            row += [ms(d["p50_us"]) if d else "-", ms(d["p99_us"]) if d else "-"]
        rows.append(row)
    if rows:
        header = ["question", "answered from"]
        for n in names:
            header += [n + " median ms", n + " p99 ms"]
        table("Counts through SqliteTaskStore::Count, 1,000,000 tasks",
              header, rows)
        mig = [r.get("migration-5-1m", {}).get("seconds") for _, r in runs]
        print("\nmigration 5 on open (counters from 1,000,000 tasks): " +
              ", ".join("%s s" % m for m in mig))

    # 2. store_bench.
    rows = []
    for key in sorted(k for k in runs[0][1] if k.startswith("store-") and k.endswith("_median")):
        row = [key[len("store-"):].replace("/real_time_median", "")]
        for _, r in runs:
            d = r.get(key)
            row.append("%.0f" % d["items_per_second"] if d else "-")
        rows.append(row)
    if rows:
        table("Store writes with the counters (taskd_store_bench, writes/s, "
              "median of 3)", ["benchmark"] + names, rows)

    # 3a. Mixed.
    for rate in (5, 20):
        label = "mixed-%d" % rate
        if label not in runs[0][1]:
            continue
        rows = []
        for kind, kname in KINDS:
            row = [kname]
            for _, r in runs:
                d = r.get(label, {})
                k = d.get(kind, {})
                nat = d.get("native", {}).get("events_per_s")
                row += ["%.0f" % k.get("events_per_s", 0),
                        ratio(k.get("events_per_s"), nat),
                        ms(k.get("delay_p50_us")), ms(k.get("delay_p99_us"))]
            rows.append(row)
        row = ["taskd CPU / writes/s"]
        for _, r in runs:
            d = r.get(label, {})
            row += [pct(d.get("server_cpu")), "%.1f/s" % d.get("writes_per_s", 0),
                    "client CPU " + pct(d.get("client_cpu")),
                    "others " + pct(d.get("others_cpu"))]
        rows.append(row)
        header = ["1,000 viewers of each, same run"]
        for n in names:
            header += [n + " events/s", "/native", "delay p50 ms", "p99 ms"]
        table("Viewers in one run: %d creates/s (demand %d events/s per kind)"
              % (rate, rate * 1000), header, rows)

    # 3b. Alone.
    for rate in (10, 60):
        rows = []
        for kind, kname in KINDS:
            label = "alone-%s-%d" % (kind, rate)
            row = [kname]
            for _, r in runs:
                d = r.get(label, {})
                k = d.get(kind, {})
                nat = r.get("alone-native-%d" % rate, {})
                ev = k.get("events_per_s")
                cpu = d.get("server_cpu")
                us = cpu * 1e6 / ev if cpu and ev else None
                nev = nat.get("native", {}).get("events_per_s")
                ncpu = nat.get("server_cpu")
                nus = ncpu * 1e6 / nev if ncpu and nev else None
                row += ["%.0f" % (ev or 0), ratio(ev, nev), pct(cpu),
                        "%.1f" % us if us else "-", ratio(us, nus),
                        ms(k.get("delay_p50_us")), ms(k.get("delay_p99_us")),
                        "%d" % d.get("server_rss_end_kib", 0),
                        pct(d.get("others_cpu"))]
            rows.append(row)
        header = ["1,000 viewers alone"]
        for n in names:
            header += [n + " events/s", "/native", "taskd CPU", "CPU us/event",
                       "/native", "delay p50 ms", "p99 ms", "RSS end KiB",
                       "others' CPU"]
        table("Each kind alone: %d creates/s (demand %d events/s)"
              % (rate, rate * 1000), header, rows)

    # 4. Counts streams.
    rows = []
    for mode, what in (("none", "no count viewer"),
                       ("same", "1,000, one question"),
                       ("distinct", "1,000, type = \"t<i>\""),
                       ("wide", "1,000, type != \"t<i>\"")):
        label = "counts-" + mode
        row = [what]
        for _, r in runs:
            d = r.get(label, {})
            base = r.get("counts-none", {}).get("server_cpu")
            cpu = d.get("server_cpu")
            k = d.get("sse_counts", {})
            threads = d.get("server_cpu_by_thread", {})
            top = ", ".join("%s %s" % (t.split("/")[0], pct(v))
                            for t, v in list(threads.items())[:3])
            row += [pct(cpu),
                    "+%.1f pts" % (100 * (cpu - base)) if cpu is not None and base is not None and mode != "none" else "",
                    "%.0f" % k.get("messages_per_s", 0), top,
                    pct(d.get("others_cpu"))]
        rows.append(row)
    if "counts-none" in runs[0][1]:
        header = ["counts?group_by=state&min_interval=1s"]
        for n in names:
            header += [n + " taskd CPU", "vs none", "counts/s received",
                       "busiest threads", "others' CPU"]
        table("Live counts: 200 state changes/s", header, rows)

    if "big-new-questions" in runs[0][1]:
        rows = []
        for _, r in runs:
            q = r.get("big-new-questions", {}).get("sse_counts", {})
            dsh = r.get("big-dashboard", {}).get("sse_counts", {})
            rows.append([ms(q.get("first_p50_us")), ms(q.get("first_max_us")),
                         ms(dsh.get("gap_max_us")),
                         pct(r.get("big-dashboard", {}).get("server_cpu"))])
        table("200 new count questions not answered by the counters, "
              "1,000,000 tasks (one row per run)",
              ["first counts p50 ms", "last ms",
               "open dashboard: longest silence ms", "taskd CPU (40 s)"], rows)

    # 5. Memory.
    rows = []
    for kind, kname in KINDS + [("sse_counts", "SSE counts (one question)")]:
        label = "idle-" + kind
        row = [kname]
        for _, r in runs:
            d = r.get(label, {})
            n = d.get(kind, {}).get("viewers") or 1
            before = d.get("server_rss_before_kib", 0)
            row += ["%d" % before, "%d" % d.get("server_rss_end_kib", 0),
                    "%.1f" % ((d.get("server_rss_end_kib", 0) - before) / n)]
        rows.append(row)
    if "idle-sse" in runs[0][1]:
        header = ["1,000 idle streams"]
        for n in names:
            header += [n + " RSS before KiB", "with them KiB", "KiB/stream"]
        table("taskd RSS per open stream", header, rows)


if __name__ == "__main__":
    main(sys.argv[1:])
