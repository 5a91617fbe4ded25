// Issue 12: the executor protocol over a real server and store. Leases and
// their fencing tokens, AcquireTask (no double claim, tenants take turns,
// the long poll), heartbeats, cooperative cancel, and every timeout, driven
// by a FakeClock: the tests step time instead of sleeping, and wait (in real
// time, bounded) only for the timer thread to act on a step.
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "base/error_details.h"
#include "client/task_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "query/task_fields.h"
#include "server/task_server.h"
#include "server/task_timers.h"
#include "storage/pg_task_store.h"
#include "tests/postgres_server.h"
#include "tests/test_server.h"
#include "tests/test_store.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using tasks::v1::Task;
using ::testing::HasSubstr;

constexpr char kTenantA[] = "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
constexpr char kTenantB[] = "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";

// A task to create: type backup, the timeouts given (unset: the server's
// defaults, which this fixture sets to none but ack 30 s).
struct Spec {
  std::string id;
  absl::Duration queue = absl::InfiniteDuration();
  absl::Duration ack = absl::InfiniteDuration();
  absl::Duration heartbeat = absl::InfiniteDuration();
  absl::Duration exec = absl::InfiniteDuration();
  int max_assign_count = 0;
  std::string tenant;
  std::string type = "backup";
};

// Run on each engine: on PostgreSQL (a store shared by replicas) leases
// live in the database and the timers run where the store elects them.
class ExecutorTest : public ::testing::TestWithParam<testing::Engine> {
 protected:
  void SetUp() override {
    if (GetParam() == testing::Engine::kPostgres) {
      absl::StatusOr<std::string> uri = testing::NewPostgresDatabase();
      TASKD_SKIP_WITHOUT_POSTGRES(uri.status());
      options_.server.store.path = *uri;
    } else {
      options_.server.store.path = dir_.File("taskd.db");
    }
    options_.server.clock = &clock_;
    ASSERT_TRUE(taskd_.Start(options_).ok());
  }
  void TearDown() override { taskd_.Stop(absl::Seconds(1)); }

  TaskClient& client() { return *taskd_.client; }
  TaskStore* store() { return taskd_.server->store(); }

  Task Create(const Spec& spec) {
    Task task;
    task.set_id(spec.id);
    task.set_type(spec.type);
    task.set_tenant_id(spec.tenant);
    task.set_max_assign_count(spec.max_assign_count);
    if (spec.queue != absl::InfiniteDuration()) {
      *task.mutable_queue_timeout() = ToDuration(spec.queue);
    }
    if (spec.ack != absl::InfiniteDuration()) {
      *task.mutable_ack_timeout() = ToDuration(spec.ack);
    }
    if (spec.heartbeat != absl::InfiniteDuration()) {
      *task.mutable_heart_beat_interval() = ToDuration(spec.heartbeat);
    }
    if (spec.exec != absl::InfiniteDuration()) {
      *task.mutable_exec_timeout() = ToDuration(spec.exec);
    }
    absl::StatusOr<Task> created = client().Create(task);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *created : Task();
  }

  // Acquires the task `id` (the only one the filter matches).
  Task Acquire(const std::string& id, const std::string& executor = "e1") {
    absl::StatusOr<std::optional<Task>> task =
        client().Acquire(executor, absl::StrCat("id = \"", id, "\""));
    EXPECT_TRUE(task.ok()) << task.status();
    if (!task.ok() || !task->has_value()) {
      ADD_FAILURE() << "nothing acquired for " << id;
      return Task();
    }
    return **task;
  }

  // Polls (real time, up to 10 s) until `id` satisfies `done`; returns the
  // task as last read.
  template <typename Predicate>
  Task WaitFor(const std::string& id, Predicate done) {
    absl::Time give_up = absl::Now() + absl::Seconds(10);
    absl::StatusOr<Task> task = client().Get(id);
    while (absl::Now() < give_up && !(task.ok() && done(*task))) {
      absl::SleepFor(absl::Milliseconds(5));
      task = client().Get(id);
    }
    EXPECT_TRUE(task.ok()) << task.status();
    return task.ok() ? *task : Task();
  }

  Task WaitForState(const std::string& id, Task::State state) {
    Task task =
        WaitFor(id, [state](const Task& t) { return t.state() == state; });
    EXPECT_EQ(task.state(), state) << id;
    return task;
  }

  // Lets the timer thread act on a clock step that must change nothing:
  // a few polling periods of real time.
  void Settle() { absl::SleepFor(absl::Milliseconds(50)); }

