// bench_db: the large synthetic database of list_bench and count_bench.
//
// 90 days of tasks, enqueued in order; the newest 1% still in flight
// (enqueued, assigned, started, paused), the rest completed except 2% still
// in flight. 200 tenants, 5,000 policies, 50,000 resources, 1,000 agents;
// the mix of types, priorities and results is in bench_db.cc (MakeRow).
//
// EnsureFilled(path, n) fills the file once and keeps it: a rerun with the
// same path and n reuses it if its schema is this build's. The rows are
// written with the SQLite C API in one transaction (one Create() per
// transaction would take the better part of an hour), after the store made
// the schema; then the indexes and the store's counters (task_counts) are
// rebuilt, so that the file is what the store itself would have made. No
// ANALYZE statistics, as a real taskd database has none.
#ifndef TASKD_BENCH_BENCH_DB_H_
#define TASKD_BENCH_BENCH_DB_H_

#include <sqlite3.h>

#include <cstdint>
#include <random>
#include <string>

#include "absl/time/time.h"

namespace taskd::bench {

// The first task's enqueue time (2026-08-01) and the span of the data.
extern const absl::Time kFirst;
extern const absl::Duration kSpan;

// The i-th tenant, policy, resource (uuids) and agent ("agent-i").
std::string Tenant(int i);
std::string Policy(int i);
std::string Resource(int i);
std::string Agent(int i);

// One task's columns as the fill writes them.
struct Row {
  std::string id, type, policy, resource, executor, tenant;
  int64_t state = 0, result = 0, priority = 0;
  int64_t enqueued = 0, started = 0, completed = 0, updated = 0;
};
// The i-th of n tasks.
Row MakeRow(std::mt19937_64& rng, int64_t i, int64_t n);

// Prints "list_bench: <what>" and exits 1.
[[noreturn]] void Die(const std::string& what);
// Runs `sql` or dies.
void Exec(sqlite3* db, const std::string& sql);
// The first column of the first row of `sql`, -1 if none or on error.
int64_t QueryInt(sqlite3* db, const std::string& sql);
bool FileExists(const std::string& path);
// A fresh directory under /tmp.
std::string MakeTempDir();
// Removes a store's file and its -wal, -shm and .lock.
void RemoveStoreFiles(const std::string& path);

// Fills `path` anew with n tasks.
void Fill(const std::string& path, int64_t n);
// Reuses `path` if it holds n tasks under this build's schema (rebuilding
// its counters if they do not add up to the tasks); otherwise fills it.
void EnsureFilled(const std::string& path, int64_t n);
// Every CREATE statement in the database, in name order.
std::string SchemaOf(const std::string& path);
// The schema this build's store creates.
std::string CurrentSchema();
// True if the schema has the store's counters (task_counts).
bool HasCounters(sqlite3* db);
// task_counts made again from the tasks (in the caller's transaction); a
// no-op if the schema has no counters.
void RebuildCounters(sqlite3* db);
// True if the counters add up to the tasks (or there are none).
bool CountersMatch(const std::string& path);

}  // namespace taskd::bench

#endif  // TASKD_BENCH_BENCH_DB_H_
