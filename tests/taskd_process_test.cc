// The taskd and taskctl executables as a user runs them: a real process on a
// real port, reflection spoken through its own protocol, signals, restarts.

#include "tests/taskd_process.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "client/task_client.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using tasks::v1::Task;
using ::testing::HasSubstr;

// Resident memory of a process, in bytes (0 if unknown).
int64_t RssBytes(pid_t pid) {
  std::string out, err;
  FILE* f = fopen(absl::StrCat("/proc/", pid, "/status").c_str(), "r");
  if (f == nullptr) return 0;
  char line[256];
  int64_t kb = 0;
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
  }
  fclose(f);
  return kb * 1024;
}

class TaskdProcessTest : public ::testing::Test {
 protected:
  std::string Taskctl(const std::vector<std::string>& args, int* rc,
                      std::string* err = nullptr) {
    std::vector<std::string> argv = {testing::TaskctlPath(),
                                     "--server=" + server_->address()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string out, error;
    *rc = testing::RunCommand(argv, "", &out, &error);
    if (err != nullptr) *err = error;
    return out;
  }

  int Validate(const std::string& json, std::string* report) {
    std::string err;
    int rc = testing::RunCommand(
        {"/usr/bin/python3", TASKD_SOURCE_DIR "/tests/validate_task_json.py",
         TASKD_SOURCE_DIR "/tests/data/acronis-task-schema.json"},
        json, report, &err);
    *report += err;
    return rc;
  }

  testing::TempDir dir_;
  // Starts taskd on `db` with `flags` as server_; false (and a failure with
  // its log) if it does not serve.
  bool StartTaskd(const std::string& db, std::vector<std::string> flags = {}) {
    testing::TaskdProcess::Options options;
    options.db_path = db;
    options.flags = std::move(flags);
    server_ = std::make_unique<testing::TaskdProcess>(options);
    absl::Status started = server_->Start();
    EXPECT_TRUE(started.ok()) << started;
    return started.ok();
  }

  std::unique_ptr<testing::TaskdProcess> server_;
};

// Lists the services through reflection `Version` and asks, on the same
// stream and in two orders, for the file of each, as `grpcurl describe` does.
template <typename Version>
void DescribeEveryService(const std::string& address) {
  auto channel =
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = Version::ServerReflection::NewStub(channel);
  grpc::ClientContext context;
  auto stream = stub->ServerReflectionInfo(&context);

  typename Version::ServerReflectionRequest list;
  list.set_list_services("");
  ASSERT_TRUE(stream->Write(list));
  typename Version::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::set<std::string> services;
  for (const auto& s : response.list_services_response().service()) {
    services.insert(s.name());
  }
  EXPECT_EQ(services, (std::set<std::string>{
                          "tasks.v1.TaskService", "grpc.health.v1.Health",
                          "grpc.reflection.v1.ServerReflection",
                          "grpc.reflection.v1alpha.ServerReflection"}));

  // Every listed service must resolve, or describe fails for the whole
  // server.
  std::vector<std::string> order(services.begin(), services.end());
  order.insert(order.end(), services.rbegin(), services.rend());
  for (const std::string& service : order) {
    typename Version::ServerReflectionRequest request;
    request.set_file_containing_symbol(service);
    ASSERT_TRUE(stream->Write(request));
    ASSERT_TRUE(stream->Read(&response));
    ASSERT_TRUE(response.has_file_descriptor_response())
        << service << ": " << response.error_response().error_message();
    // Clients take the first file as the answer and the rest as its
    // dependencies.
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(
        response.file_descriptor_response().file_descriptor_proto(0)));
    bool found = false;
    for (const auto& s : file.service()) {
      found |= absl::StrCat(file.package(), ".", s.name()) == service;
    }
    EXPECT_TRUE(found) << service << " not in " << file.name();
  }
  typename Version::ServerReflectionRequest unknown;
  unknown.set_file_containing_symbol("no.such.Symbol");
  ASSERT_TRUE(stream->Write(unknown));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.error_response().error_code(),
            grpc::StatusCode::NOT_FOUND);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

