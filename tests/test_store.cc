#include "tests/test_store.h"

#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "query/task_fields.h"
#include "storage/open_task_store.h"
#include "tests/postgres_server.h"

namespace taskd::testing {

std::string EngineName(Engine engine) {
  return engine == Engine::kSqlite ? "sqlite" : "postgres";
}

TempStore::TempStore(Engine engine) : engine(engine) {
  if (engine == Engine::kSqlite) options.path = dir.File("tasks.db");
  options.clock = &clock;
}

absl::Status TempStore::Open() {
  store.reset();
  if (engine == Engine::kPostgres && options.path.empty()) {
    absl::StatusOr<std::string> uri = NewPostgresDatabase();
    if (!uri.ok()) return uri.status();
    options.path = *uri;
  }
  absl::StatusOr<std::unique_ptr<TaskStore>> opened = OpenTaskStore(options);
  if (!opened.ok()) return opened.status();
  store = std::move(*opened);
  return absl::OkStatus();
}

Task NewStoreTask(const std::string& id, int64_t n, absl::Time now) {
  Task task;
  task.set_id(id);
  task.set_uuid(absl::StrCat("00000000-0000-4000-8000-", 100000000000 + n));
  task.set_type("backup");
  task.set_state(Task::enqueued);
  task.set_priority("normal");
  *task.mutable_enqueued_at() = ToTimestamp(now);
  *task.mutable_updated_at() = ToTimestamp(now);
  return task;
}

}  // namespace taskd::testing
