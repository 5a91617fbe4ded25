// End to end: a real taskd server on a free port over a real SQLite file,
// spoken to through the C++ client library.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/error_details.h"
#include "client/task_client.h"
#include "client/task_format.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/task_server.h"
#include "tests/test_server.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using tasks::v1::ListTasksRequest;
using tasks::v1::Task;
using ::testing::HasSubstr;

constexpr char kTenant[] = "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
constexpr char kPolicy[] = "7d3b1f2a-9c8e-4a5b-8c7d-6e5f4a3b2c1d";

class TaskServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TaskServerOptions options;
    options.store.path = dir_.File("taskd.db");
    options.service.max_page_size = 1000;
    absl::Status started = taskd_.Start(options);
    ASSERT_TRUE(started.ok()) << started;
  }
  void TearDown() override { taskd_.Stop(absl::Seconds(1)); }

  // The same port and database, with what taskd_.options() says now.
  void Restart() {
    absl::Status restarted = taskd_.Restart(absl::Seconds(1));
    ASSERT_TRUE(restarted.ok()) << restarted;
  }

  Task Backup(const std::string& id = "") {
    Task task;
    task.set_id(id);
    task.set_type("backup");
    task.set_tenant_id(kTenant);
    return task;
  }

  Task MustCreate(const std::string& id = "") {
    absl::StatusOr<Task> task = taskd_.client->Create(Backup(id));
    EXPECT_TRUE(task.ok()) << task.status();
    return task.ok() ? *task : Task();
  }

  std::vector<std::string> ListAllIds(int page_size) {
    std::vector<std::string> ids;
    ListTasksRequest request;
    request.set_page_size(page_size);
    while (true) {
      absl::StatusOr<tasks::v1::ListTasksResponse> page =
          taskd_.client->List(request);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      for (const Task& t : page->tasks()) ids.push_back(t.id());
      if (page->next_page_token().empty()) break;
      request.set_page_token(page->next_page_token());
    }
    return ids;
  }

  testing::TempDir dir_;
  testing::InProcessTaskd taskd_;
};

void ExpectCode(const absl::Status& status, absl::StatusCode code,
                const std::string& mentions) {
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_THAT(status.message(), HasSubstr(mentions));
}

TEST_F(TaskServiceTest, CreateAssignsServerFields) {
  Task request = Backup();
  request.set_policy_id(kPolicy);
  absl::StatusOr<Task> task = taskd_.client->Create(request);
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->state(), Task::enqueued);
  EXPECT_EQ(task->priority(), "normal");
  EXPECT_EQ(task->id(), task->uuid());
  EXPECT_EQ(task->uuid().size(), 36u);
  EXPECT_TRUE(task->has_enqueued_at());
  EXPECT_EQ(task->enqueued_at().SerializeAsString(),
            task->updated_at().SerializeAsString());
  EXPECT_FALSE(task->has_started_at());
  EXPECT_GT(task->revision(), 0);
  EXPECT_FALSE(task->etag().empty());
  EXPECT_EQ(task->policy_id(), kPolicy);

  absl::StatusOr<Task> got = taskd_.client->Get(task->id());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->SerializeAsString(), task->SerializeAsString());
}

TEST_F(TaskServiceTest, CreateWithOwnIdAndDuplicate) {
  Task first = MustCreate("task-uuid-001");
  EXPECT_EQ(first.id(), "task-uuid-001");
  EXPECT_NE(first.uuid(), first.id());
  ExpectCode(taskd_.client->Create(Backup("task-uuid-001")).status(),
             absl::StatusCode::kAlreadyExists, "task-uuid-001");
  absl::StatusOr<Task> by_uuid = taskd_.client->Get(first.uuid());
  ASSERT_TRUE(by_uuid.ok());
  EXPECT_EQ(by_uuid->id(), "task-uuid-001");
}

