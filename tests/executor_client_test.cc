// The executor side of issue 12 as its users run it: the C++ Executor loop
// (client/executor.h) against an in-process taskd on the real clock, and
// taskctl's executor commands (acquire, heartbeat, --lease, cancel --force,
// work) against the real taskd binary. (The protocol and the timers with a
// fake clock: executor_test.cc.)
#include <fcntl.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/client_interceptor.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/error_details.h"
#include "client/executor.h"
#include "client/task_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/taskd_process.h"
#include "tests/test_server.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using tasks::v1::Task;
using ::testing::HasSubstr;
using ::testing::Not;

using Result = testing::CommandResult;
using testing::JsonField;

google::protobuf::Duration Millis(int64_t ms) {
  google::protobuf::Duration d;
  d.set_seconds(ms / 1000);
  d.set_nanos(static_cast<int32_t>((ms % 1000) * 1'000'000));
  return d;
}

// Polls `condition` every 20 ms until it holds or `timeout` passes; whether
// it held.
bool WaitUntil(const std::function<bool()>& condition,
               absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

// An Executor running Run(work) on a thread of its own. Should Run not
// return (the failure a test looks for), the thread is left behind rather
// than hanging the test binary.
class BackgroundExecutor {
 public:
  BackgroundExecutor(std::shared_ptr<grpc::Channel> channel,
                     const ExecutorOptions& options, Executor::Work work)
      : state_(std::make_shared<State>(std::move(channel), options)) {
    thread_ = std::thread([state = state_, work = std::move(work)] {
      state->result = state->executor.Run(work);
      state->done.Notify();
    });
  }
  ~BackgroundExecutor() {
    state_->executor.Stop();
    if (state_->done.WaitForNotificationWithTimeout(absl::Seconds(60))) {
      thread_.join();
    } else {
      thread_.detach();
    }
  }

  // What Run returned, or nullopt if it did not return within `timeout`.
  std::optional<absl::Status> Wait(absl::Duration timeout) {
    if (!state_->done.WaitForNotificationWithTimeout(timeout)) {
      return std::nullopt;
    }
    return state_->result;
  }

  Executor& executor() { return state_->executor; }

 private:
  struct State {
    State(std::shared_ptr<grpc::Channel> channel,
          const ExecutorOptions& options)
        : executor(std::move(channel), options) {}
    Executor executor;
    absl::Notification done;
    absl::Status result;  // written before `done`
  };
  std::shared_ptr<State> state_;
  std::thread thread_;
};

// What on_done was told, by task id.
class DoneLog {
 public:
  void Record(const Task& task, const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    calls_[task.id()].push_back({task, status});
  }
  struct Call {
    Task task;
    absl::Status status;
  };
  std::map<std::string, std::vector<Call>> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::vector<Call>> calls_ ABSL_GUARDED_BY(mu_);
};

// How many calls of each method ("StartTask", "CompleteTask", ...) went
// out over the channels that count into it.
class CallCounts {
 public:
  void Add(absl::string_view method) {
    absl::MutexLock lock(&mu_);
    ++counts_[std::string(method)];
  }
  int operator[](const std::string& method) {
    absl::MutexLock lock(&mu_);
    return counts_[method];
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, int> counts_ ABSL_GUARDED_BY(mu_);
};

// Counts every call into `counts` and intercepts nothing.
class CountingInterceptorFactory
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit CountingInterceptorFactory(std::shared_ptr<CallCounts> counts)
      : counts_(std::move(counts)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    absl::string_view method = info->method();
    counts_->Add(method.substr(method.rfind('/') + 1));
    return nullptr;
  }

 private:
  const std::shared_ptr<CallCounts> counts_;
};

// ---------------------------------------------------------------------------
// The C++ Executor against an in-process taskd on the real clock.

class ExecutorClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TaskServerOptions options;
    options.store.path = dir_.File("taskd.db");
    // Every new progress report is written at once.
    options.service.progress_interval = absl::ZeroDuration();
    absl::Status started = taskd_.Start(options);
    ASSERT_TRUE(started.ok()) << started;
  }
  void TearDown() override { taskd_.Stop(absl::Seconds(1)); }

  // A backup task whose executor sends a heartbeat every `heartbeat`.
  Task MustCreate(const std::string& id,
                  absl::Duration heartbeat = absl::Milliseconds(500)) {
    Task task;
    task.set_id(id);
    task.set_type("backup");
    *task.mutable_heart_beat_interval() =
        Millis(absl::ToInt64Milliseconds(heartbeat));
    absl::StatusOr<Task> created = taskd_.client->Create(task);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *created : Task();
  }

  Task MustGet(const std::string& id) {
    absl::StatusOr<Task> task = taskd_.client->Get(id);
    EXPECT_TRUE(task.ok()) << task.status();
    return task.ok() ? *task : Task();
  }

  ExecutorOptions Options(int64_t max_tasks) {
    ExecutorOptions options;
    options.executor_id = "agent-1";
    options.wait = absl::Seconds(2);
    options.retry_after = absl::Milliseconds(100);
    options.max_tasks = max_tasks;
    options.on_done = [this](const Task& task, const absl::Status& status) {
      done_.Record(task, status);
    };
    return options;
  }

  // A channel to taskd whose calls are counted in calls_: the executor's.
  std::shared_ptr<grpc::Channel> CountedChannel() {
    std::vector<
        std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
        factories;
    factories.push_back(std::make_unique<CountingInterceptorFactory>(calls_));
    return grpc::experimental::CreateCustomChannelWithInterceptors(
        taskd_.address(), grpc::InsecureChannelCredentials(),
        grpc::ChannelArguments(), std::move(factories));
  }

  testing::TempDir dir_;
  testing::InProcessTaskd taskd_;
  DoneLog done_;
  std::shared_ptr<CallCounts> calls_ = std::make_shared<CallCounts>();
};

