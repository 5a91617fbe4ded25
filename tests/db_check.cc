#include "tests/db_check.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "query/task_fields.h"

namespace taskd::testing {
namespace {

using tasks::v1::Task;

// The columns of `tasks` that hold a task field, named as the field.
const std::vector<TaskField>& StoredFields() {
  static const auto* fields = new std::vector<TaskField>{
      TaskField::kId,          TaskField::kUuid,       TaskField::kType,
      TaskField::kState,       TaskField::kResultCode, TaskField::kPriority,
      TaskField::kPolicyId,    TaskField::kResourceId, TaskField::kExecutorId,
      TaskField::kTenantId,    TaskField::kEnqueuedAt, TaskField::kStartedAt,
      TaskField::kCompletedAt, TaskField::kUpdatedAt,  TaskField::kRevision};
  return *fields;
}

FieldValue ColumnValue(sqlite3_stmt* stmt, int column) {
  if (sqlite3_column_type(stmt, column) == SQLITE_INTEGER) {
    return static_cast<int64_t>(sqlite3_column_int64(stmt, column));
  }
  const unsigned char* text = sqlite3_column_text(stmt, column);
  return std::string(text ? reinterpret_cast<const char*>(text) : "",
                     sqlite3_column_bytes(stmt, column));
}

std::string Describe(const FieldValue& value) {
  if (auto* number = std::get_if<int64_t>(&value)) return absl::StrCat(*number);
  return absl::StrCat("\"", std::get<std::string>(value), "\"");
}

// The task a row of `tasks` holds (etag left empty: it is not stored).
Task TaskOfRow(const std::vector<FieldValue>& row) {
  Task task;
  auto text = [&](int i) {
    const std::string* s = std::get_if<std::string>(&row[i]);
    return s ? *s : std::string();
  };
  auto number = [&](int i) {
    const int64_t* n = std::get_if<int64_t>(&row[i]);
    return n ? *n : int64_t{0};
  };
  task.set_id(text(0));
  task.set_uuid(text(1));
  task.set_type(text(2));
  task.set_state(static_cast<Task::State>(number(3)));
  task.set_result_code(static_cast<Task::ResultCode>(number(4)));
  task.set_priority(std::string(PriorityName(number(5))));
  task.set_policy_id(text(6));
  task.set_resource_id(text(7));
  task.set_executor_id(text(8));
  task.set_tenant_id(text(9));
  google::protobuf::Timestamp* (Task::*times[])() = {
      &Task::mutable_enqueued_at, &Task::mutable_started_at,
      &Task::mutable_completed_at, &Task::mutable_updated_at};
  for (int i = 0; i < 4; ++i) {
    if (number(10 + i) != 0) {
      SetTimestampMicros(number(10 + i), (task.*times[i])());
    }
  }
  task.set_revision(number(14));
  return task;
}

// Reads every row of `sql`, calling `on_row` for each; false on an error
// (added to `problems`).
template <typename OnRow>
bool ForEachRow(sqlite3* db, const std::string& sql,
                std::vector<std::string>* problems, OnRow on_row) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    problems->push_back(
        absl::StrCat("prepare \"", sql, "\": ", sqlite3_errmsg(db)));
    return false;
  }
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) on_row(stmt);
  if (rc != SQLITE_DONE) {
    problems->push_back(absl::StrCat("\"", sql, "\": ", sqlite3_errmsg(db)));
  }
  sqlite3_finalize(stmt);
  return rc == SQLITE_DONE;
}

}  // namespace

