#include "server/task_lifecycle.h"

#include "absl/strings/str_cat.h"
#include "base/error_details.h"
#include "query/task_fields.h"

namespace taskd {
namespace {

using tasks::v1::Task;

// The states a move may start from.
bool Allowed(Move move, Task::State state) {
  switch (move) {
    case Move::kAssign:
      return state == Task::enqueued;
    case Move::kStart:
      return state == Task::assigned;
    case Move::kPause:
      return state == Task::started;
    case Move::kResume:
      return state == Task::paused;
    case Move::kComplete:
      return state == Task::assigned || state == Task::started ||
             state == Task::paused;
    case Move::kCancel:
      return state != Task::completed;
  }
  return false;
}

const char* AllowedFrom(Move move) {
  switch (move) {
    case Move::kAssign:
      return "enqueued";
    case Move::kStart:
      return "assigned";
    case Move::kPause:
      return "started";
    case Move::kResume:
      return "paused";
    case Move::kComplete:
      return "assigned, started or paused";
    case Move::kCancel:
      return "any state but completed";
  }
  return "";
}

}  // namespace

absl::string_view MoveName(Move move) {
  switch (move) {
    case Move::kAssign:
      return "assign";
    case Move::kStart:
      return "start";
    case Move::kPause:
      return "pause";
    case Move::kResume:
      return "resume";
    case Move::kComplete:
      return "complete";
    case Move::kCancel:
      return "cancel";
  }
  return "?";
}

absl::StatusOr<Task> ApplyMove(const Task& current, Move move,
                               const MoveArgs& args, absl::Time now) {
  if (move == Move::kAssign && args.executor_id.empty()) {
    return WithFieldViolation(
        WithReason(
            absl::InvalidArgumentError("executor_id: is required to assign"),
            "INVALID_FIELD", {{"field", "executor_id"}}),
        "executor_id", "is required to assign");
  }
  if (move == Move::kComplete) {
    switch (args.result_code) {
      case Task::ok:
      case Task::error:
      case Task::warning:
      case Task::timedout:
      case Task::abandoned:
        break;
      case Task::cancelled:
        return WithFieldViolation(
            WithReason(absl::InvalidArgumentError(
                           "result_code: use CancelTask to cancel a task"),
                       "INVALID_FIELD", {{"field", "result_code"}}),
            "result_code", "cancelled is CancelTask's");
      default:
        return WithFieldViolation(
            WithReason(absl::InvalidArgumentError(
                           "result_code: is required: one of ok, error, "
                           "warning, timedout, abandoned"),
                       "INVALID_FIELD", {{"field", "result_code"}}),
            "result_code", "is required");
    }
  }
  if (!Allowed(move, current.state())) {
    return WithReason(
        absl::FailedPreconditionError(absl::StrCat(
            "cannot ", MoveName(move), " task \"", current.id(), "\": it is ",
            Task::State_Name(current.state()), "; ", MoveName(move),
            " is allowed from ", AllowedFrom(move))),
        "INVALID_TRANSITION",
        {{"task_id", current.id()},
         {"state", Task::State_Name(current.state())},
         {"move", MoveName(move)}});
  }
  Task next = current;
  google::protobuf::Timestamp stamp = ToTimestamp(now);
  *next.mutable_updated_at() = stamp;
  switch (move) {
    case Move::kAssign:
      next.set_state(Task::assigned);
      next.set_executor_id(args.executor_id);
      break;
    case Move::kStart:
      next.set_state(Task::started);
      if (!next.has_started_at()) *next.mutable_started_at() = stamp;
      break;
    case Move::kPause:
      next.set_state(Task::paused);
      break;
    case Move::kResume:
      next.set_state(Task::started);
      break;
    case Move::kComplete:
      next.set_state(Task::completed);
      next.set_result_code(args.result_code);
      *next.mutable_completed_at() = stamp;
      break;
    case Move::kCancel:
      next.set_state(Task::completed);
      next.set_result_code(Task::cancelled);
      *next.mutable_completed_at() = stamp;
      break;
  }
  return next;
}

}  // namespace taskd
