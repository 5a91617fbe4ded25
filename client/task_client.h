// TaskClient: a small C++ client for tasks.v1.TaskService.
//
//   auto channel = grpc::CreateChannel("127.0.0.1:50051",
//                                      grpc::InsecureChannelCredentials());
//   taskd::TaskClient client(channel);
//   absl::StatusOr<tasks::v1::Task> task = client.Create(new_task);
//   if (!task.ok()) { ... task.status().code() ... }
//
// Every call has a deadline (Options::deadline) and returns the server's
// status as an absl::Status with the same code and message and the error
// details as payloads (ReasonOf in base/error_details.h). Thread-safe:
// one client may be shared by many threads.
#ifndef TASKD_CLIENT_TASK_CLIENT_H_
#define TASKD_CLIENT_TASK_CLIENT_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tasks/v1/tasks.grpc.pb.h"

namespace taskd {

// Same code, same message, and the error details of the
// grpc-status-details-bin trailer (google.rpc.ErrorInfo, BadRequest) as
// payloads keyed by their type URL, as base/error_details.h reads them:
// ReasonOf(FromGrpcStatus(status)) is the server's reason.
absl::Status FromGrpcStatus(const grpc::Status& status);

class TaskClient {
 public:
  struct Options {
    // Deadline of each call. Default 10 s.
    absl::Duration deadline = absl::Seconds(10);
    // Sent as "authorization: Bearer TOKEN" when not empty.
    std::string bearer_token;
  };

  explicit TaskClient(std::shared_ptr<grpc::Channel> channel)
      : TaskClient(std::move(channel), Options()) {}
  TaskClient(std::shared_ptr<grpc::Channel> channel, const Options& options);

  absl::StatusOr<tasks::v1::Task> Create(const tasks::v1::Task& task,
                                         absl::string_view request_id = "");
  absl::StatusOr<tasks::v1::Task> Get(absl::string_view id);
  absl::StatusOr<tasks::v1::ListTasksResponse> List(
      const tasks::v1::ListTasksRequest& request);
  // How many tasks match `filter`, grouped by up to two fields (state,
  // result_code, type, priority, tenant_id, executor_id).
  absl::StatusOr<tasks::v1::CountTasksResponse> Count(
      absl::string_view filter, const std::vector<std::string>& group_by);
  // Writes the fields named in `paths` (type, priority, policy_id,
  // resource_id) from `task`; task.id names the task.
  absl::StatusOr<tasks::v1::Task> Update(const tasks::v1::Task& task,
                                         const std::vector<std::string>& paths,
                                         absl::string_view etag = "");
  absl::Status Delete(absl::string_view id, absl::string_view etag = "");

  absl::StatusOr<tasks::v1::Task> Assign(absl::string_view id,
                                         absl::string_view executor_id,
                                         absl::string_view etag = "");
  // The moves of an executor take the lease token of the assignment (the
  // `lease_token` of the task AcquireTask or AssignTask returned).
  absl::StatusOr<tasks::v1::Task> Start(absl::string_view id,
                                        absl::string_view lease_token,
                                        absl::string_view etag = "");
  absl::StatusOr<tasks::v1::Task> Pause(absl::string_view id,
                                        absl::string_view lease_token,
                                        absl::string_view etag = "");
  absl::StatusOr<tasks::v1::Task> Resume(absl::string_view id,
                                         absl::string_view lease_token,
                                         absl::string_view etag = "");
  absl::StatusOr<tasks::v1::Task> Complete(
      absl::string_view id, tasks::v1::Task::ResultCode result_code,
      absl::string_view lease_token, absl::string_view etag = "");
  // `force`: complete it as cancelled at once, also if an executor holds
  // it; otherwise a held task only gets cancel_requested.
  absl::StatusOr<tasks::v1::Task> Cancel(absl::string_view id,
                                         absl::string_view etag = "",
                                         bool force = false);

  // Takes the best enqueued task that matches `filter` for `executor_id`,
  // waiting up to `wait` for one; nullopt if none came. The call's deadline
  // is the client's deadline plus `wait`.
  // `context` (optional, for a caller that may cancel the wait with
  // TryCancel): the call's context; the client sets its deadline and token.
  absl::StatusOr<std::optional<tasks::v1::Task>> Acquire(
      absl::string_view executor_id, absl::string_view filter = "",
      absl::Duration wait = absl::ZeroDuration(),
      grpc::ClientContext* context = nullptr);
  // Keeps the lease alive; reports progress if `progress` is not null.
  absl::StatusOr<tasks::v1::HeartbeatTaskResponse> Heartbeat(
      absl::string_view id, absl::string_view lease_token,
      const tasks::v1::Task::Progress* progress = nullptr);

  // What Backup wrote.
  struct BackupResult {
    // The store revision the backup holds, its size and hex SHA-256.
    int64_t revision = 0;
    int64_t size_bytes = 0;
    std::string sha256;
  };
  // Saves a backup of the whole database (BackupDatabase; an admin token of
  // every tenant) as a new file at `path`: streamed into "<path>.part",
  // checked against the size and SHA-256 the server sends, synced, then
  // renamed to `path`, so that `path` only ever holds a whole backup.
  // AlreadyExists if `path` exists. No deadline (a large database takes a
  // while): cancel through `context` (may be null).
  absl::StatusOr<BackupResult> Backup(const std::string& path,
                                      grpc::ClientContext* context = nullptr);

  // The generated stub, for calls this class does not wrap.
  tasks::v1::TaskService::Stub* stub() const { return stub_.get(); }

 private:
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(
      grpc::Status (tasks::v1::TaskService::Stub::*method)(grpc::ClientContext*,
                                                           const Request&,
                                                           Response*),
      const Request& request, absl::Duration extra = absl::ZeroDuration(),
      grpc::ClientContext* context = nullptr);

  const std::unique_ptr<tasks::v1::TaskService::Stub> stub_;
  const Options options_;
};

}  // namespace taskd

#endif  // TASKD_CLIENT_TASK_CLIENT_H_
