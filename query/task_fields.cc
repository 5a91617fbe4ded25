#include "query/task_fields.h"

#include <array>

namespace taskd {
namespace {

using tasks::v1::Task;

constexpr std::array<std::string_view, 6> kPriorityNames = {
    "", "low", "belowNormal", "normal", "aboveNormal", "high"};

}  // namespace

const std::vector<FieldInfo>& AllTaskFields() {
  static const auto* fields = new std::vector<FieldInfo>{
      {TaskField::kId, "id", "id", FieldKind::kString, true},
      {TaskField::kUuid, "uuid", "uuid", FieldKind::kString, false},
      {TaskField::kType, "type", "type", FieldKind::kString, true},
      {TaskField::kState, "state", "state", FieldKind::kState, true},
      {TaskField::kResultCode, "result_code", "result_code",
       FieldKind::kResultCode, true},
      {TaskField::kPriority, "priority", "priority", FieldKind::kPriority,
       true},
      {TaskField::kPolicyId, "policy_id", "policy_id", FieldKind::kString,
       false},
      {TaskField::kResourceId, "resource_id", "resource_id", FieldKind::kString,
       false},
      {TaskField::kExecutorId, "executor_id", "executor_id", FieldKind::kString,
       false},
      {TaskField::kEnqueuedAt, "enqueued_at", "enqueuedAt",
       FieldKind::kTimestamp, true},
      {TaskField::kStartedAt, "started_at", "startedAt", FieldKind::kTimestamp,
       true},
      {TaskField::kCompletedAt, "completed_at", "completedAt",
       FieldKind::kTimestamp, true},
      {TaskField::kUpdatedAt, "updated_at", "updatedAt", FieldKind::kTimestamp,
       true},
      {TaskField::kTenantId, "tenant_id", "tenant_id", FieldKind::kString,
       false},
      {TaskField::kRevision, "revision", "revision", FieldKind::kInt64, true},
      {TaskField::kAssignCount, "assign_count", "assignCount",
       FieldKind::kInt64, true},
      {TaskField::kCancelRequested, "cancel_requested", "cancelRequested",
       FieldKind::kBool, false},
      {TaskField::kAssignedAt, "assigned_at", "assignedAt",
       FieldKind::kTimestamp, true},
      {TaskField::kDeadline, "deadline", "deadline", FieldKind::kTimestamp,
       true},
  };
  return *fields;
}

const FieldInfo& InfoOf(TaskField field) {
  return AllTaskFields()[static_cast<size_t>(field)];
}

const FieldInfo* FindTaskField(std::string_view name) {
  for (const FieldInfo& info : AllTaskFields()) {
    if (name == info.proto_name || name == info.json_name) return &info;
  }
  return nullptr;
}

int64_t PriorityRank(std::string_view name) {
  for (size_t i = 1; i < kPriorityNames.size(); ++i) {
    if (kPriorityNames[i] == name) return static_cast<int64_t>(i);
  }
  return 0;
}

std::string_view PriorityName(int64_t rank) {
  if (rank < 1 || rank >= static_cast<int64_t>(kPriorityNames.size())) {
    return "";
  }
  return kPriorityNames[rank];
}

int64_t TimestampMicros(const google::protobuf::Timestamp& ts) {
  return ts.seconds() * 1'000'000 + ts.nanos() / 1000;
}

void SetTimestampMicros(int64_t micros, google::protobuf::Timestamp* ts) {
  int64_t seconds = micros / 1'000'000;
  int64_t rest = micros % 1'000'000;
  if (rest < 0) {
    rest += 1'000'000;
    --seconds;
  }
  ts->set_seconds(seconds);
  ts->set_nanos(static_cast<int32_t>(rest * 1000));
}

google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  google::protobuf::Timestamp ts;
  SetTimestampMicros(absl::ToUnixMicros(t), &ts);
  return ts;
}

absl::Time TimeOf(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

google::protobuf::Duration ToDuration(absl::Duration d) {
  google::protobuf::Duration out;
  const int64_t nanos = absl::ToInt64Nanoseconds(d);
  out.set_seconds(nanos / 1'000'000'000);
  out.set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
  return out;
}

absl::Duration DurationOf(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

FieldValue FieldValueOf(const Task& task, TaskField field) {
  switch (field) {
    case TaskField::kId:
      return task.id();
    case TaskField::kUuid:
      return task.uuid();
    case TaskField::kType:
      return task.type();
    case TaskField::kState:
      return static_cast<int64_t>(task.state());
    case TaskField::kResultCode:
      return static_cast<int64_t>(task.result_code());
    case TaskField::kPriority:
      return PriorityRank(task.priority());
    case TaskField::kPolicyId:
      return task.policy_id();
    case TaskField::kResourceId:
      return task.resource_id();
    case TaskField::kExecutorId:
      return task.executor_id();
    case TaskField::kEnqueuedAt:
      return task.has_enqueued_at() ? TimestampMicros(task.enqueued_at())
                                    : int64_t{0};
    case TaskField::kStartedAt:
      return task.has_started_at() ? TimestampMicros(task.started_at())
                                   : int64_t{0};
    case TaskField::kCompletedAt:
      return task.has_completed_at() ? TimestampMicros(task.completed_at())
                                     : int64_t{0};
    case TaskField::kUpdatedAt:
      return task.has_updated_at() ? TimestampMicros(task.updated_at())
                                   : int64_t{0};
    case TaskField::kTenantId:
      return task.tenant_id();
    case TaskField::kRevision:
      return task.revision();
    case TaskField::kAssignCount:
      return static_cast<int64_t>(task.assign_count());
    case TaskField::kCancelRequested:
      return static_cast<int64_t>(task.cancel_requested() ? 1 : 0);
    case TaskField::kAssignedAt:
      return task.has_assigned_at() ? TimestampMicros(task.assigned_at())
                                    : int64_t{0};
    case TaskField::kDeadline:
      return task.has_deadline() ? TimestampMicros(task.deadline())
                                 : int64_t{0};
  }
  return int64_t{0};
}

}  // namespace taskd
