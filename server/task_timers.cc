#include "server/task_timers.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "base/error_details.h"
#include "base/log.h"
#include "query/task_fields.h"
#include "server/task_lifecycle.h"

namespace taskd {

TaskTimers::TaskTimers(const TaskTimersOptions& options) : options_(options) {}

TaskTimers::~TaskTimers() { Stop(); }

void TaskTimers::Start(TaskStore* store) {
  store_ = store;
  thread_ = std::thread([this] { Loop(); });
}

void TaskTimers::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

int64_t TaskTimers::fired() {
  absl::MutexLock lock(&mu_);
  return fired_;
}

void TaskTimers::OnCommit(const std::vector<Change>& changes) {
  absl::MutexLock lock(&mu_);
  for (const Change& change : changes) {
    if (change.kind != Change::Kind::kDeleted && change.task.has_deadline() &&
        TimeOf(change.task.deadline()) < sleeping_until_) {
      wake_ = true;
      return;
    }
  }
}

void TaskTimers::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      // Set before reading, so that a deadline committed after the read
      // wakes the sleep below.
      wake_ = false;
      sleeping_until_ = absl::InfiniteFuture();
    }
    absl::Time next = absl::InfiniteFuture();
    bool store_failed = false;
    int fired = 0;
    absl::StatusOr<std::vector<Task>> tasks =
        store_->ListByDeadline(std::max(1, options_.batch));
    if (!tasks.ok()) {
      store_failed = true;
    } else {
      fired = FireDue(*tasks, &next, &store_failed);
    }
    if (store_failed) {
      next = options_.clock->Now() + options_.retry_after;
    } else if (fired > 0) {
      continue;  // read again: more may be due, and the next deadline moved
    }
    absl::MutexLock lock(&mu_);
    sleeping_until_ = next;
    auto woken = [this]()
                     ABSL_NO_THREAD_SAFETY_ANALYSIS { return stop_ || wake_; };
    options_.clock->AwaitWithDeadline(&mu_, absl::Condition(&woken), next);
  }
}

int TaskTimers::FireDue(const std::vector<Task>& tasks, absl::Time* next,
                        bool* store_failed) {
  const absl::Time now = options_.clock->Now();
  struct Round {
    absl::Mutex mu;
    int pending = 0;
    int fired = 0;
    bool failed = false;
  };
  auto round = std::make_shared<Round>();
  int due = 0;
  for (const Task& task : tasks) {
    if (TimeOf(task.deadline()) > now) {
      *next = TimeOf(task.deadline());
      break;
    }
    ++due;
    {
      absl::MutexLock lock(&round->mu);
      ++round->pending;
    }
    Clock* clock = options_.clock;
    auto on_fire = options_.on_fire;
    auto before = std::make_shared<Task>();
    TaskMutation fire = [clock, before](const Task& current) {
      *before = current;
      return FireTimeout(current, clock->Now());
    };
    store_->Write(TaskWrite{TaskWrite::Update{task.id(), std::move(fire)}},
                  [round, before, on_fire](absl::StatusOr<Task> result) {
                    if (result.ok() && on_fire) on_fire(*before, *result);
                    absl::MutexLock lock(&round->mu);
                    --round->pending;
                    if (result.ok()) {
                      ++round->fired;
                    } else if (ReasonOf(result.status()) != "NOT_DUE" &&
                               !absl::IsNotFound(result.status())) {
                      // A task that moved on or went away is not a failure.
                      round->failed = true;
                      Log(LogLevel::kWarning, "timeout of a task not fired: %s",
                          result.status().ToString());
                    }
                  });
  }
  absl::MutexLock lock(&round->mu);
  round->mu.Await(absl::Condition(
      +[](int* pending) { return *pending == 0; }, &round->pending));
  {
    absl::MutexLock count(&mu_);
    fired_ += round->fired;
  }
  if (round->failed) *store_failed = true;
  return due;
}

}  // namespace taskd
