// WatchHub: serves WatchTasks streams from the store's change history.
//
// Every committed change reaches the hub (TaskStore's on_commit). The hub's
// dispatcher thread encodes each change once, as the bytes of one
// WatchTasksResponse.events entry, and puts it in a bounded ring of recent
// changes; every stream that sends the change sends those same bytes (the
// responses are assembled from shared, reference-counted slices, so fan-out
// to N watchers costs N writes, not N encodings). Each open stream (a
// Watcher) keeps only a cursor, its next revision, and at most one response
// in flight:
//   - a watcher that keeps up is served from the ring;
//   - a watcher that falls behind the ring catches up from the store's
//     history, a batch at a time, never from a queue that grows;
//   - a watcher that stops reading holds one response and its cursor, and
//     slows neither the writers (on_commit only hands the changes over and
//     wakes the dispatcher) nor the other watchers.
// So memory per watcher is bounded by one response (max_events_per_response
// events, at most max_response_bytes) whatever the reader does; only the
// initial state of send_initial_state is held whole, up to
// max_initial_state tasks.
//
// Routing: a watcher whose filter pins one tenant (`tenant_id = "T" AND ...`,
// or the scope of a tenant-bound caller) is woken only by changes of that
// tenant; it skips the changes of others without looking at them. Other
// watchers are woken by every change. So a change costs work for the
// watchers that may want it, not for every open stream.
//
// Streams run on gRPC's callback API: an open stream holds no thread. The
// dispatcher wakes the watchers a commit concerns and sends progress
// responses when they are due.
//
// Thread-safe.
#ifndef TASKD_SERVER_WATCH_HUB_H_
#define TASKD_SERVER_WATCH_HUB_H_

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/server_callback.h>
#include <grpcpp/support/slice.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "storage/task_store.h"
#include "tasks/v1/tasks.grpc.pb.h"

namespace taskd {

struct WatchHubOptions {
  // Recent changes kept in memory for fan-out. Watchers further behind read
  // the store's history. Default 8192.
  int ring_capacity = 8192;
  // Bounds of one response. The events of one revision are never split (a
  // revision holds one change), so a response may exceed the byte bound by
  // one event. Defaults 512 events, 1 MiB.
  int max_events_per_response = 512;
  size_t max_response_bytes = 1 << 20;
  // send_initial_state sends at most this many tasks; a filter matching more
  // is RESOURCE_EXHAUSTED (list with ListTasks instead). Default 100,000.
  int max_initial_state = 100'000;
  // Progress responses: default interval and the bounds a request's
  // progress_interval is clamped to.
  absl::Duration default_progress_interval = absl::Seconds(60);
  absl::Duration min_progress_interval = absl::Milliseconds(100);
  absl::Duration max_progress_interval = absl::Hours(1);
  // How often the dispatcher checks for due progress responses.
  absl::Duration tick = absl::Milliseconds(50);
  // Caps on open streams, all tenants together and per tenant (callers of
  // no tenant count as one tenant). 0 means no cap. Defaults 20,000 and
  // 2,000.
  int max_watchers = 20'000;
  int max_watchers_per_tenant = 2'000;
  // Where progress and ticks read the time. Not owned; must outlive the hub.
  Clock* clock = Clock::Real();
};

// One WatchTasks request, checked: what a stream watches and from where.
struct WatchSpec {
  // The request's filter ANDed with the caller's scope; null: every task.
  std::shared_ptr<const FilterExpr> filter;
  // The first revision to send; 0: changes after the current revision.
  int64_t start_revision = 0;
  // Send the tasks matching `filter` first (start_revision is then 0).
  bool send_initial_state = false;
  // Progress response interval; unset: the hub's default. Clamped to
  // [min_progress_interval, max_progress_interval].
  std::optional<absl::Duration> progress_interval;
  // The caller's tenant ("" for every tenant), for the per-tenant cap.
  std::string tenant;
  // Events carry the task before the change (TaskEvent.previous).
  bool include_previous = false;
};

class WatchHub {
 public:
  explicit WatchHub(const WatchHubOptions& options);
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;
  // Shuts down with no grace if Shutdown() was not called.
  ~WatchHub();

  // Starts serving from `store` (not owned; must outlive the hub). Call once,
  // before the first Watch and before any write reaches the store.
  void Attach(TaskStore* store);

  // Feed for TaskStore's on_commit: changes in revision order.
  void OnCommit(const std::vector<Change>& changes);

