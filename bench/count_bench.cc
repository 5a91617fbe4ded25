// count_bench: CountTasks questions through the store on a large database
// (1,000,000 tasks by default; issue 13).
//
//   count_bench [--db=/tmp/taskd-bench-1m.db] [--tasks=1000000]
//               [--min_calls=200] [--min_time=2s] [--max_time=60s]
//               [--json_out=FILE] [--time_migration]
//
// 1. Fills the database once and keeps it (bench_db.h; the same file as
//    list_bench's, counters included).
// 2. For each question (a filter and a group_by): which way the store
//    answers it (from its counters, task_counts, or with SELECT ... COUNT(*)
//    FROM tasks ... GROUP BY), the SQL and its EXPLAIN QUERY PLAN, the
//    groups, and a check that the answer equals a GROUP BY over the tasks
//    themselves.
// 3. Times SqliteTaskStore::Count (what CountTasks calls, after parsing)
//    repeatedly on a warm cache: at least --min_calls calls and --min_time,
//    at least 20 calls and at most --max_time; prints min, median, p99 and
//    mean per call, and one JSON line per question (to --json_out too).
//
// --time_migration first turns the file back into schema version 4 (drops
// task_counts) and times the store's open, which runs migration 5 (the
// counters made from every task): the upgrade an existing database gets.
//
// The SQL of the counters read is a copy of SqliteTaskStore::
// CountFromCounters' (storage/sqlite_task_store.cc); the other is
// sqlite::BuildCountQuery's own.
#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_db.h"
#include "query/filter.h"
#include "query/task_counts.h"
#include "query/task_fields.h"
#include "storage/sqlite_query.h"
#include "storage/sqlite_task_store.h"

namespace taskd {
namespace {

using namespace ::taskd::bench;

struct Question {
  std::string name;
  std::string filter;
  std::vector<std::string> group_by;
  std::string note;
};

std::vector<Question> Questions() {
  const std::string tenant = absl::StrCat("tenant_id = \"", Tenant(7), "\"");
  return {
      {"a_state_all", "", {"state"}, "issue 13 goal: under 10 ms"},
      {"b_state_tenant", tenant, {"state"}, "issue 13 goal: under 10 ms"},
      {"c_state_result_all", "", {"state", "result_code"}, ""},
      {"c_state_result_tenant", tenant, {"state", "result_code"}, ""},
      {"total_all", "", {}, ""},
      {"in_flight_by_tenant", "state != \"completed\"", {"tenant_id"}, ""},
      {"d_type_all", "", {"type"}, "not from the counters"},
      {"d_state_high_priority",
       "priority >= \"high\"",
       {"state"},
       "not from the counters"},
      {"d_type_tenant", tenant, {"type"}, "not from the counters"},
      {"d_state_backup",
       "type = \"backup\"",
       {"state"},
       "not from the counters"},
  };
}

struct Parsed {
  CountQuery query;
  bool from_counters = false;
  // The SQL the store runs, and its parameters.
  std::string sql;
  std::vector<FieldValue> params;
};

bool Counted(TaskField field) {
  return std::find(std::begin(sqlite::kCountedFields),
                   std::end(sqlite::kCountedFields),
                   field) != std::end(sqlite::kCountedFields);
}

// Mirrors SqliteTaskStore::Count's choice.
Parsed Parse(const Question& q) {
  Parsed p;
  absl::StatusOr<std::shared_ptr<const FilterExpr>> filter =
      ParseFilter(q.filter);
  if (!filter.ok()) Die(filter.status().ToString());
  p.query.filter = *filter;
  absl::StatusOr<std::vector<TaskField>> group_by = ParseGroupBy(q.group_by);
  if (!group_by.ok()) Die(group_by.status().ToString());
  p.query.group_by = *group_by;
  const std::set<TaskField> read = FieldsOf(p.query.filter.get());
  p.from_counters =
      std::all_of(read.begin(), read.end(), Counted) &&
      std::all_of(p.query.group_by.begin(), p.query.group_by.end(), Counted);
  if (p.from_counters) {
    std::optional<FieldValue> tenant =
        RequiredValue(p.query.filter.get(), TaskField::kTenantId);
    if (tenant.has_value()) {
      p.sql =
          "SELECT tenant_id, state, result_code, n FROM task_counts "
          "WHERE tenant_id = ?1 AND n <> 0";
      p.params.push_back(*tenant);
    } else {
      p.sql =
          "SELECT tenant_id, state, result_code, n FROM task_counts "
          "WHERE n <> 0";
    }
  } else {
    sqlite::SqlQuery sql = sqlite::BuildCountQuery(p.query);
    p.sql = sql.sql;
    p.params = sql.params;
  }
  return p;
}

sqlite3_stmt* PrepareBound(sqlite3* db, const std::string& sql,
                           const std::vector<FieldValue>& params) {
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
  return stmt;
}

// The plan's lines, indented.
std::string Plan(sqlite3* db, const std::string& sql,
                 const std::vector<FieldValue>& params) {
  sqlite3_stmt* stmt = PrepareBound(db, "EXPLAIN QUERY PLAN " + sql, params);
  std::string out;
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    absl::StrAppend(&out, "      ",
                    reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3)),
                    "\n");
  }
  sqlite3_finalize(stmt);
  return out;
}