// Proves the whole round for several tasks: each is acquired, started, run
// once by the work function, completed once with the work's own result code
// under the executor's id, and the progress the work set reaches taskd in a
// heartbeat while the task runs.
TEST_F(ExecutorClientTest, RunsEachTaskOnceWithItsResultAndProgress) {
  const std::map<std::string, Task::ResultCode> results = {
      {"t-ok", Task::ok},
      {"t-error", Task::error},
      {"t-warning", Task::warning}};
  for (const auto& [id, result] : results) MustCreate(id);
  absl::Mutex mu;
  std::map<std::string, int> runs;
  std::map<std::string, bool> progress_seen;
  TaskClient* client = taskd_.client.get();
  absl::Status run =
      Executor(CountedChannel(), Options(3)).Run([&](TaskRun& run) {
        const std::string id = run.task().id();
        EXPECT_EQ(run.task().state(), Task::started);
        EXPECT_EQ(run.task().executor_id(), "agent-1");
        run.SetProgress(3, 4);
        // The heartbeat carries it to taskd while the work runs.
        bool seen = WaitUntil([&] {
          absl::StatusOr<Task> now = client->Get(id);
          return now.ok() && now->progress().current() == 3 &&
                 now->progress().total() == 4;
        });
        absl::MutexLock lock(&mu);
        ++runs[id];
        progress_seen[id] = seen;
        auto it = results.find(id);
        return it == results.end() ? Task::error : it->second;
      });
  ASSERT_TRUE(run.ok()) << run;
  // One start and one complete per task, and max_tasks asked for no more.
  EXPECT_EQ((*calls_)["StartTask"], 3);
  EXPECT_EQ((*calls_)["CompleteTask"], 3);
  EXPECT_EQ((*calls_)["AcquireTask"], 3);
  std::map<std::string, std::vector<DoneLog::Call>> done = done_.calls();
  for (const auto& [id, result] : results) {
    SCOPED_TRACE(id);
    EXPECT_EQ(runs[id], 1);
    EXPECT_TRUE(progress_seen[id]);
    ASSERT_EQ(done[id].size(), 1u);
    EXPECT_TRUE(done[id][0].status.ok()) << done[id][0].status;
    EXPECT_EQ(done[id][0].task.state(), Task::completed);
    Task task = MustGet(id);
    EXPECT_EQ(task.state(), Task::completed);
    EXPECT_EQ(task.result_code(), result);
    EXPECT_EQ(task.executor_id(), "agent-1");
    EXPECT_EQ(task.assign_count(), 1);
    EXPECT_EQ(task.progress().current(), 3);
    EXPECT_EQ(task.progress().total(), 4);
    EXPECT_FALSE(task.cancel_requested());
  }
}

// Proves that the latest progress reaches taskd even when taskd drops a
// report (one within --progress_interval of the last written one): the
// executor must report it again, since "a later heartbeat reports a newer
// one" is what taskd relies on.
TEST_F(ExecutorClientTest, ProgressDroppedByTaskdIsReportedAgain) {
  taskd_.options().server.service.progress_interval = absl::Seconds(1);
  absl::Status restarted = taskd_.Restart();
  ASSERT_TRUE(restarted.ok()) << restarted;
  MustCreate("job");
  TaskClient* client = taskd_.client.get();
  auto progress_is = [&](int64_t current) {
    return WaitUntil([&] {
      absl::StatusOr<Task> now = client->Get("job");
      return now.ok() && now->progress().current() == current;
    });
  };
  bool first_seen = false, last_seen = false;
  absl::Status run =
      Executor(CountedChannel(), Options(1)).Run([&](TaskRun& run) {
        run.SetProgress(1, 4);
        first_seen = progress_is(1);
        // The next heartbeat comes within the 1 s progress interval: taskd
        // drops it, and only a later report can bring 2/4.
        run.SetProgress(2, 4);
        last_seen = progress_is(2);
        return Task::ok;
      });
  ASSERT_TRUE(run.ok()) << run;
  EXPECT_TRUE(first_seen);
  EXPECT_TRUE(last_seen) << "2/4 never reached taskd: "
                         << MustGet("job").progress().ShortDebugString();
}