struct V1 {
  using ServerReflection = grpc::reflection::v1::ServerReflection;
  using ServerReflectionRequest = grpc::reflection::v1::ServerReflectionRequest;
  using ServerReflectionResponse =
      grpc::reflection::v1::ServerReflectionResponse;
};
struct V1Alpha {
  using ServerReflection = grpc::reflection::v1alpha::ServerReflection;
  using ServerReflectionRequest =
      grpc::reflection::v1alpha::ServerReflectionRequest;
  using ServerReflectionResponse =
      grpc::reflection::v1alpha::ServerReflectionResponse;
};

TEST_F(TaskdProcessTest, ReflectionV1DescribesEveryService) {
  ASSERT_TRUE(StartTaskd(dir_.File("t.db")));
  DescribeEveryService<V1>(server_->address());
}

TEST_F(TaskdProcessTest, ReflectionV1AlphaDescribesEveryService) {
  ASSERT_TRUE(StartTaskd(dir_.File("t.db")));
  DescribeEveryService<V1Alpha>(server_->address());
}

TEST_F(TaskdProcessTest, SigtermExitsZeroAndRestartKeepsTasks) {
  std::string db = dir_.File("t.db");
  ASSERT_TRUE(StartTaskd(db));
  std::string created_id;
  {
    TaskClient client(server_->NewChannel());
    Task task;
    task.set_type("backup");
    absl::StatusOr<Task> created = client.Create(task);
    ASSERT_TRUE(created.ok()) << created.status();
    created_id = created->id();
  }
  EXPECT_EQ(server_->Stop(SIGTERM), 0) << server_->log();
  EXPECT_THAT(server_->log(), HasSubstr("stopped cleanly"));

  ASSERT_TRUE(StartTaskd(db));
  TaskClient client(server_->NewChannel());
  absl::StatusOr<Task> again = client.Get(created_id);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->type(), "backup");
}

TEST_F(TaskdProcessTest, SecondTaskdOnTheSameDatabaseIsRefused) {
  std::string db = dir_.File("t.db");
  ASSERT_TRUE(StartTaskd(db));
  testing::TaskdProcess::Options options;
  options.db_path = db;
  testing::TaskdProcess second(options);
  second.Launch();
  EXPECT_EQ(second.Wait(absl::Seconds(20)), 1);
  EXPECT_THAT(second.log(), HasSubstr("in use by another process"));
}

TEST_F(TaskdProcessTest, BadFlagsAreRefused) {
  testing::TaskdProcess::Options options;
  options.flags = {"--sync=sometimes"};
  testing::TaskdProcess bad_sync(options);
  bad_sync.Launch();
  EXPECT_EQ(bad_sync.Wait(absl::Seconds(20)), 2);
  EXPECT_THAT(bad_sync.log(), HasSubstr("--sync"));
}

