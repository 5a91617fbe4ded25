// Retention (server/retention.h) over a real SQLite store on a fake clock:
// which tasks go, when, how (a revision each), and how much per round.
#include "server/retention.h"

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "query/task_fields.h"
#include "storage/pg_task_store.h"
#include "tests/postgres_server.h"
#include "tests/test_store.h"

namespace taskd {
namespace {

using testing::Eventually;

class RetentionTest : public ::testing::Test {
 protected:
  RetentionTest() = default;
  explicit RetentionTest(testing::Engine engine) : temp_(engine) {}
  void SetUp() override {
    absl::Status opened = temp_.Open();
    TASKD_SKIP_WITHOUT_POSTGRES(opened);
  }
  void TearDown() override {
    if (retention_ != nullptr) retention_->Stop();
  }

  // A task in `state`; completed ones completed at `completed`.
  Task Put(const std::string& id, Task::State state, absl::Time completed) {
    Task task = testing::NewStoreTask(id, ++n_, completed - absl::Hours(1));
    task.set_state(state);
    if (state == Task::completed) {
      task.set_result_code(Task::ok);
      *task.mutable_completed_at() = ToTimestamp(completed);
    }
    absl::StatusOr<Task> created = temp_.store->Create(task, "");
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *created : task;
  }

  bool Exists(const std::string& id) { return temp_.store->Get(id).ok(); }

  // Retention on `store` (null: the fixture's).
  void StartRetention(absl::Duration age, int batch = 256,
                      std::function<void(const Task&)> on_delete = nullptr,
                      TaskStore* store = nullptr) {
    RetentionOptions options;
    options.age = age;
    options.batch = batch;
    options.clock = &temp_.clock;
    options.on_delete = std::move(on_delete);
    retention_ = std::make_unique<Retention>(options);
    retention_->Start(store != nullptr ? store : temp_.store.get());
  }

  // Waits until the thread has finished `n` rounds since it started.
  void AwaitRounds(int64_t n) {
    ASSERT_TRUE(Eventually([&] { return retention_->rounds() >= n; }));
  }

  testing::TempStore temp_;
  std::unique_ptr<Retention> retention_;
  int64_t n_ = 0;
};

TEST_F(RetentionTest, PeriodIsATenthOfTheAgeWithinBounds) {
  for (auto [age, period] :
       {std::pair{absl::Minutes(5), absl::Seconds(30)},
        std::pair{absl::Hours(1), absl::Minutes(1)},
        std::pair{absl::Hours(24), absl::Minutes(1)},
        std::pair{absl::Seconds(1), absl::Milliseconds(100)},
        std::pair{absl::Milliseconds(10), absl::Milliseconds(100)}}) {
    RetentionOptions options;
    options.age = age;
    EXPECT_EQ(Retention(options).period(), period) << age;
  }
  RetentionOptions fixed;
  fixed.period = absl::Seconds(7);
  EXPECT_EQ(Retention(fixed).period(), absl::Seconds(7));
}

TEST_F(RetentionTest, DeletesOnlyCompletedTasksPastTheAge) {
  const absl::Time now = temp_.clock.Now();
  Put("old-done", Task::completed, now - absl::Hours(2));
  Put("young-done", Task::completed, now - absl::Minutes(30));
  // Old, but not completed: never deleted, however old.
  Task enqueued =
      testing::NewStoreTask("old-enqueued", ++n_, now - absl::Hours(1000));
  ASSERT_TRUE(temp_.store->Create(enqueued, "").ok());
  Put("started", Task::started, now - absl::Hours(5));
  const int64_t before = temp_.store->CurrentRevision();

  StartRetention(absl::Hours(1));
  AwaitRounds(1);
  EXPECT_FALSE(Exists("old-done"));
  EXPECT_TRUE(Exists("young-done"));
  EXPECT_TRUE(Exists("old-enqueued"));
  EXPECT_TRUE(Exists("started"));
  EXPECT_EQ(retention_->deleted(), 1);

  // An ordinary deletion: the next revision, recorded as a DELETED change
  // that carries the task as it was.
  absl::StatusOr<std::vector<Change>> changes =
      temp_.store->ReadChanges(before + 1, 10);
  ASSERT_TRUE(changes.ok()) << changes.status();
  ASSERT_EQ(changes->size(), 1u);
  EXPECT_EQ((*changes)[0].revision, before + 1);
  EXPECT_EQ((*changes)[0].kind, Change::Kind::kDeleted);
  EXPECT_EQ((*changes)[0].task.id(), "old-done");
  EXPECT_EQ((*changes)[0].task.state(), Task::completed);
}

TEST_F(RetentionTest, ATaskGoesWhenItComesOfAgeNotBefore) {
  const absl::Time now = temp_.clock.Now();
  Put("done", Task::completed, now - absl::Minutes(50));  // due in 10 min
  StartRetention(absl::Hours(1));
  AwaitRounds(1);
  temp_.clock.Advance(absl::Minutes(10) - absl::Seconds(1));
  AwaitRounds(2);
  EXPECT_TRUE(Exists("done")) << "deleted before it was an hour old";
  // The thread sleeps until the task's time, not a whole period (1 min).
  temp_.clock.Advance(absl::Seconds(1));
  ASSERT_TRUE(Eventually([&] { return !Exists("done"); }));
  EXPECT_EQ(TimeOf(temp_.store->ReadChanges(temp_.store->CurrentRevision(), 1)
                       ->front()
                       .task.completed_at()) +
                absl::Hours(1),
            temp_.clock.Now());
}

TEST_F(RetentionTest, ATaskCompletedWhileItSleepsGoesWithinAPeriod) {
  StartRetention(absl::Hours(1));  // period: 1 min
  AwaitRounds(1);                  // nothing completed: sleeps a period
  const absl::Time completed = temp_.clock.Now();
  Put("late", Task::completed, completed);
  temp_.clock.Advance(absl::Hours(1) + absl::Minutes(1));
  ASSERT_TRUE(Eventually([&] { return !Exists("late"); }));
}

TEST_F(RetentionTest, ABacklogGoesInBatchesWithoutWaiting) {
  const absl::Time now = temp_.clock.Now();
  for (int i = 0; i < 600; ++i) {
    Put(absl::StrCat("t", i), Task::completed, now - absl::Hours(3));
  }
  Put("young", Task::completed, now);
  const int64_t before = temp_.store->CurrentRevision();
  StartRetention(absl::Hours(1), /*batch=*/256);
  // Three rounds (256 + 256 + 88), one after the other with the clock
  // standing still (the pause after a full round is as long as the round
  // took on the clock: none here).
  ASSERT_TRUE(Eventually([&] { return retention_->deleted() == 600; }));
  EXPECT_TRUE(Exists("young"));
  EXPECT_EQ(temp_.store->CurrentRevision(), before + 600);
  absl::StatusOr<std::vector<Change>> changes =
      temp_.store->ReadChanges(before + 1, 1000);
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->size(), 600u);
  for (const Change& change : *changes) {
    EXPECT_EQ(change.kind, Change::Kind::kDeleted);
  }
  // Counts follow: one completed task left.
  absl::StatusOr<CountResult> counts =
      temp_.store->Count(CountQuery{nullptr, {}});
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->groups.begin()->second, 1);
}

