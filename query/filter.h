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
// non-zero enum, priority or timestamp).
//
// Precedence, as in AIP-160, from loosest to tightest: AND, then OR, then
// NOT / `-`. So `a AND b OR c` means `a AND (b OR c)`, and `NOT a OR b` means
// `(NOT a) OR b`. Juxtaposition (`a = "x" b = "y"`) is AND, with AND's
// precedence: `a b OR c` means `a AND (b OR c)`. Use parentheses for anything
// else.
//
// Literals: double-quoted strings with \" and \\ escapes, or bare words;
// enum values and priorities by their schema spelling (`started`, `error`,
// `aboveNormal`); timestamps in RFC 3339 with a zone
// ("2026-11-01T00:00:00Z", "...+02:00"), within 0001-01-01..9999-12-31,
// compared at microsecond precision; revision as an integer (quoted or not).
//
// Unset values. state, result_code, priority and the timestamps have no value
// when unset (a task that never completed has no completedAt). A comparison
// on such a field with = < <= > >= holds only for tasks where the field is
// set: `completedAt < "2026-01-01T00:00:00Z"` never matches a task that has
// not completed, and `state < "started"` never matches a task without a
// state. `!=` is the exception: it holds for every task whose value differs,
// so `completedAt != X` and `result_code != "ok"` do match tasks where the
// field is unset. So does a negation: `NOT completedAt < X` matches unset
// ones. Write `completedAt:* AND completedAt != X` to exclude them. ParseFilter
// makes the rule explicit in the tree (a comparison that would otherwise
// accept the unset value becomes `field:* AND comparison`), so every consumer
// of the tree follows it. The rule is not applied to strings and revision:
// in a comparison an empty string is an ordinary value that sorts first
// (`executor_id < "a"` matches tasks with no executor), although `:*` calls
// it unset. An unset timestamp is stored as the instant
// 1970-01-01T00:00:00Z, so that one instant cannot be told from "unset".
//
// Limits, each an InvalidArgument naming the column where it was exceeded:
// at most 8 KiB (8192 bytes) of text; at most 64 levels of nesting
// (parentheses and NOT / `-` each count one level); at most 256 conditions
// (comparisons and `:*`). Columns in error messages are 1-based and count
// bytes, not characters.
//
// A Filter is a tree of FilterExpr. The SQL store compiles it to a
// parameterised WHERE clause (storage/sqlite_query.h); Matches() evaluates it
// in memory. Both compare FieldValueOf() values and take the same tree, so
// they agree (tests/query_differential_test.cc checks this).
#ifndef TASKD_QUERY_FILTER_H_
#define TASKD_QUERY_FILTER_H_

#include <memory>
#include <optional>
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

// If every task that `expr` matches has `field` equal to one value (the
// filter is `field = "v"`, or an AND with such a condition at its top), that
// value; otherwise nullopt. Conservative: a filter that pins the field in a
// form this does not recognise (an OR of equal branches, say) gets nullopt.
// WatchHub uses it to route changes to the watchers of one tenant.
std::optional<FieldValue> RequiredValue(const FilterExpr* expr,
                                        TaskField field);

// A filter that holds exactly for tasks whose `field` equals `value`.
std::shared_ptr<const FilterExpr> EqualsFilter(TaskField field,
                                               FieldValue value);

}  // namespace taskd

#endif  // TASKD_QUERY_FILTER_H_