// The same question answered by a GROUP BY over the tasks, on our own
// connection (the reference for the counters).
std::map<GroupKey, int64_t> Reference(sqlite3* db, const CountQuery& query) {
  sqlite::SqlQuery sql = sqlite::BuildCountQuery(query);
  sqlite3_stmt* stmt = PrepareBound(db, sql.sql, sql.params);
  std::map<GroupKey, int64_t> groups;
  const int columns = static_cast<int>(query.group_by.size());
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    const int64_t n = sqlite3_column_int64(stmt, columns);
    if (n == 0) continue;
    GroupKey key;
    for (int i = 0; i < columns; ++i) {
      if (InfoOf(query.group_by[i]).kind == FieldKind::kString) {
        key.emplace_back(std::string(
            reinterpret_cast<const char*>(sqlite3_column_text(stmt, i))));
      } else {
        key.emplace_back(static_cast<int64_t>(sqlite3_column_int64(stmt, i)));
      }
    }
    groups[key] += n;
  }
  sqlite3_finalize(stmt);
  return groups;
}

std::string Describe(const CountQuery& query,
                     const std::map<GroupKey, int64_t>& groups) {
  std::vector<std::string> parts;
  for (const auto& [key, n] : groups) {
    std::vector<std::string> values;
    for (size_t i = 0; i < key.size(); ++i) {
      values.push_back(GroupValueText(query.group_by[i], key[i]));
    }
    parts.push_back(absl::StrCat(
        values.empty() ? "total" : absl::StrJoin(values, "/"), " ", n));
  }
  if (parts.size() > 12) {
    const size_t more = parts.size() - 8;
    parts.resize(8);
    parts.push_back(absl::StrCat("... ", more, " more groups"));
  }
  return absl::StrJoin(parts, ", ");
}

int64_t Quantile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  return sorted[static_cast<size_t>(q *
                                    static_cast<double>(sorted.size() - 1))];
}

void TimeMigration(const std::string& path) {
  {
    sqlite3* db = nullptr;
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) Die("open " + path);
    if (!HasCounters(db)) {
      sqlite3_close(db);
      return;
    }
    Exec(db,
         "BEGIN; DROP TABLE task_counts; DELETE FROM schema_version; "
         "INSERT INTO schema_version (version) VALUES (4); COMMIT");
    Exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    sqlite3_close(db);
  }
  SqliteTaskStoreOptions options;
  options.path = path;
  const absl::Time start = absl::Now();
  {
    absl::StatusOr<std::unique_ptr<TaskStore>> store =
        OpenSqliteTaskStore(options);
    if (!store.ok()) Die(store.status().ToString());
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf(
      "migration 5 (task_counts from every task) on open: %.2f s, "
      "counters %s\n\n",
      seconds, CountersMatch(path) ? "add up to the tasks" : "DO NOT MATCH");
}

}  // namespace
}  // namespace taskd

