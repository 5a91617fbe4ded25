// The schema's indexes (migration 2): a version 1 database migrates and keeps
// its data, and the typical ListTasks questions are answered by seeking an
// index rather than by reading or sorting the whole table. The plans are
// checked with EXPLAIN QUERY PLAN on the SQL the store itself builds
// (storage/sqlite_query.h). Without ANALYZE statistics (taskd never runs
// ANALYZE) SQLite's plans do not depend on the data, so an empty database
// shows the plans a large one gets; bench/list_bench times them over
// 1,000,000 tasks.
#include <sqlite3.h>

#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "query/filter.h"
#include "query/order_by.h"
#include "storage/sqlite_query.h"
#include "storage/sqlite_task_store.h"
#include "tests/frozen_schemas.h"
#include "tests/test_store.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::Not;

// A small owner of a raw sqlite3 handle for the test's own reads.
class Database {
 public:
  explicit Database(const std::string& path, bool read_only = true) {
    const int flags = read_only ? SQLITE_OPEN_READONLY
                                : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db_, flags, nullptr), SQLITE_OK);
  }
  ~Database() { sqlite3_close(db_); }
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  void Exec(const std::string& sql) {
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error),
              SQLITE_OK)
        << (error ? error : "");
    sqlite3_free(error);
  }

  // The first column of every row of `sql`, bound to `params`, as text.
  std::vector<std::string> Column(const std::string& sql,
                                  const std::vector<FieldValue>& params = {},
                                  int column = 0) {
    std::vector<std::string> values;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return values;
    }
    for (size_t i = 0; i < params.size(); ++i) {
      const int index = static_cast<int>(i) + 1;
      if (const auto* number = std::get_if<int64_t>(&params[i])) {
        sqlite3_bind_int64(stmt, index, *number);
      } else {
        const std::string& text = std::get<std::string>(params[i]);
        sqlite3_bind_text(stmt, index, text.data(),
                          static_cast<int>(text.size()), SQLITE_TRANSIENT);
      }
    }
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, column);
      values.push_back(text ? reinterpret_cast<const char*>(text) : "");
    }
    sqlite3_finalize(stmt);
    return values;
  }

 private:
  sqlite3* db_ = nullptr;
};

// The indexes of migrations 2, 3 and 4.
const std::vector<std::string>& CurrentIndexes() {
  static const auto* names = new std::vector<std::string>{
      "tasks_by_tenant",         "tasks_by_tenant_state", "tasks_by_state",
      "tasks_by_state_priority", "tasks_by_type",         "tasks_by_policy",
      "tasks_by_resource",       "tasks_by_executor",     "tasks_by_result",
      "tasks_by_completed",      "tasks_by_started",      "tasks_by_updated",
      "tasks_by_deadline",       "tasks_by_queue"};
  return *names;
}