  // The reactor for one WatchTasks call, as checked and parsed by the
  // service (TaskService::Watch); it writes serialized WatchTasksResponse
  // messages. What only the hub can judge ends the call at once with the
  // matching status: OUT_OF_RANGE for a start_revision below the history
  // kept (REVISION_COMPACTED) or beyond the newest revision + 1
  // (REVISION_AHEAD); RESOURCE_EXHAUSTED beyond max_watchers,
  // max_watchers_per_tenant or max_initial_state; UNAVAILABLE while
  // shutting down.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Watch(WatchSpec spec);

  // A reactor that ends the call at once with `status`.
  // Whether the store has committed `revision`, though CurrentRevision()
  // may not have reached it yet: with several servers on one database
  // (PostgreSQL), a client may bring a revision that another server
  // handed out before this one has followed it.
  bool Committed(int64_t revision);
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Refuse(
      const absl::Status& status);

  // Every open stream gets a final progress response and then ends with
  // UNAVAILABLE, so that clients resume from their revision after the
  // restart; new streams end at once. Waits up to `grace` for the streams
  // to end (a reader that does not read may keep its stream open until the
  // server cancels it). Idempotent.
  void Shutdown(absl::Duration grace);

  // Streams open now.
  size_t open_watchers();
  // Events written to streams since the hub started.
  int64_t events_delivered() const { return events_delivered_.load(); }

 private:
  class Watcher;
  friend class Watcher;

  // A committed change as the ring holds it: the change, and its bytes as
  // one WatchTasksResponse.events entry (tag, length and TaskEvent).
  struct Entry {
    Change change;
    grpc::Slice encoded;
  };
  // The watchers of one tenant, and the last revision that concerned the
  // tenant (a change whose task, before or after, belongs to it). Revisions
  // up to `dispatched_` that are above `last_touched` are of no interest to
  // these watchers.
  struct Tenant {
    explicit Tenant(std::string tenant_id) : id(std::move(tenant_id)) {}
    const std::string id;
    std::set<Watcher*> watchers;
    std::atomic<int64_t> last_touched{0};
  };
  // A response under construction: its event slices and their size.
  struct Response {
    std::vector<grpc::Slice> events;
    size_t bytes = 0;
  };

  // Adds to `response` the events with revision >= *next_revision that
  // match `filter`, advancing *next_revision past every change considered.
  // Stops at the response bounds or when caught up with the dispatched
  // changes. `tenant`, if not null, is the one tenant `filter` admits.
  // OutOfRange if *next_revision fell out of the history.
  absl::Status Collect(const FilterExpr* filter, const Tenant* tenant,
                       bool include_previous, int64_t* next_revision,
                       Response* response);
  bool Full(const Response& response) const;
  void Unregister(Watcher* watcher);
  absl::Status CheckCapsLocked(const std::string& tenant)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(watchers_mu_);
  void DispatchLoop();
  // Moves `changes` into the ring, encoded; records which tenants they
  // concern in *touched (tenant id -> the last revision concerning it).
  // Returns the last revision of `changes` (not empty).
  int64_t Publish(std::vector<Change> changes,
                  std::map<std::string, int64_t>* touched);
  void Wake();

  const WatchHubOptions options_;
  TaskStore* store_ = nullptr;

  absl::Mutex ring_mu_;
  std::deque<Entry> ring_ ABSL_GUARDED_BY(ring_mu_);
  // The revisions in the ring that concern each tenant, ascending.
  std::map<std::string, std::deque<int64_t>> ring_by_tenant_
      ABSL_GUARDED_BY(ring_mu_);
  // The last revision in the ring (every change up to it has been routed).
  std::atomic<int64_t> dispatched_{0};

  absl::Mutex watchers_mu_;
  std::set<Watcher*> watchers_ ABSL_GUARDED_BY(watchers_mu_);
  // Watchers woken by every change (their filter pins no tenant).
  std::set<Watcher*> unrouted_ ABSL_GUARDED_BY(watchers_mu_);
  // Watchers whose filter pins a tenant, by tenant id.
  std::map<std::string, std::shared_ptr<Tenant>> routed_
      ABSL_GUARDED_BY(watchers_mu_);
  // Open streams by the caller's tenant, for the per-tenant cap.
  std::map<std::string, int> watchers_by_tenant_ ABSL_GUARDED_BY(watchers_mu_);
  bool shutting_down_ ABSL_GUARDED_BY(watchers_mu_) = false;

  absl::Mutex dispatch_mu_;
  // Changes committed, not yet taken by the dispatcher.
  std::vector<Change> pending_ ABSL_GUARDED_BY(dispatch_mu_);
  bool dirty_ ABSL_GUARDED_BY(dispatch_mu_) = false;
  bool stop_ ABSL_GUARDED_BY(dispatch_mu_) = false;
  std::thread dispatcher_;
  std::atomic<int64_t> events_delivered_{0};
};

}  // namespace taskd

#endif  // TASKD_SERVER_WATCH_HUB_H_
