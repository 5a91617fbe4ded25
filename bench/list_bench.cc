// list_bench: ListTasks over a large store (1,000,000 tasks by default).
//
//   list_bench [--db=/tmp/taskd-bench-1m.db] [--tasks=1000000]
//              [--benchmark_filter=...] [other Google Benchmark flags]
//
// 1. Fills the database once and keeps it: a rerun with the same --db and
//    --tasks reuses the file. The fill creates the schema by opening the
//    store, then writes the rows with the SQLite C API in one transaction
//    (one Create() per transaction would take the better part of an hour).
// 2. Prints EXPLAIN QUERY PLAN for each typical query, for its first page and
//    for a page after a cursor, and flags a full scan of tasks or a sort.
// 3. Times the first page (50 tasks) and a deep page (page 100, or the last
//    page when there are fewer) of each query, through
//    SqliteTaskStore::List and through a real server (TaskClient over
//    loopback gRPC, page tokens and all).
//
// The database has no ANALYZE statistics, as a real taskd database has none:
// the plans are the ones production gets.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_db.h"
#include "benchmark/benchmark.h"
#include "client/task_client.h"
#include "query/filter.h"
#include "query/order_by.h"
#include "query/task_fields.h"
#include "server/task_server.h"
#include "storage/sqlite_query.h"
#include "storage/sqlite_task_store.h"

namespace taskd {
namespace {

using tasks::v1::ListTasksRequest;
using tasks::v1::ListTasksResponse;
using tasks::v1::Task;

constexpr int kPageSize = 50;
constexpr int kDeepPage = 100;

using namespace ::taskd::bench;  // the data: bench_db.h

// ---- The queries ----------------------------------------------------------

struct Query {
  const char* name;
  std::string filter;
  std::string order_by;
};

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::vector<Query> TypicalQueries() {
  const std::string week_ago = Rfc3339(kFirst + kSpan - absl::Hours(24 * 7));
  const std::string day_ago = Rfc3339(kFirst + kSpan - absl::Hours(24));
  const std::string tenant = Tenant(7);
  return {
      {"all", "", ""},
      {"all_newest_first", "", "enqueuedAt desc"},
      {"tenant", absl::StrCat("tenant_id = \"", tenant, "\""), ""},
      {"tenant_started",
       absl::StrCat("tenant_id = \"", tenant, "\" AND state = \"started\""),
       ""},
      {"tenant_completed",
       absl::StrCat("tenant_id = \"", tenant, "\" AND state = \"completed\""),
       ""},
      {"executor", "executor_id = \"agent-7\"", ""},
      {"policy", absl::StrCat("policy_id = \"", Policy(11), "\""), ""},
      {"resource", absl::StrCat("resource_id = \"", Resource(123), "\""), ""},
      {"backup_errors_week",
       absl::StrCat("type = \"backup\" AND result_code = \"error\" AND "
                    "completedAt >= \"",
                    week_ago, "\""),
       ""},
      {"backup_errors", "type = \"backup\" AND result_code = \"error\"", ""},
      {"errors_week_newest",
       absl::StrCat("result_code = \"error\" AND completedAt >= \"", week_ago,
                    "\""),
       "completedAt desc"},
      {"backup_errors_week_newest",
       absl::StrCat("type = \"backup\" AND result_code = \"error\" AND "
                    "completedAt >= \"",
                    week_ago, "\""),
       "completedAt desc"},
      {"enqueued_high", "state = \"enqueued\" AND priority >= \"high\"",
       "enqueuedAt"},
      {"enqueued_by_priority", "state = \"enqueued\"",
       "priority desc, enqueuedAt"},
      {"started", "state = started", ""},
      {"backups_week_newest",
       absl::StrCat("type = \"backup\" AND completedAt >= \"", week_ago, "\""),
       "completedAt desc"},
      {"completed_state_last_day",
       absl::StrCat("state = \"completed\" AND completedAt >= \"", day_ago,
                    "\""),
       "completedAt desc"},
      {"completed_last_day", absl::StrCat("completedAt >= \"", day_ago, "\""),
       "completedAt desc"},
      {"updated_since", absl::StrCat("updatedAt >= \"", day_ago, "\""),
       "updatedAt"},
      // Deliberately unindexed: an order no index gives, over every task.
      {"all_by_priority", "", "priority desc"},
  };
}

ListQuery ToListQuery(const Query& q, int limit) {
  ListQuery query;
  absl::StatusOr<std::shared_ptr<const FilterExpr>> filter =
      ParseFilter(q.filter);
  if (!filter.ok()) Die(filter.status().ToString());
  query.filter = *filter;
  absl::StatusOr<OrderBy> order = ParseOrderBy(q.order_by);
  if (!order.ok()) Die(order.status().ToString());
  query.order = *order;
  query.limit = limit;
  return query;
}

// Prints the plan of `query` and returns the lines that need attention.
std::vector<std::string> ExplainQueryPlan(sqlite3* db, const ListQuery& query) {
  sqlite::SqlQuery sql = sqlite::BuildListQuery(query, query.limit + 1);
  sqlite3_stmt* stmt = nullptr;
  const std::string explain = "EXPLAIN QUERY PLAN " + sql.sql;
  if (sqlite3_prepare_v2(db, explain.c_str(), -1, &stmt, nullptr) !=
      SQLITE_OK) {
    Die(absl::StrCat(explain, ": ", sqlite3_errmsg(db)));
  }
  for (size_t i = 0; i < sql.params.size(); ++i) {
    const int index = static_cast<int>(i) + 1;
    if (const auto* number = std::get_if<int64_t>(&sql.params[i])) {
      sqlite3_bind_int64(stmt, index, *number);
    } else {
      const std::string& text = std::get<std::string>(sql.params[i]);
      sqlite3_bind_text(stmt, index, text.data(), static_cast<int>(text.size()),
                        SQLITE_TRANSIENT);
    }
  }
  std::vector<std::string> flags;
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    const std::string detail =
        reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3));
    std::printf("      %s\n", detail.c_str());
    if (absl::StartsWith(detail, "SCAN tasks") &&
        !absl::StrContains(detail, "USING")) {
      flags.push_back("FULL SCAN of tasks without an index");
    } else if (absl::StrContains(detail, "RIGHT PART OF ORDER BY")) {
      // The index gives the leading keys' order; only rows that tie on
      // them are sorted, a few at a time, so LIMIT still stops early.
      flags.push_back("partial sort (ties on the leading key only)");
    } else if (absl::StrContains(detail, "TEMP B-TREE")) {
      flags.push_back("SORT of every matching row before the first one");
    }
  }
  sqlite3_finalize(stmt);
  return flags;
}