  // Every recorded change of `id`, in order.
  std::vector<Change> History(const std::string& id) {
    absl::StatusOr<std::vector<Change>> changes =
        store()->ReadChanges(1, 1'000'000);
    EXPECT_TRUE(changes.ok()) << changes.status();
    std::vector<Change> mine;
    if (!changes.ok()) return mine;
    for (Change& change : *changes) {
      if (change.task.id() == id) mine.push_back(std::move(change));
    }
    return mine;
  }

  // How many of the task's changes were timeouts taskd fired.
  int Timeouts(const std::string& id) {
    int fired = 0;
    for (const Change& change : History(id)) {
      if (change.task.timeout() != tasks::v1::TIMEOUT_UNSPECIFIED) ++fired;
    }
    return fired;
  }

  FakeClock clock_{absl::FromUnixSeconds(1'800'000'000)};
  testing::TempDir dir_;
  testing::InProcessTaskd::Options options_;
  testing::InProcessTaskd taskd_;
};

INSTANTIATE_TEST_SUITE_P(
    Engines, ExecutorTest,
    ::testing::Values(testing::Engine::kSqlite, testing::Engine::kPostgres),
    [](const ::testing::TestParamInfo<testing::Engine>& info) {
      return testing::EngineName(info.param);
    });

void ExpectLeaseLost(const absl::Status& status, const std::string& call) {
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition)
      << call << ": " << status;
  EXPECT_EQ(ReasonOf(status), "LEASE_LOST") << call << ": " << status;
}

// A new task gets the server's default ack timeout and max_assign_count 1;
// an assignment sets assignCount, assignedAt, a lease that ends at the ack
// deadline, and a lease token only in the assignment's answer.
TEST_P(ExecutorTest, AnAssignmentIsALease) {
  Task created = Create({"t"});
  EXPECT_EQ(created.ack_timeout().seconds(), 30);
  EXPECT_EQ(created.max_assign_count(), 1);
  EXPECT_FALSE(created.has_deadline());  // no queue timeout
  Task leased = Acquire("t");
  EXPECT_EQ(leased.state(), Task::assigned);
  EXPECT_EQ(leased.executor_id(), "e1");
  EXPECT_EQ(leased.assign_count(), 1);
  EXPECT_EQ(TimeOf(leased.assigned_at()), clock_.Now());
  EXPECT_EQ(TimeOf(leased.lease_expires_at()),
            clock_.Now() + absl::Seconds(30));
  EXPECT_EQ(TimeOf(leased.deadline()), TimeOf(leased.lease_expires_at()));
  EXPECT_FALSE(leased.lease_token().empty());
  // The token is never stored, listed or watched.
  EXPECT_TRUE(client().Get("t")->lease_token().empty());
  for (const Change& change : History("t")) {
    EXPECT_TRUE(change.task.lease_token().empty());
  }
  // AssignTask by hand leases too, with a token of its own.
  Create({"u"});
  absl::StatusOr<Task> assigned = client().Assign("u", "e2");
  ASSERT_TRUE(assigned.ok());
  EXPECT_FALSE(assigned->lease_token().empty());
  EXPECT_NE(assigned->lease_token(), leased.lease_token());
  EXPECT_TRUE(client().Start("u", assigned->lease_token()).ok());
}

// queueTimeout: enqueued longer than it -> completed/timedout, as an
// ordinary change that a watcher sees, once.
TEST_P(ExecutorTest, QueueTimeoutCompletesTheTaskAsTimedout) {
  Create({.id = "q", .queue = absl::Seconds(10)});
  Task before = *client().Get("q");
  EXPECT_EQ(TimeOf(before.deadline()), clock_.Now() + absl::Seconds(10));
  clock_.Advance(absl::Seconds(9));
  Settle();
  EXPECT_EQ(client().Get("q")->state(), Task::enqueued);
  clock_.Advance(absl::Seconds(1));
  Task after = WaitForState("q", Task::completed);
  EXPECT_EQ(after.result_code(), Task::timedout);
  EXPECT_EQ(after.timeout(), tasks::v1::queue_timeout);
  EXPECT_FALSE(after.has_deadline());
  EXPECT_EQ(after.revision(), before.revision() + 1);
  clock_.Advance(absl::Hours(1));
  Settle();
  EXPECT_EQ(Timeouts("q"), 1);
}

// ackTimeout: an assignment not started in time is void: back to enqueued
// (executor and lease cleared) while assignCount < maxAssignCount, then
// completed/abandoned. Each void assignment's token is dead for good.
TEST_P(ExecutorTest, MissedAcksRequeueUpToMaxAssignCountThenAbandon) {
  Create({.id = "a", .ack = absl::Seconds(5), .max_assign_count = 2});
  Task first = Acquire("a", "e1");
  clock_.Advance(absl::Seconds(5));
  Task requeued = WaitForState("a", Task::enqueued);
  EXPECT_EQ(requeued.assign_count(), 1);
  EXPECT_EQ(requeued.executor_id(), "");
  EXPECT_FALSE(requeued.has_lease_expires_at());
  EXPECT_FALSE(requeued.has_assigned_at());
  EXPECT_EQ(requeued.timeout(), tasks::v1::ack_timeout);
  ExpectLeaseLost(client().Start("a", first.lease_token()).status(), "start");

  Task second = Acquire("a", "e2");
  EXPECT_EQ(second.assign_count(), 2);
  EXPECT_EQ(second.timeout(), tasks::v1::TIMEOUT_UNSPECIFIED);
  ExpectLeaseLost(client().Start("a", first.lease_token()).status(),
                  "start with the first token");
  clock_.Advance(absl::Seconds(5));
  Task abandoned = WaitForState("a", Task::completed);
  EXPECT_EQ(abandoned.result_code(), Task::abandoned);
  EXPECT_EQ(abandoned.timeout(), tasks::v1::ack_timeout);
  ExpectLeaseLost(client().Start("a", second.lease_token()).status(),
                  "start with the second token");
  EXPECT_EQ(Timeouts("a"), 2);
}

// heartBeatInterval: heartbeats keep a started task's lease; three
// intervals of silence void the assignment. A renewal writes the lease in
// place, with no new revision.
TEST_P(ExecutorTest, HeartbeatsKeepTheLeaseAndSilenceVoidsIt) {
  Create({.id = "h", .heartbeat = absl::Seconds(10)});
  Task leased = Acquire("h");
  const std::string token = leased.lease_token();
  absl::StatusOr<Task> started = client().Start("h", token);
  ASSERT_TRUE(started.ok());
  EXPECT_EQ(TimeOf(started->lease_expires_at()),
            clock_.Now() + 3 * absl::Seconds(10));
  for (int beat = 0; beat < 6; ++beat) {
    clock_.Advance(absl::Seconds(10));
    absl::StatusOr<tasks::v1::HeartbeatTaskResponse> answer =
        client().Heartbeat("h", token);
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(TimeOf(answer->lease_expires_at()),
              clock_.Now() + absl::Seconds(30));
    EXPECT_FALSE(answer->cancel_requested());
  }
  Settle();  // the timers checkpoint the live lease, without a revision
  Task alive = *client().Get("h");
  EXPECT_EQ(alive.state(), Task::started);
  EXPECT_EQ(alive.revision(), started->revision()) << "a renewal is silent";
  EXPECT_EQ(Timeouts("h"), 0);
  // The executor goes quiet: 29 s later the task is still its own...
  clock_.Advance(absl::Seconds(29));
  Settle();
  EXPECT_EQ(client().Get("h")->state(), Task::started);
  // ...at 30 s it is not (max_assign_count 1: abandoned).
  clock_.Advance(absl::Seconds(1));
  Task lost = WaitForState("h", Task::completed);
  EXPECT_EQ(lost.result_code(), Task::abandoned);
  EXPECT_EQ(lost.timeout(), tasks::v1::heartbeat_timeout);
  ExpectLeaseLost(client().Heartbeat("h", token).status(), "heartbeat");
}

// Heartbeats are renewed in memory: a restart loses them, so every lease
// runs one full lease from the restart. An executor that heartbeated into
// the void while taskd was down keeps its task; one that is gone loses it
// one lease after the restart, not at once.
TEST_P(ExecutorTest, ARestartGivesEveryHeartbeatLeaseOneLease) {
  Create({.id = "live", .heartbeat = absl::Seconds(10)});
  Create({.id = "gone", .heartbeat = absl::Seconds(10)});
  const std::string live = Acquire("live").lease_token();
  ASSERT_TRUE(client().Start("live", live).ok());
  ASSERT_TRUE(client().Start("gone", Acquire("gone").lease_token()).ok());
  taskd_.Stop();
  clock_.Advance(absl::Minutes(5));  // both leases ended while taskd was down
  ASSERT_TRUE(taskd_.Restart().ok());
  Settle();
  EXPECT_EQ(client().Get("live")->state(), Task::started);
  EXPECT_EQ(client().Get("gone")->state(), Task::started);
  for (int beat = 0; beat < 4; ++beat) {
    clock_.Advance(absl::Seconds(10));
    ASSERT_TRUE(client().Heartbeat("live", live).ok());
  }
  // 40 s after the restart: the silent one is gone, the live one is not.
  EXPECT_EQ(WaitForState("gone", Task::completed).timeout(),
            tasks::v1::heartbeat_timeout);
  Settle();
  EXPECT_EQ(client().Get("live")->state(), Task::started);
  EXPECT_EQ(Timeouts("live"), 0);
}

// A live heartbeat lease makes no revision: 60 heartbeats over 10 minutes
// leave the history as it was. On one server (SQLite) the lease is renewed
// in memory and checkpointed about once per ten intervals; on a shared
// store each heartbeat writes it in place (a Touch), and the stored
// deadline is the lease's end.
TEST_P(ExecutorTest, HeartbeatsWriteNoRevisions) {
  Create({.id = "w", .heartbeat = absl::Seconds(10)});
  const std::string token = Acquire("w").lease_token();
  Task started = *client().Start("w", token);
  const int64_t revision = store()->CurrentRevision();
  for (int beat = 0; beat < 60; ++beat) {
    clock_.Advance(absl::Seconds(10));
    absl::StatusOr<tasks::v1::HeartbeatTaskResponse> answer =
        client().Heartbeat("w", token);
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(TimeOf(answer->lease_expires_at()),
              clock_.Now() + absl::Seconds(30));
  }
  Settle();
  EXPECT_EQ(store()->CurrentRevision(), revision);
  Task now = *client().Get("w");
  EXPECT_EQ(now.state(), Task::started);
  // The stored deadline is the next checkpoint, within ten intervals; on a
  // shared store, the end of the lease the last heartbeat wrote.
  EXPECT_GT(TimeOf(now.deadline()), clock_.Now());
  EXPECT_LE(TimeOf(now.deadline()), clock_.Now() + absl::Seconds(100));
  if (store()->Shared()) {
    EXPECT_EQ(TimeOf(now.lease_expires_at()), clock_.Now() + absl::Seconds(30));
    EXPECT_EQ(TimeOf(now.deadline()), clock_.Now() + absl::Seconds(30));
  }
}

// execTimeout: started longer than it -> completed/timedout, heartbeats or
// not.
TEST_P(ExecutorTest, ExecTimeoutCompletesAStartedTaskAsTimedout) {
  Create(
      {.id = "x", .heartbeat = absl::Seconds(10), .exec = absl::Seconds(25)});
  Task leased = Acquire("x");
  ASSERT_TRUE(client().Start("x", leased.lease_token()).ok());
  for (int beat = 0; beat < 2; ++beat) {
    clock_.Advance(absl::Seconds(10));
    ASSERT_TRUE(client().Heartbeat("x", leased.lease_token()).ok());
  }
  ASSERT_TRUE(client().Pause("x", leased.lease_token()).ok());
  clock_.Advance(absl::Seconds(5));  // paused time counts too
  Task done = WaitForState("x", Task::completed);
  EXPECT_EQ(done.result_code(), Task::timedout);
  EXPECT_EQ(done.timeout(), tasks::v1::exec_timeout);
}

// CancelTask on a held task asks the executor (cancelRequested, seen in
// the heartbeat's answer), which completes it as cancelled; force ends it at
// once and kills the lease. Without a request, cancelled stays CancelTask's.
TEST_P(ExecutorTest, CancelIsCooperativeUnlessForced) {
  Create({"c"});
  Task leased = Acquire("c");
  const std::string token = leased.lease_token();
  ASSERT_TRUE(client().Start("c", token).ok());
  absl::Status refused =
      client().Complete("c", Task::cancelled, token).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << refused;
  absl::StatusOr<Task> asked = client().Cancel("c");
  ASSERT_TRUE(asked.ok()) << asked.status();
  EXPECT_EQ(asked->state(), Task::started);
  EXPECT_TRUE(asked->cancel_requested());
  absl::StatusOr<tasks::v1::HeartbeatTaskResponse> answer =
      client().Heartbeat("c", token);
  ASSERT_TRUE(answer.ok());
  EXPECT_TRUE(answer->cancel_requested());
  absl::StatusOr<Task> done = client().Complete("c", Task::cancelled, token);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->result_code(), Task::cancelled);

