#include "server/count_hub.h"

#include <algorithm>
#include <set>
#include <utility>

#include "base/error_details.h"
#include "base/thread_name.h"
#include "server/grpc_status.h"

namespace taskd {

using tasks::v1::Task;
using tasks::v1::WatchTaskCountsResponse;

// One question and its answer, shared by the streams that ask it. Every
// field is guarded by the hub's mu_.
struct CountHub::View {
  View(std::string key, std::shared_ptr<const FilterExpr> filter,
       std::vector<TaskField> group_by)
      : key(std::move(key)),
        filter(std::move(filter)),
        counts(std::move(group_by)) {}

  // Applies one committed change (revision > `revision`).
  void Apply(const Change& change) {
    revision = change.revision;
    const Task* before =
        change.previous.has_value() && Matches(filter.get(), *change.previous)
            ? &*change.previous
            : nullptr;
    const Task* after = change.kind != Change::Kind::kDeleted &&
                                Matches(filter.get(), change.task)
                            ? &change.task
                            : nullptr;
    if (after != nullptr) {
      if (change.kind == Change::Kind::kCreated) {
        ++created;
        ++version;
      } else if (change.task.state() == Task::completed &&
                 change.previous.has_value() &&
                 change.previous->state() != Task::completed) {
        ++completed;
        ++version;
      }
    }
    if (before != nullptr && after != nullptr &&
        GroupKeyOf(*before, counts.group_by()) ==
            GroupKeyOf(*after, counts.group_by())) {
      return;  // the task stays in its group
    }
    if (before != nullptr) counts.Add(*before, -1);
    if (after != nullptr) counts.Add(*after, +1);
    if (before != nullptr || after != nullptr) ++version;
  }

  const std::string key;
  const std::shared_ptr<const FilterExpr> filter;
  TaskCounts counts;
  // False until the first count from the store.
  bool ready = false;
  // The revision the counts are exact at.
  int64_t revision = 0;
  // Raised by every change of what a response holds.
  int64_t version = 0;
  // Tasks created, and tasks that became completed, since the snapshot.
  int64_t created = 0;
  int64_t completed = 0;
  std::set<Stream*> streams;
};

// One WatchTaskCounts call. Its state is guarded by the hub's mu_. No
// operation (StartWrite, Finish) is started with mu_ held: gRPC may run a
// reaction on the calling thread. gRPC deletes nothing: the stream deletes
// itself in OnDone, which comes only after Finish, which is never called
// while a write is in flight.
class CountHub::Stream final : public CountHub::Reactor {
 public:
  Stream(CountHub* hub, std::shared_ptr<View> view, absl::Duration interval,
         std::string tenant)
      : hub_(hub),
        view_(std::move(view)),
        interval_(interval),
        tenant_(std::move(tenant)) {}

  // A stream that ends at once (a refusal).
  explicit Stream(const grpc::Status& status) : hub_(nullptr) {
    finished_ = true;
    Finish(status);
  }

  View* view() const { return view_.get(); }
  const std::string& tenant() const { return tenant_; }

  // Fills the next response if one is due; the caller then calls Send().
  bool PrepareLocked(absl::Time now) {
    if (finished_ || writing_ || !view_->ready) return false;
    if (sent_version_ >= view_->version || now < next_send_at_) return false;
    response_.Clear();
    for (const auto& [key, n] : view_->counts.groups()) {
      tasks::v1::TaskCount* group = response_.add_groups();
      for (size_t i = 0; i < key.size(); ++i) {
        group->add_values(GroupValueText(view_->counts.group_by()[i], key[i]));
      }
      group->set_count(n);
    }
    response_.set_revision(view_->revision);
    if (sent_version_ >= 0) {
      response_.set_created(view_->created - sent_created_);
      response_.set_completed(view_->completed - sent_completed_);
    }
    sent_version_ = view_->version;
    sent_created_ = view_->created;
    sent_completed_ = view_->completed;
    next_send_at_ = now + interval_;
    writing_ = true;
    return true;
  }
  void Send() { StartWrite(&response_); }

