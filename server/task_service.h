// TaskService: the tasks.v1.TaskService gRPC service over a TaskStore.
//
// Validates requests (server/task_validation.h), runs the life cycle
// (server/task_lifecycle.h) inside the store's atomic read-modify-write,
// and converts absl::Status to grpc::Status at the edge (grpc_status.h).
//
// Runs on gRPC's callback API. Reads run on the handler's thread; writes
// are planned as one TaskWrite and handed to the store asynchronously
// (TaskStore::Write), and the store's writer thread finishes the RPC after
// the group commit that holds the write, so a handler thread never waits for
// a disk sync.
// Thread-safe.
#ifndef TASKD_SERVER_TASK_SERVICE_H_
#define TASKD_SERVER_TASK_SERVICE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "query/page_token.h"
#include "server/auth.h"
#include "server/count_hub.h"
#include "server/deadline_timer.h"
#include "server/dispatcher.h"
#include "server/lease_token.h"
#include "server/task_timers.h"
#include "server/watch_hub.h"
#include "storage/task_store.h"
#include "tasks/v1/tasks.grpc.pb.h"

namespace taskd {

struct TaskServiceOptions {
  // ListTasks page size when the request asks for 0. Default 50.
  int default_page_size = 50;
  // Larger page sizes are lowered to this. Default 1000.
  int max_page_size = 1000;
  // Where task timestamps come from. Not owned; must outlive the service.
  Clock* clock = Clock::Real();
  // A write call whose client set no deadline gets this one: if its write
  // has not committed by then (a stalled disk, a long queue), the call ends
  // with DEADLINE_EXCEEDED, as if the client had set it. As with any
  // deadline, the write may still commit afterwards; a retry with the same
  // request_id (create) or etag (update) is safe. Zero: no default. Reads
  // do not wait on the writer and get none. Default 30 s.
  absl::Duration default_deadline = absl::Seconds(30);
  // Told each call's caller once its token is known (before the role is
  // checked; never in open mode, where there are no tokens), for the call
  // log. Runs on the handler's thread; must be
  // quick. Empty: nobody is told.
  std::function<void(const grpc::ServerContextBase&, const Caller&)> on_caller;

  // Executors. A new task's timeouts that the caller leaves unset get
  // these (zero: none). Defaults: queue none, ack 30 s, heartbeat none,
  // exec none.
  absl::Duration default_queue_timeout = absl::ZeroDuration();
  absl::Duration default_ack_timeout = absl::Seconds(30);
  absl::Duration default_heartbeat_interval = absl::ZeroDuration();
  absl::Duration default_exec_timeout = absl::ZeroDuration();
  // A heartbeat's progress is written (a new revision, seen by watchers) if
  // it is the task's first, or if the task has not changed for this long;
  // otherwise it is dropped, and a later heartbeat reports a newer one.
  // Default 5 s.
  absl::Duration progress_interval = absl::Seconds(5);
  // The longest AcquireTask wait accepted. Default 60 s.
  absl::Duration max_acquire_wait = absl::Seconds(60);

