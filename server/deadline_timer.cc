#include "server/deadline_timer.h"

#include "base/thread_name.h"

namespace taskd {

DeadlineTimer::DeadlineTimer(Clock* clock)
    : clock_(clock), thread_([this] { Loop(); }) {}

DeadlineTimer::~DeadlineTimer() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

DeadlineTimer::Id DeadlineTimer::Schedule(absl::Time when,
                                          std::function<void()> callback) {
  absl::MutexLock lock(&mu_);
  Id id = next_id_++;
  queue_.emplace(std::make_pair(when, id), std::move(callback));
  when_.emplace(id, when);
  return id;
}

bool DeadlineTimer::Cancel(Id id) {
  absl::MutexLock lock(&mu_);
  auto it = when_.find(id);
  if (it == when_.end()) return false;
  queue_.erase(std::make_pair(it->second, id));
  when_.erase(it);
  return true;
}

size_t DeadlineTimer::pending() {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

void DeadlineTimer::Loop() {
  SetThreadName("taskd-deadlines");
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    absl::Time now = clock_->Now();
    if (!queue_.empty() && queue_.begin()->first.first <= now) {
      auto first = queue_.begin();
      std::function<void()> callback = std::move(first->second);
      when_.erase(first->first.second);
      queue_.erase(first);
      mu_.Unlock();
      callback();
      mu_.Lock();
      continue;
    }
    // Sleep until the first deadline, a new (possibly earlier) one, or stop.
    absl::Time wake =
        queue_.empty() ? absl::InfiniteFuture() : queue_.begin()->first.first;
    size_t size = queue_.size();
    auto changed = [this, size, wake]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stop_ || queue_.size() != size ||
             (!queue_.empty() && queue_.begin()->first.first < wake);
    };
    clock_->AwaitWithDeadline(&mu_, absl::Condition(&changed), wake);
  }
}

}  // namespace taskd
