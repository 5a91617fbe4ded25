// The taskd and taskctl executables as a user runs them: a real process on a
// real port, reflection spoken through its own protocol, signals, restarts.
//
// This binary must not link gRPC::grpc++_reflection (it speaks the protocol
// with its own generated stubs), so it talks to taskd only over the wire.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <signal.h>

#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/task_client.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using tasks::v1::Task;
using ::testing::HasSubstr;
namespace reflection = grpc::reflection::v1alpha;

class TaskdProcess {
 public:
  explicit TaskdProcess(const std::string& db,
                        std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {testing::TaskdPath(),
                                     "--listen=127.0.0.1:0", "--db=" + db};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process_ = std::make_unique<testing::Subprocess>(argv);
    std::string line =
        process_->WaitForLine("taskd serving", absl::Seconds(20));
    for (absl::string_view field : absl::StrSplit(line, ' ')) {
      if (absl::ConsumePrefix(&field, "port=")) {
        EXPECT_TRUE(absl::SimpleAtoi(field, &port_));
      }
    }
  }
  int port() const { return port_; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  testing::Subprocess& process() { return *process_; }

 private:
  std::unique_ptr<testing::Subprocess> process_;
  int port_ = 0;
};

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
  std::unique_ptr<TaskdProcess> server_;
};

TEST_F(TaskdProcessTest, ReflectionListsAndDescribesEveryService) {
  server_ = std::make_unique<TaskdProcess>(dir_.File("t.db"));
  ASSERT_GT(server_->port(), 0) << server_->process().output();
  auto channel = grpc::CreateChannel(server_->address(),
                                     grpc::InsecureChannelCredentials());
  auto stub = reflection::ServerReflection::NewStub(channel);
  grpc::ClientContext context;
  auto stream = stub->ServerReflectionInfo(&context);

  reflection::ServerReflectionRequest list;
  list.set_list_services("");
  ASSERT_TRUE(stream->Write(list));
  reflection::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::set<std::string> services;
  for (const auto& s : response.list_services_response().service()) {
    services.insert(s.name());
  }
  EXPECT_EQ(services.count("tasks.v1.TaskService"), 1u);
  EXPECT_EQ(services.count("grpc.health.v1.Health"), 1u);
  EXPECT_EQ(services.count("grpc.reflection.v1alpha.ServerReflection"), 1u);

  // `grpcurl describe` asks for the file of every listed service; each must
  // resolve, or describe fails for the whole server.
  for (const std::string& service : services) {
    reflection::ServerReflectionRequest request;
    request.set_file_containing_symbol(service);
    ASSERT_TRUE(stream->Write(request));
    ASSERT_TRUE(stream->Read(&response));
    ASSERT_TRUE(response.has_file_descriptor_response())
        << service << ": " << response.error_response().error_message();
    bool found = false;
    for (const std::string& bytes :
         response.file_descriptor_response().file_descriptor_proto()) {
      google::protobuf::FileDescriptorProto file;
      ASSERT_TRUE(file.ParseFromString(bytes));
      for (const auto& s : file.service()) {
        found |= absl::StrCat(file.package(), ".", s.name()) == service;
      }
    }
    EXPECT_TRUE(found) << service;
  }
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(TaskdProcessTest, SigtermExitsZeroAndRestartKeepsTasks) {
  std::string db = dir_.File("t.db");
  server_ = std::make_unique<TaskdProcess>(db);
  ASSERT_GT(server_->port(), 0) << server_->process().output();
  std::string created_id;
  {
    TaskClient client(grpc::CreateChannel(server_->address(),
                                          grpc::InsecureChannelCredentials()));
    Task task;
    task.set_type("backup");
    absl::StatusOr<Task> created = client.Create(task);
    ASSERT_TRUE(created.ok()) << created.status();
    created_id = created->id();
  }
  server_->process().Signal(SIGTERM);
  EXPECT_EQ(server_->process().Wait(absl::Seconds(20)), 0)
      << server_->process().output();
  EXPECT_THAT(server_->process().output(), HasSubstr("stopped cleanly"));

  server_ = std::make_unique<TaskdProcess>(db);
  ASSERT_GT(server_->port(), 0) << server_->process().output();
  TaskClient client(grpc::CreateChannel(server_->address(),
                                        grpc::InsecureChannelCredentials()));
  absl::StatusOr<Task> again = client.Get(created_id);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->type(), "backup");
}

TEST_F(TaskdProcessTest, SecondTaskdOnTheSameDatabaseIsRefused) {
  std::string db = dir_.File("t.db");
  server_ = std::make_unique<TaskdProcess>(db);
  ASSERT_GT(server_->port(), 0);
  testing::Subprocess second(
      {testing::TaskdPath(), "--listen=127.0.0.1:0", "--db=" + db});
  EXPECT_EQ(second.Wait(absl::Seconds(20)), 1);
  EXPECT_THAT(second.output(), HasSubstr("in use by another process"));
}

TEST_F(TaskdProcessTest, BadFlagsAreRefused) {
  testing::Subprocess bad_sync({testing::TaskdPath(), "--sync=sometimes"});
  EXPECT_EQ(bad_sync.Wait(absl::Seconds(20)), 2);
  EXPECT_THAT(bad_sync.output(), HasSubstr("--sync"));
}

TEST_F(TaskdProcessTest, TaskctlDrivesTheLifeCycleAndPrintsSchemaJson) {
  server_ = std::make_unique<TaskdProcess>(dir_.File("t.db"));
  ASSERT_GT(server_->port(), 0);
  int rc = 0;
  std::string out =
      Taskctl({"create", "--type=backup", "--id=job-1", "--priority=high",
               "--tenant-id=3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"},
              &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("job-1"));
  EXPECT_THAT(out, HasSubstr("enqueued"));
  Taskctl({"assign", "job-1", "--executor=agent-7"}, &rc);
  EXPECT_EQ(rc, 0);
  Taskctl({"start", "job-1"}, &rc);
  EXPECT_EQ(rc, 0);
  out = Taskctl({"get", "job-1", "-o", "json"}, &rc);
  ASSERT_EQ(rc, 0);
  EXPECT_THAT(out, HasSubstr("\"state\": \"started\""));
  EXPECT_THAT(out, HasSubstr("\"executor_id\": \"agent-7\""));
  std::string report;
  EXPECT_EQ(Validate(out, &report), 0) << out << report;

  Taskctl({"complete", "job-1", "--result=warning"}, &rc);
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
  server_ = std::make_unique<TaskdProcess>(dir_.File("t.db"));
  ASSERT_GT(server_->port(), 0);
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

}  // namespace
}  // namespace taskd