TEST_F(TaskServiceTest, CreateRejectsBadInputNamingTheField) {
  Task no_type = Backup();
  no_type.clear_type();
  ExpectCode(taskd_.client->Create(no_type).status(),
             absl::StatusCode::kInvalidArgument, "task.type");
  Task with_state = Backup();
  with_state.set_state(Task::started);
  ExpectCode(taskd_.client->Create(with_state).status(),
             absl::StatusCode::kInvalidArgument, "task.state");
  Task bad_tenant = Backup();
  bad_tenant.set_tenant_id("tenant-1");
  ExpectCode(taskd_.client->Create(bad_tenant).status(),
             absl::StatusCode::kInvalidArgument, "task.tenant_id");
  Task bad_priority = Backup();
  bad_priority.set_priority("urgent");
  ExpectCode(taskd_.client->Create(bad_priority).status(),
             absl::StatusCode::kInvalidArgument, "task.priority");
  tasks::v1::CreateTaskRequest empty;
  grpc::ClientContext context;
  Task response;
  grpc::Status status =
      taskd_.client->stub()->CreateTask(&context, empty, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(taskd_.server->store()->CurrentRevision(), 0);
}

TEST_F(TaskServiceTest, RetryWithSameRequestIdReturnsTheFirstTask) {
  absl::StatusOr<Task> first = taskd_.client->Create(Backup(), "req-42");
  ASSERT_TRUE(first.ok());
  absl::StatusOr<Task> retry = taskd_.client->Create(Backup(), "req-42");
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(retry->id(), first->id());
  EXPECT_EQ(ListAllIds(50).size(), 1u);
  absl::StatusOr<Task> other = taskd_.client->Create(Backup(), "req-43");
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->id(), first->id());
}

TEST_F(TaskServiceTest, GetErrors) {
  ExpectCode(taskd_.client->Get("missing").status(),
             absl::StatusCode::kNotFound, "missing");
  ExpectCode(taskd_.client->Get("").status(),
             absl::StatusCode::kInvalidArgument, "id");
}

TEST_F(TaskServiceTest, FullLifeCycle) {
  Task task = MustCreate();
  absl::StatusOr<Task> assigned = taskd_.client->Assign(task.id(), "agent-7");
  ASSERT_TRUE(assigned.ok()) << assigned.status();
  EXPECT_EQ(assigned->state(), Task::assigned);
  EXPECT_EQ(assigned->executor_id(), "agent-7");
  const std::string lease = assigned->lease_token();
  EXPECT_FALSE(lease.empty());
  absl::StatusOr<Task> started = taskd_.client->Start(task.id(), lease);
  ASSERT_TRUE(started.ok());
  EXPECT_TRUE(started->has_started_at());
  EXPECT_TRUE(started->lease_token().empty());  // only the assignment's
  absl::StatusOr<Task> paused = taskd_.client->Pause(task.id(), lease);
  ASSERT_TRUE(paused.ok());
  EXPECT_EQ(paused->state(), Task::paused);
  absl::StatusOr<Task> resumed = taskd_.client->Resume(task.id(), lease);
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(resumed->state(), Task::started);
  absl::StatusOr<Task> completed =
      taskd_.client->Complete(task.id(), Task::ok, lease);
  ASSERT_TRUE(completed.ok());
  EXPECT_EQ(completed->state(), Task::completed);
  EXPECT_EQ(completed->result_code(), Task::ok);
  EXPECT_TRUE(completed->has_completed_at());
  // Each move got its own revision.
  EXPECT_LT(assigned->revision(), started->revision());
  EXPECT_LT(started->revision(), paused->revision());
  EXPECT_LT(resumed->revision(), completed->revision());
  // completed is final.
  ExpectCode(taskd_.client->Cancel(task.id()).status(),
             absl::StatusCode::kFailedPrecondition, "completed");
  ExpectCode(taskd_.client->Start(task.id(), lease).status(),
             absl::StatusCode::kFailedPrecondition, "completed");
}

TEST_F(TaskServiceTest, IllegalMovesNameStateAndMove) {
  Task task = MustCreate();
  ExpectCode(taskd_.client->Start(task.id(), "").status(),
             absl::StatusCode::kFailedPrecondition, "enqueued");
  ExpectCode(taskd_.client->Pause(task.id(), "").status(),
             absl::StatusCode::kFailedPrecondition, "pause");
  ExpectCode(taskd_.client->Resume(task.id(), "").status(),
             absl::StatusCode::kFailedPrecondition, "resume");
  ExpectCode(taskd_.client->Complete(task.id(), Task::ok, "").status(),
             absl::StatusCode::kFailedPrecondition, "complete");
  ExpectCode(taskd_.client->Assign(task.id(), "").status(),
             absl::StatusCode::kInvalidArgument, "executor_id");
  ExpectCode(taskd_.client->Complete(task.id(), Task::cancelled, "").status(),
             absl::StatusCode::kInvalidArgument, "result_code");
  ExpectCode(taskd_.client->Start("nope", "").status(),
             absl::StatusCode::kNotFound, "nope");
  absl::StatusOr<Task> cancelled = taskd_.client->Cancel(task.id());
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->result_code(), Task::cancelled);
}

