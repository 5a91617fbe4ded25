#include "server/watch_hub.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/error_details.h"
#include "base/log.h"
#include "google/protobuf/util/time_util.h"
#include "server/grpc_status.h"

namespace taskd {

using tasks::v1::TaskEvent;
using tasks::v1::WatchTasksRequest;
using tasks::v1::WatchTasksResponse;

namespace {

TaskEvent::Type EventType(Change::Kind kind) {
  switch (kind) {
    case Change::Kind::kCreated:
      return TaskEvent::CREATED;
    case Change::Kind::kUpdated:
      return TaskEvent::UPDATED;
    case Change::Kind::kDeleted:
      return TaskEvent::DELETED;
  }
  return TaskEvent::TYPE_UNSPECIFIED;
}

// A watcher sees a change when the task matches its filter before or after
// the change, so that it also learns of a task leaving its view.
bool Visible(const FilterExpr* filter, const Change& change) {
  return Matches(filter, change.task) ||
         (change.previous.has_value() && Matches(filter, *change.previous));
}

}  // namespace

// One WatchTasks stream.
//
// gRPC may run a reaction on the thread that starts an operation, so no
// operation (StartWrite, Finish) is started with mu_ held: Pump() decides
// under the lock and acts after releasing it. The hub and gRPC each hold a
// reference; the object is deleted when both are dropped.
class WatchHub::Watcher final
    : public grpc::ServerWriteReactor<WatchTasksResponse> {
 public:
  Watcher(WatchHub* hub, std::shared_ptr<const FilterExpr> filter,
          int64_t next_revision, absl::Duration progress_interval)
      : hub_(hub),
        filter_(std::move(filter)),
        progress_interval_(progress_interval),
        next_revision_(next_revision),
        // The first Pump of a live watch sends a progress response at once
        // if it has no events: it tells the client its position, so that a
        // stream that breaks before any event can still resume exactly.
        next_progress_at_(absl::InfinitePast()) {}

  // The initial state to send before any change.
  void SetInitialState(std::vector<Task> tasks, int64_t revision) {
    absl::MutexLock lock(&mu_);
    initial_ = std::move(tasks);
    initial_revision_ = revision;
    in_initial_ = true;
  }

  // Whose stream this is; set once at registration.
  void set_tenant(const std::string& tenant) { tenant_ = tenant; }
  const std::string& tenant() const { return tenant_; }

  void Ref() { refs_.fetch_add(1); }
  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

  void RequestShutdown() {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
  }

  // Ends the call with `status` before anything was sent.
  void FinishNow(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    Finish(status);
  }

  // Sends what is due: the next piece of initial state, new events, a
  // progress response, or the end of the stream at shutdown.
  void Pump() {
    enum class Action { kNone, kWrite, kFinish } action = Action::kNone;
    grpc::Status finish_status;
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || writing_) return;
      absl::Time now = absl::Now();
      response_.Clear();
      if (shutting_down_) {
        if (!final_progress_sent_) {
          final_progress_sent_ = true;
          response_.set_progress(true);
          response_.set_revision(next_revision_ - 1);
          action = Action::kWrite;
        } else {
          action = Action::kFinish;
          finish_status = ToGrpcStatus(
              WithReason(absl::UnavailableError(
                             absl::StrCat("taskd is shutting down; resume with "
                                          "start_revision=",
                                          next_revision_)),
                         "SHUTTING_DOWN",
                         {{"resume_revision", absl::StrCat(next_revision_)}}));
        }
      } else if (in_initial_) {
        FillInitialLocked();
        action = Action::kWrite;
      } else {
        absl::Status status =
            hub_->Collect(filter_.get(), &next_revision_, &response_);
        if (!status.ok()) {
          action = Action::kFinish;
          finish_status = ToGrpcStatus(status);
        } else if (response_.events_size() > 0) {
          hub_->events_delivered_.fetch_add(response_.events_size());
          response_.set_revision(next_revision_ - 1);
          action = Action::kWrite;
        } else if (now >= next_progress_at_) {
          response_.set_progress(true);
          response_.set_revision(next_revision_ - 1);
          action = Action::kWrite;
        }
      }
      if (action == Action::kWrite) {
        writing_ = true;
        next_progress_at_ = now + progress_interval_;
      } else if (action == Action::kFinish) {
        finished_ = true;
      }
    }
    if (action == Action::kWrite) {
      StartWrite(&response_);
    } else if (action == Action::kFinish) {
      Finish(finish_status);
    }
  }

  void OnWriteDone(bool ok) override {
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok && !finished_) {
        // The stream is broken (client gone); OnCancel usually follows.
        finished_ = true;
        finish = true;
      }
    }
    if (finish) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      return;
    }
    Pump();
  }

  void OnCancel() override { FinishNow(grpc::Status::CANCELLED); }

  void OnDone() override {
    hub_->Unregister(this);
    Unref();
  }

 private:
  void FillInitialLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    size_t bytes = 0;
    while (initial_pos_ < initial_.size() &&
           response_.events_size() < hub_->options_.max_events_per_response &&
           bytes < hub_->options_.max_response_bytes) {
      Task& task = initial_[initial_pos_++];
      TaskEvent* event = response_.add_events();
      event->set_type(TaskEvent::CREATED);
      event->set_revision(task.revision());
      bytes += task.ByteSizeLong();
      *event->mutable_task() = std::move(task);
    }
    if (initial_pos_ == initial_.size()) {
      response_.set_initial_state_complete(true);
      response_.set_revision(initial_revision_);
      in_initial_ = false;
      std::vector<Task>().swap(initial_);  // release the memory now
    } else {
      // Mid-snapshot responses carry no resume point: the snapshot is only
      // whole at its end.
      response_.set_revision(0);
    }
  }

  WatchHub* const hub_;
  const std::shared_ptr<const FilterExpr> filter_;
  const absl::Duration progress_interval_;
  std::atomic<int> refs_{2};  // gRPC's and the hub's
  std::string tenant_;

  absl::Mutex mu_;
  int64_t next_revision_ ABSL_GUARDED_BY(mu_);
  absl::Time next_progress_at_ ABSL_GUARDED_BY(mu_);
  // Owned by the write in flight while writing_.
  WatchTasksResponse response_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool final_progress_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool in_initial_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Task> initial_ ABSL_GUARDED_BY(mu_);
  size_t initial_pos_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t initial_revision_ ABSL_GUARDED_BY(mu_) = 0;
};

