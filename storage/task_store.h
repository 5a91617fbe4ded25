// TaskStore: the one interface of taskd's storage layer.
//
// A TaskStore keeps tasks and the history of their changes. Every change
// (create, update, delete) gets the next store revision: one new revision per
// change, in commit order, starting at 1. The change is recorded in the
// history in the same transaction as the change itself, so the history never
// misses or invents a change, also across crashes and restarts.
//
// (One kind of write, TaskWrite::Touch, changes a task in place without a
// revision: bookkeeping that is not a change for watchers.)
//
// The store knows nothing of gRPC and nothing of the task life cycle: callers
// (the service) decide what a change is; the store applies it atomically,
// stamps `revision` and `etag`, and records it.
//
// Every change is one TaskWrite, handed to one method, Write(), which calls
// back once the change has committed (or failed). WriteAndWait() and the
// Create/Update/Delete helpers block for the result instead:
//
//   auto store = OpenSqliteTaskStore(options);
//   if (!store.ok()) return store.status();
//   absl::StatusOr<Task> created =
//       (*store)->Create(task, "");
//   TaskWrite remove{
//       TaskWrite::Delete{"t1"}};
//   (*store)->Write(
//       std::move(remove),
//       [](absl::StatusOr<Task> deleted) {
//         Log(deleted.status());
//       });
//
// Errors are canonical absl::Status codes:
//   NotFound            no task with that id (or uuid)
//   AlreadyExists       a task with that id already exists
//   Unavailable         the store is busy or the disk failed; a retry may work
//   ResourceExhausted   the disk is full (reason DISK_FULL)
//   FailedPrecondition  the database cannot be used (newer schema, locked by
//                       another process); a blocking write called from the
//                       store's own thread
//   others              whatever the mutation or precondition returned,
//                       unchanged
//
// Thread-safety: every method may be called from any thread at any time.
// Writes are serialised; reads see the last committed state and do not wait
// for writers. An implementation may commit concurrent writes together
// (group commit): each still gets its own revision, in commit order, and a
// write that fails fails alone.
#ifndef TASKD_STORAGE_TASK_STORE_H_
#define TASKD_STORAGE_TASK_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "query/filter.h"
#include "query/order_by.h"
#include "query/task_counts.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd {

using tasks::v1::Task;

// One recorded change.
struct Change {
  enum class Kind { kCreated = 1, kUpdated = 2, kDeleted = 3 };
  int64_t revision = 0;
  Kind kind = Kind::kCreated;
  // The task after the change; for kDeleted, the task as it was (with the
  // deletion's revision).
  Task task;
  // The task before the change; empty for kCreated.
  std::optional<Task> previous;
  absl::Time committed_at;
};

// A ListTasks question, already parsed.
struct ListQuery {
  // Null matches every task.
  std::shared_ptr<const FilterExpr> filter;
  // Total order; must end with id (ParseOrderBy guarantees it).
  OrderBy order = {{TaskField::kEnqueuedAt, false}, {TaskField::kId, false}};
  // Empty: from the start. Otherwise the order-key values of the last task
  // already returned (CursorOf()); the page starts strictly after it.
  std::vector<FieldValue> after;
  // At most this many tasks, >= 1.
  int limit = 50;
};

struct ListResult {
  std::vector<Task> tasks;
  // True if tasks after the last one returned matched when the page was read.
  bool more = false;
  // The store revision the page reflects: the page is a consistent snapshot
  // of the store at exactly this revision.
  int64_t revision = 0;
};

// A CountTasks question, already parsed.
struct CountQuery {
  // Null counts every task.
  std::shared_ptr<const FilterExpr> filter;
  // Zero to kMaxGroupBy Groupable() fields; zero: one group, the total.
  std::vector<TaskField> group_by;
};

struct CountResult {
  // Each group with at least one task (GroupKeyOf) and its count.
  std::map<GroupKey, int64_t> groups;
  // The counts are a snapshot of the store at exactly this revision.
  int64_t revision = 0;
};

