// Tokens, roles and tenant isolation through a real server; the limits on
// streams and request sizes.
#include "server/auth.h"

#include <fstream>
#include <map>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "client/task_client.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/test_server.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using tasks::v1::WatchTasksRequest;
using tasks::v1::WatchTasksResponse;
using ::testing::HasSubstr;

constexpr char kTenantA[] = "aaaaaaaa-0000-4000-8000-000000000001";
constexpr char kTenantB[] = "bbbbbbbb-0000-4000-8000-000000000002";

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteTokens({{"viewer-a", kTenantA, "viewer"},
                 {"issuer-a", kTenantA, "issuer"},
                 {"executor-a", kTenantA, "executor"},
                 {"admin-a", kTenantA, "admin"},
                 {"admin-b", kTenantB, "admin"},
                 {"root", "*", "admin"}});
    StartServer();
  }
  void TearDown() override { taskd_.Stop(absl::Seconds(2)); }

  void WriteTokens(const std::vector<std::vector<std::string>>& tokens) {
    std::ofstream out(dir_.File("tokens"));
    out << "# test tokens\n\n";
    for (const auto& t : tokens) {
      out << Authorizer::HashToken(t[0]) << " " << t[1] << "  " << t[2] << "\n";
    }
  }

  void StartServer() {
    TaskServerOptions options;
    options.store.path = dir_.File("taskd.db");
    options.store.synchronous_full = false;
    options.auth_tokens_path = dir_.File("tokens");
    options.watch.max_watchers = 100;
    options.watch.max_watchers_per_tenant = 50;
    absl::Status started = taskd_.Start(options);
    ASSERT_TRUE(started.ok()) << started;
  }

  TaskClient As(const std::string& token) {
    TaskClient::Options options;
    options.bearer_token = token;
    return TaskClient(taskd_.channel, options);
  }

  // Opens a watch as `token`.
  struct Stream {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<WatchTasksResponse>> reader;
  };
  std::unique_ptr<Stream> Watch(const std::string& token,
                                const WatchTasksRequest& request) {
    auto stream = std::make_unique<Stream>();
    if (!token.empty()) {
      stream->context.AddMetadata("authorization", "Bearer " + token);
    }
    stream->context.set_deadline(
        absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    stream->reader = tasks::v1::TaskService::NewStub(taskd_.channel)
                         ->WatchTasks(&stream->context, request);
    return stream;
  }

  testing::TempDir dir_;
  testing::InProcessTaskd taskd_;
};

// Calls `method` as `client` on task `id`, with arguments that pass
// validation, and returns the status.
absl::Status CallMethod(TaskClient& client, Method method,
                        const std::string& id) {
  switch (method) {
    case Method::kGet:
      return client.Get(id).status();
    case Method::kList:
      return client.List({}).status();
    case Method::kWatch:
    case Method::kBackup:
      return absl::OkStatus();  // streams: tested apart
    case Method::kCreate: {
      Task task;
      task.set_type("backup");
      return client.Create(task).status();
    }
    case Method::kUpdate: {
      Task task;
      task.set_id(id);
      task.set_priority("high");
      return client.Update(task, {"priority"}).status();
    }
    case Method::kDelete:
      return client.Delete(id);
    case Method::kCancel:
      return client.Cancel(id).status();
    case Method::kAssign:
      return client.Assign(id, "agent").status();
    case Method::kStart:
      return client.Start(id, "").status();
    case Method::kPause:
      return client.Pause(id, "").status();
    case Method::kResume:
      return client.Resume(id, "").status();
    case Method::kComplete:
      return client.Complete(id, Task::ok, "").status();
    case Method::kAcquire:
      return client.Acquire("agent", "type = \"no-such-type\"").status();
    case Method::kHeartbeat:
      return client.Heartbeat(id, "1.AAAAAAAAAAAAAAAAAAAAAA").status();
  }
  return absl::InternalError("unreachable");
}

