// TaskWatch: a WatchTasks stream that survives disconnects and restarts.
//
//   tasks::v1::WatchTasksRequest request;
//   request.set_filter("state = \"started\"");
//   taskd::TaskWatch watch(channel, request);
//   taskd::TaskWatch::Callbacks callbacks;
//   callbacks.on_event = [](const tasks::v1::TaskEvent& e) { ... };
//   absl::Status why = watch.Run(callbacks);   // blocks; Stop() ends it
//
// When a stream breaks (UNAVAILABLE, a server restart, a network error), it
// reconnects with jittered exponential backoff and resumes from the last
// revision it delivered + 1, so every event reaches the caller exactly once,
// in revision order. Run() returns on Stop() (OK) or on an error that a retry
// cannot fix: OUT_OF_RANGE (the history no longer reaches back to the
// resume point, or the resume point is ahead of a database that lost
// changes: list again and watch from the list's revision + 1),
// INVALID_ARGUMENT (bad filter), PERMISSION_DENIED, ...
//
// With send_initial_state, the initial state is delivered once; if the
// stream breaks before it is complete, it is sent again from its start
// (on_initial_state_restart tells the caller to discard what it got).
//
// Callbacks run on the thread that called Run(). Stop() may be called from
// any thread.
#ifndef TASKD_CLIENT_TASK_WATCH_H_
#define TASKD_CLIENT_TASK_WATCH_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <atomic>
#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tasks/v1/tasks.grpc.pb.h"

namespace taskd {

class TaskWatch {
 public:
  struct Options {
    // Backoff between reconnects: starts at initial_backoff, doubles up to
    // max_backoff, each wait drawn at random from [wait/2, wait].
    absl::Duration initial_backoff = absl::Milliseconds(100);
    absl::Duration max_backoff = absl::Seconds(10);
    // Sent as "authorization: Bearer TOKEN" when not empty.
    std::string bearer_token;
  };

  struct Callbacks {
    std::function<void(const tasks::v1::TaskEvent&)> on_event;
    // The initial state is complete, as of `revision`.
    std::function<void(int64_t revision)> on_initial_state_complete;
    // Everything up to `revision` has been delivered.
    std::function<void(int64_t revision)> on_progress;
    // The stream broke; the watch reconnects after `backoff`.
    std::function<void(const absl::Status& why, absl::Duration backoff)>
        on_reconnect;
    // The initial state is being sent again from its start.
    std::function<void()> on_initial_state_restart;
  };

  TaskWatch(std::shared_ptr<grpc::Channel> channel,
            tasks::v1::WatchTasksRequest request)
      : TaskWatch(std::move(channel), std::move(request), Options()) {}
  TaskWatch(std::shared_ptr<grpc::Channel> channel,
            tasks::v1::WatchTasksRequest request, const Options& options);

  absl::Status Run(const Callbacks& callbacks);
  void Stop();

  // The revision up to which every change has been delivered (0 before the
  // first response that carries one).
  int64_t last_revision() const { return last_revision_.load(); }

 private:
  // One stream; returns how it ended.
  absl::Status RunOnce(const Callbacks& callbacks, bool* made_progress);

  const std::unique_ptr<tasks::v1::TaskService::Stub> stub_;
  tasks::v1::WatchTasksRequest request_;
  const Options options_;
  std::atomic<int64_t> last_revision_{0};
  bool initial_done_ = false;
  // Whether last_revision_ is a position the server confirmed (or the
  // caller gave), so that a reconnect resumes from it rather than "now".
  bool positioned_ = false;

  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace taskd

#endif  // TASKD_CLIENT_TASK_WATCH_H_
