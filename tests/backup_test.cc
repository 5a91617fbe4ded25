// Backups and restores (issue 16): the store's online copy while writers
// go on, RestoreSqliteDatabase's refusals, BackupDatabase's one-at-a-time
// rule, and the whole path as an operator takes it: `taskctl backup` from a
// busy taskd, `taskd --restore`, and a watcher that was ahead of the
// restored database told to relist.
#include <grpcpp/create_channel.h>
#include <grpcpp/server_builder.h>
#include <sqlite3.h>

#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/error_details.h"
#include "base/sha256.h"
#include "client/task_client.h"
#include "client/task_watch.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "storage/sqlite_task_store.h"
#include "tests/taskd_process.h"
#include "tests/test_server.h"
#include "tests/test_store.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

bool FileExists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

// Every task of the store at `path`, by id (opened, read, closed).
std::map<std::string, Task> TasksIn(const std::string& path,
                                    int64_t* revision = nullptr,
                                    std::string* secret = nullptr) {
  SqliteTaskStoreOptions options;
  options.path = path;
  absl::StatusOr<std::unique_ptr<TaskStore>> store =
      OpenSqliteTaskStore(options);
  EXPECT_TRUE(store.ok()) << store.status();
  std::map<std::string, Task> tasks;
  if (!store.ok()) return tasks;
  ListQuery query;
  query.limit = 1000;
  while (true) {
    absl::StatusOr<ListResult> page = (*store)->List(query);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) break;
    for (const Task& task : page->tasks) tasks[task.id()] = task;
    if (!page->more) break;
    query.after = CursorOf(query.order, page->tasks.back());
  }
  if (revision != nullptr) *revision = (*store)->CurrentRevision();
  if (secret != nullptr) *secret = (*store)->InstanceSecret();
  return tasks;
}

std::string IntegrityOf(const std::string& path) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* stmt = nullptr;
  std::string verdict = "(no answer)";
  if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, nullptr) ==
          SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    verdict = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return verdict;
}

class StoreBackupTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(temp_.Open().ok()); }

  testing::TempStore temp_;
  int64_t n_ = 0;
};

