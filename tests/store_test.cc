// The store conformance suite: every TaskStore engine (SQLite on real
// temporary files, PostgreSQL on a real server) against the same tests
// (StoreTest, run once per engine); then what only SQLite has.
#include <sqlite3.h>

#include <atomic>
#include <set>
#include <thread>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "query/task_fields.h"
#include "storage/open_task_store.h"
#include "storage/pg_connection.h"
#include "storage/pg_task_store.h"
#include "storage/sqlite_statement.h"
#include "storage/sqlite_task_store.h"
#include "tests/postgres_server.h"
#include "tests/test_store.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using ::testing::HasSubstr;

class StoreTest : public ::testing::TestWithParam<testing::Engine> {
 protected:
  StoreTest() : StoreTest(GetParam()) {}
  explicit StoreTest(testing::Engine engine) : temp_(engine) {}

  void SetUp() override {
    absl::Status opened = temp_.Open();
    TASKD_SKIP_WITHOUT_POSTGRES(opened);
  }

  void Reopen() {
    absl::Status opened = temp_.Open();
    ASSERT_TRUE(opened.ok()) << opened;
  }

  Task NewTask(const std::string& id) {
    Task task = testing::NewStoreTask(id, ++n_, clock_.Now());
    clock_.Advance(absl::Milliseconds(1));
    return task;
  }

  testing::TempStore temp_;
  FakeClock& clock_ = temp_.clock;
  SqliteTaskStoreOptions& options_ = temp_.options;
  std::unique_ptr<TaskStore>& store_ = temp_.store;
  int n_ = 0;
};

INSTANTIATE_TEST_SUITE_P(
    Engines, StoreTest,
    ::testing::Values(testing::Engine::kSqlite, testing::Engine::kPostgres),
    [](const ::testing::TestParamInfo<testing::Engine>& info) {
      return testing::EngineName(info.param);
    });

// A store alone on its database runs the sweepers from Open on; only
// PostgreSQL's is shared by other servers.
TEST_P(StoreTest, ALoneStoreLeadsTheSweepers) {
  EXPECT_TRUE(store_->LeadsSweepers());
  EXPECT_EQ(store_->SweeperTerm(), 1);
  EXPECT_EQ(store_->Shared(), GetParam() == testing::Engine::kPostgres);
  Reopen();
  EXPECT_TRUE(store_->LeadsSweepers()) << "a closed store hands the lead over";
}

// What only the SQLite engine has.
class SqliteTaskStoreTest : public StoreTest {
 protected:
  SqliteTaskStoreTest() : StoreTest(testing::Engine::kSqlite) {}
};

TEST_P(StoreTest, CreateGetRoundTrip) {
  Task task = NewTask("t1");
  task.set_policy_id("11111111-1111-4111-8111-111111111111");
  absl::StatusOr<Task> created = store_->Create(task, "");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->revision(), 1);
  EXPECT_FALSE(created->etag().empty());
  absl::StatusOr<Task> by_id = store_->Get("t1");
  ASSERT_TRUE(by_id.ok());
  EXPECT_EQ(by_id->SerializeAsString(), created->SerializeAsString());
  absl::StatusOr<Task> by_uuid = store_->Get(task.uuid());
  ASSERT_TRUE(by_uuid.ok());
  EXPECT_EQ(by_uuid->id(), "t1");
}

