#include "server/task_timers.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "base/error_details.h"
#include "base/log.h"
#include "base/thread_name.h"
#include "query/order_by.h"
#include "query/task_fields.h"
#include "server/task_lifecycle.h"

namespace taskd {
namespace {

absl::Duration LeaseLength(const Task& task) {
  return kHeartbeatGrace * DurationOf(task.heart_beat_interval());
}

absl::Status NotDue(const Task& task) {
  return WithReason(absl::FailedPreconditionError(absl::StrCat(
                        "task \"", task.id(), "\" has nothing due")),
                    "NOT_DUE");
}

}  // namespace

TaskTimers::TaskTimers(const TaskTimersOptions& options) : options_(options) {}

TaskTimers::~TaskTimers() { Stop(); }

absl::Status TaskTimers::Start(TaskStore* store) {
  store_ = store;
  if (store->Shared()) {
    absl::MutexLock lock(&mu_);
    shared_ = true;
    // Leases are in the store: none in memory, not even those that
    // commits delivered before Start.
    leases_.clear();
    ends_.clear();
  }
  if (shared_) {
    thread_ = std::thread([this] { Loop(); });
    return absl::OkStatus();
  }
  const absl::Time now = options_.clock->Now();
  // The started and paused tasks, a page at a time.
  auto held = std::make_shared<FilterExpr>();
  held->kind = FilterExpr::Kind::kOr;
  for (Task::State state : {Task::started, Task::paused}) {
    held->children.push_back(*EqualsFilter(TaskField::kState, int64_t{state}));
  }
  ListQuery query;
  query.filter = held;
  query.order = {{TaskField::kId, false}};
  query.limit = 1000;
  while (true) {
    absl::StatusOr<ListResult> page = store_->List(query);
    if (!page.ok()) return page.status();
    absl::MutexLock lock(&mu_);
    for (const Task& task : page->tasks) {
      if (!HeartbeatLeased(task)) continue;
      // A full lease from now: taskd saw no heartbeat while it was down.
      absl::Time end = now + LeaseLength(task);
      if (task.has_lease_expires_at()) {
        end = std::max(end, TimeOf(task.lease_expires_at()));
      }
      SetLease(task.id(), task.assign_count(), end);
    }
    if (!page->more || page->tasks.empty()) break;
    query.after = CursorOf(query.order, page->tasks.back());
  }
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void TaskTimers::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

int64_t TaskTimers::fired() {
  absl::MutexLock lock(&mu_);
  return fired_;
}

int64_t TaskTimers::rounds() {
  absl::MutexLock lock(&mu_);
  return rounds_;
}

void TaskTimers::SetLease(const std::string& id, int32_t assign_count,
                          absl::Time end) {
  auto it = leases_.find(id);
  if (it != leases_.end()) {
    const Lease& known = it->second;
    if (known.assign_count > assign_count ||
        (known.assign_count == assign_count && known.end >= end)) {
      return;
    }
    ends_.erase({known.end, id});
  }
  leases_[id] = Lease{assign_count, end};
  ends_.insert({end, id});
  // Awake, the loop reads ends_ before it sleeps: no need to wake it.
  if (end < sleeping_until_) wake_ = true;
}

void TaskTimers::DropLease(const std::string& id) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  ends_.erase({it->second.end, id});
  leases_.erase(it);
}

absl::Time TaskTimers::Renew(const Task& task, absl::Time now) {
  const absl::Time end = now + LeaseLength(task);
  absl::MutexLock lock(&mu_);
  SetLease(task.id(), task.assign_count(), end);
  return end;
}

absl::Time TaskTimers::LeaseEnd(const Task& task) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(task.id());
  if (it == leases_.end() || it->second.assign_count != task.assign_count()) {
    return absl::InfinitePast();
  }
  return it->second.end;
}