// ---- The benchmarks -------------------------------------------------------

struct Prepared {
  Query query;
  ListQuery first;    // page 1
  ListQuery deep;     // page `deep_page`, after its cursor
  int deep_page = 0;  // 1 if the whole result fits in one page
  int64_t matches = 0;
  std::string deep_token;  // the page token of page `deep_page`
};

TaskServer* g_server = nullptr;
std::unique_ptr<TaskClient> g_client;

// Counts the matches with SELECT count(*), on a connection of our own.
int64_t CountMatches(sqlite3* db, const ListQuery& query) {
  std::vector<FieldValue> params;
  const std::string sql =
      absl::StrCat("SELECT count(*) FROM tasks",
                   sqlite::WhereClause(query.filter.get(), &params));
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    Die(absl::StrCat(sql, ": ", sqlite3_errmsg(db)));
  }
  for (size_t i = 0; i < params.size(); ++i) {
    const int index = static_cast<int>(i) + 1;
    if (const auto* number = std::get_if<int64_t>(&params[i])) {
      sqlite3_bind_int64(stmt, index, *number);
    } else {
      const std::string& text = std::get<std::string>(params[i]);
      sqlite3_bind_text(stmt, index, text.data(), static_cast<int>(text.size()),
                        SQLITE_TRANSIENT);
    }
  }
  int64_t count = -1;
  if (sqlite3_step(stmt) == SQLITE_ROW) count = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  return count;
}

