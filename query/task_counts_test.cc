#include "query/task_counts.h"

#include <gtest/gtest.h>

namespace taskd {
namespace {

using tasks::v1::Task;

Task Make(Task::State state, Task::ResultCode result, std::string tenant) {
  Task task;
  task.set_state(state);
  task.set_result_code(result);
  task.set_tenant_id(std::move(tenant));
  task.set_priority("aboveNormal");
  return task;
}

TEST(ParseGroupByTest, AcceptsProtoAndJsonNames) {
  absl::StatusOr<std::vector<TaskField>> fields =
      ParseGroupBy({"state", "result_code"});
  ASSERT_TRUE(fields.ok()) << fields.status();
  EXPECT_EQ(*fields, (std::vector<TaskField>{TaskField::kState,
                                             TaskField::kResultCode}));
  EXPECT_TRUE(ParseGroupBy({}).ok());
  EXPECT_TRUE(ParseGroupBy({"tenant_id", "executor_id"}).ok());
}

TEST(ParseGroupByTest, RefusesWhatCannotBeGrouped) {
  absl::StatusOr<std::vector<TaskField>> unknown = ParseGroupBy({"sate"});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("group_by[0]"), std::string::npos)
      << unknown.status();
  // A field with a value per task is not a grouping.
  absl::StatusOr<std::vector<TaskField>> id = ParseGroupBy({"state", "id"});
  EXPECT_NE(id.status().message().find("group_by[1]: \"id\""),
            std::string::npos)
      << id.status();
  EXPECT_FALSE(ParseGroupBy({"state", "state"}).ok());
  EXPECT_FALSE(ParseGroupBy({"state", "type", "priority"}).ok());
}

TEST(GroupValueTextTest, SpellsValuesAsTheTaskJsonDoes) {
  EXPECT_EQ(GroupValueText(TaskField::kState, int64_t{Task::started}),
            "started");
  EXPECT_EQ(GroupValueText(TaskField::kResultCode, int64_t{Task::timedout}),
            "timedout");
  EXPECT_EQ(GroupValueText(TaskField::kResultCode, int64_t{0}), "");
  EXPECT_EQ(GroupValueText(TaskField::kPriority,
                           FieldValueOf(Make(Task::enqueued,
                                             Task::RESULT_CODE_UNSPECIFIED, ""),
                                        TaskField::kPriority)),
            "aboveNormal");
  EXPECT_EQ(GroupValueText(TaskField::kTenantId, std::string("t1")), "t1");
}

TEST(TaskCountsTest, MovesATaskBetweenGroupsAndDropsEmptyOnes) {
  TaskCounts counts({TaskField::kState});
  Task enqueued = Make(Task::enqueued, Task::RESULT_CODE_UNSPECIFIED, "a");
  Task done = Make(Task::completed, Task::ok, "a");
  counts.Add(enqueued, +1);
  counts.Add(enqueued, +1);
  counts.Add(enqueued, -1);
  counts.Add(done, +1);
  ASSERT_EQ(counts.groups().size(), 2u);
  EXPECT_EQ(counts.groups().at({int64_t{Task::enqueued}}), 1);
  counts.Add(enqueued, -1);
  EXPECT_EQ(counts.groups().count({int64_t{Task::enqueued}}), 0u);
  EXPECT_EQ(counts.groups().at({int64_t{Task::completed}}), 1);
}

TEST(TaskCountsTest, NoGroupByCountsEverythingInOneGroup) {
  TaskCounts total({});
  total.Add(Make(Task::enqueued, Task::RESULT_CODE_UNSPECIFIED, "a"), 1);
  total.Add(Make(Task::completed, Task::error, "b"), 1);
  ASSERT_EQ(total.groups().size(), 1u);
  EXPECT_EQ(total.groups().begin()->first, GroupKey{});
  EXPECT_EQ(total.groups().begin()->second, 2);
}

TEST(FieldsOfTest, NamesEveryFieldAFilterReads) {
  auto filter = ParseFilter(
      "state = \"started\" AND (tenant_id = \"a\" OR NOT executor_id:*)");
  ASSERT_TRUE(filter.ok());
  EXPECT_EQ(FieldsOf(filter->get()),
            (std::set<TaskField>{TaskField::kState, TaskField::kTenantId,
                                 TaskField::kExecutorId}));
  EXPECT_TRUE(FieldsOf(nullptr).empty());
}

}  // namespace
}  // namespace taskd
