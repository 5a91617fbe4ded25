// Upgrades (issue 16). A database left by a taskd of every earlier schema
// version opens with this one and keeps everything: every task (field by
// field, by id and by uuid, in List), the history that was kept, the
// revision, the page-token secret and the dashboard counters; the upgraded
// database has exactly the schema of a new one. A database of a newer
// version is refused, untouched.
//
// The old databases are built here, not stored as binary files: from the
// migrations as they shipped (tests/frozen_schemas.h, never edited), filled
// with rows in the shape that version's store wrote. So an edit of a
// shipped migration in the store is caught (a new database would differ
// from the frozen schema), and so is a migration that loses data.
#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "query/filter.h"
#include "query/task_counts.h"
#include "query/task_fields.h"
#include "storage/sqlite_task_store.h"
#include "tests/frozen_schemas.h"
#include "tests/test_store.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using ::testing::ContainsRegex;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// ---- The test's own SQLite access -----------------------------------------

// A value for a statement of the test's own.
struct Blob {
  std::string bytes;
};
using SqlValue = std::variant<std::nullptr_t, int64_t, std::string, Blob>;

// A raw connection, for writing old databases and reading what the store
// left. Every error is a test failure.
class Database {
 public:
  explicit Database(const std::string& path, bool read_only = false) {
    const int flags = read_only ? SQLITE_OPEN_READONLY
                                : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db_, flags, nullptr), SQLITE_OK)
        << path;
  }
  ~Database() { sqlite3_close(db_); }
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  void Exec(const std::string& sql) {
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error),
              SQLITE_OK)
        << (error ? error : "") << "\n"
        << sql;
    sqlite3_free(error);
  }

  // Runs `sql` with ?1, ?2, ... bound to `values`.
  void Run(const std::string& sql, const std::vector<SqlValue>& values) {
    Rows(sql, values);
  }

  // Every row of `sql`, each column as its text or bytes; NULL as "NULL".
  std::vector<std::vector<std::string>> Rows(
      const std::string& sql, const std::vector<SqlValue>& values = {}) {
    std::vector<std::vector<std::string>> rows;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return rows;
    }
    for (size_t i = 0; i < values.size(); ++i) {
      const int index = static_cast<int>(i) + 1;
      const SqlValue& value = values[i];
      if (const auto* number = std::get_if<int64_t>(&value)) {
        sqlite3_bind_int64(stmt, index, *number);
      } else if (const auto* text = std::get_if<std::string>(&value)) {
        sqlite3_bind_text(stmt, index, text->data(),
                          static_cast<int>(text->size()), SQLITE_TRANSIENT);
      } else if (const auto* blob = std::get_if<Blob>(&value)) {
        sqlite3_bind_blob(stmt, index, blob->bytes.data(),
                          static_cast<int>(blob->bytes.size()),
                          SQLITE_TRANSIENT);
      }  // else NULL
    }
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      std::vector<std::string>& row = rows.emplace_back();
      for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
        if (sqlite3_column_type(stmt, c) == SQLITE_NULL) {
          row.push_back("NULL");
          continue;
        }
        const void* bytes = sqlite3_column_blob(stmt, c);
        row.emplace_back(static_cast<const char*>(bytes),
                         static_cast<size_t>(sqlite3_column_bytes(stmt, c)));
      }
    }
    EXPECT_EQ(rc, SQLITE_DONE) << sql << ": " << sqlite3_errmsg(db_);
    sqlite3_finalize(stmt);
    return rows;
  }

  // The first column of every row of `sql`.
  std::vector<std::string> Column(const std::string& sql) {
    std::vector<std::string> column;
    for (std::vector<std::string>& row : Rows(sql)) {
      column.push_back(std::move(row.at(0)));
    }
    return column;
  }

 private:
  sqlite3* db_ = nullptr;
};

// The schema of the database at `path`: sqlite_master's rows (type, name,
// table, SQL), each on one line, with every run of whitespace in the SQL
// made one space (the SQL is kept as the migration spelled it, so a
// reindented migration would otherwise differ).
std::vector<std::string> SchemaOf(const std::string& path) {
  Database db(path, /*read_only=*/true);
  std::vector<std::string> schema;
  for (const std::vector<std::string>& row :
       db.Rows("SELECT type, name, tbl_name, sql FROM sqlite_master "
               "ORDER BY type, name")) {
    schema.push_back(absl::StrCat(
        row[0], " ", row[1], " on ", row[2], ": ",
        absl::StrJoin(absl::StrSplit(row[3], absl::ByAnyChar(" \t\r\n"),
                                     absl::SkipEmpty()),
                      " ")));
  }
  return schema;
}

