// Several taskd on one PostgreSQL (issue 14): three real taskd processes on
// one real database, real watch streams on each, writes through all three.
// What one SQLite server promises for WatchTasks must hold on every replica:
// every change, in revision order, exactly once, also across a replica's
// death and a restart of PostgreSQL.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/task_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tasks/v1/tasks.grpc.pb.h"
#include "tests/postgres_server.h"
#include "tests/taskd_process.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using tasks::v1::Task;
using tasks::v1::TaskEvent;
using ::testing::HasSubstr;

// One event as a watcher saw it.
struct Seen {
  int64_t revision;
  TaskEvent::Type type;
  std::string id;
  bool operator==(const Seen& other) const {
    return revision == other.revision && type == other.type && id == other.id;
  }
};

// A WatchTasks stream read on a thread of its own until it ends or is
// cancelled.
class Watcher {
 public:
  Watcher(std::shared_ptr<grpc::Channel> channel, int64_t start_revision)
      : stub_(tasks::v1::TaskService::NewStub(std::move(channel))) {
    tasks::v1::WatchTasksRequest request;
    request.set_start_revision(start_revision);
    thread_ = std::thread([this, request] {
      std::unique_ptr<grpc::ClientReader<tasks::v1::WatchTasksResponse>>
          stream = stub_->WatchTasks(&context_, request);
      tasks::v1::WatchTasksResponse response;
      while (stream->Read(&response)) {
        absl::MutexLock lock(&mu_);
        for (const TaskEvent& event : response.events()) {
          seen_.push_back({event.revision(), event.type(), event.task().id()});
        }
      }
      grpc::Status status = stream->Finish();
      absl::MutexLock lock(&mu_);
      ended_ = true;
      end_ = status;
    });
  }
  ~Watcher() {
    context_.TryCancel();
    thread_.join();
  }

  // Waits until the watcher has seen `revision` (true) or has ended or
  // `timeout` passed (false).
  bool AwaitRevision(int64_t revision, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return ended_ || (!seen_.empty() && seen_.back().revision >= revision);
    };
    mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
    return !seen_.empty() && seen_.back().revision >= revision;
  }
  // Waits for the stream to end; its status.
  grpc::Status AwaitEnd(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&ended_), timeout);
    return ended_ ? end_
                  : grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                 "the stream did not end");
  }
  std::vector<Seen> seen() {
    absl::MutexLock lock(&mu_);
    return seen_;
  }
  // How the stream ended, for a failure's message; "" while it runs.
  std::string ending() {
    absl::MutexLock lock(&mu_);
    if (!ended_) return "";
    return absl::StrCat(" (the stream ended: ", end_.error_code(), " ",
                        end_.error_message(), ")");
  }

 private:
  std::unique_ptr<tasks::v1::TaskService::Stub> stub_;
  grpc::ClientContext context_;
  absl::Mutex mu_;
  std::vector<Seen> seen_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status end_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// What a write that was acknowledged made: its revision, kind and task.
struct Acknowledged {
  int64_t revision;
  TaskEvent::Type type;
  std::string id;
};

class ReplicasTest : public ::testing::Test {
 protected:
  static constexpr int kReplicas = 3;
  static constexpr absl::Duration kBackOff = absl::Milliseconds(50);

  void SetUp() override {
    absl::StatusOr<std::string> uri = testing::NewPostgresDatabase();
    TASKD_SKIP_WITHOUT_POSTGRES(uri.status());
    uri_ = *uri;
    for (int i = 0; i < kReplicas; ++i) {
      testing::TaskdProcess::Options options;
      options.db_path = uri_;
      replicas_.push_back(std::make_unique<testing::TaskdProcess>(options));
      absl::Status started = replicas_.back()->Start();
      ASSERT_TRUE(started.ok()) << started;
    }
  }