// Computes the new version of a task from the current one, or an error
// that aborts the change and is returned to the caller unchanged.
//
// Mutations and preconditions may run on a thread of the store's (its
// writer), inside the write transaction, while other writes wait: they must
// be quick, must not block, and must not call the store. They may run more
// than once for one write (a batch applied again after a neighbour's storage
// error), so they must depend only on `current` (and the time).
using TaskMutation = std::function<absl::StatusOr<Task>(const Task& current)>;
// Decides whether a task may be deleted; a non-OK status aborts.
using TaskPrecondition = std::function<absl::Status(const Task& current)>;
// Reads a page of tasks inside a write's transaction (it sees the writes
// applied before it in the same batch), as TaskStore::List does.
using TaskLister = std::function<absl::StatusOr<ListResult>(const ListQuery&)>;
// Chooses the task a Claim takes, reading through `list`; nullopt: none.
// Runs where mutations run, under the same rules.
using TaskPicker =
    std::function<absl::StatusOr<std::optional<Task>>(const TaskLister& list)>;

// One change for TaskStore::Write: exactly one of the kinds below. Each
// returns, on success, the task as stored with its new revision and etag.
struct TaskWrite {
  // Inserts `task`, which must carry id, uuid, type, state and the
  // timestamps; the store sets revision and etag.
  //
  // If `request_id` is not empty and a task was already created with the
  // same (tenant_id, request_id), that task is returned as it is now and
  // nothing is written. AlreadyExists if a task with the same id or uuid
  // exists.
  struct Create {
    Task task;
    std::string request_id;
  };
  // Atomically reads the task `id` (as Get), calls `mutation` on it and
  // stores the result under a new revision. The mutation may not change id
  // or uuid. Two concurrent updates of one task are serialised: the second
  // sees the first's result. NotFound if the task does not exist.
  struct Update {
    std::string id;
    TaskMutation mutation;
  };
  // Atomically checks `precondition` (if not empty) and deletes the task
  // `id`. Returns the task as it was, stamped with the deletion's revision.
  // NotFound if the task does not exist.
  struct Delete {
    std::string id;
    TaskPrecondition precondition;
  };
  // Atomically chooses a task with `pick` and updates it with `mutation`,
  // as Update does: no other write runs between the choice and the update,
  // so two claims never take the same task (an executor's AcquireTask).
  // NotFound (reason NOTHING_TO_CLAIM) if `pick` chose none.
  struct Claim {
    TaskPicker pick;
    TaskMutation mutation;
  };
  // Like Update, but the result replaces the task in place: no new
  // revision, etag or history entry, and no change for watchers. For
  // bookkeeping that watchers do not need (a checkpoint of a lease that
  // heartbeats keep). The mutation must not change id, uuid or revision.
  struct Touch {
    std::string id;
    TaskMutation mutation;
  };

  std::variant<Create, Update, Delete, Claim, Touch> op;
};

class TaskStore {
 public:
  using Mutation = TaskMutation;
  using Precondition = TaskPrecondition;
  // Receives the result of a write, exactly once.
  using WriteDone = std::function<void(absl::StatusOr<Task> result)>;

  TaskStore() = default;
  TaskStore(const TaskStore&) = delete;
  TaskStore& operator=(const TaskStore&) = delete;
  virtual ~TaskStore() = default;

  // Applies `write` (see TaskWrite for what each kind does and returns) and
  // calls `done` with the result once the change has committed, or with the
  // error. Does not wait for the commit: for threads that must not block
  // (gRPC's callback API). It may wait for room in a full queue of writes,
  // except on the store's own thread. `done` may run before Write returns,
  // or later on a thread of the store's; it must be quick and must not wait
  // for the store (starting another Write is fine; WriteAndWait is not).
  virtual void Write(TaskWrite write, WriteDone done) = 0;

  // Write, waiting for the result. FailedPrecondition, without writing, if
  // called where waiting would wait for itself (in a mutation,
  // precondition, `done` or on_commit running on the store's thread).
  absl::StatusOr<Task> WriteAndWait(TaskWrite write);