  Create({"f"});
  Task other = Acquire("f");
  ASSERT_TRUE(client().Start("f", other.lease_token()).ok());
  absl::StatusOr<Task> forced = client().Cancel("f", "", /*force=*/true);
  ASSERT_TRUE(forced.ok());
  EXPECT_EQ(forced->state(), Task::completed);
  EXPECT_EQ(forced->result_code(), Task::cancelled);
  ExpectLeaseLost(client().Heartbeat("f", other.lease_token()).status(),
                  "heartbeat after a forced cancel");
}

// A cancel asked of an executor that then misses its ack ends the task as
// cancelled, not re-queued.
TEST_P(ExecutorTest, AVoidAssignmentOfACancelledTaskIsCancelled) {
  Create({.id = "v", .ack = absl::Seconds(5), .max_assign_count = 3});
  Acquire("v");
  ASSERT_TRUE(client().Cancel("v").ok());
  clock_.Advance(absl::Seconds(5));
  Task done = WaitForState("v", Task::completed);
  EXPECT_EQ(done.result_code(), Task::cancelled);
  EXPECT_EQ(done.timeout(), tasks::v1::ack_timeout);
}

// Every call that takes a lease token refuses one from an earlier
// assignment (LEASE_LOST), a forged one and a missing one (INVALID_ARGUMENT),
// and changes nothing.
TEST_P(ExecutorTest, StaleForgedAndMissingTokensAreRefusedEverywhere) {
  Create({.id = "s", .ack = absl::Seconds(5), .max_assign_count = 2});
  const std::string stale = Acquire("s", "e1").lease_token();
  clock_.Advance(absl::Seconds(5));
  WaitForState("s", Task::enqueued);
  const std::string current = Acquire("s", "e2").lease_token();
  ASSERT_TRUE(client().Start("s", current).ok());
  const int64_t revision = store()->CurrentRevision();
  std::string forged = current;
  forged[forged.size() - 2] = forged[forged.size() - 2] == 'A' ? 'B' : 'A';
  struct Call {
    const char* name;
    std::function<absl::Status(const std::string&)> run;
  };
  const std::vector<Call> calls = {
      {"pause",
       [&](const std::string& t) { return client().Pause("s", t).status(); }},
      {"complete",
       [&](const std::string& t) {
         return client().Complete("s", Task::ok, t).status();
       }},
      {"heartbeat",
       [&](const std::string& t) {
         return client().Heartbeat("s", t).status();
       }},
  };
  for (const Call& call : calls) {
    ExpectLeaseLost(call.run(stale), call.name);
    absl::Status bad = call.run(forged);
    EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument) << call.name;
    EXPECT_THAT(bad.message(), HasSubstr("lease_token")) << call.name;
    absl::Status missing = call.run("");
    EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument)
        << call.name << ": " << missing;
    EXPECT_THAT(missing.message(), HasSubstr("lease_token")) << call.name;
  }
  // Start and Resume need another state; the stale token is refused first.
  ASSERT_TRUE(client().Pause("s", current).ok());
  ExpectLeaseLost(client().Resume("s", stale).status(), "resume");
  const int64_t paused = store()->CurrentRevision();
  EXPECT_EQ(paused, revision + 1) << "a refused call wrote";
  ASSERT_TRUE(client().Resume("s", current).ok());
  ASSERT_TRUE(client().Complete("s", Task::ok, current).ok());
}

