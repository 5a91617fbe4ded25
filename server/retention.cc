#include "server/retention.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/thread_name.h"
#include "query/filter.h"
#include "query/task_fields.h"

namespace taskd {
namespace {

absl::Duration PeriodOf(const RetentionOptions& options) {
  if (options.period > absl::ZeroDuration()) return options.period;
  return std::clamp(options.age / 10, absl::Milliseconds(100),
                    absl::Minutes(1));
}

}  // namespace

Retention::Retention(const RetentionOptions& options)
    : options_(options), period_(PeriodOf(options)) {}

Retention::~Retention() { Stop(); }

void Retention::Start(TaskStore* store) {
  store_ = store;
  thread_ = std::thread([this] { Loop(); });
}

void Retention::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

int64_t Retention::deleted() {
  absl::MutexLock lock(&mu_);
  return deleted_;
}

int64_t Retention::rounds() {
  absl::MutexLock lock(&mu_);
  return rounds_;
}

void Retention::Loop() {
  SetThreadName("taskd-retention");
  Clock* clock = options_.clock;
  while (true) {
    const absl::Time start = clock->Now();
    absl::Time next = absl::InfiniteFuture();
    // Another server runs it: ask again in a while.
    const bool leads = store_->LeadsSweepers();
    const int due = leads ? Round(start, &next) : 0;
    const absl::Time now = clock->Now();
    absl::Time wake;
    if (!leads) {
      wake = now + std::min(period_, options_.leader_check);
    } else if (due < 0) {
      wake = now + options_.retry_after;
    } else if (due >= options_.batch) {
      // More are due: the next round after a pause as long as this one
      // took, so that a backlog takes at most about half of the writer.
      wake = now + (now - start);
    } else {
      wake = std::min(next, now + period_);
    }
    absl::MutexLock lock(&mu_);
    ++rounds_;
    if (stop_) return;
    if (wake > now) {
      clock->AwaitWithDeadline(&mu_, absl::Condition(&stop_), wake);
      if (stop_) return;
    }
  }
}

int Retention::Round(absl::Time now, absl::Time* next) {
  const absl::Duration age = options_.age;
  const absl::Time cutoff = now - age;
  // The oldest completions first, through the completedAt index (which
  // holds only tasks that have one): a round reads what is due and one
  // task more, however many tasks there are.
  static const std::shared_ptr<const FilterExpr> kCompleted = [] {
    absl::StatusOr<std::shared_ptr<const FilterExpr>> filter =
        ParseFilter("completedAt:*");
    return filter.ok() ? *filter : nullptr;
  }();
  ListQuery query;
  query.filter = kCompleted;
  query.order = {{TaskField::kCompletedAt, false}, {TaskField::kId, false}};
  query.limit = options_.batch;
  absl::StatusOr<ListResult> page = store_->List(query);
  if (!page.ok()) {
    Log(LogLevel::kWarning, "retention: cannot read completed tasks: %s",
        page.status().ToString());
    return -1;
  }

  struct Pending {
    absl::Mutex mu;
    int writes = 0;
    int deleted = 0;
    bool failed = false;
  };
  auto pending = std::make_shared<Pending>();
  int due = 0;
  for (const Task& task : page->tasks) {
    const absl::Time completed = TimeOf(task.completed_at());
    if (completed > cutoff) {
      *next = completed + age;
      break;
    }
    if (task.state() != Task::completed) continue;
    ++due;
    {
      absl::MutexLock lock(&pending->mu);
      ++pending->writes;
    }
    // Still completed, and still as old, when the delete applies.
    TaskPrecondition still_due = [cutoff](const Task& current) {
      if (current.state() != Task::completed ||
          TimeOf(current.completed_at()) > cutoff) {
        return absl::FailedPreconditionError("no longer due for retention");
      }
      return absl::OkStatus();
    };
    auto on_delete = options_.on_delete;
    store_->Write(TaskWrite{TaskWrite::Delete{task.id(), std::move(still_due)}},
                  [pending, on_delete](absl::StatusOr<Task> result) {
                    if (result.ok() && on_delete) on_delete(*result);
                    absl::MutexLock lock(&pending->mu);
                    --pending->writes;
                    if (result.ok()) {
                      ++pending->deleted;
                    } else if (!absl::IsNotFound(result.status()) &&
                               !absl::IsFailedPrecondition(result.status())) {
                      // Gone or changed meanwhile is no failure.
                      pending->failed = true;
                      Log(LogLevel::kWarning, "retention: task not deleted: %s",
                          result.status().ToString());
                    }
                  });
  }
  absl::MutexLock lock(&pending->mu);
  pending->mu.Await(absl::Condition(
      +[](int* writes) { return *writes == 0; }, &pending->writes));
  {
    absl::MutexLock count(&mu_);
    deleted_ += pending->deleted;
  }
  if (pending->deleted > 0) {
    Log(LogLevel::kDebug, "retention: deleted %d tasks completed before %s",
        pending->deleted, absl::FormatTime(cutoff));
  }
  return pending->failed ? -1 : due;
}

}  // namespace taskd
