#include "storage/sqlite_query.h"

#include <algorithm>
#include <set>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace taskd::sqlite {
namespace {

const char* OperatorOf(Comparator cmp) {
  switch (cmp) {
    case Comparator::kEq:
      return "=";
    case Comparator::kNe:
      return "<>";
    case Comparator::kLt:
      return "<";
    case Comparator::kLe:
      return "<=";
    case Comparator::kGt:
      return ">";
    case Comparator::kGe:
      return ">=";
  }
  return "=";
}

FieldValue ZeroValueOf(TaskField field) {
  switch (InfoOf(field).kind) {
    case FieldKind::kString:
      return std::string();
    default:
      return int64_t{0};
  }
}

// Where a statement is being built: its dialect and its parameters so far.
struct Builder {
  Dialect dialect;
  std::vector<FieldValue>* params;

  // Appends a parameter; returns its placeholder (?N or $N).
  std::string Param(FieldValue value) const {
    params->push_back(std::move(value));
    return absl::StrCat(dialect == Dialect::kSqlite ? "?" : "$",
                        params->size());
  }
  // `condition` with SQLite's planner hint that it holds for about
  // `probability` of the rows (see below); PostgreSQL keeps statistics of
  // its own and has no such function.
  std::string Likely(const std::string& condition,
                     const char* probability) const {
    if (dialect != Dialect::kSqlite) return condition;
    return absl::StrCat("likelihood(", condition, ", ", probability, ")");
  }
};

// Without ANALYZE statistics (taskd runs none, and Debian's SQLite has no
// STAT4 histograms to make ranges estimable anyway) SQLite assumes that an =
// on an indexed column matches about ten rows, and so prefers any = to any
// range. For the columns that hold only a handful of values that is far off:
// `state = completed` is most of the table. Left alone, SQLite answers
// `state = completed AND completedAt >= X` ordered by completedAt by reading
// every completed task and sorting the ones in the window, instead of
// walking the window on tasks_by_completed. likelihood() tells it what such
// an = really keeps: about a fifth of the rows.
constexpr char kFewValuesLikelihood[] = "0.2";

bool HasFewValues(TaskField field) {
  switch (InfoOf(field).kind) {
    case FieldKind::kState:
    case FieldKind::kResultCode:
    case FieldKind::kPriority:
    case FieldKind::kBool:
      return true;
    case FieldKind::kString:
      return field == TaskField::kType;  // backup, restore, replication, ...
    case FieldKind::kTimestamp:
    case FieldKind::kInt64:
      return false;
  }
  return false;
}

// The condition of the partial index on `field`'s column (migration 6 in
// sqlite_task_store.cc), word for word as the index has it; null if its
// index is not partial.
const char* PartialIndexCondition(TaskField field) {
  switch (field) {
    case TaskField::kPolicyId:
      return "policy_id <> ''";
    case TaskField::kResourceId:
      return "resource_id <> ''";
    case TaskField::kExecutorId:
      return "executor_id <> ''";
    case TaskField::kResultCode:
      return "result_code <> 0";
    case TaskField::kCompletedAt:
      return "completed_at <> 0";
    case TaskField::kStartedAt:
      return "started_at <> 0";
    default:
      return nullptr;
  }
}

// Whether `column <cmp> value` can hold only where the column is not its
// empty value ('' or 0): then adding the partial index's condition changes
// nothing but lets SQLite use the index.
bool ExcludesEmpty(Comparator cmp, const FieldValue& value) {
  if (const auto* text = std::get_if<std::string>(&value)) {
    switch (cmp) {
      case Comparator::kEq:
      case Comparator::kGe:
        return !text->empty();
      case Comparator::kGt:
        return true;  // above some string, so above ''
      default:
        return false;
    }
  }
  const auto* number = std::get_if<int64_t>(&value);
  if (number == nullptr) return false;
  switch (cmp) {
    case Comparator::kEq:
      return *number != 0;
    case Comparator::kGt:
      return *number >= 0;
    case Comparator::kGe:
      return *number > 0;
    default:
      return false;  // the empty value 0 is below any time or code
  }
}

std::string Compile(const FilterExpr& expr, const Builder& b) {
  switch (expr.kind) {
    case FilterExpr::Kind::kAnd:
    case FilterExpr::Kind::kOr: {
      std::vector<std::string> parts;
      for (const FilterExpr& child : expr.children) {
        parts.push_back(Compile(child, b));
      }
      const char* joiner =
          expr.kind == FilterExpr::Kind::kAnd ? " AND " : " OR ";
      return absl::StrCat("(", absl::StrJoin(parts, joiner), ")");
    }
    case FilterExpr::Kind::kNot:
      return absl::StrCat("NOT ", Compile(expr.children.at(0), b));
    case FilterExpr::Kind::kCompare: {
      std::string comparison =
          absl::StrCat(ColumnOf(expr.field), " ", OperatorOf(expr.cmp), " ",
                       b.Param(expr.value));
      if (expr.cmp == Comparator::kEq && HasFewValues(expr.field)) {
        comparison = b.Likely(comparison, kFewValuesLikelihood);
      }
      // Implied by the comparison, so true wherever it is (also under NOT
      // or OR), and it names the partial index SQLite may then use.
      const char* condition = PartialIndexCondition(expr.field);
      if (condition != nullptr && ExcludesEmpty(expr.cmp, expr.value)) {
        return absl::StrCat("(", comparison, " AND ", condition, ")");
      }
      return absl::StrCat("(", comparison, ")");
    }
    case FilterExpr::Kind::kPresent: {
      const char* condition = PartialIndexCondition(expr.field);
      if (condition != nullptr) return absl::StrCat("(", condition, ")");
      return absl::StrCat("(", ColumnOf(expr.field), " <> ",
                          b.Param(ZeroValueOf(expr.field)), ")");
    }
  }
  return "1";
}

// Rows strictly after `after` in `order`, in a form SQLite can seek an index
// with, so that a deep page starts at the cursor instead of reading every
// earlier row again:
//   - all keys one way: the row value (k1, k2, ...) > (v1, v2, ...);
//   - mixed directions (say k1 asc, k2 desc): k1 >= v1 AND ((k1 > v1) OR
//     (k1 = v1 AND k2 < v2)). SQLite does not seek on an OR; it does on the
//     bound k1 >= v1, which the alternatives imply.
// The seek term is wrapped in likelihood(): a filter often bounds k1 too
// (`updatedAt >= X` ordered by updatedAt), and without the hint SQLite seeks
// on whichever bound it sees first, which may be the filter's, then walks
// from X to the cursor on every page. The cursor's bound is never the looser
// one (the cursor row matched the filter), and the hint makes SQLite prefer
// it. (BuildListQuery also puts it first, which is what SQLite picks among
// equally good terms.)
constexpr char kSeekLikelihood[] = "0.05";

std::string AfterClause(const OrderBy& order,
                        const std::vector<FieldValue>& after,
                        const Builder& b) {
  bool same_direction = true;
  for (const OrderKey& key : order) {
    same_direction &= key.descending == order.front().descending;
  }
  if (same_direction) {
    std::vector<std::string> columns, values;
    for (size_t i = 0; i < order.size(); ++i) {
      columns.push_back(ColumnOf(order[i].field));
      values.push_back(b.Param(after[i]));
    }
    return b.Likely(absl::StrCat("(", absl::StrJoin(columns, ", "), ") ",
                                 order.front().descending ? "<" : ">", " (",
                                 absl::StrJoin(values, ", "), ")"),
                    kSeekLikelihood);
  }
  std::vector<std::string> alternatives;
  const std::string bound = b.Likely(
      absl::StrCat(
          ColumnOf(order.front().field),
          order.front().descending ? " <= " : " >= ", b.Param(after.front())),
      kSeekLikelihood);
  for (size_t i = 0; i < order.size(); ++i) {
    std::vector<std::string> terms;
    for (size_t j = 0; j < i; ++j) {
      terms.push_back(
          absl::StrCat(ColumnOf(order[j].field), " = ", b.Param(after[j])));
    }
    terms.push_back(absl::StrCat(ColumnOf(order[i].field),
                                 order[i].descending ? " < " : " > ",
                                 b.Param(after[i])));
    alternatives.push_back(
        absl::StrCat("(", absl::StrJoin(terms, " AND "), ")"));
  }
  return absl::StrCat("(", bound, " AND (", absl::StrJoin(alternatives, " OR "),
                      "))");
}

}  // namespace

