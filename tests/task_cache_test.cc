// TaskCache (storage/task_cache.h): least recently used out first, by id,
// and nothing read in a generation that has ended is kept.
#include "storage/task_cache.h"

#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace taskd {
namespace {

using tasks::v1::Task;

Task Make(const std::string& id, int64_t revision) {
  Task task;
  task.set_id(id);
  task.set_uuid(id + "-uuid");
  task.set_revision(revision);
  return task;
}

// What `n` tasks like Make's (ids of one character) count as.
size_t Room(int n) {
  const Task task = Make("x", 1);
  return n * (1 + task.SerializeAsString().size() + TaskCache::kEntryOverhead);
}

TEST(TaskCacheTest, KeepsWhatWasInsertedById) {
  TaskCache cache(Room(8));
  EXPECT_FALSE(cache.Lookup("a").has_value());
  cache.Insert(cache.generation(), Make("a", 3));
  std::optional<Task> hit = cache.Lookup("a");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->revision(), 3);
  EXPECT_EQ(hit->uuid(), "a-uuid");
  EXPECT_FALSE(cache.Lookup("a-uuid").has_value()) << "by id only";
}

TEST(TaskCacheTest, ARecentlyUsedTaskOutlivesAnOlderOne) {
  TaskCache cache(Room(8));
  for (const char* id : {"a", "b", "c", "d", "e", "f", "g", "h"}) {
    cache.Insert(cache.generation(), Make(id, 1));
  }
  EXPECT_EQ(cache.bytes(), Room(8));
  ASSERT_TRUE(cache.Lookup("a").has_value());  // a is now the newest
  cache.Insert(cache.generation(), Make("i", 3));
  EXPECT_EQ(cache.size(), 8u);
  EXPECT_EQ(cache.bytes(), Room(8));
  EXPECT_TRUE(cache.Lookup("a").has_value());
  EXPECT_FALSE(cache.Lookup("b").has_value()) << "the least recently used";
  EXPECT_TRUE(cache.Lookup("c").has_value());
  EXPECT_TRUE(cache.Lookup("i").has_value());
}

TEST(TaskCacheTest, ATaskOverAnEighthOfTheBudgetIsNotKept) {
  TaskCache cache(Room(8));
  Task big = Make("a", 1);
  big.set_type(std::string(200, 'x'));
  cache.Insert(cache.generation(), big);
  EXPECT_EQ(cache.size(), 0u);
  cache.Insert(cache.generation(), Make("b", 1));
  EXPECT_EQ(cache.size(), 1u);
  cache.Invalidate({"b"});
  EXPECT_EQ(cache.bytes(), 0u);
}

TEST(TaskCacheTest, AReadFromBeforeAnInvalidationIsNotKept) {
  TaskCache cache(Room(8));
  cache.Insert(cache.generation(), Make("a", 1));
  const uint64_t before = cache.generation();
  // A write of b commits while a reader holds b's older version.
  cache.Invalidate({"b"});
  cache.Insert(before, Make("b", 1));
  EXPECT_FALSE(cache.Lookup("b").has_value());
  // Ids not written stay.
  EXPECT_TRUE(cache.Lookup("a").has_value());
  cache.Invalidate({"a"});
  EXPECT_FALSE(cache.Lookup("a").has_value());
  cache.Insert(cache.generation(), Make("b", 2));
  EXPECT_EQ(cache.Lookup("b")->revision(), 2);
}

TEST(TaskCacheTest, CapacityZeroKeepsNothing) {
  TaskCache cache(0);
  cache.Insert(cache.generation(), Make("a", 1));
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_FALSE(cache.Lookup("a").has_value());
}

// Under TSan: lookups, inserts and invalidations from several threads.
TEST(TaskCacheTest, ThreadsShareOneCache) {
  TaskCache cache(Room(16));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, t] {
      for (int i = 0; i < 2000; ++i) {
        const std::string id = std::to_string((i * 7 + t) % 40);
        if (t == 0 && i % 5 == 0) {
          cache.Invalidate({id});
        } else if (!cache.Lookup(id).has_value()) {
          cache.Insert(cache.generation(), Make(id, i));
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_LE(cache.bytes(), Room(16));
}

}  // namespace
}  // namespace taskd