// Proves that a (non-forced) CancelTask reaches the running work through a
// heartbeat as cancel_requested/stopping, and that the executor then
// completes the task as cancelled.
TEST_F(ExecutorClientTest, CancelRequestStopsTheWorkAndCompletesAsCancelled) {
  MustCreate("job");
  absl::Notification running;
  std::atomic<bool> saw_cancel{false}, saw_lease_lost{false};
  BackgroundExecutor executor(CountedChannel(), Options(1), [&](TaskRun& run) {
    running.Notify();
    WaitUntil([&] { return run.stopping(); }, absl::Seconds(20));
    saw_cancel = run.cancel_requested();
    saw_lease_lost = run.lease_lost();
    return run.stopping() ? Task::cancelled : Task::ok;
  });
  ASSERT_TRUE(running.WaitForNotificationWithTimeout(absl::Seconds(10)));
  absl::StatusOr<Task> asked = taskd_.client->Cancel("job");
  ASSERT_TRUE(asked.ok()) << asked.status();
  EXPECT_EQ(asked->state(), Task::started);
  EXPECT_TRUE(asked->cancel_requested());
  std::optional<absl::Status> run = executor.Wait(absl::Seconds(30));
  ASSERT_TRUE(run.has_value()) << "Run did not return";
  EXPECT_TRUE(run->ok()) << *run;
  EXPECT_TRUE(saw_cancel);
  EXPECT_FALSE(saw_lease_lost);
  Task task = MustGet("job");
  EXPECT_EQ(task.state(), Task::completed);
  EXPECT_EQ(task.result_code(), Task::cancelled);
  ASSERT_EQ(done_.calls()["job"].size(), 1u);
  EXPECT_TRUE(done_.calls()["job"][0].status.ok());
  EXPECT_EQ((*calls_)["CompleteTask"], 1);
}

// Proves that a cancel asked after the last heartbeat still counts: work
// that returns cancelled at once (no heartbeat in between: the interval is
// long) gets the task completed as cancelled, because the executor asks
// taskd once more.
TEST_F(ExecutorClientTest,
       CancelAskedAfterTheLastHeartbeatStillCompletesCancelled) {
  MustCreate("job", absl::Seconds(60));
  TaskClient* client = taskd_.client.get();
  absl::Status run =
      Executor(CountedChannel(), Options(1)).Run([&](TaskRun& run) {
        EXPECT_TRUE(client->Cancel(run.task().id()).ok());
        return Task::cancelled;
      });
  ASSERT_TRUE(run.ok()) << run;
  EXPECT_EQ((*calls_)["HeartbeatTask"], 1);  // the one extra question
  Task task = MustGet("job");
  EXPECT_EQ(task.state(), Task::completed);
  EXPECT_EQ(task.result_code(), Task::cancelled);
}

// Proves that work cannot cancel on its own: cancelled with no cancel asked
// completes the task as error (CompleteTask(cancelled) would be refused).
TEST_F(ExecutorClientTest, CancelledWithoutARequestCompletesAsError) {
  MustCreate("job", absl::Seconds(60));
  absl::Status run = Executor(CountedChannel(), Options(1)).Run([](TaskRun&) {
    return Task::cancelled;
  });
  ASSERT_TRUE(run.ok()) << run;
  Task task = MustGet("job");
  EXPECT_EQ(task.state(), Task::completed);
  EXPECT_EQ(task.result_code(), Task::error);
  ASSERT_EQ(done_.calls()["job"].size(), 1u);
  EXPECT_TRUE(done_.calls()["job"][0].status.ok());
}

// Proves the lost lease: after a forced cancel the next heartbeat gets
// LEASE_LOST, the work sees lease_lost() and stopping(), on_done is told
// FAILED_PRECONDITION/LEASE_LOST, and the executor sends nothing more: the
// task keeps the forced cancel's result and revision.
TEST_F(ExecutorClientTest, ForcedCancelLosesTheLeaseAndTheExecutorLetsGo) {
  MustCreate("job");
  absl::Notification running;
  std::atomic<bool> saw_lease_lost{false}, saw_stopping{false},
      saw_cancel{false};
  BackgroundExecutor executor(CountedChannel(), Options(1), [&](TaskRun& run) {
    running.Notify();
    WaitUntil([&] { return run.stopping(); }, absl::Seconds(20));
    saw_lease_lost = run.lease_lost();
    saw_stopping = run.stopping();
    saw_cancel = run.cancel_requested();
    return Task::ok;
  });
  ASSERT_TRUE(running.WaitForNotificationWithTimeout(absl::Seconds(10)));
  absl::StatusOr<Task> forced = taskd_.client->Cancel("job", "", true);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_EQ(forced->state(), Task::completed);
  EXPECT_EQ(forced->result_code(), Task::cancelled);
  std::optional<absl::Status> run = executor.Wait(absl::Seconds(30));
  ASSERT_TRUE(run.has_value()) << "Run did not return";
  EXPECT_TRUE(run->ok()) << *run;
  EXPECT_TRUE(saw_lease_lost);
  EXPECT_TRUE(saw_stopping);
  EXPECT_FALSE(saw_cancel);
  std::vector<DoneLog::Call> done = done_.calls()["job"];
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].status.code(), absl::StatusCode::kFailedPrecondition)
      << done[0].status;
  EXPECT_EQ(ReasonOf(done[0].status), "LEASE_LOST") << done[0].status;
  EXPECT_EQ((*calls_)["CompleteTask"], 0);
  EXPECT_GE((*calls_)["HeartbeatTask"], 1);
  Task task = MustGet("job");
  EXPECT_EQ(task.state(), Task::completed);
  EXPECT_EQ(task.result_code(), Task::cancelled);
  EXPECT_EQ(task.revision(), forced->revision());
  EXPECT_EQ(taskd_.server->store()->CurrentRevision(), forced->revision());
}

