// Group commit (issue 6): many concurrent writes share one transaction and
// one sync, yet each keeps its own revision, result and failure.
//
// Batches are formed deterministically, without timing: a first write whose
// mutation waits on a notification holds the writer thread inside its batch;
// every write submitted meanwhile is queued, and all of them form the next
// batch once the first is released.
#include <sqlite3.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "query/task_fields.h"
#include "storage/fault_injection_vfs.h"
#include "storage/sqlite_task_store.h"
#include "tests/test_store.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Results of asynchronous writes, by the caller's own key.
class Results {
 public:
  TaskStore::WriteDone Slot(const std::string& key) {
    return [this, key](absl::StatusOr<Task> result) {
      absl::MutexLock lock(&mu_);
      EXPECT_EQ(results_.count(key), 0u) << key << " acknowledged twice";
      results_.emplace(key, std::move(result));
    };
  }
  // Waits until `n` results are in, then returns them.
  std::map<std::string, absl::StatusOr<Task>> Await(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return results_.size() >= n;
    };
    mu_.Await(absl::Condition(&enough));
    return results_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, absl::StatusOr<Task>> results_ ABSL_GUARDED_BY(mu_);
};

// Rebuilds the tasks from the history, checking on the way that every
// change's "previous" image is the task as the replay had it: the changes
// were applied in revision order.
std::map<std::string, Task> Replay(const std::vector<Change>& changes) {
  std::map<std::string, Task> tasks;
  for (const Change& change : changes) {
    const std::string& id = change.task.id();
    auto it = tasks.find(id);
    if (change.kind == Change::Kind::kCreated) {
      EXPECT_TRUE(it == tasks.end()) << id << " created twice";
    } else {
      EXPECT_TRUE(it != tasks.end()) << id << " changed before created";
      if (it != tasks.end() && change.previous.has_value()) {
        EXPECT_EQ(change.previous->SerializeAsString(),
                  it->second.SerializeAsString())
            << "revision " << change.revision << " of " << id
            << " did not start from the task's previous state";
      }
    }
    if (change.kind == Change::Kind::kDeleted) {
      tasks.erase(id);
    } else {
      tasks[id] = change.task;
    }
  }
  return tasks;
}

class GroupCommitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The durability mode does not change what is batched; NORMAL keeps the
    // test quick on slow disks.
    options_.synchronous_full = false;
    options_.on_commit = [this](const std::vector<Change>& changes) {
      absl::MutexLock lock(&mu_);
      std::vector<int64_t> revisions;
      for (const Change& c : changes) revisions.push_back(c.revision);
      commits_.push_back(revisions);
    };
    options_.observe_commit = [this](absl::Duration, size_t n) {
      absl::MutexLock lock(&mu_);
      observed_sizes_.push_back(n);
    };
  }

  void Open() {
    absl::Status opened = temp_.Open();
    ASSERT_TRUE(opened.ok()) << opened;
  }

  Task NewTask(const std::string& id) {
    return testing::NewStoreTask(id, n_.fetch_add(1), clock_.Now());
  }

  static TaskStore::Mutation SetState(Task::State from, Task::State to) {
    return [from, to](const Task& current) -> absl::StatusOr<Task> {
      if (current.state() != from) {
        return absl::FailedPreconditionError(
            absl::StrCat("task is ", Task::State_Name(current.state())));
      }
      Task next = current;
      next.set_state(to);
      return next;
    };
  }

  // Holds the writer thread inside a batch (in the mutation of an update of
  // task `id`, which must exist) until Release(). With `refuse`, the held
  // update then fails, so that its batch commits nothing (and syncs
  // nothing).
  void HoldWriter(const std::string& id, bool refuse = false) {
    TaskStore::Mutation hold =
        [this, refuse](const Task& current) -> absl::StatusOr<Task> {
      held_.Notify();
      release_.WaitForNotification();
      if (refuse) return absl::AbortedError("refused after the hold");
      Task next = current;
      next.set_type("held");
      return next;
    };
    store_->Write({TaskWrite::Update{id, std::move(hold)}},
                  [this](absl::StatusOr<Task> result) {
                    absl::MutexLock lock(&mu_);
                    hold_result_ = std::move(result);
                  });
    held_.WaitForNotification();
  }
  void Release() { release_.Notify(); }

  std::vector<std::vector<int64_t>> Commits() {
    absl::MutexLock lock(&mu_);
    return commits_;
  }

  testing::TempStore temp_;
  FakeClock& clock_ = temp_.clock;
  SqliteTaskStoreOptions& options_ = temp_.options;
  std::unique_ptr<TaskStore>& store_ = temp_.store;
  std::atomic<int64_t> n_{0};
  absl::Notification held_, release_;
  absl::Mutex mu_;
  std::vector<std::vector<int64_t>> commits_ ABSL_GUARDED_BY(mu_);
  std::vector<size_t> observed_sizes_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::StatusOr<Task>> hold_result_ ABSL_GUARDED_BY(mu_);
};