// After a full round the thread leaves the writer alone for as long as
// the round took. Here each deletion takes a second of the fake clock.
TEST_F(RetentionTest, PausesAfterAFullRoundAsLongAsItTook) {
  const absl::Time now = temp_.clock.Now();
  for (int i = 0; i < 12; ++i) {
    Put(absl::StrCat("t", i), Task::completed, now - absl::Hours(3));
  }
  StartRetention(absl::Hours(1), /*batch=*/4, [this](const Task&) {
    temp_.clock.Advance(absl::Seconds(1));
  });
  AwaitRounds(1);
  EXPECT_EQ(retention_->deleted(), 4);
  // The round took 4 s: nothing more until 4 s after it ended.
  temp_.clock.Advance(absl::Seconds(3));
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(retention_->deleted(), 4);
  EXPECT_EQ(retention_->rounds(), 1);
  temp_.clock.Advance(absl::Seconds(1));
  AwaitRounds(2);
  EXPECT_EQ(retention_->deleted(), 8);
}

TEST_F(RetentionTest, StopsPromptlyWhileSleeping) {
  StartRetention(absl::Hours(24));  // sleeps a minute of the fake clock
  AwaitRounds(1);
  const absl::Time start = absl::Now();
  retention_->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

// Several replicas on one PostgreSQL: retention runs only on the replica
// the store elects. One that does not lead deletes nothing, round after
// round, until the leader goes and it takes over.
class RetentionOnReplicasTest : public RetentionTest {
 protected:
  RetentionOnReplicasTest() : RetentionTest(testing::Engine::kPostgres) {}
};

TEST_F(RetentionOnReplicasTest, OnlyTheLeadingReplicaDeletes) {
  ASSERT_TRUE(temp_.store->LeadsSweepers());  // the first store leads
  PgTaskStoreOptions options;
  options.uri = temp_.options.path;
  options.clock = &temp_.clock;
  options.pg.poll_interval = absl::Milliseconds(100);
  absl::StatusOr<std::unique_ptr<TaskStore>> other = OpenPgTaskStore(options);
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_FALSE((*other)->LeadsSweepers());
  Put("old", Task::completed, temp_.clock.Now() - absl::Hours(2));
  StartRetention(absl::Hours(1), 256, nullptr, other->get());
  for (int round = 1; round <= 3; ++round) {
    AwaitRounds(round);
    temp_.clock.Advance(absl::Seconds(1));
  }
  EXPECT_TRUE(Exists("old")) << "deleted by a replica that does not lead";
  EXPECT_EQ(retention_->deleted(), 0);
  // The leader goes: the other takes over, and deletes at its next round.
  temp_.store.reset();
  ASSERT_TRUE(Eventually([&] { return (*other)->LeadsSweepers(); }));
  temp_.clock.Advance(absl::Seconds(1));
  ASSERT_TRUE(Eventually([&] { return retention_->deleted() == 1; }));
  EXPECT_EQ((*other)->Get("old").status().code(), absl::StatusCode::kNotFound);
  retention_->Stop();
}

}  // namespace
}  // namespace taskd
