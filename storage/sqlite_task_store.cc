#include "storage/sqlite_task_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <utility>
#include <variant>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/error_details.h"
#include "storage/fsync_guard_vfs.h"
#include "storage/group_commit.h"
#include "storage/sqlite_query.h"
#include "storage/sqlite_statement.h"
#include "storage/task_cache.h"
#include "storage/task_row.h"

namespace taskd {
namespace {

using sqlite::Connection;
using sqlite::kTaskColumns;
using sqlite::SqliteError;
using sqlite::Statement;
using sqlite::Transaction;

// Forward-only migrations: kMigrations[i] takes the schema from version i to
// version i + 1, in one transaction with the version bump. Never edit one
// that has shipped; append a new one.
constexpr const char* kMigrations[] = {
    // 1: tasks, the change history and the store's own counters.
    R"sql(
      CREATE TABLE tasks (
        id           TEXT PRIMARY KEY NOT NULL,
        uuid         TEXT NOT NULL UNIQUE,
        type         TEXT NOT NULL,
        state        INTEGER NOT NULL,
        result_code  INTEGER NOT NULL DEFAULT 0,
        priority     INTEGER NOT NULL,
        policy_id    TEXT NOT NULL DEFAULT '',
        resource_id  TEXT NOT NULL DEFAULT '',
        executor_id  TEXT NOT NULL DEFAULT '',
        tenant_id    TEXT NOT NULL DEFAULT '',
        enqueued_at  INTEGER NOT NULL,
        started_at   INTEGER NOT NULL DEFAULT 0,
        completed_at INTEGER NOT NULL DEFAULT 0,
        updated_at   INTEGER NOT NULL,
        revision     INTEGER NOT NULL,
        request_id   TEXT NOT NULL DEFAULT ''
      );
      CREATE INDEX tasks_by_enqueued ON tasks (enqueued_at, id);
      CREATE UNIQUE INDEX tasks_by_request ON tasks (tenant_id, request_id)
        WHERE request_id <> '';
      CREATE TABLE changes (
        revision     INTEGER PRIMARY KEY NOT NULL,
        kind         INTEGER NOT NULL,
        task_id      TEXT NOT NULL,
        task         BLOB NOT NULL,
        previous     BLOB,
        committed_at INTEGER NOT NULL
      );
      CREATE INDEX changes_by_time ON changes (committed_at);
      CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL
      );
      INSERT INTO meta (key, value) VALUES ('revision', 0);
    )sql",
    // 2: indexes for the ListTasks questions asked most (issue 3). A list
    // query is a filter, an order (enqueued_at, id by default) and a keyset
    // cursor, so most indexes are "the column people filter on with =, then
    // the default order": SQLite seeks to the cursor and reads one page in
    // index order, with no sort and nothing read past the page. Each index
    // is written on every insert and on every update that writes one of its
    // columns, so the list stops at the questions that would otherwise read
    // a large part of the table; see bench/RESULTS.md for plans and costs.
    // SQLite picks among them without ANALYZE statistics, by how many
    // columns a query constrains and how (storage/sqlite_query.cc tells it
    // which = keep a large share of the rows); tests/query_index_test.cc
    // checks the plans of the typical questions.
    R"sql(
      -- A tenant's tasks, newest or oldest first: the list every tenant-
      -- scoped view starts from.
      CREATE INDEX tasks_by_tenant ON tasks (tenant_id, enqueued_at, id);
      -- A tenant's tasks in one state ("our running tasks").
      CREATE INDEX tasks_by_tenant_state
        ON tasks (tenant_id, state, enqueued_at, id);
      -- Queues across tenants: "enqueued, oldest first", "started" for
      -- monitors.
      CREATE INDEX tasks_by_state ON tasks (state, enqueued_at, id);
      -- The tasks of one type (backup, restore, ...).
      CREATE INDEX tasks_by_type ON tasks (type, enqueued_at, id);
      -- What a policy ran, what ran on a resource, what an agent ran: each
      -- a small set out of all tasks.
      CREATE INDEX tasks_by_policy ON tasks (policy_id, enqueued_at, id);
      CREATE INDEX tasks_by_resource ON tasks (resource_id, enqueued_at, id);
      CREATE INDEX tasks_by_executor ON tasks (executor_id, enqueued_at, id);
      -- Outcomes in a time window, newest first: "errors since yesterday",
      -- also with a type (result_code = and a completedAt range constrain
      -- two columns here, so SQLite prefers this to tasks_by_type).
      CREATE INDEX tasks_by_result ON tasks (result_code, completed_at, id);
      -- Time windows and orders by the other timestamps: what completed or
      -- started in a window, newest first; what changed since a point (sync
      -- by updatedAt). Without them such a query reads and sorts the table.
      CREATE INDEX tasks_by_completed ON tasks (completed_at, id);
      CREATE INDEX tasks_by_started ON tasks (started_at, id);
      CREATE INDEX tasks_by_updated ON tasks (updated_at, id);
    )sql",
    // 3: the dispatcher's queue: enqueued tasks by priority, then age
    // (order_by "priority desc, enqueuedAt"); without it every page sorts
    // the whole backlog. Priority alone (five values) gets no index. (For a
    // while this index was part of migration 2, so some version 2 databases
    // have it already.)
    R"sql(
      CREATE INDEX IF NOT EXISTS tasks_by_state_priority
        ON tasks (state, priority DESC, enqueued_at, id);
    )sql",
    // 4: executors (issue 12). The fields that filters and the timers need
    // get columns; every other field of a Task lives in `detail` (a
    // serialized tasks.v1.Task holding only those fields), so that a new
    // field needs no migration of its own. tasks_by_deadline holds only the
    // tasks with a deadline (the timers read it from its start: what is due
    // first); tasks_by_queue serves AcquireTask's turn-taking across
    // tenants (state = enqueued AND priority = ? AND tenant_id > ? ORDER BY
    // tenant_id, enqueued_at).
    R"sql(
      ALTER TABLE tasks ADD COLUMN assign_count INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE tasks ADD COLUMN cancel_requested INTEGER NOT NULL
        DEFAULT 0;
      ALTER TABLE tasks ADD COLUMN assigned_at INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE tasks ADD COLUMN deadline INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE tasks ADD COLUMN detail BLOB NOT NULL DEFAULT x'';
      CREATE INDEX tasks_by_deadline ON tasks (deadline) WHERE deadline <> 0;
      CREATE INDEX tasks_by_queue
        ON tasks (state, priority, tenant_id, enqueued_at, id);
    )sql",
    // 5: counts for dashboards (issue 13). How many tasks each (tenant,
    // state, result code) has, kept by every change in its own transaction
    // (CountChange), so that counts by state over all tasks or one tenant
    // read a few rows instead of every task. Rows that fall to zero stay
    // (one per combination that ever had a task: a few per tenant).
    R"sql(
      CREATE TABLE task_counts (
        tenant_id   TEXT NOT NULL,
        state       INTEGER NOT NULL,
        result_code INTEGER NOT NULL,
        n           INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, state, result_code)
      ) WITHOUT ROWID;
      INSERT INTO task_counts (tenant_id, state, result_code, n)
        SELECT tenant_id, state, result_code, COUNT(*) FROM tasks
        GROUP BY tenant_id, state, result_code;
    )sql",
    // 6: writes at etcd's pace (issue 15). The columns that are empty when
    // a task is created (policy, resource, executor, result, start and
    // completion times) get partial indexes that hold only the tasks where
    // they are set: a create writes six index entries fewer, and an index
    // holds only the tasks a question about it can match. SQLite uses a
    // partial index only for a query whose WHERE contains the index's
    // condition word for word, so storage/sqlite_query.cc adds that
    // condition (`policy_id <> ''`) beside every comparison that implies it
    // (IndexCondition).
    R"sql(
      DROP INDEX tasks_by_policy;
      DROP INDEX tasks_by_resource;
      DROP INDEX tasks_by_executor;
      DROP INDEX tasks_by_result;
      DROP INDEX tasks_by_completed;
      DROP INDEX tasks_by_started;
      CREATE INDEX tasks_by_policy ON tasks (policy_id, enqueued_at, id)
        WHERE policy_id <> '';
      CREATE INDEX tasks_by_resource ON tasks (resource_id, enqueued_at, id)
        WHERE resource_id <> '';
      CREATE INDEX tasks_by_executor ON tasks (executor_id, enqueued_at, id)
        WHERE executor_id <> '';
      CREATE INDEX tasks_by_result ON tasks (result_code, completed_at, id)
        WHERE result_code <> 0;
      CREATE INDEX tasks_by_completed ON tasks (completed_at, id)
        WHERE completed_at <> 0;
      CREATE INDEX tasks_by_started ON tasks (started_at, id)
        WHERE started_at <> 0;
    )sql",
};
constexpr int kSchemaVersion = sizeof(kMigrations) / sizeof(kMigrations[0]);

