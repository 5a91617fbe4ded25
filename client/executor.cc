#include "client/executor.h"

#include <thread>
#include <utility>

#include "absl/synchronization/notification.h"
#include "base/error_details.h"
#include "query/task_fields.h"

namespace taskd {
namespace {

using tasks::v1::Task;

bool Retryable(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status);
}

// The task is no longer this executor's: its lease was lost (a timeout, a
// forced cancel, a move by someone else) or it was deleted.
bool Lost(const absl::Status& status) {
  return absl::IsFailedPrecondition(status) || absl::IsNotFound(status);
}

}  // namespace

void TaskRun::SetProgress(int64_t current, int64_t total) {
  absl::MutexLock lock(&mu_);
  progress_.set_current(current);
  progress_.set_total(total);
  progress_set_ = true;
}

bool TaskRun::LatestProgress(Task::Progress* progress) {
  absl::MutexLock lock(&mu_);
  if (!progress_set_) return false;
  *progress = progress_;
  return true;
}

Executor::Executor(std::shared_ptr<grpc::Channel> channel,
                   const ExecutorOptions& options)
    : options_(options), client_(std::move(channel), options.client) {}

void Executor::Stop() {
  stopping_ = true;
  absl::MutexLock lock(&acquire_mu_);
  if (acquiring_ != nullptr) acquiring_->TryCancel();
}

absl::Status Executor::Run(const Work& work) {
  if (options_.executor_id.empty()) {
    return absl::InvalidArgumentError("executor_id is required");
  }
  absl::Duration wait = options_.wait;
  while (!stopping_) {
    if (options_.max_tasks > 0 && tasks_done_ >= options_.max_tasks) break;
    absl::StatusOr<std::optional<Task>> task;
    {
      grpc::ClientContext context;
      {
        absl::MutexLock lock(&acquire_mu_);
        if (stopping_) break;
        acquiring_ = &context;
      }
      task = client_.Acquire(options_.executor_id, options_.filter, wait,
                             &context);
      absl::MutexLock lock(&acquire_mu_);
      acquiring_ = nullptr;
    }
    if (!task.ok() && stopping_) break;  // cancelled by Stop()
    if (!task.ok()) {
      absl::Duration most;
      if (ReasonOf(task.status()) == "WAIT_TOO_LONG" &&
          absl::ParseDuration(ReasonMetadata(task.status(), "max_wait"),
                              &most) &&
          most < wait) {
        wait = most;  // the server's longest wait
        continue;
      }
      if (!Retryable(task.status())) return task.status();
      absl::SleepFor(options_.retry_after);
      continue;
    }
    if (!task->has_value()) continue;  // nothing within the wait
    if (absl::Status s = RunOne(**std::move(task), work); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Executor::RunOne(Task acquired, const Work& work) {
  const std::string id = acquired.id();
  const std::string lease = acquired.lease_token();
  auto report = [&](const Task& task, const absl::Status& status) {
    ++tasks_done_;
    if (options_.on_done) options_.on_done(task, status);
  };
  absl::StatusOr<Task> started = client_.Start(id, lease);
  for (int attempt = 0; !started.ok() && Retryable(started.status()) &&
                        attempt < 5 && !stopping_;
       ++attempt) {
    absl::SleepFor(options_.retry_after);
    started = client_.Start(id, lease);
  }
  if (!started.ok()) {
    // The lease ran out before the start (ack timeout), a forced cancel,
    // or the task was deleted: it is no longer ours. Or taskd stayed out of
    // reach: the ack timeout gives the task back to the queue.
    if (Lost(started.status()) || Retryable(started.status())) {
      report(acquired, started.status());
      return absl::OkStatus();
    }
    return started.status();
  }
  TaskRun run(*started, &stopping_);
  absl::Duration interval = DurationOf(started->heart_beat_interval());
  if (interval <= absl::ZeroDuration()) interval = options_.default_heartbeat;
  absl::Notification finished;
  std::thread heartbeats([&] {
    while (!finished.WaitForNotificationWithTimeout(interval)) {
      // The latest progress goes with every heartbeat: taskd writes a
      // report only now and then (--progress_interval) and drops the
      // others, so the last one must come again.
      Task::Progress progress;
      bool with_progress = run.LatestProgress(&progress);
      absl::StatusOr<tasks::v1::HeartbeatTaskResponse> answer =
          client_.Heartbeat(id, lease, with_progress ? &progress : nullptr);
      if (answer.ok()) {
        if (answer->cancel_requested()) run.cancel_requested_ = true;
      } else if (Lost(answer.status())) {
        run.lost_ = answer.status();
        run.lease_lost_ = true;
        return;
      }  // else: a transient error; the next heartbeat tries again
    }
  });
  Task::ResultCode result = work(run);
  finished.Notify();
  heartbeats.join();
  if (run.lease_lost()) {
    report(*started, run.lost_);
    return absl::OkStatus();
  }
  if (result == Task::cancelled && !run.cancel_requested()) {
    // A cancel asked after the last heartbeat: ask once more.
    absl::StatusOr<tasks::v1::HeartbeatTaskResponse> answer =
        client_.Heartbeat(id, lease);
    if (answer.ok() && answer->cancel_requested()) {
      run.cancel_requested_ = true;
    } else {
      result = Task::error;  // cancelled is only for a requested cancel
    }
  }
  absl::StatusOr<Task> completed = client_.Complete(id, result, lease);
  for (int attempt = 0; !completed.ok() && Retryable(completed.status()) &&
                        attempt < 5 && !stopping_;
       ++attempt) {
    absl::SleepFor(options_.retry_after);
    completed = client_.Complete(id, result, lease);
  }
  report(completed.ok() ? *completed : *started, completed.status());
  if (!completed.ok() && !Lost(completed.status()) &&
      !Retryable(completed.status())) {
    return completed.status();
  }
  return absl::OkStatus();
}

}  // namespace taskd
