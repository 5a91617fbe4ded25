#include "query/task_counts.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace taskd {

using tasks::v1::Task;

bool Groupable(TaskField field) {
  switch (field) {
    case TaskField::kState:
    case TaskField::kResultCode:
    case TaskField::kType:
    case TaskField::kPriority:
    case TaskField::kTenantId:
    case TaskField::kExecutorId:
      return true;
    default:
      return false;
  }
}

absl::StatusOr<std::vector<TaskField>> ParseGroupBy(
    const std::vector<std::string>& names) {
  if (names.size() > kMaxGroupBy) {
    return absl::InvalidArgumentError(absl::StrCat(
        "group_by: at most ", kMaxGroupBy, " fields, not ", names.size()));
  }
  std::vector<TaskField> fields;
  for (size_t i = 0; i < names.size(); ++i) {
    const FieldInfo* info = FindTaskField(names[i]);
    if (info == nullptr || !Groupable(info->field)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "group_by[", i, "]: \"", names[i],
          "\" is not a field tasks can be grouped by (state, result_code, "
          "type, priority, tenant_id, executor_id)"));
    }
    if (std::find(fields.begin(), fields.end(), info->field) != fields.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("group_by[", i, "]: \"", names[i], "\" is named twice"));
    }
    fields.push_back(info->field);
  }
  return fields;
}

GroupKey GroupKeyOf(const Task& task, const std::vector<TaskField>& group_by) {
  GroupKey key;
  key.reserve(group_by.size());
  for (TaskField field : group_by) key.push_back(FieldValueOf(task, field));
  return key;
}

std::string GroupValueText(TaskField field, const FieldValue& value) {
  if (const std::string* text = std::get_if<std::string>(&value)) {
    return *text;
  }
  const int64_t number = std::get<int64_t>(value);
  if (number == 0) return "";
  switch (InfoOf(field).kind) {
    case FieldKind::kState:
      return Task::State_IsValid(static_cast<int>(number))
                 ? Task::State_Name(static_cast<Task::State>(number))
                 : absl::StrCat(number);
    case FieldKind::kResultCode:
      return Task::ResultCode_IsValid(static_cast<int>(number))
                 ? Task::ResultCode_Name(static_cast<Task::ResultCode>(number))
                 : absl::StrCat(number);
    case FieldKind::kPriority:
      return std::string(PriorityName(number));
    default:
      return absl::StrCat(number);
  }
}

namespace {

void CollectFields(const FilterExpr& expr, std::set<TaskField>* fields) {
  switch (expr.kind) {
    case FilterExpr::Kind::kCompare:
    case FilterExpr::Kind::kPresent:
      fields->insert(expr.field);
      return;
    default:
      for (const FilterExpr& child : expr.children) {
        CollectFields(child, fields);
      }
  }
}

}  // namespace

std::set<TaskField> FieldsOf(const FilterExpr* filter) {
  std::set<TaskField> fields;
  if (filter != nullptr) CollectFields(*filter, &fields);
  return fields;
}

void TaskCounts::AddToGroup(const GroupKey& key, int64_t delta) {
  auto [it, inserted] = groups_.try_emplace(key, 0);
  it->second += delta;
  if (it->second == 0) groups_.erase(it);
}

}  // namespace taskd