// What differs between two schemas: "- " and the lines only `want` has,
// "+ " and those only `got` has; empty if they are the same.
std::string SchemaDiff(std::vector<std::string> want,
                       std::vector<std::string> got) {
  std::sort(want.begin(), want.end());
  std::sort(got.begin(), got.end());
  std::vector<std::string> lines;
  std::set_difference(want.begin(), want.end(), got.begin(), got.end(),
                      std::back_inserter(lines));
  for (std::string& line : lines) line.insert(0, "- ");
  const size_t missing = lines.size();
  std::set_difference(got.begin(), got.end(), want.begin(), want.end(),
                      std::back_inserter(lines));
  for (size_t i = missing; i < lines.size(); ++i) lines[i].insert(0, "+ ");
  return absl::StrJoin(lines, "\n");
}

// The schema of a database the store creates.
std::vector<std::string> FreshSchema() {
  testing::TempStore fresh;
  absl::Status opened = fresh.Open();
  EXPECT_TRUE(opened.ok()) << opened;
  fresh.store.reset();
  return SchemaOf(fresh.options.path);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// What differs between two tasks; empty if nothing does.
std::string DiffOf(const Task& want, const Task& got) {
  std::string report;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&report);
  return differencer.Compare(want, got) ? "" : report;
}

// ---- What an earlier taskd left ------------------------------------------

// A (tenant_id, state, result_code) counter of task_counts (migration 5).
using CounterKey = std::tuple<std::string, int64_t, int64_t>;

CounterKey CounterOf(const Task& task) {
  return {task.tenant_id(), task.state(), task.result_code()};
}

// What a taskd did to its database, recorded as its store records it: every
// change from revision 1 on (the task after it, stamped with the revision
// and etag; the task before it), the tasks after the last change, and the
// counters as the store's CountChange keeps them (a counter that falls to
// zero stays).
struct History {
  explicit History(absl::Time start) : now(start) {}

  void Create(Task task, const std::string& request_id = "") {
    Tick();
    *task.mutable_enqueued_at() = ToTimestamp(now);
    *task.mutable_updated_at() = ToTimestamp(now);
    Stamp(task);
    request_ids[task.id()] = request_id;
    tasks[task.id()] = task;
    counters[CounterOf(task)] += 1;
    changes.push_back(
        {revision, Change::Kind::kCreated, task, std::nullopt, now});
  }

  void Update(const std::string& id, const std::function<void(Task&)>& edit) {
    Tick();
    const Task before = tasks.at(id);
    Task after = before;
    edit(after);
    *after.mutable_updated_at() = ToTimestamp(now);
    Stamp(after);
    tasks[id] = after;
    if (CounterOf(before) != CounterOf(after)) {
      counters[CounterOf(before)] -= 1;
      counters[CounterOf(after)] += 1;
    }
    changes.push_back({revision, Change::Kind::kUpdated, after, before, now});
  }

  void Delete(const std::string& id) {
    Tick();
    const Task before = tasks.at(id);
    Task deleted = before;
    Stamp(deleted);
    tasks.erase(id);
    request_ids.erase(id);
    counters[CounterOf(before)] -= 1;
    changes.push_back({revision, Change::Kind::kDeleted, deleted, before, now});
  }

  // Each change a minute and a half (and some microseconds) after the last.
  void Tick() {
    ++revision;
    now += absl::Seconds(90) + absl::Microseconds(1234);
  }
  void Stamp(Task& task) const {
    task.set_revision(revision);
    task.set_etag(absl::StrCat("r", revision));
  }

  absl::Time now;
  int64_t revision = 0;
  std::map<std::string, Task> tasks;  // by id
  std::map<std::string, std::string> request_ids;
  std::vector<Change> changes;
  std::map<CounterKey, int64_t> counters;
};

constexpr char kTenantA[] = "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
constexpr char kTenantB[] = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a";

Task NewTask(const std::string& id, int n, const std::string& tenant,
             const std::string& type, const std::string& priority) {
  Task task;
  task.set_id(id);
  task.set_uuid(absl::StrCat("00000000-0000-4000-8000-", 100000000000 + n));
  task.set_type(type);
  task.set_state(Task::enqueued);
  task.set_priority(priority);
  task.set_tenant_id(tenant);
  return task;
}