  // WriteAndWait of one kind, for brevity.
  absl::StatusOr<Task> Create(Task task, std::string request_id) {
    return WriteAndWait(
        {TaskWrite::Create{std::move(task), std::move(request_id)}});
  }
  absl::StatusOr<Task> Update(std::string id, Mutation mutation) {
    return WriteAndWait(
        {TaskWrite::Update{std::move(id), std::move(mutation)}});
  }
  absl::StatusOr<Task> Delete(std::string id, Precondition precondition) {
    return WriteAndWait(
        {TaskWrite::Delete{std::move(id), std::move(precondition)}});
  }

  // The task whose id, or else whose uuid, is `id`. NotFound if none.
  virtual absl::StatusOr<Task> Get(absl::string_view id) = 0;

  // One page of tasks in `query.order`.
  virtual absl::StatusOr<ListResult> List(const ListQuery& query) = 0;

  // Up to `limit` recorded changes with revision >= `from`, in revision order.
  // OutOfRange if `from` is below OldestRevision() (that part of the history
  // was trimmed).
  virtual absl::StatusOr<std::vector<Change>> ReadChanges(int64_t from,
                                                          int limit) = 0;

  // The revision of the last committed change (0 for a new store).
  virtual int64_t CurrentRevision() = 0;

  // The lowest revision still in the history; CurrentRevision() + 1 when the
  // history is empty.
  virtual int64_t OldestRevision() = 0;

  // Up to `limit` tasks that have a deadline, the earliest deadline first
  // (ties in no particular order). Reads only those tasks, however many
  // others there are.
  virtual absl::StatusOr<std::vector<Task>> ListByDeadline(int limit) = 0;

  // How many tasks match `query.filter`, per group. An implementation may
  // keep counters in the same transaction as each change, so that the
  // questions dashboards ask most (by state and result code, over all tasks
  // or one tenant's) do not read the tasks at all.
  virtual absl::StatusOr<CountResult> Count(const CountQuery& query) = 0;

  // A random secret created with the database and kept with it, for sealing
  // tokens that must survive restarts (page tokens).
  virtual std::string InstanceSecret() = 0;

  // Whether other servers write to the same database (several replicas on
  // PostgreSQL). State that must be the same on every server is then kept
  // in the database only: a heartbeat's lease, for one, is written there
  // rather than held in this server's memory. false: this server is the
  // database's only writer (SQLite).
  virtual bool Shared() const { return false; }

  // Whether this server should run the sweepers now (the executor timers,
  // retention): SweeperTerm() != 0.
  bool LeadsSweepers() { return SweeperTerm() != 0; }
  // 0 while another server runs the sweepers; otherwise the term in which
  // this server runs them, a number that grows each time it takes the lead.
  // A sweeper that compares it with the term it saw last knows of a lead
  // lost and taken again in between. A shared store elects one server at a
  // time; when that server goes (or loses its database connection),
  // another takes over within about two seconds of its connection closing.
  // A store of one server always answers 1. Sweepers ask again at least
  // once a second. Every sweeper write re-checks its task atomically, so
  // two servers that both believe they lead (briefly, around a takeover)
  // change a task at most once.
  virtual int64_t SweeperTerm() { return 1; }

  // Writes a consistent copy of the whole store, exactly as it is at one
  // revision, to a new file at `path`, while reads and writes go on; a
  // store opened on that file starts at that revision, with the same
  // tasks, history and secret. `keep_going` is asked between steps of the
  // copy: false abandons it (Cancelled, and the partial file is removed).
  // Returns the revision the copy holds. AlreadyExists if `path` exists;
  // Unimplemented for an engine backed up with its own tools.
  virtual absl::StatusOr<int64_t> Backup(
      const std::string& path, const std::function<bool()>& keep_going) {
    return absl::UnimplementedError(
        "this store is backed up with its database's own tools");
  }

 protected:
  // True on a thread where waiting for a write would wait for itself (the
  // thread that applies writes): WriteAndWait then fails instead of
  // waiting. The default: no such thread.
  virtual bool WaitingWouldDeadlock() const { return false; }
};

}  // namespace taskd

#endif  // TASKD_STORAGE_TASK_STORE_H_