// Heartbeats report progress: the first report at once, then at most one
// revision per progress_interval (5 s here), however often they come.
TEST_P(ExecutorTest, ProgressIsCoalesced) {
  Create({.id = "p", .heartbeat = absl::Seconds(1)});
  Task leased = Acquire("p");
  const std::string token = leased.lease_token();
  Task started = *client().Start("p", token);
  for (int second = 1; second <= 12; ++second) {
    clock_.Advance(absl::Seconds(1));
    Task::Progress progress;
    progress.set_current(second);
    progress.set_total(12);
    ASSERT_TRUE(client().Heartbeat("p", token, &progress).ok());
  }
  int progress_revisions = 0;
  for (const Change& change : History("p")) {
    if (change.previous.has_value() &&
        change.task.progress().current() !=
            change.previous->progress().current()) {
      ++progress_revisions;
    }
  }
  // 12 reports: at 1 s (the first), 6 s and 11 s.
  EXPECT_EQ(progress_revisions, 3);
  Task now = *client().Get("p");
  EXPECT_EQ(now.progress().current(), 11);
  EXPECT_EQ(now.progress().total(), 12);
  EXPECT_EQ(now.revision(), started.revision() + 3);
}

// Eight executors acquiring concurrently from 20,000 enqueued tasks: every
// task is acquired exactly once (checked in the history: one assignment per
// task), and no acquire fails.
TEST_P(ExecutorTest, EightExecutorsNeverClaimTheSameTask) {
  // Fewer on PostgreSQL, whose claims are slower (each is a round trip to
  // the server); still thousands of claims racing.
  const int kTasks = GetParam() == testing::Engine::kPostgres ? 5'000 : 20'000;
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kTasks; i += kThreads) Create({absl::StrCat("n", i)});
    });
  }
  for (auto& thread : threads) thread.join();
  threads.clear();
  absl::Mutex mu;
  std::map<std::string, std::string> taken;  // task -> executor
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      TaskClient executor(taskd_.NewChannel());
      const std::string name = absl::StrCat("e", t);
      while (true) {
        absl::StatusOr<std::optional<Task>> task = executor.Acquire(name);
        if (!task.ok()) {
          ++failures;
          return;
        }
        if (!task->has_value()) return;
        absl::MutexLock lock(&mu);
        EXPECT_TRUE(taken.emplace((*task)->id(), name).second)
            << (*task)->id() << " acquired twice";
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(taken.size(), static_cast<size_t>(kTasks));
  absl::StatusOr<std::vector<Change>> changes =
      store()->ReadChanges(1, 10 * kTasks);
  ASSERT_TRUE(changes.ok());
  std::map<std::string, int> assignments;
  for (const Change& change : *changes) {
    if (change.task.state() == Task::assigned) ++assignments[change.task.id()];
  }
  ASSERT_EQ(assignments.size(), static_cast<size_t>(kTasks));
  for (const auto& [id, count] : assignments) {
    ASSERT_EQ(count, 1) << id;
    ASSERT_EQ(taken[id], *client().Get(id).value().mutable_executor_id());
  }
}

