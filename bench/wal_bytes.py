#!/usr/bin/env python3
"""WAL bytes per CreateTask: what taskd's schema makes SQLite write (issue 15).

    bench/wal_bytes.py SCHEMA.sql [SCHEMA.sql ...]

Each SCHEMA.sql is a schema as `sqlite3 taskd.db .schema` prints it (open a
fresh database with the taskd to measure, stop it, dump it). For each
schema, page size (4096, taskd's; 2048; 1024) and id kind (random version 4
UUIDs as taskd made before issue 15, time-ordered version 7 as it makes
now), 20,000 tasks are inserted as CreateTask writes them: the task row,
its history row, the tenant's counter row and the revision, 64 per
transaction (a group commit of 64 calls in flight), spread over 100
tenants round robin as taskd_loadgen does. Checkpoints are off, so the WAL
holds every frame written: its size divided by the tasks is the bytes one
create costs the disk. The figure is deterministic (no timing); the
seconds printed beside it are Python's and only a hint.
"""
import os
import random
import sqlite3
import sys
import time
import uuid

TASKS = 20000
BATCH = 64
TENANTS = 100
PATH = "/tmp/taskd-wal-bytes.db"


def remove():
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(PATH + suffix)
        except FileNotFoundError:
            pass


def measure(schema, page_size, ordered):
    remove()
    db = sqlite3.connect(PATH, isolation_level=None)
    db.execute(f"PRAGMA page_size={page_size}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.executescript(schema)
    start = time.time()
    revision = 0
    epoch_micros = 1_800_000_000_000_000
    for b in range(TASKS // BATCH):
        db.execute("BEGIN")
        for i in range(BATCH):
            n = b * BATCH + i
            revision += 1
            if ordered:  # version 7: milliseconds first, then random bits
                task_id = "%012x-7%03x-8000-%012x" % (
                    epoch_micros // 1000 + n, n % 4096, random.getrandbits(48))
            else:
                task_id = str(uuid.uuid4())
            tenant = "3f2a9c1e-5b7d-4e8f-9a0b-%012d" % (n % TENANTS)
            now = epoch_micros + n * 100
            db.execute(
                "INSERT INTO tasks (id, uuid, type, state, result_code, "
                "priority, policy_id, resource_id, executor_id, tenant_id, "
                "enqueued_at, started_at, completed_at, updated_at, revision, "
                "request_id, detail) "
                "VALUES (?, ?, 'backup', 1, 0, 5, '', '', '', ?, ?, 0, 0, ?, "
                "?, '', ?)",
                (task_id, task_id, tenant, now, now, revision, b"d" * 60))
            db.execute(
                "INSERT INTO changes (revision, kind, task_id, task, previous, "
                "committed_at) VALUES (?, 1, ?, ?, NULL, ?)",
                (revision, task_id, b"t" * 200, now))
            db.execute(
                "INSERT INTO task_counts (tenant_id, state, result_code, n) "
                "VALUES (?, 1, 0, 1) ON CONFLICT DO UPDATE SET n = n + 1",
                (tenant,))
        db.execute("UPDATE meta SET value = ? WHERE key = 'revision'",
                   (revision,))
        db.execute("COMMIT")
    seconds = time.time() - start
    wal = os.path.getsize(PATH + "-wal")
    db.close()
    remove()
    return wal / TASKS, seconds


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    print("| schema | page size | ids | WAL bytes per create | seconds |")
    print("|---|---:|---|---:|---:|")
    for path in sys.argv[1:]:
        with open(path) as f:
            schema = f.read()
        for page_size in (4096, 2048, 1024):
            for ordered in (False, True):
                per_create, seconds = measure(schema, page_size, ordered)
                print(f"| {os.path.basename(path)} | {page_size} | "
                      f"{'v7' if ordered else 'v4'} | {per_create:,.0f} | "
                      f"{seconds:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