// Proves that a task deleted while it runs is a task lost, not the end of
// the executor: the work is told to stop, on_done hears NOT_FOUND, and Run
// goes on to the next task (RunOne: "a task lost or refused is reported to
// on_done only").
TEST_F(ExecutorClientTest, ATaskDeletedWhileRunningIsLostNotFatal) {
  MustCreate("doomed");
  MustCreate("next");
  absl::Notification running;
  std::atomic<bool> doomed_saw_stopping{false};
  BackgroundExecutor executor(CountedChannel(), Options(2), [&](TaskRun& run) {
    if (run.task().id() != "doomed") return Task::ok;
    running.Notify();
    doomed_saw_stopping =
        WaitUntil([&] { return run.stopping(); }, absl::Seconds(3));
    return Task::ok;
  });
  ASSERT_TRUE(running.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_TRUE(taskd_.client->Delete("doomed").ok());
  std::optional<absl::Status> run = executor.Wait(absl::Seconds(30));
  ASSERT_TRUE(run.has_value()) << "Run did not return";
  EXPECT_TRUE(run->ok()) << *run;
  EXPECT_TRUE(doomed_saw_stopping);
  std::map<std::string, std::vector<DoneLog::Call>> done = done_.calls();
  ASSERT_EQ(done["doomed"].size(), 1u);
  EXPECT_EQ(done["doomed"][0].status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(MustGet("next").state(), Task::completed);
}

// Proves max_tasks: Run returns OK after that many tasks and takes no more,
// though more are enqueued.
TEST_F(ExecutorClientTest, MaxTasksEndsTheRunAndTakesNoMore) {
  for (const char* id : {"a", "b", "c"}) MustCreate(id);
  BackgroundExecutor executor(CountedChannel(), Options(2),
                              [](TaskRun&) { return Task::ok; });
  std::optional<absl::Status> run = executor.Wait(absl::Seconds(30));
  ASSERT_TRUE(run.has_value()) << "Run did not return";
  EXPECT_TRUE(run->ok()) << *run;
  EXPECT_EQ(executor.executor().tasks_done(), 2);
  EXPECT_EQ((*calls_)["AcquireTask"], 2);
  int completed = 0, enqueued = 0;
  for (const char* id : {"a", "b", "c"}) {
    Task task = MustGet(id);
    if (task.state() == Task::completed) ++completed;
    if (task.state() == Task::enqueued) ++enqueued;
  }
  EXPECT_EQ(completed, 2);
  EXPECT_EQ(enqueued, 1);
}

// Proves that Stop() from another thread ends a Run that is waiting in a
// long-poll AcquireTask: Run returns OK within the wait and a margin.
TEST_F(ExecutorClientTest, StopEndsARunWaitingForATask) {
  ExecutorOptions options = Options(0);
  options.wait = absl::Seconds(3);
  BackgroundExecutor executor(CountedChannel(), options,
                              [](TaskRun&) { return Task::ok; });
  // Not an assertion: gives Run time to be inside its first acquire.
  absl::SleepFor(absl::Milliseconds(300));
  const absl::Time stopped = absl::Now();
  executor.executor().Stop();
  std::optional<absl::Status> run =
      executor.Wait(options.wait + absl::Seconds(5));
  ASSERT_TRUE(run.has_value()) << "Run did not return after Stop()";
  EXPECT_TRUE(run->ok()) << *run;
  EXPECT_LT(absl::Now() - stopped, options.wait + absl::Seconds(5));
  EXPECT_EQ(executor.executor().tasks_done(), 0);
  EXPECT_GE((*calls_)["AcquireTask"], 1);
}

// Proves that Stop() during a task tells the work (stopping(), with neither
// a cancel nor a lost lease) and that the task is still completed with the
// work's result before Run returns.
TEST_F(ExecutorClientTest, StopTellsTheRunningWorkAndStillCompletesTheTask) {
  MustCreate("job");
  absl::Notification running;
  std::atomic<bool> saw_stopping{false}, saw_other{false};
  BackgroundExecutor executor(CountedChannel(), Options(0), [&](TaskRun& run) {
    running.Notify();
    saw_stopping = WaitUntil([&] { return run.stopping(); }, absl::Seconds(20));
    saw_other = run.cancel_requested() || run.lease_lost();
    return Task::warning;
  });
  ASSERT_TRUE(running.WaitForNotificationWithTimeout(absl::Seconds(10)));
  executor.executor().Stop();
  std::optional<absl::Status> run = executor.Wait(absl::Seconds(30));
  ASSERT_TRUE(run.has_value()) << "Run did not return after Stop()";
  EXPECT_TRUE(run->ok()) << *run;
  EXPECT_TRUE(saw_stopping);
  EXPECT_FALSE(saw_other);
  Task task = MustGet("job");
  EXPECT_EQ(task.state(), Task::completed);
  EXPECT_EQ(task.result_code(), Task::warning);
}

// Proves that Run refuses to start without an executor id.
TEST_F(ExecutorClientTest, RunNeedsAnExecutorId) {
  ExecutorOptions options = Options(1);
  options.executor_id.clear();
  absl::Status run = Executor(CountedChannel(), options).Run([](TaskRun&) {
    return Task::ok;
  });
  EXPECT_EQ(run.code(), absl::StatusCode::kInvalidArgument) << run;
  EXPECT_EQ((*calls_)["AcquireTask"], 0);  // refused before any call
}

// Proves that UNAVAILABLE is retried: an executor started while taskd is
// down keeps trying, and runs the task once taskd is back.
TEST_F(ExecutorClientTest, RetriesWhileTaskdIsDown) {
  taskd_.Stop(absl::Seconds(1));
  BackgroundExecutor executor(CountedChannel(), Options(1),
                              [](TaskRun&) { return Task::ok; });
  // Not an assertion: lets the executor meet the closed port a few times.
  absl::SleepFor(absl::Milliseconds(500));
  absl::Status restarted = taskd_.Restart();
  ASSERT_TRUE(restarted.ok()) << restarted;
  MustCreate("job");
  std::optional<absl::Status> run = executor.Wait(absl::Seconds(60));
  ASSERT_TRUE(run.has_value()) << "Run did not return";
  EXPECT_TRUE(run->ok()) << *run;
  EXPECT_GE((*calls_)["AcquireTask"], 2);  // one at least while taskd was down
  Task task = MustGet("job");
  EXPECT_EQ(task.state(), Task::completed);
  EXPECT_EQ(task.result_code(), Task::ok);
}

// ---------------------------------------------------------------------------
// taskctl's executor commands against the taskd binary.

class ExecutorClientTaskctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::TaskdProcess::Options options;
    // Every new progress report is written at once.
    options.flags = {"--sync=normal", "--progress_interval=0s"};
    options.db_path = dir_.File("taskd.db");
    taskd_ = std::make_unique<testing::TaskdProcess>(options);
    absl::Status started = taskd_->Start();
    ASSERT_TRUE(started.ok()) << started;
  }

  // taskctl with `args` against the test's taskd.
  Result Taskctl(const std::vector<std::string>& args,
                 absl::Duration stop_after = absl::ZeroDuration()) {
    std::vector<std::string> argv = {"--server=" + taskd_->address()};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunTaskctl(argv, {}, stop_after);
  }

  Result MustRun(const std::vector<std::string>& args) {
    Result run = Taskctl(args);
    EXPECT_EQ(run.rc, 0) << run;
    return run;
  }

  // The task's state as `get -o json` prints it.
  std::string StateOf(const std::string& id) {
    return JsonField(Taskctl({"get", id, "-o", "json"}).out, "state");
  }

  // `acquire` for `executor`; the lease token it printed ("" if none).
  std::string Acquire(const std::string& executor = "w1") {
    Result acquired =
        MustRun({"acquire", "--executor=" + executor, "-o", "json"});
    return JsonField(acquired.out, "leaseToken");
  }

  // A `sleep` argument no other process has (30 s and a fraction that
  // names this test), to find the processes of a `work` command by.
  std::string UniqueSleep() {
    static std::atomic<int> next{0};
    sleeps_.push_back(absl::StrCat("30.", getpid(), next++));
    return sleeps_.back();
  }

  // The processes running `sleep SECONDS`.
  static std::vector<pid_t> SleepProcesses(const std::string& seconds) {
    const std::string wanted = absl::StrCat("sleep", std::string(1, '\0'),
                                            seconds, std::string(1, '\0'));
    std::vector<pid_t> found;
    std::error_code error;
    for (const auto& entry :
         std::filesystem::directory_iterator("/proc", error)) {
      pid_t pid = 0;
      if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
      // A process may exit between the listing and the read, which then
      // fails with ESRCH: read with plain calls that report it, not a
      // stream that throws.
      const int fd = open((entry.path() / "cmdline").c_str(), O_RDONLY);
      if (fd < 0) continue;
      std::string cmdline;
      char buffer[256];
      ssize_t n;
      while ((n = read(fd, buffer, sizeof buffer)) > 0)
        cmdline.append(buffer, n);
      close(fd);
      if (n == 0 && cmdline == wanted) found.push_back(pid);
    }
    return found;
  }

  // `work --run='sleep SECONDS'` for a new task "job" (500 ms heartbeats),
  // in the background; `act` runs once the task is started. What `work`
  // did. It is killed (exit 124) after 25 s, before the sleep could end by
  // itself.
  Result WorkWhile(const std::string& seconds,
                   const std::function<void()>& act) {
    MustRun(
        {"create", "--type=backup", "--id=job", "--heartbeat-interval=500ms"});
    Result work;
    std::thread worker([&] {
      work = Taskctl({"work", "--executor=w1", "--run=sleep " + seconds,
                      "--max-tasks=1", "--wait=5s"},
                     absl::Seconds(25));
    });
    const bool started = WaitUntil([&] { return StateOf("job") == "started"; });
    EXPECT_TRUE(started) << "the task never started";
    if (started) act();
    worker.join();
    return work;
  }

  void TearDown() override {
    // What a `work` may have left running (see CancelStopsTheCommandItself).
    for (const std::string& seconds : sleeps_) {
      for (pid_t pid : SleepProcesses(seconds)) kill(pid, SIGKILL);
    }
  }

  testing::TempDir dir_;
  std::unique_ptr<testing::TaskdProcess> taskd_;
  std::vector<std::string> sleeps_;
};