// While three writers create and update tasks, the copy is exactly the
// store at the revision Backup returns: the history up to it, replayed,
// gives the copy's tasks, and the copy has nothing after it.
TEST_F(StoreBackupTest, CopyIsTheStoreAtOneRevisionWhileWritersGoOn) {
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(temp_.store
                    ->Create(testing::NewStoreTask(absl::StrCat("seed", i),
                                                   ++n_, temp_.clock.Now()),
                             "")
                    .ok());
  }
  std::atomic<bool> stop{false};
  std::atomic<int64_t> next{1000};
  std::vector<std::thread> writers;
  for (int w = 0; w < 3; ++w) {
    writers.emplace_back([&, w] {
      while (!stop.load()) {
        const int64_t n = next.fetch_add(1);
        Task task =
            testing::NewStoreTask(absl::StrCat("w", n), n, temp_.clock.Now());
        EXPECT_TRUE(temp_.store->Create(task, "").ok());
        EXPECT_TRUE(temp_.store
                        ->Update(absl::StrCat("seed", n % 300),
                                 [w](const Task& current) {
                                   Task next = current;
                                   next.set_priority(w % 2 ? "high" : "low");
                                   return next;
                                 })
                        .ok());
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(200));
  const std::string copy = temp_.dir.File("copy.db");
  const int64_t before = temp_.store->CurrentRevision();
  absl::StatusOr<int64_t> revision = temp_.store->Backup(copy, nullptr);
  absl::SleepFor(absl::Milliseconds(200));
  stop = true;
  for (std::thread& writer : writers) writer.join();
  ASSERT_TRUE(revision.ok()) << revision.status();
  EXPECT_GE(*revision, before);
  EXPECT_GT(temp_.store->CurrentRevision(), *revision)
      << "the writers did not go on during the copy";

  EXPECT_EQ(IntegrityOf(copy), "ok");
  int64_t copy_revision = 0;
  std::string copy_secret;
  std::map<std::string, Task> copied =
      TasksIn(copy, &copy_revision, &copy_secret);
  EXPECT_EQ(copy_revision, *revision);
  EXPECT_EQ(copy_secret, temp_.store->InstanceSecret());

  // The original's history up to the copy's revision, replayed.
  std::map<std::string, Task> replayed;
  for (int64_t from = 1; from <= *revision;) {
    absl::StatusOr<std::vector<Change>> changes =
        temp_.store->ReadChanges(from, 500);
    ASSERT_TRUE(changes.ok()) << changes.status();
    ASSERT_FALSE(changes->empty());
    for (const Change& change : *changes) {
      if (change.revision > *revision) break;
      if (change.kind == Change::Kind::kDeleted) {
        replayed.erase(change.task.id());
      } else {
        replayed[change.task.id()] = change.task;
      }
    }
    from = changes->back().revision + 1;
  }
  ASSERT_EQ(copied.size(), replayed.size());
  for (const auto& [id, task] : replayed) {
    ASSERT_TRUE(copied.count(id)) << id;
    EXPECT_TRUE(MessageDifferencer::Equals(copied[id], task)) << id;
  }
}

TEST_F(StoreBackupTest, NeverOverwritesAndAnAbandonedCopyLeavesNothing) {
  const std::string copy = temp_.dir.File("copy.db");
  { std::ofstream(copy) << "precious"; }
  absl::StatusOr<int64_t> refused = temp_.store->Backup(copy, nullptr);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists);
  std::ifstream in(copy);
  std::string kept;
  in >> kept;
  EXPECT_EQ(kept, "precious");

  const std::string abandoned = temp_.dir.File("abandoned.db");
  absl::StatusOr<int64_t> cancelled =
      temp_.store->Backup(abandoned, [] { return false; });
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kCancelled);
  EXPECT_FALSE(FileExists(abandoned));
}

TEST_F(StoreBackupTest, RestoreStartsADatabaseFromABackup) {
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(temp_.store
                    ->Create(testing::NewStoreTask(absl::StrCat("t", i), ++n_,
                                                   temp_.clock.Now()),
                             "")
                    .ok());
  }
  const std::string backup = temp_.dir.File("backup.db");
  ASSERT_TRUE(temp_.store->Backup(backup, nullptr).ok());
  const std::string target = temp_.dir.File("restored.db");
  ASSERT_TRUE(RestoreSqliteDatabase(backup, target).ok());
  EXPECT_FALSE(FileExists(target + ".restoring"));
  int64_t revision = 0;
  std::map<std::string, Task> restored = TasksIn(target, &revision);
  EXPECT_EQ(revision, temp_.store->CurrentRevision());
  EXPECT_EQ(restored.size(), 20u);
  // The backup itself is left as it was.
  EXPECT_EQ(IntegrityOf(backup), "ok");
}

