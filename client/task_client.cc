#include "client/task_client.h"

#include <fcntl.h>
#include <grpcpp/client_context.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/sha256.h"
#include "google/rpc/status.pb.h"
#include "query/task_fields.h"

namespace taskd {

using tasks::v1::Task;

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status result(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
  // The details taskd sends (server/grpc_status.h), as the payloads they
  // were on the server's side; details that do not parse are dropped.
  google::rpc::Status details;
  if (!status.error_details().empty() &&
      details.ParseFromString(status.error_details())) {
    for (const google::protobuf::Any& any : details.details()) {
      result.SetPayload(any.type_url(), absl::Cord(any.value()));
    }
  }
  return result;
}

TaskClient::TaskClient(std::shared_ptr<grpc::Channel> channel,
                       const Options& options)
    : stub_(tasks::v1::TaskService::NewStub(std::move(channel))),
      options_(options) {}

template <typename Request, typename Response>
absl::StatusOr<Response> TaskClient::Call(
    grpc::Status (tasks::v1::TaskService::Stub::*method)(grpc::ClientContext*,
                                                         const Request&,
                                                         Response*),
    const Request& request, absl::Duration extra,
    grpc::ClientContext* context) {
  grpc::ClientContext own;
  if (context == nullptr) context = &own;
  context->set_deadline(
      absl::ToChronoTime(absl::Now() + options_.deadline + extra));
  if (!options_.bearer_token.empty()) {
    context->AddMetadata("authorization", "Bearer " + options_.bearer_token);
  }
  Response response;
  grpc::Status status = (stub_.get()->*method)(context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<Task> TaskClient::Create(const Task& task,
                                        absl::string_view request_id) {
  tasks::v1::CreateTaskRequest request;
  *request.mutable_task() = task;
  request.set_request_id(std::string(request_id));
  return Call(&tasks::v1::TaskService::Stub::CreateTask, request);
}

absl::StatusOr<Task> TaskClient::Get(absl::string_view id) {
  tasks::v1::GetTaskRequest request;
  request.set_id(std::string(id));
  return Call(&tasks::v1::TaskService::Stub::GetTask, request);
}

absl::StatusOr<tasks::v1::ListTasksResponse> TaskClient::List(
    const tasks::v1::ListTasksRequest& request) {
  return Call(&tasks::v1::TaskService::Stub::ListTasks, request);
}

absl::StatusOr<TaskClient::BackupResult> TaskClient::Backup(
    const std::string& path, grpc::ClientContext* context) {
  if (::access(path.c_str(), F_OK) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat(path, " exists; a backup never overwrites a file"));
  }
  const std::string part = path + ".part";
  const int fd =
      ::open(part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("create ", part, ": ", strerror(errno)));
  }
  absl::StatusOr<BackupResult> result = [&]() -> absl::StatusOr<BackupResult> {
    grpc::ClientContext own;
    if (context == nullptr) context = &own;
    if (!options_.bearer_token.empty()) {
      context->AddMetadata("authorization", "Bearer " + options_.bearer_token);
    }
    std::unique_ptr<grpc::ClientReader<tasks::v1::BackupDatabaseResponse>>
        reader = stub_->BackupDatabase(context, {});
    BackupResult saved;
    bool first = true;
    int64_t received = 0;
    Sha256 digest;
    tasks::v1::BackupDatabaseResponse response;
    while (reader->Read(&response)) {
      if (first) {
        saved.revision = response.revision();
        saved.size_bytes = response.size_bytes();
        first = false;
      }
      const std::string& chunk = response.chunk();
      for (size_t done = 0; done < chunk.size();) {
        ssize_t n = ::write(fd, chunk.data() + done, chunk.size() - done);
        if (n < 0) {
          context->TryCancel();
          return absl::UnavailableError(
              absl::StrCat("write ", part, ": ", strerror(errno)));
        }
        done += static_cast<size_t>(n);
      }
      digest.Update(chunk);
      received += static_cast<int64_t>(chunk.size());
      if (!response.sha256().empty()) saved.sha256 = response.sha256();
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) return FromGrpcStatus(status);
    const std::string sha256 = digest.HexDigest();
    if (first || received != saved.size_bytes || sha256 != saved.sha256) {
      return absl::DataLossError(
          absl::StrCat("backup damaged in transit: received ", received,
                       " bytes with "
                       "SHA-256 ",
                       sha256, ", the server sent ", saved.size_bytes,
                       " bytes with SHA-256 ",
                       saved.sha256.empty() ? "(none)" : saved.sha256));
    }
    if (::fsync(fd) != 0) {
      return absl::UnavailableError(
          absl::StrCat("sync ", part, ": ", strerror(errno)));
    }
    return saved;
  }();
  ::close(fd);
  if (result.ok() && ::rename(part.c_str(), path.c_str()) != 0) {
    result = absl::UnavailableError(
        absl::StrCat("rename ", part, " to ", path, ": ", strerror(errno)));
  }
  if (!result.ok()) ::unlink(part.c_str());
  return result;
}

absl::StatusOr<tasks::v1::CountTasksResponse> TaskClient::Count(
    absl::string_view filter, const std::vector<std::string>& group_by) {
  tasks::v1::CountTasksRequest request;
  request.set_filter(std::string(filter));
  for (const std::string& field : group_by) request.add_group_by(field);
  return Call(&tasks::v1::TaskService::Stub::CountTasks, request);
}

absl::StatusOr<Task> TaskClient::Update(const Task& task,
                                        const std::vector<std::string>& paths,
                                        absl::string_view etag) {
  tasks::v1::UpdateTaskRequest request;
  *request.mutable_task() = task;
  for (const std::string& path : paths) {
    request.mutable_update_mask()->add_paths(path);
  }
  request.set_etag(std::string(etag));
  return Call(&tasks::v1::TaskService::Stub::UpdateTask, request);
}

absl::Status TaskClient::Delete(absl::string_view id, absl::string_view etag) {
  tasks::v1::DeleteTaskRequest request;
  request.set_id(std::string(id));
  request.set_etag(std::string(etag));
  return Call(&tasks::v1::TaskService::Stub::DeleteTask, request).status();
}

absl::StatusOr<Task> TaskClient::Assign(absl::string_view id,
                                        absl::string_view executor_id,
                                        absl::string_view etag) {
  tasks::v1::AssignTaskRequest request;
  request.set_id(std::string(id));
  request.set_executor_id(std::string(executor_id));
  request.set_etag(std::string(etag));
  return Call(&tasks::v1::TaskService::Stub::AssignTask, request);
}

// The moves of an executor: an id, a lease token and an etag.
template <typename Request>
static Request Leased(absl::string_view id, absl::string_view lease_token,
                      absl::string_view etag) {
  Request request;
  request.set_id(std::string(id));
  request.set_lease_token(std::string(lease_token));
  request.set_etag(std::string(etag));
  return request;
}

absl::StatusOr<Task> TaskClient::Start(absl::string_view id,
                                       absl::string_view lease_token,
                                       absl::string_view etag) {
  return Call(&tasks::v1::TaskService::Stub::StartTask,
              Leased<tasks::v1::StartTaskRequest>(id, lease_token, etag));
}

absl::StatusOr<Task> TaskClient::Pause(absl::string_view id,
                                       absl::string_view lease_token,
                                       absl::string_view etag) {
  return Call(&tasks::v1::TaskService::Stub::PauseTask,
              Leased<tasks::v1::PauseTaskRequest>(id, lease_token, etag));
}

absl::StatusOr<Task> TaskClient::Resume(absl::string_view id,
                                        absl::string_view lease_token,
                                        absl::string_view etag) {
  return Call(&tasks::v1::TaskService::Stub::ResumeTask,
              Leased<tasks::v1::ResumeTaskRequest>(id, lease_token, etag));
}

absl::StatusOr<Task> TaskClient::Complete(absl::string_view id,
                                          Task::ResultCode result_code,
                                          absl::string_view lease_token,
                                          absl::string_view etag) {
  auto request = Leased<tasks::v1::CompleteTaskRequest>(id, lease_token, etag);
  request.set_result_code(result_code);
  return Call(&tasks::v1::TaskService::Stub::CompleteTask, request);
}

absl::StatusOr<Task> TaskClient::Cancel(absl::string_view id,
                                        absl::string_view etag, bool force) {
  tasks::v1::CancelTaskRequest request;
  request.set_id(std::string(id));
  request.set_etag(std::string(etag));
  request.set_force(force);
  return Call(&tasks::v1::TaskService::Stub::CancelTask, request);
}

absl::StatusOr<std::optional<Task>> TaskClient::Acquire(
    absl::string_view executor_id, absl::string_view filter,
    absl::Duration wait, grpc::ClientContext* context) {
  tasks::v1::AcquireTaskRequest request;
  request.set_executor_id(std::string(executor_id));
  request.set_filter(std::string(filter));
  if (wait > absl::ZeroDuration()) *request.mutable_wait() = ToDuration(wait);
  // The call may wait `wait` for a task before it answers.
  absl::StatusOr<tasks::v1::AcquireTaskResponse> response =
      Call(&tasks::v1::TaskService::Stub::AcquireTask, request,
           std::max(wait, absl::ZeroDuration()), context);
  if (!response.ok()) return response.status();
  if (!response->has_task()) return std::optional<Task>();
  return std::optional<Task>(std::move(*response->mutable_task()));
}

absl::StatusOr<tasks::v1::HeartbeatTaskResponse> TaskClient::Heartbeat(
    absl::string_view id, absl::string_view lease_token,
    const Task::Progress* progress) {
  tasks::v1::HeartbeatTaskRequest request;
  request.set_id(std::string(id));
  request.set_lease_token(std::string(lease_token));
  if (progress != nullptr) *request.mutable_progress() = *progress;
  return Call(&tasks::v1::TaskService::Stub::HeartbeatTask, request);
}

}  // namespace taskd
