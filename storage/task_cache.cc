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
  if (budget_ == 0) return;
  Entry entry(task.id(), task.SerializeAsString());
  const size_t cost = Cost(entry);
  if (cost > budget_ / 8) return;
  absl::MutexLock lock(&mu_);
  if (generation != generation_) return;
  auto found = by_id_.find(task.id());
  if (found != by_id_.end()) {
    // Read twice in one generation: the same task.
    entries_.splice(entries_.begin(), entries_, found->second);
    return;
  }
  entries_.push_front(std::move(entry));
  by_id_.emplace(entries_.front().first, entries_.begin());
  bytes_ += cost;
  while (bytes_ > budget_) {
    bytes_ -= Cost(entries_.back());
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
    bytes_ -= Cost(*entry);
    by_id_.erase(found);
    entries_.erase(entry);
  }
}

size_t TaskCache::size() {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

size_t TaskCache::bytes() {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

}  // namespace taskd