class QueryIndexTest : public ::testing::Test {
 protected:
  // A store on the fixture's file (not kept by temp_: tests hold several
  // in turn).
  std::unique_ptr<TaskStore> Open() {
    absl::StatusOr<std::unique_ptr<TaskStore>> store =
        OpenSqliteTaskStore(temp_.options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  testing::TempStore temp_;
  const std::string path_ = temp_.options.path;
};

// The indexes migration 6 made partial (issue 15): each holds only the
// tasks whose column is set, so that a create writes none of them.
const std::vector<std::pair<std::string, std::string>>& PartialIndexes() {
  static const auto* indexes =
      new std::vector<std::pair<std::string, std::string>>{
          {"tasks_by_policy", "WHERE policy_id <> ''"},
          {"tasks_by_resource", "WHERE resource_id <> ''"},
          {"tasks_by_executor", "WHERE executor_id <> ''"},
          {"tasks_by_result", "WHERE result_code <> 0"},
          {"tasks_by_completed", "WHERE completed_at <> 0"},
          {"tasks_by_started", "WHERE started_at <> 0"}};
  return *indexes;
}

TEST_F(QueryIndexTest, Version1DatabaseMigratesKeepingItsData) {
  ASSERT_EQ(SqliteSchemaVersion(), 6);
  Task task;
  task.set_id("v1-task");
  task.set_uuid("0b6f6c4e-2f1d-4a8e-9c3b-5d7e8f9a0b1c");
  task.set_type("backup");
  task.set_state(Task::started);
  task.set_priority("high");
  task.set_executor_id("agent-7");
  task.set_tenant_id("3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b");
  task.set_revision(1);
  {
    Database v1(path_, /*read_only=*/false);
    v1.Exec(testing::FrozenSchema(1));  // version 1 as it shipped
    v1.Exec(
        "INSERT INTO tasks (id, uuid, type, state, result_code, priority, "
        "policy_id, resource_id, executor_id, tenant_id, enqueued_at, "
        "started_at, completed_at, updated_at, revision, request_id) VALUES "
        "('v1-task', '0b6f6c4e-2f1d-4a8e-9c3b-5d7e8f9a0b1c', 'backup', 3, 0, "
        "5, '', '', 'agent-7', '3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b', "
        "1790000000000000, 1790000060000000, 0, 1790000060000000, 1, 'r-1')");
    v1.Exec(absl::StrCat(
        "INSERT INTO changes (revision, kind, task_id, task, previous, "
        "committed_at) VALUES (1, 1, 'v1-task', x'",
        absl::BytesToHexString(task.SerializeAsString()),
        "', NULL, 1790000000000000); "
        "UPDATE meta SET value = 1 WHERE key = 'revision'"));
  }

  std::unique_ptr<TaskStore> store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->CurrentRevision(), 1);
  absl::StatusOr<Task> got = store->Get("v1-task");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state(), Task::started);
  EXPECT_EQ(got->priority(), "high");
  EXPECT_EQ(got->executor_id(), "agent-7");
  EXPECT_EQ(TimestampMicros(got->started_at()), 1790000060000000);
  EXPECT_FALSE(got->has_completed_at());
  absl::StatusOr<std::vector<Change>> changes = store->ReadChanges(1, 10);
  ASSERT_TRUE(changes.ok()) << changes.status();
  ASSERT_EQ(changes->size(), 1u);
  EXPECT_EQ((*changes)[0].task.id(), "v1-task");
  // The new indexes answer queries over the old rows.
  ListQuery query;
  query.filter = *ParseFilter(
      "tenant_id = \"3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b\" AND state = "
      "started AND executor_id = agent-7");
  absl::StatusOr<ListResult> page = store->List(query);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->tasks.size(), 1u);
  EXPECT_EQ(page->tasks[0].id(), "v1-task");
  // Migration 5 counted the old rows: a count from its counters (state
  // only) sees the task.
  absl::StatusOr<CountResult> counted =
      store->Count(CountQuery{nullptr, {TaskField::kState}});
  ASSERT_TRUE(counted.ok()) << counted.status();
  EXPECT_EQ(counted->groups,
            (std::map<GroupKey, int64_t>{{{int64_t{Task::started}}, 1}}));
  // The request id still deduplicates.
  Task retry = task;
  retry.set_id("other");
  retry.set_uuid("1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f");
  absl::StatusOr<Task> deduplicated = store->Create(retry, "r-1");
  ASSERT_TRUE(deduplicated.ok()) << deduplicated.status();
  EXPECT_EQ(deduplicated->id(), "v1-task");
  store.reset();

  Database db(path_);
  EXPECT_EQ(db.Column("SELECT version FROM schema_version"),
            std::vector<std::string>{absl::StrCat(SqliteSchemaVersion())});
  EXPECT_THAT(db.Column("SELECT name FROM sqlite_master WHERE type = 'index'"),
              IsSupersetOf(CurrentIndexes()));
  // Migration 6 replaced the full indexes of version 2 with partial ones,
  // and the old task (executor set) is in tasks_by_executor.
  for (const auto& [name, condition] : PartialIndexes()) {
    EXPECT_THAT(db.Column(absl::StrCat(
                    "SELECT sql FROM sqlite_master WHERE name = '", name, "'")),
                ElementsAre(HasSubstr(condition)))
        << name;
  }
  EXPECT_THAT(db.Column("SELECT id FROM tasks INDEXED BY tasks_by_executor "
                        "WHERE executor_id <> ''"),
              ElementsAre("v1-task"));
  EXPECT_EQ(db.Column("PRAGMA integrity_check"),
            std::vector<std::string>{"ok"});
  EXPECT_EQ(db.Column("SELECT count(*) FROM tasks"),
            std::vector<std::string>{"1"});

  // Opening again migrates nothing and changes nothing.
  store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->Get("v1-task").ok());
}