TEST_P(StoreTest, GetMissingIsNotFound) {
  EXPECT_EQ(store_->Get("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(StoreTest, DuplicateIdIsAlreadyExists) {
  ASSERT_TRUE(store_->Create(NewTask("t1"), "").ok());
  absl::Status status = store_->Create(NewTask("t1"), "").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(status.message(), HasSubstr("t1"));
  EXPECT_EQ(store_->CurrentRevision(), 1);
}

TEST_P(StoreTest, RequestIdMakesCreateIdempotentPerTenant) {
  Task first = NewTask("a");
  first.set_tenant_id("22222222-2222-4222-8222-222222222222");
  absl::StatusOr<Task> created = store_->Create(first, "req-1");
  ASSERT_TRUE(created.ok());
  absl::StatusOr<Task> retried = store_->Create(NewTask("b"), "req-1");
  // Another tenant (here: none) does not see tenant 2222's request.
  ASSERT_TRUE(retried.ok());
  EXPECT_EQ(retried->id(), "b");
  Task again = NewTask("c");
  again.set_tenant_id(first.tenant_id());
  absl::StatusOr<Task> same = store_->Create(again, "req-1");
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->id(), "a");
  EXPECT_EQ(store_->CurrentRevision(), 2);
}

TEST_P(StoreTest, UpdateBumpsRevisionAndRecordsChange) {
  ASSERT_TRUE(store_->Create(NewTask("t1"), "").ok());
  absl::StatusOr<Task> updated =
      store_->Update("t1", [](const Task& current) -> absl::StatusOr<Task> {
        Task next = current;
        next.set_state(Task::assigned);
        next.set_executor_id("agent-7");
        return next;
      });
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->revision(), 2);
  EXPECT_EQ(store_->Get("t1")->executor_id(), "agent-7");
  absl::StatusOr<std::vector<Change>> changes = store_->ReadChanges(1, 10);
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->size(), 2u);
  EXPECT_EQ((*changes)[0].kind, Change::Kind::kCreated);
  EXPECT_EQ((*changes)[1].kind, Change::Kind::kUpdated);
  EXPECT_EQ((*changes)[1].task.state(), Task::assigned);
  EXPECT_EQ((*changes)[1].revision, 2);
}

TEST_P(StoreTest, FailedMutationChangesNothing) {
  ASSERT_TRUE(store_->Create(NewTask("t1"), "").ok());
  absl::Status status =
      store_
          ->Update("t1",
                   [](const Task&) -> absl::StatusOr<Task> {
                     return absl::FailedPreconditionError("no");
                   })
          .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->CurrentRevision(), 1);
  EXPECT_EQ(store_->ReadChanges(1, 10)->size(), 1u);
}

TEST_P(StoreTest, DeleteRecordsTheTaskAsItWas) {
  ASSERT_TRUE(store_->Create(NewTask("t1"), "").ok());
  absl::StatusOr<Task> deleted =
      store_->Delete("t1", [](const Task&) { return absl::OkStatus(); });
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->revision(), 2);
  EXPECT_EQ(store_->Get("t1").status().code(), absl::StatusCode::kNotFound);
  auto changes = store_->ReadChanges(2, 10);
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->size(), 1u);
  EXPECT_EQ((*changes)[0].kind, Change::Kind::kDeleted);
  EXPECT_EQ((*changes)[0].task.id(), "t1");
  EXPECT_EQ(store_->Delete("t1", nullptr).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(StoreTest, EverythingSurvivesReopen) {
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(store_->Create(NewTask(absl::StrCat("t", i)), "").ok());
  }
  std::string secret = store_->InstanceSecret();
  Reopen();
  EXPECT_EQ(store_->CurrentRevision(), 20);
  EXPECT_EQ(store_->InstanceSecret(), secret);
  ListQuery query;
  query.limit = 100;
  absl::StatusOr<ListResult> all = store_->List(query);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->tasks.size(), 20u);
  absl::StatusOr<Task> next = store_->Create(NewTask("after"), "");
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->revision(), 21);
}

TEST_P(StoreTest, ListPagesInOrderWithCursor) {
  for (int i = 0; i < 25; ++i) {
    ASSERT_TRUE(store_->Create(NewTask(absl::StrCat("t", 100 + i)), "").ok());
  }
  ListQuery query;
  query.limit = 10;
  std::vector<std::string> seen;
  while (true) {
    absl::StatusOr<ListResult> page = store_->List(query);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const Task& t : page->tasks) seen.push_back(t.id());
    if (!page->more) break;
    query.after = CursorOf(query.order, page->tasks.back());
  }
  ASSERT_EQ(seen.size(), 25u);
  for (int i = 0; i < 25; ++i) EXPECT_EQ(seen[i], absl::StrCat("t", 100 + i));
}

