// Metrics: taskd's Prometheus metrics. The per-call ones are observed by
// the call log (server/call_log.h).
//
//   taskd_calls_total{method,code}              calls by method and status
//   taskd_call_duration_seconds{method}         latency histogram
//   taskd_watch_streams_open                    open WatchTasks streams
//   taskd_watch_events_delivered_total          events written to streams
//   taskd_store_revision                        the last committed revision
//   taskd_store_commit_duration_seconds         commit latency histogram
//   taskd_store_commit_batch_size               changes per commit
//   taskd_tasks{state}                          tasks by state
//   taskd_tasks_completed{result_code}          completed tasks by result
//   taskd_task_timeouts_total{timeout,outcome}  timeouts fired
//   taskd_retention_deleted_total               tasks deleted for their age
//   taskd_sweeper_leader                        1 where the timers run
//   taskd_task_cache_lookups_total{result}      reads of a task by id: hit
//                                               (task cache) or miss
//
// Served as Prometheus text on http://ADDRESS/metrics when taskd has
// --metrics_listen. Thread-safe.
#ifndef TASKD_SERVER_METRICS_H_
#define TASKD_SERVER_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/task_store.h"

namespace taskd {

class Metrics {
 public:
  Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  void ObserveCall(const std::string& method, const std::string& code,
                   absl::Duration duration);
  void ObserveCommit(absl::Duration duration, size_t batch_size);
  void SetOpenWatchStreams(size_t open);
  void AddEventsDelivered(int64_t events);
  void SetRevision(int64_t revision);
  // taskd_sweeper_leader: whether this server runs the timers (and
  // retention, if on).
  void SetSweeperLeader(bool leads);
  // taskd_task_cache_lookups_total{result}: a read of a task by id
  // (GetTask, Heartbeat) the task cache answered (hit) or not (miss).
  void CountCacheLookup(bool hit);
  // taskd_tasks{state} and taskd_tasks_completed{result_code}: set from a
  // count of the store grouped by state and result_code (at start), then
  // kept up to date from every commit's changes. Exactly once per change,
  // also when changes arrive while the count is taken (another replica's):
  // those before the count are held until it comes, and any change at or
  // below the count's revision is in the count already. Thread-safe; cheap
  // enough for the committing thread.
  void SetTaskCounts(const CountResult& by_state_and_result);
  void CountChanges(const std::vector<Change>& changes);
  // taskd_task_timeouts_total{timeout, outcome}: a timeout taskd fired, and
  // what became of the task (`after`): requeued, timedout, abandoned,
  // cancelled.
  void CountTimeout(const Task& after);
  // taskd_retention_deleted_total: a completed task deleted for its age
  // (--retain_completed).
  void CountRetentionDelete() { retention_deleted_.Increment(); }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& calls_;
  prometheus::Family<prometheus::Histogram>& call_duration_;
  prometheus::Histogram& commit_duration_;
  prometheus::Histogram& commit_batch_;
  prometheus::Gauge& watch_streams_;
  prometheus::Counter& events_delivered_;
  prometheus::Gauge& revision_;
  prometheus::Gauge& sweeper_leader_;
  prometheus::Family<prometheus::Counter>& cache_lookups_;
  prometheus::Counter& cache_hits_;
  prometheus::Counter& cache_misses_;
  prometheus::Family<prometheus::Gauge>& tasks_;
  prometheus::Family<prometheus::Gauge>& completed_;
  prometheus::Family<prometheus::Counter>& timeouts_;
  prometheus::Counter& retention_deleted_;
  // One gauge of tasks_ per state, by the state's number; null for numbers
  // that name no state.
  std::array<prometheus::Gauge*, Task::State_ARRAYSIZE> tasks_by_state_{};
  // One gauge of completed_ per result code, likewise.
  std::array<prometheus::Gauge*, Task::ResultCode_ARRAYSIZE>
      completed_by_result_{};
  // Adds `delta` to the gauges of `task`'s state and result code.
  void AddTask(const Task& task, double delta);
  void CountChange(const Change& change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  // Whether SetTaskCounts ran, and the revision of its count.
  bool counted_ ABSL_GUARDED_BY(mu_) = false;
  int64_t counted_revision_ ABSL_GUARDED_BY(mu_) = 0;
  // Changes that arrived before the count.
  std::vector<Change> early_ ABSL_GUARDED_BY(mu_);
};

}  // namespace taskd

#endif  // TASKD_SERVER_METRICS_H_