TEST_F(TaskdProcessTest, TaskctlDrivesTheLifeCycleAndPrintsSchemaJson) {
  ASSERT_TRUE(StartTaskd(dir_.File("t.db")));
  int rc = 0;
  std::string out =
      Taskctl({"create", "--type=backup", "--id=job-1", "--priority=high",
               "--tenant-id=3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"},
              &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("job-1"));
  EXPECT_THAT(out, HasSubstr("enqueued"));
  out = Taskctl({"assign", "job-1", "--executor=agent-7", "-o", "json"}, &rc);
  EXPECT_EQ(rc, 0);
  const std::string lease = "--lease=" + testing::JsonField(out, "leaseToken");
  Taskctl({"start", "job-1", lease}, &rc);
  EXPECT_EQ(rc, 0);
  out = Taskctl({"get", "job-1", "-o", "json"}, &rc);
  ASSERT_EQ(rc, 0);
  EXPECT_THAT(out, HasSubstr("\"state\": \"started\""));
  EXPECT_THAT(out, HasSubstr("\"executor_id\": \"agent-7\""));
  std::string report;
  EXPECT_EQ(Validate(out, &report), 0) << out << report;

  Taskctl({"complete", "job-1", "--result=warning", lease}, &rc);
  EXPECT_EQ(rc, 0);
  Taskctl({"create", "--type=restore"}, &rc);
  out = Taskctl({"list", "-o", "json", "--all"}, &rc);
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(Validate(out, &report), 0) << out << report;
  EXPECT_THAT(report, HasSubstr("2 task(s) checked"));

  out = Taskctl({"list"}, &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_THAT(out, HasSubstr("STATE"));
  EXPECT_THAT(out, HasSubstr("completed"));
}

TEST_F(TaskdProcessTest, TaskctlErrorsAndUsage) {
  ASSERT_TRUE(StartTaskd(dir_.File("t.db")));
  int rc = 0;
  std::string err;
  Taskctl({"start", "missing-task"}, &rc, &err);
  EXPECT_EQ(rc, 1);
  EXPECT_THAT(err, HasSubstr("NOT_FOUND"));
  Taskctl({"create", "--type=backup", "--priorty=high"}, &rc, &err);
  EXPECT_EQ(rc, 2);
  EXPECT_THAT(err, HasSubstr("--priorty"));
  Taskctl({"create", "--type=backup", "--priority=urgent"}, &rc, &err);
  EXPECT_EQ(rc, 1);
  EXPECT_THAT(err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(err, HasSubstr("task.priority"));
  Taskctl({"frobnicate"}, &rc, &err);
  EXPECT_EQ(rc, 2);
}

TEST_F(TaskdProcessTest, SchemaValidatorRejectsWrongSpelling) {
  // The check above must be able to fail: wrong enum case, wrong property
  // name, bad UUID and bad timestamp are each caught.
  std::string report;
  EXPECT_EQ(Validate(R"({"id":"x","state":"COMPLETED"})", &report), 1)
      << report;
  EXPECT_EQ(Validate(R"({"id":"x","resultCode":"ok"})", &report), 1) << report;
  EXPECT_EQ(Validate(R"({"id":"x","tenant_id":"nope"})", &report), 1) << report;
  EXPECT_EQ(Validate(R"({"id":"x","enqueuedAt":"yesterday"})", &report), 1)
      << report;
  EXPECT_EQ(
      Validate(R"({"id":"x","state":"completed","result_code":"ok"})", &report),
      0)
      << report;
}

// The memory bound of the watch issue: a stream that is never read while
// 100,000 changes are written costs the server at most one response and a
// cursor; the server's RSS stays within kBound of what it was before, and
// another watcher keeps up with every change.
TEST_F(TaskdProcessTest, StalledWatcherKeepsServerMemoryBounded) {
  constexpr int kChanges = 100'000, kWriters = 8;
  constexpr int64_t kBound = 24 << 20;
  ASSERT_TRUE(StartTaskd(dir_.File("t.db"), {"--sync=normal"}));
  pid_t pid = server_->pid();
  auto channel = server_->NewChannel();
  TaskClient client(channel);
  Task task;
  task.set_type("backup");
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(client.Create(task).ok());
  int64_t baseline = RssBytes(pid);

  // The stalled stream: opened on its own connection, never read.
  grpc::ChannelArguments own;
  own.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto stalled_channel = grpc::CreateCustomChannel(
      server_->address(), grpc::InsecureChannelCredentials(), own);
  auto stalled_stub = tasks::v1::TaskService::NewStub(stalled_channel);
  grpc::ClientContext stalled_context;
  tasks::v1::WatchTasksRequest from_start;
  from_start.set_start_revision(1);
  auto stalled = stalled_stub->WatchTasks(&stalled_context, from_start);

  // The active watcher reads everything.
  std::atomic<int64_t> active_last{0};
  std::atomic<bool> active_ordered{true};
  std::thread active([&] {
    auto stub = tasks::v1::TaskService::NewStub(channel);
    grpc::ClientContext context;
    auto reader = stub->WatchTasks(&context, from_start);
    tasks::v1::WatchTasksResponse response;
    int64_t next = 1;
    while (next <= 1000 + kChanges && reader->Read(&response)) {
      for (const auto& e : response.events()) {
        if (e.revision() != next) active_ordered = false;
        next = e.revision() + 1;
      }
      active_last = next - 1;
    }
    context.TryCancel();
  });

  std::atomic<int64_t> peak{baseline};
  std::atomic<bool> writing{true};
  std::thread sampler([&] {
    while (writing) {
      int64_t rss = RssBytes(pid);
      int64_t seen = peak.load();
      while (rss > seen && !peak.compare_exchange_weak(seen, rss)) {
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
  });
  absl::Time start = absl::Now();
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&] {
      for (int i = 0; i < kChanges / kWriters; ++i) {
        if (!client.Create(task).ok()) ++failures;
      }
    });
  }
  for (auto& t : writers) t.join();
  absl::Duration took = absl::Now() - start;
  absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (active_last < 1000 + kChanges && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  writing = false;
  sampler.join();
  active.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(active_last, 1000 + kChanges) << "the active watcher fell behind";
  EXPECT_TRUE(active_ordered);
  int64_t growth = peak - baseline;
  std::cout << "[ figures  ] " << kChanges << " changes in "
            << absl::FormatDuration(took) << "; taskd RSS baseline "
            << baseline / (1 << 20) << " MiB, peak " << peak / (1 << 20)
            << " MiB, growth " << growth / (1 << 20) << " MiB (bound "
            << kBound / (1 << 20) << " MiB)\n";
  EXPECT_LT(growth, kBound);

  // The stalled stream is intact: it delivers everything, in order, when it
  // finally reads.
  tasks::v1::WatchTasksResponse response;
  int64_t next = 1;
  bool ordered = true;
  while (next <= 1000 + kChanges && stalled->Read(&response)) {
    for (const auto& e : response.events()) {
      if (e.revision() != next) ordered = false;
      next = e.revision() + 1;
    }
  }
  EXPECT_EQ(next, 1000 + kChanges + 1);
  EXPECT_TRUE(ordered);
  stalled_context.TryCancel();
}

// An HTTP GET on 127.0.0.1:port, returning the body ("" on failure).
std::string HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) !=
      0) {
    close(fd);
    return "";
  }
  std::string request = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
  if (write(fd, request.data(), request.size()) < 0) {
    close(fd);
    return "";
  }
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  close(fd);
  size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