// Two tenants at one priority, one with 10,000 queued (older) and one with
// 10: the tenants take turns, so the small tenant's tasks are all among the
// first 20 acquired. Within a tenant, priority then age.
TEST_P(ExecutorTest, TenantsTakeTurnsWithinAPriority) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < 10'000; i += 8) {
        Create({.id = absl::StrCat("big-", i), .tenant = kTenantA});
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int i = 0; i < 10; ++i) {
    clock_.Advance(absl::Milliseconds(1));
    Create({.id = absl::StrCat("small-", i), .tenant = kTenantB});
  }
  int small = 0;
  for (int n = 0; n < 20; ++n) {
    absl::StatusOr<std::optional<Task>> task = client().Acquire("e");
    ASSERT_TRUE(task.ok() && task->has_value());
    if ((*task)->tenant_id() == kTenantB) {
      EXPECT_EQ((*task)->id(), absl::StrCat("small-", small));  // oldest first
      ++small;
    }
  }
  EXPECT_EQ(small, 10);
  // A higher priority goes first, whatever the tenant.
  Task urgent;
  urgent.set_id("urgent");
  urgent.set_type("backup");
  urgent.set_priority("high");
  urgent.set_tenant_id(kTenantA);
  ASSERT_TRUE(client().Create(urgent).ok());
  EXPECT_EQ(client().Acquire("e").value()->id(), "urgent");
}