TEST_F(StoreBackupTest, RestoreRefusesWhatItCannotTrust) {
  const std::string backup = temp_.dir.File("backup.db");
  ASSERT_TRUE(temp_.store->Backup(backup, nullptr).ok());

  // A database (or its log) already at the target.
  const std::string taken = temp_.dir.File("taken.db");
  { std::ofstream(taken) << "x"; }
  absl::Status status = RestoreSqliteDatabase(backup, taken);
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_THAT(status.message(), HasSubstr("never overwrites"));
  const std::string wal_only = temp_.dir.File("walonly.db");
  { std::ofstream(wal_only + "-wal") << "x"; }
  EXPECT_EQ(RestoreSqliteDatabase(backup, wal_only).code(),
            absl::StatusCode::kAlreadyExists);

  // No such file; not a database; a damaged one; not taskd's.
  status = RestoreSqliteDatabase(temp_.dir.File("missing.db"),
                                 temp_.dir.File("a.db"));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  const std::string text = temp_.dir.File("text.db");
  { std::ofstream(text) << std::string(8192, 'z'); }
  status = RestoreSqliteDatabase(text, temp_.dir.File("b.db"));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_FALSE(FileExists(temp_.dir.File("b.db")));

  const std::string damaged = temp_.dir.File("damaged.db");
  {
    // Scribble over the tasks table's root page (its B-tree header).
    int64_t root = 0;
    int64_t page_size = 0;
    sqlite3* db = nullptr;
    sqlite3_open_v2(backup.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    for (auto [sql, out] :
         {std::pair{"SELECT rootpage FROM sqlite_master WHERE name = 'tasks'",
                    &root},
          std::pair{"PRAGMA page_size", &page_size}}) {
      sqlite3_stmt* stmt = nullptr;
      sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
      if (sqlite3_step(stmt) == SQLITE_ROW)
        *out = sqlite3_column_int64(stmt, 0);
      sqlite3_finalize(stmt);
    }
    sqlite3_close(db);
    ASSERT_GT(root, 1);
    ASSERT_GT(page_size, 0);
    std::ifstream in(backup, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)),
                      std::istreambuf_iterator<char>());
    const size_t start = static_cast<size_t>((root - 1) * page_size);
    ASSERT_GT(bytes.size(), start + 64);
    for (size_t i = start; i < start + 64; ++i) bytes[i] = 0x5a;
    std::ofstream(damaged, std::ios::binary) << bytes;
  }
  status = RestoreSqliteDatabase(damaged, temp_.dir.File("c.db"));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_FALSE(FileExists(temp_.dir.File("c.db")));

  const std::string foreign = temp_.dir.File("foreign.db");
  {
    sqlite3* db = nullptr;
    sqlite3_open(foreign.c_str(), &db);
    sqlite3_exec(db, "CREATE TABLE t (x)", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  status = RestoreSqliteDatabase(foreign, temp_.dir.File("d.db"));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("not a taskd database"));

  // Written by a newer taskd.
  const std::string newer = temp_.dir.File("newer.db");
  ASSERT_TRUE(temp_.store->Backup(newer, nullptr).ok());
  {
    sqlite3* db = nullptr;
    sqlite3_open(newer.c_str(), &db);
    sqlite3_exec(db, "UPDATE schema_version SET version = 999", nullptr,
                 nullptr, nullptr);
    sqlite3_close(db);
  }
  status = RestoreSqliteDatabase(newer, temp_.dir.File("e.db"));
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(), HasSubstr("999"));
}

// BackupDatabase through the service: one at a time. The first call's
// client reads nothing with a small flow-control window, so its stream
// stays in the middle of the file until the client reads.
TEST(BackupServiceTest, OneBackupAtATime) {
  testing::TempDir dir;
  testing::InProcessTaskd taskd;
  TaskServerOptions server;
  server.store.path = dir.File("taskd.db");
  server.store.synchronous_full = false;
  ASSERT_TRUE(taskd.Start(server).ok());
  for (int i = 0; i < 200; ++i) {
    Task task;
    task.set_type(absl::StrCat("backup-", i));
    ASSERT_TRUE(taskd.client->Create(task).ok());
  }
  grpc::ChannelArguments narrow;
  narrow.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  narrow.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 * 1024);
  auto slow_channel = grpc::CreateCustomChannel(
      taskd.address(), grpc::InsecureChannelCredentials(), narrow);
  auto slow_stub = tasks::v1::TaskService::NewStub(slow_channel);
  grpc::ClientContext slow_context;
  auto slow = slow_stub->BackupDatabase(&slow_context, {});
  slow->WaitForInitialMetadata();  // the copy is made and streaming

  // Meanwhile a second backup is refused, and says why.
  absl::StatusOr<TaskClient::BackupResult> second =
      taskd.client->Backup(dir.File("second.db"));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted)
      << second.status();
  EXPECT_EQ(ReasonOf(second.status()), "BACKUP_IN_PROGRESS");
  EXPECT_FALSE(FileExists(dir.File("second.db")));
  EXPECT_FALSE(FileExists(dir.File("second.db.part")));

  // The first one, read at last, is whole.
  tasks::v1::BackupDatabaseResponse response;
  int64_t size = -1;
  int64_t received = 0;
  while (slow->Read(&response)) {
    if (size < 0) size = response.size_bytes();
    received += static_cast<int64_t>(response.chunk().size());
  }
  ASSERT_TRUE(slow->Finish().ok());
  EXPECT_EQ(received, size);
  EXPECT_FALSE(FileExists(dir.File("taskd.db.backup")))
      << "the scratch copy is removed once sent";

  // And the next one may run.
  absl::StatusOr<TaskClient::BackupResult> third =
      taskd.client->Backup(dir.File("third.db"));
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->size_bytes, size);
  taskd.Stop();
}