int main(int argc, char** argv) {
  using namespace taskd;
  std::string path = "/tmp/taskd-bench-1m.db";
  int64_t tasks = 1'000'000;
  int min_calls = 200;
  absl::Duration min_time = absl::Seconds(2);
  absl::Duration max_time = absl::Seconds(60);
  std::string json_out;
  bool time_migration = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      const size_t n = std::strlen(name);
      return arg.compare(0, n, name) == 0 ? argv[i] + n : nullptr;
    };
    if (const char* v = value("--db=")) {
      path = v;
    } else if (const char* v = value("--tasks=")) {
      tasks = std::atoll(v);
    } else if (const char* v = value("--min_calls=")) {
      min_calls = std::atoi(v);
    } else if (const char* v = value("--min_time=")) {
      if (!absl::ParseDuration(v, &min_time)) Die("bad --min_time");
    } else if (const char* v = value("--max_time=")) {
      if (!absl::ParseDuration(v, &max_time)) Die("bad --max_time");
    } else if (const char* v = value("--json_out=")) {
      json_out = v;
    } else if (arg == "--time_migration") {
      time_migration = true;
    } else {
      std::fprintf(stderr, "count_bench: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (tasks < 1) Die("--tasks must be at least 1");
  EnsureFilled(path, tasks);
  if (time_migration) TimeMigration(path);

  SqliteTaskStoreOptions options;
  options.path = path;
  absl::StatusOr<std::unique_ptr<TaskStore>> store =
      OpenSqliteTaskStore(options);
  if (!store.ok()) Die(store.status().ToString());

  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
      SQLITE_OK) {
    Die("open " + path);
  }
  std::printf("CountTasks through SqliteTaskStore::Count, %lld tasks in %s\n",
              static_cast<long long>(tasks), path.c_str());
  std::printf(
      "task_counts rows: %lld\n\n",
      static_cast<long long>(QueryInt(db, "SELECT COUNT(*) FROM task_counts")));

  struct Figure {
    std::string name, path;
    int64_t calls, min, p50, p99, max;
    double mean;
  };
  std::vector<Figure> figures;
  std::ofstream json;
  if (!json_out.empty()) json.open(json_out, std::ios::app);
  int mismatches = 0;
  for (const Question& q : Questions()) {
    Parsed p = Parse(q);
    std::printf("%s: filter '%s', group_by [%s]%s%s\n", q.name.c_str(),
                q.filter.c_str(), absl::StrJoin(q.group_by, ", ").c_str(),
                q.note.empty() ? "" : "  -- ", q.note.c_str());
    std::printf(
        "  answered from %s\n  SQL: %s\n  plan:\n%s",
        p.from_counters ? "the counters (task_counts)" : "the tasks (GROUP BY)",
        p.sql.c_str(), Plan(db, p.sql, p.params).c_str());
    absl::StatusOr<CountResult> first = (*store)->Count(p.query);
    if (!first.ok()) Die(first.status().ToString());
    const std::map<GroupKey, int64_t> reference = Reference(db, p.query);
    const bool same = reference == first->groups;
    if (!same) ++mismatches;
    std::printf("  groups: %s\n  same as GROUP BY over the tasks: %s\n",
                Describe(p.query, first->groups).c_str(), same ? "yes" : "NO");
    // Warm, then time.
    for (int i = 0; i < 2; ++i) (void)(*store)->Count(p.query);
    std::vector<int64_t> micros;
    const absl::Time begin = absl::Now();
    while (true) {
      const absl::Duration spent = absl::Now() - begin;
      const int64_t calls = static_cast<int64_t>(micros.size());
      if (calls >= 20 && spent >= max_time) break;
      if (calls >= min_calls && spent >= min_time) break;
      const absl::Time t0 = absl::Now();
      absl::StatusOr<CountResult> result = (*store)->Count(p.query);
      const absl::Time t1 = absl::Now();
      if (!result.ok()) Die(result.status().ToString());
      micros.push_back(absl::ToInt64Microseconds(t1 - t0));
    }
    std::sort(micros.begin(), micros.end());
    double sum = 0;
    for (int64_t m : micros) sum += static_cast<double>(m);
    Figure f{q.name,
             p.from_counters ? "counters" : "tasks",
             static_cast<int64_t>(micros.size()),
             micros.front(),
             Quantile(micros, 0.5),
             Quantile(micros, 0.99),
             micros.back(),
             sum / static_cast<double>(micros.size())};
    std::printf(
        "  %lld calls: min %.3f ms, median %.3f ms, p99 %.3f ms, max %.3f "
        "ms, mean %.3f ms\n\n",
        static_cast<long long>(f.calls), f.min / 1000.0, f.p50 / 1000.0,
        f.p99 / 1000.0, f.max / 1000.0, f.mean / 1000.0);
    const std::string line = absl::StrFormat(
        "{\"label\":\"count-%s\",\"path\":\"%s\",\"tasks\":%d,\"calls\":%d,"
        "\"min_us\":%d,\"p50_us\":%d,\"p99_us\":%d,\"max_us\":%d,"
        "\"mean_us\":%.1f,\"groups\":%d,\"same_as_group_by\":%s}",
        f.name, f.path, tasks, f.calls, f.min, f.p50, f.p99, f.max, f.mean,
        first->groups.size(), same ? "true" : "false");
    std::printf("%s\n\n", line.c_str());
    if (json.is_open()) json << line << "\n";
    figures.push_back(f);
  }
  sqlite3_close(db);

  std::printf("%-24s %-9s %7s %10s %10s %10s\n", "question", "from", "calls",
              "median ms", "p99 ms", "mean ms");
  for (const Figure& f : figures) {
    std::printf("%-24s %-9s %7lld %10.3f %10.3f %10.3f\n", f.name.c_str(),
                f.path.c_str(), static_cast<long long>(f.calls), f.p50 / 1000.0,
                f.p99 / 1000.0, f.mean / 1000.0);
  }
  if (mismatches > 0) {
    std::printf("\n%d question(s) answered differently from a GROUP BY\n",
                mismatches);
    return 1;
  }
  return 0;
}
