// BackupStream: one BackupDatabase call. A thread of its own asks the store
// for a consistent copy of the database (TaskStore::Backup) into a scratch
// file, then streams that file in chunks of at most 1 MiB, each written
// only after the client took the one before (so a slow client holds one
// chunk in memory, not the file), the revision and size in the first
// response and the SHA-256 in the last; then removes the scratch file.
//
// A client that leaves abandons the copy between two of its steps, or the
// stream between two chunks; the scratch file goes either way. One
// backup at a time per `running` flag: a second call meanwhile is refused
// with RESOURCE_EXHAUSTED (reason BACKUP_IN_PROGRESS).
//
//   return BackupStream::Start(store, "/var/lib/taskd/taskd.db.backup",
//                              &running);
//   return BackupStream::Refuse(status);     // not authorised, ...
#ifndef TASKD_SERVER_BACKUP_STREAM_H_
#define TASKD_SERVER_BACKUP_STREAM_H_

#include <grpcpp/support/server_callback.h>

#include <atomic>
#include <string>

#include "absl/status/status.h"
#include "storage/task_store.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd {

class BackupStream {
 public:
  using Reactor = grpc::ServerWriteReactor<tasks::v1::BackupDatabaseResponse>;

  // Streams a copy of `store` (which must outlive the call) made in
  // `scratch_path` (replaced if it exists: what an interrupted backup left).
  // `running` (must outlive the call) is set while the call runs.
  static Reactor* Start(TaskStore* store, std::string scratch_path,
                        std::atomic<bool>* running);
  // A call that ends at once with `status` (not OK).
  static Reactor* Refuse(const absl::Status& status);
};

}  // namespace taskd

#endif  // TASKD_SERVER_BACKUP_STREAM_H_
