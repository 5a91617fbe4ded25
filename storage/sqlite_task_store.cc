#include "storage/sqlite_task_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <random>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "base/error_details.h"
#include "storage/sqlite_query.h"
#include "storage/sqlite_statement.h"

namespace taskd {
namespace {

using sqlite::Connection;
using sqlite::ScopedStatement;
using sqlite::Statement;
using sqlite::Transaction;

// Column order shared by ReadTask() and BindTask().
constexpr char kTaskColumns[] =
    "id, uuid, type, state, result_code, priority, policy_id, resource_id, "
    "executor_id, tenant_id, enqueued_at, started_at, completed_at, "
    "updated_at, revision";

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
};
constexpr int kSchemaVersion = sizeof(kMigrations) / sizeof(kMigrations[0]);

std::string EtagOf(int64_t revision) { return absl::StrCat("r", revision); }

// A read below the history kept. The reason lets clients tell it from other
// OUT_OF_RANGE errors without parsing the message.
absl::Status CompactedError(const std::string& message) {
  return WithReason(absl::OutOfRangeError(message), "REVISION_COMPACTED");
}

Task ReadTask(const Statement& row) {
  Task task;
  task.set_id(row.ColumnText(0));
  task.set_uuid(row.ColumnText(1));
  task.set_type(row.ColumnText(2));
  task.set_state(static_cast<Task::State>(row.ColumnInt64(3)));
  task.set_result_code(static_cast<Task::ResultCode>(row.ColumnInt64(4)));
  task.set_priority(std::string(PriorityName(row.ColumnInt64(5))));
  task.set_policy_id(row.ColumnText(6));
  task.set_resource_id(row.ColumnText(7));
  task.set_executor_id(row.ColumnText(8));
  task.set_tenant_id(row.ColumnText(9));
  struct {
    int column;
    google::protobuf::Timestamp* (Task::*mutable_field)();
  } times[] = {{10, &Task::mutable_enqueued_at},
               {11, &Task::mutable_started_at},
               {12, &Task::mutable_completed_at},
               {13, &Task::mutable_updated_at}};
  for (const auto& time : times) {
    int64_t micros = row.ColumnInt64(time.column);
    if (micros != 0) SetTimestampMicros(micros, (task.*time.mutable_field)());
  }
  task.set_revision(row.ColumnInt64(14));
  task.set_etag(EtagOf(task.revision()));
  return task;
}

// Binds `task` to ?1 .. ?15 in kTaskColumns order.
void BindTask(Statement* statement, const Task& task) {
  int i = 1;
  for (TaskField field :
       {TaskField::kId, TaskField::kUuid, TaskField::kType, TaskField::kState,
        TaskField::kResultCode, TaskField::kPriority, TaskField::kPolicyId,
        TaskField::kResourceId, TaskField::kExecutorId, TaskField::kTenantId,
        TaskField::kEnqueuedAt, TaskField::kStartedAt, TaskField::kCompletedAt,
        TaskField::kUpdatedAt, TaskField::kRevision}) {
    FieldValue value = FieldValueOf(task, field);
    if (auto* number = std::get_if<int64_t>(&value)) {
      statement->BindInt64(i++, *number);
    } else {
      statement->BindText(i++, std::get<std::string>(value));
    }
  }
}

void BindValues(Statement* statement, const std::vector<FieldValue>& values) {
  for (size_t i = 0; i < values.size(); ++i) {
    int index = static_cast<int>(i) + 1;
    if (auto* number = std::get_if<int64_t>(&values[i])) {
      statement->BindInt64(index, *number);
    } else {
      statement->BindText(index, std::get<std::string>(values[i]));
    }
  }
}

// The tasks columns an UPDATE may set, with the field each one holds, in
// kTaskColumns order (id, the key, is never set).
struct UpdatableColumn {
  TaskField field;
  const char* name;
};
constexpr UpdatableColumn kUpdatableColumns[] = {
    {TaskField::kUuid, "uuid"},
    {TaskField::kType, "type"},
    {TaskField::kState, "state"},
    {TaskField::kResultCode, "result_code"},
    {TaskField::kPriority, "priority"},
    {TaskField::kPolicyId, "policy_id"},
    {TaskField::kResourceId, "resource_id"},
    {TaskField::kExecutorId, "executor_id"},
    {TaskField::kTenantId, "tenant_id"},
    {TaskField::kEnqueuedAt, "enqueued_at"},
    {TaskField::kStartedAt, "started_at"},
    {TaskField::kCompletedAt, "completed_at"},
    {TaskField::kUpdatedAt, "updated_at"},
    {TaskField::kRevision, "revision"},
};

void BindValue(Statement* statement, int index, const FieldValue& value) {
  if (auto* number = std::get_if<int64_t>(&value)) {
    statement->BindInt64(index, *number);
  } else {
    statement->BindText(index, std::get<std::string>(value));
  }
}

// One write call, queued for the writer thread.
struct PendingWrite {
  enum class Kind { kCreate, kUpdate, kDelete };
  Kind kind = Kind::kCreate;
  Task task;        // kCreate: the task to insert
  std::string key;  // kCreate: the request id; otherwise the task's id
  TaskStore::Mutation mutation;          // kUpdate
  TaskStore::Precondition precondition;  // kDelete; may be empty
  TaskStore::WriteDone done;
  // Set by the writer: the result; whether the write made a change (took a
  // revision); whether it failed half way through its statements (a storage
  // error after its first statement); and whether it is left out of the
  // batch (it failed so, and the batch was applied again without it).
  absl::StatusOr<Task> result = absl::UnknownError("write not applied");
  bool changed = false;
  bool half_written = false;
  bool left_out = false;
};

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

class SqliteTaskStore final : public TaskStore {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteTaskStore>> Open(
      const SqliteTaskStoreOptions& options);
  ~SqliteTaskStore() override;

