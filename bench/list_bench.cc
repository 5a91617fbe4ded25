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

// ---- The data -------------------------------------------------------------
//
// 90 days of tasks, enqueued in order, ~7.8 s apart at 1M tasks. The newest
// 1% (the last day or so) are still in flight (enqueued, assigned, started,
// paused); the rest have completed, except 2% still in flight (long runs,
// stuck agents).
//   type      backup 60%, replication 15%, validation 10%, cleanup 10%,
//             restore 5%
//   priority  normal 70%, aboveNormal 10%, low 8%, belowNormal 7%, high 5%
//   result    ok 85%, warning 6%, error 5%, cancelled 2%, abandoned 1%,
//             timedout 1%
//   tenant    200 tenants (~5,000 tasks each)
//   policy    5,000 policies; 10% of tasks have none
//   resource  50,000 resources (~20 tasks each)
//   executor  1,000 agents, for tasks that were assigned

const absl::Time kFirst = absl::FromUnixSeconds(1'785'542'400);  // 2026-08-01
const absl::Duration kSpan = absl::Hours(24 * 90);

std::string Uuid(uint64_t a, uint64_t b) {
  return absl::StrFormat("%08x-%04x-4%03x-8%03x-%012x", a >> 32,
                         (a >> 16) & 0xffff, a & 0xfff, b >> 52,
                         b & 0xffffffffffffULL);
}
std::string Tenant(int i) { return Uuid(0x7e0a0000'00000000ULL + i, i); }
std::string Policy(int i) { return Uuid(0x901c0000'00000000ULL + i, i); }
std::string Resource(int i) { return Uuid(0x5e500000'00000000ULL + i, i); }
std::string Agent(int i) { return absl::StrCat("agent-", i); }

template <typename T>
T Weighted(std::mt19937_64& rng,
           const std::vector<std::pair<T, int>>& weights) {
  int total = 0;
  for (const auto& w : weights) total += w.second;
  int pick = static_cast<int>(rng() % total);
  for (const auto& w : weights) {
    if (pick < w.second) return w.first;
    pick -= w.second;
  }
  return weights.back().first;
}

struct Row {
  std::string id, type, policy, resource, executor, tenant;
  int64_t state = 0, result = 0, priority = 0;
  int64_t enqueued = 0, started = 0, completed = 0, updated = 0;
};

Row MakeRow(std::mt19937_64& rng, int64_t i, int64_t n) {
  Row r;
  r.id = Uuid(rng(), rng());
  r.type = Weighted<std::string>(rng, {{"backup", 60},
                                       {"replication", 15},
                                       {"validation", 10},
                                       {"cleanup", 10},
                                       {"restore", 5}});
  r.priority =
      Weighted<int64_t>(rng, {{3, 70}, {4, 10}, {1, 8}, {2, 7}, {5, 5}});
  r.tenant = Tenant(static_cast<int>(rng() % 200));
  r.policy = rng() % 10 == 0 ? "" : Policy(static_cast<int>(rng() % 5000));
  r.resource = Resource(static_cast<int>(rng() % 50000));
  const absl::Time enqueued =
      kFirst + kSpan * (static_cast<double>(i) / static_cast<double>(n)) +
      absl::Milliseconds(rng() % 5000);
  r.enqueued = absl::ToUnixMicros(enqueued);
  const bool in_flight = i >= n - n / 100 || rng() % 50 == 0;
  if (in_flight) {
    r.state = Weighted<int64_t>(rng, {{Task::enqueued, 40},
                                      {Task::assigned, 10},
                                      {Task::started, 40},
                                      {Task::paused, 10}});
  } else {
    r.state = Task::completed;
    r.result = Weighted<int64_t>(rng, {{Task::ok, 85},
                                       {Task::warning, 6},
                                       {Task::error, 5},
                                       {Task::cancelled, 2},
                                       {Task::abandoned, 1},
                                       {Task::timedout, 1}});
  }
  absl::Time last = enqueued;
  const bool cancelled_early = r.result == Task::cancelled && rng() % 2 == 0;
  if (r.state != Task::enqueued && !cancelled_early) {
    r.executor = Agent(static_cast<int>(rng() % 1000));
    last += absl::Seconds(rng() % 60);
  }
  if (r.state >= Task::started && !cancelled_early) {
    last += absl::Seconds(rng() % 600);
    r.started = absl::ToUnixMicros(last);
  }
  if (r.state == Task::completed) {
    last += absl::Seconds(60 + rng() % 7200);
    r.completed = absl::ToUnixMicros(last);
  }
  r.updated = absl::ToUnixMicros(last);
  return r;
}

// ---- SQLite helpers -------------------------------------------------------

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "list_bench: %s\n", what.c_str());
  std::exit(1);
}

void Exec(sqlite3* db, const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    Die(absl::StrCat(sql.substr(0, 80), ": ", error ? error : "?"));
  }
}

int64_t QueryInt(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    return -1;
  }
  int64_t value = -1;
  if (sqlite3_step(stmt) == SQLITE_ROW) value = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  return value;
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string MakeTempDir() {
  char pattern[] = "/tmp/list_bench-XXXXXX";
  if (::mkdtemp(pattern) == nullptr) Die("mkdtemp");
  return pattern;
}

void RemoveStoreFiles(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", ".lock"}) {
    ::unlink((path + suffix).c_str());
  }
}

// Creates the schema through the store itself, then writes `n` rows into it
// directly. Indexes are dropped for the insert and rebuilt after it (a
// sorted build is several times faster than a million random inserts into
// each index), from their own CREATE statements, so the result has exactly
// the schema the store made.
void Fill(const std::string& path, int64_t n) {
  const std::string partial = path + ".partial";
  RemoveStoreFiles(partial);
  {
    SqliteTaskStoreOptions options;
    options.path = partial;
    options.synchronous_full = false;
    absl::StatusOr<std::unique_ptr<TaskStore>> store =
        OpenSqliteTaskStore(options);
    if (!store.ok()) Die(store.status().ToString());
  }
  const absl::Time start = absl::Now();
  sqlite3* db = nullptr;
  if (sqlite3_open(partial.c_str(), &db) != SQLITE_OK) Die("open " + partial);
  Exec(db, "PRAGMA synchronous=OFF; PRAGMA cache_size=-1000000");
  std::vector<std::string> names, indexes;
  {
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db,
                       "SELECT name, sql FROM sqlite_master WHERE type = "
                       "'index' AND tbl_name = 'tasks' AND sql IS NOT NULL",
                       -1, &stmt, nullptr);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      names.push_back(
          reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));
      indexes.push_back(
          reinterpret_cast<const char*>(sqlite3_column_text(stmt, 1)));
    }
    sqlite3_finalize(stmt);
  }
  for (const std::string& name : names) Exec(db, "DROP INDEX " + name);
  Exec(db, "BEGIN");
  sqlite3_stmt* insert = nullptr;
  if (sqlite3_prepare_v2(
          db,
          absl::StrCat("INSERT INTO tasks (id, uuid, type, state, result_code, "
                       "priority, policy_id, resource_id, executor_id, "
                       "tenant_id, enqueued_at, started_at, completed_at, "
                       "updated_at, revision) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
                       "?7, ?8, ?9, ?10, "
                       "?11, ?12, ?13, ?14, ?15)")
              .c_str(),
          -1, &insert, nullptr) != SQLITE_OK) {
    Die(sqlite3_errmsg(db));
  }
  std::mt19937_64 rng(20261101);
  for (int64_t i = 0; i < n; ++i) {
    const Row r = MakeRow(rng, i, n);
    const std::string* texts[] = {&r.id, &r.id, &r.type};
    for (int c = 0; c < 3; ++c) {
      sqlite3_bind_text(insert, c + 1, texts[c]->data(),
                        static_cast<int>(texts[c]->size()), SQLITE_STATIC);
    }
    sqlite3_bind_int64(insert, 4, r.state);
    sqlite3_bind_int64(insert, 5, r.result);
    sqlite3_bind_int64(insert, 6, r.priority);
    const std::string* more[] = {&r.policy, &r.resource, &r.executor,
                                 &r.tenant};
    for (int c = 0; c < 4; ++c) {
      sqlite3_bind_text(insert, c + 7, more[c]->data(),
                        static_cast<int>(more[c]->size()), SQLITE_STATIC);
    }
    sqlite3_bind_int64(insert, 11, r.enqueued);
    sqlite3_bind_int64(insert, 12, r.started);
    sqlite3_bind_int64(insert, 13, r.completed);
    sqlite3_bind_int64(insert, 14, r.updated);
    sqlite3_bind_int64(insert, 15, i + 1);
    if (sqlite3_step(insert) != SQLITE_DONE) Die(sqlite3_errmsg(db));
    sqlite3_reset(insert);
    if ((i + 1) % 200000 == 0) {
      std::fprintf(stderr, "list_bench: inserted %lld rows\n",
                   static_cast<long long>(i + 1));
    }
  }
  sqlite3_finalize(insert);
  std::fprintf(stderr, "list_bench: building %zu indexes\n", indexes.size());
  for (const std::string& sql : indexes) Exec(db, sql);
  Exec(db, absl::StrCat("UPDATE meta SET value = ", n,
                        " WHERE key = 'revision'; INSERT OR REPLACE INTO meta "
                        "(key, value) VALUES ('bench_tasks', ",
                        n, ")"));
  Exec(db, "COMMIT");
  Exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3_close(db);
  for (const char* suffix : {"-wal", "-shm", ".lock"}) {
    ::unlink((partial + suffix).c_str());
  }
  if (::rename(partial.c_str(), path.c_str()) != 0) Die("rename " + partial);
  std::fprintf(stderr, "list_bench: filled %lld tasks in %s\n",
               static_cast<long long>(n),
               absl::FormatDuration(absl::Now() - start).c_str());
}