WatchHub::WatchHub(const WatchHubOptions& options)
    : options_(options), dispatcher_([this] { DispatchLoop(); }) {}

WatchHub::~WatchHub() {
  Shutdown(absl::ZeroDuration());
  {
    absl::MutexLock lock(&dispatch_mu_);
    stop_ = true;
  }
  dispatcher_.join();
}

void WatchHub::Attach(TaskStore* store) { store_ = store; }

void WatchHub::OnCommit(const std::vector<Change>& changes) {
  {
    absl::MutexLock lock(&ring_mu_);
    for (const Change& change : changes) {
      ring_.push_back(change);
      if (static_cast<int>(ring_.size()) > options_.ring_capacity) {
        ring_.pop_front();
      }
    }
  }
  Wake();
}

void WatchHub::Wake() {
  absl::MutexLock lock(&dispatch_mu_);
  dirty_ = true;
}

absl::Status WatchHub::Collect(const FilterExpr* filter, int64_t* next_revision,
                               WatchTasksResponse* response) {
  size_t bytes = 0;
  auto full = [&] {
    return response->events_size() >= options_.max_events_per_response ||
           bytes >= options_.max_response_bytes;
  };
  auto take = [&](const Change& change) {
    *next_revision = change.revision + 1;
    if (!Visible(filter, change)) return;
    TaskEvent* event = response->add_events();
    event->set_type(EventType(change.kind));
    event->set_revision(change.revision);
    *event->mutable_task() = change.task;
    bytes += change.task.ByteSizeLong();
  };
  while (!full()) {
    {
      absl::ReaderMutexLock lock(&ring_mu_);
      if (!ring_.empty() && *next_revision >= ring_.front().revision) {
        size_t i = static_cast<size_t>(*next_revision - ring_.front().revision);
        for (; i < ring_.size() && !full(); ++i) take(ring_[i]);
        return absl::OkStatus();
      }
    }
    // Behind the ring (or the ring is empty): read the history.
    if (*next_revision > store_->CurrentRevision()) return absl::OkStatus();
    absl::StatusOr<std::vector<Change>> changes =
        store_->ReadChanges(*next_revision, options_.max_events_per_response);
    if (!changes.ok()) return changes.status();
    if (changes->empty()) return absl::OkStatus();
    for (const Change& change : *changes) {
      if (full()) break;
      take(change);
    }
  }
  return absl::OkStatus();
}

