#include "server/watch_hub.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/error_details.h"
#include "base/log.h"
#include "base/thread_name.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/util/time_util.h"
#include "server/grpc_status.h"

namespace taskd {

using google::protobuf::io::CodedOutputStream;
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

// The first byte of every WatchTasksResponse.events entry: field number and
// the length-delimited wire type.
constexpr uint32_t kEventsTag =
    (WatchTasksResponse::kEventsFieldNumber << 3) | 2;
static_assert(kEventsTag < 0x80, "the events tag must fit one byte");

// One WatchTasksResponse.events entry, encoded: a response is the
// concatenation of such entries and the tail (EncodeTail).
grpc::Slice EncodeEvent(TaskEvent::Type type, int64_t revision,
                        const Task& task, const Task* previous = nullptr) {
  TaskEvent event;
  event.set_type(type);
  event.set_revision(revision);
  // Borrow the tasks rather than copy them; they are released before
  // `event` goes out of scope.
  event.unsafe_arena_set_allocated_task(const_cast<Task*>(&task));
  if (previous != nullptr) {
    event.unsafe_arena_set_allocated_previous(const_cast<Task*>(previous));
  }
  size_t size = event.ByteSizeLong();
  size_t total = 1 + CodedOutputStream::VarintSize32(size) + size;
  grpc_slice slice = grpc_slice_malloc(total);
  uint8_t* out = GRPC_SLICE_START_PTR(slice);
  *out++ = static_cast<uint8_t>(kEventsTag);
  out =
      CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(size), out);
  event.SerializeWithCachedSizesToArray(out);
  event.unsafe_arena_release_task();
  if (previous != nullptr) event.unsafe_arena_release_previous();
  return grpc::Slice(slice, grpc::Slice::STEAL_REF);
}

// The fields of a response after its events.
grpc::Slice EncodeTail(int64_t revision, bool initial_state_complete,
                       bool progress) {
  WatchTasksResponse tail;
  tail.set_revision(revision);
  tail.set_initial_state_complete(initial_state_complete);
  tail.set_progress(progress);
  return grpc::Slice(tail.SerializeAsString());
}

// The slices as one. gRPC sends a message of many small slices as many
// small pieces (measured: 10,000 unfiltered watchers delivered 8% fewer
// events, at twice the delay, than with one slice per message), so each
// response is copied once into one buffer; the events are still encoded
// only once.
grpc::Slice Concatenate(const std::vector<grpc::Slice>& slices) {
  size_t total = 0;
  for (const grpc::Slice& slice : slices) total += slice.size();
  grpc_slice flat = grpc_slice_malloc(total);
  uint8_t* out = GRPC_SLICE_START_PTR(flat);
  for (const grpc::Slice& slice : slices) {
    std::memcpy(out, slice.begin(), slice.size());
    out += slice.size();
  }
  return grpc::Slice(flat, grpc::Slice::STEAL_REF);
}

}  // namespace

