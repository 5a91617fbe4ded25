// TempStore: a task store on a fake clock, the common part of the store
// fixtures: by default SQLite on a file in a temporary directory of its
// own; with Engine::kPostgres, a new database of its own on the test
// process's PostgreSQL (tests/postgres_server.h).
//
//   testing::TempStore temp;
//   temp.options.history_max_changes = 3;  // anything, before Open()
//   ASSERT_TRUE(temp.Open().ok());
//   temp.store->Create(testing::NewStoreTask("t1", 1, temp.clock.Now()), "");
//   ASSERT_TRUE(temp.Open().ok());  // closed and opened again
//
// Not thread-safe; the fixture owns it (and may alias its members).
#ifndef TASKD_TESTS_TEST_STORE_H_
#define TASKD_TESTS_TEST_STORE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "storage/sqlite_task_store.h"
#include "tests/test_util.h"

namespace taskd::testing {

enum class Engine { kSqlite, kPostgres };

// "sqlite" or "postgres", for test names.
std::string EngineName(Engine engine);

struct TempStore {
  // options.path is dir/tasks.db (for PostgreSQL: the database's URI, once
  // the first Open() has made it) and options.clock is &clock; the rest are
  // SqliteTaskStoreOptions' defaults.
  explicit TempStore(Engine engine = Engine::kSqlite);
  TempStore(const TempStore&) = delete;
  TempStore& operator=(const TempStore&) = delete;

  // Closes `store` if open, then opens it with `options`; the store's error
  // if that fails (`store` is then null). For PostgreSQL the first call
  // makes the database; NotFound if PostgreSQL is not installed (see
  // TASKD_SKIP_WITHOUT_POSTGRES).
  absl::Status Open();

  const Engine engine;

  // Declared in this order so that the store goes first.
  TempDir dir;
  FakeClock clock{absl::FromUnixSeconds(1'800'000'000)};
  SqliteTaskStoreOptions options;
  std::unique_ptr<TaskStore> store;
};

// A task as TaskStore::Create takes it: `id`, a uuid made from `n` (unique
// per n), type "backup", enqueued, priority "normal", enqueued and updated
// at `now`.
Task NewStoreTask(const std::string& id, int64_t n, absl::Time now);

}  // namespace taskd::testing

#endif  // TASKD_TESTS_TEST_STORE_H_