// A taskd killed in the middle of a backup leaves its scratch copy behind;
// the next backup replaces it instead of being refused for it.
TEST(BackupServiceTest, ALeftoverScratchCopyIsReplaced) {
  testing::TempDir dir;
  {
    std::ofstream leftover(dir.File("taskd.db.backup"));
    leftover << "half a copy from a taskd that was killed";
  }
  testing::InProcessTaskd taskd;
  TaskServerOptions server;
  server.store.path = dir.File("taskd.db");
  ASSERT_TRUE(taskd.Start(server).ok());
  Task task;
  task.set_type("nightly");
  absl::StatusOr<Task> created = taskd.client->Create(task);
  ASSERT_TRUE(created.ok()) << created.status();
  absl::StatusOr<TaskClient::BackupResult> saved =
      taskd.client->Backup(dir.File("copy.db"));
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->revision, created->revision());
  EXPECT_FALSE(FileExists(dir.File("taskd.db.backup")));
  taskd.Stop();
  std::map<std::string, Task> copied = TasksIn(dir.File("copy.db"));
  ASSERT_EQ(copied.size(), 1u);
  EXPECT_TRUE(MessageDifferencer::Equals(copied.begin()->second, *created));
}

// As an operator: taskctl backup from a taskd that keeps taking writes, a
// second taskd started from it with --restore, and a watcher of the first
// (ahead of the backup) pointed at the restored one: it is told to relist
// (OUT_OF_RANGE, REVISION_AHEAD), lists, and watches on from the list.
TEST(BackupProcessTest, TaskctlBackupThenTaskdRestore) {
  testing::TempDir dir;
  testing::TaskdProcess::Options options;
  options.db_path = dir.File("live.db");
  options.flags = {"--http_listen="};
  auto live = std::make_unique<testing::TaskdProcess>(options);
  ASSERT_TRUE(live->Start().ok()) << live->log();
  const int port = live->port();
  TaskClient client(live->NewChannel());
  for (int i = 0; i < 50; ++i) {
    Task task;
    task.set_type("backup");
    ASSERT_TRUE(client.Create(task).ok());
  }
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    TaskClient own(live->NewChannel());
    while (!stop.load()) {
      Task task;
      task.set_type("restore");
      (void)own.Create(task);
    }
  });
  absl::SleepFor(absl::Milliseconds(200));
  const std::string backup = dir.File("nightly.db");
  testing::CommandResult saved =
      testing::RunTaskctl({"--server=" + live->address(), "backup", backup});
  absl::SleepFor(absl::Milliseconds(200));
  stop = true;
  writer.join();
  ASSERT_EQ(saved.rc, 0) << saved;
  // "FILE: N bytes, revision R, sha256 H"
  std::vector<std::string> words = absl::StrSplit(saved.out, ' ');
  ASSERT_GE(words.size(), 7u) << saved.out;
  int64_t backup_revision = 0;
  ASSERT_TRUE(
      absl::SimpleAtoi(absl::StripSuffix(words[4], ","), &backup_revision))
      << saved.out;
  EXPECT_EQ(IntegrityOf(backup), "ok");
  EXPECT_FALSE(FileExists(backup + ".part"));
  // taskctl refuses to overwrite it.
  testing::CommandResult again =
      testing::RunTaskctl({"--server=" + live->address(), "backup", backup});
  EXPECT_EQ(again.rc, 1) << again;
  EXPECT_THAT(again.err, HasSubstr("ALREADY_EXISTS"));

  // A watcher of the live taskd, at its latest revision.
  absl::StatusOr<tasks::v1::ListTasksResponse> listed = client.List({});
  ASSERT_TRUE(listed.ok());
  const int64_t live_revision = listed->revision();
  ASSERT_GT(live_revision, backup_revision);
  std::map<std::string, Task> live_tasks;
  for (std::string page_token;;) {
    tasks::v1::ListTasksRequest request;
    request.set_page_size(1000);
    request.set_page_token(page_token);
    absl::StatusOr<tasks::v1::ListTasksResponse> page = client.List(request);
    ASSERT_TRUE(page.ok());
    for (const Task& task : page->tasks()) live_tasks[task.id()] = task;
    page_token = page->next_page_token();
    if (page_token.empty()) break;
  }
  EXPECT_EQ(live->Stop(SIGTERM), 0) << live->log();
  live.reset();

  // The restored taskd, on the same port, from the backup.
  testing::TaskdProcess::Options restored_options;
  restored_options.db_path = dir.File("restored.db");
  restored_options.listen = absl::StrCat("127.0.0.1:", port);
  restored_options.flags = {"--http_listen=", "--restore=" + backup};
  testing::TaskdProcess restored(restored_options);
  ASSERT_TRUE(restored.Start().ok()) << restored.log();
  EXPECT_EQ(restored.start_revision(), backup_revision);
  EXPECT_THAT(restored.log(), HasSubstr("restored"));
  std::map<std::string, Task> restored_tasks =
      TasksIn(dir.File("nightly.db"));  // the backup file itself, read back
  TaskClient restored_client(restored.NewChannel());
  int found = 0;
  for (const auto& [id, task] : live_tasks) {
    absl::StatusOr<Task> got = restored_client.Get(id);
    if (task.revision() <= backup_revision) {
      ASSERT_TRUE(got.ok()) << id << " " << got.status();
      EXPECT_TRUE(MessageDifferencer::Equals(*got, task)) << id;
      ++found;
    } else {
      EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound) << id;
    }
  }
  EXPECT_EQ(found, static_cast<int>(restored_tasks.size()));

  // The watcher resumes from live_revision + 1: ahead of this database.
  tasks::v1::WatchTasksRequest request;
  request.set_start_revision(live_revision + 1);
  TaskWatch watch(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                      grpc::InsecureChannelCredentials()),
                  request);
  absl::Status why = watch.Run({});
  EXPECT_EQ(why.code(), absl::StatusCode::kOutOfRange) << why;
  EXPECT_EQ(ReasonOf(why), "REVISION_AHEAD") << why;
  // It relists, and watches on from the list's revision + 1.
  absl::StatusOr<tasks::v1::ListTasksResponse> relisted =
      restored_client.List({});
  ASSERT_TRUE(relisted.ok());
  EXPECT_EQ(relisted->revision(), backup_revision);
  tasks::v1::WatchTasksRequest resume;
  resume.set_start_revision(relisted->revision() + 1);
  TaskWatch rewatch(restored.NewChannel(), resume);
  std::string seen;
  std::thread watching([&] {
    TaskWatch::Callbacks callbacks;
    callbacks.on_event = [&](const tasks::v1::TaskEvent& event) {
      seen = event.task().id();
      rewatch.Stop();
    };
    (void)rewatch.Run(callbacks);
  });
  Task fresh;
  fresh.set_type("after-restore");
  absl::StatusOr<Task> created = restored_client.Create(fresh);
  ASSERT_TRUE(created.ok());
  watching.join();
  EXPECT_EQ(seen, created->id());
  EXPECT_EQ(created->revision(), backup_revision + 1);
  EXPECT_EQ(restored.Stop(SIGTERM), 0) << restored.log();
}