TEST_P(StoreTest, ListDescendingAndMixedOrders) {
  for (int i = 0; i < 12; ++i) {
    Task task = NewTask(absl::StrCat("t", 10 + i));
    task.set_priority(i % 2 ? "high" : "low");
    ASSERT_TRUE(store_->Create(task, "").ok());
  }
  for (OrderBy order :
       {OrderBy{{TaskField::kEnqueuedAt, true}, {TaskField::kId, true}},
        OrderBy{{TaskField::kPriority, true}, {TaskField::kId, false}}}) {
    ListQuery query;
    query.order = order;
    query.limit = 5;
    std::vector<Task> seen;
    while (true) {
      absl::StatusOr<ListResult> page = store_->List(query);
      ASSERT_TRUE(page.ok()) << page.status();
      seen.insert(seen.end(), page->tasks.begin(), page->tasks.end());
      if (!page->more) break;
      query.after = CursorOf(query.order, page->tasks.back());
    }
    ASSERT_EQ(seen.size(), 12u);
    for (size_t i = 1; i < seen.size(); ++i) {
      // Each task comes strictly after the one before in the order.
      auto before = CursorOf(order, seen[i - 1]);
      auto after = CursorOf(order, seen[i]);
      bool ordered = false;
      for (size_t k = 0; k < order.size(); ++k) {
        if (before[k] == after[k]) continue;
        ordered =
            order[k].descending ? after[k] < before[k] : before[k] < after[k];
        break;
      }
      EXPECT_TRUE(ordered) << seen[i - 1].id() << " then " << seen[i].id();
    }
  }
}

TEST_P(StoreTest, ConcurrentUpdatesAreSerialised) {
  ASSERT_TRUE(store_->Create(NewTask("t1"), "").ok());
  constexpr int kThreads = 4, kEach = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        ASSERT_TRUE(
            store_
                ->Update("t1",
                         [](const Task& current) -> absl::StatusOr<Task> {
                           Task next = current;
                           next.set_type(
                               absl::StrCat(std::stoi(current.type() == "backup"
                                                          ? "0"
                                                          : current.type()) +
                                            1));
                           return next;
                         })
                .ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(store_->Get("t1")->type(), absl::StrCat(kThreads * kEach));
  EXPECT_EQ(store_->CurrentRevision(), 1 + kThreads * kEach);
}

TEST_P(StoreTest, TrimmedHistoryIsOutOfRange) {
  options_.history_max_changes = 10;
  options_.history_trim_interval = 1;
  Reopen();
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(store_->Create(NewTask(absl::StrCat("t", i)), "").ok());
  }
  EXPECT_EQ(store_->OldestRevision(), 21);
  absl::Status status = store_->ReadChanges(5, 10).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(status.message(), HasSubstr("21"));
  auto kept = store_->ReadChanges(21, 100);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->size(), 10u);
  Reopen();
  EXPECT_EQ(store_->OldestRevision(), 21);
}

TEST_P(StoreTest, HistoryAgeLimit) {
  options_.history_max_changes = 0;
  options_.history_max_age = absl::Hours(1);
  options_.history_trim_interval = 1;
  Reopen();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(store_->Create(NewTask(absl::StrCat("old", i)), "").ok());
  }
  clock_.Advance(absl::Hours(2));
  ASSERT_TRUE(store_->Create(NewTask("new"), "").ok());
  EXPECT_EQ(store_->OldestRevision(), 6);
}

TEST_F(SqliteTaskStoreTest, SecondOpenOfTheSameFileIsRefused) {
  absl::StatusOr<std::unique_ptr<TaskStore>> second =
      OpenSqliteTaskStore(options_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("in use"));
}