  absl::StatusOr<Task> Create(const Task& task,
                              absl::string_view request_id) override;
  absl::StatusOr<Task> Get(absl::string_view id) override;
  absl::StatusOr<Task> Update(absl::string_view id,
                              const Mutation& mutation) override;
  absl::StatusOr<Task> Delete(absl::string_view id,
                              const Precondition& precondition) override;
  void CreateAsync(Task task, std::string request_id, WriteDone done) override;
  void UpdateAsync(std::string id, Mutation mutation, WriteDone done) override;
  void DeleteAsync(std::string id, Precondition precondition,
                   WriteDone done) override;
  absl::StatusOr<ListResult> List(const ListQuery& query) override;
  absl::StatusOr<std::vector<Change>> ReadChanges(int64_t from,
                                                  int limit) override;
  int64_t CurrentRevision() override { return current_revision_.load(); }
  int64_t OldestRevision() override { return oldest_revision_.load(); }
  std::string InstanceSecret() override { return secret_; }
  absl::StatusOr<std::map<Task::State, int64_t>> CountByState() override;

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
      : options_(options) {}

  absl::Status Migrate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::Status LoadState() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);

  // The task whose id, or else uuid, is `id`, read on `connection`.
  static absl::StatusOr<Task> Find(Connection* connection,
                                   absl::string_view id);

  // ---- The write path (group commit) ----
  //
  // Calls queue a PendingWrite (Submit); the writer thread (WriterLoop)
  // takes every write queued, up to max_batch, applies them in one
  // transaction and commits it (ApplyBatch, CommitBatch, Apply*), publishes
  // the batch (Publish) and completes the calls.
  //
  // A write fails alone: each one first checks (reads only, so a refused
  // write has changed nothing), then runs its two statements, each atomic
  // (a constraint violation in the first fails that write alone). A write
  // whose second statement fails (the disk: an I/O error, a full disk) is
  // half applied, and a storage error may make SQLite roll the whole
  // transaction back: then the transaction is rolled back and the batch
  // applied again without that write, once; if the disk fails again the
  // whole batch fails. (A SAVEPOINT per write would undo just that write,
  // but copies every page the write touches into a statement journal:
  // measured, about a third of the store's time per move. See
  // bench/RESULTS.md.)

