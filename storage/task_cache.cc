#include "storage/task_cache.h"

namespace taskd {

using tasks::v1::Task;

std::optional<Task> TaskCache::Lookup(absl::string_view id) {
  std::string encoded;
  {
    absl::MutexLock lock(&mu_);
    auto found = by_id_.find(id);
    if (found == by_id_.end()) return std::nullopt;
    entries_.splice(entries_.begin(), entries_, found->second);
    encoded = found->second->second;
    ++hits_;
  }
  Task task;
  // The bytes were written by SerializeAsString below: they parse.
  task.ParseFromString(encoded);
  return task;
}

uint64_t TaskCache::generation() {
  absl::MutexLock lock(&mu_);
  return generation_;
}

void TaskCache::Insert(uint64_t generation, const Task& task) {
  if (capacity_ == 0) return;
  std::string encoded = task.SerializeAsString();
  absl::MutexLock lock(&mu_);
  if (generation != generation_) return;
  auto found = by_id_.find(task.id());
  if (found != by_id_.end()) {
    // Read twice in one generation: the same task.
    entries_.splice(entries_.begin(), entries_, found->second);
    return;
  }
  entries_.emplace_front(task.id(), std::move(encoded));
  by_id_.emplace(entries_.front().first, entries_.begin());
  if (entries_.size() > capacity_) {
    by_id_.erase(entries_.back().first);
    entries_.pop_back();
  }
}

void TaskCache::Invalidate(const std::vector<std::string>& ids) {
  absl::MutexLock lock(&mu_);
  ++generation_;
  for (const std::string& id : ids) {
    auto found = by_id_.find(id);
    if (found == by_id_.end()) continue;
    const std::list<Entry>::iterator entry = found->second;
    by_id_.erase(found);
    entries_.erase(entry);
  }
}

size_t TaskCache::size() {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

uint64_t TaskCache::hits() {
  absl::MutexLock lock(&mu_);
  return hits_;
}

}  // namespace taskd