TEST_F(SqliteTaskStoreTest, NewerSchemaIsRefusedUntouched) {
  store_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(options_.path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE schema_version SET version = 999", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  absl::StatusOr<std::unique_ptr<TaskStore>> store =
      OpenSqliteTaskStore(options_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("999"));
}

TEST_P(StoreTest, OnCommitSeesEveryChangeInOrder) {
  std::vector<int64_t> revisions;
  options_.on_commit = [&](const std::vector<Change>& changes) {
    for (const Change& c : changes) revisions.push_back(c.revision);
  };
  Reopen();
  ASSERT_TRUE(store_->Create(NewTask("a"), "").ok());
  ASSERT_TRUE(store_->Create(NewTask("b"), "").ok());
  ASSERT_TRUE(store_->Delete("a", nullptr).ok());
  EXPECT_EQ(revisions, (std::vector<int64_t>{1, 2, 3}));
}

// Whatever Get keeps in memory (SQLite: storage/task_cache.h), it answers
// every write acknowledged before it started: updates, touches, deletes and
// a new task under a deleted one's id.
TEST_P(StoreTest, GetAnswersEveryWriteAcknowledgedBeforeIt) {
  ASSERT_TRUE(store_->Create(NewTask("t1"), "").ok());
  ASSERT_TRUE(
      store_->Get("t1").ok());  // read once: kept, where there is a cache
  ASSERT_TRUE(store_->Get("t1").ok());
  ASSERT_TRUE(store_
                  ->Update("t1",
                           [](const Task& current) -> absl::StatusOr<Task> {
                             Task next = current;
                             next.set_type("updated");
                             return next;
                           })
                  .ok());
  EXPECT_EQ(store_->Get("t1")->type(), "updated");
  absl::StatusOr<Task> touched = store_->WriteAndWait(
      {TaskWrite::Touch{"t1", [](const Task& current) -> absl::StatusOr<Task> {
                          Task next = current;
                          next.mutable_progress()->set_current(7);
                          return next;
                        }}});
  ASSERT_TRUE(touched.ok()) << touched.status();
  EXPECT_EQ(store_->Get("t1")->progress().current(), 7);
  ASSERT_TRUE(store_->Delete("t1", nullptr).ok());
  EXPECT_EQ(store_->Get("t1").status().code(), absl::StatusCode::kNotFound);
  Task again = NewTask("t1");
  again.set_type("second");
  ASSERT_TRUE(store_->Create(again, "").ok());
  EXPECT_EQ(store_->Get("t1")->type(), "second");
}

// The same under concurrency: readers that start after an update was
// acknowledged never get an older revision, while a writer keeps updating.
TEST_P(StoreTest, ConcurrentGetsNeverGoBackBehindAnAcknowledgedUpdate) {
  constexpr int kTasks = 4, kUpdates = 300;
  std::atomic<int64_t> acked[kTasks];
  for (int i = 0; i < kTasks; ++i) {
    absl::StatusOr<Task> created =
        store_->Create(NewTask(absl::StrCat("c", i)), "");
    ASSERT_TRUE(created.ok()) << created.status();
    acked[i] = created->revision();
  }
  std::atomic<bool> done{false};
  std::atomic<int> stale{0}, reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      for (int n = r; !done.load(); ++n) {
        const int i = n % kTasks;
        const int64_t before = acked[i].load();
        absl::StatusOr<Task> got = store_->Get(absl::StrCat("c", i));
        reads.fetch_add(1);
        if (!got.ok() || got->revision() < before) stale.fetch_add(1);
      }
    });
  }
  for (int u = 0; u < kUpdates; ++u) {
    const int i = u % kTasks;
    absl::StatusOr<Task> updated = store_->Update(
        absl::StrCat("c", i), [u](const Task& current) -> absl::StatusOr<Task> {
          Task next = current;
          next.set_type(absl::StrCat("u", u));
          return next;
        });
    ASSERT_TRUE(updated.ok()) << updated.status();
    acked[i] = updated->revision();
  }
  done = true;
  for (std::thread& reader : readers) reader.join();
  EXPECT_EQ(stale.load(), 0) << "of " << reads.load() << " reads";
  EXPECT_GT(reads.load(), kUpdates);
}