// A server whose BackupDatabase sends `chunks`, the first with `size` and
// the last with `sha256`: what TaskClient::Backup makes of a damaged copy.
class FakeBackupService final : public tasks::v1::TaskService::Service {
 public:
  std::vector<std::string> chunks;
  int64_t size = 0;
  std::string sha256;

  grpc::Status BackupDatabase(
      grpc::ServerContext*, const tasks::v1::BackupDatabaseRequest*,
      grpc::ServerWriter<tasks::v1::BackupDatabaseResponse>* writer) override {
    for (size_t i = 0; i < chunks.size(); ++i) {
      tasks::v1::BackupDatabaseResponse response;
      response.set_chunk(chunks[i]);
      if (i == 0) {
        response.set_revision(7);
        response.set_size_bytes(size);
      }
      if (i + 1 == chunks.size()) response.set_sha256(sha256);
      writer->Write(response);
    }
    return grpc::Status::OK;
  }
};

class DamagedBackupTest : public ::testing::Test {
 protected:
  // Serves `service_` as it is now and runs TaskClient::Backup against it.
  absl::StatusOr<TaskClient::BackupResult> BackUp() {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&service_);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    EXPECT_NE(server, nullptr);
    TaskClient client(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                          grpc::InsecureChannelCredentials()));
    absl::StatusOr<TaskClient::BackupResult> result = client.Backup(path_);
    server->Shutdown();
    return result;
  }

  // A refused copy: DataLoss saying `why`, and no file left behind.
  void ExpectRefused(const absl::StatusOr<TaskClient::BackupResult>& saved,
                     const std::string& why) {
    EXPECT_EQ(saved.status().code(), absl::StatusCode::kDataLoss)
        << saved.status();
    EXPECT_THAT(saved.status().message(), HasSubstr(why));
    EXPECT_FALSE(FileExists(path_));
    EXPECT_FALSE(FileExists(path_ + ".part"));
  }

  testing::TempDir dir_;
  const std::string path_ = dir_.File("copy.db");
  FakeBackupService service_;
};