// Proves that `acquire` assigns the enqueued task to the executor and
// prints it with its lease token, which then starts it.
TEST_F(ExecutorClientTaskctlTest, AcquirePrintsTheTaskWithItsLease) {
  MustRun({"create", "--type=backup", "--id=job"});
  Result acquired = MustRun({"acquire", "--executor=w1", "-o", "json"});
  EXPECT_EQ(JsonField(acquired.out, "id"), "job");
  EXPECT_EQ(JsonField(acquired.out, "state"), "assigned");
  EXPECT_EQ(JsonField(acquired.out, "executor_id"), "w1");
  const std::string lease = JsonField(acquired.out, "leaseToken");
  ASSERT_FALSE(lease.empty()) << acquired;
  Result started = MustRun({"start", "job", "--lease=" + lease, "-o", "json"});
  EXPECT_EQ(JsonField(started.out, "state"), "started");
  // The table form names the token too.
  MustRun({"create", "--type=backup", "--id=job2"});
  Result table = MustRun({"acquire", "--executor=w1"});
  EXPECT_THAT(table.out, HasSubstr("job2"));
  EXPECT_THAT(table.out, HasSubstr("lease token: "));
}

// Proves exit status 3 when no task comes: after waiting --wait with
// nothing enqueued, and at once when only tasks outside --filter are.
TEST_F(ExecutorClientTaskctlTest, AcquireWithNoTaskExitsThree) {
  const absl::Time begin = absl::Now();
  Result none = Taskctl({"acquire", "--executor=w1", "--wait=300ms"});
  EXPECT_EQ(none.rc, 3) << none;
  EXPECT_GE(absl::Now() - begin, absl::Milliseconds(300));
  EXPECT_THAT(none.err, HasSubstr("no task"));
  EXPECT_TRUE(none.out.empty()) << none;
  MustRun({"create", "--type=backup", "--id=job"});
  Result other =
      Taskctl({"acquire", "--executor=w1", "--filter=type = \"restore\""});
  EXPECT_EQ(other.rc, 3) << other;
  EXPECT_EQ(StateOf("job"), "enqueued");
}

