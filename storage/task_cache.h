// TaskCache: the tasks Get read most recently, by id, kept as their encoded
// bytes, so that a task read again is answered without the database.
//
//   TaskCache cache(8 << 20);  // bytes
//   if (std::optional<Task> hit = cache.Lookup(id)) return *hit;
//   const uint64_t generation = cache.generation();  // before the read
//   ... read `task` in a snapshot that starts after this point ...
//   cache.Insert(generation, task);
//
//   // The writer, after each commit (or failed commit) of its batch:
//   cache.Invalidate(ids_written);
//
// For a store that is its database's only writer: every write that changes
// a task row must be followed by Invalidate of its id once it has
// committed, before the write's caller learns of the commit. A task read in
// an older snapshot is then never kept: Invalidate starts a new generation,
// and Insert keeps a task only if no generation began since the caller's
// read started, so a cached task is always the committed one. (Only a read
// that overlaps a commit is not kept: tens of microseconds against commits
// milliseconds apart.) Least recently used tasks go first when the cache
// would pass its budget. Thread-safe.
#ifndef TASKD_STORAGE_TASK_CACHE_H_
#define TASKD_STORAGE_TASK_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd {

class TaskCache {
 public:
  // What one kept task costs beyond its id and encoded bytes (the list
  // node, the map's slot, the strings' headers): an estimate.
  static constexpr size_t kEntryOverhead = 128;

  // Keeps tasks up to `budget_bytes` in all, each counted as its encoded
  // size, its id's and kEntryOverhead; a task bigger than an eighth of the
  // budget is not kept. 0 keeps none (every call is a miss).
  explicit TaskCache(size_t budget_bytes) : budget_(budget_bytes) {}
  TaskCache(const TaskCache&) = delete;
  TaskCache& operator=(const TaskCache&) = delete;

  // The cached task with this id (not uuid), if any.
  std::optional<tasks::v1::Task> Lookup(absl::string_view id);

  // To read before the read whose result goes to Insert.
  uint64_t generation();

  // Keeps `task` (under task.id()) unless a generation began after
  // `generation` was read.
  void Insert(uint64_t generation, const tasks::v1::Task& task);

  // Drops these ids and begins a new generation.
  void Invalidate(const std::vector<std::string>& ids);

  // For tests: tasks kept now, and the bytes they are counted as.
  size_t size();
  size_t bytes();

 private:
  using Entry = std::pair<std::string, std::string>;  // id, encoded task

  static size_t Cost(const Entry& entry) {
    return entry.first.size() + entry.second.size() + kEntryOverhead;
  }

  const size_t budget_;
  absl::Mutex mu_;
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  // Most recently used first.
  std::list<Entry> entries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<absl::string_view, std::list<Entry>::iterator> by_id_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace taskd

#endif  // TASKD_STORAGE_TASK_CACHE_H_
