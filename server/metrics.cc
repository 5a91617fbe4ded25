#include "server/metrics.h"

#include <string>

#include "tasks/v1/tasks.pb.h"

namespace taskd {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

// Seconds, from 100 us to 10 s.
prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      calls_(BuildCounter()
                 .Name("taskd_calls_total")
                 .Help("Calls by method and status code")
                 .Register(*registry_)),
      call_duration_(BuildHistogram()
                         .Name("taskd_call_duration_seconds")
                         .Help("Call latency by method")
                         .Register(*registry_)),
      commit_duration_(BuildHistogram()
                           .Name("taskd_store_commit_duration_seconds")
                           .Help("Storage commit latency")
                           .Register(*registry_)
                           .Add({}, LatencyBuckets())),
      commit_batch_(BuildHistogram()
                        .Name("taskd_store_commit_batch_size")
                        .Help("Changes per storage transaction")
                        .Register(*registry_)
                        .Add({},
                             prometheus::Histogram::BucketBoundaries{
                                 1, 2, 4, 8, 16, 32, 64, 128, 256, 512})),
      watch_streams_(BuildGauge()
                         .Name("taskd_watch_streams_open")
                         .Help("Open WatchTasks streams")
                         .Register(*registry_)
                         .Add({})),
      events_delivered_(BuildCounter()
                            .Name("taskd_watch_events_delivered_total")
                            .Help("Events written to watch streams")
                            .Register(*registry_)
                            .Add({})),
      revision_(BuildGauge()
                    .Name("taskd_store_revision")
                    .Help("The last committed store revision")
                    .Register(*registry_)
                    .Add({})),
      sweeper_leader_(BuildGauge()
                          .Name("taskd_sweeper_leader")
                          .Help("1 if this server runs the executor timers "
                                "and retention (one replica of several "
                                "does), else 0")
                          .Register(*registry_)
                          .Add({})),
      cache_lookups_(BuildCounter()
                         .Name("taskd_task_cache_lookups_total")
                         .Help("Reads of a task by id (GetTask, Heartbeat) "
                               "answered by the task cache (hit) or the "
                               "database (miss); SQLite only")
                         .Register(*registry_)),
      cache_hits_(cache_lookups_.Add({{"result", "hit"}})),
      cache_misses_(cache_lookups_.Add({{"result", "miss"}})),
      tasks_(BuildGauge()
                 .Name("taskd_tasks")
                 .Help("Tasks by state")
                 .Register(*registry_)),
      completed_(BuildGauge()
                     .Name("taskd_tasks_completed")
                     .Help("Completed tasks by result code")
                     .Register(*registry_)),
      timeouts_(BuildCounter()
                    .Name("taskd_task_timeouts_total")
                    .Help("Timeouts taskd fired, by timeout and outcome")
                    .Register(*registry_)),
      retention_deleted_(BuildCounter()
                             .Name("taskd_retention_deleted_total")
                             .Help("Completed tasks deleted for their age "
                                   "(--retain_completed)")
                             .Register(*registry_)
                             .Add({})) {
  for (int state = 0; state < Task::State_ARRAYSIZE; ++state) {
    if (!Task::State_IsValid(state) || state == Task::STATE_UNSPECIFIED) {
      continue;
    }
    tasks_by_state_[state] = &tasks_.Add(
        {{"state", Task::State_Name(static_cast<Task::State>(state))}});
  }
  for (int code = 0; code < Task::ResultCode_ARRAYSIZE; ++code) {
    if (!Task::ResultCode_IsValid(code) ||
        code == Task::RESULT_CODE_UNSPECIFIED) {
      continue;
    }
    completed_by_result_[code] = &completed_.Add(
        {{"result_code",
          Task::ResultCode_Name(static_cast<Task::ResultCode>(code))}});
  }
}

void Metrics::ObserveCall(const std::string& method, const std::string& code,
                          absl::Duration duration) {
  calls_.Add({{"method", method}, {"code", code}}).Increment();
  call_duration_.Add({{"method", method}}, LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(duration));
}

void Metrics::ObserveCommit(absl::Duration duration, size_t batch_size) {
  commit_duration_.Observe(absl::ToDoubleSeconds(duration));
  commit_batch_.Observe(static_cast<double>(batch_size));
}

void Metrics::SetOpenWatchStreams(size_t open) {
  watch_streams_.Set(static_cast<double>(open));
}

void Metrics::AddEventsDelivered(int64_t events) {
  if (events > 0) events_delivered_.Increment(static_cast<double>(events));
}

void Metrics::SetRevision(int64_t revision) {
  revision_.Set(static_cast<double>(revision));
}

void Metrics::SetSweeperLeader(bool leads) {
  sweeper_leader_.Set(leads ? 1 : 0);
}

void Metrics::CountCacheLookup(bool hit) {
  (hit ? cache_hits_ : cache_misses_).Increment();
}

void Metrics::SetTaskCounts(const CountResult& by_state_and_result) {
  absl::MutexLock lock(&mu_);
  for (prometheus::Gauge* gauge : tasks_by_state_) {
    if (gauge != nullptr) gauge->Set(0);
  }
  for (prometheus::Gauge* gauge : completed_by_result_) {
    if (gauge != nullptr) gauge->Set(0);
  }
  for (const auto& [key, count] : by_state_and_result.groups) {
    Task task;
    task.set_state(static_cast<Task::State>(std::get<int64_t>(key.at(0))));
    task.set_result_code(
        static_cast<Task::ResultCode>(std::get<int64_t>(key.at(1))));
    AddTask(task, static_cast<double>(count));
  }
  counted_ = true;
  counted_revision_ = by_state_and_result.revision;
  for (const Change& change : early_) CountChange(change);
  early_.clear();
}

void Metrics::CountChanges(const std::vector<Change>& changes) {
  absl::MutexLock lock(&mu_);
  for (const Change& change : changes) {
    if (counted_) {
      CountChange(change);
    } else {
      early_.push_back(change);
    }
  }
}

void Metrics::CountChange(const Change& change) {
  if (change.revision <= counted_revision_) return;  // in the count
  if (change.previous.has_value()) AddTask(*change.previous, -1);
  if (change.kind != Change::Kind::kDeleted) AddTask(change.task, +1);
}

void Metrics::AddTask(const Task& task, double delta) {
  const int state = task.state();
  if (state >= 0 && state < Task::State_ARRAYSIZE &&
      tasks_by_state_[state] != nullptr) {
    tasks_by_state_[state]->Increment(delta);
  }
  const int code = task.result_code();
  if (state == Task::completed && code >= 0 &&
      code < Task::ResultCode_ARRAYSIZE &&
      completed_by_result_[code] != nullptr) {
    completed_by_result_[code]->Increment(delta);
  }
}

void Metrics::CountTimeout(const Task& after) {
  std::string outcome = after.state() == Task::completed
                            ? Task::ResultCode_Name(after.result_code())
                            : std::string("requeued");
  timeouts_
      .Add({{"timeout", tasks::v1::TaskTimeout_Name(after.timeout())},
            {"outcome", outcome}})
      .Increment();
}

}  // namespace taskd