// One WatchTasks stream.
//
// gRPC may run a reaction on the thread that starts an operation, so no
// operation (StartWrite, Finish) is started with mu_ held: Pump() decides
// under the lock and acts after releasing it. The hub and gRPC each hold a
// reference; the object is deleted when both are dropped.
class WatchHub::Watcher final
    : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
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

  // Whose stream this is (for the per-tenant cap), and the tenant the
  // filter pins (for routing; null if none). Set once at registration.
  void set_caller_tenant(const std::string& tenant) { caller_tenant_ = tenant; }
  const std::string& caller_tenant() const { return caller_tenant_; }
  void set_route(std::shared_ptr<Tenant> route) { route_ = std::move(route); }
  // Whether events carry the task before the change. Set once, before the
  // stream is registered.
  void set_include_previous(bool include) { include_previous_ = include; }
  Tenant* route() const { return route_.get(); }

  void Ref() { refs_.fetch_add(1); }
  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

  void RequestShutdown() {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
  }

  // Whether a progress response is due at `now` (lock-free, may be stale).
  bool ProgressDue(absl::Time now) const {
    return absl::ToUnixMicros(now) >= progress_due_us_.load();
  }

  // Ends the call with `status` (a cancellation, or a refusal before
  // anything was sent). If a write is under way, the call ends when it
  // completes: gRPC forbids starting a write after Finish, and Pump may be
  // about to start one.
  void FinishNow(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
      if (writing_) {
        finish_after_write_ = status;
        return;
      }
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
      absl::Time now = hub_->options_.clock->Now();
      Response response;
      int64_t revision = 0;
      bool initial_state_complete = false;
      bool progress = false;
      if (shutting_down_) {
        if (!final_progress_sent_) {
          final_progress_sent_ = true;
          progress = true;
          revision = next_revision_ - 1;
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
        FillInitialLocked(&response, &revision, &initial_state_complete);
        action = Action::kWrite;
      } else {
        absl::Status status =
            hub_->Collect(filter_.get(), route_.get(), include_previous_,
                          &next_revision_, &response);
        if (!status.ok()) {
          action = Action::kFinish;
          finish_status = ToGrpcStatus(status);
        } else if (!response.events.empty()) {
          hub_->events_delivered_.fetch_add(response.events.size());
          revision = next_revision_ - 1;
          action = Action::kWrite;
        } else if (now >= next_progress_at_) {
          progress = true;
          revision = next_revision_ - 1;
          action = Action::kWrite;
        }
      }
      if (action == Action::kWrite) {
        response.events.push_back(
            EncodeTail(revision, initial_state_complete, progress));
        grpc::Slice flat = Concatenate(response.events);
        buffer_ = grpc::ByteBuffer(&flat, 1);
        writing_ = true;
        next_progress_at_ = now + progress_interval_;
        progress_due_us_ = absl::ToUnixMicros(next_progress_at_);
      } else if (action == Action::kFinish) {
        finished_ = true;
      }
    }
    if (action == Action::kWrite) {
      StartWrite(&buffer_);
    } else if (action == Action::kFinish) {
      Finish(finish_status);
    }
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      buffer_.Clear();  // drop the slices' references now
      if (finish_after_write_.has_value()) {
        finish = std::move(finish_after_write_);
        finish_after_write_.reset();
      } else if (!ok && !finished_) {
        // The stream is broken (client gone); OnCancel usually follows.
        finished_ = true;
        finish = grpc::Status(grpc::StatusCode::CANCELLED, "write failed");
      }
    }
    if (finish.has_value()) {
      Finish(*finish);
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
  void FillInitialLocked(Response* response, int64_t* revision, bool* complete)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    while (initial_pos_ < initial_.size() && !hub_->Full(*response)) {
      const Task& task = initial_[initial_pos_++];
      response->events.push_back(
          EncodeEvent(TaskEvent::CREATED, task.revision(), task));
      response->bytes += response->events.back().size();
    }
    if (initial_pos_ == initial_.size()) {
      *complete = true;
      *revision = initial_revision_;
      in_initial_ = false;
      std::vector<Task>().swap(initial_);  // release the memory now
    } else {
      // Mid-snapshot responses carry no resume point: the snapshot is only
      // whole at its end.
      *revision = 0;
    }
  }

  WatchHub* const hub_;
  const std::shared_ptr<const FilterExpr> filter_;
  const absl::Duration progress_interval_;
  std::atomic<int> refs_{2};  // gRPC's and the hub's
  std::string caller_tenant_;
  std::shared_ptr<Tenant> route_;
  bool include_previous_ = false;
  std::atomic<int64_t> progress_due_us_{0};

  absl::Mutex mu_;
  int64_t next_revision_ ABSL_GUARDED_BY(mu_);
  absl::Time next_progress_at_ ABSL_GUARDED_BY(mu_);
  // Owned by the write in flight while writing_.
  grpc::ByteBuffer buffer_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // Set by FinishNow during a write: the status to finish with after it.
  std::optional<grpc::Status> finish_after_write_ ABSL_GUARDED_BY(mu_);
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

void WatchHub::Attach(TaskStore* store) {
  store_ = store;
  dispatched_ = store->CurrentRevision();
}

