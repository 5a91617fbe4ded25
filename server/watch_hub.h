// WatchHub: serves WatchTasks streams from the store's change history.
//
// Every committed change reaches the hub (TaskStore's on_commit) and goes
// into a bounded ring of recent changes. Each open stream (a Watcher) keeps
// only a cursor, its next revision, and at most one response in flight:
//   - a watcher that keeps up is served from the ring;
//   - a watcher that falls behind the ring catches up from the store's
//     history, a batch at a time, never from a queue that grows;
//   - a watcher that stops reading holds one response and its cursor, and
//     slows neither the writers (on_commit only appends to the ring and wakes
//     the dispatcher) nor the other watchers.
// So memory per watcher is bounded by one response (max_events_per_response
// events, at most max_response_bytes) whatever the reader does; only the
// initial state of send_initial_state is held whole, up to
// max_initial_state tasks.
//
// Streams run on gRPC's callback API: an open stream holds no thread. One
// dispatcher thread wakes idle watchers after commits and sends progress
// responses when they are due.
//
// Thread-safe.
#ifndef TASKD_SERVER_WATCH_HUB_H_
#define TASKD_SERVER_WATCH_HUB_H_

#include <grpcpp/support/server_callback.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
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

  // The reactor for one WatchTasks call. Request errors (bad filter,
  // negative start_revision, start_revision below the history kept, ...)
  // end the call at once with the matching status.
  //
  // `scope`, if not null, is ANDed with the request's filter (the caller's
  // tenant); `tenant` names whose stream this is, for the per-tenant cap.
  // Beyond max_watchers or max_watchers_per_tenant: RESOURCE_EXHAUSTED.
  grpc::ServerWriteReactor<tasks::v1::WatchTasksResponse>* Watch(
      grpc::CallbackServerContext* context,
      const tasks::v1::WatchTasksRequest* request,
      std::shared_ptr<const FilterExpr> scope = nullptr,
      const std::string& tenant = "");

  // A reactor that ends the call at once with `status`.
  grpc::ServerWriteReactor<tasks::v1::WatchTasksResponse>* Refuse(
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

  // Appends to `response` the events with revision >= *next_revision that
  // match `filter`, advancing *next_revision past every change considered.
  // Stops at the response bounds or when caught up with the store.
  // OutOfRange if *next_revision fell out of the history.
  absl::Status Collect(const FilterExpr* filter, int64_t* next_revision,
                       tasks::v1::WatchTasksResponse* response);
  void Unregister(Watcher* watcher);
  absl::Status CheckCapsLocked(const std::string& tenant)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(watchers_mu_);
  void DispatchLoop();
  void Wake();

  const WatchHubOptions options_;
  TaskStore* store_ = nullptr;

  absl::Mutex ring_mu_;
  std::deque<Change> ring_ ABSL_GUARDED_BY(ring_mu_);

  absl::Mutex watchers_mu_;
  std::set<Watcher*> watchers_ ABSL_GUARDED_BY(watchers_mu_);
  std::map<std::string, int> watchers_by_tenant_ ABSL_GUARDED_BY(watchers_mu_);
  bool shutting_down_ ABSL_GUARDED_BY(watchers_mu_) = false;

  absl::Mutex dispatch_mu_;
  bool dirty_ ABSL_GUARDED_BY(dispatch_mu_) = false;
  bool stop_ ABSL_GUARDED_BY(dispatch_mu_) = false;
  std::thread dispatcher_;
  std::atomic<int64_t> events_delivered_{0};
};

}  // namespace taskd

#endif  // TASKD_SERVER_WATCH_HUB_H_
