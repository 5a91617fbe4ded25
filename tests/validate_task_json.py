#!/usr/bin/python3
"""Validates tasks printed as JSON against the Acronis Task schema.

Reads one JSON document from stdin: a task, or an object with a "tasks"
array (a ListTasks response), or one task per line. Exits 0 if every task
validates, 1 otherwise (printing why), 2 on unusable input.

Formats are checked, not just types: "uuid" by jsonschema itself and
"date-time" by the RFC 3339 check below (Debian's jsonschema has no
date-time checker without an extra package).
"""
import datetime
import json
import re
import sys

import jsonschema

RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


EXTENSIONS = {
    "revision", "etag", "assignCount", "maxAssignCount", "cancelRequested",
    "progress", "assignedAt", "queueTimeout", "ackTimeout",
    "heartBeatInterval", "execTimeout", "leaseExpiresAt", "deadline",
    "timeout", "leaseToken",
}


def main():
    if len(sys.argv) != 2:
        print("usage: validate_task_json.py SCHEMA < JSON", file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    checker = jsonschema.FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def is_date_time(value):
        if not isinstance(value, str):
            return True
        if not RFC3339.match(value):
            raise ValueError(f"{value!r} is not RFC 3339")
        datetime.datetime.fromisoformat(
            re.sub(r"[Zz]$", "+00:00", value).replace("t", "T"))
        return True

    validator = jsonschema.Draft202012Validator(schema, format_checker=checker)
    text = sys.stdin.read()
    try:
        documents = [json.loads(text)]
    except json.JSONDecodeError:
        try:
            documents = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            print(f"not JSON: {e}", file=sys.stderr)
            return 2
    tasks = []
    for doc in documents:
        if isinstance(doc, dict) and isinstance(doc.get("tasks"), list):
            tasks.extend(doc["tasks"])
        else:
            tasks.append(doc)
    if not tasks:
        print("no task in input", file=sys.stderr)
        return 2
    failures = 0
    for task in tasks:
        for error in validator.iter_errors(task):
            failures += 1
            print(f"task {task.get('id')!r}: {error.json_path}: {error.message}",
                  file=sys.stderr)
        # The schema allows extra properties, so a misspelt name would pass
        # unnoticed; require the schema's spelling for everything we print
        # but our documented extensions (the executor fields under the
        # Acronis Task Manager's names).
        extra = set(task) - set(schema["properties"]) - EXTENSIONS
        if extra:
            failures += 1
            print(f"task {task.get('id')!r}: properties not in the schema: "
                  f"{sorted(extra)}", file=sys.stderr)
    print(f"{len(tasks)} task(s) checked, {failures} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