// Every CREATE statement in the database, in name order.
std::string SchemaOf(const std::string& path) {
  sqlite3* db = nullptr;
  std::string schema;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
      SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db,
                           "SELECT sql FROM sqlite_master WHERE sql IS NOT "
                           "NULL ORDER BY name",
                           -1, &stmt, nullptr) == SQLITE_OK) {
      while (sqlite3_step(stmt) == SQLITE_ROW) {
        absl::StrAppend(
            &schema,
            reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), ";\n");
      }
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return schema;
}

// The schema this build's store creates.
std::string CurrentSchema() {
  const std::string dir = MakeTempDir();
  const std::string path = dir + "/schema.db";
  {
    SqliteTaskStoreOptions options;
    options.path = path;
    absl::StatusOr<std::unique_ptr<TaskStore>> store =
        OpenSqliteTaskStore(options);
    if (!store.ok()) Die(store.status().ToString());
  }
  std::string schema = SchemaOf(path);
  RemoveStoreFiles(path);
  ::rmdir(dir.c_str());
  return schema;
}

// Reuses `path` if it holds `n` tasks under this build's schema; otherwise
// fills it anew.
void EnsureFilled(const std::string& path, int64_t n) {
  if (FileExists(path)) {
    sqlite3* db = nullptr;
    int64_t have = -1;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
        SQLITE_OK) {
      have = QueryInt(db, "SELECT value FROM meta WHERE key = 'bench_tasks'");
    }
    sqlite3_close(db);
    if (have == n && SchemaOf(path) == CurrentSchema()) {
      std::fprintf(stderr, "list_bench: reusing %s (%lld tasks)\n",
                   path.c_str(), static_cast<long long>(n));
      return;
    }
    std::fprintf(stderr, "list_bench: %s is stale; filling it again\n",
                 path.c_str());
    RemoveStoreFiles(path);
  }
  Fill(path, n);
}

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
