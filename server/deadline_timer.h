// DeadlineTimer: runs callbacks at given times, on a thread of its own.
//
// TaskService uses it to end write calls that carry no deadline of their own
// once the server's default deadline has passed:
//
//   DeadlineTimer timer(clock);
//   DeadlineTimer::Id id = timer.Schedule(clock->Now() + absl::Seconds(30),
//                                         [] { /* give up */ });
//   ...
//   if (timer.Cancel(id)) { /* it will not run */ }
//
// A callback runs at most once, after its time, on the timer's thread; it
// must be quick (the next ones wait for it) and must not call the timer.
// Callbacks not yet run when the timer is destroyed never run. Times are
// those of the clock the timer was given: with a FakeClock, a callback runs
// once the clock is advanced past its time.
//
// Thread-safe.
#ifndef TASKD_SERVER_DEADLINE_TIMER_H_
#define TASKD_SERVER_DEADLINE_TIMER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"

namespace taskd {

class DeadlineTimer {
 public:
  using Id = uint64_t;

  // `clock` (not owned) must outlive the timer.
  explicit DeadlineTimer(Clock* clock = Clock::Real());
  DeadlineTimer(const DeadlineTimer&) = delete;
  DeadlineTimer& operator=(const DeadlineTimer&) = delete;
  ~DeadlineTimer();

  // Runs `callback` at `when` (at once if `when` has passed). Never 0.
  Id Schedule(absl::Time when, std::function<void()> callback);
  // True if the callback had not run and now never will; false if it has
  // run, is running, or `id` is unknown.
  bool Cancel(Id id);
  // Callbacks scheduled and not yet run or cancelled.
  size_t pending();

 private:
  void Loop();

  Clock* const clock_;
  absl::Mutex mu_;
  std::map<std::pair<absl::Time, Id>, std::function<void()>> queue_
      ABSL_GUARDED_BY(mu_);
  std::map<Id, absl::Time> when_ ABSL_GUARDED_BY(mu_);
  Id next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace taskd

#endif  // TASKD_SERVER_DEADLINE_TIMER_H_
