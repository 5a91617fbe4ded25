// Retention: deletes completed tasks once they are older than a retention
// age (--retain_completed), so that a service that runs for years does not
// keep every task it ever ran.
//
// A task's age is counted from its completedAt. Each deletion is an
// ordinary one (TaskWrite::Delete): a revision of its own, in the history
// and on every watch stream as a DELETED event, and in the counts. (One
// revision for a whole batch would hide which tasks went from a watcher
// that resumes; the cost of one revision per task is one history row,
// which the history's own limits trim like any other.) The delete checks
// again, atomically, that the task is still completed and still old enough.
//
// Only the server the store elects runs it (TaskStore::LeadsSweepers: one
// replica of several); the others ask again every leader_check.
//
// One thread, on the injected clock. A round reads the oldest completed
// tasks (at most `batch`, through the completedAt index: only what is due
// is read, however many tasks there are), deletes those past the age, and
// waits for their commit. A full round is followed by another after a
// pause as long as the round took (on the clock): a backlog (retention
// turned on for an old database) takes about half of the writer's time at
// most, and callers' writes queue behind at most one small round.
// Otherwise the thread sleeps until the oldest remaining completed task
// comes of age, but never longer than `period` (so a task goes at most a
// period after its time, also if a clock jump or a write the thread did
// not see changed the picture).
//
//   Retention retention(options);   // options.age > 0
//   retention.Start(store);
//   ...
//   retention.Stop();                // before the store closes
//
// Thread-safe.
#ifndef TASKD_SERVER_RETENTION_H_
#define TASKD_SERVER_RETENTION_H_

#include <cstdint>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "storage/task_store.h"

namespace taskd {

struct RetentionOptions {
  // Completed tasks older than this are deleted. Must be > 0.
  absl::Duration age = absl::Hours(24);
  // Where the time is read and slept on. Not owned; must outlive it.
  Clock* clock = Clock::Real();
  // Tasks deleted per round (in one group commit, with other writes):
  // small, since writes that come meanwhile wait for the round's commit.
  // Default 32.
  int batch = 32;
  // The longest sleep between rounds: a tenth of `age`, at most a minute
  // and at least 100 ms, if zero (the default).
  absl::Duration period = absl::ZeroDuration();
  // After a store error, wait this long before the next round. Default 1 s.
  absl::Duration retry_after = absl::Seconds(1);
  // On a server that does not lead the sweepers (TaskStore::LeadsSweepers,
  // several replicas), how often it asks again. Default 1 s.
  absl::Duration leader_check = absl::Seconds(1);
  // Told of each task deleted, after its commit, on a thread of the
  // store's (for logs and metrics); must be quick. May be empty.
  std::function<void(const Task& deleted)> on_delete;
};

class Retention {
 public:
  explicit Retention(const RetentionOptions& options);
  Retention(const Retention&) = delete;
  Retention& operator=(const Retention&) = delete;
  // Calls Stop().
  ~Retention();

  // Starts the thread on `store` (not owned; it must stay open until Stop()
  // returns). Once.
  void Start(TaskStore* store);
  // Stops the thread after the round in progress. Idempotent.
  void Stop();

  // The sleep between rounds in effect (see RetentionOptions::period).
  absl::Duration period() const { return period_; }
  // Tasks deleted so far; rounds run so far.
  int64_t deleted();
  int64_t rounds();

 private:
  void Loop();
  // One round: deletes up to `batch` tasks completed before `cutoff`.
  // Returns how many it found due (-1 on a store error) and sets *next to
  // when the oldest completed task left comes of age (InfiniteFuture if
  // none is known).
  int Round(absl::Time now, absl::Time* next);

  const RetentionOptions options_;
  const absl::Duration period_;
  TaskStore* store_ = nullptr;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t deleted_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t rounds_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace taskd

#endif  // TASKD_SERVER_RETENTION_H_