  // Marks the stream finished; true if the caller must call Finish now
  // (else OnWriteDone will).
  bool EndLocked(const grpc::Status& status) {
    if (finished_) return false;
    finished_ = true;
    if (writing_) {
      finish_after_write_ = status;
      return false;
    }
    return true;
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&hub_->mu_);
      writing_ = false;
      if (finish_after_write_.has_value()) {
        finish = finish_after_write_;
      } else if (!ok && !finished_) {
        finished_ = true;
        finish = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "the stream broke while writing");
      }
    }
    if (finish.has_value()) {
      Finish(*finish);
    } else {
      hub_->Wake();  // changes may have waited for this write
    }
  }

  void OnCancel() override {
    if (hub_ == nullptr) return;
    bool finish_now;
    {
      absl::MutexLock lock(&hub_->mu_);
      finish_now = EndLocked(grpc::Status::CANCELLED);
    }
    if (finish_now) Finish(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    if (hub_ != nullptr) hub_->Remove(this);
    delete this;
  }

 private:
  CountHub* const hub_;
  const std::shared_ptr<View> view_;
  const absl::Duration interval_ = absl::ZeroDuration();
  const std::string tenant_;
  WatchTaskCountsResponse response_;
  bool writing_ = false;
  bool finished_ = false;
  std::optional<grpc::Status> finish_after_write_;
  // The view version, created and completed of the last response sent; -1
  // before the first.
  int64_t sent_version_ = -1;
  int64_t sent_created_ = 0;
  int64_t sent_completed_ = 0;
  absl::Time next_send_at_ = absl::InfinitePast();
};

CountHub::CountHub(const CountHubOptions& options) : options_(options) {}

CountHub::~CountHub() {
  Shutdown(absl::ZeroDuration());
  {
    absl::MutexLock lock(&pending_mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void CountHub::Attach(TaskStore* store) {
  store_ = store;
  thread_ = std::thread([this] { Loop(); });
}

void CountHub::OnCommit(const std::vector<Change>& changes) {
  absl::MutexLock lock(&pending_mu_);
  // Only changes matter to views that exist; a view made later counts
  // from the store. So with no view, nothing is kept.
  if (!has_views_.load(std::memory_order_acquire)) return;
  pending_.insert(pending_.end(), changes.begin(), changes.end());
  dirty_ = true;
}

void CountHub::Wake() {
  absl::MutexLock lock(&pending_mu_);
  dirty_ = true;
}

CountHub::Reactor* CountHub::Refuse(const absl::Status& status) {
  return new Stream(ToGrpcStatus(status));
}

CountHub::Reactor* CountHub::Watch(CountWatchSpec spec) {
  const absl::Duration interval =
      std::clamp(spec.min_interval.value_or(options_.default_min_interval),
                 options_.min_min_interval, options_.max_min_interval);
  Stream* stream;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_ || store_ == nullptr) {
      return Refuse(WithReason(
          absl::UnavailableError("taskd is shutting down; try again"),
          "SHUTTING_DOWN"));
    }
    if (options_.max_streams > 0 &&
        streams_ >= static_cast<size_t>(options_.max_streams)) {
      return Refuse(WithReason(absl::ResourceExhaustedError(absl::StrCat(
                                   "too many count streams open (", streams_,
                                   "); close some or try again later")),
                               "TOO_MANY_STREAMS"));
    }
    int& of_tenant = streams_by_tenant_[spec.tenant];
    if (options_.max_streams_per_tenant > 0 &&
        of_tenant >= options_.max_streams_per_tenant) {
      return Refuse(
          WithReason(absl::ResourceExhaustedError(absl::StrCat(
                         "too many count streams open for this tenant (",
                         of_tenant, "); close some or try again later")),
                     "TOO_MANY_STREAMS"));
    }
    std::shared_ptr<View>& view = views_[spec.key];
    if (view == nullptr) {
      view = std::make_shared<View>(spec.key, std::move(spec.filter),
                                    std::move(spec.group_by));
      has_views_.store(true, std::memory_order_release);
    }
    stream = new Stream(this, view, interval, spec.tenant);
    view->streams.insert(stream);
    ++of_tenant;
    ++streams_;
  }
  Wake();
  return stream;
}

void CountHub::Remove(Stream* stream) {
  absl::MutexLock lock(&mu_);
  View* view = stream->view();
  view->streams.erase(stream);
  if (view->streams.empty()) {
    auto it = views_.find(view->key);
    if (it != views_.end() && it->second.get() == view) views_.erase(it);
  }
  if (--streams_by_tenant_[stream->tenant()] == 0) {
    streams_by_tenant_.erase(stream->tenant());
  }
  --streams_;
}

void CountHub::Snapshot(const std::vector<std::shared_ptr<View>>& views) {
  for (const std::shared_ptr<View>& view : views) {
    absl::StatusOr<CountResult> counted =
        store_->Count(CountQuery{view->filter, view->counts.group_by()});
    std::vector<Stream*> finish;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (counted.ok()) {
        for (const auto& [key, n] : counted->groups) {
          view->counts.AddToGroup(key, n);
        }
        view->revision = counted->revision;
        view->ready = true;
        continue;
      }
      // Its streams end with the error; a later request asks the store
      // again.
      status = ToGrpcStatus(counted.status());
      auto it = views_.find(view->key);
      if (it != views_.end() && it->second == view) views_.erase(it);
      for (Stream* stream : view->streams) {
        if (stream->EndLocked(status)) finish.push_back(stream);
      }
    }
    for (Stream* stream : finish) stream->Finish(status);
  }
}

