// Turns a ListQuery into SQLite SQL with bound parameters. Nothing a caller
// wrote reaches the SQL text: field names come from a fixed table of
// columns, and every value is a parameter.
#ifndef TASKD_STORAGE_SQLITE_QUERY_H_
#define TASKD_STORAGE_SQLITE_QUERY_H_

#include <string>
#include <vector>

#include "query/filter.h"
#include "query/order_by.h"
#include "storage/task_store.h"

namespace taskd::sqlite {

// The column that holds `field` in the tasks table.
const char* ColumnOf(TaskField field);

struct SqlQuery {
  std::string sql;
  std::vector<FieldValue> params;  // bound to ?1, ?2, ... in order
};

// "WHERE ..." fragment (possibly empty) for a filter; appends to params.
std::string WhereClause(const FilterExpr* filter,
                        std::vector<FieldValue>* params);

// SELECT <task columns> FROM tasks WHERE <filter> AND <after cursor>
// ORDER BY <order> LIMIT <limit>.
SqlQuery BuildListQuery(const ListQuery& query, const char* columns, int limit);

}  // namespace taskd::sqlite

#endif  // TASKD_STORAGE_SQLITE_QUERY_H_