TEST_F(TaskdProcessTest, MetricsAreServedInPrometheusText) {
  ASSERT_TRUE(StartTaskd(dir_.File("t.db"), {"--metrics-listen=127.0.0.1:0"}));
  const std::string metrics_field = server_->serving_field("metrics");
  absl::string_view metrics = metrics_field;
  ASSERT_TRUE(absl::ConsumePrefix(&metrics, "127.0.0.1:")) << server_->log();
  int metrics_port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(metrics, &metrics_port)) << server_->log();
  ASSERT_GT(metrics_port, 0);
  TaskClient client(server_->NewChannel());
  // A watcher that sees both changes.
  grpc::ClientContext watch_context;
  tasks::v1::WatchTasksRequest from_start;
  from_start.set_start_revision(1);
  auto watch = client.stub()->WatchTasks(&watch_context, from_start);
  Task task;
  task.set_type("backup");
  absl::StatusOr<Task> created = client.Create(task);
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE(client.Assign(created->id(), "agent").ok());
  EXPECT_FALSE(client.Get("missing").ok());
  // Read from the database, then from the task cache.
  ASSERT_TRUE(client.Get(created->id()).ok());
  ASSERT_TRUE(client.Get(created->id()).ok());
  int events = 0;
  tasks::v1::WatchTasksResponse response;
  while (events < 2 && watch->Read(&response)) events += response.events_size();
  ASSERT_EQ(events, 2);
  absl::SleepFor(absl::Milliseconds(1500));  // gauges refresh every second
  std::string text = HttpGet(metrics_port, "/metrics");
  EXPECT_THAT(text, HasSubstr("taskd_calls_total{code=\"OK\",method=\"/"
                              "tasks.v1.TaskService/CreateTask\"} 1"));
  EXPECT_THAT(text, HasSubstr("taskd_calls_total{code=\"NOT_FOUND\",method=\"/"
                              "tasks.v1.TaskService/GetTask\"} 1"));
  EXPECT_THAT(text, HasSubstr("taskd_call_duration_seconds_count{method=\"/"
                              "tasks.v1.TaskService/AssignTask\"} 1"));
  EXPECT_THAT(text, HasSubstr("taskd_store_revision 2"));
  EXPECT_THAT(text, HasSubstr("taskd_store_commit_batch_size_count 2"));
  EXPECT_THAT(text, HasSubstr("taskd_store_commit_duration_seconds_count 2"));
  EXPECT_THAT(text, HasSubstr("taskd_tasks{state=\"assigned\"} 1"));
  EXPECT_THAT(text, HasSubstr("taskd_tasks{state=\"enqueued\"} 0"));
  EXPECT_THAT(text, HasSubstr("taskd_watch_streams_open 1"));
  EXPECT_THAT(text, HasSubstr("taskd_watch_events_delivered_total 2"));
  // Alone on its SQLite file, taskd runs the timers itself.
  EXPECT_THAT(text, HasSubstr("taskd_sweeper_leader 1"));
  EXPECT_THAT(text,
              HasSubstr("taskd_task_cache_lookups_total{result=\"hit\"} 1"));
  EXPECT_THAT(text,
              HasSubstr("taskd_task_cache_lookups_total{result=\"miss\"} 2"));
  watch_context.TryCancel();
  watch->Finish();

  // After a restart the count of tasks by state comes from the database.
  ASSERT_EQ(server_->Stop(SIGTERM), 0) << server_->log();
  ASSERT_TRUE(StartTaskd(dir_.File("t.db"), {"--metrics-listen=127.0.0.1:0"}));
  std::string restarted_field = server_->serving_field("metrics");
  absl::string_view restarted = restarted_field;
  ASSERT_TRUE(absl::ConsumePrefix(&restarted, "127.0.0.1:"));
  ASSERT_TRUE(absl::SimpleAtoi(restarted, &metrics_port));
  text = HttpGet(metrics_port, "/metrics");
  EXPECT_THAT(text, HasSubstr("taskd_tasks{state=\"assigned\"} 1"));
  EXPECT_THAT(text, HasSubstr("taskd_tasks{state=\"completed\"} 0"));
}

