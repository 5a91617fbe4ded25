#include "server/task_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/error_details.h"
#include "server/backup_stream.h"
#include "server/grpc_status.h"
#include "server/task_lifecycle.h"
#include "server/task_validation.h"

namespace taskd {
namespace {

using tasks::v1::ListTasksResponse;

// Finishes a unary call with `result`, moving a value into `response`.
template <typename T>
grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context,
                                absl::StatusOr<T> result, T* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (result.ok()) *response = std::move(*result);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

// Moves a write's result into the RPC's response.
void SetResponse(Task task, Task* response) { *response = std::move(task); }
void SetResponse(Task, google::protobuf::Empty*) {}

// AIP-154: a non-empty etag must match the task's current one.
absl::Status CheckEtag(const Task& current, absl::string_view etag) {
  if (etag.empty() || etag == current.etag()) return absl::OkStatus();
  return WithReason(absl::AbortedError(absl::StrCat(
                        "etag \"", etag, "\" does not match task \"",
                        current.id(), "\" (now at etag \"", current.etag(),
                        "\"); read the task again and retry")),
                    "ETAG_MISMATCH",
                    {{"task_id", current.id()}, {"etag", current.etag()}});
}

absl::Status InvalidRequest(absl::string_view field, absl::string_view what,
                            absl::string_view reason) {
  return WithFieldViolation(
      WithReason(absl::InvalidArgumentError(absl::StrCat(field, ": ", what)),
                 reason, {{"field", field}}),
      field, what);
}

// An error from the query layer ("filter: column 7: ..."), given its reason
// and the request field it concerns.
absl::Status AsFieldError(const absl::Status& status, absl::string_view field,
                          absl::string_view reason) {
  return WithFieldViolation(WithReason(status, reason, {{"field", field}}),
                            field, status.message());
}

// The filter a caller's `text` means: parsed, and for a scoped caller
// intersected with its tenant. InvalidArgument (INVALID_FILTER) naming the
// request field for a bad one.
absl::StatusOr<std::shared_ptr<const FilterExpr>> ScopedFilter(
    const std::string& text, const Caller& caller) {
  absl::StatusOr<std::shared_ptr<const FilterExpr>> filter = ParseFilter(text);
  if (!filter.ok()) {
    return AsFieldError(filter.status(), "filter", "INVALID_FILTER");
  }
  if (!caller.scoped()) return filter;
  return AndFilters(std::move(*filter),
                    EqualsFilter(TaskField::kTenantId, caller.tenant));
}

// The query a page token is bound to. The filter is bound by its text as
// given and the order by its canonical form.
std::string QueryBinding(absl::string_view filter, const OrderBy& order,
                         absl::string_view scope) {
  return absl::StrCat("filter=", filter, "\norder=", OrderByToString(order),
                      "\nscope=", scope);
}

// Another tenant's task looks exactly like a missing one, so that a caller
// cannot learn which ids exist elsewhere.
absl::Status CheckTenant(const Task& task, absl::string_view id,
                         const Caller& caller) {
  if (!caller.scoped() || task.tenant_id() == caller.tenant) {
    return absl::OkStatus();
  }
  return WithReason(
      absl::NotFoundError(absl::StrCat("task \"", id, "\" not found")),
      "TASK_NOT_FOUND");
}

tasks::v1::HeartbeatTaskResponse HeartbeatAnswer(const Task& task) {
  tasks::v1::HeartbeatTaskResponse answer;
  if (task.has_lease_expires_at()) {
    *answer.mutable_lease_expires_at() = task.lease_expires_at();
  }
  answer.set_cancel_requested(task.cancel_requested());
  return answer;
}

}  // namespace

struct TaskService::MoveRequest {
  const std::string& id;
  const std::string& etag;
  Move move;
  MoveArgs args;
  // Start, Pause, Resume, Complete: the lease of the current assignment.
  std::string lease_token;
};

TaskService::TaskService(TaskStore* store, WatchHub* watch_hub,
                         CountHub* count_hub, Dispatcher* dispatcher,
                         TaskTimers* timers, Authorizer* authorizer,
                         const TaskServiceOptions& options)
    : store_(store),
      watch_hub_(watch_hub),
      count_hub_(count_hub),
      dispatcher_(dispatcher),
      timers_(timers),
      authorizer_(authorizer),
      options_(options),
      page_tokens_(store->InstanceSecret()),
      leases_(store->InstanceSecret()),
      deadlines_(options.clock) {}

void TaskService::Present(Method method, Task* task) const {
  if (method == Method::kAssign) task->set_lease_token(leases_.Issue(*task));
}

absl::StatusOr<Task> TaskService::Create(
    const tasks::v1::CreateTaskRequest& request, const Caller& caller) {
  return RunSync(request, caller);
}

absl::StatusOr<TaskWrite> TaskService::Plan(
    const tasks::v1::CreateTaskRequest& request, const Caller& caller) {
  if (!request.has_task()) {
    return InvalidRequest("task", "is required", "INVALID_FIELD");
  }
  if (absl::Status s = ValidateRequestId(request.request_id()); !s.ok()) {
    return s;
  }
  absl::StatusOr<Task> task = ValidateNewTask(request.task());
  if (!task.ok()) return task.status();
  if (caller.scoped()) {
    if (task->tenant_id().empty()) {
      task->set_tenant_id(caller.tenant);
    } else if (task->tenant_id() != caller.tenant) {
      return WithReason(
          absl::PermissionDeniedError(absl::StrCat(
              "task.tenant_id: this caller may create tasks of tenant ",
              caller.tenant, " only")),
          "TENANT_MISMATCH", {{"tenant_id", caller.tenant}});
    }
  }
  absl::Time time = options_.clock->Now();
  task->set_uuid(NewUuid(time));
  if (task->id().empty()) task->set_id(task->uuid());
  task->set_state(Task::enqueued);
  google::protobuf::Timestamp now = ToTimestamp(time);
  *task->mutable_enqueued_at() = now;
  *task->mutable_updated_at() = now;
  // Unset timeouts get the server's defaults; zero ones are stored unset.
  struct {
    bool set;
    google::protobuf::Duration* field;
    absl::Duration fallback;
  } timeouts[] = {
      {request.task().has_queue_timeout(), task->mutable_queue_timeout(),
       options_.default_queue_timeout},
      {request.task().has_ack_timeout(), task->mutable_ack_timeout(),
       options_.default_ack_timeout},
      {request.task().has_heart_beat_interval(),
       task->mutable_heart_beat_interval(),
       options_.default_heartbeat_interval},
      {request.task().has_exec_timeout(), task->mutable_exec_timeout(),
       options_.default_exec_timeout},
  };
  for (const auto& timeout : timeouts) {
    if (!timeout.set) *timeout.field = ToDuration(timeout.fallback);
  }
  if (DurationOf(task->queue_timeout()) == absl::ZeroDuration()) {
    task->clear_queue_timeout();
  }
  if (DurationOf(task->ack_timeout()) == absl::ZeroDuration()) {
    task->clear_ack_timeout();
  }
  if (DurationOf(task->heart_beat_interval()) == absl::ZeroDuration()) {
    task->clear_heart_beat_interval();
  }
  if (DurationOf(task->exec_timeout()) == absl::ZeroDuration()) {
    task->clear_exec_timeout();
  }
  if (task->max_assign_count() == 0) task->set_max_assign_count(1);
  SetQueueDeadline(&*task, time);
  return TaskWrite{TaskWrite::Create{*std::move(task), request.request_id()}};
}

absl::StatusOr<Task> TaskService::Get(const tasks::v1::GetTaskRequest& request,
                                      const Caller& caller) {
  if (absl::Status s = ValidateTaskRef(request.id(), "id"); !s.ok()) return s;
  absl::StatusOr<Task> task = store_->Get(request.id());
  if (task.ok()) {
    if (absl::Status s = CheckTenant(*task, request.id(), caller); !s.ok()) {
      return s;
    }
  }
  return task;
}

absl::StatusOr<ListTasksResponse> TaskService::List(
    const tasks::v1::ListTasksRequest& request, const Caller& caller) {
  if (request.page_size() < 0) {
    return InvalidRequest(
        "page_size",
        absl::StrCat("must not be negative (got ", request.page_size(), ")"),
        "INVALID_FIELD");
  }
  ListQuery query;
  // The cap applies to the default page too (a server may cap below 50).
  query.limit = std::min(request.page_size() == 0 ? options_.default_page_size
                                                  : request.page_size(),
                         options_.max_page_size);
  absl::StatusOr<std::shared_ptr<const FilterExpr>> filter =
      ScopedFilter(request.filter(), caller);
  if (!filter.ok()) return filter.status();
  query.filter = *std::move(filter);
  absl::StatusOr<OrderBy> order = ParseOrderBy(request.order_by());
  if (!order.ok()) {
    return AsFieldError(order.status(), "order_by", "INVALID_ORDER_BY");
  }
  query.order = std::move(*order);

  std::string binding =
      QueryBinding(request.filter(), query.order, caller.tenant);
  if (!request.page_token().empty()) {
    absl::StatusOr<std::vector<FieldValue>> after =
        page_tokens_.Decode(request.page_token(), binding);
    if (!after.ok()) {
      return AsFieldError(after.status(), "page_token", "INVALID_PAGE_TOKEN");
    }
    if (after->size() != query.order.size()) {
      return InvalidRequest("page_token", "does not match the order_by",
                            "INVALID_PAGE_TOKEN");
    }
    query.after = std::move(*after);
  }
  absl::StatusOr<ListResult> page = store_->List(query);
  if (!page.ok()) return page.status();
  ListTasksResponse response;
  for (Task& task : page->tasks) *response.add_tasks() = std::move(task);
  response.set_revision(page->revision);
  if (page->more && response.tasks_size() > 0) {
    response.set_next_page_token(page_tokens_.Encode(
        binding,
        CursorOf(query.order, response.tasks(response.tasks_size() - 1))));
  }
  return response;
}

absl::StatusOr<Task> TaskService::Update(
    const tasks::v1::UpdateTaskRequest& request, const Caller& caller) {
  return RunSync(request, caller);
}

absl::StatusOr<TaskWrite> TaskService::Plan(
    const tasks::v1::UpdateTaskRequest& request, const Caller& caller) {
  if (absl::Status s = ValidateTaskRef(request.task().id(), "task.id");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateEtag(request.etag()); !s.ok()) return s;
  TaskMutation mutation =
      [this, id = request.task().id(), etag = request.etag(),
       patch = request.task(), mask = request.update_mask(),
       caller](const Task& current) -> absl::StatusOr<Task> {
    if (absl::Status s = CheckTenant(current, id, caller); !s.ok()) return s;
    if (absl::Status s = CheckEtag(current, etag); !s.ok()) return s;
    absl::StatusOr<Task> next = ApplyUpdate(current, patch, mask);
    if (!next.ok()) return next.status();
    *next->mutable_updated_at() = ToTimestamp(options_.clock->Now());
    return next;
  };
  return TaskWrite{TaskWrite::Update{request.task().id(), std::move(mutation)}};
}

absl::Status TaskService::Delete(const tasks::v1::DeleteTaskRequest& request,
                                 const Caller& caller) {
  return RunSync(request, caller).status();
}

absl::StatusOr<TaskWrite> TaskService::Plan(
    const tasks::v1::DeleteTaskRequest& request, const Caller& caller) {
  if (absl::Status s = ValidateTaskRef(request.id(), "id"); !s.ok()) return s;
  if (absl::Status s = ValidateEtag(request.etag()); !s.ok()) return s;
  TaskPrecondition precondition = [id = request.id(), etag = request.etag(),
                                   caller](const Task& current) {
    if (absl::Status s = CheckTenant(current, id, caller); !s.ok()) return s;
    return CheckEtag(current, etag);
  };
  return TaskWrite{TaskWrite::Delete{request.id(), std::move(precondition)}};
}

template <typename Request>
absl::StatusOr<Task> TaskService::RunSync(const Request& request,
                                          const Caller& caller) {
  absl::StatusOr<TaskWrite> write = Plan(request, caller);
  if (!write.ok()) return write.status();
  return store_->WriteAndWait(*std::move(write));
}

absl::StatusOr<TaskWrite> TaskService::PlanMove(const MoveRequest& request,
                                                const Caller& caller) {
  if (absl::Status s = ValidateTaskRef(request.id, "id"); !s.ok()) return s;
  if (absl::Status s = ValidateEtag(request.etag); !s.ok()) return s;
  if (request.lease_token.size() > 64) {
    return InvalidRequest("lease_token", "is not a lease token (too long)",
                          "INVALID_LEASE_TOKEN");
  }
  bool fenced = request.move == Move::kStart || request.move == Move::kPause ||
                request.move == Move::kResume ||
                request.move == Move::kComplete;
  TaskMutation mutation = [this, id = request.id, etag = request.etag,
                           move = request.move, args = request.args, caller,
                           fenced, token = request.lease_token](
                              const Task& current) -> absl::StatusOr<Task> {
    if (absl::Status s = CheckTenant(current, id, caller); !s.ok()) return s;
    if (fenced) {
      if (absl::Status s = leases_.Check(current, token); !s.ok()) return s;
    }
    if (absl::Status s = CheckEtag(current, etag); !s.ok()) return s;
    return ApplyMove(current, move, args, options_.clock->Now());
  };
  return TaskWrite{TaskWrite::Update{request.id, std::move(mutation)}};
}

absl::StatusOr<Task> TaskService::Assign(
    const tasks::v1::AssignTaskRequest& request, const Caller& caller) {
  absl::StatusOr<Task> task = RunSync(request, caller);
  if (task.ok()) Present(Method::kAssign, &*task);
  return task;
}

absl::StatusOr<TaskWrite> TaskService::Plan(
    const tasks::v1::AssignTaskRequest& request, const Caller& caller) {
  if (absl::Status s = ValidateExecutorId(request.executor_id()); !s.ok()) {
    return s;
  }
  MoveArgs args;
  args.executor_id = request.executor_id();
  return PlanMove({request.id(), request.etag(), Move::kAssign, args}, caller);
}

absl::StatusOr<Task> TaskService::Start(
    const tasks::v1::StartTaskRequest& request, const Caller& caller) {
  return RunSync(request, caller);
}

absl::StatusOr<TaskWrite> TaskService::Plan(
    const tasks::v1::StartTaskRequest& request, const Caller& caller) {
  return PlanMove(
      {request.id(), request.etag(), Move::kStart, {}, request.lease_token()},
      caller);
}

absl::StatusOr<Task> TaskService::Pause(
    const tasks::v1::PauseTaskRequest& request, const Caller& caller) {
  return RunSync(request, caller);
}

absl::StatusOr<TaskWrite> TaskService::Plan(
    const tasks::v1::PauseTaskRequest& request, const Caller& caller) {
  return PlanMove(
      {request.id(), request.etag(), Move::kPause, {}, request.lease_token()},
      caller);
}

absl::StatusOr<Task> TaskService::Resume(
    const tasks::v1::ResumeTaskRequest& request, const Caller& caller) {
  return RunSync(request, caller);
}

absl::StatusOr<TaskWrite> TaskService::Plan(
    const tasks::v1::ResumeTaskRequest& request, const Caller& caller) {
  return PlanMove(
      {request.id(), request.etag(), Move::kResume, {}, request.lease_token()},
      caller);
}

absl::StatusOr<Task> TaskService::Complete(
    const tasks::v1::CompleteTaskRequest& request, const Caller& caller) {
  return RunSync(request, caller);
}

absl::StatusOr<TaskWrite> TaskService::Plan(
    const tasks::v1::CompleteTaskRequest& request, const Caller& caller) {
  MoveArgs args;
  args.result_code = request.result_code();
  if (!Task::ResultCode_IsValid(args.result_code)) {
    return InvalidRequest("result_code",
                          absl::StrCat(static_cast<int>(request.result_code()),
                                       " is not a known result code"),
                          "INVALID_FIELD");
  }
  return PlanMove({request.id(), request.etag(), Move::kComplete, args,
                   request.lease_token()},
                  caller);
}

absl::StatusOr<Task> TaskService::Cancel(
    const tasks::v1::CancelTaskRequest& request, const Caller& caller) {
  return RunSync(request, caller);
}

absl::StatusOr<TaskWrite> TaskService::Plan(
    const tasks::v1::CancelTaskRequest& request, const Caller& caller) {
  MoveArgs args;
  args.force = request.force();
  return PlanMove({request.id(), request.etag(), Move::kCancel, args}, caller);
}

absl::StatusOr<Caller> TaskService::Authorize(
    const grpc::CallbackServerContext& context, Method method) {
  absl::StatusOr<Caller> caller = authorizer_->Identify(context);
  if (!caller.ok()) return caller;
  if (options_.on_caller && !authorizer_->open()) {
    options_.on_caller(context, *caller);
  }
  if (absl::Status permitted = Authorizer::Permit(*caller, method);
      !permitted.ok()) {
    return permitted;
  }
  return caller;
}

template <typename Request, typename Response>
grpc::ServerUnaryReactor* TaskService::ServeWrite(
    grpc::CallbackServerContext* context, Method method, const Request& request,
    Response* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<Caller> caller = Authorize(*context, method);
  absl::StatusOr<TaskWrite> write =
      caller.ok() ? Plan(request, *caller)
                  : absl::StatusOr<TaskWrite>(caller.status());
  if (!write.ok()) {
    reactor->Finish(ToGrpcStatus(write.status()));
    return reactor;
  }
  // The handler's thread does not wait for the commit: the store's writer
  // thread finishes the call once the write's batch has committed (or
  // failed), or the timer does at the default deadline, whichever comes
  // first. `response` lives until Finish; the write owns copies of what it
  // needs from `request`.
  struct Outcome {
    std::atomic<bool> finished{false};
    DeadlineTimer::Id timer = 0;
  };
  auto outcome = std::make_shared<Outcome>();
  const bool client_deadline =
      context->deadline() != std::chrono::system_clock::time_point::max();
  if (!client_deadline && options_.default_deadline > absl::ZeroDuration()) {
    absl::Duration limit = options_.default_deadline;
    outcome->timer = deadlines_.Schedule(
        options_.clock->Now() + limit, [outcome, reactor, method, limit] {
          if (outcome->finished.exchange(true)) return;
          reactor->Finish(ToGrpcStatus(WithReason(
              absl::DeadlineExceededError(absl::StrCat(
                  MethodName(method),
                  ": not committed within taskd's default deadline of ",
                  absl::FormatDuration(limit),
                  " (the call set none); the write may still commit: retry "
                  "with the same request_id or etag, or set a deadline")),
              "DEFAULT_DEADLINE_EXCEEDED",
              {{"deadline", absl::FormatDuration(limit)}})));
        });
  }
  store_->Write(*std::move(write), [this, outcome, reactor, response,
                                    method](absl::StatusOr<Task> result) {
    if (outcome->timer != 0) deadlines_.Cancel(outcome->timer);
    if (outcome->finished.exchange(true)) return;  // the deadline won
    if (result.ok()) {
      Present(method, &*result);
      SetResponse(*std::move(result), response);
    }
    reactor->Finish(ToGrpcStatus(result.status()));
  });
  return reactor;
}

template <typename Response, typename Logic>
grpc::ServerUnaryReactor* TaskService::Serve(
    grpc::CallbackServerContext* context, Method method, Response* response,
    Logic logic) {
  absl::StatusOr<Caller> caller = Authorize(*context, method);
  if (!caller.ok()) {
    return Reply(context, absl::StatusOr<Response>(caller.status()), response);
  }
  return Reply(context, absl::StatusOr<Response>(logic(*caller)), response);
}

grpc::ServerUnaryReactor* TaskService::CreateTask(
    grpc::CallbackServerContext* context,
    const tasks::v1::CreateTaskRequest* request, Task* response) {
  return ServeWrite(context, Method::kCreate, *request, response);
}

grpc::ServerUnaryReactor* TaskService::GetTask(
    grpc::CallbackServerContext* context,
    const tasks::v1::GetTaskRequest* request, Task* response) {
  return Serve(context, Method::kGet, response,
               [&](const Caller& caller) { return Get(*request, caller); });
}

grpc::ServerUnaryReactor* TaskService::ListTasks(
    grpc::CallbackServerContext* context,
    const tasks::v1::ListTasksRequest* request, ListTasksResponse* response) {
  return Serve(context, Method::kList, response,
               [&](const Caller& caller) { return List(*request, caller); });
}

grpc::ServerUnaryReactor* TaskService::UpdateTask(
    grpc::CallbackServerContext* context,
    const tasks::v1::UpdateTaskRequest* request, Task* response) {
  return ServeWrite(context, Method::kUpdate, *request, response);
}

grpc::ServerUnaryReactor* TaskService::DeleteTask(
    grpc::CallbackServerContext* context,
    const tasks::v1::DeleteTaskRequest* request,
    google::protobuf::Empty* response) {
  return ServeWrite(context, Method::kDelete, *request, response);
}

grpc::ServerUnaryReactor* TaskService::AssignTask(
    grpc::CallbackServerContext* context,
    const tasks::v1::AssignTaskRequest* request, Task* response) {
  return ServeWrite(context, Method::kAssign, *request, response);
}

grpc::ServerUnaryReactor* TaskService::StartTask(
    grpc::CallbackServerContext* context,
    const tasks::v1::StartTaskRequest* request, Task* response) {
  return ServeWrite(context, Method::kStart, *request, response);
}

grpc::ServerUnaryReactor* TaskService::PauseTask(
    grpc::CallbackServerContext* context,
    const tasks::v1::PauseTaskRequest* request, Task* response) {
  return ServeWrite(context, Method::kPause, *request, response);
}

grpc::ServerUnaryReactor* TaskService::ResumeTask(
    grpc::CallbackServerContext* context,
    const tasks::v1::ResumeTaskRequest* request, Task* response) {
  return ServeWrite(context, Method::kResume, *request, response);
}

grpc::ServerUnaryReactor* TaskService::CompleteTask(
    grpc::CallbackServerContext* context,
    const tasks::v1::CompleteTaskRequest* request, Task* response) {
  return ServeWrite(context, Method::kComplete, *request, response);
}

grpc::ServerUnaryReactor* TaskService::CancelTask(
    grpc::CallbackServerContext* context,
    const tasks::v1::CancelTaskRequest* request, Task* response) {
  return ServeWrite(context, Method::kCancel, *request, response);
}

grpc::ServerUnaryReactor* TaskService::CountTasks(
    grpc::CallbackServerContext* context,
    const tasks::v1::CountTasksRequest* request,
    tasks::v1::CountTasksResponse* response) {
  return Serve(context, Method::kCount, response,
               [&](const Caller& caller) { return Count(*request, caller); });
}

grpc::ServerWriteReactor<tasks::v1::WatchTaskCountsResponse>*
TaskService::WatchTaskCounts(grpc::CallbackServerContext* context,
                             const tasks::v1::WatchTaskCountsRequest* request) {
  absl::StatusOr<Caller> caller = Authorize(*context, Method::kWatchCounts);
  if (!caller.ok()) return count_hub_->Refuse(caller.status());
  absl::StatusOr<CountWatchSpec> spec = WatchCounts(*request, *caller);
  if (!spec.ok()) return count_hub_->Refuse(spec.status());
  return count_hub_->Watch(*std::move(spec));
}

grpc::ServerWriteReactor<tasks::v1::BackupDatabaseResponse>*
TaskService::BackupDatabase(grpc::CallbackServerContext* context,
                            const tasks::v1::BackupDatabaseRequest* request) {
  absl::StatusOr<Caller> caller = Authorize(*context, Method::kBackup);
  if (!caller.ok()) return BackupStream::Refuse(caller.status());
  if (caller->scoped()) {
    return BackupStream::Refuse(absl::PermissionDeniedError(
        "BackupDatabase copies every tenant's tasks: it needs an admin token "
        "of every tenant (*), not one of a single tenant"));
  }
  if (options_.backup_scratch_path.empty()) {
    // (Not UNIMPLEMENTED: the edge reads that from gRPC as an undecodable
    // request, server/grpc_status.h.)
    return BackupStream::Refuse(WithReason(
        absl::FailedPreconditionError(
            "this taskd makes no backups: its database is PostgreSQL, backed "
            "up with PostgreSQL's own tools (pg_dump, base backups)"),
        "BACKUP_BY_DATABASE_TOOLS"));
  }
  return BackupStream::Start(store_, options_.backup_scratch_path,
                             &backup_running_);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* TaskService::WatchTasks(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw) {
  absl::StatusOr<Caller> caller = Authorize(*context, Method::kWatch);
  if (!caller.ok()) return watch_hub_->Refuse(caller.status());
  tasks::v1::WatchTasksRequest request;
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (raw->Dump(&slices).ok()) {
    for (const grpc::Slice& slice : slices) {
      bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
  }
  if (!request.ParseFromString(bytes)) {
    return watch_hub_->Refuse(WithReason(
        absl::InvalidArgumentError(
            "request: not a valid tasks.v1.WatchTasksRequest (malformed "
            "bytes, or a string field that is not UTF-8)"),
        "MALFORMED_REQUEST"));
  }
  absl::StatusOr<WatchSpec> spec = Watch(request, *caller);
  if (!spec.ok()) return watch_hub_->Refuse(spec.status());
  return watch_hub_->Watch(*std::move(spec));
}

absl::StatusOr<WatchSpec> TaskService::Watch(
    const tasks::v1::WatchTasksRequest& request, const Caller& caller) {
  // Checks, in the order a caller fixes them.
  if (request.start_revision() < 0) {
    return InvalidRequest("start_revision",
                          absl::StrCat("must not be negative (got ",
                                       request.start_revision(), ")"),
                          "INVALID_FIELD");
  }
  if (request.send_initial_state() && request.start_revision() != 0) {
    return InvalidRequest("start_revision",
                          "must be 0 with send_initial_state (the initial "
                          "state is the current one)",
                          "INVALID_FIELD");
  }
  WatchSpec spec;
  if (request.has_progress_interval()) {
    absl::Duration interval =
        absl::Seconds(request.progress_interval().seconds()) +
        absl::Nanoseconds(request.progress_interval().nanos());
    if (interval < absl::ZeroDuration()) {
      return InvalidRequest("progress_interval", "must not be negative",
                            "INVALID_FIELD");
    }
    spec.progress_interval = interval;
  }
  absl::StatusOr<std::shared_ptr<const FilterExpr>> filter =
      ScopedFilter(request.filter(), caller);
  if (!filter.ok()) return filter.status();
  spec.filter = *std::move(filter);
  spec.start_revision = request.start_revision();
  spec.send_initial_state = request.send_initial_state();
  spec.include_previous = request.include_previous();
  spec.tenant = caller.tenant;
  return spec;
}

absl::StatusOr<tasks::v1::CountTasksResponse> TaskService::Count(
    const tasks::v1::CountTasksRequest& request, const Caller& caller) {
  absl::StatusOr<std::shared_ptr<const FilterExpr>> filter =
      ScopedFilter(request.filter(), caller);
  if (!filter.ok()) return filter.status();
  absl::StatusOr<std::vector<TaskField>> group_by =
      ParseGroupBy({request.group_by().begin(), request.group_by().end()});
  if (!group_by.ok()) {
    return AsFieldError(group_by.status(), "group_by", "INVALID_FIELD");
  }
  absl::StatusOr<CountResult> counted =
      store_->Count(CountQuery{*std::move(filter), *group_by});
  if (!counted.ok()) return counted.status();
  tasks::v1::CountTasksResponse response;
  for (const auto& [key, n] : counted->groups) {
    tasks::v1::TaskCount* group = response.add_groups();
    for (size_t i = 0; i < key.size(); ++i) {
      group->add_values(GroupValueText((*group_by)[i], key[i]));
    }
    group->set_count(n);
  }
  response.set_revision(counted->revision);
  return response;
}

absl::StatusOr<CountWatchSpec> TaskService::WatchCounts(
    const tasks::v1::WatchTaskCountsRequest& request, const Caller& caller) {
  CountWatchSpec spec;
  absl::StatusOr<std::shared_ptr<const FilterExpr>> filter =
      ScopedFilter(request.filter(), caller);
  if (!filter.ok()) return filter.status();
  spec.filter = *std::move(filter);
  absl::StatusOr<std::vector<TaskField>> group_by =
      ParseGroupBy({request.group_by().begin(), request.group_by().end()});
  if (!group_by.ok()) {
    return AsFieldError(group_by.status(), "group_by", "INVALID_FIELD");
  }
  spec.group_by = *std::move(group_by);
  if (request.has_min_interval()) {
    absl::Duration interval = DurationOf(request.min_interval());
    if (interval < absl::ZeroDuration()) {
      return InvalidRequest("min_interval", "must not be negative",
                            "INVALID_FIELD");
    }
    spec.min_interval = interval;
  }
  // Streams asking the same question share one view: the filter as
  // written, the scope, the groups.
  std::vector<std::string> fields;
  for (TaskField field : spec.group_by) {
    fields.push_back(InfoOf(field).proto_name);
  }
  spec.key =
      absl::StrCat("filter=", request.filter(), "\nscope=", caller.tenant,
                   "\ngroup_by=", absl::StrJoin(fields, ","));
  spec.tenant = caller.tenant;
  return spec;
}

absl::StatusOr<AcquireSpec> TaskService::PlanAcquire(
    const tasks::v1::AcquireTaskRequest& request, const Caller& caller) {
  if (absl::Status s = ValidateExecutorId(request.executor_id()); !s.ok()) {
    return s;
  }
  AcquireSpec spec;
  if (request.has_wait()) {
    absl::Duration wait = DurationOf(request.wait());
    if (wait < absl::ZeroDuration()) {
      return InvalidRequest("wait", "must not be negative", "INVALID_FIELD");
    }
    if (wait > options_.max_acquire_wait) {
      // A reason of its own, with the cap, so that a client can adapt.
      std::string what = absl::StrCat(
          "is ", absl::FormatDuration(wait), "; this server waits at most ",
          absl::FormatDuration(options_.max_acquire_wait),
          " (--max_acquire_wait): ask again after that");
      return WithFieldViolation(
          WithReason(
              absl::InvalidArgumentError(absl::StrCat("wait: ", what)),
              "WAIT_TOO_LONG",
              {{"field", "wait"},
               {"max_wait", absl::FormatDuration(options_.max_acquire_wait)}}),
          "wait", what);
    }
    spec.wait = wait;
  }
  absl::StatusOr<std::shared_ptr<const FilterExpr>> filter =
      ScopedFilter(request.filter(), caller);
  if (!filter.ok()) return filter.status();
  spec.filter = *std::move(filter);
  MoveArgs args;
  args.executor_id = request.executor_id();
  spec.assign = [this, args](const Task& current) {
    return ApplyMove(current, Move::kAssign, args, options_.clock->Now());
  };
  return spec;
}

void TaskService::Acquire(
    const tasks::v1::AcquireTaskRequest& request, const Caller& caller,
    std::function<bool()> gone,
    std::function<void(absl::StatusOr<tasks::v1::AcquireTaskResponse>)> done) {
  absl::StatusOr<AcquireSpec> spec = PlanAcquire(request, caller);
  if (!spec.ok()) {
    done(spec.status());
    return;
  }
  spec->gone = std::move(gone);
  dispatcher_->Acquire(*std::move(spec),
                       [this, done = std::move(done)](
                           absl::StatusOr<std::optional<Task>> result) {
                         if (!result.ok()) {
                           done(result.status());
                           return;
                         }
                         tasks::v1::AcquireTaskResponse response;
                         if (result->has_value()) {
                           Task& task = **result;
                           Present(Method::kAssign, &task);
                           *response.mutable_task() = std::move(task);
                         }
                         done(std::move(response));
                       });
}

absl::StatusOr<TaskService::HeartbeatPlan> TaskService::PlanHeartbeat(
    const tasks::v1::HeartbeatTaskRequest& request, const Caller& caller) {
  if (absl::Status s = ValidateTaskRef(request.id(), "id"); !s.ok()) return s;
  if (request.lease_token().empty()) {
    return InvalidRequest("lease_token",
                          "is required (the token AcquireTask or AssignTask "
                          "returned)",
                          "INVALID_FIELD");
  }
  if (request.lease_token().size() > 64) {
    return InvalidRequest("lease_token", "is not a lease token (too long)",
                          "INVALID_LEASE_TOKEN");
  }
  const Task::Progress& progress = request.progress();
  if (progress.current() < 0 || progress.total() < 0) {
    return InvalidRequest("progress", "current and total must not be negative",
                          "INVALID_FIELD");
  }
  if (progress.total() > 0 && progress.current() > progress.total()) {
    return InvalidRequest(
        "progress",
        absl::StrCat("current (", progress.current(),
                     ") must not exceed total (", progress.total(), ")"),
        "INVALID_FIELD");
  }
  // Decide on what the task is now; the write (if any) checks again.
  absl::StatusOr<Task> current = store_->Get(request.id());
  if (!current.ok()) return current.status();
  if (absl::Status s = CheckTenant(*current, request.id(), caller); !s.ok()) {
    return s;
  }
  if (absl::Status s = leases_.Check(*current, request.lease_token());
      !s.ok()) {
    return s;
  }
  const absl::Time now = options_.clock->Now();
  const bool new_progress =
      request.has_progress() &&
      (progress.current() != current->progress().current() ||
       progress.total() != current->progress().total());
  // The first report at once, then at most one per progress_interval.
  const bool record_progress =
      new_progress &&
      (!current->has_progress() ||
       now - TimeOf(current->updated_at()) >= options_.progress_interval);
  HeartbeatPlan plan;
  if (!record_progress && !(store_->Shared() && HeartbeatLeased(*current))) {
    // The renewal is the timers' (in memory): no store write.
    plan.answer = HeartbeatAnswer(*current);
    if (HeartbeatLeased(*current) && timers_ != nullptr) {
      *plan.answer.mutable_lease_expires_at() =
          ToTimestamp(timers_->Renew(*current, now));
    }
    return plan;
  }
  if (!record_progress) {
    // Several servers: the lease is kept in the store, where whichever
    // server runs the timers reads it. A Touch: no revision, nothing for
    // watchers.
    TaskMutation renew = [this, id = request.id(),
                          token = request.lease_token(),
                          caller](const Task& task) -> absl::StatusOr<Task> {
      if (absl::Status s = CheckTenant(task, id, caller); !s.ok()) return s;
      if (absl::Status s = leases_.Check(task, token); !s.ok()) return s;
      return ExtendLease(task, options_.clock->Now());
    };
    plan.write = TaskWrite{TaskWrite::Touch{request.id(), std::move(renew)}};
    return plan;
  }
  // Progress is a change watchers see; the new lease goes with it (and
  // reaches the timers with the commit).
  TaskMutation mutation = [this, id = request.id(),
                           token = request.lease_token(), caller,
                           progress = request.progress()](
                              const Task& task) -> absl::StatusOr<Task> {
    if (absl::Status s = CheckTenant(task, id, caller); !s.ok()) return s;
    if (absl::Status s = leases_.Check(task, token); !s.ok()) return s;
    const absl::Time now = options_.clock->Now();
    Task next = ExtendLease(task, now);
    *next.mutable_progress() = progress;
    *next.mutable_updated_at() = ToTimestamp(now);
    return next;
  };
  plan.write = TaskWrite{TaskWrite::Update{request.id(), std::move(mutation)}};
  return plan;
}

absl::StatusOr<tasks::v1::HeartbeatTaskResponse> TaskService::Heartbeat(
    const tasks::v1::HeartbeatTaskRequest& request, const Caller& caller) {
  absl::StatusOr<HeartbeatPlan> plan = PlanHeartbeat(request, caller);
  if (!plan.ok()) return plan.status();
  if (!plan->write.has_value()) return plan->answer;
  absl::StatusOr<Task> task = store_->WriteAndWait(*std::move(plan->write));
  if (!task.ok()) return task.status();
  return HeartbeatAnswer(*task);
}

grpc::ServerUnaryReactor* TaskService::AcquireTask(
    grpc::CallbackServerContext* context,
    const tasks::v1::AcquireTaskRequest* request,
    tasks::v1::AcquireTaskResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<Caller> caller = Authorize(*context, Method::kAcquire);
  if (!caller.ok()) {
    reactor->Finish(ToGrpcStatus(caller.status()));
    return reactor;
  }
  Acquire(
      *request, *caller, [context] { return context->IsCancelled(); },
      [reactor,
       response](absl::StatusOr<tasks::v1::AcquireTaskResponse> result) {
        if (result.ok()) *response = *std::move(result);
        reactor->Finish(ToGrpcStatus(result.status()));
      });
  return reactor;
}

grpc::ServerUnaryReactor* TaskService::HeartbeatTask(
    grpc::CallbackServerContext* context,
    const tasks::v1::HeartbeatTaskRequest* request,
    tasks::v1::HeartbeatTaskResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<Caller> caller = Authorize(*context, Method::kHeartbeat);
  absl::StatusOr<HeartbeatPlan> plan =
      caller.ok() ? PlanHeartbeat(*request, *caller)
                  : absl::StatusOr<HeartbeatPlan>(caller.status());
  if (!plan.ok() || !plan->write.has_value()) {
    if (plan.ok()) *response = std::move(plan->answer);
    reactor->Finish(ToGrpcStatus(plan.status()));
    return reactor;
  }
  store_->Write(*std::move(plan->write),
                [reactor, response](absl::StatusOr<Task> result) {
                  if (result.ok()) *response = HeartbeatAnswer(*result);
                  reactor->Finish(ToGrpcStatus(result.status()));
                });
  return reactor;
}

}  // namespace taskd