void TaskTimers::OnCommit(const std::vector<Change>& changes) {
  absl::MutexLock lock(&mu_);
  for (const Change& change : changes) {
    const Task& task = change.task;
    if (shared_) {
      // No leases in memory.
    } else if (change.kind == Change::Kind::kDeleted ||
               !HeartbeatLeased(task)) {
      DropLease(task.id());
    } else if (task.has_lease_expires_at()) {
      SetLease(task.id(), task.assign_count(), TimeOf(task.lease_expires_at()));
    }
    if (change.kind == Change::Kind::kDeleted || !task.has_deadline()) {
      continue;
    }
    const absl::Time deadline = TimeOf(task.deadline());
    if (awake_) {
      // The loop's read may have missed it: it sleeps no later than this.
      committed_while_awake_ = std::min(committed_while_awake_, deadline);
    } else if (deadline < sleeping_until_) {
      wake_ = true;
    }
  }
}

void TaskTimers::Loop() {
  SetThreadName("taskd-timers");
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      ++rounds_;
      // Awake from here until the sleep below: a deadline committed
      // meanwhile is noted in committed_while_awake_, so that heartbeats
      // and commits do not spin the loop.
      wake_ = false;
      awake_ = true;
      sleeping_until_ = absl::InfinitePast();
      committed_while_awake_ = absl::InfiniteFuture();
    }
    absl::Time next = absl::InfiniteFuture();
    bool store_failed = false;
    int written = 0;
    const bool leads = Leads();
    if (leads) {
      absl::StatusOr<std::vector<Task>> tasks =
          store_->ListByDeadline(std::max(1, options_.batch));
      if (!tasks.ok()) {
        store_failed = true;
      } else {
        written = FireDue(*tasks, &next, &store_failed);
      }
    }
    if (store_failed) {
      next = options_.clock->Now() + options_.retry_after;
    } else if (written > 0) {
      continue;  // read again: more may be due, and the next deadline moved
    }
    if (shared_) {
      next = std::min(next, options_.clock->Now() + options_.leader_check);
    }
    absl::MutexLock lock(&mu_);
    if (leads) {
      // Another server's timers fire the deadlines: a server that does
      // not lead only asks again, every leader_check.
      if (!ends_.empty()) next = std::min(next, ends_.begin()->first);
      next = std::min(next, committed_while_awake_);
    }
    awake_ = false;
    // A server that does not lead is not woken by commits.
    sleeping_until_ = leads ? next : absl::InfinitePast();
    auto woken = [this]()
                     ABSL_NO_THREAD_SAFETY_ANALYSIS { return stop_ || wake_; };
    options_.clock->AwaitWithDeadline(&mu_, absl::Condition(&woken), next);
  }
}

bool TaskTimers::Leads() {
  const int64_t term = store_->SweeperTerm();
  const bool leads = term != 0;
  if (told_ && term == term_) return leads;
  // A new term, even one that follows a lead lost and taken again between
  // two checks: the heartbeats of the time between may have failed.
  term_ = term;
  if (leads) {
    absl::MutexLock lock(&mu_);
    leading_since_ = options_.clock->Now();
  }
  if (told_ && leads == leading_) return leads;
  told_ = true;
  leading_ = leads;
  if (shared_) {
    Log(LogLevel::kInfo, "timers: %s",
        leads ? "this server runs them" : "another server runs them");
  }
  if (options_.on_leadership) options_.on_leadership(leads);
  return leads;
}

absl::Time TaskTimers::HeldUntil(const Task& task) {
  if (!shared_) return LeaseEnd(task);
  if (!HeartbeatLeased(task)) return absl::InfinitePast();
  absl::Time since;
  {
    absl::MutexLock lock(&mu_);
    since = leading_since_;
  }
  absl::Time end = since + LeaseLength(task);
  if (task.has_lease_expires_at()) {
    end = std::max(end, TimeOf(task.lease_expires_at()));
  }
  return end;
}