// Issue 12: each timeout taskd fires is a log line and a count by timeout
// and outcome.
TEST_F(TaskdProcessTest, TimeoutsAreLoggedAndCounted) {
  ASSERT_TRUE(StartTaskd(dir_.File("t.db"), {"--metrics-listen=127.0.0.1:0"}));
  std::string field = server_->serving_field("metrics");
  absl::string_view port_text = field;
  ASSERT_TRUE(absl::ConsumePrefix(&port_text, "127.0.0.1:"));
  int metrics_port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(port_text, &metrics_port));
  TaskClient client(server_->NewChannel());
  Task task;
  task.set_id("slow");
  task.set_type("backup");
  task.set_max_assign_count(2);
  task.mutable_ack_timeout()->set_nanos(200'000'000);
  ASSERT_TRUE(client.Create(task).ok());
  auto wait_for = [&](Task::State state) {
    absl::Time give_up = absl::Now() + absl::Seconds(10);
    absl::StatusOr<Task> now = client.Get("slow");
    while (now.ok() && now->state() != state && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(20));
      now = client.Get("slow");
    }
    return now.ok() && now->state() == state;
  };
  for (int assignment = 1; assignment <= 2; ++assignment) {
    absl::StatusOr<std::optional<Task>> leased = client.Acquire("agent-9");
    ASSERT_TRUE(leased.ok() && leased->has_value()) << leased.status();
    ASSERT_TRUE(wait_for(assignment == 1 ? Task::enqueued : Task::completed));
  }
  std::string text = HttpGet(metrics_port, "/metrics");
  EXPECT_THAT(text, HasSubstr("taskd_task_timeouts_total{outcome=\"requeued\","
                              "timeout=\"ack_timeout\"} 1"));
  EXPECT_THAT(text, HasSubstr("taskd_task_timeouts_total{outcome=\"abandoned\","
                              "timeout=\"ack_timeout\"} 1"));
  EXPECT_THAT(server_->log(),
              HasSubstr("timeout task=slow timeout=ack_timeout "
                        "state=assigned->enqueued result=- assignment=1/2 "
                        "executor=agent-9"));
  EXPECT_THAT(server_->log(),
              HasSubstr("state=assigned->completed result=abandoned "
                        "assignment=2/2"));
}

