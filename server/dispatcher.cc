#include "server/dispatcher.h"

#include <utility>

#include "base/error_details.h"
#include "query/order_by.h"
#include "query/task_fields.h"

namespace taskd {
namespace {

std::shared_ptr<const FilterExpr> Compare(TaskField field, Comparator cmp,
                                          FieldValue value) {
  auto expr = std::make_shared<FilterExpr>();
  expr->kind = FilterExpr::Kind::kCompare;
  expr->field = field;
  expr->cmp = cmp;
  expr->value = std::move(value);
  return expr;
}

// A newly enqueued task: created, or moved back to enqueued.
bool Enqueues(const Change& change) {
  return change.kind != Change::Kind::kDeleted &&
         change.task.state() == Task::enqueued &&
         (!change.previous.has_value() ||
          change.previous->state() != Task::enqueued);
}

}  // namespace

struct Dispatcher::Waiter {
  enum class State { kClaiming, kParked, kDone };

  Waiter(AcquireSpec spec, Done done)
      : spec(std::move(spec)), done(std::move(done)) {}

  AcquireSpec spec;
  Done done;
  absl::Time wait_until = absl::InfinitePast();
  // Guarded by Dispatcher::mu_.
  State state = State::kClaiming;
  // A matching task was enqueued while the claim was in flight: if the
  // claim finds nothing, claim again rather than park.
  bool missed = false;
  DeadlineTimer::Id timer = 0;
};

Dispatcher::Dispatcher(const DispatcherOptions& options)
    : options_(options), timer_(options.clock) {}

Dispatcher::~Dispatcher() { Shutdown(); }

void Dispatcher::Attach(TaskStore* store) { store_ = store; }

size_t Dispatcher::waiting() {
  absl::MutexLock lock(&mu_);
  size_t parked = 0;
  for (const auto& waiter : waiters_) {
    if (waiter->state == Waiter::State::kParked) ++parked;
  }
  return parked;
}

void Dispatcher::Acquire(AcquireSpec spec, Done done) {
  auto waiter = std::make_shared<Waiter>(std::move(spec), std::move(done));
  if (waiter->spec.wait > absl::ZeroDuration()) {
    waiter->wait_until = options_.clock->Now() + waiter->spec.wait;
    absl::ReleasableMutexLock lock(&mu_);
    if (shut_down_) {
      lock.Release();
      waiter->done(absl::UnavailableError("taskd is shutting down"));
      return;
    }
    // Listed from the start (also while claiming), so that a task enqueued
    // while the first claim is in flight is not missed.
    waiters_.push_back(waiter);
    waiter->timer = timer_.Schedule(waiter->wait_until, [this, waiter] {
      // A claim in flight answers by itself (it sees the wait has ended).
      if (TakeParked(waiter)) waiter->done(std::optional<Task>());
    });
  }
  Claim(std::move(waiter));
}

void Dispatcher::Claim(std::shared_ptr<Waiter> waiter) {
  if (waiter->spec.gone && waiter->spec.gone()) {
    Finish(waiter, absl::CancelledError("the caller is gone"));
    return;
  }
  TaskWrite::Claim claim;
  claim.pick = [this, filter = waiter->spec.filter](const TaskLister& list) {
    return Pick(filter, list);
  };
  claim.mutation = waiter->spec.assign;
  store_->Write(
      TaskWrite{std::move(claim)}, [this, waiter](absl::StatusOr<Task> result) {
        if (result.ok()) {
          Finish(waiter, std::optional<Task>(*std::move(result)));
          return;
        }
        if (ReasonOf(result.status()) != "NOTHING_TO_CLAIM") {
          Finish(waiter, result.status());
          return;
        }
        bool again = false;
        {
          absl::MutexLock lock(&mu_);
          bool may_wait = waiter->wait_until > options_.clock->Now() &&
                          !shut_down_ && waiter->state != Waiter::State::kDone;
          if (may_wait && !waiter->missed) {
            waiter->state = Waiter::State::kParked;
            return;
          }
          again = may_wait;
          waiter->missed = false;
        }
        if (!again) {
          Finish(waiter, std::optional<Task>());
          return;
        }
        Claim(waiter);
      });
}

void Dispatcher::Finish(const std::shared_ptr<Waiter>& waiter,
                        absl::StatusOr<std::optional<Task>> result) {
  {
    absl::MutexLock lock(&mu_);
    if (waiter->state == Waiter::State::kDone) return;
    waiter->state = Waiter::State::kDone;
    waiters_.remove(waiter);
  }
  if (waiter->timer != 0) timer_.Cancel(waiter->timer);
  waiter->done(std::move(result));
}

bool Dispatcher::TakeParked(const std::shared_ptr<Waiter>& waiter) {
  absl::MutexLock lock(&mu_);
  if (waiter->state != Waiter::State::kParked) return false;
  waiter->state = Waiter::State::kDone;
  waiters_.remove(waiter);
  return true;
}

void Dispatcher::OnCommit(const std::vector<Change>& changes) {
  std::vector<std::shared_ptr<Waiter>> wake;
  {
    absl::MutexLock lock(&mu_);
    if (waiters_.empty()) return;
    for (const Change& change : changes) {
      if (!Enqueues(change)) continue;
      // One acquire per enqueued task: the oldest whose filter matches.
      for (const std::shared_ptr<Waiter>& waiter : waiters_) {
        if (waiter->state == Waiter::State::kDone ||
            !Matches(waiter->spec.filter.get(), change.task)) {
          continue;
        }
        if (waiter->state == Waiter::State::kClaiming) {
          if (waiter->missed) continue;  // it claims again anyway
          waiter->missed = true;
        } else {
          waiter->state = Waiter::State::kClaiming;
          wake.push_back(waiter);
        }
        break;
      }
    }
  }
  for (std::shared_ptr<Waiter>& waiter : wake) Claim(std::move(waiter));
}

void Dispatcher::Shutdown() {
  std::vector<std::shared_ptr<Waiter>> parked;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    for (const auto& waiter : waiters_) {
      if (waiter->state == Waiter::State::kParked) parked.push_back(waiter);
    }
  }
  // One by one, so that a waiter woken meanwhile is left to its claim.
  for (const auto& waiter : parked) {
    if (!TakeParked(waiter)) continue;
    timer_.Cancel(waiter->timer);
    waiter->done(std::optional<Task>());
  }
}