  // Queues `write`, or completes it at once with an error if the store is
  // closing. Waits for room in the queue unless called from the writer
  // thread (a WriteDone that starts another write).
  void Submit(std::unique_ptr<PendingWrite> write)
      ABSL_LOCKS_EXCLUDED(queue_mu_);
  // Submits `write` and waits for its result.
  absl::StatusOr<Task> SubmitAndWait(std::unique_ptr<PendingWrite> write);
  void WriterLoop();
  void ApplyBatch(std::vector<std::unique_ptr<PendingWrite>>* batch)
      ABSL_LOCKS_EXCLUDED(write_mu_);
  // Applies the batch's writes (except those left out) in one transaction
  // and commits it; the changes made go to *changes, in revision order. On
  // success, *oldest is the history's new lower bound if the history was
  // trimmed with the batch, else 0. An error: nothing was committed.
  absl::Status CommitBatch(std::vector<std::unique_ptr<PendingWrite>>* batch,
                           std::vector<Change>* changes, int64_t* oldest)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Applies one write inside the open transaction; a change gets
  // `revision`. On success appends the change (if any) to *changes.
  absl::StatusOr<Task> Apply(PendingWrite* write, int64_t revision,
                             absl::Time now, std::vector<Change>* changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::StatusOr<Task> ApplyCreate(PendingWrite* write, int64_t revision,
                                   absl::Time now, std::vector<Change>* changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::StatusOr<Task> ApplyUpdate(PendingWrite* write, int64_t revision,
                                   absl::Time now, std::vector<Change>* changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::StatusOr<Task> ApplyDelete(PendingWrite* write, int64_t revision,
                                   absl::Time now, std::vector<Change>* changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // False once SQLite has rolled the open transaction back by itself.
  bool InTransaction() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    return sqlite3_get_autocommit(writer_->handle()) == 0;
  }
  // Sets only the columns whose values differ between `current` and `next`:
  // SQLite then rewrites only the indexes over those columns.
  absl::Status UpdateRow(const Task& current, const Task& next)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Writes the history row of `task`, whose revision must already be the
  // new revision; `previous` is the task before the change (null for a
  // creation).
  absl::Status RecordChange(Change::Kind kind, const Task& task,
                            const Task* previous, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // The revision counter, written once per batch.
  absl::Status WriteRevision(int64_t revision)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // After a successful commit: publish the revision and the history's new
  // lower bound `oldest` (0: unchanged), notify.
  void Publish(const std::vector<Change>& changes, int64_t oldest,
               absl::Duration took) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Drops the history beyond the limits, inside the batch's transaction
  // (`last_revision` is the batch's last revision). Returns the new lower
  // bound, to publish once the batch has committed, or 0 if nothing was
  // dropped.
  int64_t TrimHistory(int64_t last_revision)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);

  const SqliteTaskStoreOptions options_;
  std::unique_ptr<FileLock> lock_;
  std::string secret_;

  absl::Mutex write_mu_;
  std::unique_ptr<Connection> writer_ ABSL_GUARDED_BY(write_mu_);
  int64_t commits_since_trim_ ABSL_GUARDED_BY(write_mu_) = 0;

  absl::Mutex queue_mu_;
  std::deque<std::unique_ptr<PendingWrite>> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool closing_ ABSL_GUARDED_BY(queue_mu_) = false;
  std::thread writer_thread_;
  // writer_thread_'s id, set before the first write can be submitted.
  std::thread::id writer_id_;

  std::atomic<int64_t> current_revision_{0};
  std::atomic<int64_t> oldest_revision_{1};

  std::vector<std::unique_ptr<Connection>> readers_;
  absl::Mutex pool_mu_;
  std::vector<Connection*> idle_readers_ ABSL_GUARDED_BY(pool_mu_);
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
  connection_options.vfs = options.vfs;
  connection_options.busy_timeout_ms =
      static_cast<int>(absl::ToInt64Milliseconds(options.busy_timeout));
  {
    absl::MutexLock lock(&store->write_mu_);
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
  SqliteTaskStore* self = store.get();
  store->writer_thread_ = std::thread([self] { self->WriterLoop(); });
  store->writer_id_ = store->writer_thread_.get_id();
  return store;
}

SqliteTaskStore::~SqliteTaskStore() {
  {
    absl::MutexLock lock(&queue_mu_);
    closing_ = true;
  }
  // The writer completes every write queued before it stops.
  if (writer_thread_.joinable()) writer_thread_.join();
  absl::MutexLock lock(&write_mu_);
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
  absl::StatusOr<Statement*> read =
      writer_->Prepare("SELECT MAX(version) FROM schema_version");
  if (!read.ok()) return read.status();
  int64_t version = 0;
  {
    ScopedStatement statement(*read);
    absl::StatusOr<bool> row = statement->Step();
    if (!row.ok()) return row.status();
    if (*row) version = statement->ColumnInt64(0);
  }
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database ", options_.path, " has schema version ", version,
        ", written by a newer taskd; this taskd knows versions up to ",
        kSchemaVersion, ". Refusing to open it."));
  }
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
  absl::StatusOr<Statement*> read =
      writer_->Prepare("SELECT value FROM meta WHERE key = 'revision'");
  if (!read.ok()) return read.status();
  {
    ScopedStatement statement(*read);
    absl::StatusOr<bool> row = statement->Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::DataLossError("meta table has no revision");
    current_revision_ = statement->ColumnInt64(0);
  }
  read = writer_->Prepare("SELECT MIN(revision) FROM changes");
  if (!read.ok()) return read.status();
  {
    ScopedStatement statement(*read);
    absl::StatusOr<bool> row = statement->Step();
    if (!row.ok()) return row.status();
    int64_t oldest = statement->ColumnInt64(0);
    oldest_revision_ = oldest > 0 ? oldest : current_revision_.load() + 1;
  }
  read = writer_->Prepare("SELECT value FROM meta WHERE key = 'secret'");
  if (!read.ok()) return read.status();
  {
    ScopedStatement statement(*read);
    absl::StatusOr<bool> row = statement->Step();
    if (!row.ok()) return row.status();
    if (*row) secret_ = statement->ColumnBlob(0);
  }
  if (secret_.empty()) {
    secret_ = RandomSecret();
    absl::StatusOr<Statement*> write =
        writer_->Prepare("INSERT INTO meta (key, value) VALUES ('secret', ?1)");
    if (!write.ok()) return write.status();
    ScopedStatement statement(*write);
    statement->BindBlob(1, secret_);
    return statement->Run();
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
    absl::StatusOr<Statement*> prepared = connection->Prepare(*sql);
    if (!prepared.ok()) return prepared.status();
    ScopedStatement statement(*prepared);
    statement->BindText(1, id);
    absl::StatusOr<bool> row = statement->Step();
    if (!row.ok()) return row.status();
    if (*row) return ReadTask(*statement);
  }
  return absl::NotFoundError(absl::StrCat("task \"", id, "\" not found"));
}

absl::Status SqliteTaskStore::RecordChange(Change::Kind kind, const Task& task,
                                           const Task* previous,
                                           absl::Time now) {
  absl::StatusOr<Statement*> insert = writer_->Prepare(
      "INSERT INTO changes (revision, kind, task_id, task, previous, "
      "committed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  if (!insert.ok()) return insert.status();
  ScopedStatement statement(*insert);
  statement->BindInt64(1, task.revision());
  statement->BindInt64(2, static_cast<int64_t>(kind));
  statement->BindText(3, task.id());
  statement->BindBlob(4, task.SerializeAsString());
  if (previous != nullptr) {
    statement->BindBlob(5, previous->SerializeAsString());
  }  // else NULL
  statement->BindInt64(6, absl::ToUnixMicros(now));
  return statement->Run();
}

absl::Status SqliteTaskStore::WriteRevision(int64_t revision) {
  absl::StatusOr<Statement*> bump =
      writer_->Prepare("UPDATE meta SET value = ?1 WHERE key = 'revision'");
  if (!bump.ok()) return bump.status();
  ScopedStatement statement(*bump);
  statement->BindInt64(1, revision);
  return statement->Run();
}

void SqliteTaskStore::Publish(const std::vector<Change>& changes,
                              int64_t oldest, absl::Duration took) {
  if (options_.observe_commit) options_.observe_commit(took, changes.size());
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
    absl::StatusOr<Statement*> prepared = writer_->Prepare(
        "SELECT MIN(revision) FROM changes WHERE committed_at >= ?1");
    if (!prepared.ok()) return 0;
    ScopedStatement statement(*prepared);
    statement->BindInt64(1, absl::ToUnixMicros(options_.clock->Now() -
                                               options_.history_max_age));
    absl::StatusOr<bool> row = statement->Step();
    if (!row.ok()) return 0;
    int64_t first_young = statement->ColumnInt64(0);
    if (first_young == 0) first_young = last_revision + 1;
    keep_from = std::max(keep_from, first_young);
  }
  if (keep_from <= oldest_revision_.load()) return 0;
  absl::StatusOr<Statement*> prepared =
      writer_->Prepare("DELETE FROM changes WHERE revision < ?1");
  if (!prepared.ok()) return 0;
  ScopedStatement statement(*prepared);
  statement->BindInt64(1, keep_from);
  // One statement is atomic: a failed trim changed nothing (unless SQLite
  // rolled the whole transaction back, which CommitBatch notices) and is
  // retried at the next interval.
  if (!statement->Run().ok()) return 0;
  return keep_from;
}

absl::Status SqliteTaskStore::UpdateRow(const Task& current, const Task& next) {
  std::string sql = "UPDATE tasks SET ";
  std::vector<FieldValue> values;
  for (const UpdatableColumn& column : kUpdatableColumns) {
    FieldValue value = FieldValueOf(next, column.field);
    if (value == FieldValueOf(current, column.field)) continue;
    if (!values.empty()) sql += ", ";
    absl::StrAppend(&sql, column.name, " = ?", values.size() + 2);
    values.push_back(std::move(value));
  }
  sql += " WHERE id = ?1";
  // The revision always changes, so there is at least one column. The
  // statement texts are a few shapes (one per kind of move), each prepared
  // once and cached by the connection.
  absl::StatusOr<Statement*> prepared = writer_->Prepare(sql);
  if (!prepared.ok()) return prepared.status();
  ScopedStatement statement(*prepared);
  statement->BindText(1, current.id());
  for (size_t i = 0; i < values.size(); ++i) {
    BindValue(&*statement, static_cast<int>(i) + 2, values[i]);
  }
  return statement->Run();
}

void SqliteTaskStore::Submit(std::unique_ptr<PendingWrite> write) {
  bool on_writer = std::this_thread::get_id() == writer_id_;
  {
    absl::MutexLock lock(&queue_mu_);
    if (!on_writer) {
      auto room = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return closing_ ||
               queue_.size() < static_cast<size_t>(options_.max_queue);
      };
      queue_mu_.Await(absl::Condition(&room));
    }
    if (!closing_) {
      queue_.push_back(std::move(write));
      return;
    }
  }
  write->done(absl::UnavailableError("the store is closed"));
}

