// The task state machine, as pure functions of (task, move, time).
//
//   enqueued --assign--> assigned --start--> started --pause--> paused
//                                              ^------resume------'
//   assigned | started | paused --complete(result)--> completed
//   any state but completed     --cancel-----------> completed (cancelled)
//
// completed is final. Every move sets updated_at; start sets started_at the
// first time; complete and cancel set completed_at.
#ifndef TASKD_SERVER_TASK_LIFECYCLE_H_
#define TASKD_SERVER_TASK_LIFECYCLE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd {

enum class Move { kAssign, kStart, kPause, kResume, kComplete, kCancel };

// "assign", "start", ...
absl::string_view MoveName(Move move);

struct MoveArgs {
  // For kAssign: required.
  std::string executor_id;
  // For kComplete: ok, error, warning, timedout or abandoned.
  tasks::v1::Task::ResultCode result_code =
      tasks::v1::Task::RESULT_CODE_UNSPECIFIED;
};

// The task after `move`, or FailedPrecondition naming the current state and
// the move when the state does not allow it, or InvalidArgument when `args`
// are wrong for the move.
absl::StatusOr<tasks::v1::Task> ApplyMove(const tasks::v1::Task& current,
                                          Move move, const MoveArgs& args,
                                          absl::Time now);

}  // namespace taskd

#endif  // TASKD_SERVER_TASK_LIFECYCLE_H_