  // `writes` writes per thread from `threads` threads, each through a
  // random live replica among `through`: creates, cancels of tasks
  // created before, deletes of cancelled ones. Returns what was
  // acknowledged; calls that failed are counted in *failed. A thread backs
  // off 50 ms after a failure, as a client should.
  std::vector<Acknowledged> WriteRandomly(const std::vector<int>& through,
                                          int threads, int writes,
                                          int* failed = nullptr) {
    absl::Mutex mu;
    std::vector<Acknowledged> acknowledged;
    std::atomic<int> failures{0};
    std::vector<std::thread> writers;
    for (int t = 0; t < threads; ++t) {
      writers.emplace_back([&, t] {
        std::mt19937 random(1234 + t);
        std::vector<std::unique_ptr<TaskClient>> clients;
        for (int replica : through) {
          clients.push_back(
              std::make_unique<TaskClient>(replicas_[replica]->NewChannel()));
        }
        std::vector<std::string> enqueued, cancelled;
        for (int i = 0; i < writes; ++i) {
          TaskClient& client = *clients[random() % clients.size()];
          const int choice = static_cast<int>(random() % 4);
          if (choice == 0 && !enqueued.empty()) {
            std::string id = enqueued.back();
            enqueued.pop_back();
            absl::StatusOr<Task> done = client.Cancel(id, "", /*force=*/true);
            if (!done.ok()) {
              ++failures;
              absl::SleepFor(kBackOff);
              continue;
            }
            cancelled.push_back(id);
            absl::MutexLock lock(&mu);
            acknowledged.push_back(
                {done->revision(), TaskEvent::UPDATED, done->id()});
          } else if (choice == 1 && !cancelled.empty()) {
            std::string id = cancelled.back();
            cancelled.pop_back();
            if (!client.Delete(id).ok()) {
              ++failures;
              absl::SleepFor(kBackOff);
              continue;
            }
            absl::MutexLock lock(&mu);
            acknowledged.push_back({0, TaskEvent::DELETED, id});
          } else {
            Task task;
            task.set_type(t % 2 == 0 ? "backup" : "restore");
            absl::StatusOr<Task> created = client.Create(task);
            if (!created.ok()) {
              ++failures;
              absl::SleepFor(kBackOff);
              continue;
            }
            enqueued.push_back(created->id());
            absl::MutexLock lock(&mu);
            acknowledged.push_back(
                {created->revision(), TaskEvent::CREATED, created->id()});
          }
        }
      });
    }
    for (std::thread& writer : writers) writer.join();
    if (failed != nullptr) *failed = failures.load();
    return acknowledged;
  }

  // The newest revision, as a replica's List says.
  int64_t NewestRevision(int replica) {
    TaskClient client(replicas_[replica]->NewChannel());
    tasks::v1::ListTasksRequest request;
    request.set_page_size(1);
    absl::StatusOr<tasks::v1::ListTasksResponse> listed = client.List(request);
    EXPECT_TRUE(listed.ok()) << listed.status();
    return listed.ok() ? listed->revision() : -1;
  }

  // Checks that `seen` is revisions 1..newest, each once, in order, and
  // holds every acknowledged write as it was acknowledged.
  static void ExpectWholeHistory(const std::vector<Seen>& seen, int64_t newest,
                                 const std::vector<Acknowledged>& writes,
                                 const std::string& who) {
    ASSERT_EQ(static_cast<int64_t>(seen.size()), newest) << who;
    for (size_t i = 0; i < seen.size(); ++i) {
      ASSERT_EQ(seen[i].revision, static_cast<int64_t>(i) + 1)
          << who << ": event " << i << " is out of order, repeated or after "
          << "a gap";
    }
    std::map<std::string, std::vector<const Seen*>> by_id;
    for (const Seen& event : seen) by_id[event.id].push_back(&event);
    for (const Acknowledged& write : writes) {
      if (write.revision > 0) {
        const Seen& event = seen[static_cast<size_t>(write.revision) - 1];
        EXPECT_EQ(event.id, write.id) << who << " at " << write.revision;
        EXPECT_EQ(event.type, write.type) << who << " at " << write.revision;
      } else {  // a delete: its revision is not returned
        const std::vector<const Seen*>& events = by_id[write.id];
        EXPECT_TRUE(!events.empty() &&
                    events.back()->type == TaskEvent::DELETED)
            << who << ": no DELETED event for " << write.id;
      }
    }
  }