// A waiting AcquireTask is woken by the commit of a matching task (not by
// others), and answers "none" when its wait ends on the clock.
TEST_P(ExecutorTest, AWaitingAcquireWakesOnAMatchingCreate) {
  std::atomic<bool> answered{false};
  absl::Time answered_at;
  absl::StatusOr<std::optional<Task>> got;
  std::thread waiter([&] {
    TaskClient executor(taskd_.NewChannel());
    got = executor.Acquire("e", "type = \"backup\"", absl::Seconds(30));
    answered_at = absl::Now();
    answered = true;
  });
  absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (taskd_.server->dispatcher()->waiting() == 0 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_EQ(taskd_.server->dispatcher()->waiting(), 1u);
  Create({.id = "other", .type = "restore"});
  Settle();
  EXPECT_FALSE(answered) << "woken by a task its filter does not match";
  EXPECT_EQ(taskd_.server->dispatcher()->waiting(), 1u);
  Create({"wanted"});
  const absl::Time created_at = absl::Now();
  waiter.join();
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->id(), "wanted");
  EXPECT_EQ((*got)->state(), Task::assigned);
  // Generous: the benchmark records the real figure.
  EXPECT_LT(answered_at - created_at, absl::Seconds(2));

  // Nothing comes: the wait ends when the (fake) clock passes it.
  std::thread idle([&] {
    TaskClient executor(taskd_.NewChannel());
    got = executor.Acquire("e", "type = \"nothing\"", absl::Seconds(5));
  });
  give_up = absl::Now() + absl::Seconds(10);
  while (taskd_.server->dispatcher()->waiting() == 0 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  clock_.Advance(absl::Seconds(5));
  idle.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE(got->has_value());
}

// The deadlines live in the store: after a restart each fires once, at its
// time; one that passed while taskd was down fires at start-up.
TEST_P(ExecutorTest, DeadlinesSurviveARestartAndFireOnce) {
  Create({.id = "ack", .ack = absl::Seconds(10)});
  Acquire("ack");
  Create({.id = "beat", .heartbeat = absl::Seconds(20)});
  ASSERT_TRUE(client().Start("beat", Acquire("beat").lease_token()).ok());
  Create({.id = "queue", .queue = absl::Seconds(100)});
  Create({.id = "down", .queue = absl::Seconds(5)});
  taskd_.Stop();
  clock_.Advance(absl::Seconds(6));  // "down" passes while taskd is down
  ASSERT_TRUE(taskd_.Restart().ok());
  EXPECT_EQ(WaitForState("down", Task::completed).result_code(),
            Task::timedout);
  Settle();
  EXPECT_EQ(client().Get("ack")->state(), Task::assigned);
  clock_.Advance(absl::Seconds(4));  // 10 s: ack
  EXPECT_EQ(WaitForState("ack", Task::completed).timeout(),
            tasks::v1::ack_timeout);
  EXPECT_EQ(client().Get("beat")->state(), Task::started);
  // 60 s after its start: three missed heartbeats, but taskd restarted at
  // 6 s and saw none of the heartbeats sent meanwhile: the lease runs one
  // full lease from the restart (66 s).
  clock_.Advance(absl::Seconds(50));
  Settle();
  EXPECT_EQ(client().Get("beat")->state(), Task::started);
  clock_.Advance(absl::Seconds(6));
  EXPECT_EQ(WaitForState("beat", Task::completed).timeout(),
            tasks::v1::heartbeat_timeout);
  EXPECT_EQ(client().Get("queue")->state(), Task::enqueued);
  ASSERT_TRUE(taskd_.Restart().ok());
  clock_.Advance(absl::Seconds(34));  // 100 s
  EXPECT_EQ(WaitForState("queue", Task::completed).timeout(),
            tasks::v1::queue_timeout);
  clock_.Advance(absl::Hours(1));
  ASSERT_TRUE(taskd_.Restart().ok());
  Settle();
  for (const char* id : {"ack", "beat", "queue", "down"}) {
    EXPECT_EQ(Timeouts(id), 1) << id;
  }
}

// Bad input gets INVALID_ARGUMENT naming the field.
TEST_P(ExecutorTest, BadInputNamesTheField) {
  struct Case {
    std::function<void(Task*)> set;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](Task* t) { t->mutable_ack_timeout()->set_seconds(-1); },
       "task.ackTimeout"},
      {[](Task* t) { t->mutable_queue_timeout()->set_nanos(50'000'000); },
       "task.queueTimeout"},
      {[](Task* t) {
         t->mutable_exec_timeout()->set_seconds(400LL * 24 * 3600);
       },
       "task.execTimeout"},
      {[](Task* t) { t->mutable_heart_beat_interval()->set_nanos(-5); },
       "task.heartBeatInterval"},
      {[](Task* t) { t->set_max_assign_count(101); }, "task.maxAssignCount"},
      {[](Task* t) { t->set_max_assign_count(-1); }, "task.maxAssignCount"},
      {[](Task* t) { t->set_assign_count(2); }, "task.assignCount"},
      {[](Task* t) { t->set_cancel_requested(true); }, "task.cancelRequested"},
      {[](Task* t) { t->set_lease_token("1.x"); }, "task.leaseToken"},
      {[](Task* t) { t->mutable_deadline()->set_seconds(5); }, "task.deadline"},
  };
  for (const Case& c : cases) {
    Task task;
    task.set_type("backup");
    c.set(&task);
    absl::Status status = client().Create(task).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(status.message(), HasSubstr(c.field)) << status;
  }
  auto acquire = [&](const std::string& executor, const std::string& filter,
                     absl::Duration wait) {
    return client().Acquire(executor, filter, wait).status();
  };
  EXPECT_THAT(acquire("", "", absl::ZeroDuration()).message(),
              HasSubstr("executor_id"));
  absl::Status too_long = acquire("e", "", absl::Minutes(2));
  EXPECT_EQ(too_long.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_long.message(), HasSubstr("wait"));
  EXPECT_THAT(too_long.message(), HasSubstr("1m"));  // the cap
  EXPECT_THAT(acquire("e", "state = ", absl::ZeroDuration()).message(),
              HasSubstr("filter"));
  tasks::v1::AcquireTaskRequest negative;
  negative.set_executor_id("e");
  negative.mutable_wait()->set_seconds(-1);
  grpc::ClientContext context;
  tasks::v1::AcquireTaskResponse response;
  grpc::Status raw =
      client().stub()->AcquireTask(&context, negative, &response);
  EXPECT_EQ(raw.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(raw.error_message(), HasSubstr("wait"));

  Create({"b"});
  const std::string token = Acquire("b").lease_token();
  ASSERT_TRUE(client().Start("b", token).ok());
  Task::Progress over;
  over.set_current(11);
  over.set_total(10);
  absl::Status progress = client().Heartbeat("b", token, &over).status();
  EXPECT_EQ(progress.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(progress.message(), HasSubstr("progress"));
  EXPECT_EQ(client().Heartbeat("missing", token).status().code(),
            absl::StatusCode::kNotFound);
}

// A server that does not lead the timers (replicas on PostgreSQL) keeps no
// leases in memory, even those of changes delivered before its timers
// started, and sleeps between its checks of the lead: a lease end that
// passed does not wake it, and time passing wakes it once per
// leader_check.
TEST(TimersOnReplicasTest, AServerThatDoesNotLeadSleepsBetweenChecks) {
  absl::StatusOr<std::string> uri = testing::NewPostgresDatabase();
  TASKD_SKIP_WITHOUT_POSTGRES(uri.status());
  FakeClock clock(absl::FromUnixSeconds(1'800'000'000));
  PgTaskStoreOptions store_options;
  store_options.uri = *uri;
  store_options.clock = &clock;
  absl::StatusOr<std::unique_ptr<TaskStore>> leader =
      OpenPgTaskStore(store_options);
  ASSERT_TRUE(leader.ok()) << leader.status();
  absl::StatusOr<std::unique_ptr<TaskStore>> other =
      OpenPgTaskStore(store_options);
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE((*leader)->LeadsSweepers());
  ASSERT_FALSE((*other)->LeadsSweepers());

  TaskTimersOptions options;
  options.clock = &clock;
  TaskTimers timers(options);
  // A started task's heartbeat lease, as the follower may deliver before
  // the timers start.
  Change change;
  change.revision = 1;
  change.kind = Change::Kind::kUpdated;
  change.task.set_id("leased");
  change.task.set_state(Task::started);
  change.task.set_assign_count(1);
  *change.task.mutable_heart_beat_interval() = ToDuration(absl::Seconds(10));
  *change.task.mutable_lease_expires_at() =
      ToTimestamp(clock.Now() + absl::Seconds(30));
  *change.task.mutable_deadline() = change.task.lease_expires_at();
  timers.OnCommit({change});
  ASSERT_TRUE(timers.Start(other->get()).ok());
  EXPECT_EQ(timers.LeaseEnd(change.task), absl::InfinitePast())
      << "a lease in memory on a shared store";
  ASSERT_TRUE(testing::Eventually([&] { return timers.rounds() >= 1; }));
  clock.Advance(absl::Minutes(1));  // past the lease's end
  ASSERT_TRUE(testing::Eventually([&] { return timers.rounds() >= 2; }));
  absl::SleepFor(absl::Milliseconds(300));
  const int64_t rounds = timers.rounds();
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(timers.rounds(), rounds) << "the loop spins";
  // A commit with a deadline due does not wake it either.
  timers.OnCommit({change});
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(timers.rounds(), rounds);
  clock.Advance(options.leader_check);
  EXPECT_TRUE(
      testing::Eventually([&] { return timers.rounds() == rounds + 1; }));
  EXPECT_EQ(timers.fired(), 0);
  timers.Stop();
}

}  // namespace
}  // namespace taskd