absl::Status NewerSchemaError(const std::string& path, int64_t version) {
  return absl::FailedPreconditionError(absl::StrCat(
      "database ", path, " has schema version ", version,
      ", written by a newer taskd; this taskd knows versions up to ",
      kSchemaVersion, ". Refusing to open it."));
}

// FailedPrecondition if the file at options.path holds a schema version
// this build does not know; OK if it does, or has none yet, or cannot be
// read this way (the writer's open then says what is wrong).
absl::Status RefuseNewerSchema(const SqliteTaskStoreOptions& options,
                               Connection::Options connection_options) {
  if (::access(options.path.c_str(), F_OK) != 0) return absl::OkStatus();
  connection_options.read_only = true;
  absl::StatusOr<std::unique_ptr<Connection>> reader =
      Connection::Open(options.path, connection_options);
  if (!reader.ok()) return absl::OkStatus();
  Statement read =
      (*reader)->Prepare("SELECT MAX(version) FROM schema_version");
  const int64_t version = read.Step() ? read.ColumnInt64(0) : 0;
  if (read.status().ok() && version > kSchemaVersion) {
    return NewerSchemaError(options.path, version);
  }
  return absl::OkStatus();
}

// Binds `task` to ?1 .. ?20 in kTaskColumns order.
void BindTask(Statement& statement, const Task& task) {
  int i = 1;
  for (TaskField field : kColumnFields) {
    statement.Bind(i++, FieldValueOf(task, field));
  }
  statement.BindBlob(i, DetailOf(task));
}

std::string RandomSecret() {
  std::random_device device;
  std::string secret(32, '\0');
  for (char& c : secret) c = static_cast<char>(device() & 0xff);
  return secret;
}

// An exclusive advisory lock on "<db>.lock", held for the store's lifetime,
// so that two processes never serve one database.
class FileLock {
 public:
  static absl::StatusOr<std::unique_ptr<FileLock>> Acquire(
      const std::string& path) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return absl::UnavailableError(
          absl::StrCat("open ", path, ": ", strerror(errno)));
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      return absl::FailedPreconditionError(absl::StrCat(
          "database is in use by another process (lock ", path, " is held)"));
    }
    return std::unique_ptr<FileLock>(new FileLock(fd));
  }
  ~FileLock() { ::close(fd_); }

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  const int fd_;
};

// A database connection for copying, closed on every path out.
struct SqliteCloser {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};
using SqliteHandle = std::unique_ptr<sqlite3, SqliteCloser>;

// Pages copied per step of a backup: 4 MiB at the default page size.
constexpr int kBackupPagesPerStep = 1024;