void WatchHub::OnCommit(const std::vector<Change>& changes) {
  absl::MutexLock lock(&dispatch_mu_);
  pending_.insert(pending_.end(), changes.begin(), changes.end());
  dirty_ = true;
}

void WatchHub::Wake() {
  absl::MutexLock lock(&dispatch_mu_);
  dirty_ = true;
}

bool WatchHub::Full(const Response& response) const {
  return static_cast<int>(response.events.size()) >=
             options_.max_events_per_response ||
         response.bytes >= options_.max_response_bytes;
}

absl::Status WatchHub::Collect(const FilterExpr* filter, const Tenant* tenant,
                               bool include_previous, int64_t* next_revision,
                               Response* response) {
  int64_t dispatched = dispatched_.load(std::memory_order_acquire);
  if (tenant != nullptr && *next_revision <= dispatched &&
      tenant->last_touched.load(std::memory_order_acquire) < *next_revision) {
    // Nothing from here up to `dispatched` concerns this tenant. (A later
    // dispatch may have raised last_touched already; that only means the
    // skip is not taken this time.)
    *next_revision = dispatched + 1;
    return absl::OkStatus();
  }
  // Considers one ring entry: the cursor moves past it, and it is sent if
  // the watcher may see it.
  auto take = [&](const Entry& entry) {
    *next_revision = entry.change.revision + 1;
    if (!Visible(filter, entry.change)) return;
    if (include_previous && entry.change.previous.has_value()) {
      // Encoded for this watcher alone: most watchers do not ask for it,
      // and the ring keeps one encoding per change.
      response->events.push_back(
          EncodeEvent(EventType(entry.change.kind), entry.change.revision,
                      entry.change.task, &*entry.change.previous));
    } else {
      response->events.push_back(entry.encoded);
    }
    response->bytes += response->events.back().size();
  };
  while (!Full(*response)) {
    {
      absl::ReaderMutexLock lock(&ring_mu_);
      if (!ring_.empty() && *next_revision >= ring_.front().change.revision) {
        const int64_t front = ring_.front().change.revision;
        if (tenant != nullptr) {
          // Only the tenant's entries can match: visit just those.
          auto it = ring_by_tenant_.find(tenant->id);
          if (it != ring_by_tenant_.end()) {
            const std::deque<int64_t>& revisions = it->second;
            auto pos = std::lower_bound(revisions.begin(), revisions.end(),
                                        *next_revision);
            for (; pos != revisions.end() && !Full(*response); ++pos) {
              take(ring_[static_cast<size_t>(*pos - front)]);
            }
            if (pos != revisions.end()) return absl::OkStatus();  // full
          }
          *next_revision =
              std::max(*next_revision, ring_.back().change.revision + 1);
          return absl::OkStatus();
        }
        size_t i = static_cast<size_t>(*next_revision - front);
        for (; i < ring_.size() && !Full(*response); ++i) take(ring_[i]);
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
      if (Full(*response)) break;
      *next_revision = change.revision + 1;
      if (!Visible(filter, change)) continue;
      response->events.push_back(EncodeEvent(
          EventType(change.kind), change.revision, change.task,
          include_previous && change.previous.has_value() ? &*change.previous
                                                          : nullptr));
      response->bytes += response->events.back().size();
    }
  }
  return absl::OkStatus();
}

bool WatchHub::Committed(int64_t revision) {
  absl::StatusOr<std::vector<Change>> found = store_->ReadChanges(revision, 1);
  // Compacted (OutOfRange) or not there: either way no watch can start
  // from it.
  return found.ok() && !found->empty() && found->front().revision == revision;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* WatchHub::Refuse(
    const absl::Status& status) {
  auto* watcher = new Watcher(this, nullptr, 0, absl::InfiniteDuration());
  watcher->Unref();  // the hub never holds this one
  watcher->FinishNow(ToGrpcStatus(status));
  return watcher;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* WatchHub::Watch(WatchSpec spec) {
  auto fail = [this](const absl::Status& status) { return Refuse(status); };
  const absl::Duration interval = std::clamp(
      spec.progress_interval.value_or(options_.default_progress_interval),
      options_.min_progress_interval, options_.max_progress_interval);
  std::shared_ptr<const FilterExpr> effective = std::move(spec.filter);
  const std::string& tenant = spec.tenant;
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

  int64_t next_revision = spec.start_revision;
  std::optional<ListResult> snapshot;
  if (spec.send_initial_state) {
    ListQuery query;
    query.filter = effective;
    query.limit = options_.max_initial_state;
    absl::StatusOr<ListResult> listed = store_->List(query);
    if (!listed.ok()) return fail(listed.status());
    if (listed->more) {
      return fail(WithReason(
          absl::ResourceExhaustedError(absl::StrCat(
              "send_initial_state: more than ", options_.max_initial_state,
              " tasks match the filter; narrow it, or page with ListTasks "
              "and then watch from the list's revision + 1")),
          "INITIAL_STATE_TOO_LARGE",
          {{"max_initial_state", absl::StrCat(options_.max_initial_state)}}));
    }
    // The snapshot is exact at its revision: changes start right after it.
    next_revision = listed->revision + 1;
    snapshot = std::move(*listed);
  } else if (next_revision == 0) {
    next_revision = store_->CurrentRevision() + 1;
  } else if (int64_t current = store_->CurrentRevision();
             next_revision > current + 1 && !Committed(next_revision - 1)) {
    // No taskd handed out this revision: the client watched a database
    // that has since lost changes (restored from a backup, or --sync=normal
    // and a power loss), or made the number up. Waiting for it would hide
    // that; the client must list again, as after compaction.
    return fail(WithReason(
        absl::OutOfRangeError(absl::StrCat(
            "start_revision: revision ", next_revision,
            " is ahead of the newest revision, ", current,
            "; this database may not be the one the revision came from. List "
            "the tasks again and watch from the list's revision + 1")),
        "REVISION_AHEAD", {{"current_revision", absl::StrCat(current)}}));
  } else if (next_revision < store_->OldestRevision()) {
    return fail(WithReason(
        absl::OutOfRangeError(absl::StrCat(
            "start_revision: revision ", next_revision,
            " has been compacted; the oldest revision available is ",
            store_->OldestRevision(),
            ". List the tasks again and watch from the list's revision + 1")),
        "REVISION_COMPACTED",
        {{"oldest_revision", absl::StrCat(store_->OldestRevision())}}));
  }
  auto* watcher = new Watcher(this, effective, next_revision, interval);
  watcher->set_include_previous(spec.include_previous);
  if (snapshot.has_value()) {
    watcher->SetInitialState(std::move(snapshot->tasks), snapshot->revision);
  }
  std::optional<FieldValue> route =
      RequiredValue(effective.get(), TaskField::kTenantId);
  {
    absl::MutexLock lock(&watchers_mu_);
    // Shutdown may have begun since the check above.
    if (shutting_down_) watcher->RequestShutdown();
    if (absl::Status s = CheckCapsLocked(tenant); !s.ok()) {
      watcher->Unref();  // the hub's reference: it is not registered
      watcher->FinishNow(ToGrpcStatus(s));
      return watcher;
    }
    watcher->set_caller_tenant(tenant);
    ++watchers_by_tenant_[tenant];
    watchers_.insert(watcher);
    if (route.has_value() && std::holds_alternative<std::string>(*route)) {
      std::string& route_tenant = std::get<std::string>(*route);
      std::shared_ptr<Tenant>& routed = routed_[route_tenant];
      if (routed == nullptr) {
        routed = std::make_shared<Tenant>(route_tenant);
        // Which earlier revisions concerned the tenant is not known: assume
        // all up to now did.
        routed->last_touched = dispatched_.load();
      }
      routed->watchers.insert(watcher);
      watcher->set_route(routed);
    } else {
      unrouted_.insert(watcher);
    }
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
      auto it = watchers_by_tenant_.find(watcher->caller_tenant());
      if (it != watchers_by_tenant_.end() && --it->second == 0) {
        watchers_by_tenant_.erase(it);
      }
      if (watcher->route() == nullptr) {
        unrouted_.erase(watcher);
      } else if (auto routed = routed_.find(watcher->route()->id);
                 routed != routed_.end()) {
        routed->second->watchers.erase(watcher);
        if (routed->second->watchers.empty()) routed_.erase(routed);
      }
    }
  }
  if (erased) watcher->Unref();
}

size_t WatchHub::open_watchers() {
  absl::MutexLock lock(&watchers_mu_);
  return watchers_.size();
}

int64_t WatchHub::Publish(std::vector<Change> changes,
                          std::map<std::string, int64_t>* touched) {
  // The tenants a change concerns: the task's, before and after.
  auto for_each_tenant = [](const Change& change, auto visit) {
    visit(change.task.tenant_id());
    if (change.previous.has_value() &&
        change.previous->tenant_id() != change.task.tenant_id()) {
      visit(change.previous->tenant_id());
    }
  };
  std::vector<Entry> entries;
  entries.reserve(changes.size());
  for (Change& change : changes) {
    for_each_tenant(change, [&](const std::string& tenant) {
      (*touched)[tenant] = change.revision;
    });
    grpc::Slice encoded =
        EncodeEvent(EventType(change.kind), change.revision, change.task);
    entries.push_back(Entry{std::move(change), std::move(encoded)});
  }
  int64_t last = entries.back().change.revision;
  absl::MutexLock lock(&ring_mu_);
  for (Entry& entry : entries) {
    for_each_tenant(entry.change, [&](const std::string& tenant) {
      ring_by_tenant_[tenant].push_back(entry.change.revision);
    });
    ring_.push_back(std::move(entry));
    if (static_cast<int>(ring_.size()) > options_.ring_capacity) {
      // Revisions leave the ring oldest first, so each is at the front of
      // its tenants' lists.
      for_each_tenant(ring_.front().change, [&](const std::string& tenant) {
        auto it = ring_by_tenant_.find(tenant);
        it->second.pop_front();
        if (it->second.empty()) ring_by_tenant_.erase(it);
      });
      ring_.pop_front();
    }
  }
  return last;
}

void WatchHub::DispatchLoop() {
  SetThreadName("taskd-watch");
  Clock* const clock = options_.clock;
  absl::Time next_tick = clock->Now() + options_.tick;
  while (true) {
    std::vector<Change> changes;
    {
      absl::MutexLock lock(&dispatch_mu_);
      clock->AwaitWithDeadline(
          &dispatch_mu_,
          absl::Condition(
              +[](WatchHub* hub) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                return hub->dirty_ || hub->stop_;
              },
              this),
          next_tick);
      if (stop_) return;
      dirty_ = false;
      changes.swap(pending_);
    }
    std::map<std::string, int64_t> touched;
    int64_t last = changes.empty() ? 0 : Publish(std::move(changes), &touched);
    absl::Time now = clock->Now();
    bool tick = now >= next_tick;
    if (tick) next_tick = now + options_.tick;

    std::vector<Watcher*> due;
    {
      absl::MutexLock lock(&watchers_mu_);
      if (last > 0) {
        for (const auto& [tenant, revision] : touched) {
          auto it = routed_.find(tenant);
          if (it != routed_.end()) it->second->last_touched = revision;
        }
        // After last_touched: a watcher that sees the new dispatched_ also
        // sees the tenants it concerned.
        dispatched_.store(last, std::memory_order_release);
      }
      if (shutting_down_) {
        due.assign(watchers_.begin(), watchers_.end());
      } else {
        if (last > 0) {
          due.assign(unrouted_.begin(), unrouted_.end());
          for (const auto& [tenant, revision] : touched) {
            auto it = routed_.find(tenant);
            if (it == routed_.end()) continue;
            due.insert(due.end(), it->second->watchers.begin(),
                       it->second->watchers.end());
          }
        }
        if (tick) {
          for (Watcher* watcher : watchers_) {
            if (watcher->ProgressDue(now)) due.push_back(watcher);
          }
          std::sort(due.begin(), due.end());
          due.erase(std::unique(due.begin(), due.end()), due.end());
        }
      }
      for (Watcher* watcher : due) watcher->Ref();
    }
    for (Watcher* watcher : due) {
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
