// LeaseTokens: a token names one assignment of one task and nothing else.
#include "server/lease_token.h"

#include "base/error_details.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace taskd {
namespace {

using tasks::v1::Task;
using ::testing::HasSubstr;

Task Leased(int assignment, Task::State state = Task::started) {
  Task task;
  task.set_id("t1");
  task.set_uuid("0b6f6c4e-2f1d-4a8e-9c3b-5d7e8f9a0b1c");
  task.set_state(state);
  task.set_assign_count(assignment);
  task.set_executor_id("agent-1");
  return task;
}

TEST(LeaseTokenTest, ATokenIsValidForItsAssignmentOnly) {
  LeaseTokens leases("secret");
  const std::string first = leases.Issue(Leased(1));
  EXPECT_TRUE(leases.Check(Leased(1), first).ok());
  EXPECT_TRUE(leases.Check(Leased(1, Task::assigned), first).ok());
  EXPECT_TRUE(leases.Check(Leased(1, Task::paused), first).ok());
  // The task was assigned again: the first token is lost.
  absl::Status lost = leases.Check(Leased(2), first);
  EXPECT_EQ(lost.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(lost), "LEASE_LOST");
  EXPECT_THAT(lost.message(), HasSubstr("assignment 2"));
  // Re-queued or completed under the same assignment count: lost too.
  EXPECT_EQ(ReasonOf(leases.Check(Leased(1, Task::enqueued), first)),
            "LEASE_LOST");
  EXPECT_EQ(ReasonOf(leases.Check(Leased(1, Task::completed), first)),
            "LEASE_LOST");
  EXPECT_NE(leases.Issue(Leased(2)), first);
}

TEST(LeaseTokenTest, ForgedOrForeignTokensAreInvalid) {
  LeaseTokens leases("secret");
  const std::string token = leases.Issue(Leased(3));
  Task other = Leased(3);
  other.set_uuid("11111111-2f1d-4a8e-9c3b-5d7e8f9a0b1c");
  for (const std::string& bad :
       {leases.Issue(other), LeaseTokens("another secret").Issue(Leased(3)),
        std::string("3.") + std::string(22, 'A'), std::string("nonsense"),
        std::string("-1.abc"), std::string(".") + token,
        std::string(100, '7')}) {
    absl::Status status = leases.Check(Leased(3), bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(ReasonOf(status), "INVALID_LEASE_TOKEN") << bad;
    EXPECT_THAT(status.message(), HasSubstr("lease_token")) << bad;
  }
}

TEST(LeaseTokenTest, TokensSurviveARestartWithTheSameSecret) {
  EXPECT_EQ(LeaseTokens("secret").Issue(Leased(1)),
            LeaseTokens("secret").Issue(Leased(1)));
  EXPECT_TRUE(LeaseTokens("secret")
                  .Check(Leased(1), LeaseTokens("secret").Issue(Leased(1)))
                  .ok());
}

TEST(LeaseTokenTest, AnEmptyTokenIsRequiredOnlyForALeasedTask) {
  LeaseTokens leases("secret");
  absl::Status missing = leases.Check(Leased(1), "");
  EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.message(), HasSubstr("is required"));
  // Not leased: the move's own rules answer (INVALID_TRANSITION).
  EXPECT_TRUE(leases.Check(Leased(0, Task::enqueued), "").ok());
  // Assigned before taskd had leases (assign_count 0): no token to give.
  EXPECT_TRUE(leases.Check(Leased(0, Task::started), "").ok());
}

}  // namespace
}  // namespace taskd
