#include "server/task_lifecycle.h"

#include <algorithm>

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

// The lease of a started or paused task after a sign of life at `now`.
void RenewLease(Task* task, absl::Time now) {
  absl::Duration interval = DurationOf(task->heart_beat_interval());
  if (interval > absl::ZeroDuration()) {
    *task->mutable_lease_expires_at() =
        ToTimestamp(now + kHeartbeatGrace * interval);
  } else {
    task->clear_lease_expires_at();
  }
}

// The deadline of a task that is not enqueued: the end of its lease and of
// its exec_timeout, whichever comes first; none once completed.
void RefreshDeadline(Task* task) {
  task->clear_deadline();
  if (!Leased(*task)) return;
  absl::Time deadline = absl::InfiniteFuture();
  if (task->has_lease_expires_at()) {
    deadline = TimeOf(task->lease_expires_at());
  }
  absl::Duration exec = DurationOf(task->exec_timeout());
  if (task->state() != Task::assigned && exec > absl::ZeroDuration() &&
      task->has_started_at()) {
    deadline = std::min(deadline, TimeOf(task->started_at()) + exec);
  }
  if (deadline != absl::InfiniteFuture()) {
    *task->mutable_deadline() = ToTimestamp(deadline);
  }
}

void Finish(Task* task, Task::ResultCode result, absl::Time now) {
  task->set_state(Task::completed);
  task->set_result_code(result);
  *task->mutable_completed_at() = ToTimestamp(now);
  task->clear_lease_expires_at();
  task->clear_deadline();
}

}  // namespace

bool Leased(const Task& task) {
  return task.state() == Task::assigned || task.state() == Task::started ||
         task.state() == Task::paused;
}

void SetQueueDeadline(Task* task, absl::Time enqueued) {
  absl::Duration queue = DurationOf(task->queue_timeout());
  if (queue > absl::ZeroDuration()) {
    *task->mutable_deadline() = ToTimestamp(enqueued + queue);
  } else {
    task->clear_deadline();
  }
}

Task ExtendLease(const Task& current, absl::Time now) {
  if ((current.state() != Task::started && current.state() != Task::paused) ||
      DurationOf(current.heart_beat_interval()) <= absl::ZeroDuration()) {
    return current;
  }
  Task next = current;
  RenewLease(&next, now);
  RefreshDeadline(&next);
  return next;
}

bool HeartbeatLeased(const Task& task) {
  return (task.state() == Task::started || task.state() == Task::paused) &&
         DurationOf(task.heart_beat_interval()) > absl::ZeroDuration();
}

Task CheckpointLease(const Task& current, absl::Time lease_end,
                     absl::Time next_check) {
  Task next = current;
  *next.mutable_lease_expires_at() = ToTimestamp(lease_end);
  absl::Time deadline = next_check;
  absl::Duration exec = DurationOf(current.exec_timeout());
  if (exec > absl::ZeroDuration() && current.has_started_at()) {
    deadline = std::min(deadline, TimeOf(current.started_at()) + exec);
  }
  *next.mutable_deadline() = ToTimestamp(deadline);
  return next;
}

absl::StatusOr<Task> FireTimeout(const Task& current, absl::Time now,
                                 absl::Time lease_end) {
  auto not_due = [&] {
    return WithReason(absl::FailedPreconditionError(absl::StrCat(
                          "task \"", current.id(), "\" has nothing due")),
                      "NOT_DUE");
  };
  Task next = current;
  *next.mutable_updated_at() = ToTimestamp(now);
  if (current.state() == Task::enqueued) {
    if (!current.has_deadline() || TimeOf(current.deadline()) > now) {
      return not_due();
    }
    next.set_timeout(tasks::v1::queue_timeout);
    Finish(&next, Task::timedout, now);
    return next;
  }
  if (!Leased(current)) {  // completed: no deadline should be left
    if (!current.has_deadline()) return not_due();
    next.clear_deadline();
    return next;
  }
  absl::Duration exec = DurationOf(current.exec_timeout());
  if (current.state() != Task::assigned && exec > absl::ZeroDuration() &&
      current.has_started_at() && TimeOf(current.started_at()) + exec <= now) {
    next.set_timeout(tasks::v1::exec_timeout);
    Finish(&next, Task::timedout, now);
    return next;
  }
  if (lease_end == absl::InfinitePast() || current.state() == Task::assigned) {
    lease_end = current.has_lease_expires_at()
                    ? TimeOf(current.lease_expires_at())
                    : absl::InfiniteFuture();
  }
  if (lease_end > now) return not_due();
  // The lease ended: the assignment is void.
  next.set_timeout(current.state() == Task::assigned
                       ? tasks::v1::ack_timeout
                       : tasks::v1::heartbeat_timeout);
  if (current.cancel_requested()) {
    Finish(&next, Task::cancelled, now);
  } else if (current.assign_count() < std::max(1, current.max_assign_count())) {
    next.set_state(Task::enqueued);
    next.clear_executor_id();
    next.clear_assigned_at();
    next.clear_started_at();
    next.clear_progress();
    next.clear_lease_expires_at();
    SetQueueDeadline(&next, now);
  } else {
    Finish(&next, Task::abandoned, now);
  }
  return next;
}

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
        if (current.cancel_requested()) break;  // the executor obeys
        return WithFieldViolation(
            WithReason(absl::InvalidArgumentError(
                           "result_code: cancelled is for a task whose "
                           "cancellation was requested; use CancelTask to "
                           "cancel a task"),
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
  next.clear_timeout();
  switch (move) {
    case Move::kAssign: {
      next.set_state(Task::assigned);
      next.set_executor_id(args.executor_id);
      next.set_assign_count(current.assign_count() + 1);
      *next.mutable_assigned_at() = stamp;
      absl::Duration ack = DurationOf(current.ack_timeout());
      if (ack > absl::ZeroDuration()) {
        *next.mutable_lease_expires_at() = ToTimestamp(now + ack);
      } else {
        next.clear_lease_expires_at();
      }
      break;
    }
    case Move::kStart:
      next.set_state(Task::started);
      if (!next.has_started_at()) *next.mutable_started_at() = stamp;
      RenewLease(&next, now);
      break;
    case Move::kPause:
      next.set_state(Task::paused);
      RenewLease(&next, now);
      break;
    case Move::kResume:
      next.set_state(Task::started);
      RenewLease(&next, now);
      break;
    case Move::kComplete:
      Finish(&next, args.result_code, now);
      break;
    case Move::kCancel:
      if (current.state() == Task::enqueued || args.force) {
        Finish(&next, Task::cancelled, now);
      } else {
        next.set_cancel_requested(true);
      }
      break;
  }
  if (next.state() != Task::enqueued) RefreshDeadline(&next);
  return next;
}

}  // namespace taskd