// A few tasks through their lives, as a taskd of schema `version` would
// have run them: varied states, results, priorities and tenants (one
// none); policy, resource, executor, result and times set on some and not
// others (so that each partial index of migration 6 holds some tasks and
// not others); a deleted task; a request id. From version 4 (executors) the
// executor fields too, those with columns and those kept in `detail`.
History RunTasks(int version, absl::Time start) {
  const bool executors = version >= 4;
  History h(start);
  auto time = [&h](absl::Duration after) { return ToTimestamp(h.now + after); };

  Task a1 = NewTask("backup-a1", 1, kTenantA, "backup", "normal");
  a1.set_policy_id("p-1");
  a1.set_resource_id("r-1");
  if (executors) *a1.mutable_ack_timeout() = ToDuration(absl::Seconds(30));
  h.Create(a1);
  h.Create(NewTask("restore-a2", 2, kTenantA, "restore", "high"), "req-a2");
  Task b1 = NewTask("backup-b1", 3, kTenantB, "backup", "low");
  b1.set_resource_id("r-2");
  h.Create(b1);
  h.Create(NewTask("gone", 4, "", "backup", "normal"), "req-gone");
  h.Update("backup-a1", [&](Task& t) {
    t.set_state(Task::assigned);
    t.set_executor_id("agent-1");
    if (executors) {
      t.set_assign_count(1);
      *t.mutable_assigned_at() = time(absl::ZeroDuration());
      *t.mutable_lease_expires_at() = time(absl::Seconds(30));
      *t.mutable_deadline() = time(absl::Seconds(30));
    }
  });
  h.Update("backup-a1", [&](Task& t) {
    t.set_state(Task::started);
    *t.mutable_started_at() = time(absl::ZeroDuration());
    if (executors) {
      *t.mutable_heart_beat_interval() = ToDuration(absl::Seconds(10));
      *t.mutable_exec_timeout() = ToDuration(absl::Hours(1));
      t.mutable_progress()->set_current(1);
      t.mutable_progress()->set_total(4);
      *t.mutable_lease_expires_at() = time(absl::Seconds(30));
      *t.mutable_deadline() = time(absl::Seconds(30));
      t.set_cancel_requested(true);
    }
  });
  h.Delete("gone");
  h.Update("backup-b1", [&](Task& t) {
    t.set_state(Task::completed);
    t.set_result_code(Task::ok);
    t.set_executor_id("agent-2");
    *t.mutable_started_at() = time(-absl::Minutes(1));
    *t.mutable_completed_at() = time(absl::ZeroDuration());
    if (executors) {
      t.set_assign_count(1);
      *t.mutable_assigned_at() = time(-absl::Minutes(1));
    }
  });
  Task c1 = NewTask("replicate-c1", 5, "", "replication", "aboveNormal");
  c1.set_policy_id("p-2");
  h.Create(c1);
  h.Update("replicate-c1", [&](Task& t) {
    t.set_state(Task::completed);
    t.set_result_code(Task::cancelled);
    *t.mutable_completed_at() = time(absl::ZeroDuration());
  });
  h.Update("restore-a2", [&](Task& t) {
    t.set_state(Task::paused);
    t.set_executor_id("agent-1");
    *t.mutable_started_at() = time(absl::ZeroDuration());
    if (executors) {
      t.set_assign_count(2);
      t.set_max_assign_count(3);
      *t.mutable_assigned_at() = time(-absl::Seconds(5));
      t.mutable_progress()->set_current(7);
      t.mutable_progress()->set_total(10);
      t.set_timeout(tasks::v1::heartbeat_timeout);
    }
  });
  Task b2 = NewTask("backup-b2", 6, kTenantB, "backup", "belowNormal");
  if (executors) {
    b2.set_max_assign_count(2);
    *b2.mutable_queue_timeout() = ToDuration(absl::Hours(1));
    *b2.mutable_deadline() = time(absl::Hours(1) + absl::Seconds(90));
  }
  h.Create(b2);
  Task c2 = NewTask("backup-c2", 7, "", "backup", "normal");
  c2.set_resource_id("r-1");
  h.Create(c2);
  h.Update("backup-c2", [&](Task& t) {
    t.set_state(Task::completed);
    t.set_result_code(Task::error);
    t.set_executor_id("agent-3");
    *t.mutable_started_at() = time(-absl::Seconds(30));
    *t.mutable_completed_at() = time(absl::ZeroDuration());
    if (executors) {
      t.set_assign_count(1);
      *t.mutable_assigned_at() = time(-absl::Seconds(40));
      t.set_timeout(tasks::v1::exec_timeout);
    }
  });
  return h;
}

// The history kept: revisions 1 to 4 were trimmed.
constexpr int64_t kOldestKept = 5;