// Walks the first pages once (not timed) to find the deep page's cursor and
// token.
Prepared Prepare(sqlite3* db, const Query& q) {
  Prepared p;
  p.query = q;
  p.first = ToListQuery(q, kPageSize);
  p.matches = CountMatches(db, p.first);
  p.deep = p.first;
  p.deep_page = 1;
  ListQuery walk = p.first;
  for (int page = 1; page < kDeepPage; ++page) {
    absl::StatusOr<ListResult> result = g_server->store()->List(walk);
    if (!result.ok()) Die(result.status().ToString());
    if (!result->more) break;
    walk.after = CursorOf(walk.order, result->tasks.back());
    p.deep = walk;
    p.deep_page = page + 1;
  }
  // The same page through the service, to get its token.
  ListTasksRequest request;
  request.set_filter(q.filter);
  request.set_order_by(q.order_by);
  request.set_page_size(kPageSize);
  for (int page = 1; page < p.deep_page; ++page) {
    absl::StatusOr<ListTasksResponse> response = g_client->List(request);
    if (!response.ok()) Die(response.status().ToString());
    request.set_page_token(response->next_page_token());
  }
  p.deep_token = request.page_token();
  return p;
}

void StoreList(benchmark::State& state, const ListQuery* query,
               int64_t matches) {
  size_t rows = 0;
  for (auto _ : state) {
    absl::StatusOr<ListResult> result = g_server->store()->List(*query);
    if (!result.ok()) {
      state.SkipWithError(result.status().ToString().c_str());
      break;
    }
    rows = result->tasks.size();
    benchmark::DoNotOptimize(result);
  }
  state.counters["rows"] = static_cast<double>(rows);
  state.counters["matches"] = static_cast<double>(matches);
}

void RpcList(benchmark::State& state, const Prepared* p, bool deep) {
  ListTasksRequest request;
  request.set_filter(p->query.filter);
  request.set_order_by(p->query.order_by);
  request.set_page_size(kPageSize);
  if (deep) request.set_page_token(p->deep_token);
  size_t rows = 0;
  for (auto _ : state) {
    absl::StatusOr<ListTasksResponse> response = g_client->List(request);
    if (!response.ok()) {
      state.SkipWithError(response.status().ToString().c_str());
      break;
    }
    rows = response->tasks_size();
    benchmark::DoNotOptimize(response);
  }
  state.counters["rows"] = static_cast<double>(rows);
}

