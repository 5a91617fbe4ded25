// The task state machine, as pure functions of (task, move, time).
//
//   enqueued --assign--> assigned --start--> started --pause--> paused
//      ^                    |                  ^------resume------'
//      |                    |                  |                  |
//      '-- taskd: a void assignment (missed ack or heartbeat) ----'
//   assigned | started | paused --complete(result)--> completed
//   enqueued                    --cancel-----------> completed (cancelled)
//   assigned | started | paused --cancel-----------> cancel_requested set
//                               --cancel(force)----> completed (cancelled)
//   any state but completed     --taskd: timeout---> completed (timedout,
//                                                    abandoned, cancelled)
//
// completed is final. Every move sets updated_at and clears `timeout`;
// start from assigned sets started_at if unset; complete and cancel set
// completed_at.
//
// Leases and timeouts (the Task fields of the same names):
//   assign    assign_count + 1, assigned_at = now, the lease ends at
//             now + ack_timeout (none if 0).
//   start, pause, resume, heartbeat
//             the lease ends at now + kHeartbeatGrace * heart_beat_interval
//             (none if 0).
//   deadline  the earliest of the timeouts that apply in the state:
//             enqueued: queue_timeout after it was (re-)enqueued;
//             assigned: the lease's end; started, paused: the lease's end
//             and started_at + exec_timeout.
//   FireTimeout, at the deadline:
//             enqueued -> completed/timedout (queue_timeout);
//             started|paused past exec_timeout -> completed/timedout;
//             a lease ended (ack_timeout, heartbeat_timeout) -> the
//             assignment is void: completed/cancelled if cancel_requested,
//             else enqueued again (executor, assigned_at, started_at,
//             progress and lease cleared) while assign_count <
//             max_assign_count, else completed/abandoned.
#ifndef TASKD_SERVER_TASK_LIFECYCLE_H_
#define TASKD_SERVER_TASK_LIFECYCLE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd {

enum class Move { kAssign, kStart, kPause, kResume, kComplete, kCancel };

// A started or paused task's lease ends this many heartbeat intervals after
// the last sign of life (start, pause, resume or heartbeat).
inline constexpr int kHeartbeatGrace = 3;

// "assign", "start", ...
absl::string_view MoveName(Move move);

struct MoveArgs {
  // For kAssign: required.
  std::string executor_id;
  // For kComplete: ok, error, warning, timedout or abandoned.
  tasks::v1::Task::ResultCode result_code =
      tasks::v1::Task::RESULT_CODE_UNSPECIFIED;
  // For kCancel: complete at once, also a task an executor holds.
  bool force = false;
};

// The task after `move`, or FailedPrecondition naming the current state and
// the move when the state does not allow it, or InvalidArgument when `args`
// are wrong for the move.
absl::StatusOr<tasks::v1::Task> ApplyMove(const tasks::v1::Task& current,
                                          Move move, const MoveArgs& args,
                                          absl::Time now);

// A new task's deadline (queue_timeout after enqueued_at), set by CreateTask.
void SetQueueDeadline(tasks::v1::Task* task, absl::Time enqueued);

// The task after a heartbeat at `now` (the lease moved forward), or the task
// unchanged if its lease does not expire (no heart_beat_interval, or not
// started or paused).
tasks::v1::Task ExtendLease(const tasks::v1::Task& current, absl::Time now);

// What taskd does when one of the task's timeouts has passed at `now` (see
// the table above). `lease_end`: for a started or paused task, when its
// lease ends as taskd knows it (heartbeats renew leases in memory,
// server/task_timers.h); InfinitePast: the stored lease_expires_at.
// FailedPrecondition with reason NOT_DUE if nothing is due (a deadline
// moved, or the task moved on).
absl::StatusOr<tasks::v1::Task> FireTimeout(
    const tasks::v1::Task& current, absl::Time now,
    absl::Time lease_end = absl::InfinitePast());

// True for a started or paused task whose lease is kept by heartbeats.
bool HeartbeatLeased(const tasks::v1::Task& task);

// The task with its lease recorded as ending at `lease_end`, and its
// deadline (when taskd next looks at it by itself) at `next_check`, or its
// exec timeout if that comes first: the in-memory lease written to the
// store now and then.
tasks::v1::Task CheckpointLease(const tasks::v1::Task& current,
                                absl::Time lease_end, absl::Time next_check);

// Whether an executor holds the task (assigned, started or paused).
bool Leased(const tasks::v1::Task& task);

}  // namespace taskd

#endif  // TASKD_SERVER_TASK_LIFECYCLE_H_
