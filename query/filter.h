// Filter: the compiled form of the filter language that ListTasks and
// WatchTasks share, an AIP-160 subset:
//
//   state = "started" AND tenant_id = "3f2a...-..."
//   (priority >= "aboveNormal" OR type != "backup") AND NOT executor_id:*
//   completedAt >= "2026-11-01T00:00:00Z" AND result_code = "error"
//   -state = "completed"
//
// Fields are named by their proto or JSON name (query/task_fields.h).
// Comparisons: = != < <= > >= ; `field:*` means "is set" (non-empty string,
// non-zero enum, priority or timestamp). AND binds tighter than OR; NOT and
// `-` negate the next term; juxtaposition (`a = "x" b = "y"`) means AND.
// Literals: double-quoted strings with \" and \\ escapes; enum values and
// priorities by their schema spelling; timestamps in RFC 3339; revision as an
// integer (quoted or not).
//
// A Filter is a tree of FilterExpr. The SQL store compiles it to a
// parameterised WHERE clause (storage/sqlite/sql_filter.h); Matches() evaluates
// it in memory. Both compare FieldValueOf() values, so they agree.
#ifndef TASKD_QUERY_FILTER_H_
#define TASKD_QUERY_FILTER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "query/task_fields.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd {

enum class Comparator { kEq, kNe, kLt, kLe, kGt, kGe };

struct FilterExpr {
  enum class Kind {
    kAnd,      // all children hold (two or more children)
    kOr,       // any child holds (two or more children)
    kNot,      // the single child does not hold
    kCompare,  // FieldValueOf(task, field) <cmp> value
    kPresent,  // FieldValueOf(task, field) differs from the field's zero value
  };
  Kind kind = Kind::kAnd;
  std::vector<FilterExpr> children;
  TaskField field = TaskField::kId;
  Comparator cmp = Comparator::kEq;
  // int64_t for state, result_code, priority, timestamps (micros) and
  // revision; std::string for string fields.
  FieldValue value;
};

// Parses `text`. An empty or all-blank text yields nullptr: "match
// everything". Errors are InvalidArgument, and the message names the column
// (1-based) and what is wrong, e.g.
//   filter: column 7: unknown field "stat"
//   filter: column 9: "begun" is not a state (enqueued, assigned, ...)
absl::StatusOr<std::shared_ptr<const FilterExpr>> ParseFilter(
    std::string_view text);

// True if `task` satisfies `expr`. A null filter matches every task.
bool Matches(const FilterExpr* expr, const tasks::v1::Task& task);

// Conjunction helper: `a AND b`, where either side may be null ("all").
std::shared_ptr<const FilterExpr> AndFilters(
    std::shared_ptr<const FilterExpr> a, std::shared_ptr<const FilterExpr> b);

// A filter that holds exactly for tasks whose `field` equals `value`.
std::shared_ptr<const FilterExpr> EqualsFilter(TaskField field,
                                               FieldValue value);

}  // namespace taskd

#endif  // TASKD_QUERY_FILTER_H_
