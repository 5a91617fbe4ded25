// Every legal and every illegal move of the task state machine.
#include "server/task_lifecycle.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace taskd {
namespace {

using tasks::v1::Task;
using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

Task InState(Task::State state) {
  Task task;
  task.set_id("t1");
  task.set_state(state);
  return task;
}

MoveArgs ArgsFor(Move move) {
  MoveArgs args;
  if (move == Move::kAssign) args.executor_id = "agent-1";
  if (move == Move::kComplete) args.result_code = Task::ok;
  return args;
}

struct Transition {
  Task::State from;
  Move move;
  Task::State to;  // STATE_UNSPECIFIED: not allowed
};

TEST(TaskLifecycleTest, EveryStateAndMove) {
  const Task::State states[] = {Task::enqueued, Task::assigned, Task::started,
                                Task::paused, Task::completed};
  const Move moves[] = {Move::kAssign, Move::kStart,    Move::kPause,
                        Move::kResume, Move::kComplete, Move::kCancel};
  auto expected = [](Task::State from, Move move) -> Task::State {
    switch (move) {
      case Move::kAssign:
        return from == Task::enqueued ? Task::assigned
                                      : Task::STATE_UNSPECIFIED;
      case Move::kStart:
        return from == Task::assigned ? Task::started : Task::STATE_UNSPECIFIED;
      case Move::kPause:
        return from == Task::started ? Task::paused : Task::STATE_UNSPECIFIED;
      case Move::kResume:
        return from == Task::paused ? Task::started : Task::STATE_UNSPECIFIED;
      case Move::kComplete:
        return from == Task::assigned || from == Task::started ||
                       from == Task::paused
                   ? Task::completed
                   : Task::STATE_UNSPECIFIED;
      case Move::kCancel:
        // A held task is only asked to cancel (cancel_requested).
        if (from == Task::completed) return Task::STATE_UNSPECIFIED;
        return from == Task::enqueued ? Task::completed : from;
    }
    return Task::STATE_UNSPECIFIED;
  };
  int legal = 0;
  for (Task::State from : states) {
    for (Move move : moves) {
      SCOPED_TRACE(std::string(MoveName(move)) + " from " +
                   Task::State_Name(from));
      absl::StatusOr<Task> next =
          ApplyMove(InState(from), move, ArgsFor(move), kNow);
      Task::State want = expected(from, move);
      if (want == Task::STATE_UNSPECIFIED) {
        ASSERT_FALSE(next.ok());
        EXPECT_EQ(next.status().code(), absl::StatusCode::kFailedPrecondition);
        EXPECT_THAT(next.status().message(), HasSubstr(Task::State_Name(from)));
        EXPECT_THAT(next.status().message(), HasSubstr(MoveName(move)));
      } else {
        ++legal;
        ASSERT_TRUE(next.ok()) << next.status();
        EXPECT_EQ(next->state(), want);
        EXPECT_EQ(next->updated_at().seconds(), 1'800'000'000);
      }
    }
  }
  EXPECT_EQ(legal, 1 + 1 + 1 + 1 + 3 + 4);
}

TEST(TaskLifecycleTest, AssignSetsExecutorAndNeedsOne) {
  absl::StatusOr<Task> next = ApplyMove(InState(Task::enqueued), Move::kAssign,
                                        ArgsFor(Move::kAssign), kNow);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->executor_id(), "agent-1");
  EXPECT_EQ(ApplyMove(InState(Task::enqueued), Move::kAssign, {}, kNow)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TaskLifecycleTest, StartSetsStartedAtOnceAndCompleteSetsCompletedAt) {
  absl::StatusOr<Task> started =
      ApplyMove(InState(Task::assigned), Move::kStart, {}, kNow);
  ASSERT_TRUE(started.ok());
  EXPECT_EQ(started->started_at().seconds(), 1'800'000'000);
  absl::StatusOr<Task> paused =
      ApplyMove(*started, Move::kPause, {}, kNow + absl::Seconds(5));
  absl::StatusOr<Task> resumed =
      ApplyMove(*paused, Move::kResume, {}, kNow + absl::Seconds(9));
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(resumed->started_at().seconds(), 1'800'000'000);
  MoveArgs args;
  args.result_code = Task::warning;
  absl::StatusOr<Task> completed =
      ApplyMove(*resumed, Move::kComplete, args, kNow + absl::Seconds(20));
  ASSERT_TRUE(completed.ok());
  EXPECT_EQ(completed->result_code(), Task::warning);
  EXPECT_EQ(completed->completed_at().seconds(), 1'800'000'020);
}

TEST(TaskLifecycleTest, CompleteNeedsAResultOtherThanCancelled) {
  for (Task::ResultCode code :
       {Task::RESULT_CODE_UNSPECIFIED, Task::cancelled}) {
    MoveArgs args;
    args.result_code = code;
    EXPECT_EQ(ApplyMove(InState(Task::started), Move::kComplete, args, kNow)
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument);
  }
  for (Task::ResultCode code : {Task::ok, Task::error, Task::warning,
                                Task::timedout, Task::abandoned}) {
    MoveArgs args;
    args.result_code = code;
    absl::StatusOr<Task> next =
        ApplyMove(InState(Task::started), Move::kComplete, args, kNow);
    ASSERT_TRUE(next.ok());
    EXPECT_EQ(next->result_code(), code);
  }
}

TEST(TaskLifecycleTest, CancelMarksCancelled) {
  absl::StatusOr<Task> next =
      ApplyMove(InState(Task::enqueued), Move::kCancel, {}, kNow);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->state(), Task::completed);
  EXPECT_EQ(next->result_code(), Task::cancelled);
  EXPECT_TRUE(next->has_completed_at());
}

}  // namespace
}  // namespace taskd