// SQLite keeps the tasks Get read (SqliteTaskStoreOptions::task_cache_bytes).
// Seen by changing the file behind the store's back, which a store never
// expects (it is the file's only writer): a kept task is still answered.
TEST_F(SqliteTaskStoreTest, GetAnswersAKeptTaskFromMemory) {
  for (size_t budget : {size_t{0}, size_t{1} << 20}) {
    SCOPED_TRACE(absl::StrCat("task_cache_bytes = ", budget));
    options_.task_cache_bytes = budget;
    Reopen();
    const std::string id = absl::StrCat("k", budget);
    ASSERT_TRUE(store_->Create(NewTask(id), "").ok());
    ASSERT_TRUE(store_->Get(id).ok());
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(options_.path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "DELETE FROM tasks", nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
    EXPECT_EQ(store_->Get(id).ok(), budget > 0);
  }
}

// ---- What only the PostgreSQL engine has ----------------------------------

class PostgresTaskStoreTest : public StoreTest {
 protected:
  PostgresTaskStoreTest() : StoreTest(testing::Engine::kPostgres) {}

  // A connection of the test's own to the store's database.
  std::unique_ptr<pg::Connection> Admin() {
    pg::Connection::Options options;
    options.uri = options_.path;
    absl::StatusOr<std::unique_ptr<pg::Connection>> admin =
        pg::Connection::Open(options);
    EXPECT_TRUE(admin.ok()) << admin.status();
    return admin.ok() ? std::move(*admin) : nullptr;
  }
};

TEST_F(PostgresTaskStoreTest, NewerSchemaIsRefused) {
  store_.reset();
  std::unique_ptr<pg::Connection> admin = Admin();
  ASSERT_NE(admin, nullptr);
  ASSERT_TRUE(
      admin->ExecScript("UPDATE schema_version SET version = 999").ok());
  absl::Status opened = temp_.Open();
  EXPECT_EQ(opened.code(), absl::StatusCode::kFailedPrecondition) << opened;
  EXPECT_THAT(opened.message(), HasSubstr("999"));
}

TEST_F(PostgresTaskStoreTest, ReplicasStartingTogetherMigrateOnce) {
  // A fresh database, opened by four stores at once: one creates the
  // schema under the advisory lock, the others find it made.
  absl::StatusOr<std::string> uri = testing::NewPostgresDatabase();
  ASSERT_TRUE(uri.ok()) << uri.status();
  std::vector<absl::Status> results(4);
  std::vector<std::unique_ptr<TaskStore>> stores(4);
  std::vector<std::thread> openers;
  for (int i = 0; i < 4; ++i) {
    openers.emplace_back([&, i] {
      SqliteTaskStoreOptions options;
      options.path = *uri;
      absl::StatusOr<std::unique_ptr<TaskStore>> store = OpenTaskStore(options);
      results[i] = store.status();
      if (store.ok()) stores[i] = std::move(*store);
    });
  }
  for (std::thread& opener : openers) opener.join();
  for (const absl::Status& result : results) EXPECT_TRUE(result.ok()) << result;
  // Every replica writes into the one schema, and sees the others' writes.
  ASSERT_TRUE(stores[0]->Create(NewTask("from-0"), "").ok());
  ASSERT_TRUE(stores[3]->Create(NewTask("from-3"), "").ok());
  EXPECT_TRUE(stores[1]->Get("from-0").ok());
  EXPECT_TRUE(stores[2]->Get("from-3").ok());
  EXPECT_EQ(stores[3]->InstanceSecret(), stores[0]->InstanceSecret());
}

// Two stores on one database, as two replicas: what one writes reaches the
// other's on_commit, woken by NOTIFY, or with no notification at all (a
// follower that does not LISTEN: the notification lost) by the poll alone.
TEST_F(PostgresTaskStoreTest,
       AnotherReplicasWritesReachOnCommitWithOrWithoutNotify) {
  for (bool listen : {true, false}) {
    SCOPED_TRACE(listen ? "listening" : "polling only");
    absl::Mutex mu;
    std::vector<int64_t> seen;
    PgTaskStoreOptions options;
    options.uri = options_.path;
    options.pg.listen = listen;
    options.pg.poll_interval =
        listen ? absl::Hours(1) : absl::Milliseconds(200);
    options.on_commit = [&](const std::vector<Change>& changes) {
      absl::MutexLock lock(&mu);
      for (const Change& change : changes) seen.push_back(change.revision);
    };
    absl::StatusOr<std::unique_ptr<TaskStore>> other = OpenPgTaskStore(options);
    ASSERT_TRUE(other.ok()) << other.status();
    const int64_t before = store_->CurrentRevision();
    // Let the follower connect (and LISTEN) before the writes.
    absl::SleepFor(absl::Milliseconds(300));
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(
          store_->Create(NewTask(absl::StrCat(listen, "-", i)), "").ok());
    }
    const int64_t last = store_->CurrentRevision();
    absl::MutexLock lock(&mu);
    auto arrived = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) {
      return !seen.empty() && seen.back() == last;
    };
    // With NOTIFY, long before the hour-long poll; without, by the poll.
    EXPECT_TRUE(
        mu.AwaitWithTimeout(absl::Condition(&arrived), absl::Seconds(10)));
    EXPECT_EQ(seen, (std::vector<int64_t>{before + 1, before + 2, before + 3}));
    EXPECT_EQ((*other)->CurrentRevision(), last);
  }
}

