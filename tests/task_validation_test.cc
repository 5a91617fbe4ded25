// What CreateTask and UpdateTask accept and reject, and how they say so.
#include "server/task_validation.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace taskd {
namespace {

using tasks::v1::Task;
using ::testing::HasSubstr;

Task Minimal() {
  Task task;
  task.set_type("backup");
  return task;
}

void ExpectInvalid(const absl::Status& status, const std::string& field) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr(field));
}

TEST(TaskValidationTest, UuidShape) {
  EXPECT_TRUE(IsUuid("123e4567-e89b-42d3-a456-426614174000"));
  EXPECT_TRUE(IsUuid("123E4567-E89B-42D3-A456-426614174000"));
  EXPECT_FALSE(IsUuid("123e4567e89b42d3a456426614174000"));
  EXPECT_FALSE(IsUuid("123e4567-e89b-42d3-a456-42661417400g"));
  EXPECT_FALSE(IsUuid(""));
  const absl::Time now = absl::FromUnixMicros(1'800'000'000'123'456);
  std::string fresh = NewUuid(now);
  EXPECT_TRUE(IsUuid(fresh)) << fresh;
  EXPECT_EQ(fresh[14], '7');  // version 7
  EXPECT_NE(std::string("89ab").find(fresh[19]), std::string::npos);
  // The first 48 bits are the Unix milliseconds.
  EXPECT_EQ(fresh.substr(0, 13), "01a3185c-507b");
  EXPECT_NE(NewUuid(now), fresh);
}

// Proves that ids made later sort later (time-ordered inserts into the id
// and uuid indexes), down to the sub-millisecond fraction.
TEST(TaskValidationTest, NewUuidsSortByTime) {
  absl::Time t = absl::FromUnixSeconds(1'800'000'000);
  std::string previous = NewUuid(t);
  for (int i = 0; i < 1000; ++i) {
    t += absl::Microseconds(1 + i % 700);
    std::string next = NewUuid(t);
    ASSERT_LT(previous, next) << "at step " << i;
    previous = next;
  }
}

TEST(TaskValidationTest, MinimalTaskGetsNormalPriority) {
  absl::StatusOr<Task> task = ValidateNewTask(Minimal());
  ASSERT_TRUE(task.ok());
  EXPECT_EQ(task->priority(), "normal");
}

TEST(TaskValidationTest, UuidFieldsAreCheckedAndLowerCased) {
  Task task = Minimal();
  task.set_tenant_id("AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE");
  absl::StatusOr<Task> ok = ValidateNewTask(task);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->tenant_id(), "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee");
  for (auto setter :
       {&Task::set_policy_id<const char*>, &Task::set_resource_id<const char*>,
        &Task::set_tenant_id<const char*>}) {
    Task bad = Minimal();
    (bad.*setter)("not-a-uuid");
    ExpectInvalid(ValidateNewTask(bad).status(), "not a UUID");
  }
}

TEST(TaskValidationTest, ServerOwnedFieldsAreRejectedByName) {
  struct Case {
    void (*set)(Task*);
    const char* field;
  } cases[] = {
      {[](Task* t) { t->set_state(Task::started); }, "task.state"},
      {[](Task* t) { t->set_result_code(Task::ok); }, "task.result_code"},
      {[](Task* t) { t->set_executor_id("x"); }, "task.executor_id"},
      {[](Task* t) { t->mutable_enqueued_at()->set_seconds(1); },
       "task.enqueuedAt"},
      {[](Task* t) { t->mutable_started_at()->set_seconds(1); },
       "task.startedAt"},
      {[](Task* t) { t->mutable_completed_at()->set_seconds(1); },
       "task.completedAt"},
      {[](Task* t) { t->mutable_updated_at()->set_seconds(1); },
       "task.updatedAt"},
      {[](Task* t) { t->set_uuid("123e4567-e89b-42d3-a456-426614174000"); },
       "task.uuid"},
  };
  for (const Case& c : cases) {
    Task task = Minimal();
    c.set(&task);
    ExpectInvalid(ValidateNewTask(task).status(), c.field);
  }
}

TEST(TaskValidationTest, TypeIdAndPriorityLimits) {
  Task no_type;
  ExpectInvalid(ValidateNewTask(no_type).status(), "task.type");
  Task long_type = Minimal();
  long_type.set_type(std::string(kMaxTypeLength + 1, 'x'));
  ExpectInvalid(ValidateNewTask(long_type).status(), "task.type");
  Task control = Minimal();
  control.set_type("back\nup");
  ExpectInvalid(ValidateNewTask(control).status(), "task.type");
  Task bad_id = Minimal();
  bad_id.set_id("has space");
  ExpectInvalid(ValidateNewTask(bad_id).status(), "task.id");
  Task long_id = Minimal();
  long_id.set_id(std::string(kMaxIdLength + 1, 'a'));
  ExpectInvalid(ValidateNewTask(long_id).status(), "task.id");
  Task bad_priority = Minimal();
  bad_priority.set_priority("urgent");
  ExpectInvalid(ValidateNewTask(bad_priority).status(), "task.priority");
  for (const char* p :
       {"low", "belowNormal", "normal", "aboveNormal", "high"}) {
    Task task = Minimal();
    task.set_priority(p);
    EXPECT_TRUE(ValidateNewTask(task).ok()) << p;
  }
}

TEST(TaskValidationTest, UpdateWritesOnlyMaskedDescriptiveFields) {
  Task current = Minimal();
  current.set_id("t1");
  current.set_priority("normal");
  Task patch;
  patch.set_priority("high");
  patch.set_type("restore");
  google::protobuf::FieldMask mask;
  mask.add_paths("priority");
  absl::StatusOr<Task> next = ApplyUpdate(current, patch, mask);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->priority(), "high");
  EXPECT_EQ(next->type(), "backup");
  google::protobuf::FieldMask json_names;
  json_names.add_paths("policyId");
  patch.set_policy_id("123e4567-e89b-42d3-a456-426614174000");
  EXPECT_EQ(ApplyUpdate(current, patch, json_names)->policy_id(),
            "123e4567-e89b-42d3-a456-426614174000");
}

TEST(TaskValidationTest, UpdateRejectsServerOwnedPaths) {
  Task current = Minimal();
  for (const char* path : {"state", "executor_id", "result_code", "enqueuedAt",
                           "id", "uuid", "tenant_id", "startedAt"}) {
    google::protobuf::FieldMask mask;
    mask.add_paths(path);
    ExpectInvalid(ApplyUpdate(current, Task(), mask).status(), path);
  }
  Task patch;
  patch.set_state(Task::started);
  ExpectInvalid(ApplyUpdate(current, patch, {}).status(), "task.state");
  ExpectInvalid(ApplyUpdate(current, Task(), {}).status(), "update_mask");
}

}  // namespace
}  // namespace taskd
