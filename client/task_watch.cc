#include "client/task_watch.h"

#include <algorithm>
#include <random>

#include "absl/time/clock.h"
#include "base/error_details.h"
#include "client/task_client.h"

namespace taskd {
namespace {

// Errors a new stream may fix. Everything else is the caller's to handle.
bool Retryable(const absl::Status& status) {
  // Too many tasks for an initial state stays so: the caller must list.
  if (ReasonOf(status) == "INITIAL_STATE_TOO_LARGE") return false;
  switch (status.code()) {
    case absl::StatusCode::kOk:  // the server ended the stream
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kCancelled:  // by the server or a proxy; not Stop()
    case absl::StatusCode::kResourceExhausted:
      return true;
    default:
      return false;
  }
}

}  // namespace

TaskWatch::TaskWatch(std::shared_ptr<grpc::Channel> channel,
                     tasks::v1::WatchTasksRequest request,
                     const Options& options)
    : stub_(tasks::v1::TaskService::NewStub(std::move(channel))),
      request_(std::move(request)),
      options_(options) {
  if (request_.start_revision() > 0) {
    last_revision_ = request_.start_revision() - 1;
    positioned_ = true;
  }
}

absl::Status TaskWatch::Run(const Callbacks& callbacks) {
  std::mt19937_64 random(std::random_device{}());
  absl::Duration backoff = options_.initial_backoff;
  while (true) {
    bool made_progress = false;
    absl::Status status = RunOnce(callbacks, &made_progress);
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return absl::OkStatus();
    }
    if (!Retryable(status)) return status;
    if (made_progress) backoff = options_.initial_backoff;
    // Jitter spreads the reconnects of many clients after a restart.
    std::uniform_int_distribution<int64_t> pick(
        absl::ToInt64Microseconds(backoff) / 2,
        absl::ToInt64Microseconds(backoff));
    absl::Duration wait = absl::Microseconds(pick(random));
    if (callbacks.on_reconnect) callbacks.on_reconnect(status, wait);
    {
      absl::MutexLock lock(&mu_);
      auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopped_;
      };
      mu_.AwaitWithTimeout(absl::Condition(&stopped), wait);
      if (stopped_) return absl::OkStatus();
    }
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

absl::Status TaskWatch::RunOnce(const Callbacks& callbacks,
                                bool* made_progress) {
  tasks::v1::WatchTasksRequest request = request_;
  if (initial_done_ || !request_.send_initial_state()) {
    // Resume right after what was delivered. (Before anything was, this is
    // the caller's start_revision, or "from now" with 0.)
    request.set_send_initial_state(false);
    request.set_start_revision(positioned_ ? last_revision_.load() + 1 : 0);
  }  // else: the initial state, from its start
  grpc::ClientContext context;
  // Wait for the channel to (re)connect instead of failing at once while it
  // is in backoff: a restarting server is then picked up as soon as it
  // listens.
  context.set_wait_for_ready(true);
  if (!options_.bearer_token.empty()) {
    context.AddMetadata("authorization", "Bearer " + options_.bearer_token);
  }
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return absl::OkStatus();
    context_ = &context;
  }
  std::unique_ptr<grpc::ClientReader<tasks::v1::WatchTasksResponse>> reader =
      stub_->WatchTasks(&context, request);
  tasks::v1::WatchTasksResponse response;
  bool in_initial = request.send_initial_state();
  bool initial_started = false;
  while (reader->Read(&response)) {
    *made_progress = true;
    if (in_initial && !initial_started) initial_started = true;
    for (const tasks::v1::TaskEvent& event : response.events()) {
      // Live events never repeat a delivered revision (the resume point
      // guarantees it); the check guards against a misbehaving server.
      if (!in_initial && event.revision() <= last_revision_.load()) continue;
      if (callbacks.on_event) callbacks.on_event(event);
    }
    if (response.initial_state_complete()) {
      in_initial = false;
      initial_done_ = true;
      positioned_ = true;
      last_revision_ = response.revision();
      if (callbacks.on_initial_state_complete) {
        callbacks.on_initial_state_complete(response.revision());
      }
    } else if (!in_initial &&
               (response.revision() > last_revision_.load() || !positioned_)) {
      positioned_ = true;
      last_revision_ = response.revision();
      if (response.progress() && callbacks.on_progress) {
        callbacks.on_progress(response.revision());
      }
    }
  }
  grpc::Status status = reader->Finish();
  {
    absl::MutexLock lock(&mu_);
    context_ = nullptr;
  }
  if (in_initial && initial_started && callbacks.on_initial_state_restart) {
    callbacks.on_initial_state_restart();
  }
  return FromGrpcStatus(status);
}

void TaskWatch::Stop() {
  absl::MutexLock lock(&mu_);
  stopped_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

}  // namespace taskd