  // Where BackupDatabase makes the copy it streams (removed once sent);
  // empty: BackupDatabase is FAILED_PRECONDITION (reason
  // BACKUP_BY_DATABASE_TOOLS; TaskServer leaves it empty on PostgreSQL).
  // TaskServer sets it beside the database ("<db>.backup"), on the same
  // disk.
  std::string backup_scratch_path;
};

// WatchTasks is served raw (its responses are assembled from pre-encoded
// events, see watch_hub.h); its request is decoded here.
class TaskService final
    : public tasks::v1::TaskService::WithRawCallbackMethod_WatchTasks<
          tasks::v1::TaskService::CallbackService> {
 public:
  // `store`, `watch_hub`, `count_hub`, `dispatcher`, `timers` and
  // `authorizer` are not owned and must outlive the service.
  TaskService(TaskStore* store, WatchHub* watch_hub, CountHub* count_hub,
              Dispatcher* dispatcher, TaskTimers* timers,
              Authorizer* authorizer, const TaskServiceOptions& options);

  // The logic of each call, without gRPC: what the RPCs below return, for
  // an already authorised `caller` (whose tenant scopes what it sees).
  absl::StatusOr<Task> Create(const tasks::v1::CreateTaskRequest& request,
                              const Caller& caller);
  absl::StatusOr<Task> Get(const tasks::v1::GetTaskRequest& request,
                           const Caller& caller);
  absl::StatusOr<tasks::v1::ListTasksResponse> List(
      const tasks::v1::ListTasksRequest& request, const Caller& caller);
  absl::StatusOr<Task> Update(const tasks::v1::UpdateTaskRequest& request,
                              const Caller& caller);
  absl::Status Delete(const tasks::v1::DeleteTaskRequest& request,
                      const Caller& caller);
  absl::StatusOr<Task> Assign(const tasks::v1::AssignTaskRequest& request,
                              const Caller& caller);
  absl::StatusOr<Task> Start(const tasks::v1::StartTaskRequest& request,
                             const Caller& caller);
  absl::StatusOr<Task> Pause(const tasks::v1::PauseTaskRequest& request,
                             const Caller& caller);
  absl::StatusOr<Task> Resume(const tasks::v1::ResumeTaskRequest& request,
                              const Caller& caller);
  absl::StatusOr<Task> Complete(const tasks::v1::CompleteTaskRequest& request,
                                const Caller& caller);
  absl::StatusOr<Task> Cancel(const tasks::v1::CancelTaskRequest& request,
                              const Caller& caller);
  // Takes a task for an executor; `done` gets the answer (possibly after
  // the request's wait) on another thread. `gone` (may be empty) tells a
  // waiting acquire that its caller left.
  void Acquire(
      const tasks::v1::AcquireTaskRequest& request, const Caller& caller,
      std::function<bool()> gone,
      std::function<void(absl::StatusOr<tasks::v1::AcquireTaskResponse>)> done);
  absl::StatusOr<tasks::v1::HeartbeatTaskResponse> Heartbeat(
      const tasks::v1::HeartbeatTaskRequest& request, const Caller& caller);
  // What a WatchTasks stream should watch (for WatchHub::Watch), or
  // InvalidArgument naming the request field at fault.
  absl::StatusOr<WatchSpec> Watch(const tasks::v1::WatchTasksRequest& request,
                                  const Caller& caller);
  absl::StatusOr<tasks::v1::CountTasksResponse> Count(
      const tasks::v1::CountTasksRequest& request, const Caller& caller);
  // What a WatchTaskCounts stream should count (for CountHub::Watch).
  absl::StatusOr<CountWatchSpec> WatchCounts(
      const tasks::v1::WatchTaskCountsRequest& request, const Caller& caller);

  // tasks::v1::TaskService::CallbackService
  grpc::ServerUnaryReactor* CreateTask(
      grpc::CallbackServerContext* context,
      const tasks::v1::CreateTaskRequest* request, Task* response) override;
  grpc::ServerUnaryReactor* GetTask(grpc::CallbackServerContext* context,
                                    const tasks::v1::GetTaskRequest* request,
                                    Task* response) override;
  grpc::ServerUnaryReactor* ListTasks(
      grpc::CallbackServerContext* context,
      const tasks::v1::ListTasksRequest* request,
      tasks::v1::ListTasksResponse* response) override;
  grpc::ServerUnaryReactor* UpdateTask(
      grpc::CallbackServerContext* context,
      const tasks::v1::UpdateTaskRequest* request, Task* response) override;
  grpc::ServerUnaryReactor* DeleteTask(
      grpc::CallbackServerContext* context,
      const tasks::v1::DeleteTaskRequest* request,
      google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* AssignTask(
      grpc::CallbackServerContext* context,
      const tasks::v1::AssignTaskRequest* request, Task* response) override;
  grpc::ServerUnaryReactor* StartTask(
      grpc::CallbackServerContext* context,
      const tasks::v1::StartTaskRequest* request, Task* response) override;
  grpc::ServerUnaryReactor* PauseTask(
      grpc::CallbackServerContext* context,
      const tasks::v1::PauseTaskRequest* request, Task* response) override;
  grpc::ServerUnaryReactor* ResumeTask(
      grpc::CallbackServerContext* context,
      const tasks::v1::ResumeTaskRequest* request, Task* response) override;
  grpc::ServerUnaryReactor* CompleteTask(
      grpc::CallbackServerContext* context,
      const tasks::v1::CompleteTaskRequest* request, Task* response) override;
  grpc::ServerUnaryReactor* CancelTask(
      grpc::CallbackServerContext* context,
      const tasks::v1::CancelTaskRequest* request, Task* response) override;
  grpc::ServerUnaryReactor* AcquireTask(
      grpc::CallbackServerContext* context,
      const tasks::v1::AcquireTaskRequest* request,
      tasks::v1::AcquireTaskResponse* response) override;
  grpc::ServerUnaryReactor* HeartbeatTask(
      grpc::CallbackServerContext* context,
      const tasks::v1::HeartbeatTaskRequest* request,
      tasks::v1::HeartbeatTaskResponse* response) override;
  grpc::ServerUnaryReactor* CountTasks(
      grpc::CallbackServerContext* context,
      const tasks::v1::CountTasksRequest* request,
      tasks::v1::CountTasksResponse* response) override;
  grpc::ServerWriteReactor<tasks::v1::WatchTaskCountsResponse>* WatchTaskCounts(
      grpc::CallbackServerContext* context,
      const tasks::v1::WatchTaskCountsRequest* request) override;
  grpc::ServerWriteReactor<tasks::v1::BackupDatabaseResponse>* BackupDatabase(
      grpc::CallbackServerContext* context,
      const tasks::v1::BackupDatabaseRequest* request) override;
  // Writes serialized WatchTasksResponse messages.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* WatchTasks(
      grpc::CallbackServerContext* context,
      const grpc::ByteBuffer* request) override;

 private:
  struct MoveRequest;

  // Checks a write request and prepares its write for the store; the error
  // to return if the request is refused. A mutation or precondition holds
  // copies of what it needs: it runs later, on the store's writer thread,
  // possibly after the RPC handler has returned.
  absl::StatusOr<TaskWrite> Plan(const tasks::v1::CreateTaskRequest& request,
                                 const Caller& caller);
  absl::StatusOr<TaskWrite> Plan(const tasks::v1::UpdateTaskRequest& request,
                                 const Caller& caller);
  absl::StatusOr<TaskWrite> Plan(const tasks::v1::DeleteTaskRequest& request,
                                 const Caller& caller);
  absl::StatusOr<TaskWrite> Plan(const tasks::v1::AssignTaskRequest& request,
                                 const Caller& caller);
  absl::StatusOr<TaskWrite> Plan(const tasks::v1::StartTaskRequest& request,
                                 const Caller& caller);
  absl::StatusOr<TaskWrite> Plan(const tasks::v1::PauseTaskRequest& request,
                                 const Caller& caller);
  absl::StatusOr<TaskWrite> Plan(const tasks::v1::ResumeTaskRequest& request,
                                 const Caller& caller);
  absl::StatusOr<TaskWrite> Plan(const tasks::v1::CompleteTaskRequest& request,
                                 const Caller& caller);
  absl::StatusOr<TaskWrite> Plan(const tasks::v1::CancelTaskRequest& request,
                                 const Caller& caller);
  absl::StatusOr<TaskWrite> PlanMove(const MoveRequest& request,
                                     const Caller& caller);
  absl::StatusOr<AcquireSpec> PlanAcquire(
      const tasks::v1::AcquireTaskRequest& request, const Caller& caller);
  // A heartbeat: either the answer at once (nothing to write) or the write
  // whose result gives it.
  struct HeartbeatPlan {
    std::optional<TaskWrite> write;
    tasks::v1::HeartbeatTaskResponse answer;
  };
  absl::StatusOr<HeartbeatPlan> PlanHeartbeat(
      const tasks::v1::HeartbeatTaskRequest& request, const Caller& caller);
  // The call's result as the caller sees it: an assignment carries its
  // lease token.
  void Present(Method method, Task* task) const;
  // Plans the write and waits for the store to commit it (the logic methods
  // above; the RPCs use TaskStore::Write and do not wait).
  template <typename Request>
  absl::StatusOr<Task> RunSync(const Request& request, const Caller& caller);

  // Who calls (the one parse of the call's token, reported to on_caller),
  // and whether that caller may call `method`.
  absl::StatusOr<Caller> Authorize(const grpc::CallbackServerContext& context,
                                   Method method);
  template <typename Response, typename Logic>
  grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* context,
                                  Method method, Response* response,
                                  Logic logic);
  // Serves a write RPC without blocking the handler's thread.
  template <typename Request, typename Response>
  grpc::ServerUnaryReactor* ServeWrite(grpc::CallbackServerContext* context,
                                       Method method, const Request& request,
                                       Response* response);

  TaskStore* const store_;
  WatchHub* const watch_hub_;
  CountHub* const count_hub_;
  // A BackupDatabase call is running (one at a time).
  std::atomic<bool> backup_running_{false};
  Dispatcher* const dispatcher_;
  TaskTimers* const timers_;
  Authorizer* const authorizer_;
  const TaskServiceOptions options_;
  const PageTokenCodec page_tokens_;
  const LeaseTokens leases_;
  DeadlineTimer deadlines_;
};

}  // namespace taskd

#endif  // TASKD_SERVER_TASK_SERVICE_H_