TEST_F(DamagedBackupTest, AWholeCopyIsSaved) {
  // The control: the same fake, undamaged, is accepted.
  service_.chunks = {"first part ", "second part"};
  service_.size = 22;
  service_.sha256 =
      absl::BytesToHexString(Sha256::Of("first part second part"));
  absl::StatusOr<TaskClient::BackupResult> saved = BackUp();
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_EQ(saved->revision, 7);
  EXPECT_EQ(saved->sha256, service_.sha256);
  std::ifstream in(path_);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}),
            "first part second part");
}

TEST_F(DamagedBackupTest, AChecksumMismatchIsDataLossAndLeavesNoFile) {
  service_.chunks = {"first part ", "second part"};
  service_.size = 22;
  // The SHA-256 of other bytes than those sent.
  service_.sha256 =
      absl::BytesToHexString(Sha256::Of("first part second pary"));
  ExpectRefused(BackUp(), "damaged in transit");
}

TEST_F(DamagedBackupTest, AShortCopyIsDataLoss) {
  service_.chunks = {"first part"};
  service_.size = 22;
  service_.sha256 = Sha256().HexDigest();
  ExpectRefused(BackUp(), "received 10 bytes");
}

TEST_F(DamagedBackupTest, AnEmptyStreamIsDataLoss) {
  ExpectRefused(BackUp(), "received 0 bytes");
}

}  // namespace
}  // namespace taskd