// Copies the database `source` reads (inside whatever read transaction it
// holds) to a new file at `path`, with SQLite's online backup, a step at a
// time. The file is removed again on failure.
absl::Status CopyDatabase(sqlite3* source, const std::string& path,
                          const std::function<bool()>& keep_going) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(
          absl::StrCat(path, " exists; a copy never overwrites a file"));
    }
    return absl::UnavailableError(
        absl::StrCat("create ", path, ": ", strerror(errno)));
  }
  ::close(fd);
  absl::Status status = [&]() -> absl::Status {
    sqlite3* raw = nullptr;
    int rc =
        sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr);
    SqliteHandle destination(raw);
    if (rc != SQLITE_OK) {
      return SqliteError(raw, rc, absl::StrCat("open ", path));
    }
    sqlite3_backup* backup =
        sqlite3_backup_init(destination.get(), "main", source, "main");
    if (backup == nullptr) {
      return SqliteError(destination.get(), sqlite3_errcode(destination.get()),
                         "start backup");
    }
    rc = SQLITE_OK;
    while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
      if (keep_going && !keep_going()) {
        sqlite3_backup_finish(backup);
        return absl::CancelledError("backup abandoned");
      }
      if (rc != SQLITE_OK)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      rc = sqlite3_backup_step(backup, kBackupPagesPerStep);
    }
    sqlite3_backup_finish(backup);
    if (rc != SQLITE_DONE) {
      return SqliteError(destination.get(), rc, "copy database");
    }
    return absl::OkStatus();
  }();
  if (!status.ok()) ::unlink(path.c_str());
  return status;
}

// Makes `path`, and its name in its directory, durable.
absl::Status SyncFileAndDirectory(const std::string& path) {
  for (const std::string& name :
       {path, path.find('/') == std::string::npos
                  ? std::string(".")
                  : path.substr(0, std::max<size_t>(1, path.rfind('/')))}) {
    int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::fsync(fd) != 0) {
      absl::Status error = absl::UnavailableError(
          absl::StrCat("sync ", name, ": ", strerror(errno)));
      if (fd >= 0) ::close(fd);
      return error;
    }
    ::close(fd);
  }
  return absl::OkStatus();
}

// The store. Its writes go through a GroupCommitWriter (group_commit.h),
// for which the store is also the WriteTransaction: the statements of a
// batch, on the one writer connection. That connection is used by Open,
// then only by the writer thread, then by the destructor once the writer
// has stopped.
class SqliteTaskStore final : public TaskStore, private WriteTransaction {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteTaskStore>> Open(
      const SqliteTaskStoreOptions& options);
  ~SqliteTaskStore() override;

  void Write(TaskWrite write, WriteDone done) override;
  absl::StatusOr<Task> Get(absl::string_view id) override;
  absl::StatusOr<ListResult> List(const ListQuery& query) override;
  absl::StatusOr<std::vector<Task>> ListByDeadline(int limit) override;
  absl::StatusOr<std::vector<Change>> ReadChanges(int64_t from,
                                                  int limit) override;
  int64_t CurrentRevision() override { return current_revision_.load(); }
  int64_t OldestRevision() override { return oldest_revision_.load(); }
  std::string InstanceSecret() override { return secret_; }
  absl::StatusOr<CountResult> Count(const CountQuery& query) override;
  absl::StatusOr<int64_t> Backup(
      const std::string& path,
      const std::function<bool()>& keep_going) override;

 protected:
  bool WaitingWouldDeadlock() const override {
    return writer_thread_ != nullptr && writer_thread_->OnWriterThread();
  }

 private:
  // A read connection borrowed from the pool for one call.
  class Reader {
   public:
    explicit Reader(SqliteTaskStore* store) : store_(store) {
      absl::MutexLock lock(&store_->pool_mu_);
      store_->pool_mu_.Await(absl::Condition(
          +[](std::vector<Connection*>* idle) { return !idle->empty(); },
          &store_->idle_readers_));
      connection_ = store_->idle_readers_.back();
      store_->idle_readers_.pop_back();
    }
    ~Reader() {
      absl::MutexLock lock(&store_->pool_mu_);
      store_->idle_readers_.push_back(connection_);
    }
    Connection* operator->() const { return connection_; }
    Connection* get() const { return connection_; }

   private:
    SqliteTaskStore* const store_;
    Connection* connection_;
  };

  explicit SqliteTaskStore(const SqliteTaskStoreOptions& options)
      : options_(options), cache_(options.task_cache_bytes) {}

  absl::Status Migrate();
  absl::Status LoadState();

  // The task whose id, or else uuid, is `id`, read on `connection`.
  static absl::StatusOr<Task> Find(Connection* connection,
                                   absl::string_view id);
  // One page of `query` read on `connection` (in its current transaction,
  // if any) into result->tasks and result->more.
  static absl::Status ReadPage(Connection* connection, const ListQuery& query,
                               ListResult* result);
  // Count from task_counts, on `connection` in its read transaction.
  static absl::Status CountFromCounters(Connection* connection,
                                        const CountQuery& query,
                                        CountResult* result);