TEST_F(TaskServiceTest, RacingMovesExactlyOneWins) {
  for (int round = 0; round < 5; ++round) {
    Task task = MustCreate();
    absl::StatusOr<Task> assigned = taskd_.client->Assign(task.id(), "agent");
    ASSERT_TRUE(assigned.ok());
    const std::string lease = assigned->lease_token();
    std::atomic<int> won{0}, refused{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
      threads.emplace_back([&, i] {
        absl::Status status =
            i % 2
                ? taskd_.client->Start(task.id(), lease).status()
                : taskd_.client->Cancel(task.id(), "", /*force=*/true).status();
        // Start loses only to a cancel; cancel loses only to a cancel.
        if (status.ok()) {
          ++won;
        } else if (status.code() == absl::StatusCode::kFailedPrecondition) {
          ++refused;
        }
      });
    }
    for (auto& t : threads) t.join();
    // Starts can win once and then cancels may still win once; what must
    // never happen is two starts or two cancels both winning.
    absl::StatusOr<Task> final_task = taskd_.client->Get(task.id());
    ASSERT_TRUE(final_task.ok());
    EXPECT_EQ(won + refused, 8);
    EXPECT_LE(won, 2);
    EXPECT_EQ(final_task->state(), Task::completed);
  }
  // The pure case: eight starts on one assigned task.
  Task task = MustCreate();
  absl::StatusOr<Task> assigned = taskd_.client->Assign(task.id(), "agent");
  ASSERT_TRUE(assigned.ok());
  const std::string lease = assigned->lease_token();
  std::atomic<int> won{0}, refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      absl::Status status = taskd_.client->Start(task.id(), lease).status();
      if (status.ok()) ++won;
      if (status.code() == absl::StatusCode::kFailedPrecondition) ++refused;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(won, 1);
  EXPECT_EQ(refused, 7);
}

TEST_F(TaskServiceTest, UpdateWithMaskAndEtag) {
  Task task = MustCreate();
  Task patch;
  patch.set_id(task.id());
  patch.set_priority("high");
  patch.set_type("ignored-not-in-mask");
  absl::StatusOr<Task> updated =
      taskd_.client->Update(patch, {"priority"}, task.etag());
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->priority(), "high");
  EXPECT_EQ(updated->type(), "backup");
  EXPECT_NE(updated->etag(), task.etag());
  // The old etag is stale now.
  patch.set_priority("low");
  ExpectCode(taskd_.client->Update(patch, {"priority"}, task.etag()).status(),
             absl::StatusCode::kAborted, "etag");
  ExpectCode(taskd_.client->Update(patch, {"state"}).status(),
             absl::StatusCode::kInvalidArgument, "state");
  ExpectCode(taskd_.client->Update(patch, {"tenant_id"}).status(),
             absl::StatusCode::kInvalidArgument, "tenant_id");
  EXPECT_EQ(taskd_.client->Get(task.id())->priority(), "high");
  // Moves honour etags too.
  ExpectCode(taskd_.client->Assign(task.id(), "a", task.etag()).status(),
             absl::StatusCode::kAborted, "etag");
  EXPECT_TRUE(taskd_.client->Assign(task.id(), "a", updated->etag()).ok());
}

TEST_F(TaskServiceTest, DeleteWithEtag) {
  Task task = MustCreate();
  ExpectCode(taskd_.client->Delete(task.id(), "r999999"),
             absl::StatusCode::kAborted, "etag");
  EXPECT_TRUE(taskd_.client->Delete(task.id(), task.etag()).ok());
  ExpectCode(taskd_.client->Get(task.id()).status(),
             absl::StatusCode::kNotFound, task.id());
  ExpectCode(taskd_.client->Delete(task.id()), absl::StatusCode::kNotFound,
             task.id());
}

