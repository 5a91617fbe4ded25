// Group commit through gRPC (issue 6): the callback handlers hand writes to
// the store asynchronously and finish from the writer thread; concurrent
// callers each get their own revision, and a watcher sees every change once.
#include <map>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/task_client.h"
#include "gtest/gtest.h"
#include "server/task_server.h"
#include "tests/test_server.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using tasks::v1::TaskEvent;
using tasks::v1::WatchTasksRequest;
using tasks::v1::WatchTasksResponse;

class GroupCommitServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TaskServerOptions options;
    options.store.path = dir_.File("taskd.db");
    options.store.synchronous_full = false;
    absl::Status started = taskd_.Start(options);
    ASSERT_TRUE(started.ok()) << started;
  }
  void TearDown() override { taskd_.Stop(absl::Seconds(2)); }

  testing::TempDir dir_;
  testing::InProcessTaskd taskd_;
};

TEST_F(GroupCommitServerTest, EveryAcknowledgedChangeIsWatchedOnceInOrder) {
  auto stub = tasks::v1::TaskService::NewStub(taskd_.channel);
  grpc::ClientContext watch_context;
  WatchTasksRequest request;
  request.set_start_revision(1);
  auto reader = stub->WatchTasks(&watch_context, request);

  constexpr int kThreads = 16, kTasks = 10;
  absl::Mutex mu;
  // revision -> the task as its call returned it
  std::map<int64_t, Task> acknowledged;
  auto record = [&](const absl::StatusOr<Task>& task) {
    ASSERT_TRUE(task.ok()) << task.status();
    Task stored = *task;
    stored.clear_lease_token();  // the assignment's answer only
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(acknowledged.emplace(task->revision(), stored).second)
        << "revision " << task->revision() << " acknowledged twice";
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kTasks; ++i) {
        Task task;
        task.set_id(absl::StrCat("g", t, "-", i));
        task.set_type("backup");
        absl::StatusOr<Task> created = taskd_.client->Create(task);
        record(created);
        if (!created.ok()) return;
        // The same id again fails alone, whatever batch it lands in.
        EXPECT_EQ(taskd_.client->Create(task).status().code(),
                  absl::StatusCode::kAlreadyExists);
        absl::StatusOr<Task> assigned =
            taskd_.client->Assign(created->id(), "agent-7");
        record(assigned);
        if (!assigned.ok()) return;
        const std::string lease = assigned->lease_token();
        EXPECT_EQ(taskd_.client->Resume(created->id(), lease).status().code(),
                  absl::StatusCode::kFailedPrecondition);
        record(taskd_.client->Start(created->id(), lease));
        record(taskd_.client->Complete(created->id(), Task::ok, lease));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  constexpr int64_t kTotal = kThreads * kTasks * 4;
  ASSERT_EQ(static_cast<int64_t>(acknowledged.size()), kTotal);
  EXPECT_EQ(acknowledged.begin()->first, 1);
  EXPECT_EQ(acknowledged.rbegin()->first, kTotal);

  std::vector<TaskEvent> events;
  WatchTasksResponse response;
  while (static_cast<int64_t>(events.size()) < kTotal &&
         reader->Read(&response)) {
    for (const TaskEvent& event : response.events()) events.push_back(event);
  }
  watch_context.TryCancel();
  ASSERT_EQ(static_cast<int64_t>(events.size()), kTotal);
  for (int64_t i = 0; i < kTotal; ++i) {
    const TaskEvent& event = events[i];
    ASSERT_EQ(event.revision(), i + 1);
    EXPECT_EQ(event.task().SerializeAsString(),
              acknowledged[i + 1].SerializeAsString())
        << "revision " << i + 1;
  }
}

}  // namespace
}  // namespace taskd