  // ---- WriteTransaction: a batch's statements on writer_ ----
  //
  // A write's two statements (the task row, then the history row) are each
  // atomic: SQLite undoes a failed statement, and only a storage error may
  // make it roll back the whole transaction (InTransaction() then false).
  // (A SAVEPOINT per write would undo just that write, but copies every
  // page the write touches into a statement journal; an earlier measurement
  // put that at about a third of the store's time per move. It is not
  // recorded in bench/RESULTS.md.)
  absl::StatusOr<int64_t> Begin() override;
  bool InTransaction() override {
    return sqlite3_get_autocommit(writer_->handle()) == 0;
  }
  absl::StatusOr<Task> Find(absl::string_view id) override {
    return Find(writer_.get(), id);
  }
  absl::StatusOr<std::optional<Task>> FindByRequest(
      const std::string& tenant_id, const std::string& request_id) override;
  absl::StatusOr<bool> Taken(const Task& task) override;
  absl::StatusOr<ListResult> ReadPage(const ListQuery& query) override;
  absl::Status Insert(const Task& task, const std::string& request_id) override;
  // Sets only the columns whose values differ between `current` and `next`:
  // SQLite then rewrites only the indexes over those columns.
  absl::Status Replace(const Task& current, const Task& next) override;
  absl::Status Remove(const std::string& id) override;
  absl::Status Record(const Change& change) override;
  absl::Status AddToCounter(const Task& task, int64_t delta) override;
  absl::StatusOr<int64_t> Finish(int64_t last_revision, bool changed,
                                 bool trim) override;
  absl::Status Commit() override;
  void Rollback() override;

  // After a successful commit: publish the revision and the history's new
  // lower bound, notify.
  void Publish(const CommittedBatch& batch);
  // Drops the history beyond the limits, inside the batch's transaction
  // (`last_revision` is the batch's last revision). Returns the new lower
  // bound, to publish once the batch has committed, or 0 if nothing was
  // dropped.
  int64_t TrimHistory(int64_t last_revision);

  const SqliteTaskStoreOptions options_;
  std::unique_ptr<FileLock> lock_;
  std::string secret_;

  std::unique_ptr<Connection> writer_;
  // The batch's open transaction (rolls back when reset uncommitted).
  std::unique_ptr<Transaction> transaction_;
  // The ids whose rows the open transaction wrote (writer thread only):
  // dropped from cache_ when it ends, committed or not.
  std::vector<std::string> written_;

  // Tasks Get read, for Get (task_cache.h). The store is its database's
  // only writer (the file lock), so every change passes Commit.
  TaskCache cache_;

  std::atomic<int64_t> current_revision_{0};
  std::atomic<int64_t> oldest_revision_{1};

  std::vector<std::unique_ptr<Connection>> readers_;
  absl::Mutex pool_mu_;
  std::vector<Connection*> idle_readers_ ABSL_GUARDED_BY(pool_mu_);

  // Last: started once the store is open, stopped first.
  std::unique_ptr<GroupCommitWriter> writer_thread_;
};

absl::StatusOr<std::unique_ptr<SqliteTaskStore>> SqliteTaskStore::Open(
    const SqliteTaskStoreOptions& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("database path is empty");
  }
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("clock is null");
  }
  std::unique_ptr<SqliteTaskStore> store(new SqliteTaskStore(options));
  absl::StatusOr<std::unique_ptr<FileLock>> lock =
      FileLock::Acquire(options.path + ".lock");
  if (!lock.ok()) return lock.status();
  store->lock_ = std::move(*lock);

  Connection::Options connection_options;
  connection_options.synchronous_full = options.synchronous_full;
  // With synchronous=NORMAL, through the guard: a failed fsync of the log is
  // made good by the next sync (storage/fsync_guard_vfs.h). With FULL,
  // SQLite's own retry does it: a commit whose sync failed is not counted,
  // and the next commit writes its frames over it and syncs them
  // (tests/power_loss_test.cc fails syncs under both).
  connection_options.vfs =
      options.synchronous_full
          ? options.vfs
          : sqlite::FsyncGuardVfs::Register(options.vfs, {});
  connection_options.busy_timeout_ms =
      static_cast<int>(absl::ToInt64Milliseconds(options.busy_timeout));
  // A database of a newer taskd is refused before anything writes to it
  // (opening the writer switches the file to WAL mode).
  if (absl::Status newer = RefuseNewerSchema(options, connection_options);
      !newer.ok()) {
    return newer;
  }
  {
    absl::StatusOr<std::unique_ptr<Connection>> writer =
        Connection::Open(options.path, connection_options);
    if (!writer.ok()) return writer.status();
    store->writer_ = std::move(*writer);
    absl::Status status = store->Migrate();
    if (!status.ok()) return status;
    status = store->LoadState();
    if (!status.ok()) return status;
    // The commit that takes the log past this many pages copies them into
    // the database file (a PASSIVE checkpoint, on the writer thread).
    status = store->writer_->Exec(
        absl::StrCat("PRAGMA wal_autocheckpoint=",
                     std::max(1, options.checkpoint_pages)),
        "set wal_autocheckpoint");
    if (!status.ok()) return status;
  }
  connection_options.read_only = true;
  absl::MutexLock lock_pool(&store->pool_mu_);
  for (int i = 0; i < std::max(1, options.read_connections); ++i) {
    absl::StatusOr<std::unique_ptr<Connection>> reader =
        Connection::Open(options.path, connection_options);
    if (!reader.ok()) return reader.status();
    store->idle_readers_.push_back(reader->get());
    store->readers_.push_back(std::move(*reader));
  }
  GroupCommitOptions writer_options;
  writer_options.max_batch = options.max_batch;
  writer_options.max_queue = options.max_queue;
  writer_options.history_trim_interval = options.history_trim_interval;
  writer_options.clock = options.clock;
  SqliteTaskStore* self = store.get();
  store->writer_thread_ = std::make_unique<GroupCommitWriter>(
      writer_options, static_cast<WriteTransaction*>(self),
      [self](const CommittedBatch& batch) { self->Publish(batch); });
  return store;
}

SqliteTaskStore::~SqliteTaskStore() {
  // The writer completes every write queued before it stops.
  writer_thread_.reset();
  readers_.clear();
  if (writer_ != nullptr) {
    // Fold the WAL back into the database so that the file is complete on
    // its own after a clean shutdown.
    (void)writer_->Exec("PRAGMA wal_checkpoint(TRUNCATE)", "checkpoint");
  }
  writer_.reset();
}

