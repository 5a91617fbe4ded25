#include "server/deadline_timer.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace taskd {
namespace {

TEST(DeadlineTimerTest, RunsCallbacksInDeadlineOrderAfterTheirTime) {
  DeadlineTimer timer;
  absl::Mutex mu;
  std::vector<int> order;
  std::vector<absl::Duration> late;
  absl::Notification done;
  absl::Time start = absl::Now();
  auto at = [&](int which, absl::Duration after) {
    timer.Schedule(start + after, [&, which, after] {
      absl::MutexLock lock(&mu);
      order.push_back(which);
      late.push_back(absl::Now() - (start + after));
      if (order.size() == 3) done.Notify();
    });
  };
  at(3, absl::Milliseconds(90));
  at(1, absl::Milliseconds(10));
  at(2, absl::Milliseconds(50));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  absl::MutexLock lock(&mu);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  for (absl::Duration d : late) EXPECT_GE(d, absl::ZeroDuration());
  EXPECT_EQ(timer.pending(), 0u);
}

// The tests below step a FakeClock instead of sleeping.
constexpr absl::Time kStart = absl::FromUnixSeconds(1'700'000'000);

TEST(DeadlineTimerTest, ACallbackRunsOnlyWhenTheClockPassesItsTime) {
  FakeClock clock(kStart);
  DeadlineTimer timer(&clock);
  absl::Notification ran;
  timer.Schedule(kStart + absl::Hours(1), [&] { ran.Notify(); });
  EXPECT_FALSE(ran.WaitForNotificationWithTimeout(absl::Milliseconds(50)));
  clock.Advance(absl::Minutes(59));
  EXPECT_FALSE(ran.WaitForNotificationWithTimeout(absl::Milliseconds(50)));
  EXPECT_EQ(timer.pending(), 1u);
  clock.Advance(absl::Minutes(1));
  EXPECT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(timer.pending(), 0u);
}

TEST(DeadlineTimerTest, ACancelledCallbackNeverRuns) {
  FakeClock clock(kStart);
  DeadlineTimer timer(&clock);
  std::atomic<int> runs{0};
  DeadlineTimer::Id id = timer.Schedule(kStart + absl::Milliseconds(50),
                                        [&] { runs.fetch_add(1); });
  EXPECT_TRUE(timer.Cancel(id));
  EXPECT_FALSE(timer.Cancel(id));  // once only
  absl::Notification later;
  timer.Schedule(kStart + absl::Milliseconds(100), [&] { later.Notify(); });
  clock.Advance(absl::Seconds(1));
  ASSERT_TRUE(later.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(runs.load(), 0);
}

TEST(DeadlineTimerTest, CancelAfterItRanReturnsFalse) {
  FakeClock clock(kStart);
  DeadlineTimer timer(&clock);
  absl::Notification ran;
  DeadlineTimer::Id id =
      timer.Schedule(absl::InfinitePast(), [&] { ran.Notify(); });
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(timer.Cancel(id));
}

TEST(DeadlineTimerTest, AnEarlierDeadlineScheduledLaterWakesTheTimer) {
  FakeClock clock(kStart);
  DeadlineTimer timer(&clock);
  timer.Schedule(kStart + absl::Hours(1), [] {});
  absl::Notification ran;
  timer.Schedule(kStart + absl::Milliseconds(10), [&] { ran.Notify(); });
  clock.Advance(absl::Seconds(1));
  EXPECT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(timer.pending(), 1u);
  // Destroying the timer with a callback pending does not run it.
}

}  // namespace
}  // namespace taskd