grpc::ServerWriteReactor<WatchTasksResponse>* WatchHub::Refuse(
    const absl::Status& status) {
  auto* watcher = new Watcher(this, nullptr, 0, absl::InfiniteDuration());
  watcher->Unref();  // the hub never holds this one
  watcher->FinishNow(ToGrpcStatus(status));
  return watcher;
}

grpc::ServerWriteReactor<WatchTasksResponse>* WatchHub::Watch(
    grpc::CallbackServerContext* context, const WatchTasksRequest* request,
    std::shared_ptr<const FilterExpr> scope, const std::string& tenant) {
  absl::Duration interval = options_.default_progress_interval;
  if (request->has_progress_interval()) {
    interval = absl::Seconds(request->progress_interval().seconds()) +
               absl::Nanoseconds(request->progress_interval().nanos());
  }
  auto fail = [this](const absl::Status& status) { return Refuse(status); };
  // Checks, in the order a caller fixes them.
  if (request->start_revision() < 0) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("start_revision: must not be negative (got ",
                     request->start_revision(), ")")));
  }
  if (request->send_initial_state() && request->start_revision() != 0) {
    return fail(absl::InvalidArgumentError(
        "start_revision: must be 0 with send_initial_state (the initial state "
        "is the current one)"));
  }
  if (interval < absl::ZeroDuration()) {
    return fail(
        absl::InvalidArgumentError("progress_interval: must not be negative"));
  }
  interval = std::clamp(interval, options_.min_progress_interval,
                        options_.max_progress_interval);
  absl::StatusOr<std::shared_ptr<const FilterExpr>> filter =
      ParseFilter(request->filter());
  if (!filter.ok()) {
    return fail(WithFieldViolation(
        WithReason(filter.status(), "INVALID_FILTER", {{"field", "filter"}}),
        "filter", filter.status().message()));
  }
  std::shared_ptr<const FilterExpr> effective =
      AndFilters(std::move(*filter), std::move(scope));
  {
    absl::MutexLock lock(&watchers_mu_);
    if (shutting_down_) {
      return fail(WithReason(absl::UnavailableError("taskd is shutting down"),
                             "SHUTTING_DOWN"));
    }
    // The caps are checked again at registration; this early check only
    // spares the initial-state read of a call that would be refused.
    if (absl::Status s = CheckCapsLocked(tenant); !s.ok()) return fail(s);
  }

  int64_t next_revision = request->start_revision();
  std::optional<ListResult> snapshot;
  if (request->send_initial_state()) {
    ListQuery query;
    query.filter = effective;
    query.limit = options_.max_initial_state;
    absl::StatusOr<ListResult> listed = store_->List(query);
    if (!listed.ok()) return fail(listed.status());
    if (listed->more) {
      return fail(absl::ResourceExhaustedError(absl::StrCat(
          "send_initial_state: more than ", options_.max_initial_state,
          " tasks match the filter; narrow it, or page with ListTasks and "
          "then watch from the list's revision + 1")));
    }
    // The snapshot is exact at its revision: changes start right after it.
    next_revision = listed->revision + 1;
    snapshot = std::move(*listed);
  } else if (next_revision == 0) {
    next_revision = store_->CurrentRevision() + 1;
  } else if (next_revision < store_->OldestRevision()) {
    return fail(WithReason(
        absl::OutOfRangeError(absl::StrCat(
            "start_revision: revision ", next_revision,
            " has been compacted; the oldest revision available is ",
            store_->OldestRevision(),
            ". List the tasks again and watch from the list's revision + 1")),
        "REVISION_COMPACTED"));
  }
  auto* watcher = new Watcher(this, effective, next_revision, interval);
  if (snapshot.has_value()) {
    watcher->SetInitialState(std::move(snapshot->tasks), snapshot->revision);
  }
  {
    absl::MutexLock lock(&watchers_mu_);
    // Shutdown may have begun since the check above.
    if (shutting_down_) watcher->RequestShutdown();
    if (absl::Status s = CheckCapsLocked(tenant); !s.ok()) {
      watcher->Unref();  // the hub's reference: it is not registered
      watcher->FinishNow(ToGrpcStatus(s));
      return watcher;
    }
    watcher->set_tenant(tenant);
    ++watchers_by_tenant_[tenant];
    watchers_.insert(watcher);
    watcher->Ref();  // for the Pump below, which runs outside the lock
  }
  watcher->Pump();
  watcher->Unref();
  return watcher;
}