// The priority ranks the tasks table has held since version 1.
int64_t StoredPriority(const std::string& name) {
  static const auto* ranks =
      new std::map<std::string, int64_t>{{"low", 1},
                                         {"belowNormal", 2},
                                         {"normal", 3},
                                         {"aboveNormal", 4},
                                         {"high", 5}};
  return ranks->at(name);
}

// The `detail` column (version 4 on): the task without the fields that
// have columns, its etag (derived from the revision) and its lease token
// (never stored).
std::string StoredDetail(const Task& task) {
  Task detail = task;
  detail.clear_id();
  detail.clear_uuid();
  detail.clear_type();
  detail.clear_state();
  detail.clear_result_code();
  detail.clear_priority();
  detail.clear_policy_id();
  detail.clear_resource_id();
  detail.clear_executor_id();
  detail.clear_tenant_id();
  detail.clear_enqueued_at();
  detail.clear_started_at();
  detail.clear_completed_at();
  detail.clear_updated_at();
  detail.clear_revision();
  detail.clear_assign_count();
  detail.clear_cancel_requested();
  detail.clear_assigned_at();
  detail.clear_deadline();
  detail.clear_etag();
  detail.clear_lease_token();
  return detail.SerializeAsString();
}

// The task's row in the columns of schema `version`.
void InsertTask(Database& db, int version, const Task& task,
                const std::string& request_id) {
  std::string columns =
      "id, uuid, type, state, result_code, priority, policy_id, resource_id, "
      "executor_id, tenant_id, enqueued_at, started_at, completed_at, "
      "updated_at, revision, request_id";
  std::vector<SqlValue> values = {task.id(),
                                  task.uuid(),
                                  task.type(),
                                  int64_t{task.state()},
                                  int64_t{task.result_code()},
                                  StoredPriority(task.priority()),
                                  task.policy_id(),
                                  task.resource_id(),
                                  task.executor_id(),
                                  task.tenant_id(),
                                  TimestampMicros(task.enqueued_at()),
                                  TimestampMicros(task.started_at()),
                                  TimestampMicros(task.completed_at()),
                                  TimestampMicros(task.updated_at()),
                                  task.revision(),
                                  request_id};
  if (version >= 4) {
    absl::StrAppend(&columns,
                    ", assign_count, cancel_requested, assigned_at, deadline, "
                    "detail");
    values.insert(
        values.end(),
        {int64_t{task.assign_count()}, int64_t{task.cancel_requested() ? 1 : 0},
         TimestampMicros(task.assigned_at()), TimestampMicros(task.deadline()),
         Blob{StoredDetail(task)}});
  }
  std::vector<std::string> placeholders;
  for (size_t i = 1; i <= values.size(); ++i) {
    placeholders.push_back(absl::StrCat("?", i));
  }
  db.Run(absl::StrCat("INSERT INTO tasks (", columns, ") VALUES (",
                      absl::StrJoin(placeholders, ", "), ")"),
         values);
}

// The database a taskd of schema `version` left after `history`: the
// frozen schema of that version, the tasks, the history from kOldestKept
// on, the revision, the secret (if any) and, from version 5, the counters.
// In WAL mode, as every store has left its database.
void WriteDatabase(const std::string& path, int version, const History& history,
                   const std::optional<std::string>& secret) {
  ASSERT_LE(version, testing::kFrozenSchemaVersions)
      << "schema version " << version
      << " has shipped but has no frozen text: copy its migration from "
         "storage/sqlite_task_store.cc into tests/frozen_schemas.h";
  Database db(path);
  EXPECT_EQ(db.Column("PRAGMA journal_mode=WAL"),
            std::vector<std::string>{"wal"});
  db.Exec("BEGIN");
  db.Exec(testing::FrozenSchema(version));
  for (const auto& [id, task] : history.tasks) {
    InsertTask(db, version, task, history.request_ids.at(id));
  }
  for (const Change& change : history.changes) {
    if (change.revision < kOldestKept) continue;
    db.Run(
        "INSERT INTO changes (revision, kind, task_id, task, previous, "
        "committed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        {change.revision, static_cast<int64_t>(change.kind), change.task.id(),
         Blob{change.task.SerializeAsString()},
         change.previous.has_value()
             ? SqlValue(Blob{change.previous->SerializeAsString()})
             : SqlValue(nullptr),
         absl::ToUnixMicros(change.committed_at)});
  }
  db.Run("UPDATE meta SET value = ?1 WHERE key = 'revision'",
         {history.revision});
  if (secret.has_value()) {
    db.Run("INSERT INTO meta (key, value) VALUES ('secret', ?1)",
           {Blob{*secret}});
  }
  if (version >= 5) {
    for (const auto& [key, n] : history.counters) {
      const auto& [tenant, state, result_code] = key;
      db.Run(
          "INSERT INTO task_counts (tenant_id, state, result_code, n) "
          "VALUES (?1, ?2, ?3, ?4)",
          {tenant, state, result_code, n});
    }
  }
  db.Exec("COMMIT");
}

