#include "storage/pg_task_store.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <variant>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "base/error_details.h"
#include "base/log.h"
#include "base/thread_name.h"
#include "storage/group_commit.h"
#include "storage/pg_connection.h"
#include "storage/sqlite_query.h"
#include "storage/task_row.h"

namespace taskd {
namespace {

using pg::Param;
using sqlite::Dialect;
using sqlite::kTaskColumns;

// Forward-only migrations, as in the SQLite engine: kMigrations[i] takes
// the schema from version i to i + 1, in one transaction with the version
// bump. Never edit one that has shipped; append a new one.
//
// The tables and indexes are those of the SQLite schema at its version 6,
// with PostgreSQL's types: every integer a bigint, blobs bytea, and text in
// the "C" collation, so that ids and other strings sort by their bytes, as
// in SQLite (page order and cursors are the same on both engines).
constexpr const char* kMigrations[] = {
    R"sql(
      CREATE TABLE tasks (
        id               text COLLATE "C" PRIMARY KEY,
        uuid             text COLLATE "C" NOT NULL UNIQUE,
        type             text COLLATE "C" NOT NULL,
        state            bigint NOT NULL,
        result_code      bigint NOT NULL DEFAULT 0,
        priority         bigint NOT NULL,
        policy_id        text COLLATE "C" NOT NULL DEFAULT '',
        resource_id      text COLLATE "C" NOT NULL DEFAULT '',
        executor_id      text COLLATE "C" NOT NULL DEFAULT '',
        tenant_id        text COLLATE "C" NOT NULL DEFAULT '',
        enqueued_at      bigint NOT NULL,
        started_at       bigint NOT NULL DEFAULT 0,
        completed_at     bigint NOT NULL DEFAULT 0,
        updated_at       bigint NOT NULL,
        revision         bigint NOT NULL,
        request_id       text COLLATE "C" NOT NULL DEFAULT '',
        assign_count     bigint NOT NULL DEFAULT 0,
        cancel_requested bigint NOT NULL DEFAULT 0,
        assigned_at      bigint NOT NULL DEFAULT 0,
        deadline         bigint NOT NULL DEFAULT 0,
        detail           bytea NOT NULL DEFAULT ''
      );
      CREATE UNIQUE INDEX tasks_by_request ON tasks (tenant_id, request_id)
        WHERE request_id <> '';
      CREATE INDEX tasks_by_enqueued ON tasks (enqueued_at, id);
      CREATE INDEX tasks_by_tenant ON tasks (tenant_id, enqueued_at, id);
      CREATE INDEX tasks_by_tenant_state
        ON tasks (tenant_id, state, enqueued_at, id);
      CREATE INDEX tasks_by_state ON tasks (state, enqueued_at, id);
      CREATE INDEX tasks_by_type ON tasks (type, enqueued_at, id);
      CREATE INDEX tasks_by_updated ON tasks (updated_at, id);
      CREATE INDEX tasks_by_state_priority
        ON tasks (state, priority DESC, enqueued_at, id);
      CREATE INDEX tasks_by_deadline ON tasks (deadline) WHERE deadline <> 0;
      CREATE INDEX tasks_by_queue
        ON tasks (state, priority, tenant_id, enqueued_at, id);
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

      CREATE TABLE changes (
        revision     bigint PRIMARY KEY,
        kind         bigint NOT NULL,
        task_id      text COLLATE "C" NOT NULL,
        task         bytea NOT NULL,
        previous     bytea,
        committed_at bigint NOT NULL
      );
      CREATE INDEX changes_by_time ON changes (committed_at);

      CREATE TABLE task_counts (
        tenant_id   text COLLATE "C" NOT NULL,
        state       bigint NOT NULL,
        result_code bigint NOT NULL,
        n           bigint NOT NULL,
        PRIMARY KEY (tenant_id, state, result_code)
      );

      -- One row: the last revision (every write transaction locks it: see
      -- pg_task_store.h) and the page-token secret, 32 bytes from
      -- PostgreSQL's strong random source.
      CREATE TABLE meta (
        one      boolean PRIMARY KEY DEFAULT true CHECK (one),
        revision bigint NOT NULL,
        secret   bytea NOT NULL
      );
      INSERT INTO meta (revision, secret) VALUES (0, decode(replace(
        gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
    )sql",
};
constexpr int kSchemaVersion = sizeof(kMigrations) / sizeof(kMigrations[0]);

// The advisory locks' keys: arbitrary constants, but fixed for good, since
// replicas of different versions (during a rolling upgrade) must take the
// same locks. The one migrations hold:
constexpr char kMigrationLock[] = "469762302820";
// The session advisory lock the replica that runs the sweepers holds;
// released by PostgreSQL when its connection closes.
constexpr char kSweeperLock[] = "495874614552";
// The NOTIFY channel every write transaction signals at its commit.
constexpr char kChannel[] = "taskd_changes";
// Changes the follower reads per statement.
constexpr int kFollowBatch = 1000;

Param ToParam(const FieldValue& value) {
  if (const auto* text = std::get_if<std::string>(&value)) return *text;
  return absl::StrCat(std::get<int64_t>(value));
}

std::vector<Param> ToParams(const std::vector<FieldValue>& values) {
  std::vector<Param> params;
  params.reserve(values.size());
  for (const FieldValue& value : values) params.push_back(ToParam(value));
  return params;
}

// One row of a pg::Result, read the way ReadTask reads a row.
struct PgRow {
  const pg::Result& result;
  int row;

  std::string ColumnText(int column) const { return result.Text(row, column); }
  int64_t ColumnInt64(int column) const {
    absl::StatusOr<int64_t> value = result.Int64(row, column);
    return value.ok() ? *value : 0;
  }
  std::string ColumnBlob(int column) const {
    absl::StatusOr<std::string> value = result.Bytes(row, column);
    return value.ok() ? *std::move(value) : std::string();
  }
};

std::vector<Task> ReadTasks(const pg::Result& result) {
  std::vector<Task> tasks;
  tasks.reserve(static_cast<size_t>(result.rows()));
  for (int row = 0; row < result.rows(); ++row) {
    tasks.push_back(ReadTask(PgRow{result, row}));
  }
  return tasks;
}

class PgTaskStore final : public TaskStore, private WriteTransaction {
 public:
  static absl::StatusOr<std::unique_ptr<PgTaskStore>> Open(
      const PgTaskStoreOptions& options);
  ~PgTaskStore() override;

  void Write(TaskWrite write, WriteDone done) override {
    writer_thread_->Submit(std::move(write), std::move(done));
  }
  absl::StatusOr<Task> Get(absl::string_view id) override;
  absl::StatusOr<ListResult> List(const ListQuery& query) override;
  absl::StatusOr<std::vector<Task>> ListByDeadline(int limit) override;
  absl::StatusOr<std::vector<Change>> ReadChanges(int64_t from,
                                                  int limit) override;
  int64_t CurrentRevision() override { return delivered_.load(); }
  int64_t OldestRevision() override { return oldest_.load(); }
  std::string InstanceSecret() override { return secret_; }
  absl::StatusOr<CountResult> Count(const CountQuery& query) override;
  bool Shared() const override { return true; }
  int64_t SweeperTerm() override { return term_.load(); }

 protected:
  bool WaitingWouldDeadlock() const override {
    return writer_thread_ != nullptr && writer_thread_->OnWriterThread();
  }

 private:
  // A read connection borrowed from the pool for one call; connected (or
  // reconnected, if the last one failed) on the way out of the pool. An
  // open transaction is rolled back when it goes back.
  class Pooled {
   public:
    explicit Pooled(PgTaskStore* store);
    ~Pooled();
    const absl::Status& status() const { return status_; }
    pg::Connection* operator->() const { return connection_.get(); }
    pg::Connection* get() const { return connection_.get(); }

   private:
    PgTaskStore* const store_;
    std::unique_ptr<pg::Connection> connection_;
    absl::Status status_;
  };

  explicit PgTaskStore(const PgTaskStoreOptions& options) : options_(options) {}

  absl::StatusOr<std::unique_ptr<pg::Connection>> Connect() const;
  absl::Status Migrate();
  absl::Status LoadState();

  // Statements any connection may run.
  static absl::StatusOr<Task> Find(pg::Connection* connection,
                                   absl::string_view id);
  static absl::Status ReadPage(pg::Connection* connection,
                               const ListQuery& query, ListResult* result);
  // Up to `limit` changes with from <= revision < below, in order.
  static absl::StatusOr<std::vector<Change>> ReadHistory(
      pg::Connection* connection, int64_t from, int64_t below, int limit);
  // Runs `read` on a pooled connection; if that connection turns out to
  // have failed (PostgreSQL restarted since it was last used), once more on
  // a new one: a read changes nothing, so it may be repeated.
  template <typename T>
  absl::StatusOr<T> Read(
      const std::function<absl::StatusOr<T>(pg::Connection*)>& read);
  // A List or Count: `read` inside one REPEATABLE READ snapshot, whose
  // revision it gets.
  absl::Status InSnapshot(
      const std::function<absl::Status(pg::Connection*, int64_t revision)>&
          read);

  // ---- WriteTransaction: a batch's statements on writer_ ----
  absl::StatusOr<int64_t> Begin() override;
  bool InTransaction() override {
    return writer_ != nullptr && writer_->in_transaction();
  }
  absl::StatusOr<Task> Find(absl::string_view id) override {
    return Find(writer_.get(), id);
  }
  absl::StatusOr<std::optional<Task>> FindByRequest(
      const std::string& tenant_id, const std::string& request_id) override;
  absl::StatusOr<bool> Taken(const Task& task) override;
  absl::StatusOr<ListResult> ReadPage(const ListQuery& query) override;
  absl::Status Insert(const Task& task, const std::string& request_id) override;
  absl::Status Replace(const Task& current, const Task& next) override;
  absl::Status Remove(const std::string& id) override;
  absl::Status Record(const Change& change) override;
  absl::Status AddToCounter(const Task& task, int64_t delta) override;
  absl::StatusOr<int64_t> Finish(int64_t last_revision, bool changed,
                                 bool trim) override;
  absl::Status Commit() override;
  void Rollback() override;
  // Runs a statement of the write transaction whose result is not needed.
  absl::Status Run(absl::string_view sql, std::vector<Param> params);
  int64_t TrimHistory(int64_t last_revision);

  // ---- Handing changes to on_commit ----
  // The writer's committed batch: the revisions before it that this
  // replica has not handed over yet (read on the writer's connection), then
  // the batch.
  void Publish(const CommittedBatch& batch);
  // Hands over every change after delivered_ and below `below`, read on
  // `connection`.
  absl::Status CatchUp(pg::Connection* connection, int64_t below)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(follow_mu_);
  void Deliver(const std::vector<Change>& changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(follow_mu_);
  // The follower's connection: LISTENing (unless options_.pg.listen is off).
  absl::StatusOr<std::unique_ptr<pg::Connection>> ConnectFollower() const;
  // On the follower's connection: takes the sweepers' lock if it is free
  // (held until that connection closes) and notes whether it is held.
  void TryToLead(pg::Connection* follower);
  // The follower thread: CatchUp on every notification and every
  // poll_interval, TryToLead while another replica leads; reconnects when
  // its connection fails (and leads no more until it has the lock again).
  void FollowLoop(std::unique_ptr<pg::Connection> follower);

  const PgTaskStoreOptions options_;
  std::string secret_;

  // Used by Open, then only by the writer thread.
  std::unique_ptr<pg::Connection> writer_;

  absl::Mutex pool_mu_;
  // Idle read connections; null: not connected (yet, or since a failure).
  std::vector<std::unique_ptr<pg::Connection>> idle_ ABSL_GUARDED_BY(pool_mu_);

  absl::Mutex follow_mu_;
  // The last revision handed to on_commit.
  std::atomic<int64_t> delivered_{0};
  std::atomic<int64_t> oldest_{1};

  // While the follower's connection holds kSweeperLock, the term of this
  // lead (SweeperTerm); 0 otherwise. terms_: the leads taken so far (by
  // Open, then by the follower thread only).
  std::atomic<int64_t> term_{0};
  int64_t terms_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread follower_;
  // Last: started once the store is open, stopped first.
  std::unique_ptr<GroupCommitWriter> writer_thread_;
};

// ---- Opening -----------------------------------------------------------

absl::StatusOr<std::unique_ptr<pg::Connection>> PgTaskStore::Connect() const {
  pg::Connection::Options options;
  options.uri = options_.uri;
  options.connect_timeout = options_.pg.connect_timeout;
  options.dead_peer_timeout = options_.pg.dead_peer_timeout;
  return pg::Connection::Open(options);
}

absl::StatusOr<std::unique_ptr<PgTaskStore>> PgTaskStore::Open(
    const PgTaskStoreOptions& options) {
  if (options.clock == nullptr) {
    return absl::InvalidArgumentError("clock is null");
  }
  std::unique_ptr<PgTaskStore> store(new PgTaskStore(options));
  absl::StatusOr<std::unique_ptr<pg::Connection>> writer = store->Connect();
  if (!writer.ok()) return writer.status();
  store->writer_ = std::move(*writer);
  if (absl::Status status = store->Migrate(); !status.ok()) return status;
  if (absl::Status status = store->LoadState(); !status.ok()) return status;
  {
    absl::MutexLock lock(&store->pool_mu_);
    store->idle_.resize(
        static_cast<size_t>(std::max(1, options.read_connections)));
  }
  // Connected (and the sweepers' lock tried) before Open returns, so that
  // a store that can lead does so from the start.
  absl::StatusOr<std::unique_ptr<pg::Connection>> follower =
      store->ConnectFollower();
  if (!follower.ok()) return follower.status();
  store->TryToLead(follower->get());
  PgTaskStore* self = store.get();
  store->follower_ =
      std::thread(&PgTaskStore::FollowLoop, self, std::move(*follower));
  GroupCommitOptions writer_options;
  writer_options.max_batch = options.max_batch;
  writer_options.max_queue = options.max_queue;
  writer_options.history_trim_interval = options.history_trim_interval;
  writer_options.clock = options.clock;
  store->writer_thread_ = std::make_unique<GroupCommitWriter>(
      writer_options, static_cast<WriteTransaction*>(self),
      [self](const CommittedBatch& batch) { self->Publish(batch); });
  return store;
}

PgTaskStore::~PgTaskStore() {
  // The writer completes every write queued before it stops; then the
  // follower.
  writer_thread_.reset();
  stopping_ = true;
  if (follower_.joinable()) follower_.join();
}

absl::Status PgTaskStore::Migrate() {
  // The advisory lock makes replicas that start together migrate one after
  // the other: the second finds the schema current.
  absl::Status status = writer_->ExecScript("BEGIN");
  if (status.ok()) {
    status = writer_->Exec("SELECT pg_advisory_xact_lock($1)", {kMigrationLock})
                 .status();
  }
  if (status.ok()) {
    status = writer_->ExecScript(
        "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)");
  }
  int64_t version = 0;
  if (status.ok()) {
    absl::StatusOr<pg::Result> read =
        writer_->Exec("SELECT COALESCE(MAX(version), 0) FROM schema_version");
    absl::StatusOr<int64_t> found =
        read.ok() ? read->Int64(0, 0) : read.status();
    status = found.status();
    if (found.ok()) version = *found;
  }
  if (status.ok() && version > kSchemaVersion) {
    status = absl::FailedPreconditionError(absl::StrCat(
        "the PostgreSQL database has taskd schema version ", version,
        ", written by a newer taskd; this taskd knows versions up to ",
        kSchemaVersion, ". Refusing to use it."));
  }
  for (int64_t v = version; status.ok() && v < kSchemaVersion; ++v) {
    status = writer_->ExecScript(kMigrations[v]);
    if (status.ok()) status = writer_->ExecScript("DELETE FROM schema_version");
    if (status.ok()) {
      status = writer_
                   ->Exec("INSERT INTO schema_version (version) VALUES ($1)",
                          {absl::StrCat(v + 1)})
                   .status();
    }
    if (!status.ok()) {
      status = absl::Status(
          status.code(), absl::StrCat("migrate to schema version ", v + 1, ": ",
                                      status.message()));
    }
  }
  if (status.ok()) return writer_->ExecScript("COMMIT");
  (void)writer_->ExecScript("ROLLBACK");
  return status;
}

absl::Status PgTaskStore::LoadState() {
  absl::StatusOr<pg::Result> meta =
      writer_->Exec("SELECT revision, secret FROM meta");
  if (!meta.ok()) return meta.status();
  if (meta->rows() != 1) return absl::DataLossError("meta has no row");
  absl::StatusOr<int64_t> revision = meta->Int64(0, 0);
  if (!revision.ok()) return revision.status();
  absl::StatusOr<std::string> secret = meta->Bytes(0, 1);
  if (!secret.ok()) return secret.status();
  secret_ = *std::move(secret);
  delivered_ = *revision;
  absl::StatusOr<pg::Result> oldest =
      writer_->Exec("SELECT MIN(revision) FROM changes");
  if (!oldest.ok()) return oldest.status();
  oldest_ = oldest->IsNull(0, 0) ? *revision + 1 : *oldest->Int64(0, 0);
  return absl::OkStatus();
}

// ---- Reads -------------------------------------------------------------

PgTaskStore::Pooled::Pooled(PgTaskStore* store) : store_(store) {
  {
    absl::MutexLock lock(&store_->pool_mu_);
    store_->pool_mu_.Await(absl::Condition(
        +[](std::vector<std::unique_ptr<pg::Connection>>* idle) {
          return !idle->empty();
        },
        &store_->idle_));
    connection_ = std::move(store_->idle_.back());
    store_->idle_.pop_back();
  }
  if (connection_ == nullptr || connection_->broken()) {
    connection_.reset();
    absl::StatusOr<std::unique_ptr<pg::Connection>> connected =
        store_->Connect();
    if (connected.ok()) {
      connection_ = std::move(*connected);
    } else {
      status_ = connected.status();
    }
  }
}

PgTaskStore::Pooled::~Pooled() {
  if (connection_ != nullptr && !connection_->broken() &&
      !connection_->idle()) {
    (void)connection_->ExecScript("ROLLBACK");
  }
  absl::MutexLock lock(&store_->pool_mu_);
  store_->idle_.push_back(std::move(connection_));
}

absl::StatusOr<Task> PgTaskStore::Find(pg::Connection* connection,
                                       absl::string_view id) {
  static const std::string by_id =
      absl::StrCat("SELECT ", kTaskColumns, " FROM tasks WHERE id = $1");
  static const std::string by_uuid =
      absl::StrCat("SELECT ", kTaskColumns, " FROM tasks WHERE uuid = $1");
  for (const std::string* sql : {&by_id, &by_uuid}) {
    absl::StatusOr<pg::Result> rows = connection->Exec(*sql, {std::string(id)});
    if (!rows.ok()) return rows.status();
    if (rows->rows() > 0) return ReadTask(PgRow{*rows, 0});
  }
  return absl::NotFoundError(absl::StrCat("task \"", id, "\" not found"));
}

template <typename T>
absl::StatusOr<T> PgTaskStore::Read(
    const std::function<absl::StatusOr<T>(pg::Connection*)>& read) {
  for (int attempt = 0;; ++attempt) {
    Pooled connection(this);
    if (!connection.status().ok()) return connection.status();
    absl::StatusOr<T> result = read(connection.get());
    if (result.ok() || attempt > 0 || !connection->broken()) return result;
  }
}

absl::StatusOr<Task> PgTaskStore::Get(absl::string_view id) {
  const std::string key(id);
  return Read<Task>(
      [&key](pg::Connection* connection) { return Find(connection, key); });
}

absl::Status PgTaskStore::ReadPage(pg::Connection* connection,
                                   const ListQuery& query, ListResult* result) {
  if (absl::Status bad = CheckListQuery(query); !bad.ok()) return bad;
  // One row more than asked tells whether another page follows.
  sqlite::SqlQuery sql =
      sqlite::BuildListQuery(query, query.limit + 1, Dialect::kPostgres);
  absl::StatusOr<pg::Result> rows =
      connection->Exec(sql.sql, ToParams(sql.params));
  if (!rows.ok()) return rows.status();
  result->tasks = ReadTasks(*rows);
  if (static_cast<int>(result->tasks.size()) > query.limit) {
    result->tasks.pop_back();
    result->more = true;
  }
  return absl::OkStatus();
}

absl::Status PgTaskStore::InSnapshot(
    const std::function<absl::Status(pg::Connection*, int64_t)>& read) {
  return Read<bool>(
             [&read](pg::Connection* connection) -> absl::StatusOr<bool> {
               absl::Status status = connection->ExecScript(
                   "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
               if (!status.ok()) return status;
               absl::StatusOr<pg::Result> meta =
                   connection->Exec("SELECT revision FROM meta");
               if (!meta.ok()) return meta.status();
               absl::StatusOr<int64_t> revision = meta->Int64(0, 0);
               if (!revision.ok()) return revision.status();
               if (status = read(connection, *revision); !status.ok()) {
                 return status;
               }
               if (status = connection->ExecScript("COMMIT"); !status.ok()) {
                 return status;
               }
               return true;
             })
      .status();
}

absl::StatusOr<ListResult> PgTaskStore::List(const ListQuery& query) {
  ListResult result;
  absl::Status status =
      InSnapshot([&](pg::Connection* connection, int64_t revision) {
        result.revision = revision;
        return ReadPage(connection, query, &result);
      });
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<std::vector<Task>> PgTaskStore::ListByDeadline(int limit) {
  static const std::string sql =
      absl::StrCat("SELECT ", kTaskColumns,
                   " FROM tasks WHERE deadline <> 0 ORDER BY deadline "
                   "LIMIT $1");
  return Read<std::vector<Task>>(
      [limit](pg::Connection* connection) -> absl::StatusOr<std::vector<Task>> {
        absl::StatusOr<pg::Result> rows =
            connection->Exec(sql, {absl::StrCat(std::max(1, limit))});
        if (!rows.ok()) return rows.status();
        return ReadTasks(*rows);
      });
}

absl::StatusOr<CountResult> PgTaskStore::Count(const CountQuery& query) {
  CountResult result;
  absl::Status status = InSnapshot([&](pg::Connection* connection,
                                       int64_t revision) -> absl::Status {
    result.revision = revision;
    if (sqlite::AnsweredByCounters(query)) {
      // As in the SQLite engine: the rows of the tenant the filter pins (or
      // all), each evaluated as a task with just the three counted fields.
      std::optional<FieldValue> tenant =
          RequiredValue(query.filter.get(), TaskField::kTenantId);
      absl::StatusOr<pg::Result> rows =
          tenant.has_value()
              ? connection->Exec(
                    "SELECT tenant_id, state, result_code, n FROM task_counts "
                    "WHERE tenant_id = $1 AND n <> 0",
                    {ToParam(*tenant)})
              : connection->Exec(
                    "SELECT tenant_id, state, result_code, n FROM task_counts "
                    "WHERE n <> 0");
      if (!rows.ok()) return rows.status();
      TaskCounts counts(query.group_by);
      Task row;
      for (int i = 0; i < rows->rows(); ++i) {
        const PgRow at{*rows, i};
        row.set_tenant_id(at.ColumnText(0));
        row.set_state(static_cast<Task::State>(at.ColumnInt64(1)));
        row.set_result_code(static_cast<Task::ResultCode>(at.ColumnInt64(2)));
        if (Matches(query.filter.get(), row)) {
          counts.Add(row, at.ColumnInt64(3));
        }
      }
      result.groups = counts.groups();
      return absl::OkStatus();
    }
    sqlite::SqlQuery sql = sqlite::BuildCountQuery(query, Dialect::kPostgres);
    absl::StatusOr<pg::Result> rows =
        connection->Exec(sql.sql, ToParams(sql.params));
    if (!rows.ok()) return rows.status();
    const int columns = static_cast<int>(query.group_by.size());
    for (int i = 0; i < rows->rows(); ++i) {
      const PgRow at{*rows, i};
      const int64_t n = at.ColumnInt64(columns);
      if (n == 0) continue;  // no GROUP BY: one row, even with no tasks
      GroupKey key;
      for (int c = 0; c < columns; ++c) {
        if (InfoOf(query.group_by[c]).kind == FieldKind::kString) {
          key.emplace_back(at.ColumnText(c));
        } else {
          key.emplace_back(at.ColumnInt64(c));
        }
      }
      result.groups[std::move(key)] += n;
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<std::vector<Change>> PgTaskStore::ReadHistory(
    pg::Connection* connection, int64_t from, int64_t below, int limit) {
  absl::StatusOr<pg::Result> rows = connection->Exec(
      "SELECT revision, kind, task, previous, committed_at FROM changes "
      "WHERE revision >= $1 AND revision < $2 ORDER BY revision LIMIT $3",
      {absl::StrCat(from), absl::StrCat(below), absl::StrCat(limit)});
  if (!rows.ok()) return rows.status();
  std::vector<Change> changes;
  changes.reserve(static_cast<size_t>(rows->rows()));
  for (int i = 0; i < rows->rows(); ++i) {
    const PgRow at{*rows, i};
    Change change;
    change.revision = at.ColumnInt64(0);
    change.kind = static_cast<Change::Kind>(at.ColumnInt64(1));
    absl::StatusOr<std::string> task = rows->Bytes(i, 2);
    if (!task.ok() || !change.task.ParseFromString(*task)) {
      return absl::DataLossError(absl::StrCat(
          "history entry at revision ", change.revision, " is unreadable"));
    }
    if (change.kind != Change::Kind::kCreated) {
      absl::StatusOr<std::string> previous = rows->Bytes(i, 3);
      change.previous.emplace();
      if (!previous.ok() || !change.previous->ParseFromString(*previous)) {
        return absl::DataLossError(absl::StrCat(
            "history entry at revision ", change.revision, " is unreadable"));
      }
    }
    change.committed_at = absl::FromUnixMicros(at.ColumnInt64(4));
    changes.push_back(std::move(change));
  }
  return changes;
}

absl::StatusOr<std::vector<Change>> PgTaskStore::ReadChanges(int64_t from,
                                                             int limit) {
  if (from < 1) from = 1;
  if (from < oldest_.load()) return CompactedError(from, oldest_.load());
  absl::StatusOr<std::vector<Change>> changes =
      Read<std::vector<Change>>([from, limit](pg::Connection* connection) {
        return ReadHistory(connection, from,
                           std::numeric_limits<int64_t>::max(), limit);
      });
  if (!changes.ok()) return changes.status();
  // Revisions have no gaps (pg_task_store.h): a first revision other than
  // `from` means the history below it was trimmed, perhaps by another
  // replica.
  if (!changes->empty() && changes->front().revision != from) {
    return CompactedError(from, changes->front().revision);
  }
  return changes;
}

// ---- Writes --------------------------------------------------------------

absl::StatusOr<int64_t> PgTaskStore::Begin() {
  for (int attempt = 0;; ++attempt) {
    if (writer_ == nullptr || writer_->broken()) {
      writer_.reset();
      absl::StatusOr<std::unique_ptr<pg::Connection>> connected = Connect();
      if (!connected.ok()) return connected.status();
      writer_ = std::move(*connected);
    }
    absl::Status status = writer_->ExecScript("BEGIN");
    if (status.ok()) break;
    // A connection that failed while idle (PostgreSQL restarted): nothing
    // was sent, so a new connection may try again, once.
    if (attempt > 0 || !writer_->broken()) return status;
  }
  // The lock that orders revisions (pg_task_store.h), held to the commit.
  absl::StatusOr<pg::Result> meta =
      writer_->Exec("SELECT revision FROM meta FOR UPDATE");
  if (!meta.ok()) return meta.status();
  return meta->Int64(0, 0);
}

void PgTaskStore::Rollback() {
  if (writer_ != nullptr && !writer_->broken() && !writer_->idle()) {
    (void)writer_->ExecScript("ROLLBACK");
  }
}

absl::Status PgTaskStore::Commit() {
  if (!InTransaction()) {
    return absl::UnavailableError(
        "PostgreSQL gave up the write transaction before its commit");
  }
  return writer_->ExecScript("COMMIT");
}

absl::Status PgTaskStore::Run(absl::string_view sql,
                              std::vector<Param> params) {
  return writer_->Exec(sql, params).status();
}

absl::StatusOr<std::optional<Task>> PgTaskStore::FindByRequest(
    const std::string& tenant_id, const std::string& request_id) {
  // `request_id <> ''` (true here: the caller has a request_id) is the
  // partial index tasks_by_request's own condition, which a plan for any
  // $2 can only use when the query states it.
  static const std::string sql =
      absl::StrCat("SELECT ", kTaskColumns,
                   " FROM tasks WHERE tenant_id = $1 AND request_id = $2 AND "
                   "request_id <> ''");
  absl::StatusOr<pg::Result> rows = writer_->Exec(sql, {tenant_id, request_id});
  if (!rows.ok()) return rows.status();
  if (rows->rows() == 0) return std::nullopt;
  return ReadTask(PgRow{*rows, 0});
}

absl::StatusOr<bool> PgTaskStore::Taken(const Task& task) {
  // Four index probes. (With "id IN ($1, $2) OR uuid IN ($1, $2)" the
  // generic plan of the prepared statement read the whole table: 90% of a
  // create's time, in a profile.)
  absl::StatusOr<pg::Result> rows = writer_->Exec(
      "SELECT 1 FROM tasks WHERE id = $1 UNION ALL "
      "SELECT 1 FROM tasks WHERE uuid = $1 UNION ALL "
      "SELECT 1 FROM tasks WHERE id = $2 UNION ALL "
      "SELECT 1 FROM tasks WHERE uuid = $2 LIMIT 1",
      {task.id(), task.uuid()});
  if (!rows.ok()) return rows.status();
  return rows->rows() > 0;
}

absl::StatusOr<ListResult> PgTaskStore::ReadPage(const ListQuery& query) {
  ListResult result;
  if (absl::Status s = ReadPage(writer_.get(), query, &result); !s.ok()) {
    return s;
  }
  return result;
}

absl::Status PgTaskStore::Insert(const Task& task,
                                 const std::string& request_id) {
  static const std::string sql = absl::StrCat(
      "INSERT INTO tasks (", kTaskColumns,
      ", request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
      "$12, $13, $14, $15, $16, $17, $18, $19, $20, $21)");
  std::vector<Param> params;
  for (TaskField field : kColumnFields) {
    params.push_back(ToParam(FieldValueOf(task, field)));
  }
  params.push_back(pg::Bytea(DetailOf(task)));
  params.push_back(request_id);
  return Run(sql, std::move(params));
}

absl::Status PgTaskStore::Replace(const Task& current, const Task& next) {
  const std::vector<ColumnChange> columns = ChangedColumns(current, next);
  if (columns.empty()) return absl::OkStatus();
  std::string sql = "UPDATE tasks SET ";
  std::vector<Param> params = {current.id()};
  for (size_t i = 0; i < columns.size(); ++i) {
    absl::StrAppend(&sql, i == 0 ? "" : ", ", columns[i].column, " = $", i + 2);
    params.push_back(columns[i].blob
                         ? pg::Bytea(std::get<std::string>(columns[i].value))
                         : ToParam(columns[i].value));
  }
  sql += " WHERE id = $1";
  return Run(sql, std::move(params));
}

absl::Status PgTaskStore::Remove(const std::string& id) {
  return Run("DELETE FROM tasks WHERE id = $1", {id});
}

absl::Status PgTaskStore::Record(const Change& change) {
  return Run(
      "INSERT INTO changes (revision, kind, task_id, task, previous, "
      "committed_at) VALUES ($1, $2, $3, $4, $5, $6)",
      {absl::StrCat(change.task.revision()),
       absl::StrCat(static_cast<int64_t>(change.kind)), change.task.id(),
       pg::Bytea(change.task.SerializeAsString()),
       change.previous.has_value()
           ? Param(pg::Bytea(change.previous->SerializeAsString()))
           : std::nullopt,
       absl::StrCat(absl::ToUnixMicros(change.committed_at))});
}

absl::Status PgTaskStore::AddToCounter(const Task& task, int64_t delta) {
  return Run(
      "INSERT INTO task_counts (tenant_id, state, result_code, n) "
      "VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, state, result_code) "
      "DO UPDATE SET n = task_counts.n + excluded.n",
      {task.tenant_id(), absl::StrCat(static_cast<int64_t>(task.state())),
       absl::StrCat(static_cast<int64_t>(task.result_code())),
       absl::StrCat(delta)});
}

int64_t PgTaskStore::TrimHistory(int64_t last_revision) {
  int64_t keep_from = 0;  // drop changes with revision < keep_from
  if (options_.history_max_changes > 0) {
    keep_from = last_revision - options_.history_max_changes + 1;
  }
  if (options_.history_max_age > absl::ZeroDuration()) {
    absl::StatusOr<pg::Result> young = writer_->Exec(
        "SELECT MIN(revision) FROM changes WHERE committed_at >= $1",
        {absl::StrCat(absl::ToUnixMicros(options_.clock->Now() -
                                         options_.history_max_age))});
    if (!young.ok()) return 0;
    const int64_t first_young =
        young->IsNull(0, 0) ? last_revision + 1 : *young->Int64(0, 0);
    keep_from = std::max(keep_from, first_young);
  }
  if (keep_from <= oldest_.load()) return 0;
  if (!Run("DELETE FROM changes WHERE revision < $1", {absl::StrCat(keep_from)})
           .ok()) {
    return 0;
  }
  return keep_from;
}

absl::StatusOr<int64_t> PgTaskStore::Finish(int64_t last_revision, bool changed,
                                            bool trim) {
  int64_t oldest = 0;
  if (trim) oldest = TrimHistory(last_revision);
  if (changed) {
    const std::string revision = absl::StrCat(last_revision);
    if (absl::Status s = Run("UPDATE meta SET revision = $1", {revision});
        !s.ok()) {
      return s;
    }
    // Delivered to every listener when (and only if) the batch commits.
    if (absl::Status s = Run("SELECT pg_notify($1, $2)", {kChannel, revision});
        !s.ok()) {
      return s;
    }
  }
  if (!InTransaction()) {
    return absl::UnavailableError(
        "PostgreSQL gave up the write transaction while finishing it");
  }
  return oldest;
}

// ---- Handing changes over ---------------------------------------------

void PgTaskStore::Deliver(const std::vector<Change>& changes) {
  if (changes.empty()) return;
  if (changes.front().revision != delivered_.load() + 1) {
    // Only if the history was trimmed past what this replica had read: its
    // watchers then learn of the gap as REVISION_COMPACTED.
    Log(LogLevel::kError,
        "changes %d to %d were trimmed from the history before this replica "
        "read them",
        delivered_.load() + 1, changes.front().revision - 1);
  }
  // As SQLite publishes its revision: CurrentRevision() has reached the
  // changes before on_commit sees them.
  delivered_ = changes.back().revision;
  if (options_.on_commit) options_.on_commit(changes);
}

absl::Status PgTaskStore::CatchUp(pg::Connection* connection, int64_t below) {
  while (delivered_.load() + 1 < below) {
    absl::StatusOr<std::vector<Change>> changes =
        ReadHistory(connection, delivered_.load() + 1, below, kFollowBatch);
    if (!changes.ok()) return changes.status();
    if (changes->empty()) break;
    Deliver(*changes);
    if (static_cast<int>(changes->size()) < kFollowBatch) break;
  }
  return absl::OkStatus();
}

void PgTaskStore::Publish(const CommittedBatch& batch) {
  if (options_.observe_commit) {
    options_.observe_commit(batch.took, batch.changes.size());
  }
  if (batch.oldest > oldest_.load()) oldest_ = batch.oldest;
  absl::MutexLock lock(&follow_mu_);
  const int64_t first = batch.changes.front().revision;
  if (!CatchUp(writer_.get(), first).ok() || delivered_.load() + 1 < first) {
    // The earlier changes could not be read: leave them, and this batch,
    // to the follower, which hands everything over in order.
    return;
  }
  std::vector<Change> fresh;
  for (const Change& change : batch.changes) {
    if (change.revision > delivered_.load()) fresh.push_back(change);
  }
  Deliver(fresh);
}

absl::StatusOr<std::unique_ptr<pg::Connection>> PgTaskStore::ConnectFollower()
    const {
  absl::StatusOr<std::unique_ptr<pg::Connection>> connected = Connect();
  if (!connected.ok() || !options_.pg.listen) return connected;
  if (absl::Status s =
          (*connected)->ExecScript(absl::StrCat("LISTEN ", kChannel));
      !s.ok()) {
    return s;
  }
  return connected;
}

void PgTaskStore::TryToLead(pg::Connection* follower) {
  if (term_.load() != 0) return;  // held as long as the connection lives
  absl::StatusOr<pg::Result> taken =
      follower->Exec("SELECT pg_try_advisory_lock($1)::int", {kSweeperLock});
  if (!taken.ok()) return;
  absl::StatusOr<int64_t> held = taken->Int64(0, 0);
  if (held.ok() && *held == 1) {
    term_ = ++terms_;
    Log(LogLevel::kInfo, "this replica runs the sweepers (timers, retention)");
  }
}

void PgTaskStore::FollowLoop(std::unique_ptr<pg::Connection> listener) {
  SetThreadName("taskd-pg-follow");
  absl::Time next_poll = absl::InfinitePast();
  absl::Time next_lead = absl::Now() + options_.pg.poll_interval;
  // Short waits, so that the destructor never waits long for the thread.
  const absl::Duration slice = absl::Milliseconds(100);
  while (!stopping_.load()) {
    if (listener == nullptr || listener->broken()) {
      if (term_.exchange(0) != 0) {
        Log(LogLevel::kWarning,
            "lost the database connection that held the sweepers' lock");
      }
      listener.reset();
      absl::StatusOr<std::unique_ptr<pg::Connection>> connected =
          ConnectFollower();
      if (!connected.ok()) {
        absl::SleepFor(slice);
        continue;
      }
      listener = std::move(*connected);
      next_poll = absl::InfinitePast();  // catch up at once
      next_lead = absl::InfinitePast();
    }
    if (absl::Now() >= next_poll) {
      absl::MutexLock lock(&follow_mu_);
      (void)CatchUp(listener.get(), std::numeric_limits<int64_t>::max());
      absl::StatusOr<pg::Result> oldest =
          listener->Exec("SELECT MIN(revision) FROM changes");
      if (oldest.ok()) {
        oldest_ =
            oldest->IsNull(0, 0) ? delivered_.load() + 1 : *oldest->Int64(0, 0);
      }
      next_poll = absl::Now() + options_.pg.poll_interval;
    }
    if (absl::Now() >= next_lead) {
      TryToLead(listener.get());
      next_lead = absl::Now() + options_.pg.poll_interval;
    }
    absl::StatusOr<bool> notified = listener->AwaitNotification(std::max(
        absl::ZeroDuration(), std::min(slice, next_poll - absl::Now())));
    if (!notified.ok()) {
      listener.reset();
    } else if (*notified) {
      next_poll = absl::InfinitePast();
    }
  }
  // Handed over at once (the others take it at their next try) rather than
  // when PostgreSQL sees the connection close.
  if (term_.exchange(0) != 0 && listener != nullptr) {
    (void)listener->Exec("SELECT pg_advisory_unlock($1)", {kSweeperLock});
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<TaskStore>> OpenPgTaskStore(
    const PgTaskStoreOptions& options) {
  absl::StatusOr<std::unique_ptr<PgTaskStore>> store =
      PgTaskStore::Open(options);
  if (!store.ok()) return store.status();
  return std::unique_ptr<TaskStore>(std::move(*store));
}

int PgSchemaVersion() { return kSchemaVersion; }

bool IsPostgresUri(const std::string& db) {
  return absl::StartsWith(db, "postgresql://") ||
         absl::StartsWith(db, "postgres://");
}

std::string LoggableDb(const std::string& db) {
  if (!IsPostgresUri(db)) return db;
  std::string safe = db;
  const size_t authority = safe.find("://") + 3;
  const size_t at = safe.find('@', authority);
  const size_t slash = safe.find('/', authority);
  if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
    const size_t colon = safe.find(':', authority);
    if (colon != std::string::npos && colon < at) {
      safe.replace(colon + 1, at - colon - 1, "***");
    }
  }
  for (size_t key = safe.find("password="); key != std::string::npos;
       key = safe.find("password=", key + 1)) {
    const size_t value = key + 9;
    const size_t end = safe.find('&', value);
    safe.replace(value, (end == std::string::npos ? safe.size() : end) - value,
                 "***");
  }
  return safe;
}

}  // namespace taskd