// The sweepers (timers, retention) run on one replica at a time: the
// first store on a database leads from Open on, the others wait; when the
// leader closes, or loses its connection, another takes over.
TEST_F(PostgresTaskStoreTest, OneReplicaRunsTheSweepersAndAnotherTakesOver) {
  EXPECT_TRUE(store_->Shared());
  ASSERT_TRUE(store_->LeadsSweepers());
  std::vector<std::unique_ptr<TaskStore>> others;
  for (int i = 0; i < 2; ++i) {
    PgTaskStoreOptions options;
    options.uri = options_.path;
    options.pg.poll_interval = absl::Milliseconds(100);
    absl::StatusOr<std::unique_ptr<TaskStore>> other = OpenPgTaskStore(options);
    ASSERT_TRUE(other.ok()) << other.status();
    others.push_back(std::move(*other));
  }
  auto leaders = [&] {
    int count = 0;
    for (const auto& other : others) count += other->LeadsSweepers() ? 1 : 0;
    return count;
  };
  // Several tries at the lock later, the leader still leads alone.
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_TRUE(store_->LeadsSweepers());
  EXPECT_EQ(leaders(), 0);
  auto await_one_leader = [&] {
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (leaders() != 1 && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    return leaders();
  };
  // The leader closes: one of the others takes over.
  store_.reset();
  ASSERT_EQ(await_one_leader(), 1);
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(leaders(), 1) << "only one leads";
  // The leader's connection is cut: its term ends, and one replica (it,
  // reconnected, in a later term, or the other) leads again.
  const int first = others[0]->LeadsSweepers() ? 0 : 1;
  const int64_t term = others[first]->SweeperTerm();
  EXPECT_GE(term, 1);
  EXPECT_EQ(others[1 - first]->SweeperTerm(), 0);
  std::unique_ptr<pg::Connection> admin = Admin();
  ASSERT_NE(admin, nullptr);
  ASSERT_TRUE(admin
                  ->ExecScript("SELECT pg_terminate_backend(pid) FROM pg_locks "
                               "WHERE locktype = 'advisory' AND granted")
                  .ok());
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (others[first]->SweeperTerm() == term && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_NE(others[first]->SweeperTerm(), term) << "the lost lead ended";
  EXPECT_EQ(await_one_leader(), 1);
  if (others[first]->LeadsSweepers()) {
    EXPECT_GT(others[first]->SweeperTerm(), term) << "a new term";
  }
  absl::StatusOr<pg::Result> held = admin->Exec(
      "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted");
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(*held->Int64(0, 0), 1);
}

TEST_F(PostgresTaskStoreTest, AConnectionLostMidTransactionFailsItsWriteAlone) {
  ASSERT_TRUE(store_->Create(NewTask("gate"), "").ok());
  ASSERT_TRUE(store_->Create(NewTask("victim"), "").ok());
  std::unique_ptr<pg::Connection> admin = Admin();
  ASSERT_NE(admin, nullptr);
  // The gate holds the writer until the two writes after it are queued, so
  // that they share one transaction.
  absl::Notification queued;
  std::atomic<int> kills{0};
  absl::Notification gate_done, create_done, kill_done;
  absl::StatusOr<Task> created, killed;
  store_->Write({TaskWrite::Update{"gate",
                                   [&](const Task& current) {
                                     queued.WaitForNotification();
                                     Task next = current;
                                     next.set_priority("high");
                                     return next;
                                   }}},
                [&](absl::StatusOr<Task>) { gate_done.Notify(); });
  store_->Write({TaskWrite::Create{NewTask("kept"), ""}},
                [&](absl::StatusOr<Task> result) {
                  created = std::move(result);
                  create_done.Notify();
                });
  // Its mutation ends the writer's session in the middle of the
  // transaction (after the create's statements): its own UPDATE then finds
  // the connection gone.
  store_->Write(
      {TaskWrite::Update{
          "victim",
          [&](const Task& current) -> absl::StatusOr<Task> {
            if (kills++ == 0) {
              absl::StatusOr<pg::Result> ended = admin->Exec(
                  "SELECT pg_terminate_backend(pid, 5000) FROM "
                  "pg_stat_activity WHERE datname = current_database() AND "
                  "state = 'idle in transaction'");
              EXPECT_TRUE(ended.ok() && ended->rows() == 1)
                  << "the writer was not in a transaction";
            }
            Task next = current;
            next.set_priority("low");
            return next;
          }}},
      [&](absl::StatusOr<Task> result) {
        killed = std::move(result);
        kill_done.Notify();
      });
  queued.Notify();
  gate_done.WaitForNotification();
  create_done.WaitForNotification();
  kill_done.WaitForNotification();
  // The write whose connection died failed; its neighbour was applied again
  // on a new connection and committed.
  EXPECT_EQ(killed.status().code(), absl::StatusCode::kUnavailable)
      << killed.status();
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(kills.load(), 1);
  // Nothing half-written: the victim as it was, the history whole and
  // gapless, the counts right.
  absl::StatusOr<Task> victim = store_->Get("victim");
  ASSERT_TRUE(victim.ok());
  EXPECT_EQ(victim->priority(), "normal");
  EXPECT_EQ(victim->revision(), 2);
  absl::StatusOr<std::vector<Change>> history = store_->ReadChanges(1, 100);
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_EQ(history->size(), 4u);  // gate, victim, the gate's move, kept
  for (size_t i = 0; i < history->size(); ++i) {
    EXPECT_EQ((*history)[i].revision, static_cast<int64_t>(i) + 1);
  }
  EXPECT_EQ(history->back().task.id(), "kept");
  absl::StatusOr<CountResult> counts = store_->Count(CountQuery{});
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->groups[GroupKey{}], 3);
}

// ---- sqlite::Statement, under the store ----------------------------------

// What Bind and BindInt64 accept: only what they bind without a guess.
template <typename T, typename = void>
struct CanBindInt64 : std::false_type {};
template <typename T>
struct CanBindInt64<
    T, std::void_t<decltype(std::declval<sqlite::Statement&>().BindInt64(
           1, std::declval<T>()))>> : std::true_type {};
template <typename T, typename = void>
struct CanBind : std::false_type {};
template <typename T>
struct CanBind<T, std::void_t<decltype(std::declval<sqlite::Statement&>().Bind(
                      1, std::declval<T>()))>> : std::true_type {};
static_assert(CanBindInt64<int64_t>::value);
static_assert(!CanBindInt64<bool>::value);
static_assert(CanBindInt64<int>::value);
static_assert(!CanBindInt64<double>::value);
static_assert(!CanBindInt64<Task::State>::value);
static_assert(CanBind<const FieldValue&>::value);
static_assert(!CanBind<bool>::value);
static_assert(!CanBind<const char*>::value);
static_assert(!CanBind<int64_t>::value);

class SqliteStatementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<sqlite::Connection>> connection =
        sqlite::Connection::Open(dir_.File("statements.db"), {});
    ASSERT_TRUE(connection.ok()) << connection.status();
    connection_ = std::move(*connection);
    ASSERT_TRUE(connection_
                    ->Exec("CREATE TABLE t (k INTEGER, v TEXT); "
                           "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')",
                           "create t")
                    .ok());
  }

  static constexpr char kSelectFrom[] =
      "SELECT v FROM t WHERE k >= ?1 ORDER BY k";

  // The v of every row with k >= `from`, in k order, to be stepped.
  sqlite::Statement SelectFrom(int64_t from) {
    sqlite::Statement s = connection_->Prepare(kSelectFrom);
    s.BindInt64(1, from);
    return s;
  }

  // The same, read to the end.
  std::vector<std::string> ValuesFrom(int64_t from) {
    sqlite::Statement s = SelectFrom(from);
    std::vector<std::string> values;
    while (s.Step()) values.push_back(s.ColumnText(0));
    EXPECT_TRUE(s.status().ok()) << s.status();
    return values;
  }

  testing::TempDir dir_;
  std::unique_ptr<sqlite::Connection> connection_;
};