TEST_F(TaskServiceTest, ListPagesEveryTaskOnce) {
  std::vector<std::string> created;
  for (int i = 0; i < 23; ++i) created.push_back(MustCreate().id());
  EXPECT_EQ(ListAllIds(5), created);  // enqueuedAt, id order = creation order
  EXPECT_EQ(ListAllIds(0), created);
  ListTasksRequest negative;
  negative.set_page_size(-1);
  ExpectCode(taskd_.client->List(negative).status(),
             absl::StatusCode::kInvalidArgument, "page_size");
}

TEST_F(TaskServiceTest, PageSizeIsCapped) {
  taskd_.options().server.service.max_page_size = 4;
  Restart();
  for (int i = 0; i < 6; ++i) MustCreate();
  ListTasksRequest request;
  request.set_page_size(1'000'000);
  absl::StatusOr<tasks::v1::ListTasksResponse> page =
      taskd_.client->List(request);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->tasks_size(), 4);
  EXPECT_FALSE(page->next_page_token().empty());
  // Asking for no size gets the default (50), capped as well.
  request.set_page_size(0);
  page = taskd_.client->List(request);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->tasks_size(), 4);
}

TEST_F(TaskServiceTest, BadPageTokensAreInvalidArgument) {
  for (int i = 0; i < 3; ++i) MustCreate();
  ListTasksRequest request;
  request.set_page_size(1);
  absl::StatusOr<tasks::v1::ListTasksResponse> page =
      taskd_.client->List(request);
  ASSERT_TRUE(page.ok());
  std::string token = page->next_page_token();
  ASSERT_FALSE(token.empty());
  for (std::string bad : {std::string("garbage"),
                          token.substr(0, token.size() / 2), token + "x"}) {
    request.set_page_token(bad);
    ExpectCode(taskd_.client->List(request).status(),
               absl::StatusCode::kInvalidArgument, "page_token");
  }
  std::string edited = token;
  edited[edited.size() / 2] = edited[edited.size() / 2] == 'A' ? 'B' : 'A';
  request.set_page_token(edited);
  ExpectCode(taskd_.client->List(request).status(),
             absl::StatusCode::kInvalidArgument, "page_token");
  request.set_page_token(token);
  request.set_order_by("enqueuedAt desc");
  ExpectCode(taskd_.client->List(request).status(),
             absl::StatusCode::kInvalidArgument, "page_token");
}

TEST_F(TaskServiceTest, PagingUnderConcurrentInsertsNeverSkipsNorRepeats) {
  std::vector<std::string> before;
  for (int i = 0; i < 40; ++i) before.push_back(MustCreate().id());
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; i < 40 && !stop; ++i) MustCreate();
  });
  std::vector<std::string> seen = ListAllIds(3);
  stop = true;
  writer.join();
  std::set<std::string> unique(seen.begin(), seen.end());
  EXPECT_EQ(unique.size(), seen.size()) << "a task was listed twice";
  for (const std::string& id : before) {
    EXPECT_EQ(unique.count(id), 1u) << id << " was skipped";
  }
}

TEST_F(TaskServiceTest, RestartKeepsEveryTask) {
  std::vector<Task> created;
  for (int i = 0; i < 10; ++i) created.push_back(MustCreate());
  ASSERT_TRUE(taskd_.client->Assign(created[0].id(), "agent-1").ok());
  int64_t revision = taskd_.server->store()->CurrentRevision();
  Restart();
  EXPECT_EQ(taskd_.server->store()->CurrentRevision(), revision);
  EXPECT_EQ(ListAllIds(4).size(), 10u);
  absl::StatusOr<Task> first = taskd_.client->Get(created[0].id());
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->state(), Task::assigned);
  absl::StatusOr<Task> next = taskd_.client->Create(Backup());
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->revision(), revision + 1);
}