// 32 bytes, as RandomSecret makes them: a zero byte, high bytes.
std::string TestSecret() {
  std::string secret(32, '\0');
  for (size_t i = 0; i < secret.size(); ++i) {
    secret[i] = static_cast<char>((i * 53 + 7 * (i / 5)) & 0xff);
  }
  secret[3] = '\0';
  return secret;
}

// The counters a store keeps, for the tasks of `history`: what CountChange
// left (zeros included) from version 5; what migration 5 computes (the
// tasks there are) before.
std::vector<std::vector<std::string>> CountersAfterUpgrade(
    int version, const History& history) {
  std::map<CounterKey, int64_t> counters;
  if (version >= 5) {
    counters = history.counters;
  } else {
    for (const auto& [id, task] : history.tasks) counters[CounterOf(task)] += 1;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& [key, n] : counters) {
    const auto& [tenant, state, result_code] = key;
    rows.push_back({tenant, absl::StrCat(state), absl::StrCat(result_code),
                    absl::StrCat(n)});
  }
  return rows;
}

// ---- Upgrades --------------------------------------------------------------

class UpgradeTest : public ::testing::TestWithParam<int> {
 protected:
  int version() const { return GetParam(); }
  const std::string& path() const { return temp_.options.path; }

  // The tasks in List's default order (enqueued_at, id).
  std::vector<Task> InDefaultOrder() const {
    std::vector<Task> tasks;
    for (const auto& [id, task] : history_.tasks) tasks.push_back(task);
    std::sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) {
      return std::make_pair(TimestampMicros(a.enqueued_at()), a.id()) <
             std::make_pair(TimestampMicros(b.enqueued_at()), b.id());
    });
    return tasks;
  }

  // Count() of the tasks `filter` matches, by `group_by`, answers what the
  // tasks written say.
  void ExpectCount(const std::string& filter,
                   const std::vector<TaskField>& group_by) {
    SCOPED_TRACE(
        absl::StrCat("count '", filter, "' by ", group_by.size(), " field(s)"));
    CountQuery query;
    query.filter = ParseFilter(filter).value();
    query.group_by = group_by;
    TaskCounts want(group_by);
    for (const auto& [id, task] : history_.tasks) {
      if (Matches(query.filter.get(), task)) want.Add(task, 1);
    }
    absl::StatusOr<CountResult> got = temp_.store->Count(query);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->groups, want.groups());
    EXPECT_EQ(got->revision, history_.revision);
  }

  testing::TempStore temp_;
  // Two days before the store's clock: within its 7 days of history.
  History history_ = RunTasks(version(), temp_.clock.Now() - absl::Hours(48));
};