absl::StatusOr<std::optional<Task>> Dispatcher::Pick(
    const std::shared_ptr<const FilterExpr>& filter, const TaskLister& list) {
  auto enqueued = AndFilters(
      filter, EqualsFilter(TaskField::kState, int64_t{Task::enqueued}));

  // The best priority with an enqueued task that matches.
  ListQuery best;
  best.filter = enqueued;
  best.order = {{TaskField::kPriority, true},
                {TaskField::kEnqueuedAt, false},
                {TaskField::kId, false}};
  best.limit = 1;
  absl::StatusOr<ListResult> top = list(best);
  if (!top.ok()) return top.status();
  if (top->tasks.empty()) return std::optional<Task>();
  const int64_t priority = PriorityRank(top->tasks.front().priority());

  // Within it, the oldest task of the tenant after the one served last
  // (wrapping around to the first tenant).
  std::string last;
  {
    absl::MutexLock lock(&turns_mu_);
    last = last_tenant_[priority];
  }
  ListQuery turn;
  turn.order = {{TaskField::kTenantId, false},
                {TaskField::kEnqueuedAt, false},
                {TaskField::kId, false}};
  turn.limit = 1;
  auto at_priority = AndFilters(
      enqueued, EqualsFilter(TaskField::kPriority, FieldValue(priority)));
  std::optional<Task> chosen;
  for (bool after_last : {true, false}) {
    if (!after_last && last.empty()) break;  // the first pass saw them all
    turn.filter = after_last && !last.empty()
                      ? AndFilters(at_priority, Compare(TaskField::kTenantId,
                                                        Comparator::kGt, last))
                      : at_priority;
    absl::StatusOr<ListResult> next = list(turn);
    if (!next.ok()) return next.status();
    if (!next->tasks.empty()) {
      chosen = std::move(next->tasks.front());
      break;
    }
  }
  if (!chosen.has_value()) chosen = std::move(top->tasks.front());
  {
    absl::MutexLock lock(&turns_mu_);
    last_tenant_[priority] = chosen->tenant_id();
  }
  return chosen;
}

}  // namespace taskd