int TaskTimers::FireDue(const std::vector<Task>& tasks, absl::Time* next,
                        bool* store_failed) {
  const absl::Time now = options_.clock->Now();
  struct Round {
    absl::Mutex mu;
    int pending = 0;
    int fired = 0;
    bool failed = false;
  };
  auto round = std::make_shared<Round>();
  int written = 0;
  Clock* clock = options_.clock;
  // Submits one write; `fires`: a timeout (counted, logged), else a
  // checkpoint.
  auto submit = [&](TaskWrite write, bool fires, std::shared_ptr<Task> before) {
    ++written;
    {
      absl::MutexLock lock(&round->mu);
      ++round->pending;
    }
    auto on_fire = options_.on_fire;
    store_->Write(std::move(write),
                  [round, before, fires, on_fire](absl::StatusOr<Task> result) {
                    if (result.ok() && fires && on_fire)
                      on_fire(*before, *result);
                    absl::MutexLock lock(&round->mu);
                    --round->pending;
                    if (result.ok()) {
                      if (fires) ++round->fired;
                    } else if (ReasonOf(result.status()) != "NOT_DUE" &&
                               !absl::IsNotFound(result.status())) {
                      // A task that moved on or went away is not a failure.
                      round->failed = true;
                      Log(LogLevel::kWarning, "timeout of a task not fired: %s",
                          result.status().ToString());
                    }
                  });
  };
  // A timeout, as the task is when the write applies. `memory_end`: the
  // end of assignment `assignment`'s lease that came due in memory
  // (InfinitePast: none).
  auto fire = [&](const std::string& id, absl::Time memory_end,
                  int32_t assignment) {
    auto before = std::make_shared<Task>();
    TaskMutation mutation = [this, clock, before, memory_end, assignment](
                                const Task& current) -> absl::StatusOr<Task> {
      *before = current;
      absl::Time end = HeldUntil(current);
      if (memory_end != absl::InfinitePast()) {
        if (current.assign_count() != assignment) return NotDue(current);
        end = std::max(end, memory_end);
      }
      return FireTimeout(current, clock->Now(), end);
    };
    submit(TaskWrite{TaskWrite::Update{id, std::move(mutation)}}, true, before);
  };

  // The stored deadlines that are due.
  for (const Task& task : tasks) {
    if (TimeOf(task.deadline()) > now) {
      *next = TimeOf(task.deadline());
      break;
    }
    const absl::Time end = HeldUntil(task);
    const absl::Duration exec = DurationOf(task.exec_timeout());
    const bool exec_due = exec > absl::ZeroDuration() &&
                          task.has_started_at() &&
                          TimeOf(task.started_at()) + exec <= now;
    if (HeartbeatLeased(task) && end > now && !exec_due) {
      // Alive in memory (or, on a shared store, within the takeover's
      // lease): write a checkpoint, no revision.
      const int32_t assignment = task.assign_count();
      TaskMutation checkpoint =
          [this, clock,
           assignment](const Task& current) -> absl::StatusOr<Task> {
        const absl::Time at = clock->Now();
        const absl::Time lease_end = HeldUntil(current);
        if (!HeartbeatLeased(current) || current.assign_count() != assignment ||
            lease_end <= at) {
          return NotDue(current);
        }
        // Shared: heartbeats write the lease themselves; look again when
        // it ends.
        return CheckpointLease(
            current, lease_end,
            shared_ ? lease_end
                    : at + options_.checkpoint_intervals *
                               DurationOf(current.heart_beat_interval()));
      };
      submit(TaskWrite{TaskWrite::Touch{task.id(), std::move(checkpoint)}},
             false, nullptr);
      continue;
    }
    fire(task.id(), absl::InfinitePast(), 0);
  }
  // The leases that ended in memory.
  struct Ended {
    std::string id;
    absl::Time end;
    int32_t assignment;
  };
  std::vector<Ended> ended;
  {
    absl::MutexLock lock(&mu_);
    while (!ends_.empty() && ends_.begin()->first <= now &&
           static_cast<int>(ended.size()) < std::max(1, options_.batch)) {
      const std::string id = ends_.begin()->second;
      ended.push_back({id, ends_.begin()->first, leases_[id].assign_count});
      leases_.erase(id);
      ends_.erase(ends_.begin());
    }
  }
  for (const Ended& lease : ended) fire(lease.id, lease.end, lease.assignment);

  absl::MutexLock lock(&round->mu);
  round->mu.Await(absl::Condition(
      +[](int* pending) { return *pending == 0; }, &round->pending));
  {
    absl::MutexLock count(&mu_);
    fired_ += round->fired;
  }
  if (round->failed) *store_failed = true;
  return written;
}

}  // namespace taskd
