// The store's schema migrations exactly as they shipped, frozen: a copy of
// kMigrations in storage/sqlite_task_store.cc that must never change, so
// that tests can build a database of any earlier schema version the way
// that version's taskd left it (tests/upgrade_test.cc, query_index_test.cc),
// and catch an edit of a shipped migration in the store (a fresh database
// must have exactly the schema these texts build).
//
//   Database db(path);
//   db.Exec(testing::FrozenSchema(3));  // an empty version 3 database
//
// When a migration ships (it is in a release, or it is no longer the
// newest), copy its text here byte for byte, after the others; until then
// the tests build the newest version with the store itself.
#ifndef TASKD_TESTS_FROZEN_SCHEMAS_H_
#define TASKD_TESTS_FROZEN_SCHEMAS_H_

#include <string>

namespace taskd::testing {

// kFrozenMigrations[i] takes the schema from version i to version i + 1.
inline constexpr const char* kFrozenMigrations[] = {
    // 1: tasks, the change history (changes) and the store's counters (meta).
    R"sql(
      CREATE TABLE tasks (
        id           TEXT PRIMARY KEY NOT NULL,
        uuid         TEXT NOT NULL UNIQUE,
        type         TEXT NOT NULL,
        state        INTEGER NOT NULL,
        result_code  INTEGER NOT NULL DEFAULT 0,
        priority     INTEGER NOT NULL,
        policy_id    TEXT NOT NULL DEFAULT '',
        resource_id  TEXT NOT NULL DEFAULT '',
        executor_id  TEXT NOT NULL DEFAULT '',
        tenant_id    TEXT NOT NULL DEFAULT '',
        enqueued_at  INTEGER NOT NULL,
        started_at   INTEGER NOT NULL DEFAULT 0,
        completed_at INTEGER NOT NULL DEFAULT 0,
        updated_at   INTEGER NOT NULL,
        revision     INTEGER NOT NULL,
        request_id   TEXT NOT NULL DEFAULT ''
      );
      CREATE INDEX tasks_by_enqueued ON tasks (enqueued_at, id);
      CREATE UNIQUE INDEX tasks_by_request ON tasks (tenant_id, request_id)
        WHERE request_id <> '';
      CREATE TABLE changes (
        revision     INTEGER PRIMARY KEY NOT NULL,
        kind         INTEGER NOT NULL,
        task_id      TEXT NOT NULL,
        task         BLOB NOT NULL,
        previous     BLOB,
        committed_at INTEGER NOT NULL
      );
      CREATE INDEX changes_by_time ON changes (committed_at);
      CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL
      );
      INSERT INTO meta (key, value) VALUES ('revision', 0);
    )sql",
    // 2: indexes for the ListTasks questions asked most (issue 3).
    R"sql(
      -- A tenant's tasks, newest or oldest first: the list every tenant-
      -- scoped view starts from.
      CREATE INDEX tasks_by_tenant ON tasks (tenant_id, enqueued_at, id);
      -- A tenant's tasks in one state ("our running tasks").
      CREATE INDEX tasks_by_tenant_state
        ON tasks (tenant_id, state, enqueued_at, id);
      -- Queues across tenants: "enqueued, oldest first", "started" for
      -- monitors.
      CREATE INDEX tasks_by_state ON tasks (state, enqueued_at, id);
      -- The tasks of one type (backup, restore, ...).
      CREATE INDEX tasks_by_type ON tasks (type, enqueued_at, id);
      -- What a policy ran, what ran on a resource, what an agent ran: each
      -- a small set out of all tasks.
      CREATE INDEX tasks_by_policy ON tasks (policy_id, enqueued_at, id);
      CREATE INDEX tasks_by_resource ON tasks (resource_id, enqueued_at, id);
      CREATE INDEX tasks_by_executor ON tasks (executor_id, enqueued_at, id);
      -- Outcomes in a time window, newest first: "errors since yesterday",
      -- also with a type (result_code = and a completedAt range constrain
      -- two columns here, so SQLite prefers this to tasks_by_type).
      CREATE INDEX tasks_by_result ON tasks (result_code, completed_at, id);
      -- Time windows and orders by the other timestamps: what completed or
      -- started in a window, newest first; what changed since a point (sync
      -- by updatedAt). Without them such a query reads and sorts the table.
      CREATE INDEX tasks_by_completed ON tasks (completed_at, id);
      CREATE INDEX tasks_by_started ON tasks (started_at, id);
      CREATE INDEX tasks_by_updated ON tasks (updated_at, id);
    )sql",
    // 3: the dispatcher's queue, tasks_by_state_priority (IF NOT EXISTS: for a
    // while it was part of migration 2).
    R"sql(
      CREATE INDEX IF NOT EXISTS tasks_by_state_priority
        ON tasks (state, priority DESC, enqueued_at, id);
    )sql",
    // 4: executors (issue 12): columns for the fields filters and timers need,
    // `detail` for every other field; tasks_by_deadline, tasks_by_queue.
    R"sql(
      ALTER TABLE tasks ADD COLUMN assign_count INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE tasks ADD COLUMN cancel_requested INTEGER NOT NULL
        DEFAULT 0;
      ALTER TABLE tasks ADD COLUMN assigned_at INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE tasks ADD COLUMN deadline INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE tasks ADD COLUMN detail BLOB NOT NULL DEFAULT x'';
      CREATE INDEX tasks_by_deadline ON tasks (deadline) WHERE deadline <> 0;
      CREATE INDEX tasks_by_queue
        ON tasks (state, priority, tenant_id, enqueued_at, id);
    )sql",
    // 5: task_counts for dashboards (issue 13), filled from the tasks.
    R"sql(
      CREATE TABLE task_counts (
        tenant_id   TEXT NOT NULL,
        state       INTEGER NOT NULL,
        result_code INTEGER NOT NULL,
        n           INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, state, result_code)
      ) WITHOUT ROWID;
      INSERT INTO task_counts (tenant_id, state, result_code, n)
        SELECT tenant_id, state, result_code, COUNT(*) FROM tasks
        GROUP BY tenant_id, state, result_code;
    )sql",
    // 6: partial indexes for the columns empty at creation (issue 15).
    R"sql(
      DROP INDEX tasks_by_policy;
      DROP INDEX tasks_by_resource;
      DROP INDEX tasks_by_executor;
      DROP INDEX tasks_by_result;
      DROP INDEX tasks_by_completed;
      DROP INDEX tasks_by_started;
      CREATE INDEX tasks_by_policy ON tasks (policy_id, enqueued_at, id)
        WHERE policy_id <> '';
      CREATE INDEX tasks_by_resource ON tasks (resource_id, enqueued_at, id)
        WHERE resource_id <> '';
      CREATE INDEX tasks_by_executor ON tasks (executor_id, enqueued_at, id)
        WHERE executor_id <> '';
      CREATE INDEX tasks_by_result ON tasks (result_code, completed_at, id)
        WHERE result_code <> 0;
      CREATE INDEX tasks_by_completed ON tasks (completed_at, id)
        WHERE completed_at <> 0;
      CREATE INDEX tasks_by_started ON tasks (started_at, id)
        WHERE started_at <> 0;
    )sql",
};
inline constexpr int kFrozenSchemaVersions =
    sizeof(kFrozenMigrations) / sizeof(kFrozenMigrations[0]);

// A script that turns an empty database into one at schema `version`
// (1 .. kFrozenSchemaVersions) as the store left it: the schema_version
// table the store creates before migrating (SqliteTaskStore::Migrate), the
// migrations up to `version`, and the version row. (The store also adds a
// 'secret' row to meta when it opens a database that has none: the script
// does not.)
inline std::string FrozenSchema(int version) {
  std::string script =
      "CREATE TABLE IF NOT EXISTS schema_version "
      "(version INTEGER NOT NULL);\n";
  for (int v = 0; v < version && v < kFrozenSchemaVersions; ++v) {
    script += kFrozenMigrations[v];
    script += ";\n";
  }
  script +=
      "DELETE FROM schema_version; INSERT INTO schema_version (version) "
      "VALUES (" +
      std::to_string(version) + ");\n";
  return script;
}

}  // namespace taskd::testing

#endif  // TASKD_TESTS_FROZEN_SCHEMAS_H_