TEST_F(GroupCommitTest, QueuedWritesShareOneCommitWithTheirOwnRevisions) {
  Open();
  ASSERT_TRUE(store_->Create(NewTask("hold"), "").ok());  // revision 1
  HoldWriter("hold");                                     // revision 2
  Results results;
  constexpr int kWrites = 50;
  for (int i = 0; i < kWrites; ++i) {
    std::string id = absl::StrCat("t", i);
    store_->Write({TaskWrite::Create{NewTask(id), ""}}, results.Slot(id));
  }
  Release();
  auto done = results.Await(kWrites);
  // In the order they were queued, revisions 3 .. 52.
  for (int i = 0; i < kWrites; ++i) {
    const absl::StatusOr<Task>& task = done.at(absl::StrCat("t", i));
    ASSERT_TRUE(task.ok()) << task.status();
    EXPECT_EQ(task->revision(), 3 + i);
    EXPECT_EQ(task->etag(), absl::StrCat("r", 3 + i));
  }
  EXPECT_EQ(store_->CurrentRevision(), 2 + kWrites);
  // One commit for the create, one for the held update, one for the 50.
  std::vector<std::vector<int64_t>> commits = Commits();
  ASSERT_EQ(commits.size(), 3u);
  EXPECT_THAT(commits[0], ElementsAre(1));
  EXPECT_THAT(commits[1], ElementsAre(2));
  ASSERT_EQ(commits[2].size(), static_cast<size_t>(kWrites));
  for (int i = 0; i < kWrites; ++i) EXPECT_EQ(commits[2][i], 3 + i);
  absl::MutexLock lock(&mu_);
  EXPECT_THAT(observed_sizes_, ElementsAre(1, 1, kWrites));
}