TEST_F(SqliteStatementTest, AFailedPrepareIsReportedByStepAndRun) {
  sqlite::Statement s = connection_->Prepare("SELECT nope FROM missing");
  s.BindInt64(1, 7);  // ignored: there is no statement
  EXPECT_FALSE(s.Step());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.status().message(), HasSubstr("prepare"));
  EXPECT_THAT(s.status().message(), HasSubstr("missing"));
  EXPECT_EQ(s.Run(), s.status());
}

TEST_F(SqliteStatementTest, TheFirstFailedBindIsRememberedAndNothingRuns) {
  {
    sqlite::Statement s = connection_->Prepare("INSERT INTO t VALUES (?1, ?2)");
    s.BindInt64(1, 4);
    s.BindText(3, "out of range");  // SQLITE_RANGE
    s.BindText(2, "d");
    absl::Status status = s.Run();
    EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
    EXPECT_THAT(status.message(), HasSubstr("bind"));
  }
  EXPECT_EQ(ValuesFrom(1), (std::vector<std::string>{"a", "b", "c"}));
}

TEST_F(SqliteStatementTest, AStepErrorMapsThroughSqliteError) {
  ASSERT_TRUE(
      connection_->Exec("CREATE UNIQUE INDEX t_by_k ON t (k)", "index").ok());
  sqlite::Statement s = connection_->Prepare("INSERT INTO t VALUES (?1, ?2)");
  s.BindInt64(1, 2);
  s.BindText(2, "again");
  EXPECT_EQ(s.Run().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(s.Step());  // the error stays
  EXPECT_EQ(s.status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(SqliteStatementTest, AStatementIsResetAndClearedWhenItGoesOutOfScope) {
  {
    sqlite::Statement s = SelectFrom(2);
    ASSERT_TRUE(s.Step());
    EXPECT_EQ(s.ColumnText(0), "b");
  }  // half read
  // The same cached statement again: from its first row, and ?1 unbound
  // (NULL, which no k is >= to).
  sqlite::Statement s = connection_->Prepare(kSelectFrom);
  EXPECT_FALSE(s.Step());
  EXPECT_TRUE(s.status().ok()) << s.status();
}

TEST_F(SqliteStatementTest, ANestedUseOfOneTextGetsAStatementOfItsOwn) {
  sqlite::Statement outer = SelectFrom(1);
  ASSERT_TRUE(outer.Step());
  EXPECT_EQ(outer.ColumnText(0), "a");
  // The same text while `outer` is half read: it must not reset `outer`.
  EXPECT_EQ(ValuesFrom(3), (std::vector<std::string>{"c"}));
  ASSERT_TRUE(outer.Step());
  EXPECT_EQ(outer.ColumnText(0), "b");
  ASSERT_TRUE(outer.Step());
  EXPECT_EQ(outer.ColumnText(0), "c");
  EXPECT_FALSE(outer.Step());
  EXPECT_TRUE(outer.status().ok()) << outer.status();
}

TEST_F(SqliteStatementTest, AFullCacheKeepsTheStatementsInUse) {
  sqlite::Statement held = SelectFrom(1);
  ASSERT_TRUE(held.Step());
  // More texts than the cache holds: it is emptied, but for `held`.
  for (int i = 0; i < 300; ++i) {
    sqlite::Statement s = connection_->Prepare(absl::StrCat("SELECT ", i));
    ASSERT_TRUE(s.Step()) << s.status();
    EXPECT_EQ(s.ColumnInt64(0), i);
  }
  ASSERT_TRUE(held.Step());
  EXPECT_EQ(held.ColumnText(0), "b");
}

}  // namespace
}  // namespace taskd
