// The executor machinery without gRPC, so that it runs under TSan
// (scripts/sanitize): the Dispatcher's claims and parked acquires, and the
// TaskTimers, on a real store, from many threads at once.
#include "server/dispatcher.h"

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "query/task_fields.h"
#include "server/task_lifecycle.h"
#include "server/task_timers.h"
#include "tests/test_store.h"

namespace taskd {
namespace {

using tasks::v1::Task;

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    temp_.options.on_commit = [this](const std::vector<Change>& changes) {
      dispatcher_.OnCommit(changes);
      timers_.OnCommit(changes);
    };
    ASSERT_TRUE(temp_.Open().ok());
    dispatcher_.Attach(temp_.store.get());
  }
  void TearDown() override {
    dispatcher_.Shutdown();
    timers_.Stop();
    temp_.store.reset();
  }

  // An enqueued task; with `queue` > 0, a queue timeout that long.
  void Create(const std::string& id, absl::Duration queue = {}) {
    static std::atomic<int64_t> n{0};
    Task task = testing::NewStoreTask(id, ++n, temp_.clock.Now());
    task.set_max_assign_count(1);
    if (queue > absl::ZeroDuration()) {
      task.mutable_queue_timeout()->set_seconds(absl::ToInt64Seconds(queue));
      SetQueueDeadline(&task, temp_.clock.Now());
    }
    ASSERT_TRUE(temp_.store->Create(task, "").ok()) << id;
  }

  AcquireSpec Spec(const std::string& executor, absl::Duration wait) {
    AcquireSpec spec;
    MoveArgs args;
    args.executor_id = executor;
    Clock* clock = &temp_.clock;
    spec.assign = [args, clock](const Task& current) {
      return ApplyMove(current, Move::kAssign, args, clock->Now());
    };
    spec.wait = wait;
    return spec;
  }

  // Acquires and waits for the answer.
  absl::StatusOr<std::optional<Task>> Acquire(const std::string& executor,
                                              absl::Duration wait) {
    absl::Notification done;
    absl::StatusOr<std::optional<Task>> result;
    dispatcher_.Acquire(Spec(executor, wait),
                        [&](absl::StatusOr<std::optional<Task>> r) {
                          result = std::move(r);
                          done.Notify();
                        });
    done.WaitForNotification();
    return result;
  }

  testing::TempStore temp_;
  Dispatcher dispatcher_{[this] {
    DispatcherOptions options;
    options.clock = &temp_.clock;
    return options;
  }()};
  TaskTimers timers_{[this] {
    TaskTimersOptions options;
    options.clock = &temp_.clock;
    options.batch = 16;
    return options;
  }()};
};

// Executors that wait while tasks are created: every task goes to exactly
// one executor, and a parked acquire is woken for each.
TEST_F(DispatcherTest, ParkedAcquiresAreWokenAndNeverShareATask) {
  constexpr int kExecutors = 6, kTasks = 600;
  absl::Mutex mu;
  std::map<std::string, int> taken;
  std::atomic<int> got{0};
  std::vector<std::thread> executors;
  for (int e = 0; e < kExecutors; ++e) {
    executors.emplace_back([&, e] {
      // The fake clock never reaches the wait's end: every acquire is
      // answered by a task.
      while (got.load() < kTasks) {
        absl::StatusOr<std::optional<Task>> task =
            Acquire(absl::StrCat("e", e), absl::Hours(1));
        ASSERT_TRUE(task.ok()) << task.status();
        if (!task->has_value()) return;  // shut down
        ++got;
        absl::MutexLock lock(&mu);
        ++taken[(*task)->id()];
      }
    });
  }
  std::vector<std::thread> creators;
  for (int c = 0; c < 2; ++c) {
    creators.emplace_back([&, c] {
      for (int i = c; i < kTasks; i += 2) Create(absl::StrCat("t", i));
    });
  }
  for (auto& thread : creators) thread.join();
  absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (got.load() < kTasks && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(got.load(), kTasks);
  dispatcher_.Shutdown();  // the executors still parked get "none"
  for (auto& thread : executors) thread.join();
  ASSERT_EQ(taken.size(), static_cast<size_t>(kTasks));
  for (const auto& [id, times] : taken) EXPECT_EQ(times, 1) << id;
}

// The timers fire every due deadline once while acquires race them: a task
// ends either acquired or timed out, never both.
TEST_F(DispatcherTest, TimersAndClaimsRaceWithoutDoubleMoves) {
  constexpr int kTasks = 400;
  for (int i = 0; i < kTasks; ++i) {
    Create(absl::StrCat("q", i), absl::Seconds(10));
  }
  timers_.Start(temp_.store.get());
  std::atomic<int> acquired{0};
  std::vector<std::thread> executors;
  for (int e = 0; e < 3; ++e) {
    executors.emplace_back([&, e] {
      while (true) {
        absl::StatusOr<std::optional<Task>> task =
            Acquire(absl::StrCat("e", e), absl::ZeroDuration());
        ASSERT_TRUE(task.ok()) << task.status();
        if (!task->has_value()) return;
        ++acquired;
      }
    });
  }
  temp_.clock.Advance(absl::Seconds(10));
  for (auto& thread : executors) thread.join();
  absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (acquired.load() + timers_.fired() < kTasks && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(acquired.load() + timers_.fired(), kTasks);
  int timed_out = 0, assigned = 0;
  for (int i = 0; i < kTasks; ++i) {
    absl::StatusOr<Task> task = temp_.store->Get(absl::StrCat("q", i));
    ASSERT_TRUE(task.ok());
    if (task->state() == Task::assigned) ++assigned;
    if (task->result_code() == Task::timedout) ++timed_out;
  }
  EXPECT_EQ(assigned, acquired.load());
  EXPECT_EQ(timed_out, timers_.fired());
}

}  // namespace
}  // namespace taskd
