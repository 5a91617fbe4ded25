// Clock: where every layer of taskd reads the time, so that tests control it.
//
//   taskd::FakeClock clock(absl::FromUnixSeconds(1'700'000'000));
//   store_options.clock = &clock;
//   clock.Advance(absl::Hours(1));  // "an hour later", without sleeping
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

  // The process-wide wall clock. Never null; not owned by the caller.
  static Clock* Real();
};

// A clock that moves only when told to.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start) : now_(start) {}

  absl::Time Now() override;
  void Advance(absl::Duration d);
  void Set(absl::Time t);

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace taskd

#endif  // TASKD_BASE_CLOCK_H_