TEST_F(AuthTest, EveryRoleAndMethod) {
  const std::map<std::string, std::set<Method>> allowed = {
      {"viewer-a", {Method::kGet, Method::kList, Method::kWatch}},
      {"issuer-a",
       {Method::kGet, Method::kList, Method::kWatch, Method::kCreate,
        Method::kUpdate, Method::kDelete, Method::kCancel}},
      {"executor-a",
       {Method::kGet, Method::kList, Method::kWatch, Method::kAssign,
        Method::kStart, Method::kPause, Method::kResume, Method::kComplete,
        Method::kAcquire, Method::kHeartbeat}},
  };
  const Method all[] = {Method::kGet,      Method::kList,     Method::kCreate,
                        Method::kUpdate,   Method::kDelete,   Method::kCancel,
                        Method::kAssign,   Method::kStart,    Method::kPause,
                        Method::kResume,   Method::kComplete, Method::kAcquire,
                        Method::kHeartbeat};
  TaskClient admin = As("admin-a");
  for (const auto& [token, methods] : allowed) {
    for (Method method : all) {
      SCOPED_TRACE(absl::StrCat(token, " ", MethodName(method)));
      Task task;
      task.set_type("backup");
      absl::StatusOr<Task> target = admin.Create(task);
      ASSERT_TRUE(target.ok());
      TaskClient client = As(token);
      absl::Status status = CallMethod(client, method, target->id());
      if (methods.count(method)) {
        // Allowed: whatever the life cycle says, never an auth error.
        EXPECT_NE(status.code(), absl::StatusCode::kPermissionDenied) << status;
        EXPECT_NE(status.code(), absl::StatusCode::kUnauthenticated) << status;
      } else {
        EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
        EXPECT_THAT(status.message(), HasSubstr(MethodName(method)));
      }
    }
  }
  // Admin may call everything.
  for (Method method : all) {
    Task task;
    task.set_type("backup");
    absl::StatusOr<Task> target = admin.Create(task);
    absl::Status status = CallMethod(admin, method, target->id());
    EXPECT_NE(status.code(), absl::StatusCode::kPermissionDenied) << status;
  }
}

// A backup holds every tenant's tasks: only an admin of every tenant may
// take one; an admin of one tenant may not.
TEST_F(AuthTest, BackupNeedsAnAdminOfEveryTenant) {
  for (const std::string& token :
       {"viewer-a", "issuer-a", "executor-a", "admin-a", "admin-b"}) {
    const std::string path = dir_.File(token + ".db");
    absl::StatusOr<TaskClient::BackupResult> refused = As(token).Backup(path);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied)
        << token << ": " << refused.status();
    EXPECT_FALSE(std::ifstream(path).good()) << token;
    EXPECT_FALSE(std::ifstream(path + ".part").good()) << token;
  }
  EXPECT_THAT(As("admin-a").Backup(dir_.File("a.db")).status().message(),
              HasSubstr("every tenant"));
  EXPECT_EQ(As("").Backup(dir_.File("none.db")).status().code(),
            absl::StatusCode::kUnauthenticated);
  absl::StatusOr<TaskClient::BackupResult> taken =
      As("root").Backup(dir_.File("root.db"));
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_GT(taken->size_bytes, 0);
  EXPECT_TRUE(std::ifstream(dir_.File("root.db")).good());
}