  // taskd_sweeper_leader on replica `i`'s /metrics: "1", "0", or "" if it
  // cannot be read.
  std::string LeaderGauge(int i) {
    std::string metrics, err;
    testing::RunCommand(
        {"/usr/bin/curl", "-sS", "--max-time", "5",
         absl::StrCat("http://", replicas_[i]->serving_field("http"),
                      "/metrics")},
        "", &metrics, &err);
    const std::string name = "\ntaskd_sweeper_leader ";
    const size_t at = metrics.find(name);
    if (at == std::string::npos) return "";
    return metrics.substr(at + name.size(), 1);
  }

  // Waits (up to 15 s) until exactly one of `among` reports that it runs
  // the timers and the others that they do not; returns it (-1: never).
  int AwaitOneLeader(const std::vector<int>& among) {
    const absl::Time give_up = absl::Now() + absl::Seconds(15);
    while (absl::Now() < give_up) {
      int leader = -1, leaders = 0, followers = 0;
      for (int i : among) {
        const std::string gauge = LeaderGauge(i);
        if (gauge == "1") {
          leader = i;
          ++leaders;
        } else if (gauge == "0") {
          ++followers;
        }
      }
      if (leaders == 1 && leaders + followers == static_cast<int>(among.size()))
        return leader;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return -1;
  }

  std::string uri_;
  std::vector<std::unique_ptr<testing::TaskdProcess>> replicas_;
};

// An executor: a task of its own (heartbeat interval 1 s), acquired and
// started through one replica, heartbeating through it every 200 ms until
// told to stop.
class Executor {
 public:
  Executor(std::shared_ptr<grpc::Channel> channel, const std::string& id)
      : client_(std::move(channel)), id_(id) {
    Task task;
    task.set_id(id);
    task.set_type("backup");
    task.mutable_heart_beat_interval()->set_seconds(1);
    absl::StatusOr<Task> created = client_.Create(task);
    EXPECT_TRUE(created.ok()) << created.status();
    absl::StatusOr<std::optional<Task>> acquired =
        client_.Acquire("executor-" + id, absl::StrCat("id = \"", id, "\""));
    EXPECT_TRUE(acquired.ok() && acquired->has_value()) << acquired.status();
    if (!acquired.ok() || !acquired->has_value()) return;
    token_ = (*acquired)->lease_token();
    absl::StatusOr<Task> started = client_.Start(id, token_);
    EXPECT_TRUE(started.ok()) << started.status();
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        absl::StatusOr<tasks::v1::HeartbeatTaskResponse> beat =
            client_.Heartbeat(id_, token_);
        if (!beat.ok()) ++failed_;
        absl::SleepFor(absl::Milliseconds(200));
      }
    });
  }
  ~Executor() { Stop(); }
  // Stops heartbeating (the executor dies, or its replica did).
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int failed() const { return failed_.load(); }

 private:
  TaskClient client_;
  const std::string id_;
  std::string token_;
  std::atomic<bool> stop_{false};
  std::atomic<int> failed_{0};
  std::thread thread_;
};

TEST_F(ReplicasTest, EveryReplicaWatchesEveryWriteOnceInOrder) {
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (int i = 0; i < kReplicas; ++i) {
    watchers.push_back(
        std::make_unique<Watcher>(replicas_[i]->NewChannel(), 1));
  }
  const std::vector<Acknowledged> writes =
      WriteRandomly({0, 1, 2}, /*threads=*/4, /*writes=*/60);
  const int64_t newest = NewestRevision(0);
  ASSERT_GT(newest, 0);
  for (int i = 0; i < kReplicas; ++i) {
    EXPECT_EQ(NewestRevision(i), newest) << "replica " << i;
    ASSERT_TRUE(watchers[i]->AwaitRevision(newest, absl::Seconds(30)))
        << "replica " << i << " never delivered revision " << newest
        << watchers[i]->ending();
  }
  // A moment for any stray event after the last one to arrive (none may).
  absl::SleepFor(absl::Milliseconds(300));
  for (int i = 0; i < kReplicas; ++i) {
    ExpectWholeHistory(watchers[i]->seen(), newest, writes,
                       absl::StrCat("replica ", i));
  }
  EXPECT_TRUE(watchers[1]->seen() == watchers[0]->seen());
  EXPECT_TRUE(watchers[2]->seen() == watchers[0]->seen());
}

