// Metrics (server/metrics.h): the task counts stay exact when changes reach
// them while the starting count is taken, as another replica's do.
#include "server/metrics.h"

#include <prometheus/text_serializer.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace taskd {
namespace {

using ::testing::HasSubstr;

std::string Text(Metrics& metrics) {
  return prometheus::TextSerializer().Serialize(metrics.registry()->Collect());
}

Change Created(int64_t revision, const std::string& id) {
  Change change;
  change.kind = Change::Kind::kCreated;
  change.revision = revision;
  change.task.set_id(id);
  change.task.set_state(Task::enqueued);
  return change;
}

CountResult EnqueuedCount(int64_t count, int64_t revision) {
  CountResult result;
  result.groups[GroupKey{int64_t{Task::enqueued},
                         int64_t{Task::RESULT_CODE_UNSPECIFIED}}] = count;
  result.revision = revision;
  return result;
}

TEST(MetricsTest, ChangesAroundTheStartingCountAreCountedOnce) {
  Metrics metrics;
  // Revisions 2, 3 and 4 reach the metrics before the starting count is
  // set; the count is a snapshot at revision 3 (so it holds 1..3).
  metrics.CountChanges({Created(2, "b"), Created(3, "c"), Created(4, "d")});
  metrics.SetTaskCounts(EnqueuedCount(3, 3));
  EXPECT_THAT(Text(metrics), HasSubstr("taskd_tasks{state=\"enqueued\"} 4"));
  // A change at or below the count's revision delivered late is in the
  // count already; one after it counts.
  metrics.CountChanges({Created(1, "a")});
  EXPECT_THAT(Text(metrics), HasSubstr("taskd_tasks{state=\"enqueued\"} 4"));
  metrics.CountChanges({Created(5, "e")});
  EXPECT_THAT(Text(metrics), HasSubstr("taskd_tasks{state=\"enqueued\"} 5"));
}

TEST(MetricsTest, TheSweeperGaugeFollowsTheLead) {
  Metrics metrics;
  metrics.SetSweeperLeader(true);
  EXPECT_THAT(Text(metrics), HasSubstr("taskd_sweeper_leader 1"));
  metrics.SetSweeperLeader(false);
  EXPECT_THAT(Text(metrics), HasSubstr("taskd_sweeper_leader 0"));
}

TEST(MetricsTest, CacheLookupsAreCountedByResult) {
  Metrics metrics;
  metrics.CountCacheLookup(true);
  metrics.CountCacheLookup(false);
  metrics.CountCacheLookup(true);
  EXPECT_THAT(Text(metrics),
              HasSubstr("taskd_task_cache_lookups_total{result=\"hit\"} 2"));
  EXPECT_THAT(Text(metrics),
              HasSubstr("taskd_task_cache_lookups_total{result=\"miss\"} 1"));
}

}  // namespace
}  // namespace taskd