// Version 2 databases exist with and without tasks_by_state_priority (it
// was added to migration 2 for a while before it moved to 3): both open,
// migrate to the current version and end with the index.
TEST_F(QueryIndexTest, Version2DatabasesWithAndWithoutThePriorityIndex) {
  for (bool had_it : {false, true}) {
    SCOPED_TRACE(had_it ? "with the index" : "without it");
    std::filesystem::remove(path_);
    ASSERT_NE(Open(), nullptr);
    {
      Database db(path_, /*read_only=*/false);
      if (!had_it) db.Exec("DROP INDEX tasks_by_state_priority");
      // Undo migrations 5 and 4 (a version 2 database has none of them).
      for (const char* undo :
           {"DROP TABLE task_counts", "DROP INDEX tasks_by_deadline",
            "DROP INDEX tasks_by_queue",
            "ALTER TABLE tasks DROP COLUMN assign_count",
            "ALTER TABLE tasks DROP COLUMN cancel_requested",
            "ALTER TABLE tasks DROP COLUMN assigned_at",
            "ALTER TABLE tasks DROP COLUMN deadline",
            "ALTER TABLE tasks DROP COLUMN detail"}) {
        db.Exec(undo);
      }
      db.Exec("UPDATE schema_version SET version = 2");
    }
    ASSERT_NE(Open(), nullptr);
    Database db(path_);
    EXPECT_EQ(db.Column("SELECT version FROM schema_version"),
              std::vector<std::string>{absl::StrCat(SqliteSchemaVersion())});
    EXPECT_THAT(
        db.Column("SELECT name FROM sqlite_master WHERE type = 'index'"),
        IsSupersetOf(CurrentIndexes()));
  }
}

TEST_F(QueryIndexTest, NewDatabaseHasEveryIndex) {
  std::unique_ptr<TaskStore> store = Open();
  ASSERT_NE(store, nullptr);
  Database db(path_);
  EXPECT_THAT(db.Column("SELECT name FROM sqlite_master WHERE type = 'index'"),
              IsSupersetOf(CurrentIndexes()));
  EXPECT_EQ(db.Column("SELECT version FROM schema_version"),
            std::vector<std::string>{absl::StrCat(SqliteSchemaVersion())});
  for (const auto& [name, condition] : PartialIndexes()) {
    EXPECT_THAT(db.Column(absl::StrCat(
                    "SELECT sql FROM sqlite_master WHERE name = '", name, "'")),
                ElementsAre(HasSubstr(condition)))
        << name;
  }
  // A new task (nothing of those columns set) is in none of them.
  ASSERT_TRUE(
      store->Create(testing::NewStoreTask("t1", 1, temp_.clock.Now()), "")
          .ok());
  for (const auto& [name, condition] : PartialIndexes()) {
    EXPECT_THAT(db.Column(absl::StrCat("SELECT count(*) FROM tasks INDEXED BY ",
                                       name, " ", condition)),
                ElementsAre("0"))
        << name;
  }
}

struct PlanCase {
  std::string filter;
  std::string order_by;
  // The index the plan must seek or walk.
  std::string index;
  // Whether the plan may sort every matching row (USE TEMP B-TREE FOR ORDER
  // BY). A partial sort (ties on the leading key) is always allowed.
  bool full_sort_allowed = false;
  // The index of a page after a cursor, where it differs.
  std::string deep_index = index;
};

// The plan of one page: the first, or one after a cursor of `cursor` values.
std::string PlanOf(Database& db, const PlanCase& c,
                   const std::vector<FieldValue>& cursor) {
  ListQuery query;
  auto filter = ParseFilter(c.filter);
  EXPECT_TRUE(filter.ok()) << c.filter << ": " << filter.status();
  query.filter = filter.ok() ? *filter : nullptr;
  auto order = ParseOrderBy(c.order_by);
  EXPECT_TRUE(order.ok()) << c.order_by << ": " << order.status();
  if (order.ok()) query.order = *order;
  query.after = cursor;
  sqlite::SqlQuery sql = sqlite::BuildListQuery(query, 51);
  return absl::StrJoin(
      db.Column("EXPLAIN QUERY PLAN " + sql.sql, sql.params, 3), "\n");
}

// True if some line of `plan` reads the whole table without an index.
bool ScansTheTable(const std::string& plan) {
  for (absl::string_view line : absl::StrSplit(plan, '\n')) {
    if (absl::StartsWith(line, "SCAN tasks") &&
        !absl::StrContains(line, "USING")) {
      return true;
    }
  }
  return false;
}