TEST_F(ReplicasTest, AWatcherOfAKilledReplicaResumesOnAnotherExactlyOnce) {
  auto first = std::make_unique<Watcher>(replicas_[0]->NewChannel(), 1);
  std::vector<Acknowledged> writes =
      WriteRandomly({1, 2}, /*threads=*/2, /*writes=*/30);
  const int64_t before_kill = NewestRevision(1);
  ASSERT_TRUE(first->AwaitRevision(before_kill, absl::Seconds(30)));
  EXPECT_EQ(replicas_[0]->Kill(), 128 + SIGKILL);
  grpc::Status ended = first->AwaitEnd(absl::Seconds(30));
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAVAILABLE)
      << ended.error_message();
  std::vector<Seen> seen = first->seen();
  ASSERT_FALSE(seen.empty());
  // Writes go on meanwhile; the client resumes on replica 2 from the
  // revision after the last it saw, as a load balancer would send it.
  std::vector<Acknowledged> more =
      WriteRandomly({1, 2}, /*threads=*/2, /*writes=*/30);
  writes.insert(writes.end(), more.begin(), more.end());
  Watcher resumed(replicas_[2]->NewChannel(), seen.back().revision + 1);
  const int64_t newest = NewestRevision(1);
  ASSERT_TRUE(resumed.AwaitRevision(newest, absl::Seconds(30)));
  absl::SleepFor(absl::Milliseconds(300));
  std::vector<Seen> after = resumed.seen();
  seen.insert(seen.end(), after.begin(), after.end());
  ExpectWholeHistory(seen, newest, writes, "killed, then resumed");
}

TEST_F(ReplicasTest, AWatchMayResumeFromARevisionThisReplicaHasNotSeenYet) {
  // A revision another replica handed out is valid everywhere: never
  // REVISION_AHEAD for a revision that exists in the database.
  TaskClient client(replicas_[0]->NewChannel());
  Task task;
  task.set_type("backup");
  absl::StatusOr<Task> created = client.Create(task);
  ASSERT_TRUE(created.ok()) << created.status();
  Watcher watcher(replicas_[1]->NewChannel(), created->revision());
  ASSERT_TRUE(watcher.AwaitRevision(created->revision(), absl::Seconds(10)));
  EXPECT_EQ(watcher.seen().front().id, created->id());
  // One ahead of every replica is refused, as on one server.
  Watcher ahead(replicas_[1]->NewChannel(), created->revision() + 2);
  EXPECT_EQ(ahead.AwaitEnd(absl::Seconds(10)).error_code(),
            grpc::StatusCode::OUT_OF_RANGE);
}

TEST_F(ReplicasTest, BackupsAreLeftToPostgresqlsOwnTools) {
  // BackupDatabase (taskctl backup) copies SQLite files: on PostgreSQL it
  // fails saying what to use instead, and --restore refuses to start.
  testing::TempDir dir;
  testing::CommandResult backup = testing::RunTaskctl(
      {"--server=" + replicas_[0]->address(), "backup", dir.File("copy.db")});
  EXPECT_NE(backup.rc, 0) << backup;
  EXPECT_THAT(backup.err, HasSubstr("FAILED_PRECONDITION")) << backup;
  EXPECT_THAT(backup.err, HasSubstr("pg_dump")) << backup;
  testing::TaskdProcess::Options options;
  options.db_path = uri_;
  options.flags = {"--restore=" + dir.File("copy.db")};
  testing::TaskdProcess restoring(options);
  restoring.Launch();
  EXPECT_EQ(restoring.Wait(), 2) << restoring.log();
  EXPECT_THAT(restoring.log(), HasSubstr("pg_restore"));
}

