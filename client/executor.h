// Executor: the loop of a program that runs taskd's tasks.
//
//   taskd::ExecutorOptions options;
//   options.executor_id = "agent-7";
//   options.filter = "type = \"backup\"";
//   taskd::Executor executor(channel, options);
//   absl::Status why = executor.Run([](taskd::TaskRun& run) {
//     for (int i = 0; i < 10 && !run.stopping(); ++i) {
//       DoSomeWork(run.task());
//       run.SetProgress(i + 1, 10);
//     }
//     return run.stopping() ? tasks::v1::Task::cancelled
//                           : tasks::v1::Task::ok;
//   });
//
// Each round: AcquireTask (waiting up to `wait` for a task), StartTask with
// the lease, then the work function on this thread while a background
// thread sends heartbeats (with the latest progress set) every heartbeat
// interval. A heartbeat that answers cancel_requested, or LEASE_LOST (taskd
// gave the task away: a missed heartbeat, a forced cancel) or NOT_FOUND
// (the task was deleted), sets stopping(); the work function should return
// soon after. Then CompleteTask with the work's result code (cancelled only
// once cancellation was asked), unless the task was lost: then nothing more
// is sent for it, and on_done hears why.
//
// Run() returns OK after Stop() or after max_tasks tasks, or the first
// error a retry cannot fix (PERMISSION_DENIED, INVALID_ARGUMENT, ...). A
// task lost is not such an error: Run goes on with the next one.
// UNAVAILABLE and DEADLINE_EXCEEDED are retried after `retry_after`. A
// `wait` beyond the server's --max_acquire_wait is lowered to it.
// Stop() may be called from any thread (a signal handler's thread, a
// work function).
#ifndef TASKD_CLIENT_EXECUTOR_H_
#define TASKD_CLIENT_EXECUTOR_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/task_client.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd {

struct ExecutorOptions {
  // Who runs the tasks (the tasks' executor_id). Required.
  std::string executor_id;
  // Which tasks to take (the ListTasks filter language); empty: any.
  std::string filter;
  // How long one AcquireTask waits for a task. Default 30 s.
  absl::Duration wait = absl::Seconds(30);
  // Heartbeats are sent every heart_beat_interval of the task; a task
  // without one still gets one every `default_heartbeat` (so that the
  // executor learns of a cancellation). Default 10 s.
  absl::Duration default_heartbeat = absl::Seconds(10);
  // After UNAVAILABLE or DEADLINE_EXCEEDED, wait this long. Default 1 s.
  absl::Duration retry_after = absl::Seconds(1);
  // Stop after this many tasks; 0: never.
  int64_t max_tasks = 0;
  // The client's options (deadline, bearer token).
  TaskClient::Options client;
  // Told of each task's end (completed, or lease lost); may be empty.
  std::function<void(const tasks::v1::Task& task, const absl::Status& status)>
      on_done;
};

// One task being run, as the work function sees it. Thread-safe.
class TaskRun {
 public:
  // The task as StartTask returned it.
  const tasks::v1::Task& task() const { return task_; }
  // Cancellation was asked, the lease was lost, or the executor is
  // stopping: return soon.
  bool stopping() const {
    return cancel_requested_ || lease_lost_ || executor_stopping_->load();
  }
  bool cancel_requested() const { return cancel_requested_; }
  // The task is no longer this executor's (lease lost, or deleted).
  bool lease_lost() const { return lease_lost_; }
  // Sent with every heartbeat from now on (taskd records it now and then).
  void SetProgress(int64_t current, int64_t total);

 private:
  friend class Executor;
  TaskRun(tasks::v1::Task task, const std::atomic<bool>* executor_stopping)
      : task_(std::move(task)), executor_stopping_(executor_stopping) {}
  // The progress last set, if any.
  bool LatestProgress(tasks::v1::Task::Progress* progress);

  const tasks::v1::Task task_;
  const std::atomic<bool>* const executor_stopping_;
  std::atomic<bool> cancel_requested_{false};
  std::atomic<bool> lease_lost_{false};
  absl::Mutex mu_;
  tasks::v1::Task::Progress progress_ ABSL_GUARDED_BY(mu_);
  bool progress_set_ ABSL_GUARDED_BY(mu_) = false;
  // Why the task was lost (set before lease_lost_).
  absl::Status lost_;
};

class Executor {
 public:
  using Work = std::function<tasks::v1::Task::ResultCode(TaskRun& run)>;

  Executor(std::shared_ptr<grpc::Channel> channel,
           const ExecutorOptions& options);

  absl::Status Run(const Work& work);
  // Ends a waiting AcquireTask at once; a task being worked on is told
  // (stopping()) and still completed with the work's result.
  void Stop();

  int64_t tasks_done() const { return tasks_done_.load(); }

 private:
  // Start, work with heartbeats, complete. An error a retry cannot fix is
  // returned; a task lost or refused is reported to on_done only.
  absl::Status RunOne(tasks::v1::Task task, const Work& work);

  const ExecutorOptions options_;
  TaskClient client_;
  std::atomic<bool> stopping_{false};
  absl::Mutex acquire_mu_;
  // The AcquireTask in flight, for Stop() to cancel.
  grpc::ClientContext* acquiring_ ABSL_GUARDED_BY(acquire_mu_) = nullptr;
  std::atomic<int64_t> tasks_done_{0};
};

}  // namespace taskd

#endif  // TASKD_CLIENT_EXECUTOR_H_