TEST_F(GroupCommitTest, AFailingWriteInABatchFailsAlone) {
  Open();
  ASSERT_TRUE(store_->Create(NewTask("hold"), "").ok());    // 1
  ASSERT_TRUE(store_->Create(NewTask("queued"), "").ok());  // 2
  ASSERT_TRUE(store_->Create(NewTask("doomed"), "").ok());  // 3
  HoldWriter("hold");                                       // 4
  Results results;
  store_->Write({TaskWrite::Create{NewTask("a"), ""}},
                results.Slot("create a"));
  // The same id again, in the same batch: sees the first, uncommitted.
  store_->Write({TaskWrite::Create{NewTask("a"), ""}},
                results.Slot("create a again"));
  // A move the state does not allow (queued is enqueued, not assigned).
  store_->Write(
      {TaskWrite::Update{"queued", SetState(Task::assigned, Task::started)}},
      results.Slot("start queued"));
  store_->Write(
      {TaskWrite::Update{"queued", SetState(Task::enqueued, Task::assigned)}},
      results.Slot("assign queued"));
  // Sees the assignment just before it, in the same transaction.
  store_->Write(
      {TaskWrite::Update{"queued", SetState(Task::assigned, Task::started)}},
      results.Slot("start queued after assign"));
  store_->Write(
      {TaskWrite::Update{"missing", SetState(Task::enqueued, Task::assigned)}},
      results.Slot("assign missing"));
  TaskStore::Precondition refuse = [](const Task&) {
    return absl::AbortedError("etag does not match");
  };
  store_->Write({TaskWrite::Delete{"doomed", refuse}},
                results.Slot("delete doomed refused"));
  store_->Write({TaskWrite::Delete{"doomed", nullptr}},
                results.Slot("delete doomed"));
  store_->Write({TaskWrite::Create{NewTask("b"), ""}},
                results.Slot("create b"));
  Release();
  auto done = results.Await(9);

  auto code = [&](const std::string& key) {
    return done.at(key).status().code();
  };
  auto revision = [&](const std::string& key) -> int64_t {
    return done.at(key).ok() ? done.at(key)->revision() : -1;
  };
  EXPECT_EQ(revision("create a"), 5);
  EXPECT_EQ(code("create a again"), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(code("start queued"), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(revision("assign queued"), 6);
  EXPECT_EQ(revision("start queued after assign"), 7);
  EXPECT_EQ(code("assign missing"), absl::StatusCode::kNotFound);
  EXPECT_EQ(code("delete doomed refused"), absl::StatusCode::kAborted);
  EXPECT_EQ(revision("delete doomed"), 8);
  EXPECT_EQ(revision("create b"), 9);

  // Only the successful writes are stored and recorded, contiguously.
  EXPECT_EQ(store_->CurrentRevision(), 9);
  std::vector<std::vector<int64_t>> commits = Commits();
  ASSERT_EQ(commits.size(), 5u);
  EXPECT_THAT(commits[4], ElementsAre(5, 6, 7, 8, 9));
  absl::StatusOr<std::vector<Change>> history = store_->ReadChanges(1, 100);
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_EQ(history->size(), 9u);
  for (size_t i = 0; i < history->size(); ++i) {
    EXPECT_EQ((*history)[i].revision, static_cast<int64_t>(i) + 1);
  }
  EXPECT_EQ(store_->Get("queued")->state(), Task::started);
  EXPECT_EQ(store_->Get("doomed").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Get("a")->revision(), 5);
}

TEST_F(GroupCommitTest, AWriteRefusedByAConstraintFailsAlone) {
  Open();
  const std::string t1 = "11111111-1111-4111-8111-111111111111";
  const std::string t2 = "22222222-2222-4222-8222-222222222222";
  Task a = NewTask("a");
  a.set_tenant_id(t1);
  Task b = NewTask("b");
  b.set_tenant_id(t2);
  ASSERT_TRUE(store_->Create(NewTask("hold"), "").ok());  // 1
  ASSERT_TRUE(store_->Create(a, "req").ok());             // 2
  ASSERT_TRUE(store_->Create(b, "req").ok());             // 3
  HoldWriter("hold");                                     // 4
  Results results;
  store_->Write(
      {TaskWrite::Update{"a", SetState(Task::enqueued, Task::assigned)}},
      results.Slot("assign a"));
  // Passes its checks, then fails in its UPDATE statement: moving b to
  // tenant t1 collides with a's (tenant, request id).
  TaskStore::Mutation to_t1 = [&t1](const Task& current) {
    Task next = current;
    next.set_tenant_id(t1);
    return absl::StatusOr<Task>(next);
  };
  store_->Write({TaskWrite::Update{"b", to_t1}}, results.Slot("move b"));
  store_->Write({TaskWrite::Create{NewTask("c"), ""}},
                results.Slot("create c"));
  Release();
  auto done = results.Await(3);
  EXPECT_EQ(done.at("move b").status().code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(done.at("assign a").ok()) << done.at("assign a").status();
  ASSERT_TRUE(done.at("create c").ok()) << done.at("create c").status();
  EXPECT_EQ(done.at("assign a")->revision(), 5);
  EXPECT_EQ(done.at("create c")->revision(), 6);
  EXPECT_EQ(store_->CurrentRevision(), 6);
  EXPECT_EQ(store_->Get("b")->tenant_id(), t2);
  absl::StatusOr<std::vector<Change>> history = store_->ReadChanges(1, 100);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 6u);
  EXPECT_EQ(Replay(*history).at("b").tenant_id(), t2);
}

TEST_F(GroupCommitTest, AHalfAppliedWriteIsLeftOutAndTheBatchAppliedAgain) {
  Open();
  ASSERT_TRUE(store_->Create(NewTask("hold"), "").ok());  // 1
  store_.reset();
  // A history row already at revision 4 makes the history insert of the
  // write that gets revision 4 fail after its task row went in: the write
  // is half applied, as after a storage error between its two statements.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(options_.path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "INSERT INTO changes (revision, kind, task_id, task, "
                         "committed_at) VALUES (4, 1, 'planted', x'', 0)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  Open();
  HoldWriter("hold");  // 2
  Results results;
  std::atomic<int> runs{0};
  TaskStore::Mutation again = [&runs](const Task& current) {
    runs.fetch_add(1);
    Task next = current;
    next.set_type("again");
    return absl::StatusOr<Task>(next);
  };
  // Revisions 3 and 4.
  store_->Write({TaskWrite::Update{"hold", again}},
                results.Slot("update hold"));
  store_->Write({TaskWrite::Create{NewTask("x"), ""}},
                results.Slot("create x"));
  Release();
  auto done = results.Await(2);
  ASSERT_TRUE(done.at("update hold").ok()) << done.at("update hold").status();
  EXPECT_EQ(done.at("update hold")->revision(), 3);
  EXPECT_FALSE(done.at("create x").ok());
  // The batch was applied again without x: the update's mutation ran twice,
  // and x's task row went with the first attempt.
  EXPECT_EQ(runs.load(), 2);
  EXPECT_EQ(store_->CurrentRevision(), 3);
  EXPECT_EQ(store_->Get("x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Get("hold")->type(), "again");
}

TEST_F(GroupCommitTest, AFailedCommitFailsTheBatchAndPublishesNothing) {
  sqlite::FaultInjectionVfs* vfs =
      sqlite::FaultInjectionVfs::Register("group-commit-faults");
  options_.vfs = vfs->name();
  options_.synchronous_full = true;  // every commit syncs the log
  Open();
  ASSERT_TRUE(store_->Create(NewTask("hold"), "").ok());    // 1
  ASSERT_TRUE(store_->Create(NewTask("queued"), "").ok());  // 2
  HoldWriter("hold", /*refuse=*/true);
  Results results;
  store_->Write({TaskWrite::Create{NewTask("x"), ""}},
                results.Slot("create x"));
  store_->Write(
      {TaskWrite::Update{"queued", SetState(Task::enqueued, Task::assigned)}},
      results.Slot("assign queued"));
  store_->Write(
      {TaskWrite::Update{"missing", SetState(Task::enqueued, Task::assigned)}},
      results.Slot("assign missing"));
  // The held batch changes nothing and so syncs nothing; the next one,
  // holding the writes above, fails at the sync of its commit.
  int64_t injected_before = vfs->injected();
  vfs->FailSyncs({SQLITE_IOERR_FSYNC, /*skip=*/0, /*times=*/1,
                  sqlite::FaultInjectionVfs::kWal});
  Release();
  auto done = results.Await(3);
  vfs->Clear();
  EXPECT_EQ(vfs->injected() - injected_before, 1);
  {
    absl::MutexLock lock(&mu_);
    ASSERT_TRUE(hold_result_.has_value());
    EXPECT_EQ(hold_result_->status().code(), absl::StatusCode::kAborted);
  }
  EXPECT_EQ(done.at("create x").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(done.at("assign queued").status().code(),
            absl::StatusCode::kUnavailable);
  // A write that had failed on its own keeps its own error.
  EXPECT_EQ(done.at("assign missing").status().code(),
            absl::StatusCode::kNotFound);
  // Nothing of the failed batch was published.
  EXPECT_EQ(store_->CurrentRevision(), 2);
  std::vector<std::vector<int64_t>> commits = Commits();
  EXPECT_EQ(commits.size(), 2u);

  // The next write gets the next revision, and the failed ones are nowhere.
  absl::StatusOr<Task> y = store_->Create(NewTask("y"), "");
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_EQ(y->revision(), 3);
  EXPECT_EQ(store_->Get("x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Get("queued")->state(), Task::enqueued);
  absl::StatusOr<std::vector<Change>> history = store_->ReadChanges(1, 100);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 3u);
  EXPECT_EQ(history->back().task.id(), "y");
}

TEST_F(GroupCommitTest, ConcurrentWritersLoseAndDoubleNothing) {
  options_.max_batch = 16;  // many batches, some full
  Open();
  constexpr int kThreads = 12, kTasks = 25;
  std::atomic<int64_t> acknowledged{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kTasks; ++i) {
        std::string id = absl::StrCat("w", t, "-", i);
        absl::StatusOr<Task> created = store_->Create(NewTask(id), "");
        ASSERT_TRUE(created.ok()) << created.status();
        ASSERT_TRUE(
            store_->Update(id, SetState(Task::enqueued, Task::assigned)).ok());
        ASSERT_TRUE(
            store_->Update(id, SetState(Task::assigned, Task::started)).ok());
        // A move that must fail, interleaved with everyone's writes.
        EXPECT_EQ(store_->Update(id, SetState(Task::enqueued, Task::assigned))
                      .status()
                      .code(),
                  absl::StatusCode::kFailedPrecondition);
        if (i % 5 == 0) {
          ASSERT_TRUE(store_->Delete(id, nullptr).ok());
          acknowledged.fetch_add(1);
        }
        acknowledged.fetch_add(3);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  int64_t total = acknowledged.load();
  EXPECT_EQ(store_->CurrentRevision(), total);

  // Every commit's changes follow the previous commit's, without a gap.
  int64_t expected = 1;
  for (const std::vector<int64_t>& commit : Commits()) {
    for (int64_t revision : commit) EXPECT_EQ(revision, expected++);
  }
  EXPECT_EQ(expected, total + 1);

  // The history holds every acknowledged change once, and replaying it
  // gives the stored tasks exactly.
  absl::StatusOr<std::vector<Change>> history =
      store_->ReadChanges(1, static_cast<int>(total) + 10);
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_EQ(static_cast<int64_t>(history->size()), total);
  for (size_t i = 0; i < history->size(); ++i) {
    ASSERT_EQ((*history)[i].revision, static_cast<int64_t>(i) + 1);
    EXPECT_EQ((*history)[i].task.revision(), (*history)[i].revision);
  }
  std::map<std::string, Task> replayed = Replay(*history);
  ListQuery query;
  query.limit = 10000;
  absl::StatusOr<ListResult> stored = store_->List(query);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->revision, total);
  ASSERT_EQ(stored->tasks.size(), replayed.size());
  for (const Task& task : stored->tasks) {
    ASSERT_EQ(replayed.count(task.id()), 1u) << task.id();
    EXPECT_EQ(replayed[task.id()].SerializeAsString(),
              task.SerializeAsString());
    EXPECT_EQ(task.state(), Task::started);
  }
  EXPECT_EQ(replayed.size(), static_cast<size_t>(kThreads * (kTasks - 5)));
}

TEST_F(GroupCommitTest, ABlockingWriteFromAMutationFailsInsteadOfWaiting) {
  Open();
  ASSERT_TRUE(store_->Create(NewTask("a"), "").ok());
  absl::Status inner;
  absl::StatusOr<Task> outer =
      store_->Update("a", [&](const Task& current) -> absl::StatusOr<Task> {
        inner = store_->Create(NewTask("b"), "").status();
        return current;
      });
  EXPECT_TRUE(outer.ok()) << outer.status();
  EXPECT_EQ(inner.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(inner.message(), HasSubstr("writer thread"));
}

TEST_F(GroupCommitTest, ClosingCompletesEveryQueuedWrite) {
  Open();
  ASSERT_TRUE(store_->Create(NewTask("hold"), "").ok());
  HoldWriter("hold");
  Results results;
  for (int i = 0; i < 20; ++i) {
    std::string id = absl::StrCat("c", i);
    store_->Write({TaskWrite::Create{NewTask(id), ""}}, results.Slot(id));
  }
  std::thread closer([this] { store_.reset(); });
  Release();
  closer.join();
  auto done = results.Await(20);
  for (const auto& [id, result] : done) {
    EXPECT_TRUE(result.ok()) << id << ": " << result.status();
  }
  Open();
  EXPECT_EQ(store_->CurrentRevision(), 22);
  EXPECT_TRUE(store_->Get("c19").ok());
}

TEST_F(GroupCommitTest, HistoryTrimRidesAlongWithABatch) {
  options_.history_max_changes = 10;
  options_.history_trim_interval = 8;
  Open();
  ASSERT_TRUE(store_->Create(NewTask("hold"), "").ok());
  HoldWriter("hold");
  Results results;
  for (int i = 0; i < 30; ++i) {
    std::string id = absl::StrCat("h", i);
    store_->Write({TaskWrite::Create{NewTask(id), ""}}, results.Slot(id));
  }
  Release();
  results.Await(30);
  // 32 changes; the batch of 30 trimmed the history down to the last 10
  // before its calls returned.
  EXPECT_EQ(store_->CurrentRevision(), 32);
  EXPECT_EQ(store_->OldestRevision(), 23);
  absl::StatusOr<std::vector<Change>> kept = store_->ReadChanges(23, 100);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->size(), 10u);
  EXPECT_EQ(store_->ReadChanges(5, 10).status().code(),
            absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace taskd