void CountHub::Loop() {
  SetThreadName("taskd-counts");
  while (true) {
    std::vector<Change> changes;
    {
      absl::MutexLock lock(&pending_mu_);
      options_.clock->AwaitWithDeadline(
          &pending_mu_,
          absl::Condition(
              +[](CountHub* hub) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                return hub->dirty_ || hub->stop_;
              },
              this),
          options_.clock->Now() + options_.tick);
      if (stop_) return;
      changes.swap(pending_);
      dirty_ = false;
    }
    // Changes taken above committed before any count taken below, so a new
    // view's snapshot already holds them: Apply skips them by revision.
    // One new view's first count per turn: a count the counters cannot
    // answer reads the tasks (up to half a second on 1,000,000), and the
    // views already serving must not wait for every new one in a row.
    std::vector<std::shared_ptr<View>> fresh;
    bool more_fresh = false;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [key, view] : views_) {
        if (view->ready) continue;
        if (fresh.empty()) {
          fresh.push_back(view);
        } else {
          more_fresh = true;
        }
      }
      if (views_.empty()) has_views_.store(false, std::memory_order_release);
    }
    Snapshot(fresh);
    if (more_fresh) Wake();
    std::vector<Stream*> due;
    {
      absl::MutexLock lock(&mu_);
      const absl::Time now = options_.clock->Now();
      for (const auto& [key, view] : views_) {
        if (!view->ready) continue;
        for (const Change& change : changes) {
          if (change.revision > view->revision) view->Apply(change);
        }
        for (Stream* stream : view->streams) {
          if (stream->PrepareLocked(now)) due.push_back(stream);
        }
      }
    }
    for (Stream* stream : due) stream->Send();
  }
}

void CountHub::Shutdown(absl::Duration grace) {
  std::vector<Stream*> finish;
  const grpc::Status status = ToGrpcStatus(WithReason(
      absl::UnavailableError(
          "taskd is shutting down; open the stream again to get the counts"),
      "SHUTTING_DOWN"));
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (const auto& [key, view] : views_) {
      for (Stream* stream : view->streams) {
        if (stream->EndLocked(status)) finish.push_back(stream);
      }
    }
  }
  for (Stream* stream : finish) stream->Finish(status);
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(
                           +[](size_t* open) { return *open == 0; }, &streams_),
                       grace);
}

size_t CountHub::open_streams() {
  absl::MutexLock lock(&mu_);
  return streams_;
}

size_t CountHub::open_views() {
  absl::MutexLock lock(&mu_);
  return views_.size();
}

}  // namespace taskd