TEST_F(AuthTest, MissingOrUnknownTokenIsUnauthenticated) {
  for (const std::string& token : {std::string(""), std::string("wrong")}) {
    TaskClient client = As(token);
    for (Method method : {Method::kGet, Method::kList, Method::kCreate,
                          Method::kAssign, Method::kDelete}) {
      EXPECT_EQ(CallMethod(client, method, "x").code(),
                absl::StatusCode::kUnauthenticated)
          << MethodName(method);
    }
    auto stream = Watch(token, WatchTasksRequest());
    WatchTasksResponse response;
    EXPECT_FALSE(stream->reader->Read(&response));
    EXPECT_EQ(stream->reader->Finish().error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
}

// Load balancers and grpcurl need no token for health and reflection.
TEST_F(AuthTest, HealthAndReflectionStayOpen) {
  auto health = grpc::health::v1::Health::NewStub(taskd_.channel);
  grpc::ClientContext health_context;
  grpc::health::v1::HealthCheckResponse serving;
  grpc::Status checked = health->Check(
      &health_context, grpc::health::v1::HealthCheckRequest(), &serving);
  ASSERT_TRUE(checked.ok()) << checked.error_message();
  EXPECT_EQ(serving.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  auto reflection =
      grpc::reflection::v1::ServerReflection::NewStub(taskd_.channel);
  grpc::ClientContext reflection_context;
  auto stream = reflection->ServerReflectionInfo(&reflection_context);
  grpc::reflection::v1::ServerReflectionRequest list;
  list.set_list_services("");
  ASSERT_TRUE(stream->Write(list));
  grpc::reflection::v1::ServerReflectionResponse services;
  ASSERT_TRUE(stream->Read(&services));
  EXPECT_GT(services.list_services_response().service_size(), 0);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());

  // The task service itself does not.
  EXPECT_EQ(As("").List(tasks::v1::ListTasksRequest()).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(AuthTest, ViewerMayWatchButNotWrite) {
  auto stream = Watch("viewer-a", WatchTasksRequest());
  WatchTasksResponse response;
  EXPECT_TRUE(stream->reader->Read(&response));  // the position
  stream->context.TryCancel();
}

TEST_F(AuthTest, ReloadPicksUpNewTokensAndKeepsOldOnError) {
  TaskClient newcomer = As("newcomer");
  EXPECT_EQ(newcomer.List({}).status().code(),
            absl::StatusCode::kUnauthenticated);
  WriteTokens({{"newcomer", kTenantA, "viewer"}});
  ASSERT_TRUE(taskd_.server->ReloadAuth().ok());
  EXPECT_TRUE(newcomer.List({}).ok());
  EXPECT_EQ(As("root").List({}).status().code(),
            absl::StatusCode::kUnauthenticated);
  {
    std::ofstream broken(dir_.File("tokens"));
    broken << "not a token line\n";
  }
  absl::Status reload = taskd_.server->ReloadAuth();
  EXPECT_EQ(reload.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reload.message(), HasSubstr(":1:"));
  EXPECT_TRUE(newcomer.List({}).ok());
}

// Several tenants and roles call every method in random order; every answer
// is checked against what the caller may know. Zero leaks, streams included.
TEST_F(AuthTest, RandomisedTenantIsolation) {
  struct Actor {
    std::string token;
    std::string tenant;  // "" = every tenant
  };
  const std::vector<Actor> actors = {
      {"admin-a", kTenantA}, {"admin-b", kTenantB}, {"root", ""}};
  std::map<std::string, std::string> owner;  // task id -> tenant
  // Streams opened before anything is written see every change.
  WatchTasksRequest from_start;
  from_start.set_start_revision(1);
  // Progress lets a scoped stream reach the last revision even when the
  // last changes were another tenant's.
  from_start.mutable_progress_interval()->set_nanos(100'000'000);
  auto watch_a = Watch("admin-a", from_start);
  auto watch_b = Watch("admin-b", from_start);
  auto watch_root = Watch("root", from_start);

  std::mt19937 random(20261130);
  auto pick = [&](int n) {
    return std::uniform_int_distribution<int>(0, n - 1)(random);
  };
  int leaks = 0, checks = 0;
  for (int step = 0; step < 300; ++step) {
    const Actor& actor = actors[pick(actors.size())];
    TaskClient client = As(actor.token);
    int op = pick(6);
    if (op == 0 || owner.empty()) {
      Task task;
      task.set_type("backup");
      // Sometimes ask for a tenant explicitly, sometimes another one.
      int which = pick(3);
      if (which == 1) task.set_tenant_id(kTenantA);
      if (which == 2) task.set_tenant_id(kTenantB);
      absl::StatusOr<Task> created = client.Create(task);
      ++checks;
      bool foreign = actor.tenant != "" && !task.tenant_id().empty() &&
                     task.tenant_id() != actor.tenant;
      if (foreign) {
        if (created.status().code() != absl::StatusCode::kPermissionDenied) {
          ++leaks;
        }
        continue;
      }
      ASSERT_TRUE(created.ok()) << created.status();
      std::string expected =
          actor.tenant.empty() ? task.tenant_id() : actor.tenant;
      if (created->tenant_id() != expected) ++leaks;
      owner[created->id()] = created->tenant_id();
      continue;
    }
    auto it = owner.begin();
    std::advance(it, pick(owner.size()));
    const std::string id = it->first;
    bool visible = actor.tenant.empty() || it->second == actor.tenant;
    absl::Status status;
    if (op == 1) {
      status = client.Get(id).status();
    } else if (op == 2) {
      Task patch;
      patch.set_id(id);
      patch.set_priority("low");
      status = client.Update(patch, {"priority"}).status();
    } else if (op == 3) {
      status = client.Assign(id, "agent").status();
    } else if (op == 4) {
      status = client.Cancel(id).status();
    } else {
      status = client.Delete(id);
      if (status.ok()) owner.erase(id);
    }
    ++checks;
    if (!visible) {
      // Another tenant's task is exactly as absent as a missing one.
      if (status.code() != absl::StatusCode::kNotFound ||
          status.message() != absl::StrCat("task \"", id, "\" not found")) {
        ++leaks;
        ADD_FAILURE() << actor.token << " reached " << id << ": " << status;
      }
    } else if (status.code() == absl::StatusCode::kNotFound) {
      ADD_FAILURE() << actor.token << " lost its own task " << id;
    }
  }
  // Lists, through every page.
  for (const Actor& actor : actors) {
    TaskClient client = As(actor.token);
    tasks::v1::ListTasksRequest request;
    request.set_page_size(7);
    std::set<std::string> listed;
    while (true) {
      absl::StatusOr<tasks::v1::ListTasksResponse> page = client.List(request);
      ASSERT_TRUE(page.ok()) << page.status();
      for (const Task& t : page->tasks()) {
        ++checks;
        if (!actor.tenant.empty() && t.tenant_id() != actor.tenant) ++leaks;
        listed.insert(t.id());
      }
      if (page->next_page_token().empty()) break;
      request.set_page_token(page->next_page_token());
    }
    for (const auto& [id, tenant] : owner) {
      if (actor.tenant.empty() || tenant == actor.tenant) {
        EXPECT_EQ(listed.count(id), 1u) << actor.token << " misses " << id;
      }
    }
  }
  // A page token of one tenant does not work for another.
  {
    tasks::v1::ListTasksRequest request;
    request.set_page_size(1);
    absl::StatusOr<tasks::v1::ListTasksResponse> page =
        As("admin-a").List(request);
    ASSERT_TRUE(page.ok());
    if (!page->next_page_token().empty()) {
      request.set_page_token(page->next_page_token());
      EXPECT_EQ(As("admin-b").List(request).status().code(),
                absl::StatusCode::kInvalidArgument);
    }
  }
  // Streams.
  int64_t last = taskd_.server->store()->CurrentRevision();
  int root_events = 0;
  std::vector<std::pair<Stream*, std::string>> streams = {
      {watch_a.get(), kTenantA},
      {watch_b.get(), kTenantB},
      {watch_root.get(), ""}};
  for (auto& [stream, tenant] : streams) {
    WatchTasksResponse response;
    while (stream->reader->Read(&response)) {
      for (const auto& e : response.events()) {
        ++checks;
        if (!tenant.empty() && e.task().tenant_id() != tenant) ++leaks;
        if (tenant.empty()) ++root_events;
      }
      if (response.revision() >= last) break;
    }
    stream->context.TryCancel();
  }
  EXPECT_EQ(root_events, last) << "the unscoped admin sees every change";
  EXPECT_EQ(leaks, 0);
  EXPECT_GT(checks, 300);
}

TEST_F(AuthTest, WatchStreamCapsGlobalAndPerTenant) {
  taskd_.options().server.watch.max_watchers = 5;
  taskd_.options().server.watch.max_watchers_per_tenant = 2;
  ASSERT_TRUE(taskd_.Restart(absl::Seconds(1)).ok());
  std::vector<std::unique_ptr<Stream>> open;
  auto open_one = [&](const std::string& token) {
    auto stream = Watch(token, WatchTasksRequest());
    WatchTasksResponse response;
    bool ok = stream->reader->Read(&response);
    open.push_back(std::move(stream));
    return ok;
  };
  EXPECT_TRUE(open_one("viewer-a"));
  EXPECT_TRUE(open_one("admin-a"));
  EXPECT_FALSE(open_one("executor-a"));  // third stream of tenant A
  grpc::Status refused = open.back()->reader->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("tenant"));
  open.pop_back();
  EXPECT_TRUE(open_one("admin-b"));
  EXPECT_TRUE(open_one("admin-b"));
  EXPECT_TRUE(open_one("root"));
  EXPECT_FALSE(open_one("root"));  // sixth stream in all
  EXPECT_EQ(open.back()->reader->Finish().error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  open.pop_back();
  // Closing one makes room again.
  open.front()->context.TryCancel();
  open.front()->reader->Finish();
  open.erase(open.begin());
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (taskd_.server->watch_hub()->open_watchers() > 4 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(open_one("executor-a"));
  for (auto& s : open) s->context.TryCancel();
}

TEST_F(AuthTest, OversizedRequestIsResourceExhausted) {
  TaskClient client = As("admin-a");
  Task task;
  task.set_type(std::string(2 << 20, 'x'));
  EXPECT_EQ(client.Create(task).status().code(),
            absl::StatusCode::kResourceExhausted);
  task.set_type("backup");
  EXPECT_TRUE(client.Create(task).ok());
}

}  // namespace
}  // namespace taskd