const char* ColumnOf(TaskField field) {
  switch (field) {
    case TaskField::kId:
      return "id";
    case TaskField::kUuid:
      return "uuid";
    case TaskField::kType:
      return "type";
    case TaskField::kState:
      return "state";
    case TaskField::kResultCode:
      return "result_code";
    case TaskField::kPriority:
      return "priority";
    case TaskField::kPolicyId:
      return "policy_id";
    case TaskField::kResourceId:
      return "resource_id";
    case TaskField::kExecutorId:
      return "executor_id";
    case TaskField::kEnqueuedAt:
      return "enqueued_at";
    case TaskField::kStartedAt:
      return "started_at";
    case TaskField::kCompletedAt:
      return "completed_at";
    case TaskField::kUpdatedAt:
      return "updated_at";
    case TaskField::kTenantId:
      return "tenant_id";
    case TaskField::kRevision:
      return "revision";
    case TaskField::kAssignCount:
      return "assign_count";
    case TaskField::kCancelRequested:
      return "cancel_requested";
    case TaskField::kAssignedAt:
      return "assigned_at";
    case TaskField::kDeadline:
      return "deadline";
  }
  return "id";
}

std::string WhereClause(const FilterExpr* filter,
                        std::vector<FieldValue>* params, Dialect dialect) {
  if (filter == nullptr) return "";
  return absl::StrCat(" WHERE ", Compile(*filter, Builder{dialect, params}));
}

