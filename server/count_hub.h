// CountHub: serves WatchTaskCounts streams: counts of tasks per group, kept
// exact from the store's committed changes, pushed to dashboards.
//
// Streams that ask the same question (the same filter, caller scope and
// group_by) share one View: one snapshot from the store (TaskStore::Count),
// then every committed change applied to it once, as a difference: the
// task's group before the change loses one if the task matched the filter,
// its group after gains one if it matches now. So a change costs work per
// distinct question, not per open stream, and the counts stay exact at
// every revision (each change arrives once, in revision order, with the
// task before it).
//
// Each stream sends the view's counts in full when they changed, at most
// once per its min_interval; changes in between are coalesced. A stream
// that stops reading holds one response and slows nobody: it is sent the
// latest counts once its write completes.
//
// One thread (the hub's) takes the committed changes, takes the snapshot
// of a new view (a read of the store; fast for counts by state, result
// code and tenant, see TaskStore::Count), applies the changes and sends
// what is due. Streams run on gRPC's callback API: an open stream holds no
// thread.
//
// Thread-safe.
#ifndef TASKD_SERVER_COUNT_HUB_H_
#define TASKD_SERVER_COUNT_HUB_H_

#include <grpcpp/support/server_callback.h>

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "storage/task_store.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd {

struct CountHubOptions {
  // min_interval when a request leaves it unset, and the bounds a request's
  // is clamped to. Defaults 1 s, [100 ms, 1 h].
  absl::Duration default_min_interval = absl::Seconds(1);
  absl::Duration min_min_interval = absl::Milliseconds(100);
  absl::Duration max_min_interval = absl::Hours(1);
  // How often the hub's thread looks for responses that are due.
  absl::Duration tick = absl::Milliseconds(50);
  // Caps on open streams, all tenants together and per caller tenant; 0
  // means no cap. Defaults 20,000 and 2,000.
  int max_streams = 20'000;
  int max_streams_per_tenant = 2'000;
  // Where intervals read the time. Not owned; must outlive the hub.
  Clock* clock = Clock::Real();
};

// One WatchTaskCounts request, checked by the service.
struct CountWatchSpec {
  // The request's filter ANDed with the caller's scope; null: every task.
  std::shared_ptr<const FilterExpr> filter;
  // Identifies the question: streams with equal keys share a view. The
  // service makes it from the request's filter text, the caller's scope
  // and the group_by fields.
  std::string key;
  std::vector<TaskField> group_by;
  // Unset: the hub's default; clamped to the hub's bounds.
  std::optional<absl::Duration> min_interval;
  // The caller's tenant ("" for every tenant), for the per-tenant cap.
  std::string tenant;
};

class CountHub {
 public:
  using Reactor = grpc::ServerWriteReactor<tasks::v1::WatchTaskCountsResponse>;

  explicit CountHub(const CountHubOptions& options);
  CountHub(const CountHub&) = delete;
  CountHub& operator=(const CountHub&) = delete;
  // Shuts down with no grace if Shutdown() was not called.
  ~CountHub();

  // Starts serving from `store` (not owned; must outlive the hub). Call
  // once, before the first Watch.
  void Attach(TaskStore* store);

  // Feed for TaskStore's on_commit: changes in revision order. Only hands
  // them over.
  void OnCommit(const std::vector<Change>& changes);

  // The reactor for one WatchTaskCounts call. RESOURCE_EXHAUSTED beyond
  // the caps; UNAVAILABLE while shutting down; the store's error if the
  // first count fails.
  Reactor* Watch(CountWatchSpec spec);
  // A reactor that ends the call at once with `status`.
  Reactor* Refuse(const absl::Status& status);

  // Ends every stream with UNAVAILABLE (clients reconnect and get the
  // counts anew) and refuses new ones; waits up to `grace` for them to
  // end. Idempotent.
  void Shutdown(absl::Duration grace);

  size_t open_streams();
  // Distinct questions being answered now (for tests and metrics).
  size_t open_views();

 private:
  class Stream;
  struct View;

  void Loop();
  void Wake();
  // Takes the first count of every view that has none, outside mu_.
  void Snapshot(const std::vector<std::shared_ptr<View>>& views);
  void Remove(Stream* stream);

  const CountHubOptions options_;
  TaskStore* store_ = nullptr;

  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<View>> views_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> streams_by_tenant_ ABSL_GUARDED_BY(mu_);
  size_t streams_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;

  // The hand-over from on_commit (a lock of its own, so that a committing
  // writer never waits for the hub's work).
  absl::Mutex pending_mu_;
  // Committed changes not yet applied.
  std::vector<Change> pending_ ABSL_GUARDED_BY(pending_mu_);
  bool dirty_ ABSL_GUARDED_BY(pending_mu_) = false;
  bool stop_ ABSL_GUARDED_BY(pending_mu_) = false;
  // Whether any view exists: with none, on_commit keeps no changes.
  std::atomic<bool> has_views_{false};
  std::thread thread_;
};

}  // namespace taskd

#endif  // TASKD_SERVER_COUNT_HUB_H_
