// Opens the engine a --db value names: a postgresql:// (or postgres://) URI
// opens PostgreSQL (pg_task_store.h), anything else is the path of an
// SQLite file (sqlite_task_store.h). The one place that chooses an engine.
//
//   SqliteTaskStoreOptions options;
//   options.path = flags.db;  // "taskd.db" or "postgresql://..."
//   absl::StatusOr<std::unique_ptr<TaskStore>> store = OpenTaskStore(options);
#ifndef TASKD_STORAGE_OPEN_TASK_STORE_H_
#define TASKD_STORAGE_OPEN_TASK_STORE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "storage/pg_task_store.h"
#include "storage/sqlite_task_store.h"
#include "storage/task_store.h"

namespace taskd {

// For PostgreSQL, options.path is the URI, and the settings both engines
// have (group commit, history retention, read connections, clock, on_commit,
// observe_commit) carry over; the SQLite-only ones (synchronous_full, vfs,
// checkpoint_pages, busy_timeout, task_cache_bytes) do not apply; PostgreSQL's
// own settings come from `postgres` (not read for SQLite).
absl::StatusOr<std::unique_ptr<TaskStore>> OpenTaskStore(
    const SqliteTaskStoreOptions& options,
    const PgSettings& postgres = PgSettings());

}  // namespace taskd

#endif  // TASKD_STORAGE_OPEN_TASK_STORE_H_