absl::Status WatchHub::CheckCapsLocked(const std::string& tenant) {
  if (options_.max_watchers > 0 &&
      static_cast<int>(watchers_.size()) >= options_.max_watchers) {
    return WithReason(absl::ResourceExhaustedError(absl::StrCat(
                          "too many watch streams open (limit ",
                          options_.max_watchers, "); retry later")),
                      "WATCH_LIMIT_EXCEEDED");
  }
  auto it = watchers_by_tenant_.find(tenant);
  if (options_.max_watchers_per_tenant > 0 && it != watchers_by_tenant_.end() &&
      it->second >= options_.max_watchers_per_tenant) {
    return WithReason(absl::ResourceExhaustedError(absl::StrCat(
                          "too many watch streams open for this tenant (limit ",
                          options_.max_watchers_per_tenant, ")")),
                      "WATCH_LIMIT_EXCEEDED", {{"tenant_id", tenant}});
  }
  return absl::OkStatus();
}

void WatchHub::Unregister(Watcher* watcher) {
  bool erased = false;
  {
    absl::MutexLock lock(&watchers_mu_);
    erased = watchers_.erase(watcher) > 0;
    if (erased) {
      auto it = watchers_by_tenant_.find(watcher->tenant());
      if (it != watchers_by_tenant_.end() && --it->second == 0) {
        watchers_by_tenant_.erase(it);
      }
    }
  }
  if (erased) watcher->Unref();
}

size_t WatchHub::open_watchers() {
  absl::MutexLock lock(&watchers_mu_);
  return watchers_.size();
}

void WatchHub::DispatchLoop() {
  while (true) {
    {
      absl::MutexLock lock(&dispatch_mu_);
      dispatch_mu_.AwaitWithTimeout(
          absl::Condition(
              +[](WatchHub* hub) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                return hub->dirty_ || hub->stop_;
              },
              this),
          options_.tick);
      if (stop_) return;
      dirty_ = false;
    }
    std::vector<Watcher*> watchers;
    {
      absl::MutexLock lock(&watchers_mu_);
      watchers.reserve(watchers_.size());
      for (Watcher* watcher : watchers_) {
        watcher->Ref();
        watchers.push_back(watcher);
      }
    }
    for (Watcher* watcher : watchers) {
      watcher->Pump();
      watcher->Unref();
    }
  }
}

void WatchHub::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&watchers_mu_);
    if (!shutting_down_) {
      shutting_down_ = true;
      for (Watcher* watcher : watchers_) watcher->RequestShutdown();
    }
  }
  Wake();
  absl::MutexLock lock(&watchers_mu_);
  watchers_mu_.AwaitWithTimeout(
      absl::Condition(
          +[](std::set<Watcher*>* watchers) { return watchers->empty(); },
          &watchers_),
      grace);
}

}  // namespace taskd