TEST_F(TaskServiceTest, HealthReportsServing) {
  auto health = grpc::health::v1::Health::NewStub(taskd_.channel);
  for (const char* service : {"", "tasks.v1.TaskService"}) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(health->Check(&context, request, &response).ok());
    EXPECT_EQ(response.status(),
              grpc::health::v1::HealthCheckResponse::SERVING);
  }
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("no.such.Service");
  grpc::health::v1::HealthCheckResponse response;
  EXPECT_EQ(health->Check(&context, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(TaskServiceTest, HealthWatchEndsOnShutdown) {
  auto health = grpc::health::v1::Health::NewStub(taskd_.channel);
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  auto reader = health->Watch(&context, request);
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  std::thread stopper([&] { taskd_.server->Shutdown(absl::Seconds(5)); });
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_FALSE(reader->Read(&response));
  reader->Finish();
  stopper.join();
}

TEST_F(TaskServiceTest, HealthWatchOfAnUnknownServiceSaysSo) {
  auto health = grpc::health::v1::Health::NewStub(taskd_.channel);
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("no.such.Service");
  auto reader = health->Watch(&context, request);
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.status(),
            grpc::health::v1::HealthCheckResponse::SERVICE_UNKNOWN);
  std::thread stopper([&] { taskd_.server->Shutdown(absl::Seconds(5)); });
  // Shutdown ends the stream without claiming the unknown service changed.
  while (reader->Read(&response)) {
    EXPECT_EQ(response.status(),
              grpc::health::v1::HealthCheckResponse::SERVICE_UNKNOWN);
  }
  reader->Finish();
  stopper.join();
}

TEST_F(TaskServiceTest, TasksInEveryStateValidateAgainstTheSchema) {
  std::vector<Task> tasks;
  Task enqueued = MustCreate("enqueued-1");
  tasks.push_back(enqueued);
  Task t = MustCreate("assigned-1");
  tasks.push_back(*taskd_.client->Assign(t.id(), "agent-1"));
  auto lease_of = [&](const Task& task) {
    absl::StatusOr<Task> assigned = taskd_.client->Assign(task.id(), "agent-1");
    return assigned.ok() ? assigned->lease_token() : std::string();
  };
  t = MustCreate("started-1");
  tasks.push_back(*taskd_.client->Start(t.id(), lease_of(t)));
  t = MustCreate("paused-1");
  std::string lease = lease_of(t);
  taskd_.client->Start(t.id(), lease).IgnoreError();
  tasks.push_back(*taskd_.client->Pause(t.id(), lease));
  for (Task::ResultCode code : {Task::ok, Task::error, Task::warning,
                                Task::timedout, Task::abandoned}) {
    t = MustCreate(absl::StrCat("completed-", Task::ResultCode_Name(code)));
    lease = lease_of(t);
    taskd_.client->Start(t.id(), lease).IgnoreError();
    tasks.push_back(*taskd_.client->Complete(t.id(), code, lease));
  }
  t = MustCreate("cancelled-1");
  tasks.push_back(*taskd_.client->Cancel(t.id()));
  std::string lines;
  std::set<std::string> states;
  for (const Task& task : tasks) {
    std::string json = ToJson(task, false);
    absl::StrAppend(&lines, json, "\n");
    states.insert(Task::State_Name(task.state()));
  }
  EXPECT_EQ(states.size(), 5u);
  // The JSON spells fields and enum values exactly as the schema does.
  EXPECT_THAT(lines, HasSubstr("\"result_code\":\"timedout\""));
  EXPECT_THAT(lines, HasSubstr("\"state\":\"paused\""));
  EXPECT_THAT(lines, HasSubstr("\"enqueuedAt\":\""));
  EXPECT_THAT(lines, HasSubstr("\"tenant_id\":\""));
  std::string out, err;
  int rc = testing::RunCommand(
      {"/usr/bin/python3", TASKD_SOURCE_DIR "/tests/validate_task_json.py",
       TASKD_SOURCE_DIR "/tests/data/acronis-task-schema.json"},
      lines, &out, &err);
  EXPECT_EQ(rc, 0) << out << err;
  EXPECT_THAT(out, HasSubstr("10 task(s) checked, 0 problem(s)"));
}

// The google.rpc.Status details of a failed call.
struct Details {
  std::string reason;
  std::map<std::string, std::string> metadata;
  std::vector<std::string> bad_fields;
};
Details DetailsOf(const grpc::Status& status) {
  Details details;
  google::rpc::Status rpc_status;
  EXPECT_TRUE(rpc_status.ParseFromString(status.error_details()));
  EXPECT_EQ(rpc_status.code(), static_cast<int>(status.error_code()));
  for (const google::protobuf::Any& any : rpc_status.details()) {
    google::rpc::ErrorInfo info;
    google::rpc::BadRequest bad_request;
    if (any.UnpackTo(&info)) {
      details.reason = info.reason();
      EXPECT_EQ(info.domain(), "taskd");
      details.metadata.insert(info.metadata().begin(), info.metadata().end());
    } else if (any.UnpackTo(&bad_request)) {
      for (const auto& v : bad_request.field_violations()) {
        details.bad_fields.push_back(v.field());
      }
    }
  }
  return details;
}

TEST_F(TaskServiceTest, ErrorsCarryReasonsAndFieldViolations) {
  auto stub = tasks::v1::TaskService::NewStub(taskd_.channel);
  Task task = MustCreate("t-1");
  {
    grpc::ClientContext context;
    tasks::v1::StartTaskRequest request;
    request.set_id("t-1");
    Task response;
    grpc::Status status = stub->StartTask(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    Details details = DetailsOf(status);
    EXPECT_EQ(details.reason, "INVALID_TRANSITION");
    EXPECT_EQ(details.metadata["state"], "enqueued");
    EXPECT_EQ(details.metadata["move"], "start");
  }
  {
    grpc::ClientContext context;
    tasks::v1::AssignTaskRequest request;
    request.set_id("t-1");
    request.set_executor_id("a");
    request.set_etag("r12345");
    Task response;
    Details details = DetailsOf(stub->AssignTask(&context, request, &response));
    EXPECT_EQ(details.reason, "ETAG_MISMATCH");
    EXPECT_EQ(details.metadata["etag"], task.etag());
  }
  {
    grpc::ClientContext context;
    tasks::v1::CreateTaskRequest request;
    request.mutable_task()->set_type("backup");
    request.mutable_task()->set_policy_id("nope");
    Task response;
    Details details = DetailsOf(stub->CreateTask(&context, request, &response));
    EXPECT_EQ(details.reason, "INVALID_FIELD");
    EXPECT_EQ(details.bad_fields, std::vector<std::string>{"task.policy_id"});
  }
  {
    grpc::ClientContext context;
    tasks::v1::ListTasksRequest request;
    request.set_filter("state = \"begun\"");
    tasks::v1::ListTasksResponse response;
    Details details = DetailsOf(stub->ListTasks(&context, request, &response));
    EXPECT_EQ(details.reason, "INVALID_FILTER");
    EXPECT_EQ(details.bad_fields, std::vector<std::string>{"filter"});
  }
  {
    grpc::ClientContext context;
    tasks::v1::GetTaskRequest request;
    request.set_id("missing");
    Task response;
    Details details = DetailsOf(stub->GetTask(&context, request, &response));
    EXPECT_EQ(details.reason, "TASK_NOT_FOUND");
  }
}

// TaskClient keeps the details: the reason and metadata of the ErrorInfo and
// the BadRequest's fields come back as the payloads base/error_details.h
// reads.
TEST_F(TaskServiceTest, TaskClientKeepsReasonsAndFieldViolations) {
  MustCreate("t-1");
  absl::Status invalid = taskd_.client->Start("t-1", "").status();
  EXPECT_EQ(invalid.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(invalid), "INVALID_TRANSITION");
  absl::optional<absl::Cord> info_payload = invalid.GetPayload(kErrorInfoUrl);
  ASSERT_TRUE(info_payload.has_value());
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(info.ParseFromString(std::string(*info_payload)));
  EXPECT_EQ(info.domain(), "taskd");
  EXPECT_EQ(info.metadata().at("move"), "start");

  Task bad = Backup();
  bad.set_policy_id("nope");
  absl::Status bad_field = taskd_.client->Create(bad).status();
  EXPECT_EQ(ReasonOf(bad_field), "INVALID_FIELD");
  absl::optional<absl::Cord> bad_payload = bad_field.GetPayload(kBadRequestUrl);
  ASSERT_TRUE(bad_payload.has_value());
  google::rpc::BadRequest bad_request;
  ASSERT_TRUE(bad_request.ParseFromString(std::string(*bad_payload)));
  ASSERT_EQ(bad_request.field_violations_size(), 1);
  EXPECT_EQ(bad_request.field_violations(0).field(), "task.policy_id");

  EXPECT_EQ(ReasonOf(taskd_.client->Get("missing").status()), "TASK_NOT_FOUND");
  EXPECT_EQ(ReasonOf(taskd_.client->Get("t-1").status()), "");
}

}  // namespace
}  // namespace taskd
