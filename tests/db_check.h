// CheckDatabase: what a taskd database file must satisfy at any moment a
// process may have stopped, read straight from the file with SQLite's C API
// (not through the store), for the crash and fault tests.
//
//   DbCheck check = CheckDatabase(dir.File("taskd.db"));
//   EXPECT_THAT(check.problems, ::testing::IsEmpty());
//
// The file may be in use by a running taskd: it is opened read-only and read
// in one transaction, so it sees one committed state.
#ifndef TASKD_TESTS_DB_CHECK_H_
#define TASKD_TESTS_DB_CHECK_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tasks/v1/tasks.pb.h"

namespace taskd::testing {

// One row of the `changes` table, decoded.
struct HistoryRow {
  int64_t revision = 0;
  int kind = 0;  // 1 created, 2 updated, 3 deleted
  std::string task_id;
  tasks::v1::Task task;                     // after the change
  std::optional<tasks::v1::Task> previous;  // before it; none for a creation
};

struct DbCheck {
  // Every violation found, one sentence each; empty when the file is
  // consistent:
  //   - PRAGMA integrity_check is "ok";
  //   - the revisions in `changes` have no gaps, and the last one is the
  //     revision counter in `meta`;
  //   - each change is whole: its task parses, names the row's task_id and
  //     carries the change's revision; its `previous` is the task as the
  //     change before it on the same task left it;
  //   - replaying the history from its first kept revision gives, for every
  //     task it touches, exactly the row in `tasks` (every column) or, after
  //     a deletion, no row; a task it does not touch is older than the
  //     history;
  //   - task_counts counts exactly the rows of `tasks` per (tenant, state,
  //     result code).
  std::vector<std::string> problems;
  std::string integrity;
  int64_t meta_revision = 0;
  // The revisions kept in `changes` (0, 0 when empty), in order.
  int64_t oldest = 0;
  int64_t newest = 0;
  std::vector<HistoryRow> history;
  // The `tasks` table, by id, as stored (decoded with the store's column
  // mapping).
  std::map<std::string, tasks::v1::Task> tasks;
};

DbCheck CheckDatabase(const std::string& db_path);

}  // namespace taskd::testing

#endif  // TASKD_TESTS_DB_CHECK_H_