TEST_P(UpgradeTest, KeepsEveryTaskTheHistoryAndTheSecret) {
  const std::string secret = TestSecret();
  WriteDatabase(path(), version(), history_, secret);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_EQ(history_.tasks.size(), 6u);
  ASSERT_EQ(history_.revision, 14);

  absl::Status opened = temp_.Open();
  ASSERT_TRUE(opened.ok()) << opened;
  TaskStore& store = *temp_.store;
  EXPECT_EQ(store.CurrentRevision(), history_.revision);
  EXPECT_EQ(store.OldestRevision(), kOldestKept);
  EXPECT_EQ(store.InstanceSecret(), secret);

  // Every task, by id and by uuid, field by field.
  for (const auto& [id, want] : history_.tasks) {
    for (const std::string& key : {want.id(), want.uuid()}) {
      absl::StatusOr<Task> got = store.Get(key);
      ASSERT_TRUE(got.ok()) << key << ": " << got.status();
      EXPECT_EQ(DiffOf(want, *got), "") << key;
    }
  }
  EXPECT_EQ(store.Get("gone").status().code(), absl::StatusCode::kNotFound);

  // All of them in List's default order, at the revision written.
  const std::vector<Task> ordered = InDefaultOrder();
  absl::StatusOr<ListResult> page = store.List(ListQuery{});
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_FALSE(page->more);
  EXPECT_EQ(page->revision, history_.revision);
  ASSERT_EQ(page->tasks.size(), ordered.size());
  for (size_t i = 0; i < ordered.size(); ++i) {
    EXPECT_EQ(DiffOf(ordered[i], page->tasks[i]), "") << "list row " << i;
  }

  // Filters on the columns of the partial indexes (and others) find what
  // they must: the indexes built or rebuilt by the migrations hold the old
  // rows.
  for (const std::string& filter : std::vector<std::string>{
           "executor_id = \"agent-1\"", "policy_id = \"p-1\"",
           "resource_id = \"r-1\"", "result_code = ok", "result_code:*",
           "completedAt:*", "startedAt >= \"2020-01-01T00:00:00Z\"",
           std::string("tenant_id = \"") + kTenantB +
               "\" AND state = completed",
           "state = enqueued", "type = backup AND priority >= normal"}) {
    ListQuery query;
    absl::StatusOr<std::shared_ptr<const FilterExpr>> parsed =
        ParseFilter(filter);
    ASSERT_TRUE(parsed.ok()) << filter << ": " << parsed.status();
    query.filter = *parsed;
    std::vector<std::string> want;
    for (const Task& task : ordered) {
      if (Matches(query.filter.get(), task)) want.push_back(task.id());
    }
    EXPECT_FALSE(want.empty()) << filter;  // the filter tests something
    absl::StatusOr<ListResult> found = store.List(query);
    ASSERT_TRUE(found.ok()) << filter << ": " << found.status();
    std::vector<std::string> got;
    for (const Task& task : found->tasks) got.push_back(task.id());
    EXPECT_EQ(got, want) << filter;
  }

  // The history that was kept, change by change; what was trimmed stays
  // trimmed.
  std::vector<Change> kept;
  for (const Change& change : history_.changes) {
    if (change.revision >= kOldestKept) kept.push_back(change);
  }
  absl::StatusOr<std::vector<Change>> changes =
      store.ReadChanges(kOldestKept, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  ASSERT_EQ(changes->size(), kept.size());
  for (size_t i = 0; i < kept.size(); ++i) {
    const Change& want = kept[i];
    const Change& got = (*changes)[i];
    SCOPED_TRACE(absl::StrCat("revision ", want.revision));
    EXPECT_EQ(got.revision, want.revision);
    EXPECT_EQ(got.kind, want.kind);
    EXPECT_EQ(DiffOf(want.task, got.task), "");
    ASSERT_EQ(got.previous.has_value(), want.previous.has_value());
    if (want.previous.has_value()) {
      EXPECT_EQ(DiffOf(*want.previous, *got.previous), "");
    }
    EXPECT_EQ(got.committed_at, want.committed_at);
  }
  EXPECT_EQ(store.ReadChanges(kOldestKept - 1, 100).status().code(),
            absl::StatusCode::kOutOfRange);

  // Counts from the counters (state, tenant, result code) and from the
  // tasks (type, priority).
  ExpectCount("", {TaskField::kState});
  ExpectCount("", {TaskField::kTenantId, TaskField::kState});
  ExpectCount("", {TaskField::kState, TaskField::kResultCode});
  ExpectCount(absl::StrCat("tenant_id = \"", kTenantA, "\""),
              {TaskField::kState});
  ExpectCount("", {});
  ExpectCount("", {TaskField::kType, TaskField::kPriority});

  // The timers' deadlines (version 4 on), earliest first.
  std::vector<std::pair<int64_t, std::string>> deadlines;
  for (const auto& [id, task] : history_.tasks) {
    if (task.has_deadline()) {
      deadlines.emplace_back(TimestampMicros(task.deadline()), id);
    }
  }
  std::sort(deadlines.begin(), deadlines.end());
  EXPECT_EQ(deadlines.empty(), version() < 4);
  absl::StatusOr<std::vector<Task>> due = store.ListByDeadline(10);
  ASSERT_TRUE(due.ok()) << due.status();
  std::vector<std::string> due_ids;
  for (const Task& task : *due) due_ids.push_back(task.id());
  std::vector<std::string> want_due;
  for (const auto& [deadline, id] : deadlines) want_due.push_back(id);
  EXPECT_EQ(due_ids, want_due);

  // A retried create still finds its first task by request id, and writes
  // nothing.
  Task retry = NewTask("retry", 8, kTenantA, "restore", "high");
  *retry.mutable_enqueued_at() = ToTimestamp(temp_.clock.Now());
  *retry.mutable_updated_at() = ToTimestamp(temp_.clock.Now());
  absl::StatusOr<Task> deduplicated = store.Create(retry, "req-a2");
  ASSERT_TRUE(deduplicated.ok()) << deduplicated.status();
  EXPECT_EQ(DiffOf(history_.tasks.at("restore-a2"), *deduplicated), "");
  EXPECT_EQ(store.CurrentRevision(), history_.revision);
  temp_.store.reset();

  // The file: at the current version, sound, with the counters migrated
  // (kept from version 5, computed by migration 5 before), the partial
  // indexes holding exactly the tasks whose column is set, and exactly the
  // schema of a new database.
  {
    Database db(path(), /*read_only=*/true);
    EXPECT_EQ(db.Column("SELECT version FROM schema_version"),
              std::vector<std::string>{absl::StrCat(SqliteSchemaVersion())});
    EXPECT_EQ(db.Column("PRAGMA integrity_check"),
              std::vector<std::string>{"ok"});
    EXPECT_EQ(db.Rows("SELECT tenant_id, state, result_code, n "
                      "FROM task_counts ORDER BY tenant_id, state, "
                      "result_code"),
              CountersAfterUpgrade(version(), history_));
    const struct {
      const char* index;
      const char* condition;
      std::function<bool(const Task&)> holds;
    } partial[] = {
        {"tasks_by_policy", "policy_id <> ''",
         [](const Task& t) { return !t.policy_id().empty(); }},
        {"tasks_by_resource", "resource_id <> ''",
         [](const Task& t) { return !t.resource_id().empty(); }},
        {"tasks_by_executor", "executor_id <> ''",
         [](const Task& t) { return !t.executor_id().empty(); }},
        {"tasks_by_result", "result_code <> 0",
         [](const Task& t) { return t.result_code() != 0; }},
        {"tasks_by_completed", "completed_at <> 0",
         [](const Task& t) { return t.has_completed_at(); }},
        {"tasks_by_started", "started_at <> 0",
         [](const Task& t) { return t.has_started_at(); }},
        {"tasks_by_deadline", "deadline <> 0",
         [](const Task& t) { return t.has_deadline(); }},
        {"tasks_by_request", "request_id <> ''",
         [this](const Task& t) {
           return !history_.request_ids.at(t.id()).empty();
         }},
    };
    for (const auto& [index, condition, holds] : partial) {
      std::vector<std::string> want;
      for (const auto& [id, task] : history_.tasks) {
        if (holds(task)) want.push_back(id);
      }
      EXPECT_THAT(
          db.Column(absl::StrCat("SELECT id FROM tasks INDEXED BY ", index,
                                 " WHERE ", condition, " ORDER BY id")),
          ElementsAreArray(want))
          << index;
    }
  }
  EXPECT_EQ(SchemaDiff(FreshSchema(), SchemaOf(path())), "")
      << "- a new database, + this one upgraded";

  // Opened again: nothing to migrate, the same state; the next write takes
  // the next revision and is counted.
  opened = temp_.Open();
  ASSERT_TRUE(opened.ok()) << opened;
  EXPECT_EQ(temp_.store->CurrentRevision(), history_.revision);
  EXPECT_EQ(temp_.store->InstanceSecret(), secret);
  absl::StatusOr<Task> created = temp_.store->Create(
      testing::NewStoreTask("after-upgrade", 99, temp_.clock.Now()), "");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->revision(), history_.revision + 1);
  EXPECT_EQ(temp_.store->CurrentRevision(), history_.revision + 1);
  changes = temp_.store->ReadChanges(history_.revision + 1, 10);
  ASSERT_TRUE(changes.ok()) << changes.status();
  ASSERT_EQ(changes->size(), 1u);
  EXPECT_EQ(DiffOf(*created, (*changes)[0].task), "");
  history_.tasks[created->id()] = *created;
  history_.revision = created->revision();
  ExpectCount("", {TaskField::kTenantId, TaskField::kState});
  EXPECT_EQ(temp_.store->OldestRevision(), kOldestKept);
}

