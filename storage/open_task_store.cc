#include "storage/open_task_store.h"

namespace taskd {

absl::StatusOr<std::unique_ptr<TaskStore>> OpenTaskStore(
    const SqliteTaskStoreOptions& options, const PgSettings& postgres) {
  if (!IsPostgresUri(options.path)) return OpenSqliteTaskStore(options);
  PgTaskStoreOptions pg;
  pg.pg = postgres;
  pg.uri = options.path;
  pg.read_connections = options.read_connections;
  pg.max_batch = options.max_batch;
  pg.max_queue = options.max_queue;
  pg.history_max_changes = options.history_max_changes;
  pg.history_max_age = options.history_max_age;
  pg.history_trim_interval = options.history_trim_interval;
  pg.clock = options.clock;
  pg.on_commit = options.on_commit;
  pg.observe_commit = options.observe_commit;
  return OpenPgTaskStore(pg);
}

}  // namespace taskd