DbCheck CheckDatabase(const std::string& db_path) {
  DbCheck check;
  std::vector<std::string>& problems = check.problems;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
      SQLITE_OK) {
    problems.push_back(absl::StrCat("open ", db_path, ": ",
                                    db ? sqlite3_errmsg(db) : "out of memory"));
    sqlite3_close(db);
    return check;
  }
  sqlite3_busy_timeout(db, 10'000);
  // One read transaction: every read below sees the same commit.
  sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);

  ForEachRow(db, "PRAGMA integrity_check", &problems, [&](sqlite3_stmt* s) {
    if (!check.integrity.empty()) check.integrity += "; ";
    check.integrity += std::get<std::string>(ColumnValue(s, 0));
  });
  if (check.integrity != "ok") {
    problems.push_back(
        absl::StrCat("integrity_check says \"", check.integrity, "\""));
  }

  bool have_meta = false;
  ForEachRow(db, "SELECT value FROM meta WHERE key = 'revision'", &problems,
             [&](sqlite3_stmt* s) {
               check.meta_revision = sqlite3_column_int64(s, 0);
               have_meta = true;
             });
  if (!have_meta) problems.push_back("meta has no revision");

  // The history, in revision order.
  ForEachRow(
      db,
      "SELECT revision, kind, task_id, task, previous FROM changes "
      "ORDER BY revision",
      &problems, [&](sqlite3_stmt* s) {
        HistoryRow row;
        row.revision = sqlite3_column_int64(s, 0);
        row.kind = sqlite3_column_int(s, 1);
        row.task_id = std::get<std::string>(ColumnValue(s, 2));
        std::string blob(static_cast<const char*>(sqlite3_column_blob(s, 3)),
                         sqlite3_column_bytes(s, 3));
        if (!row.task.ParseFromString(blob)) {
          problems.push_back(
              absl::StrCat("change ", row.revision, ": task does not parse"));
        }
        if (sqlite3_column_type(s, 4) != SQLITE_NULL) {
          std::string previous(
              static_cast<const char*>(sqlite3_column_blob(s, 4)),
              sqlite3_column_bytes(s, 4));
          row.previous.emplace();
          if (!row.previous->ParseFromString(previous)) {
            problems.push_back(absl::StrCat("change ", row.revision,
                                            ": previous does not parse"));
          }
        }
        check.history.push_back(std::move(row));
      });

  // The tasks table, every stored column.
  std::string columns;
  for (TaskField field : StoredFields()) {
    absl::StrAppend(&columns, columns.empty() ? "" : ", ",
                    InfoOf(field).proto_name);
  }
  std::map<std::string, std::vector<FieldValue>> rows;
  ForEachRow(db, absl::StrCat("SELECT ", columns, " FROM tasks"), &problems,
             [&](sqlite3_stmt* s) {
               std::vector<FieldValue> row;
               for (size_t i = 0; i < StoredFields().size(); ++i) {
                 row.push_back(ColumnValue(s, static_cast<int>(i)));
               }
               std::string id = std::get<std::string>(row[0]);
               check.tasks[id] = TaskOfRow(row);
               rows[id] = std::move(row);
             });
  // The counters (schema 5), in the same snapshot; compared below.
  std::map<std::string, int64_t> counted;
  ForEachRow(db,
             "SELECT tenant_id, state, result_code, n FROM task_counts "
             "WHERE n <> 0",
             &problems, [&](sqlite3_stmt* s) {
               counted[absl::StrCat(std::get<std::string>(ColumnValue(s, 0)),
                                    "/", sqlite3_column_int64(s, 1), "/",
                                    sqlite3_column_int64(s, 2))] =
                   sqlite3_column_int64(s, 3);
             });
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(db);

  // Revisions: no gaps, and the counter at the last one.
  if (!check.history.empty()) {
    check.oldest = check.history.front().revision;
    check.newest = check.history.back().revision;
    for (size_t i = 1; i < check.history.size(); ++i) {
      if (check.history[i].revision != check.history[i - 1].revision + 1) {
        problems.push_back(
            absl::StrCat("gap in the history: ", check.history[i - 1].revision,
                         " then ", check.history[i].revision));
      }
    }
    if (check.newest != check.meta_revision) {
      problems.push_back(absl::StrCat("meta revision ", check.meta_revision,
                                      " but the last change is ",
                                      check.newest));
    }
  }

  // Replay: the last image of every task the history touches.
  std::map<std::string, const HistoryRow*> last;
  for (const HistoryRow& change : check.history) {
    std::string where = absl::StrCat("change ", change.revision, " (task \"",
                                     change.task_id, "\")");
    if (change.kind < 1 || change.kind > 3) {
      problems.push_back(absl::StrCat(where, ": kind ", change.kind));
    }
    if (change.task.id() != change.task_id) {
      problems.push_back(
          absl::StrCat(where, ": its task is \"", change.task.id(), "\""));
    }
    if (change.task.revision() != change.revision) {
      problems.push_back(absl::StrCat(where, ": its task has revision ",
                                      change.task.revision()));
    }
    if ((change.kind == 1) == change.previous.has_value()) {
      problems.push_back(absl::StrCat(where, ": kind ", change.kind,
                                      change.previous ? " with" : " without",
                                      " a previous image"));
    }
    auto before = last.find(change.task_id);
    bool existed = before != last.end() && before->second->kind != 3;
    if (before != last.end()) {
      // The task as the change before this one left it.
      if (change.kind == 1 && existed) {
        problems.push_back(absl::StrCat(where, ": created twice"));
      }
      if (change.kind != 1 && !existed) {
        problems.push_back(absl::StrCat(where, ": changes a deleted task"));
      }
      if (change.previous && existed &&
          change.previous->SerializeAsString() !=
              before->second->task.SerializeAsString()) {
        problems.push_back(
            absl::StrCat(where, ": previous image is not the task as revision ",
                         before->second->revision, " left it"));
      }
    }
    last[change.task_id] = &change;
  }
  for (const auto& [id, change] : last) {
    auto row = rows.find(id);
    if (change->kind == 3) {
      if (row != rows.end()) {
        problems.push_back(absl::StrCat("task \"", id, "\" was deleted at ",
                                        change->revision, " but has a row"));
      }
      continue;
    }
    if (row == rows.end()) {
      problems.push_back(absl::StrCat("task \"", id, "\" (last change ",
                                      change->revision, ") has no row"));
      continue;
    }
    for (size_t i = 0; i < StoredFields().size(); ++i) {
      FieldValue replayed = FieldValueOf(change->task, StoredFields()[i]);
      if (replayed != row->second[i]) {
        problems.push_back(absl::StrCat(
            "task \"", id, "\": ", InfoOf(StoredFields()[i]).proto_name, " is ",
            Describe(row->second[i]), " but the history says ",
            Describe(replayed)));
      }
    }
  }
  for (const auto& [id, task] : check.tasks) {
    if (last.count(id) == 0 && task.revision() >= check.oldest &&
        !check.history.empty()) {
      problems.push_back(absl::StrCat("task \"", id, "\" at revision ",
                                      task.revision(),
                                      " is not in the history"));
    }
    if (task.revision() > check.meta_revision) {
      problems.push_back(absl::StrCat("task \"", id, "\" at revision ",
                                      task.revision(), " is past the counter ",
                                      check.meta_revision));
    }
  }
  // The counters (schema 5) count exactly the tasks: no change counted
  // twice, none missed, none half.
  std::map<std::string, int64_t> actual;
  for (const auto& [id, task] : check.tasks) {
    ++actual[absl::StrCat(task.tenant_id(), "/", task.state(), "/",
                          task.result_code())];
  }
  if (counted != actual) {
    problems.push_back(absl::StrCat("task_counts holds ", counted.size(),
                                    " non-zero groups, the tasks ",
                                    actual.size(), "; they differ"));
    for (const auto& [group, n] : actual) {
      auto it = counted.find(group);
      const int64_t c = it == counted.end() ? 0 : it->second;
      if (c != n) {
        problems.push_back(absl::StrCat("task_counts[", group, "] is ", c,
                                        " but ", n, " tasks are there"));
      }
    }
  }
  return check;
}

}  // namespace taskd::testing
