// What every engine shares below the TaskStore interface: a task as a row
// of the tasks table, and the checks and errors of the reads.
//
// A task as a row, the same in every engine: the fields
// that filters and orders need have columns of their own (kTaskColumns in
// storage/sqlite_query.h, kColumnFields here, in the same order); every
// other field lives in `detail`, a serialized tasks.v1.Task holding only
// those fields, so that a new field needs no new column.
#ifndef TASKD_STORAGE_TASK_ROW_H_
#define TASKD_STORAGE_TASK_ROW_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "query/task_fields.h"
#include "storage/task_store.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd {

using tasks::v1::Task;

// "r<revision>": the etag of a task at a revision.
inline std::string EtagOf(int64_t revision) {
  return absl::StrCat("r", revision);
}

// The fields that have columns of their own (TaskField), in kTaskColumns
// order; every other stored field goes into `detail`.
inline constexpr TaskField kColumnFields[] = {TaskField::kId,
                                              TaskField::kUuid,
                                              TaskField::kType,
                                              TaskField::kState,
                                              TaskField::kResultCode,
                                              TaskField::kPriority,
                                              TaskField::kPolicyId,
                                              TaskField::kResourceId,
                                              TaskField::kExecutorId,
                                              TaskField::kTenantId,
                                              TaskField::kEnqueuedAt,
                                              TaskField::kStartedAt,
                                              TaskField::kCompletedAt,
                                              TaskField::kUpdatedAt,
                                              TaskField::kRevision,
                                              TaskField::kAssignCount,
                                              TaskField::kCancelRequested,
                                              TaskField::kAssignedAt,
                                              TaskField::kDeadline};
inline constexpr int kDetailColumn = 19;  // 0-based, after the column fields

// The `detail` column of `task`: the task without the fields that have
// columns, without etag (derived from revision) and without lease_token
// (never stored).
std::string DetailOf(const Task& task);

// The tasks columns an UPDATE may set, with the field each one holds, in
// kTaskColumns order (id, the key, is never set).
struct UpdatableColumn {
  TaskField field;
  const char* name;
};
inline constexpr UpdatableColumn kUpdatableColumns[] = {
    {TaskField::kUuid, "uuid"},
    {TaskField::kType, "type"},
    {TaskField::kState, "state"},
    {TaskField::kResultCode, "result_code"},
    {TaskField::kPriority, "priority"},
    {TaskField::kPolicyId, "policy_id"},
    {TaskField::kResourceId, "resource_id"},
    {TaskField::kExecutorId, "executor_id"},
    {TaskField::kTenantId, "tenant_id"},
    {TaskField::kEnqueuedAt, "enqueued_at"},
    {TaskField::kStartedAt, "started_at"},
    {TaskField::kCompletedAt, "completed_at"},
    {TaskField::kUpdatedAt, "updated_at"},
    {TaskField::kRevision, "revision"},
    {TaskField::kAssignCount, "assign_count"},
    {TaskField::kCancelRequested, "cancel_requested"},
    {TaskField::kAssignedAt, "assigned_at"},
    {TaskField::kDeadline, "deadline"},
};
// One column an update sets: its name and new value. `detail` is a blob
// (the serialized detail), every other column a FieldValue.
struct ColumnChange {
  const char* column;
  FieldValue value;
  bool blob = false;
};

// The columns an update from `current` to `next` must set: those whose
// values differ (an engine that writes only these rewrites only the
// indexes over them), `detail` last if it differs. Empty if none does.
std::vector<ColumnChange> ChangedColumns(const Task& current, const Task& next);

// ReadChanges' error for a `from` below `oldest`, the oldest revision kept
// (OUT_OF_RANGE, reason REVISION_COMPACTED, so that clients tell it from
// other OUT_OF_RANGE errors without parsing the message).
absl::Status CompactedError(int64_t from, int64_t oldest);

// InvalidArgument if `query` cannot be read (a limit below 1, a cursor that
// does not match the order).
absl::Status CheckListQuery(const ListQuery& query);

// The task in the current row of a result that selected kTaskColumns.
// `Row` reads column i (0-based) with ColumnText(i), ColumnInt64(i) and
// ColumnBlob(i), as sqlite::Statement does; other engines adapt to it.
template <typename Row>
Task ReadTask(const Row& row) {
  Task task;
  task.set_id(row.ColumnText(0));
  task.set_uuid(row.ColumnText(1));
  task.set_type(row.ColumnText(2));
  task.set_state(static_cast<Task::State>(row.ColumnInt64(3)));
  task.set_result_code(static_cast<Task::ResultCode>(row.ColumnInt64(4)));
  task.set_priority(std::string(PriorityName(row.ColumnInt64(5))));
  task.set_policy_id(row.ColumnText(6));
  task.set_resource_id(row.ColumnText(7));
  task.set_executor_id(row.ColumnText(8));
  task.set_tenant_id(row.ColumnText(9));
  struct {
    int column;
    google::protobuf::Timestamp* (Task::*mutable_field)();
  } times[] = {{10, &Task::mutable_enqueued_at},
               {11, &Task::mutable_started_at},
               {12, &Task::mutable_completed_at},
               {13, &Task::mutable_updated_at}};
  for (const auto& time : times) {
    int64_t micros = row.ColumnInt64(time.column);
    if (micros != 0) SetTimestampMicros(micros, (task.*time.mutable_field)());
  }
  task.set_revision(row.ColumnInt64(14));
  task.set_assign_count(static_cast<int32_t>(row.ColumnInt64(15)));
  task.set_cancel_requested(row.ColumnInt64(16) != 0);
  if (int64_t micros = row.ColumnInt64(17); micros != 0) {
    SetTimestampMicros(micros, task.mutable_assigned_at());
  }
  if (int64_t micros = row.ColumnInt64(18); micros != 0) {
    SetTimestampMicros(micros, task.mutable_deadline());
  }
  // The detail holds no column field, so merging cannot overwrite one.
  std::string detail = row.ColumnBlob(kDetailColumn);
  if (!detail.empty()) task.MergeFromString(detail);
  task.set_etag(EtagOf(task.revision()));
  return task;
}

}  // namespace taskd

#endif  // TASKD_STORAGE_TASK_ROW_H_