// SIGTERM while writers write and a watcher watches: every acknowledged
// create survives, the stream ends with a final progress and UNAVAILABLE,
// and taskd exits 0.
TEST_F(TaskdProcessTest, SigtermWithCallsAndStreamsOpen) {
  std::string db = dir_.File("t.db");
  ASSERT_TRUE(StartTaskd(db));
  auto channel = server_->NewChannel();
  auto stub = tasks::v1::TaskService::NewStub(channel);
  grpc::ClientContext watch_context;
  tasks::v1::WatchTasksRequest from_start;
  from_start.set_start_revision(1);
  auto stream = stub->WatchTasks(&watch_context, from_start);

  std::atomic<bool> stop{false};
  absl::Mutex mu;
  std::vector<std::string> acknowledged;
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&] {
      TaskClient client(channel);
      Task task;
      task.set_type("backup");
      while (!stop) {
        absl::StatusOr<Task> created = client.Create(task);
        if (created.ok()) {
          absl::MutexLock lock(&mu);
          acknowledged.push_back(created->id());
        }
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(300));
  server_->Signal(SIGTERM);
  tasks::v1::WatchTasksResponse response, last;
  while (stream->Read(&response)) last = response;
  grpc::Status end = stream->Finish();
  EXPECT_EQ(end.error_code(), grpc::StatusCode::UNAVAILABLE)
      << end.error_message();
  EXPECT_TRUE(last.progress());
  EXPECT_EQ(server_->Wait(absl::Seconds(20)), 0) << server_->log();
  stop = true;
  for (auto& t : writers) t.join();
  ASSERT_FALSE(acknowledged.empty());

  ASSERT_TRUE(StartTaskd(db));
  TaskClient client(server_->NewChannel());
  for (const std::string& id : acknowledged) {
    EXPECT_TRUE(client.Get(id).ok()) << "acknowledged " << id << " was lost";
  }
}

