// TaskTimers: fires the task timeouts (queue, ack, heartbeat, exec) when
// their deadlines pass.
//
// The deadlines live in the store, with the tasks (Task.deadline, kept by
// the life cycle, server/task_lifecycle.h), so they survive restarts: a
// deadline that passed while taskd was down fires at start-up, and one
// still ahead fires at its time. One thread reads the earliest deadlines
// (TaskStore::ListByDeadline: an index read of only what comes first, also
// with millions of tasks), fires those due as ordinary updates (a revision
// each, on the watch stream), and sleeps, on the injected clock, until the
// next one or until a commit brings an earlier one.
//
// Firing is an atomic read-modify-write that looks at the task again
// (FireTimeout): a task that moved on or whose deadline moved meanwhile is
// left alone, so running a timer late, twice, or on two servers of one
// database changes a task at most once per deadline.
//
//   TaskTimers timers(options);
//   store on_commit -> timers.OnCommit(changes);
//   timers.Start(store);
//   ...
//   timers.Stop();                       // before the store closes
//
// Thread-safe.
#ifndef TASKD_SERVER_TASK_TIMERS_H_
#define TASKD_SERVER_TASK_TIMERS_H_

#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "storage/task_store.h"

namespace taskd {

struct TaskTimersOptions {
  // Where the time is read and slept on. Not owned; must outlive the timers.
  Clock* clock = Clock::Real();
  // Tasks fired per round (one group commit). Default 256.
  int batch = 256;
  // After a store error, wait this long before reading again. Default 1 s.
  absl::Duration retry_after = absl::Seconds(1);
  // Told of every timeout fired (the task before and after), for logs and
  // metrics. Runs on a thread of the store's; must be quick.
  std::function<void(const Task& before, const Task& after)> on_fire;
};

class TaskTimers {
 public:
  explicit TaskTimers(const TaskTimersOptions& options);
  TaskTimers(const TaskTimers&) = delete;
  TaskTimers& operator=(const TaskTimers&) = delete;
  // Calls Stop().
  ~TaskTimers();

  // Starts the timer thread on `store` (not owned; it must stay open until
  // Stop() returns). Once.
  void Start(TaskStore* store);
  // Stops the thread, after the round in progress. Idempotent.
  void Stop();

  // The store's on_commit: wakes the thread if a change brings a deadline
  // earlier than the one it sleeps until.
  void OnCommit(const std::vector<Change>& changes);

  // Timeouts fired so far.
  int64_t fired();

 private:
  void Loop();
  // Fires the due tasks among `tasks` (earliest first) and waits for their
  // writes. Returns how many were due; *next is the first deadline not due.
  int FireDue(const std::vector<Task>& tasks, absl::Time* next,
              bool* store_failed);

  const TaskTimersOptions options_;
  TaskStore* store_ = nullptr;

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time sleeping_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int64_t fired_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace taskd

#endif  // TASKD_SERVER_TASK_TIMERS_H_
