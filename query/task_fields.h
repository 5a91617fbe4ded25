// The queryable fields of a Task, and the one way to read a field's value.
//
// Filters (query/filter.h), orderings and page tokens name fields through this
// table, and both the SQL path (storage) and the in-memory path (the watch
// stream) compare the values that FieldValueOf() returns. Keeping one notion of
// "the value of a field" is what makes the two paths agree:
//   - strings compare as bytes;
//   - state and result_code compare by their enum numbers (which follow the
//     life cycle), 0 when unset;
//   - priority compares by rank: low < belowNormal < normal < aboveNormal <
//     high;
//   - timestamps compare as microseconds since the Unix epoch, 0 when unset;
//   - revision and assign_count compare as integers;
//   - cancel_requested compares as 0 (false) or 1 (true).
#ifndef TASKD_QUERY_TASK_FIELDS_H_
#define TASKD_QUERY_TASK_FIELDS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd {

enum class TaskField {
  kId,
  kUuid,
  kType,
  kState,
  kResultCode,
  kPriority,
  kPolicyId,
  kResourceId,
  kExecutorId,
  kEnqueuedAt,
  kStartedAt,
  kCompletedAt,
  kUpdatedAt,
  kTenantId,
  kRevision,
  kAssignCount,
  kCancelRequested,
  kAssignedAt,
  kDeadline,
};

enum class FieldKind {
  kString,
  kState,
  kResultCode,
  kPriority,
  kTimestamp,
  kInt64,
  kBool,  // compares as 0 (false) and 1 (true)
};

struct FieldInfo {
  TaskField field;
  const char* proto_name;  // "result_code", "enqueued_at"
  const char* json_name;   // "result_code", "enqueuedAt"
  FieldKind kind;
  bool orderable;  // may appear in order_by
};

// Every field, in TaskField order.
const std::vector<FieldInfo>& AllTaskFields();
const FieldInfo& InfoOf(TaskField field);
// Looks a field up by its proto name or its JSON name. Null if unknown.
const FieldInfo* FindTaskField(std::string_view name);

// A field's comparable value: int64 for enums, priority, timestamps and
// revision; string for the rest.
using FieldValue = std::variant<int64_t, std::string>;

FieldValue FieldValueOf(const tasks::v1::Task& task, TaskField field);

// Priority ranks. 0 means "not a priority name".
int64_t PriorityRank(std::string_view name);
// The name of a rank; empty for an unknown rank.
std::string_view PriorityName(int64_t rank);
inline constexpr std::string_view kDefaultPriority = "normal";

// Timestamps as stored and compared: microseconds since the epoch, 0 = unset.
int64_t TimestampMicros(const google::protobuf::Timestamp& ts);
void SetTimestampMicros(int64_t micros, google::protobuf::Timestamp* ts);
google::protobuf::Timestamp ToTimestamp(absl::Time t);
absl::Time TimeOf(const google::protobuf::Timestamp& ts);
// Durations (a task's timeouts) to and from google.protobuf.Duration.
google::protobuf::Duration ToDuration(absl::Duration d);
absl::Duration DurationOf(const google::protobuf::Duration& d);

}  // namespace taskd

#endif  // TASKD_QUERY_TASK_FIELDS_H_