// A database whose taskd never wrote a secret gets one when it is opened,
// and keeps it.
TEST_P(UpgradeTest, WithoutASecretGetsOneThatLasts) {
  WriteDatabase(path(), version(), history_, std::nullopt);
  ASSERT_FALSE(HasFatalFailure());
  absl::Status opened = temp_.Open();
  ASSERT_TRUE(opened.ok()) << opened;
  const std::string secret = temp_.store->InstanceSecret();
  EXPECT_EQ(secret.size(), 32u);
  EXPECT_EQ(temp_.store->CurrentRevision(), history_.revision);
  opened = temp_.Open();
  ASSERT_TRUE(opened.ok()) << opened;
  EXPECT_EQ(temp_.store->InstanceSecret(), secret);
}

// Every version before the current one. A version whose migration has not
// been frozen yet (tests/frozen_schemas.h) fails WriteDatabase, saying so.
INSTANTIATE_TEST_SUITE_P(EveryEarlierVersion, UpgradeTest,
                         ::testing::Range(1, SqliteSchemaVersion()),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return absl::StrCat("FromVersion", info.param);
                         });

// ---- The frozen schemas ----------------------------------------------------

// The store's migrations build exactly what the frozen ones build: a
// shipped migration was not edited.
TEST(FrozenSchemaTest, NewDatabaseHasTheFrozenSchema) {
  ASSERT_GE(SqliteSchemaVersion(), testing::kFrozenSchemaVersions)
      << "a shipped migration was removed from the store";
  testing::TempDir dir;
  const std::string frozen = dir.File("frozen.db");
  {
    Database db(frozen);
    db.Exec(testing::FrozenSchema(testing::kFrozenSchemaVersions));
  }
  if (SqliteSchemaVersion() > testing::kFrozenSchemaVersions) {
    // The newest migrations have no frozen text yet (see
    // tests/frozen_schemas.h): the store applies them to the frozen
    // schema, which must then be the new database's.
    testing::TempStore upgrade;
    upgrade.options.path = frozen;
    absl::Status opened = upgrade.Open();
    ASSERT_TRUE(opened.ok()) << opened;
  }
  EXPECT_EQ(SchemaDiff(SchemaOf(frozen), FreshSchema()), "")
      << "- the frozen migrations, + the store's";
}

