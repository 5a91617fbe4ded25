// Clock: where every layer of taskd reads the time, so that tests control it.
//
//   taskd::FakeClock clock(absl::FromUnixSeconds(1'700'000'000));
//   store_options.clock = &clock;
//   clock.Advance(absl::Hours(1));  // "an hour later", without sleeping
//
// A thread that sleeps until a time (a timer, a dispatcher's tick) sleeps
// through the clock too, with AwaitWithDeadline, so that advancing a
// FakeClock wakes it as the passing of real time would.
//
// Durations that measure the machine (call latency, commit time) are read
// from absl::Now() directly: they are observations, not decisions.
//
// Implementations are thread-safe.
#ifndef TASKD_BASE_CLOCK_H_
#define TASKD_BASE_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace taskd {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;

  // With `mu` held, waits until `condition` holds or Now() reaches
  // `deadline`, as absl::Mutex::AwaitWithDeadline does; `mu` is held again
  // on return. Returns whether `condition` holds.
  virtual bool AwaitWithDeadline(absl::Mutex* mu,
                                 const absl::Condition& condition,
                                 absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) = 0;

  // The process-wide wall clock. Never null; not owned by the caller.
  static Clock* Real();
};

// A clock that moves only when told to.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start) : now_(start) {}

  absl::Time Now() override;
  // Waits until `condition` holds or this clock reaches `deadline`; it
  // notices a change of the clock within about a millisecond of real time.
  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& condition,
                         absl::Time deadline) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void Advance(absl::Duration d);
  void Set(absl::Time t);

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace taskd

#endif  // TASKD_BASE_CLOCK_H_