TEST_F(ReplicasTest, PostgresRestartedUnderLoadLosesNothingAcknowledged) {
  Watcher watcher(replicas_[2]->NewChannel(), 1);
  std::atomic<bool> stop{false};
  int failed = 0;
  std::vector<Acknowledged> writes;
  std::thread load([&] {
    while (!stop.load()) {
      int failures = 0;
      std::vector<Acknowledged> some =
          WriteRandomly({0, 1}, /*threads=*/2, /*writes=*/10, &failures);
      writes.insert(writes.end(), some.begin(), some.end());
      failed += failures;
    }
  });
  absl::SleepFor(absl::Milliseconds(500));
  absl::StatusOr<testing::PostgresServer*> server =
      testing::SharedPostgresServer();
  ASSERT_TRUE(server.ok());
  ASSERT_TRUE((*server)->Stop().ok());
  absl::SleepFor(absl::Seconds(1));
  ASSERT_TRUE((*server)->Start().ok());
  // The replicas reconnect by themselves: writes succeed again.
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  bool recovered = false;
  TaskClient client(replicas_[0]->NewChannel());
  absl::Status last;
  while (!recovered && absl::Now() < deadline) {
    Task task;
    task.set_type("backup");
    last = client.Create(task).status();
    recovered = last.ok();
    if (!recovered) absl::SleepFor(absl::Milliseconds(200));
  }
  absl::SleepFor(absl::Milliseconds(500));
  stop = true;
  load.join();
  ASSERT_TRUE(recovered) << "no write succeeded within 30 s of the restart: "
                         << last;
  EXPECT_GT(failed, 0) << "the restart went unnoticed: the test did not "
                          "test it";
  // Every acknowledged write is in the history, which every replica
  // serves whole (a new stream: the old one ended when PostgreSQL did, or
  // carried on).
  const int64_t newest = NewestRevision(1);
  for (int i = 0; i < kReplicas; ++i) {
    Watcher fresh(replicas_[i]->NewChannel(), 1);
    ASSERT_TRUE(fresh.AwaitRevision(newest, absl::Seconds(30)))
        << "replica " << i;
    absl::SleepFor(absl::Milliseconds(200));
    // A write whose answer was lost in the restart may have committed: the
    // history then holds it though it was not acknowledged. Only
    // acknowledged writes are checked.
    ExpectWholeHistory(fresh.seen(), newest, writes,
                       absl::StrCat("replica ", i, " after the restart"));
  }
}