// A cursor of the right types for `order_by`.
std::vector<FieldValue> CursorFor(const std::string& order_by) {
  std::vector<FieldValue> cursor;
  const OrderBy order = ParseOrderBy(order_by).value();
  for (const OrderKey& key : order) {
    if (InfoOf(key.field).kind == FieldKind::kString) {
      cursor.emplace_back(std::string("m"));
    } else {
      cursor.emplace_back(int64_t{1'790'000'000'000'000});
    }
  }
  return cursor;
}

// Issue 12: what the executors' machinery asks reads only what it needs.
// AcquireTask's two questions (server/dispatcher.cc builds them the same
// way) and the timers' ListByDeadline each seek an index and sort nothing.
TEST_F(QueryIndexTest, ExecutorQueriesSeekTheirIndexes) {
  ASSERT_NE(Open(), nullptr);
  Database db(path_);
  auto plan_of = [&](const ListQuery& query) {
    sqlite::SqlQuery sql = sqlite::BuildListQuery(query, 2);
    return absl::StrJoin(
        db.Column("EXPLAIN QUERY PLAN " + sql.sql, sql.params, 3), "\n");
  };
  auto enqueued = EqualsFilter(TaskField::kState, int64_t{Task::enqueued});
  // The best priority among the enqueued tasks.
  ListQuery best;
  best.filter = enqueued;
  best.order = {{TaskField::kPriority, true},
                {TaskField::kEnqueuedAt, false},
                {TaskField::kId, false}};
  std::string plan = plan_of(best);
  EXPECT_THAT(plan, HasSubstr("tasks_by_state_priority")) << plan;
  EXPECT_THAT(plan, Not(HasSubstr("TEMP B-TREE"))) << plan;
  // The next tenant's oldest task at that priority.
  auto after = std::make_shared<FilterExpr>();
  after->kind = FilterExpr::Kind::kCompare;
  after->field = TaskField::kTenantId;
  after->cmp = Comparator::kGt;
  after->value = std::string("3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b");
  ListQuery turn;
  turn.filter = AndFilters(
      AndFilters(enqueued, EqualsFilter(TaskField::kPriority, int64_t{3})),
      after);
  turn.order = {{TaskField::kTenantId, false},
                {TaskField::kEnqueuedAt, false},
                {TaskField::kId, false}};
  plan = plan_of(turn);
  EXPECT_THAT(plan, HasSubstr("tasks_by_queue")) << plan;
  EXPECT_THAT(plan, Not(HasSubstr("TEMP B-TREE"))) << plan;
  // The timers' earliest deadlines.
  plan = absl::StrJoin(db.Column(absl::StrCat("EXPLAIN QUERY PLAN SELECT id",
                                              sqlite::kByDeadlineWhere),
                                 {FieldValue(int64_t{256})}, 3),
                       "\n");
  EXPECT_THAT(plan, HasSubstr("tasks_by_deadline")) << plan;
  EXPECT_THAT(plan, Not(HasSubstr("TEMP B-TREE"))) << plan;
}

TEST_F(QueryIndexTest, TypicalQueriesSeekAnIndex) {
  ASSERT_NE(Open(), nullptr);
  Database db(path_);
  const std::string t = "\"3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b\"";
  const std::string x = "\"2026-10-23T00:00:00Z\"";
  const std::vector<PlanCase> cases = {
      {"", "", "tasks_by_enqueued"},
      {"", "enqueuedAt desc", "tasks_by_enqueued"},
      {"tenant_id = " + t, "", "tasks_by_tenant"},
      {"tenant_id = " + t, "enqueuedAt desc", "tasks_by_tenant"},
      {"tenant_id = " + t + " AND state = started", "",
       "tasks_by_tenant_state"},
      {"tenant_id = " + t + " AND state = completed AND type = backup", "",
       "tasks_by_tenant_state"},
      {"state = enqueued", "", "tasks_by_state"},
      {"state = enqueued AND priority >= high", "enqueuedAt", "tasks_by_state"},
      {"state = enqueued", "priority desc, enqueuedAt",
       "tasks_by_state_priority"},
      {"state = enqueued AND tenant_id = " + t, "priority desc, enqueuedAt",
       "tasks_by_tenant_state", /*full_sort_allowed=*/true},
      {"type = backup", "", "tasks_by_type"},
      {"type = backup AND result_code = error", "", "tasks_by_type"},
      {"executor_id = \"agent-7\"", "", "tasks_by_executor"},
      {"policy_id = \"p\"", "", "tasks_by_policy"},
      {"resource_id = \"r\"", "enqueuedAt desc", "tasks_by_resource"},
      {"result_code = error AND completedAt >= " + x, "completedAt desc",
       "tasks_by_result"},
      {"type = backup AND result_code = error AND completedAt >= " + x,
       "completedAt desc", "tasks_by_result"},
      // The default order sorts the window's errors (a few thousand of a
      // million in the benchmark) rather than walking every backup from the
      // oldest; after a cursor, walking the backups from the cursor on is as
      // good (both are bounded by the window).
      {"type = backup AND result_code = error AND completedAt >= " + x, "",
       "tasks_by_result", /*full_sort_allowed=*/true,
       /*deep_index=*/"tasks_by_type"},
      {"completedAt >= " + x, "completedAt desc", "tasks_by_completed"},
      {"state = completed AND completedAt >= " + x, "completedAt desc",
       "tasks_by_completed"},
      // Retention's question (server/retention.cc): the oldest completions.
      {"completedAt:*", "completedAt, id", "tasks_by_completed"},
      {"startedAt >= " + x, "startedAt", "tasks_by_started"},
      {"updatedAt >= " + x, "updatedAt", "tasks_by_updated"},
      {"", "updatedAt desc", "tasks_by_updated"},
  };
  for (const PlanCase& c : cases) {
    for (bool deep : {false, true}) {
      const std::string plan = PlanOf(
          db, c, deep ? CursorFor(c.order_by) : std::vector<FieldValue>{});
      SCOPED_TRACE(absl::StrCat("filter '", c.filter, "', order_by '",
                                c.order_by, deep ? "', after a cursor" : "'",
                                ":\n", plan));
      EXPECT_THAT(plan,
                  HasSubstr("USING INDEX " + (deep ? c.deep_index : c.index)));
      EXPECT_FALSE(ScansTheTable(plan));
      if (!c.full_sort_allowed) {
        EXPECT_THAT(plan, Not(HasSubstr("USE TEMP B-TREE FOR ORDER BY")));
      }
    }
  }
}

// A page after a cursor starts at the cursor, also when the filter bounds
// the same column: otherwise page N reads the N - 1 pages before it again.
TEST_F(QueryIndexTest, DeepPagesSeekTheCursor) {
  ASSERT_NE(Open(), nullptr);
  Database db(path_);
  const std::string x = "\"2026-10-23T00:00:00Z\"";
  struct Case {
    PlanCase query;
    std::string seek;  // what the plan's SEARCH must constrain
  };
  const std::vector<Case> cases = {
      {{"", "", "tasks_by_enqueued"}, "(enqueued_at,id)>(?,?)"},
      {{"updatedAt >= " + x, "updatedAt", "tasks_by_updated"},
       "(updated_at,id)>(?,?)"},
      {{"enqueuedAt >= " + x, "enqueuedAt", "tasks_by_enqueued"},
       "(enqueued_at,id)>(?,?)"},
      {{"type = backup AND enqueuedAt >= " + x, "", "tasks_by_type"},
       "type=? AND (enqueued_at,id)>(?,?)"},
      {{"state = started", "enqueuedAt desc, id desc", "tasks_by_state"},
       "state=? AND (enqueued_at,id)<(?,?)"},
      // Mixed directions: the cursor's leading bound.
      {{"", "enqueuedAt desc", "tasks_by_enqueued"}, "enqueued_at<?"},
      {{"completedAt >= " + x, "completedAt desc", "tasks_by_completed"},
       "completed_at>? AND completed_at<?"},
      {{"state = enqueued", "priority desc, enqueuedAt",
        "tasks_by_state_priority"},
       "state=? AND priority<?"},
  };
  for (const Case& c : cases) {
    const std::string plan = PlanOf(db, c.query, CursorFor(c.query.order_by));
    SCOPED_TRACE(absl::StrCat("filter '", c.query.filter, "', order_by '",
                              c.query.order_by, "':\n", plan));
    EXPECT_THAT(plan, HasSubstr(absl::StrCat("USING INDEX ", c.query.index,
                                             " (", c.seek, ")")));
  }
}

}  // namespace
}  // namespace taskd