// Proves `heartbeat`: it prints the lease's end and whether a cancel was
// asked, records --progress on the task, and says yes once `cancel` (not
// forced) asked for it.
TEST_F(ExecutorClientTaskctlTest, HeartbeatReportsLeaseProgressAndCancel) {
  MustRun({"create", "--type=backup", "--id=job", "--heartbeat-interval=30s"});
  const std::string lease = "--lease=" + Acquire();
  MustRun({"start", "job", lease});
  Result beat = MustRun({"heartbeat", "job", lease, "--progress=2/5"});
  EXPECT_THAT(beat.out, HasSubstr("lease until: "));
  EXPECT_THAT(beat.out, Not(HasSubstr("does not expire")));
  EXPECT_THAT(beat.out, HasSubstr("cancel requested: no"));
  Result got = MustRun({"get", "job", "-o", "json"});
  EXPECT_EQ(JsonField(got.out, "current"), "2") << got;
  EXPECT_EQ(JsonField(got.out, "total"), "5") << got;
  Result asked = MustRun({"cancel", "job", "-o", "json"});
  EXPECT_EQ(JsonField(asked.out, "state"), "started");
  Result after = MustRun({"heartbeat", "job", lease});
  EXPECT_THAT(after.out, HasSubstr("cancel requested: yes"));
  // The executor may then complete it as cancelled.
  Result done =
      MustRun({"complete", "job", lease, "--result=cancelled", "-o", "json"});
  EXPECT_EQ(JsonField(done.out, "result_code"), "cancelled");
}

