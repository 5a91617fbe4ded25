// Turns a ListQuery into SQL with bound parameters, for SQLite or (with
// Dialect::kPostgres) PostgreSQL, whose tables have the same columns.
// Nothing a caller wrote reaches the SQL text: field names come from a fixed
// table of columns, and every value is a parameter.
#ifndef TASKD_STORAGE_SQLITE_QUERY_H_
#define TASKD_STORAGE_SQLITE_QUERY_H_

#include <string>
#include <vector>

#include "query/filter.h"
#include "query/order_by.h"
#include "storage/task_store.h"

namespace taskd::sqlite {

// The tasks columns that hold a Task, in the order the store reads and
// binds them (sqlite_task_store.cc): every statement that selects a task
// selects these. Tests and benchmarks that look at the store's plans use
// this list too, so that they see the store's own statements (a narrower
// list could make an index "covering" and change the plan).
inline constexpr char kTaskColumns[] =
    "id, uuid, type, state, result_code, priority, policy_id, resource_id, "
    "executor_id, tenant_id, enqueued_at, started_at, completed_at, "
    "updated_at, revision, assign_count, cancel_requested, assigned_at, "
    "deadline, detail";

// TaskStore::ListByDeadline: the tasks with a deadline, earliest first, ?1
// of them. `deadline <> 0` is the partial index tasks_by_deadline's own
// condition, so SQLite reads that index from its start and stops after ?1
// rows, however many tasks have no deadline.
inline constexpr char kByDeadlineWhere[] =
    " FROM tasks WHERE deadline <> 0 ORDER BY deadline LIMIT ?1";

// Where the SQL goes: SQLite (parameters ?1, ?2, ..., with its planner
// hints) or PostgreSQL (parameters $1, $2, ...).
enum class Dialect { kSqlite, kPostgres };

// The column that holds `field` in the tasks table.
const char* ColumnOf(TaskField field);

struct SqlQuery {
  std::string sql;
  std::vector<FieldValue> params;  // bound to ?1 or $1, ... in order
};

// "WHERE ..." fragment (possibly empty) for a filter; appends to params.
std::string WhereClause(const FilterExpr* filter,
                        std::vector<FieldValue>* params,
                        Dialect dialect = Dialect::kSqlite);

// SELECT <kTaskColumns> FROM tasks WHERE <filter> AND <after cursor>
// ORDER BY <order> LIMIT <limit>.
SqlQuery BuildListQuery(const ListQuery& query, int limit,
                        Dialect dialect = Dialect::kSqlite);

// SELECT <group_by columns>, COUNT(*) FROM tasks WHERE <filter>
// GROUP BY <group_by columns>: a count read from the tasks themselves.
SqlQuery BuildCountQuery(const CountQuery& query,
                         Dialect dialect = Dialect::kSqlite);

// The counters the store keeps in the same transaction as each change: how
// many tasks each (tenant_id, state, result_code) has. A count whose filter
// reads and whose group_by names only these fields is answered from them
// (one row per combination that ever had a task) instead of the tasks.
inline constexpr TaskField kCountedFields[] = {
    TaskField::kTenantId, TaskField::kState, TaskField::kResultCode};

// Whether `query` reads and groups by only kCountedFields, so that the
// counters answer it.
bool AnsweredByCounters(const CountQuery& query);

}  // namespace taskd::sqlite

#endif  // TASKD_STORAGE_SQLITE_QUERY_H_