// What the indexes cost a write: one task's typical life (create, assign,
// complete: three commits) through the store, on a fresh database with every
// index, and with only the indexes of schema version 1. The database is
// small and in cache, so this is the CPU cost of maintaining the indexes,
// not the I/O a large database adds.
void StoreWrites(benchmark::State& state, bool v1_indexes_only) {
  const std::string dir = MakeTempDir();
  const std::string path = dir + "/writes.db";
  SqliteTaskStoreOptions options;
  options.path = path;
  options.synchronous_full = false;
  if (v1_indexes_only) {
    {
      absl::StatusOr<std::unique_ptr<TaskStore>> store =
          OpenSqliteTaskStore(options);
      if (!store.ok()) Die(store.status().ToString());
    }
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    std::vector<std::string> names;
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db,
                       "SELECT name FROM sqlite_master WHERE type = 'index' "
                       "AND sql IS NOT NULL AND name NOT IN "
                       "('tasks_by_enqueued', 'tasks_by_request', "
                       "'changes_by_time')",
                       -1, &stmt, nullptr);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      names.push_back(
          reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));
    }
    sqlite3_finalize(stmt);
    for (const std::string& name : names) Exec(db, "DROP INDEX " + name);
    sqlite3_close(db);
  }
  absl::StatusOr<std::unique_ptr<TaskStore>> store =
      OpenSqliteTaskStore(options);
  if (!store.ok()) Die(store.status().ToString());
  std::mt19937_64 rng(7);
  int64_t i = 0;
  for (auto _ : state) {
    const Row r = MakeRow(rng, i++, 1'000'000);
    Task task;
    task.set_id(r.id);
    task.set_uuid(r.id);
    task.set_type(r.type);
    task.set_state(Task::enqueued);
    task.set_priority(std::string(PriorityName(r.priority)));
    task.set_policy_id(r.policy);
    task.set_resource_id(r.resource);
    task.set_tenant_id(r.tenant);
    SetTimestampMicros(r.enqueued, task.mutable_enqueued_at());
    SetTimestampMicros(r.enqueued, task.mutable_updated_at());
    absl::Status status = (*store)->Create(task, "").status();
    for (int move = 0; move < 2 && status.ok(); ++move) {
      status = (*store)
                   ->Update(r.id,
                            [&](const Task& current) -> absl::StatusOr<Task> {
                              Task next = current;
                              if (move == 0) {
                                next.set_state(Task::assigned);
                                next.set_executor_id(Agent(7));
                              } else {
                                next.set_state(Task::completed);
                                next.set_result_code(Task::ok);
                                SetTimestampMicros(r.enqueued + 60'000'000,
                                                   next.mutable_completed_at());
                              }
                              SetTimestampMicros(r.enqueued + move + 1,
                                                 next.mutable_updated_at());
                              return next;
                            })
                   .status();
    }
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
  }
  state.counters["writes/s"] =
      benchmark::Counter(3.0 * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
  store->reset();
  RemoveStoreFiles(path);
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace taskd

int main(int argc, char** argv) {
  using namespace taskd;
  std::string path = "/tmp/taskd-bench-1m.db";
  int64_t tasks = 1'000'000;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--db=", 5) == 0) {
      path = argv[i] + 5;
    } else if (std::strncmp(argv[i], "--tasks=", 8) == 0) {
      tasks = std::atoll(argv[i] + 8);
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (tasks < 1) Die("--tasks must be at least 1");
  EnsureFilled(path, tasks);

  TaskServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.store.path = path;
  absl::StatusOr<std::unique_ptr<TaskServer>> server =
      TaskServer::Start(options);
  if (!server.ok()) Die(server.status().ToString());
  g_server = server->get();
  g_client = std::make_unique<TaskClient>(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", g_server->port()),
                          grpc::InsecureChannelCredentials()));

  // The plans, on a connection of our own.
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
      SQLITE_OK) {
    Die("open " + path);
  }
  std::vector<std::unique_ptr<Prepared>> prepared;
  int scans = 0, sorts = 0;
  std::printf("EXPLAIN QUERY PLAN (%lld tasks, no ANALYZE statistics)\n",
              static_cast<long long>(tasks));
  for (const Query& q : TypicalQueries()) {
    auto p = std::make_unique<Prepared>(Prepare(db, q));
    std::printf(
        "\n%s: filter '%s', order_by '%s': %lld matches, %lld pages\n", q.name,
        q.filter.c_str(), q.order_by.c_str(),
        static_cast<long long>(p->matches),
        static_cast<long long>((p->matches + kPageSize - 1) / kPageSize));
    for (const auto& [label, query] :
         {std::pair<std::string, const ListQuery*>("first page", &p->first),
          std::pair<std::string, const ListQuery*>(
              absl::StrCat("page ", p->deep_page, " (after a cursor)"),
              &p->deep)}) {
      if (query != &p->first && p->deep_page == 1) break;
      std::printf("  %s:\n", label.c_str());
      std::vector<std::string> flags = ExplainQueryPlan(db, *query);
      for (const std::string& flag : flags) {
        std::printf("    ^ %s\n", flag.c_str());
        if (absl::StartsWith(flag, "FULL SCAN")) ++scans;
        if (absl::StartsWith(flag, "SORT")) ++sorts;
      }
      if (flags.empty()) std::printf("    ok: index order, no sort\n");
    }
    prepared.push_back(std::move(p));
  }
  sqlite3_close(db);
  std::printf(
      "\n%d plan(s) scan the whole table without an index; %d sort every "
      "match\n\n",
      scans, sorts);
  std::fflush(stdout);

  for (const auto& p : prepared) {
    const Prepared* raw = p.get();
    benchmark::RegisterBenchmark(
        absl::StrCat("store/", raw->query.name, "/page1").c_str(), StoreList,
        &raw->first, raw->matches)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(
        absl::StrCat("store/", raw->query.name, "/page", raw->deep_page)
            .c_str(),
        StoreList, &raw->deep, raw->matches)
        ->Unit(benchmark::kMicrosecond);
  }
  for (const auto& p : prepared) {
    const Prepared* raw = p.get();
    benchmark::RegisterBenchmark(
        absl::StrCat("grpc/", raw->query.name, "/page1").c_str(), RpcList, raw,
        false)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(
        absl::StrCat("grpc/", raw->query.name, "/page", raw->deep_page).c_str(),
        RpcList, raw, true)
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::RegisterBenchmark("store/writes/every_index", StoreWrites, false)
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("store/writes/v1_indexes_only", StoreWrites,
                               true)
      ->Unit(benchmark::kMicrosecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_client.reset();
  (*server)->Shutdown(absl::Seconds(1));
  return 0;
}