SqlQuery BuildListQuery(const ListQuery& query, int limit, Dialect dialect) {
  SqlQuery result;
  const Builder b{dialect, &result.params};
  std::vector<std::string> conditions;
  // The cursor first: see AfterClause.
  if (!query.after.empty()) {
    conditions.push_back(AfterClause(query.order, query.after, b));
  }
  if (query.filter != nullptr) {
    conditions.push_back(Compile(*query.filter, b));
  }
  std::vector<std::string> keys;
  for (const OrderKey& key : query.order) {
    keys.push_back(
        absl::StrCat(ColumnOf(key.field), key.descending ? " DESC" : ""));
  }
  result.sql = absl::StrCat(
      "SELECT ", kTaskColumns, " FROM tasks",
      conditions.empty()
          ? ""
          : absl::StrCat(" WHERE ", absl::StrJoin(conditions, " AND ")),
      " ORDER BY ", absl::StrJoin(keys, ", "), " LIMIT ", limit);
  return result;
}

SqlQuery BuildCountQuery(const CountQuery& query, Dialect dialect) {
  SqlQuery result;
  const Builder b{dialect, &result.params};
  std::vector<std::string> columns;
  for (TaskField field : query.group_by) columns.push_back(ColumnOf(field));
  const std::string groups = absl::StrJoin(columns, ", ");
  result.sql = absl::StrCat(
      "SELECT ", groups, columns.empty() ? "" : ", ", "COUNT(*) FROM tasks",
      query.filter == nullptr
          ? ""
          : absl::StrCat(" WHERE ", Compile(*query.filter, b)),
      columns.empty() ? "" : absl::StrCat(" GROUP BY ", groups));
  return result;
}

bool AnsweredByCounters(const CountQuery& query) {
  auto counted = [](TaskField field) {
    return std::find(std::begin(kCountedFields), std::end(kCountedFields),
                     field) != std::end(kCountedFields);
  };
  const std::set<TaskField> read = FieldsOf(query.filter.get());
  return std::all_of(read.begin(), read.end(), counted) &&
         std::all_of(query.group_by.begin(), query.group_by.end(), counted);
}

}  // namespace taskd::sqlite
