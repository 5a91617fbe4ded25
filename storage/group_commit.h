// The write path every engine shares: group commit, and what each kind of
// TaskWrite does. An engine supplies only its statements (WriteTransaction);
// what a create, update, delete, claim or touch checks and writes, and how a
// batch survives one bad write, is written once, here.
//
//   class MyTransaction : public WriteTransaction { ... };  // the SQL
//   GroupCommitWriter writer(options, &my_transaction,
//                            [](const CommittedBatch& batch) { ... });
//   writer.Submit(std::move(write), std::move(done));
//
// Internal to storage/: the TaskStore interface is what callers see.
#ifndef TASKD_STORAGE_GROUP_COMMIT_H_
#define TASKD_STORAGE_GROUP_COMMIT_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "storage/task_row.h"
#include "storage/task_store.h"

namespace taskd {

// One engine's statements inside a write transaction. Used only by the
// writer thread, one batch at a time: Begin, then the row statements of each
// write, then Finish and Commit (or Rollback).
//
// Each row statement is atomic on its own: a failed one changed nothing,
// unless the engine gave up on the whole transaction, which InTransaction()
// then reports (SQLite rolls back on some storage errors; PostgreSQL aborts
// the transaction on any failed statement).
class WriteTransaction {
 public:
  virtual ~WriteTransaction() = default;

  // Opens the transaction and returns the last committed revision, which
  // the batch's changes follow. An engine shared by several processes
  // takes here whatever makes revisions commit in order.
  virtual absl::StatusOr<int64_t> Begin() = 0;
  // False once the engine has rolled the open transaction back by itself.
  virtual bool InTransaction() = 0;

  // The task whose id, or else uuid, is `id`; NotFound if none.
  virtual absl::StatusOr<Task> Find(absl::string_view id) = 0;
  // The task created with (tenant_id, request_id), if any.
  virtual absl::StatusOr<std::optional<Task>> FindByRequest(
      const std::string& tenant_id, const std::string& request_id) = 0;
  // Whether `task`'s id or uuid is the id or uuid of a task already (ids and
  // uuids share one namespace: Get takes either).
  virtual absl::StatusOr<bool> Taken(const Task& task) = 0;
  // One page of `query`, seeing this transaction's writes (TaskLister).
  virtual absl::StatusOr<ListResult> ReadPage(const ListQuery& query) = 0;

  // The task row: a new one; `current` replaced by `next` (writing only the
  // columns that differ); removed.
  virtual absl::Status Insert(const Task& task,
                              const std::string& request_id) = 0;
  virtual absl::Status Replace(const Task& current, const Task& next) = 0;
  virtual absl::Status Remove(const std::string& id) = 0;
  // The history row of `change`.
  virtual absl::Status Record(const Change& change) = 0;
  // Adds `delta` to the counter of `task`'s (tenant, state, result code).
  virtual absl::Status AddToCounter(const Task& task, int64_t delta) = 0;

  // After the batch's writes: drops history beyond the limits (if `trim`)
  // and stores `last_revision` if the batch made changes. Returns the
  // history's new lower bound, or 0 if nothing was dropped. An error means
  // the batch cannot commit.
  virtual absl::StatusOr<int64_t> Finish(int64_t last_revision, bool changed,
                                         bool trim) = 0;
  virtual absl::Status Commit() = 0;
  // Undoes an open transaction; harmless after a commit or without one.
  virtual void Rollback() = 0;
};

struct GroupCommitOptions {
  // At most this many writes per transaction; at most max_queue waiting
  // (Submit then waits for room, except on the writer thread).
  int max_batch = 256;
  int max_queue = 8192;
  // The history is trimmed with the batch that takes the count of changes
  // since the last trim to this many.
  int64_t history_trim_interval = 1024;
  // Where Change::committed_at is read. Not owned.
  Clock* clock = Clock::Real();
};

// What a committed batch made: its changes in revision order (never
// empty), the history's new lower bound (0: unchanged) and how long the
// transaction took.
struct CommittedBatch {
  std::vector<Change> changes;
  int64_t oldest = 0;
  absl::Duration took;
};

// Queues writes for one writer thread, which applies every write queued
// meanwhile (up to max_batch) in one transaction. A write fails alone: it
// checks first (reads only, so a refused write changed nothing), then runs
// its row statements. If one fails half way (a storage error after the
// first statement), or the engine gave up on the transaction, the batch is
// rolled back and applied again without that write, once; if that fails
// too, the whole batch fails. After the commit `publish` runs (on the
// writer thread, before the next batch begins), then the calls complete.
class GroupCommitWriter {
 public:
  using Publish = std::function<void(const CommittedBatch&)>;

  // Starts the writer thread. `transaction` is used only by it and must
  // outlive this object.
  GroupCommitWriter(const GroupCommitOptions& options,
                    WriteTransaction* transaction, Publish publish);
  // Completes every write queued, then stops the thread.
  ~GroupCommitWriter();
  GroupCommitWriter(const GroupCommitWriter&) = delete;
  GroupCommitWriter& operator=(const GroupCommitWriter&) = delete;

  // Queues `write`; `done` gets its result once its batch has committed.
  // UNAVAILABLE at once if the writer is stopping.
  void Submit(TaskWrite write, TaskStore::WriteDone done)
      ABSL_LOCKS_EXCLUDED(queue_mu_);

  // True on the writer thread (where waiting for a write would deadlock).
  bool OnWriterThread() const {
    return std::this_thread::get_id() == writer_id_;
  }

 private:
  struct Pending;
  struct ApplyContext;

  void WriterLoop();
  void ApplyBatch(std::vector<std::unique_ptr<Pending>>* batch);
  absl::Status CommitBatch(std::vector<std::unique_ptr<Pending>>* batch,
                           CommittedBatch* committed);
  absl::StatusOr<Task> Apply(const TaskWrite::Create& create,
                             const ApplyContext& at);
  absl::StatusOr<Task> Apply(const TaskWrite::Update& update,
                             const ApplyContext& at);
  absl::StatusOr<Task> Apply(const TaskWrite::Delete& del,
                             const ApplyContext& at);
  absl::StatusOr<Task> Apply(const TaskWrite::Claim& claim,
                             const ApplyContext& at);
  absl::StatusOr<Task> Apply(const TaskWrite::Touch& touch,
                             const ApplyContext& at);
  absl::StatusOr<Task> UpdateFound(Task current, const TaskMutation& mutation,
                                   const ApplyContext& at);
  absl::StatusOr<Task> RecordChange(Change::Kind kind, Task task,
                                    std::optional<Task> previous,
                                    const ApplyContext& at);
  absl::Status CountChange(const Change& change);

  const GroupCommitOptions options_;
  WriteTransaction* const transaction_;
  const Publish publish_;
  int64_t commits_since_trim_ = 0;  // writer thread only

  absl::Mutex queue_mu_;
  std::deque<std::unique_ptr<Pending>> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool closing_ ABSL_GUARDED_BY(queue_mu_) = false;
  std::thread thread_;
  std::thread::id writer_id_;
};

}  // namespace taskd

#endif  // TASKD_STORAGE_GROUP_COMMIT_H_