// Each frozen script makes an empty database of its version: the version
// row, meta's revision at 0.
TEST(FrozenSchemaTest, EachScriptRecordsItsVersion) {
  for (int v = 1; v <= testing::kFrozenSchemaVersions; ++v) {
    Database db(":memory:");
    db.Exec(testing::FrozenSchema(v));
    EXPECT_EQ(db.Column("SELECT version FROM schema_version"),
              std::vector<std::string>{absl::StrCat(v)});
    EXPECT_EQ(db.Column("SELECT value FROM meta WHERE key = 'revision'"),
              std::vector<std::string>{"0"});
  }
}

// ---- Downgrades ------------------------------------------------------------

// A database written by a newer taskd (the next schema version) is refused
// with FailedPrecondition, a message that names its version and the newest
// this taskd knows, and not a byte of the file changed.
TEST(DowngradeTest, NewerSchemaIsRefusedUntouched) {
  testing::TempStore temp;
  ASSERT_TRUE(temp.Open().ok());
  ASSERT_TRUE(
      temp.store->Create(testing::NewStoreTask("t1", 1, temp.clock.Now()), "")
          .ok());
  temp.store.reset();
  const int newer = SqliteSchemaVersion() + 1;
  {
    Database db(temp.options.path);
    db.Exec(absl::StrCat("UPDATE schema_version SET version = ", newer));
  }
  const std::string before = ReadFile(temp.options.path);
  ASSERT_FALSE(before.empty());

  absl::Status refused = temp.Open();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  // The numbers, as words of their own, in the message without the path.
  const std::string message = absl::StrReplaceAll(
      refused.message(), {{temp.options.path, "<database>"}});
  EXPECT_THAT(message,
              ContainsRegex(absl::StrCat("(^|[^0-9])", newer, "([^0-9]|$)")));
  EXPECT_THAT(message, ContainsRegex(absl::StrCat(
                           "(^|[^0-9])", SqliteSchemaVersion(), "([^0-9]|$)")));
  EXPECT_THAT(message, HasSubstr("newer"));
  EXPECT_TRUE(ReadFile(temp.options.path) == before)
      << "the refused database file changed";

  // Refused again (nothing was half done the first time).
  EXPECT_EQ(temp.Open().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(ReadFile(temp.options.path) == before)
      << "the refused database file changed";
}

// The same for a file in rollback-journal mode (a copy made with another
// tool, VACUUM INTO): opening it must not switch it to WAL first.
TEST(DowngradeTest, NewerSchemaInRollbackModeIsRefusedUntouched) {
  testing::TempStore temp;
  ASSERT_TRUE(temp.Open().ok());
  temp.store.reset();
  {
    Database db(temp.options.path);
    db.Exec("PRAGMA journal_mode=DELETE");
    db.Exec(absl::StrCat("UPDATE schema_version SET version = ",
                         SqliteSchemaVersion() + 1));
  }
  const std::string before = ReadFile(temp.options.path);
  ASSERT_EQ(before[18], 1) << "not in rollback-journal mode";
  absl::Status refused = temp.Open();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_TRUE(ReadFile(temp.options.path) == before)
      << "the refused database file changed";
}

}  // namespace
}  // namespace taskd