// The executor timers run on one replica at a time, elected through the
// database (taskd_sweeper_leader is 1 there, 0 elsewhere). Heartbeats
// through any replica keep their leases, since each one writes its lease
// to the database; when the leading replica dies another takes over, and
// times out the task whose executor went silent with it, and only that.
TEST_F(ReplicasTest, TimersRunOnOneReplicaAndHeartbeatsThroughAnyCount) {
  const int leader = AwaitOneLeader({0, 1, 2});
  ASSERT_NE(leader, -1) << "no single replica runs the timers";
  std::vector<std::unique_ptr<Executor>> executors;
  for (int i = 0; i < kReplicas; ++i) {
    executors.push_back(std::make_unique<Executor>(replicas_[i]->NewChannel(),
                                                   absl::StrCat("hb-", i)));
  }
  // Five intervals: well past a lease (three) of every executor.
  absl::SleepFor(absl::Seconds(5));
  TaskClient reader(replicas_[(leader + 1) % kReplicas]->NewChannel());
  for (int i = 0; i < kReplicas; ++i) {
    absl::StatusOr<Task> task = reader.Get(absl::StrCat("hb-", i));
    ASSERT_TRUE(task.ok()) << task.status();
    EXPECT_EQ(task->state(), Task::started) << task->id();
    EXPECT_EQ(task->timeout(), tasks::v1::TIMEOUT_UNSPECIFIED) << task->id();
    EXPECT_EQ(executors[i]->failed(), 0) << task->id();
  }
  // The leader dies, and with it its executor's heartbeats.
  EXPECT_EQ(replicas_[leader]->Kill(), 128 + SIGKILL);
  executors[leader]->Stop();
  std::vector<int> survivors;
  for (int i = 0; i < kReplicas; ++i) {
    if (i != leader) survivors.push_back(i);
  }
  EXPECT_NE(AwaitOneLeader(survivors), -1) << "no replica took over";
  const std::string silent = absl::StrCat("hb-", leader);
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  absl::StatusOr<Task> lost = reader.Get(silent);
  while (lost.ok() && lost->state() != Task::completed &&
         absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(100));
    lost = reader.Get(silent);
  }
  ASSERT_TRUE(lost.ok()) << lost.status();
  EXPECT_EQ(lost->state(), Task::completed);
  EXPECT_EQ(lost->timeout(), tasks::v1::heartbeat_timeout);
  for (int i : survivors) {
    absl::StatusOr<Task> alive = reader.Get(absl::StrCat("hb-", i));
    ASSERT_TRUE(alive.ok()) << alive.status();
    EXPECT_EQ(alive->state(), Task::started) << alive->id();
  }
}

// --pg_listen and --pg_poll_interval reach the follower. A replica with
// LISTEN off hears of another replica's commit only when it polls: one
// that polls every 200 ms delivers the write to its watcher, one that polls
// every hour (after its first read at start) does not, where a listening
// replica would have within milliseconds.
TEST(ReplicaFlagsTest, WithoutListenAReplicaLearnsOfOthersWritesByPolling) {
  absl::StatusOr<std::string> uri = testing::NewPostgresDatabase();
  TASKD_SKIP_WITHOUT_POSTGRES(uri.status());
  auto start = [&](std::vector<std::string> flags) {
    testing::TaskdProcess::Options options;
    options.db_path = *uri;
    options.flags = std::move(flags);
    auto replica = std::make_unique<testing::TaskdProcess>(options);
    absl::Status started = replica->Start();
    EXPECT_TRUE(started.ok()) << started;
    return replica;
  };
  auto writer = start({});
  auto polling =
      start({"--pg_listen=false", "--pg_poll_interval=200ms",
             "--pg_connect_timeout=3s", "--pg_dead_peer_timeout=9s"});
  auto deaf = start({"--pg_listen=false", "--pg_poll_interval=1h"});
  // The start-up log says how each follows the others.
  EXPECT_THAT(writer->log(),
              HasSubstr("postgres listen=on poll_interval=1s "
                        "connect_timeout=5s dead_peer_timeout=10s"));
  EXPECT_THAT(polling->log(),
              HasSubstr("postgres listen=off poll_interval=200ms "
                        "connect_timeout=3s dead_peer_timeout=9s"));
  EXPECT_THAT(deaf->log(), HasSubstr("postgres listen=off poll_interval=1h"));
  Watcher polled(polling->NewChannel(), 1);
  Watcher unheard(deaf->NewChannel(), 1);
  // Past every follower's first read, made as it starts.
  absl::SleepFor(absl::Seconds(1));
  TaskClient client(writer->NewChannel());
  Task task;
  task.set_type("backup");
  absl::StatusOr<Task> created = client.Create(task);
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(polled.AwaitRevision(created->revision(), absl::Seconds(10)))
      << polled.ending();
  EXPECT_EQ(polled.seen().back().id, created->id());
  EXPECT_FALSE(unheard.AwaitRevision(created->revision(), absl::Seconds(2)))
      << "a replica with --pg_listen=false and an hour between polls "
         "delivered another replica's write";
  EXPECT_TRUE(unheard.seen().empty());
  // Still open: it heard nothing, rather than having ended.
  EXPECT_EQ(unheard.ending(), "");
}

}  // namespace
}  // namespace taskd
