// libFuzzer target for ParseFilter and Matches. Besides "no crash, no
// sanitizer report", it checks properties that must hold for any input:
//   - an error is InvalidArgument, "filter: column N: ..." with N inside the
//     text (or one past its end);
//   - a parsed filter evaluates without crashing, NOT inverts it, and AND with
//     a tenant scope behaves as a conjunction.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "absl/strings/numbers.h"
#include "query/filter.h"
#include "query/task_fields.h"
#include "tasks/v1/tasks.pb.h"

namespace {

using tasks::v1::Task;

[[noreturn]] void Fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "filter_fuzzer: %s: %.*s\n", what,
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

const Task& FullTask() {
  static const Task* task = [] {
    auto* t = new Task;
    t->set_id("t-0001");
    t->set_uuid("6f9619ff-8b86-d011-b42d-00cf4fc964ff");
    t->set_type("backup");
    t->set_state(Task::completed);
    t->set_result_code(Task::warning);
    t->set_priority("aboveNormal");
    t->set_policy_id("policy-1");
    t->set_resource_id("res-1");
    t->set_executor_id("agent-7");
    taskd::SetTimestampMicros(1'793'000'000'000'000, t->mutable_enqueued_at());
    taskd::SetTimestampMicros(1'793'000'300'000'000, t->mutable_started_at());
    taskd::SetTimestampMicros(1'793'000'900'000'000, t->mutable_completed_at());
    taskd::SetTimestampMicros(-1, t->mutable_updated_at());
    t->set_tenant_id("tenant-a");
    t->set_revision(-42);
    return t;
  }();
  return *task;
}

void CheckError(const absl::Status& status, size_t size) {
  if (status.code() != absl::StatusCode::kInvalidArgument) {
    Fail("error is not InvalidArgument", status.ToString());
  }
  constexpr std::string_view kPrefix = "filter: column ";
  const std::string message(status.message());
  if (message.compare(0, kPrefix.size(), kPrefix) != 0) {
    Fail("error lacks the prefix", message);
  }
  const size_t colon = message.find(':', kPrefix.size());
  uint64_t column = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(absl::string_view(message).substr(
                            kPrefix.size(), colon - kPrefix.size()),
                        &column) ||
      column < 1 || column > size + 1) {
    Fail("bad column in error", message);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = taskd::ParseFilter(text);
  if (!parsed.ok()) {
    CheckError(parsed.status(), size);
    return 0;
  }
  const std::shared_ptr<const taskd::FilterExpr>& filter = *parsed;
  auto scope =
      taskd::EqualsFilter(taskd::TaskField::kTenantId, std::string("tenant-a"));
  auto scoped = taskd::AndFilters(filter, scope);
  taskd::FilterExpr negated;
  negated.kind = taskd::FilterExpr::Kind::kNot;
  if (filter != nullptr) negated.children.push_back(*filter);

  Task other = FullTask();
  other.set_tenant_id("tenant-b");
  for (const Task* task : {&FullTask(), &Task::default_instance(),
                           static_cast<const Task*>(&other)}) {
    const bool matches = taskd::Matches(filter.get(), *task);
    if (filter == nullptr && !matches) Fail("null filter rejected", text);
    if (filter != nullptr && taskd::Matches(&negated, *task) == matches) {
      Fail("NOT does not invert", text);
    }
    const bool in_scope = taskd::Matches(scope.get(), *task);
    if (taskd::Matches(scoped.get(), *task) != (matches && in_scope)) {
      Fail("AndFilters is not a conjunction", text);
    }
  }
  return 0;
}
