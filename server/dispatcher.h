// Dispatcher: hands enqueued tasks to executors (AcquireTask).
//
// An acquire is one TaskWrite::Claim: the choice of the task and its
// assignment happen in one store transaction, so two executors never get
// the same task and no acquire fails because another one won a race. The
// choice: the highest priority among the enqueued tasks that match the
// executor's filter, and within that priority the tenants take turns (the
// oldest task of the next tenant after the one served last, in tenant_id
// order), so that a tenant with 100,000 queued tasks does not starve one
// with 10.
//
// An acquire that finds nothing and may wait is parked. Each commit that
// enqueues a task (a create, a re-queue) wakes the oldest parked acquire
// whose filter matches it, which claims again; the store is not polled.
// One that is still parked when its wait ends gets no task.
//
//   Dispatcher dispatcher(options);
//   dispatcher.Attach(store);             // before serving
//   store on_commit -> dispatcher.OnCommit(changes);
//   dispatcher.Acquire(std::move(spec), [](auto result) { ... });
//
// Thread-safe.
#ifndef TASKD_SERVER_DISPATCHER_H_
#define TASKD_SERVER_DISPATCHER_H_

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "query/filter.h"
#include "server/deadline_timer.h"
#include "storage/task_store.h"

namespace taskd {

struct DispatcherOptions {
  // Where wait deadlines are read. Not owned; must outlive the dispatcher.
  Clock* clock = Clock::Real();
};

// One AcquireTask, as the service core planned it.
struct AcquireSpec {
  // Which tasks may be taken (already scoped to the caller's tenant); null:
  // any. Only enqueued tasks are ever taken.
  std::shared_ptr<const FilterExpr> filter;
  // The assignment: turns the chosen (enqueued) task into the assigned one.
  TaskMutation assign;
  // How long to wait for a matching task if there is none now.
  absl::Duration wait = absl::ZeroDuration();
  // True once the caller is gone (its call was cancelled): a woken acquire
  // whose caller is gone claims nothing. May be empty.
  std::function<bool()> gone;
};

class Dispatcher {
 public:
  // The task claimed, or nullopt if none matched within the wait, or the
  // store's error. Called once, on a thread of the store's or the timer's.
  using Done = std::function<void(absl::StatusOr<std::optional<Task>>)>;

  explicit Dispatcher(const DispatcherOptions& options);
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;
  // Calls Shutdown().
  ~Dispatcher();

  // The store to claim from. Not owned; must outlive the dispatcher's use.
  void Attach(TaskStore* store);

  void Acquire(AcquireSpec spec, Done done);

  // The store's on_commit: wakes parked acquires for newly enqueued tasks.
  void OnCommit(const std::vector<Change>& changes);

  // Every parked acquire gets "none" now, and new ones get Unavailable.
  void Shutdown();

  // Acquires parked now (for tests and metrics).
  size_t waiting();

  // The choice of a claim (exposed for tests): see the file comment.
  absl::StatusOr<std::optional<Task>> Pick(
      const std::shared_ptr<const FilterExpr>& filter, const TaskLister& list);

 private:
  struct Waiter;
  // Submits the claim of `waiter`, which is not parked.
  void Claim(std::shared_ptr<Waiter> waiter);
  // Answers `waiter` with `result`, unless it was answered already.
  void Finish(const std::shared_ptr<Waiter>& waiter,
              absl::StatusOr<std::optional<Task>> result);
  // If `waiter` is parked (no claim in flight), marks it answered and
  // returns true: the caller then answers it.
  bool TakeParked(const std::shared_ptr<Waiter>& waiter);

  const DispatcherOptions options_;
  TaskStore* store_ = nullptr;
  DeadlineTimer timer_;

  absl::Mutex mu_;
  // Acquires that may wait, oldest first: parked, or claiming.
  std::list<std::shared_ptr<Waiter>> waiters_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;

  // Per priority rank: the tenant served last (round robin).
  absl::Mutex turns_mu_;
  std::map<int64_t, std::string> last_tenant_ ABSL_GUARDED_BY(turns_mu_);
};

}  // namespace taskd

#endif  // TASKD_SERVER_DISPATCHER_H_
