#include "storage/task_store.h"

#include "absl/synchronization/notification.h"

namespace taskd {

absl::StatusOr<Task> TaskStore::WriteAndWait(TaskWrite write) {
  if (WaitingWouldDeadlock()) {
    // A mutation, precondition, on_commit or WriteDone calling a blocking
    // write would wait for itself.
    return absl::FailedPreconditionError(
        "a blocking store write was called from the store's writer thread");
  }
  absl::Notification committed;
  absl::StatusOr<Task> result;
  Write(std::move(write), [&](absl::StatusOr<Task> r) {
    result = std::move(r);
    committed.Notify();
  });
  committed.WaitForNotification();
  return result;
}

}  // namespace taskd
