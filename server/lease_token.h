// LeaseTokens: the fencing tokens of executor leases.
//
// Every assignment of a task (AcquireTask, AssignTask) is a lease, and its
// token is what lets an executor start, pause, resume, complete and
// heartbeat the task. A token names one assignment of one task: the task's
// uuid and its assign_count, sealed with a MAC under the store's instance
// secret. It is never stored: Check() recomputes it from the task, so a
// token is valid exactly while the task is leased (assigned, started or
// paused) under the same assign_count. Once the assignment is void (a
// timeout, a re-queue, a forced cancel), the old token gets LEASE_LOST even
// if the task is assigned again, to anyone.
//
//   LeaseTokens leases(store->InstanceSecret());
//   task.set_lease_token(leases.Issue(task));        // after the assign
//   absl::Status ok = leases.Check(current, token);  // before a move
//
// Thread-safe (immutable).
#ifndef TASKD_SERVER_LEASE_TOKEN_H_
#define TASKD_SERVER_LEASE_TOKEN_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd {

class LeaseTokens {
 public:
  // `secret`: the store's InstanceSecret(), so that tokens survive restarts
  // and are the same on every server of one database.
  explicit LeaseTokens(absl::string_view secret);

  // The token of `task`'s current assignment ("<assign_count>.<mac>").
  std::string Issue(const tasks::v1::Task& task) const;

  // Whether `token` (from the request field `field`) is the lease of the
  // task's current assignment:
  //   OK                   it is; or the token is empty and the task is
  //                        not leased (the move's own rules then decide),
  //                        or was leased before taskd had leases
  //                        (assign_count 0)
  //   InvalidArgument      empty for a leased task, or not a token of this
  //                        task at all (reason INVALID_LEASE_TOKEN)
  //   FailedPrecondition   the token of an earlier assignment, or of one
  //                        that ended (reason LEASE_LOST); the message says
  //                        what the task is now
  absl::Status Check(const tasks::v1::Task& task, absl::string_view token,
                     absl::string_view field = "lease_token") const;

 private:
  std::string Mac(const tasks::v1::Task& task, int64_t assignment) const;

  std::string key_;
};

}  // namespace taskd

#endif  // TASKD_SERVER_LEASE_TOKEN_H_