// Proves fencing: once an assignment is void (ack timeout, re-queued), its
// token gets LEASE_LOST and changes nothing, while the new assignment's
// token works.
TEST_F(ExecutorClientTaskctlTest, AnOldLeaseIsLost) {
  MustRun({"create", "--type=backup", "--id=job", "--max-assign-count=2",
           "--ack-timeout=3s"});
  const std::string first = Acquire("w1");
  ASSERT_FALSE(first.empty());
  // Not started within the ack timeout: back to enqueued. (The second
  // assignment's 3 s are ample for the three calls below.)
  ASSERT_TRUE(WaitUntil([&] { return StateOf("job") == "enqueued"; },
                        absl::Seconds(15)))
      << StateOf("job");
  const std::string second = Acquire("w2");
  ASSERT_FALSE(second.empty());
  EXPECT_NE(first, second);
  Result old = Taskctl({"start", "job", "--lease=" + first});
  EXPECT_EQ(old.rc, 1) << old;
  EXPECT_THAT(old.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(old.err, HasSubstr("lease lost"));
  EXPECT_EQ(StateOf("job"), "assigned");
  Result current = MustRun({"start", "job", "--lease=" + second, "-o", "json"});
  EXPECT_EQ(JsonField(current.out, "state"), "started");
  EXPECT_EQ(JsonField(current.out, "executor_id"), "w2");
}

// Proves `cancel --force`: a held task is completed as cancelled at once,
// and its executor's lease is gone.
TEST_F(ExecutorClientTaskctlTest, ForcedCancelEndsAHeldTask) {
  MustRun({"create", "--type=backup", "--id=job"});
  const std::string lease = "--lease=" + Acquire();
  MustRun({"start", "job", lease});
  Result forced = MustRun({"cancel", "job", "--force", "-o", "json"});
  EXPECT_EQ(JsonField(forced.out, "state"), "completed");
  EXPECT_EQ(JsonField(forced.out, "result_code"), "cancelled");
  Result beat = Taskctl({"heartbeat", "job", lease});
  EXPECT_EQ(beat.rc, 1) << beat;
  EXPECT_THAT(beat.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(beat.err, HasSubstr("lease lost"));
}

// Proves `work`: it runs the command for each task (with TASK_ID set),
// completes it ok for exit status 0 and error otherwise, prints one line per
// task, and exits 0 after --max-tasks.
TEST_F(ExecutorClientTaskctlTest, WorkCompletesTasksByTheCommandsExitStatus) {
  MustRun({"create", "--type=backup", "--id=a"});
  MustRun({"create", "--type=backup", "--id=b"});
  Result both = Taskctl(
      {"work", "--executor=w1", "--run=exit 0", "--max-tasks=2", "--wait=1s"},
      absl::Seconds(60));
  EXPECT_EQ(both.rc, 0) << both;
  EXPECT_THAT(both.out, HasSubstr("a completed ok"));
  EXPECT_THAT(both.out, HasSubstr("b completed ok"));
  for (const char* id : {"a", "b"}) {
    Result got = MustRun({"get", id, "-o", "json"});
    EXPECT_EQ(JsonField(got.out, "state"), "completed") << got;
    EXPECT_EQ(JsonField(got.out, "result_code"), "ok") << got;
    EXPECT_EQ(JsonField(got.out, "executor_id"), "w1") << got;
  }
  MustRun({"create", "--type=backup", "--id=c"});
  Result failing = Taskctl(
      {"work", "--executor=w1", "--run=exit 3", "--max-tasks=1", "--wait=1s"},
      absl::Seconds(60));
  EXPECT_EQ(failing.rc, 0) << failing;
  Result c = MustRun({"get", "c", "-o", "json"});
  EXPECT_EQ(JsonField(c.out, "result_code"), "error") << c;
  // TASK_ID names the task the command runs for.
  MustRun({"create", "--type=backup", "--id=d"});
  MustRun({"create", "--type=backup", "--id=e"});
  Result by_id =
      Taskctl({"work", "--executor=w1", "--run=test \"$TASK_ID\" = d",
               "--max-tasks=2", "--wait=1s"},
              absl::Seconds(60));
  EXPECT_EQ(by_id.rc, 0) << by_id;
  EXPECT_THAT(by_id.out, HasSubstr("d completed ok"));
  EXPECT_THAT(by_id.out, HasSubstr("e completed error"));
}

// Proves that a (non-forced) `cancel` of a task `work` runs stops the
// command and completes the task as cancelled, well before the command
// would have ended by itself (`work` would be killed at 25 s, exit 124,
// before the 30 s sleep ends).
TEST_F(ExecutorClientTaskctlTest, CancelStopsTheWorkCommand) {
  Result work = WorkWhile(UniqueSleep(), [&] { MustRun({"cancel", "job"}); });
  EXPECT_EQ(work.rc, 0) << work;
  EXPECT_THAT(work.out, HasSubstr("job completed cancelled"));
  Result got = MustRun({"get", "job", "-o", "json"});
  EXPECT_EQ(JsonField(got.out, "state"), "completed") << got;
  EXPECT_EQ(JsonField(got.out, "result_code"), "cancelled") << got;
}

// Proves that the cancel stops the command itself, not only the shell that
// runs it: no `sleep` of the task's is left once `work` is done. (dash
// forks for `sleep 30`: a signal to sh alone would leave the sleep running,
// orphaned, for its 30 s.)
TEST_F(ExecutorClientTaskctlTest, CancelStopsTheCommandItself) {
  const std::string seconds = UniqueSleep();
  Result work = WorkWhile(seconds, [&] { MustRun({"cancel", "job"}); });
  EXPECT_EQ(work.rc, 0) << work;
  EXPECT_TRUE(WaitUntil([&] { return SleepProcesses(seconds).empty(); },
                        absl::Seconds(5)))
      << "`sleep " << seconds << "` outlived the cancel";
}

// Proves that `work` lets go of a task whose lease is lost (a forced
// cancel): it stops the command, says so, completes nothing, and exits 0.
TEST_F(ExecutorClientTaskctlTest, ForcedCancelStopsTheWorkCommand) {
  const std::string seconds = UniqueSleep();
  Result forced;
  Result work = WorkWhile(seconds, [&] {
    forced = MustRun({"cancel", "job", "--force", "-o", "json"});
  });
  EXPECT_EQ(work.rc, 0) << work;
  EXPECT_TRUE(WaitUntil([&] { return SleepProcesses(seconds).empty(); },
                        absl::Seconds(5)))
      << "`sleep " << seconds << "` outlived the lost lease";
  EXPECT_THAT(work.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(work.err, HasSubstr("lease lost"));
  EXPECT_THAT(work.out, Not(HasSubstr("job completed")));
  Result got = MustRun({"get", "job", "-o", "json"});
  EXPECT_EQ(JsonField(got.out, "result_code"), "cancelled") << got;
  EXPECT_EQ(JsonField(got.out, "etag"), JsonField(forced.out, "etag")) << got;
}

// Proves that SIGTERM (or Ctrl-C) to `work` stops its command's whole
// process group and completes the task as abandoned, instead of leaving it
// held. The signal comes once `sleep` runs (not after a fixed time: on a
// loaded machine, or under ASan, taskctl may still be acquiring then, and
// the test would not test what it names).
TEST_F(ExecutorClientTaskctlTest, SigtermStopsTheCommandAndAbandonsTheTask) {
  const std::string seconds = UniqueSleep();
  MustRun(
      {"create", "--type=backup", "--id=job", "--heartbeat-interval=500ms"});
  testing::Subprocess work(
      {testing::TaskctlPath(), "--server=" + taskd_->address(), "work",
       "--executor=w1", "--run=sleep " + seconds, "--wait=5s"});
  ASSERT_TRUE(WaitUntil([&] { return !SleepProcesses(seconds).empty(); },
                        absl::Seconds(20)))
      << "`sleep " << seconds << "` never ran: " << work.output();
  work.Signal(SIGTERM);
  EXPECT_EQ(work.Wait(absl::Seconds(15)), 0) << work.output();
  EXPECT_TRUE(WaitUntil([&] { return SleepProcesses(seconds).empty(); },
                        absl::Seconds(5)))
      << "`sleep " << seconds << "` outlived taskctl";
  Result got = MustRun({"get", "job", "-o", "json"});
  EXPECT_EQ(JsonField(got.out, "state"), "completed") << got;
  EXPECT_EQ(JsonField(got.out, "result_code"), "abandoned") << got;
}

// Proves that SIGTERM to an idle `work` (waiting in AcquireTask) ends it at
// once, not when its 30 s wait runs out.
// It exits 0 through its own handler: killed by the signal's default
// action it would exit 128 + SIGTERM.
TEST_F(ExecutorClientTaskctlTest, SigtermEndsAnIdleWorkAtOnce) {
  testing::Subprocess work({testing::TaskctlPath(),
                            "--server=" + taskd_->address(), "work",
                            "--executor=w1", "--run=true", "--wait=30s"});
  absl::SleepFor(absl::Seconds(1));  // waiting in AcquireTask by now
  const absl::Time start = absl::Now();
  work.Signal(SIGTERM);
  EXPECT_EQ(work.Wait(absl::Seconds(10)), 0) << work.output();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5)) << work.output();
}

// Proves that `work` without --wait works against a taskd whose
// --max_acquire_wait is below the executor's default wait (30 s): the
// executor lowers its wait to taskd's cap (WAIT_TOO_LONG) instead of
// failing.
TEST_F(ExecutorClientTaskctlTest, WorkFitsTheServersLongestWait) {
  testing::TaskdProcess::Options options;
  options.flags = {"--sync=normal", "--max_acquire_wait=10s"};
  options.db_path = dir_.File("short-wait.db");
  testing::TaskdProcess short_wait(options);
  absl::Status started = short_wait.Start();
  ASSERT_TRUE(started.ok()) << started;
  const std::string server = "--server=" + short_wait.address();
  Result created =
      testing::RunTaskctl({server, "create", "--type=backup", "--id=job"});
  ASSERT_EQ(created.rc, 0) << created;
  Result work = testing::RunTaskctl(
      {server, "work", "--executor=w1", "--run=true", "--max-tasks=1"}, {},
      absl::Seconds(30));
  EXPECT_EQ(work.rc, 0) << work;
  EXPECT_THAT(work.out, HasSubstr("job completed ok"));
}

// Proves that the executor commands' bad flags are usage errors (exit 2)
// that name the flag, and that nothing is sent.
TEST_F(ExecutorClientTaskctlTest, UsageErrorsNameTheFlag) {
  MustRun({"create", "--type=backup", "--id=job"});
  struct Case {
    std::vector<std::string> args;
    std::string names;
  };
  const std::vector<Case> cases = {
      {{"acquire"}, "--executor"},
      {{"acquire", "--executor=w1", "--wait=soon"}, "--wait"},
      {{"work", "--executor=w1"}, "--run"},
      {{"work", "--run=true"}, "--executor"},
      {{"work", "--executor=w1", "--run=true", "--max-tasks=0"}, "--max-tasks"},
      {{"heartbeat", "job", "--lease=1.x", "--progress=abc"}, "--progress"},
      {{"create", "--type=backup", "--ack-timeout=banana"}, "--ack-timeout"},
      {{"create", "--type=backup", "--max-assign-count=many"},
       "--max-assign-count"},
      {{"start", "job", "--lease-token=x"}, "--lease-token"},
  };
  for (const Case& c : cases) {
    Result run = Taskctl(c.args);
    EXPECT_EQ(run.rc, 2) << absl::StrJoin(c.args, " ") << "\n" << run;
    EXPECT_THAT(run.err, HasSubstr(c.names)) << absl::StrJoin(c.args, " ");
  }
  // Nothing reached taskd: the one task is still enqueued, alone.
  EXPECT_EQ(StateOf("job"), "enqueued");
  Result listed = MustRun({"list", "-o", "json"});
  std::vector<std::string> uuids = absl::StrSplit(listed.out, "\"uuid\"");
  EXPECT_EQ(uuids.size(), 2u) << listed;  // one task: text before, after
}

}  // namespace
}  // namespace taskd
