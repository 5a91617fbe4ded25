#include "storage/task_row.h"

#include <vector>

#include "base/error_details.h"

namespace taskd {

std::string DetailOf(const Task& task) {
  static const auto* cleared = [] {
    auto* fields = new std::vector<const google::protobuf::FieldDescriptor*>;
    const google::protobuf::Descriptor* descriptor = Task::descriptor();
    for (TaskField field : kColumnFields) {
      fields->push_back(descriptor->FindFieldByName(InfoOf(field).proto_name));
    }
    fields->push_back(descriptor->FindFieldByName("etag"));
    fields->push_back(descriptor->FindFieldByName("lease_token"));
    return fields;
  }();
  Task detail = task;
  const google::protobuf::Reflection* reflection = detail.GetReflection();
  for (const google::protobuf::FieldDescriptor* field : *cleared) {
    reflection->ClearField(&detail, field);
  }
  return detail.SerializeAsString();
}

std::vector<ColumnChange> ChangedColumns(const Task& current,
                                         const Task& next) {
  std::vector<ColumnChange> changes;
  for (const UpdatableColumn& column : kUpdatableColumns) {
    FieldValue value = FieldValueOf(next, column.field);
    if (value == FieldValueOf(current, column.field)) continue;
    changes.push_back({column.name, std::move(value)});
  }
  std::string detail = DetailOf(next);
  if (detail != DetailOf(current)) {
    changes.push_back({"detail", std::move(detail), /*blob=*/true});
  }
  return changes;
}

absl::Status CompactedError(int64_t from, int64_t oldest) {
  return WithReason(
      absl::OutOfRangeError(absl::StrCat(
          "revision ", from,
          " has been compacted; the oldest revision available is ", oldest)),
      "REVISION_COMPACTED", {{"oldest_revision", absl::StrCat(oldest)}});
}

absl::Status CheckListQuery(const ListQuery& query) {
  if (query.limit < 1) {
    return absl::InvalidArgumentError("list limit must be at least 1");
  }
  if (!query.after.empty() && query.after.size() != query.order.size()) {
    return absl::InvalidArgumentError("cursor does not match the order");
  }
  return absl::OkStatus();
}

}  // namespace taskd