// Clients that keep an idle channel open (as services do) do not hold a
// SIGTERM until --shutdown_grace ends: once no call is in flight, taskd
// closes their connections and exits. (gRPC alone waits for every client
// to close its connection, until the grace period's end.) The clients'
// channels then reach the next taskd.
TEST_F(TaskdProcessTest, IdleClientConnectionsDoNotHoldTheShutdown) {
  std::string db = dir_.File("t.db");
  ASSERT_TRUE(StartTaskd(db, {"--shutdown_grace=30s"}));
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < 3; ++i) {
    channels.push_back(server_->NewChannel());
    TaskClient client(channels.back());
    Task task;
    task.set_type("backup");
    ASSERT_TRUE(client.Create(task).ok());  // connected, then idle
  }
  // And one that never closes its connection by itself: the HTTP/2
  // preface and SETTINGS by hand, then silence.
  const int raw = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(raw, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(server_->port()));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(
      ::connect(raw, reinterpret_cast<sockaddr*>(&address), sizeof(address)),
      0);
  const std::string hello = std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") +
                            std::string("\0\0\0\x04\0\0\0\0\0", 9);
  ASSERT_EQ(::write(raw, hello.data(), hello.size()),
            static_cast<ssize_t>(hello.size()));
  absl::SleepFor(absl::Milliseconds(200));

  const absl::Time start = absl::Now();
  EXPECT_EQ(server_->Stop(SIGTERM, absl::Seconds(60)), 0) << server_->log();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10))
      << "an idle connection held the shutdown";
  ::close(raw);

  // The same channels reach the next taskd on the same address (a call
  // may fail once with UNAVAILABLE while a channel notices that its
  // connection is gone: clients retry those).
  ASSERT_TRUE(StartTaskd(db, {"--listen=" + server_->address()}));
  for (const auto& channel : channels) {
    TaskClient again(channel);
    absl::StatusOr<tasks::v1::ListTasksResponse> listed;
    for (int attempt = 0; attempt < 50; ++attempt) {
      listed = again.List(tasks::v1::ListTasksRequest());
      if (listed.ok() || !absl::IsUnavailable(listed.status())) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    ASSERT_TRUE(listed.ok()) << listed.status();
    EXPECT_EQ(listed->tasks_size(), 3);
  }
}

// The names of a process's threads, as /proc shows them (`top -H`, perf).
std::multiset<std::string> ThreadNames(pid_t pid) {
  std::multiset<std::string> names;
  const std::string tasks = absl::StrCat("/proc/", pid, "/task");
  DIR* dir = opendir(tasks.c_str());
  if (dir == nullptr) return names;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream comm(absl::StrCat(tasks, "/", entry->d_name, "/comm"));
    std::string name;
    if (std::getline(comm, name)) names.insert(name);
  }
  closedir(dir);
  return names;
}

// Each thread taskd starts says what it does, so that an operator who sees
// one busy in `top -H` knows which part of taskd it is.
TEST_F(TaskdProcessTest, ThreadsAreNamedForWhatTheyDo) {
  ASSERT_TRUE(StartTaskd(dir_.File("t.db"), {"--retain_completed=720h"}));
  TaskClient client(server_->NewChannel());
  Task task;
  task.set_type("backup");
  ASSERT_TRUE(client.Create(task).ok());
  const std::vector<std::string> expected = {
      "taskd-commit",  "taskd-watch",  "taskd-deadlines",
      "taskd-timers",  "taskd-counts", "taskd-retention",
      "taskd-metrics", "taskd-http",   "taskd-signals"};
  auto all_named = [&](const std::multiset<std::string>& names) {
    for (const std::string& name : expected) {
      if (names.count(name) == 0) return false;
    }
    return true;
  };
  // The signal thread starts right after "serving" is printed.
  std::multiset<std::string> names = ThreadNames(server_->pid());
  for (int i = 0; i < 50 && !all_named(names); ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    names = ThreadNames(server_->pid());
  }
  for (const std::string& name : expected) {
    EXPECT_GE(names.count(name), 1u)
        << name << " among " << absl::StrJoin(names, ", ");
  }
  // One per --http_threads (2); one for write calls' default deadline and
  // one for AcquireTask's waits.
  EXPECT_EQ(names.count("taskd-http"), 2u) << absl::StrJoin(names, ", ");
  EXPECT_EQ(names.count("taskd-deadlines"), 2u) << absl::StrJoin(names, ", ");
  // Only the main thread keeps the process's name: every thread taskd
  // starts has one of its own.
  EXPECT_EQ(names.count("taskd"), 1u) << absl::StrJoin(names, ", ");
}

}  // namespace
}  // namespace taskd
