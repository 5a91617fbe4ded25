// Counting tasks by the values of a few fields: what CountTasks answers and
// WatchTaskCounts keeps up to date.
//
//   absl::StatusOr<std::vector<TaskField>> group_by =
//       ParseGroupBy({"state", "result_code"});
//   TaskCounts counts(*group_by);
//   counts.Add(task, +1);            // a task that matches
//   counts.Add(previous, -1);        // what a changed task was
//   for (const auto& [key, n] : counts.groups()) ...
//
// A group's key holds one FieldValue per group_by field (FieldValueOf), so
// groups sort as the fields compare: states and result codes in life-cycle
// order, priorities by rank, strings as bytes.
#ifndef TASKD_QUERY_TASK_COUNTS_H_
#define TASKD_QUERY_TASK_COUNTS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "query/filter.h"
#include "query/task_fields.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd {

// At most this many group_by fields.
inline constexpr size_t kMaxGroupBy = 2;

// True for the fields tasks may be grouped by: state, result_code, type,
// priority, tenant_id, executor_id (few values each, or one per tenant or
// executor).
bool Groupable(TaskField field);

// Reads a request's group_by (proto or JSON field names). InvalidArgument
// naming `group_by[i]` for an unknown or ungroupable field, a repeated one,
// or more than kMaxGroupBy.
absl::StatusOr<std::vector<TaskField>> ParseGroupBy(
    const std::vector<std::string>& names);

using GroupKey = std::vector<FieldValue>;

GroupKey GroupKeyOf(const tasks::v1::Task& task,
                    const std::vector<TaskField>& group_by);

// A group value as a Task's JSON spells it ("started", "aboveNormal", a
// tenant id); "" for an unset enum or priority.
std::string GroupValueText(TaskField field, const FieldValue& value);

// The fields `filter` reads (none for a null filter).
std::set<TaskField> FieldsOf(const FilterExpr* filter);

// Counts per group. Groups whose count drops to zero are removed, so
// groups() holds only groups with tasks (if every Add of -1 matches an
// earlier +1). Not thread-safe.
class TaskCounts {
 public:
  explicit TaskCounts(std::vector<TaskField> group_by)
      : group_by_(std::move(group_by)) {}

  void Add(const tasks::v1::Task& task, int64_t delta) {
    AddToGroup(GroupKeyOf(task, group_by_), delta);
  }
  void AddToGroup(const GroupKey& key, int64_t delta);

  const std::vector<TaskField>& group_by() const { return group_by_; }
  const std::map<GroupKey, int64_t>& groups() const { return groups_; }

 private:
  std::vector<TaskField> group_by_;
  std::map<GroupKey, int64_t> groups_;
};

}  // namespace taskd

#endif  // TASKD_QUERY_TASK_COUNTS_H_