absl::StatusOr<Task> SqliteTaskStore::SubmitAndWait(
    std::unique_ptr<PendingWrite> write) {
  if (std::this_thread::get_id() == writer_id_) {
    // A mutation, precondition, on_commit or WriteDone calling a blocking
    // write would wait for itself.
    return absl::FailedPreconditionError(
        "a blocking store write was called from the store's writer thread");
  }
  absl::Notification committed;
  absl::StatusOr<Task> result;
  write->done = [&](absl::StatusOr<Task> r) {
    result = std::move(r);
    committed.Notify();
  };
  Submit(std::move(write));
  committed.WaitForNotification();
  return result;
}

void SqliteTaskStore::WriterLoop() {
  std::vector<std::unique_ptr<PendingWrite>> batch;
  size_t max_batch = static_cast<size_t>(std::max(1, options_.max_batch));
  while (true) {
    {
      absl::MutexLock lock(&queue_mu_);
      auto ready = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return closing_ || !queue_.empty();
      };
      queue_mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // closing, and every write is done
      while (!queue_.empty() && batch.size() < max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    ApplyBatch(&batch);
    batch.clear();
  }
}

void SqliteTaskStore::ApplyBatch(
    std::vector<std::unique_ptr<PendingWrite>>* batch) {
  {
    absl::MutexLock lock(&write_mu_);
    absl::Time start = absl::Now();
    std::vector<Change> changes;
    int64_t oldest = 0;
    absl::Status status = CommitBatch(batch, &changes, &oldest);
    if (!status.ok()) {
      // Nothing was committed and nothing is published: the revision stays
      // where it was. Every write fails with the batch's error, except those
      // that were refused by their checks or left out, which keep their own.
      for (std::unique_ptr<PendingWrite>& write : *batch) {
        if (write->result.ok()) write->result = status;
      }
    } else if (!changes.empty()) {
      Publish(changes, oldest, absl::Now() - start);
    }
  }
  for (std::unique_ptr<PendingWrite>& write : *batch) {
    write->done(std::move(write->result));
  }
}

absl::Status SqliteTaskStore::CommitBatch(
    std::vector<std::unique_ptr<PendingWrite>>* batch,
    std::vector<Change>* changes, int64_t* oldest) {
  for (int attempt = 0;; ++attempt) {
    changes->clear();
    *oldest = 0;
    Transaction transaction(writer_.get());  // rolls back unless committed
    if (absl::Status status = transaction.Begin(); !status.ok()) {
      for (auto& write : *batch) {
        if (!write->left_out) write->result = status;
      }
      return status;
    }
    int64_t revision = current_revision_.load();
    absl::Time now = options_.clock->Now();
    PendingWrite* broken = nullptr;
    for (std::unique_ptr<PendingWrite>& write : *batch) {
      if (write->left_out) continue;
      write->changed = false;
      write->half_written = false;
      write->result = Apply(write.get(), revision + 1, now, changes);
      if (write->changed) ++revision;
      if (!write->result.ok() && (write->half_written || !InTransaction())) {
        broken = write.get();
        break;
      }
    }
    if (broken != nullptr) {
      // It is half applied (or SQLite rolled the whole transaction back on a
      // storage error): apply the others again, without it.
      absl::Status status = broken->result.status();
      broken->left_out = true;
      if (attempt > 0) {
        // The disk failed twice in one batch: give up on the batch.
        for (auto& write : *batch) {
          if (!write->left_out) write->result = status;
        }
        return status;
      }
      continue;
    }
    absl::Status status;
    bool trim = !changes->empty() &&
                commits_since_trim_ + static_cast<int64_t>(changes->size()) >=
                    options_.history_trim_interval;
    if (trim) {
      // The history trim rides along with the batch: no sync of its own,
      // and done before the batch's calls return.
      *oldest = TrimHistory(revision);
      if (!InTransaction()) {
        status = absl::UnavailableError(
            "the write transaction was rolled back while trimming the "
            "history");
      }
    }
    if (status.ok() && !changes->empty()) status = WriteRevision(revision);
    if (status.ok()) status = transaction.Commit();
    if (status.ok()) {
      commits_since_trim_ =
          trim ? 0
               : commits_since_trim_ + static_cast<int64_t>(changes->size());
    }
    return status;
  }
}

absl::StatusOr<Task> SqliteTaskStore::Apply(PendingWrite* write,
                                            int64_t revision, absl::Time now,
                                            std::vector<Change>* changes) {
  switch (write->kind) {
    case PendingWrite::Kind::kCreate:
      return ApplyCreate(write, revision, now, changes);
    case PendingWrite::Kind::kUpdate:
      return ApplyUpdate(write, revision, now, changes);
    case PendingWrite::Kind::kDelete:
      return ApplyDelete(write, revision, now, changes);
  }
  return absl::InternalError("unknown write kind");
}

// Each Apply* checks first (reads only: a refused write changed nothing),
// then writes its two statements: the task row, then the history row. One
// statement is atomic (SQLite undoes a failed one), so a write is half done
// only if the second fails: Apply* leaves half_written set then.

absl::StatusOr<Task> SqliteTaskStore::ApplyCreate(
    PendingWrite* write, int64_t revision, absl::Time now,
    std::vector<Change>* changes) {
  const Task& task = write->task;
  const std::string& request_id = write->key;
  if (!request_id.empty()) {
    static const std::string by_request =
        absl::StrCat("SELECT ", kTaskColumns,
                     " FROM tasks WHERE tenant_id = ?1 AND request_id = ?2");
    absl::StatusOr<Statement*> prepared = writer_->Prepare(by_request);
    if (!prepared.ok()) return prepared.status();
    ScopedStatement statement(*prepared);
    statement->BindText(1, task.tenant_id());
    statement->BindText(2, request_id);
    absl::StatusOr<bool> row = statement->Step();
    if (!row.ok()) return row.status();
    if (*row) return ReadTask(*statement);
  }
  {
    // Ids and uuids share one namespace (Get takes either): neither may
    // match an existing id or uuid. Four index seeks; the equivalent
    // "id IN (?1, ?2) OR uuid IN (?1, ?2)" builds temporary tables for its
    // IN lists and cost more than the insert itself.
    absl::StatusOr<Statement*> prepared = writer_->Prepare(
        "SELECT 1 FROM tasks WHERE id = ?1 UNION ALL "
        "SELECT 1 FROM tasks WHERE uuid = ?1 UNION ALL "
        "SELECT 1 FROM tasks WHERE id = ?2 UNION ALL "
        "SELECT 1 FROM tasks WHERE uuid = ?2 LIMIT 1");
    if (!prepared.ok()) return prepared.status();
    ScopedStatement statement(*prepared);
    statement->BindText(1, task.id());
    statement->BindText(2, task.uuid());
    absl::StatusOr<bool> row = statement->Step();
    if (!row.ok()) return row.status();
    if (*row) {
      return absl::AlreadyExistsError(
          absl::StrCat("task \"", task.id(), "\" already exists"));
    }
  }

  Task stored = task;
  stored.set_revision(revision);
  stored.set_etag(EtagOf(revision));
  {
    static const std::string insert =
        absl::StrCat("INSERT INTO tasks (", kTaskColumns,
                     ", request_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                     "?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)");
    absl::StatusOr<Statement*> prepared = writer_->Prepare(insert);
    if (!prepared.ok()) return prepared.status();
    ScopedStatement statement(*prepared);
    BindTask(&*statement, stored);
    statement->BindText(16, request_id);
    if (absl::Status status = statement->Run(); !status.ok()) return status;
  }
  write->half_written = true;
  if (absl::Status status =
          RecordChange(Change::Kind::kCreated, stored, nullptr, now);
      !status.ok()) {
    return status;
  }
  write->half_written = false;
  write->changed = true;
  changes->push_back(
      Change{revision, Change::Kind::kCreated, stored, std::nullopt, now});
  return stored;
}

absl::StatusOr<Task> SqliteTaskStore::ApplyUpdate(
    PendingWrite* write, int64_t revision, absl::Time now,
    std::vector<Change>* changes) {
  absl::StatusOr<Task> current = Find(writer_.get(), write->key);
  if (!current.ok()) return current.status();
  absl::StatusOr<Task> next = write->mutation(*current);
  if (!next.ok()) return next.status();
  if (next->id() != current->id() || next->uuid() != current->uuid()) {
    return absl::InternalError("a mutation changed a task's id or uuid");
  }
  next->set_revision(revision);
  next->set_etag(EtagOf(revision));
  if (absl::Status status = UpdateRow(*current, *next); !status.ok()) {
    return status;
  }
  write->half_written = true;
  if (absl::Status status =
          RecordChange(Change::Kind::kUpdated, *next, &*current, now);
      !status.ok()) {
    return status;
  }
  write->half_written = false;
  write->changed = true;
  changes->push_back(
      Change{revision, Change::Kind::kUpdated, *next, *current, now});
  return next;
}

absl::StatusOr<Task> SqliteTaskStore::ApplyDelete(
    PendingWrite* write, int64_t revision, absl::Time now,
    std::vector<Change>* changes) {
  absl::StatusOr<Task> current = Find(writer_.get(), write->key);
  if (!current.ok()) return current.status();
  if (write->precondition) {
    if (absl::Status status = write->precondition(*current); !status.ok()) {
      return status;
    }
  }
  Task deleted = *current;
  deleted.set_revision(revision);
  deleted.set_etag(EtagOf(revision));
  {
    absl::StatusOr<Statement*> prepared =
        writer_->Prepare("DELETE FROM tasks WHERE id = ?1");
    if (!prepared.ok()) return prepared.status();
    ScopedStatement statement(*prepared);
    statement->BindText(1, current->id());
    if (absl::Status status = statement->Run(); !status.ok()) return status;
  }
  write->half_written = true;
  if (absl::Status status =
          RecordChange(Change::Kind::kDeleted, deleted, &*current, now);
      !status.ok()) {
    return status;
  }
  write->half_written = false;
  write->changed = true;
  changes->push_back(
      Change{revision, Change::Kind::kDeleted, deleted, *current, now});
  return deleted;
}

absl::StatusOr<Task> SqliteTaskStore::Create(const Task& task,
                                             absl::string_view request_id) {
  auto write = std::make_unique<PendingWrite>();
  write->kind = PendingWrite::Kind::kCreate;
  write->task = task;
  write->key = std::string(request_id);
  return SubmitAndWait(std::move(write));
}

absl::StatusOr<Task> SqliteTaskStore::Update(absl::string_view id,
                                             const Mutation& mutation) {
  auto write = std::make_unique<PendingWrite>();
  write->kind = PendingWrite::Kind::kUpdate;
  write->key = std::string(id);
  write->mutation = mutation;
  return SubmitAndWait(std::move(write));
}

absl::StatusOr<Task> SqliteTaskStore::Delete(absl::string_view id,
                                             const Precondition& precondition) {
  auto write = std::make_unique<PendingWrite>();
  write->kind = PendingWrite::Kind::kDelete;
  write->key = std::string(id);
  write->precondition = precondition;
  return SubmitAndWait(std::move(write));
}

void SqliteTaskStore::CreateAsync(Task task, std::string request_id,
                                  WriteDone done) {
  auto write = std::make_unique<PendingWrite>();
  write->kind = PendingWrite::Kind::kCreate;
  write->task = std::move(task);
  write->key = std::move(request_id);
  write->done = std::move(done);
  Submit(std::move(write));
}

void SqliteTaskStore::UpdateAsync(std::string id, Mutation mutation,
                                  WriteDone done) {
  auto write = std::make_unique<PendingWrite>();
  write->kind = PendingWrite::Kind::kUpdate;
  write->key = std::move(id);
  write->mutation = std::move(mutation);
  write->done = std::move(done);
  Submit(std::move(write));
}

void SqliteTaskStore::DeleteAsync(std::string id, Precondition precondition,
                                  WriteDone done) {
  auto write = std::make_unique<PendingWrite>();
  write->kind = PendingWrite::Kind::kDelete;
  write->key = std::move(id);
  write->precondition = std::move(precondition);
  write->done = std::move(done);
  Submit(std::move(write));
}

absl::StatusOr<Task> SqliteTaskStore::Get(absl::string_view id) {
  Reader reader(this);
  return Find(reader.get(), id);
}

absl::StatusOr<ListResult> SqliteTaskStore::List(const ListQuery& query) {
  if (query.limit < 1) {
    return absl::InvalidArgumentError("list limit must be at least 1");
  }
  if (!query.after.empty() && query.after.size() != query.order.size()) {
    return absl::InvalidArgumentError("cursor does not match the order");
  }
  // One row more than asked tells whether another page follows.
  sqlite::SqlQuery sql =
      sqlite::BuildListQuery(query, kTaskColumns, query.limit + 1);
  Reader reader(this);
  // One read transaction: the revision and the rows come from one snapshot.
  Transaction transaction(reader.get());
  if (absl::Status status = transaction.BeginRead(); !status.ok()) {
    return status;
  }
  ListResult result;
  {
    absl::StatusOr<Statement*> prepared =
        reader->Prepare("SELECT value FROM meta WHERE key = 'revision'");
    if (!prepared.ok()) return prepared.status();
    ScopedStatement statement(*prepared);
    absl::StatusOr<bool> row = statement->Step();
    if (!row.ok()) return row.status();
    result.revision = *row ? statement->ColumnInt64(0) : 0;
  }
  absl::StatusOr<Statement*> prepared = reader->Prepare(sql.sql);
  if (!prepared.ok()) return prepared.status();
  ScopedStatement statement(*prepared);
  BindValues(&*statement, sql.params);
  while (true) {
    absl::StatusOr<bool> row = statement->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    if (static_cast<int>(result.tasks.size()) == query.limit) {
      result.more = true;
      break;
    }
    result.tasks.push_back(ReadTask(*statement));
  }
  statement->Reset();
  if (absl::Status status = transaction.Commit(); !status.ok()) return status;
  return result;
}

absl::StatusOr<std::map<Task::State, int64_t>> SqliteTaskStore::CountByState() {
  Reader reader(this);
  absl::StatusOr<Statement*> prepared =
      reader->Prepare("SELECT state, COUNT(*) FROM tasks GROUP BY state");
  if (!prepared.ok()) return prepared.status();
  ScopedStatement statement(*prepared);
  std::map<Task::State, int64_t> counts;
  while (true) {
    absl::StatusOr<bool> row = statement->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    counts[static_cast<Task::State>(statement->ColumnInt64(0))] =
        statement->ColumnInt64(1);
  }
  return counts;
}

absl::StatusOr<std::vector<Change>> SqliteTaskStore::ReadChanges(int64_t from,
                                                                 int limit) {
  if (from < 1) from = 1;
  if (from < oldest_revision_.load()) {
    return CompactedError(
        absl::StrCat("revision ", from,
                     " has been compacted; the oldest revision available is ",
                     oldest_revision_.load()));
  }
  Reader reader(this);
  absl::StatusOr<Statement*> prepared = reader->Prepare(
      "SELECT revision, kind, task, previous, committed_at FROM changes "
      "WHERE revision >= ?1 ORDER BY revision LIMIT ?2");
  if (!prepared.ok()) return prepared.status();
  ScopedStatement statement(*prepared);
  statement->BindInt64(1, from);
  statement->BindInt64(2, limit);
  std::vector<Change> changes;
  while (true) {
    absl::StatusOr<bool> row = statement->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    Change change;
    change.revision = statement->ColumnInt64(0);
    change.kind = static_cast<Change::Kind>(statement->ColumnInt64(1));
    if (!change.task.ParseFromString(statement->ColumnBlob(2))) {
      return absl::DataLossError(absl::StrCat(
          "history entry at revision ", change.revision, " is unreadable"));
    }
    std::string previous = statement->ColumnBlob(3);
    if (change.kind != Change::Kind::kCreated) {
      change.previous.emplace();
      if (!change.previous->ParseFromString(previous)) {
        return absl::DataLossError(absl::StrCat(
            "history entry at revision ", change.revision, " is unreadable"));
      }
    }
    change.committed_at = absl::FromUnixMicros(statement->ColumnInt64(4));
    changes.push_back(std::move(change));
  }
  // The trim may have run while we read: what we read is only whole if
  // `from` is still available now.
  if (from < oldest_revision_.load()) {
    return CompactedError(
        absl::StrCat("revision ", from,
                     " has been compacted; the oldest revision available is ",
                     oldest_revision_.load()));
  }
  if (!changes.empty() && changes.front().revision != from) {
    return CompactedError(
        absl::StrCat("revision ", from,
                     " has been compacted; the oldest revision available is ",
                     changes.front().revision));
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

}  // namespace taskd
