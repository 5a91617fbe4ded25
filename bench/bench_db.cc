// bench_db: the 1,000,000-task database list_bench and count_bench share
// (see bench_db.h).
#include "bench/bench_db.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "storage/sqlite_task_store.h"

namespace taskd::bench {

using tasks::v1::Task;

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

bool HasCounters(sqlite3* db) {
  return QueryInt(db,
                  "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
                  "AND name = 'task_counts'") == 1;
}

void RebuildCounters(sqlite3* db) {
  if (!HasCounters(db)) return;
  Exec(db,
       "DELETE FROM task_counts; INSERT INTO task_counts (tenant_id, state, "
       "result_code, n) SELECT tenant_id, state, result_code, COUNT(*) FROM "
       "tasks GROUP BY tenant_id, state, result_code");
}

bool CountersMatch(const std::string& path) {
  sqlite3* db = nullptr;
  bool match = false;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
      SQLITE_OK) {
    match = !HasCounters(db) ||
            QueryInt(db,
                     "SELECT (SELECT COALESCE(SUM(n), 0) FROM task_counts) = "
                     "(SELECT COUNT(*) FROM tasks)") == 1;
  }
  sqlite3_close(db);
  return match;
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
  // The rows went in behind the store's back: the counters it keeps in the
  // same transaction as each change (task_counts, schema version 5) were
  // made on the empty table. Make them as that migration does.
  RebuildCounters(db);
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
      // A file filled before Fill made the counters has none.
      if (!CountersMatch(path)) {
        std::fprintf(stderr, "list_bench: rebuilding its task_counts\n");
        sqlite3* rw = nullptr;
        if (sqlite3_open(path.c_str(), &rw) != SQLITE_OK) Die("open " + path);
        Exec(rw, "BEGIN");
        RebuildCounters(rw);
        Exec(rw, "COMMIT");
        Exec(rw, "PRAGMA wal_checkpoint(TRUNCATE)");
        sqlite3_close(rw);
      }
      return;
    }
    std::fprintf(stderr, "list_bench: %s is stale; filling it again\n",
                 path.c_str());
    RemoveStoreFiles(path);
  }
  Fill(path, n);
}

}  // namespace taskd::bench