absl::Status SqliteTaskStore::Migrate() {
  absl::Status status = writer_->Exec(
      "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
      "create schema_version");
  if (!status.ok()) return status;
  int64_t version = 0;
  {
    Statement read =
        writer_->Prepare("SELECT MAX(version) FROM schema_version");
    if (read.Step()) version = read.ColumnInt64(0);
    if (!read.status().ok()) return read.status();
  }
  if (version > kSchemaVersion) return NewerSchemaError(options_.path, version);
  for (int64_t v = version; v < kSchemaVersion; ++v) {
    Transaction transaction(writer_.get());
    if (status = transaction.Begin(); !status.ok()) return status;
    status = writer_->Exec(kMigrations[v],
                           absl::StrCat("migrate to schema version ", v + 1));
    if (!status.ok()) return status;
    status = writer_->Exec(
        absl::StrCat("DELETE FROM schema_version; INSERT INTO schema_version "
                     "(version) VALUES (",
                     v + 1, ")"),
        "record schema version");
    if (!status.ok()) return status;
    if (status = transaction.Commit(); !status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status SqliteTaskStore::LoadState() {
  {
    Statement read =
        writer_->Prepare("SELECT value FROM meta WHERE key = 'revision'");
    if (!read.Step()) {
      if (!read.status().ok()) return read.status();
      return absl::DataLossError("meta table has no revision");
    }
    current_revision_ = read.ColumnInt64(0);
  }
  {
    Statement read = writer_->Prepare("SELECT MIN(revision) FROM changes");
    int64_t oldest = read.Step() ? read.ColumnInt64(0) : 0;
    if (!read.status().ok()) return read.status();
    oldest_revision_ = oldest > 0 ? oldest : current_revision_.load() + 1;
  }
  {
    Statement read =
        writer_->Prepare("SELECT value FROM meta WHERE key = 'secret'");
    if (read.Step()) secret_ = read.ColumnBlob(0);
    if (!read.status().ok()) return read.status();
  }
  if (secret_.empty()) {
    secret_ = RandomSecret();
    Statement write =
        writer_->Prepare("INSERT INTO meta (key, value) VALUES ('secret', ?1)");
    write.BindBlob(1, secret_);
    return write.Run();
  }
  return absl::OkStatus();
}

absl::StatusOr<Task> SqliteTaskStore::Find(Connection* connection,
                                           absl::string_view id) {
  static const std::string by_id =
      absl::StrCat("SELECT ", kTaskColumns, " FROM tasks WHERE id = ?1");
  static const std::string by_uuid =
      absl::StrCat("SELECT ", kTaskColumns, " FROM tasks WHERE uuid = ?1");
  for (const std::string* sql : {&by_id, &by_uuid}) {
    Statement statement = connection->Prepare(*sql);
    statement.BindText(1, id);
    if (statement.Step()) return ReadTask(statement);
    if (!statement.status().ok()) return statement.status();
  }
  return absl::NotFoundError(absl::StrCat("task \"", id, "\" not found"));
}

absl::Status SqliteTaskStore::Record(const Change& change) {
  Statement insert = writer_->Prepare(
      "INSERT INTO changes (revision, kind, task_id, task, previous, "
      "committed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  insert.BindInt64(1, change.task.revision());
  insert.BindInt64(2, static_cast<int64_t>(change.kind));
  insert.BindText(3, change.task.id());
  insert.BindBlob(4, change.task.SerializeAsString());
  if (change.previous.has_value()) {
    insert.BindBlob(5, change.previous->SerializeAsString());
  }  // else NULL
  insert.BindInt64(6, absl::ToUnixMicros(change.committed_at));
  return insert.Run();
}

void SqliteTaskStore::Publish(const CommittedBatch& batch) {
  const std::vector<Change>& changes = batch.changes;
  const int64_t oldest = batch.oldest;
  if (options_.observe_commit) {
    options_.observe_commit(batch.took, changes.size());
  }
  current_revision_ = changes.back().revision;
  if (oldest > 0) {
    // The trim is committed: readers of the dropped revisions meanwhile
    // found them missing (ReadChanges checks the first revision it read).
    oldest_revision_ = oldest;
  } else if (oldest_revision_.load() > changes.front().revision) {
    oldest_revision_ = changes.front().revision;  // the history was empty
  }
  if (options_.on_commit) options_.on_commit(changes);
}

int64_t SqliteTaskStore::TrimHistory(int64_t last_revision) {
  int64_t keep_from = 0;  // drop changes with revision < keep_from
  if (options_.history_max_changes > 0) {
    keep_from = last_revision - options_.history_max_changes + 1;
  }
  if (options_.history_max_age > absl::ZeroDuration()) {
    Statement young = writer_->Prepare(
        "SELECT MIN(revision) FROM changes WHERE committed_at >= ?1");
    young.BindInt64(1, absl::ToUnixMicros(options_.clock->Now() -
                                          options_.history_max_age));
    // MIN() always returns a row: none is an error.
    if (!young.Step()) return 0;
    int64_t first_young = young.ColumnInt64(0);
    if (first_young == 0) first_young = last_revision + 1;
    keep_from = std::max(keep_from, first_young);
  }
  if (keep_from <= oldest_revision_.load()) return 0;
  Statement trim = writer_->Prepare("DELETE FROM changes WHERE revision < ?1");
  trim.BindInt64(1, keep_from);
  // One statement is atomic: a failed trim changed nothing (unless SQLite
  // rolled the whole transaction back, which CommitBatch notices) and is
  // retried at the next interval.
  if (!trim.Run().ok()) return 0;
  return keep_from;
}

absl::Status SqliteTaskStore::Replace(const Task& current, const Task& next) {
  const std::vector<ColumnChange> columns = ChangedColumns(current, next);
  // A touch that changes nothing writes nothing (an update changes at least
  // the revision).
  if (columns.empty()) return absl::OkStatus();
  written_.push_back(next.id());
  std::string sql = "UPDATE tasks SET ";
  for (size_t i = 0; i < columns.size(); ++i) {
    absl::StrAppend(&sql, i == 0 ? "" : ", ", columns[i].column, " = ?", i + 2);
  }
  sql += " WHERE id = ?1";
  // The statement texts are a few shapes (one per kind of move), each
  // prepared once and cached by the connection.
  Statement update = writer_->Prepare(sql);
  update.BindText(1, current.id());
  for (size_t i = 0; i < columns.size(); ++i) {
    const int index = static_cast<int>(i) + 2;
    if (columns[i].blob) {
      update.BindBlob(index, std::get<std::string>(columns[i].value));
    } else {
      update.Bind(index, columns[i].value);
    }
  }
  return update.Run();
}

absl::StatusOr<int64_t> SqliteTaskStore::Begin() {
  transaction_ = std::make_unique<Transaction>(writer_.get());
  if (absl::Status status = transaction_->Begin(); !status.ok()) {
    transaction_.reset();
    return status;
  }
  return current_revision_.load();
}

absl::Status SqliteTaskStore::Commit() {
  absl::Status status = transaction_->Commit();
  transaction_.reset();
  // Before the batch's calls return. Also when the commit failed: whether
  // it reached the file is then not known.
  cache_.Invalidate(written_);
  written_.clear();
  return status;
}

void SqliteTaskStore::Rollback() {
  transaction_.reset();
  cache_.Invalidate(written_);
  written_.clear();
}

absl::StatusOr<int64_t> SqliteTaskStore::Finish(int64_t last_revision,
                                                bool changed, bool trim) {
  int64_t oldest = 0;
  if (trim) {
    oldest = TrimHistory(last_revision);
    if (!InTransaction()) {
      return absl::UnavailableError(
          "the write transaction was rolled back while trimming the history");
    }
  }
  if (changed) {
    Statement bump =
        writer_->Prepare("UPDATE meta SET value = ?1 WHERE key = 'revision'");
    bump.BindInt64(1, last_revision);
    if (absl::Status status = bump.Run(); !status.ok()) return status;
  }
  return oldest;
}

absl::StatusOr<std::optional<Task>> SqliteTaskStore::FindByRequest(
    const std::string& tenant_id, const std::string& request_id) {
  // `request_id <> ''` (true here: the caller has a request_id) is the
  // partial index tasks_by_request's own condition, which SQLite uses only
  // when the query states it; without it, this read the tenant's tasks.
  static const std::string by_request =
      absl::StrCat("SELECT ", kTaskColumns,
                   " FROM tasks WHERE tenant_id = ?1 AND request_id = ?2 AND "
                   "request_id <> ''");
  Statement earlier = writer_->Prepare(by_request);
  earlier.BindText(1, tenant_id);
  earlier.BindText(2, request_id);
  if (earlier.Step()) return ReadTask(earlier);
  if (!earlier.status().ok()) return earlier.status();
  return std::nullopt;
}

absl::StatusOr<bool> SqliteTaskStore::Taken(const Task& task) {
  // Four index seeks; the equivalent "id IN (?1, ?2) OR uuid IN (?1, ?2)"
  // builds temporary tables for its IN lists and cost more than the insert
  // itself.
  Statement taken = writer_->Prepare(
      "SELECT 1 FROM tasks WHERE id = ?1 UNION ALL "
      "SELECT 1 FROM tasks WHERE uuid = ?1 UNION ALL "
      "SELECT 1 FROM tasks WHERE id = ?2 UNION ALL "
      "SELECT 1 FROM tasks WHERE uuid = ?2 LIMIT 1");
  taken.BindText(1, task.id());
  taken.BindText(2, task.uuid());
  if (taken.Step()) return true;
  if (!taken.status().ok()) return taken.status();
  return false;
}

absl::StatusOr<ListResult> SqliteTaskStore::ReadPage(const ListQuery& query) {
  ListResult result;
  if (absl::Status s = ReadPage(writer_.get(), query, &result); !s.ok()) {
    return s;
  }
  return result;
}

absl::Status SqliteTaskStore::Insert(const Task& task,
                                     const std::string& request_id) {
  static const std::string sql =
      absl::StrCat("INSERT INTO tasks (", kTaskColumns,
                   ", request_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                   "?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, "
                   "?20, ?21)");
  Statement insert = writer_->Prepare(sql);
  BindTask(insert, task);
  insert.BindText(21, request_id);
  return insert.Run();
}

absl::Status SqliteTaskStore::Remove(const std::string& id) {
  written_.push_back(id);
  Statement row = writer_->Prepare("DELETE FROM tasks WHERE id = ?1");
  row.BindText(1, id);
  return row.Run();
}

void SqliteTaskStore::Write(TaskWrite write, WriteDone done) {
  writer_thread_->Submit(std::move(write), std::move(done));
}

absl::StatusOr<Task> SqliteTaskStore::Get(absl::string_view id) {
  std::optional<Task> hit = cache_.Lookup(id);
  if (options_.observe_get) options_.observe_get(hit.has_value());
  if (hit) return *std::move(hit);
  // Read before the snapshot begins (at Find's first step).
  const uint64_t generation = cache_.generation();
  absl::StatusOr<Task> task;
  {
    Reader reader(this);
    task = Find(reader.get(), id);
  }
  // Found by uuid: not kept (the cache is by id).
  if (task.ok() && task->id() == id) cache_.Insert(generation, *task);
  return task;
}

absl::StatusOr<ListResult> SqliteTaskStore::List(const ListQuery& query) {
  Reader reader(this);
  // One read transaction: the revision and the rows come from one snapshot.
  Transaction transaction(reader.get());
  if (absl::Status status = transaction.BeginRead(); !status.ok()) {
    return status;
  }
  ListResult result;
  {
    Statement revision =
        reader->Prepare("SELECT value FROM meta WHERE key = 'revision'");
    result.revision = revision.Step() ? revision.ColumnInt64(0) : 0;
    if (!revision.status().ok()) return revision.status();
  }
  // Each statement is reset when ReadPage returns: its read ends before the
  // COMMIT.
  if (absl::Status s = ReadPage(reader.get(), query, &result); !s.ok()) {
    return s;
  }
  if (absl::Status status = transaction.Commit(); !status.ok()) return status;
  return result;
}

absl::Status SqliteTaskStore::ReadPage(Connection* connection,
                                       const ListQuery& query,
                                       ListResult* result) {
  if (absl::Status bad = CheckListQuery(query); !bad.ok()) return bad;
  // One row more than asked tells whether another page follows.
  sqlite::SqlQuery sql = sqlite::BuildListQuery(query, query.limit + 1);
  Statement page = connection->Prepare(sql.sql);
  for (size_t i = 0; i < sql.params.size(); ++i) {
    page.Bind(static_cast<int>(i) + 1, sql.params[i]);
  }
  while (page.Step()) {
    if (static_cast<int>(result->tasks.size()) == query.limit) {
      result->more = true;
      break;
    }
    result->tasks.push_back(ReadTask(page));
  }
  return page.status();
}

absl::StatusOr<std::vector<Task>> SqliteTaskStore::ListByDeadline(int limit) {
  static const std::string sql =
      absl::StrCat("SELECT ", kTaskColumns, sqlite::kByDeadlineWhere);
  Reader reader(this);
  Statement due = reader->Prepare(sql);
  due.BindInt64(1, std::max(1, limit));
  std::vector<Task> tasks;
  while (due.Step()) tasks.push_back(ReadTask(due));
  if (!due.status().ok()) return due.status();
  return tasks;
}

absl::StatusOr<int64_t> SqliteTaskStore::Backup(
    const std::string& path, const std::function<bool()>& keep_going) {
  // A connection of its own, so that the pool keeps all its readers. Its
  // read transaction fixes one snapshot for the whole copy: in WAL mode the
  // writer goes on committing meanwhile (the checkpoints only stop short of
  // the snapshot's pages), and the copy, never modified through this
  // connection, never has to restart.
  Connection::Options connection_options;
  connection_options.read_only = true;
  connection_options.vfs = options_.vfs;
  absl::StatusOr<std::unique_ptr<Connection>> source =
      Connection::Open(options_.path, connection_options);
  if (!source.ok()) return source.status();
  Transaction snapshot(source->get());
  absl::Status status = snapshot.BeginRead();
  if (!status.ok()) return status;
  int64_t revision = 0;
  {
    Statement read =
        (*source)->Prepare("SELECT value FROM meta WHERE key = 'revision'");
    if (read.Step()) revision = read.ColumnInt64(0);
    if (!read.status().ok()) return read.status();
  }
  status = CopyDatabase((*source)->handle(), path, keep_going);
  if (!status.ok()) return status;
  return revision;
}

absl::StatusOr<CountResult> SqliteTaskStore::Count(const CountQuery& query) {
  Reader reader(this);
  // One read transaction: the revision and the counts come from one
  // snapshot.
  Transaction transaction(reader.get());
  if (absl::Status status = transaction.BeginRead(); !status.ok()) {
    return status;
  }
  CountResult result;
  {
    Statement revision =
        reader->Prepare("SELECT value FROM meta WHERE key = 'revision'");
    result.revision = revision.Step() ? revision.ColumnInt64(0) : 0;
    if (!revision.status().ok()) return revision.status();
  }
  if (sqlite::AnsweredByCounters(query)) {
    if (absl::Status s = CountFromCounters(reader.get(), query, &result);
        !s.ok()) {
      return s;
    }
  } else {
    sqlite::SqlQuery sql = sqlite::BuildCountQuery(query);
    Statement count = reader->Prepare(sql.sql);
    for (size_t i = 0; i < sql.params.size(); ++i) {
      count.Bind(static_cast<int>(i) + 1, sql.params[i]);
    }
    const int columns = static_cast<int>(query.group_by.size());
    while (count.Step()) {
      const int64_t n = count.ColumnInt64(columns);
      if (n == 0) continue;  // no GROUP BY: one row, even with no tasks
      GroupKey key;
      for (int i = 0; i < columns; ++i) {
        if (InfoOf(query.group_by[i]).kind == FieldKind::kString) {
          key.emplace_back(count.ColumnText(i));
        } else {
          key.emplace_back(count.ColumnInt64(i));
        }
      }
      result.groups[std::move(key)] += n;
    }
    if (!count.status().ok()) return count.status();
  }
  if (absl::Status status = transaction.Commit(); !status.ok()) return status;
  return result;
}

absl::Status SqliteTaskStore::CountFromCounters(Connection* connection,
                                                const CountQuery& query,
                                                CountResult* result) {
  // A filter that pins the tenant reads only that tenant's rows (the
  // primary key's prefix); any other filter is evaluated on each row as
  // on a task that has just these three fields, which is exact because the
  // filter reads no other field.
  std::optional<FieldValue> tenant =
      RequiredValue(query.filter.get(), TaskField::kTenantId);
  Statement rows = connection->Prepare(
      tenant.has_value()
          ? "SELECT tenant_id, state, result_code, n FROM task_counts "
            "WHERE tenant_id = ?1 AND n <> 0"
          : "SELECT tenant_id, state, result_code, n FROM task_counts "
            "WHERE n <> 0");
  if (tenant.has_value()) rows.Bind(1, *tenant);
  TaskCounts counts(query.group_by);
  Task row;
  while (rows.Step()) {
    row.set_tenant_id(rows.ColumnText(0));
    row.set_state(static_cast<Task::State>(rows.ColumnInt64(1)));
    row.set_result_code(static_cast<Task::ResultCode>(rows.ColumnInt64(2)));
    if (Matches(query.filter.get(), row)) counts.Add(row, rows.ColumnInt64(3));
  }
  if (!rows.status().ok()) return rows.status();
  result->groups = counts.groups();
  return absl::OkStatus();
}

absl::Status SqliteTaskStore::AddToCounter(const Task& task, int64_t delta) {
  Statement add = writer_->Prepare(
      "INSERT INTO task_counts (tenant_id, state, result_code, n) "
      "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tenant_id, state, result_code) "
      "DO UPDATE SET n = n + excluded.n");
  add.BindText(1, task.tenant_id());
  add.BindInt64(2, static_cast<int64_t>(task.state()));
  add.BindInt64(3, static_cast<int64_t>(task.result_code()));
  add.BindInt64(4, delta);
  return add.Run();
}

absl::StatusOr<std::vector<Change>> SqliteTaskStore::ReadChanges(int64_t from,
                                                                 int limit) {
  if (from < 1) from = 1;
  if (from < oldest_revision_.load()) {
    return CompactedError(from, oldest_revision_.load());
  }
  Reader reader(this);
  Statement read = reader->Prepare(
      "SELECT revision, kind, task, previous, committed_at FROM changes "
      "WHERE revision >= ?1 ORDER BY revision LIMIT ?2");
  read.BindInt64(1, from);
  read.BindInt64(2, limit);
  std::vector<Change> changes;
  while (read.Step()) {
    Change change;
    change.revision = read.ColumnInt64(0);
    change.kind = static_cast<Change::Kind>(read.ColumnInt64(1));
    if (!change.task.ParseFromString(read.ColumnBlob(2))) {
      return absl::DataLossError(absl::StrCat(
          "history entry at revision ", change.revision, " is unreadable"));
    }
    std::string previous = read.ColumnBlob(3);
    if (change.kind != Change::Kind::kCreated) {
      change.previous.emplace();
      if (!change.previous->ParseFromString(previous)) {
        return absl::DataLossError(absl::StrCat(
            "history entry at revision ", change.revision, " is unreadable"));
      }
    }
    change.committed_at = absl::FromUnixMicros(read.ColumnInt64(4));
    changes.push_back(std::move(change));
  }
  if (!read.status().ok()) return read.status();
  // The trim may have run while we read: what we read is only whole if
  // `from` is still available now.
  if (from < oldest_revision_.load()) {
    return CompactedError(from, oldest_revision_.load());
  }
  if (!changes.empty() && changes.front().revision != from) {
    return CompactedError(from, changes.front().revision);
  }
  return changes;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TaskStore>> OpenSqliteTaskStore(
    const SqliteTaskStoreOptions& options) {
  absl::StatusOr<std::unique_ptr<SqliteTaskStore>> store =
      SqliteTaskStore::Open(options);
  if (!store.ok()) return store.status();
  return std::unique_ptr<TaskStore>(std::move(*store));
}

int SqliteSchemaVersion() { return kSchemaVersion; }

absl::Status RestoreSqliteDatabase(const std::string& backup,
                                   const std::string& path) {
  for (const std::string& existing : {path, path + "-wal"}) {
    if (::access(existing.c_str(), F_OK) == 0) {
      return absl::AlreadyExistsError(absl::StrCat(
          existing,
          " exists; a restore never overwrites a database (move it away "
          "first)"));
    }
  }
  if (::access(backup.c_str(), R_OK) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read the backup ", backup, ": ", strerror(errno)));
  }
  Connection::Options options;
  options.read_only = true;
  absl::StatusOr<std::unique_ptr<Connection>> source =
      Connection::Open(backup, options);
  if (!source.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        backup, " is not a database: ", source.status().message()));
  }
  Transaction snapshot(source->get());
  absl::Status status = snapshot.BeginRead();
  if (!status.ok()) return status;
  {
    Statement check = (*source)->Prepare("PRAGMA integrity_check");
    std::string verdict = check.Step() ? check.ColumnText(0) : "";
    if (!check.status().ok() || verdict != "ok") {
      return absl::InvalidArgumentError(absl::StrCat(
          backup, " is damaged (integrity_check: ",
          check.status().ok() ? verdict : check.status().ToString(), ")"));
    }
    Statement version =
        (*source)->Prepare("SELECT MAX(version) FROM schema_version");
    int64_t found = version.Step() ? version.ColumnInt64(0) : 0;
    if (!version.status().ok() || found < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(backup, " is not a taskd database (no schema version)"));
    }
    if (found > kSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          backup, " has schema version ", found, ", newer than this taskd's ",
          kSchemaVersion,
          ": restore it with a taskd at least as new as the one that wrote "
          "it"));
    }
  }
  const std::string temporary = path + ".restoring";
  ::unlink(temporary.c_str());  // what an interrupted restore left
  status = CopyDatabase((*source)->handle(), temporary, nullptr);
  if (!status.ok()) return status;
  status = SyncFileAndDirectory(temporary);
  if (status.ok() && ::rename(temporary.c_str(), path.c_str()) != 0) {
    status = absl::UnavailableError(absl::StrCat("rename ", temporary, " to ",
                                                 path, ": ", strerror(errno)));
  }
  if (status.ok()) status = SyncFileAndDirectory(path);
  if (!status.ok()) ::unlink(temporary.c_str());
  return status;
}

}  // namespace taskd
