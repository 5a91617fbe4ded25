#include "server/task_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/error_details.h"
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

}  // namespace

struct TaskService::MoveRequest {
  const std::string& id;
  const std::string& etag;
  Move move;
  MoveArgs args;
};

TaskService::TaskService(TaskStore* store, WatchHub* watch_hub,
                         Authorizer* authorizer,
                         const TaskServiceOptions& options)
    : store_(store),
      watch_hub_(watch_hub),
      authorizer_(authorizer),
      options_(options),
      page_tokens_(store->InstanceSecret()),
      deadlines_(options.clock) {}

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
  task->set_uuid(NewUuid());
  if (task->id().empty()) task->set_id(task->uuid());
  task->set_state(Task::enqueued);
  google::protobuf::Timestamp now = ToTimestamp(options_.clock->Now());
  *task->mutable_enqueued_at() = now;
  *task->mutable_updated_at() = now;
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
  TaskMutation mutation = [this, id = request.id, etag = request.etag,
                           move = request.move, args = request.args, caller](
                              const Task& current) -> absl::StatusOr<Task> {
    if (absl::Status s = CheckTenant(current, id, caller); !s.ok()) return s;
    if (absl::Status s = CheckEtag(current, etag); !s.ok()) return s;
    return ApplyMove(current, move, args, options_.clock->Now());
  };
  return TaskWrite{TaskWrite::Update{request.id, std::move(mutation)}};
}

absl::StatusOr<Task> TaskService::Assign(
    const tasks::v1::AssignTaskRequest& request, const Caller& caller) {
  return RunSync(request, caller);
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
  return PlanMove({request.id(), request.etag(), Move::kStart, {}}, caller);
}

absl::StatusOr<Task> TaskService::Pause(
    const tasks::v1::PauseTaskRequest& request, const Caller& caller) {
  return RunSync(request, caller);
}

absl::StatusOr<TaskWrite> TaskService::Plan(
    const tasks::v1::PauseTaskRequest& request, const Caller& caller) {
  return PlanMove({request.id(), request.etag(), Move::kPause, {}}, caller);
}

absl::StatusOr<Task> TaskService::Resume(
    const tasks::v1::ResumeTaskRequest& request, const Caller& caller) {
  return RunSync(request, caller);
}

absl::StatusOr<TaskWrite> TaskService::Plan(
    const tasks::v1::ResumeTaskRequest& request, const Caller& caller) {
  return PlanMove({request.id(), request.etag(), Move::kResume, {}}, caller);
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
  return PlanMove({request.id(), request.etag(), Move::kComplete, args},
                  caller);
}

absl::StatusOr<Task> TaskService::Cancel(
    const tasks::v1::CancelTaskRequest& request, const Caller& caller) {
  return RunSync(request, caller);
}

absl::StatusOr<TaskWrite> TaskService::Plan(
    const tasks::v1::CancelTaskRequest& request, const Caller& caller) {
  return PlanMove({request.id(), request.etag(), Move::kCancel, {}}, caller);
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
  store_->Write(*std::move(write), [this, outcome, reactor,
                                    response](absl::StatusOr<Task> result) {
    if (outcome->timer != 0) deadlines_.Cancel(outcome->timer);
    if (outcome->finished.exchange(true)) return;  // the deadline won
    if (result.ok()) SetResponse(*std::move(result), response);
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
  spec.tenant = caller.tenant;
  return spec;
}

}  // namespace taskd
