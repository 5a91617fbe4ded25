#include "server/health_service.h"

#include <atomic>
#include <utility>
#include <vector>

namespace taskd {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// One Watch stream. Sends the current status, then every change. Only the
// latest status matters, so at most one write is in flight and a change that
// arrives meanwhile is sent when it completes.
//
// gRPC may run a reaction on the thread that starts an operation, so no
// operation is started with a lock held: Step() decides under mu_ and acts
// after. References: gRPC's (dropped in OnDone) and the service's (dropped
// when it forgets the watcher); callers that notify outside the service's
// lock hold one more.
class HealthService::Watcher final
    : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  Watcher(HealthService* service, std::string name)
      : service_(service), name_(std::move(name)) {}

  const std::string& name() const { return name_; }
  void Ref() { refs_.fetch_add(1); }
  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

  void Notify(ServingStatus status, bool finish) {
    {
      absl::MutexLock lock(&mu_);
      latest_ = status;
      finish_requested_ |= finish;
    }
    Step();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) finish_requested_ = true;
    }
    Step();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      if (writing_) {
        // A write is decided or in flight, and gRPC forbids a write after
        // Finish: finish once it is done (Step, from OnWriteDone).
        finish_requested_ = true;
        return;
      }
      finished_ = true;
    }
    Finish(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    service_->Forget(this);
    Unref();
  }

 private:
  void Step() {
    enum { kNothing, kWrite, kFinish } action = kNothing;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_) return;
      if (latest_ != sent_) {
        sent_ = latest_;
        response_.set_status(latest_);
        writing_ = true;
        action = kWrite;
      } else if (finish_requested_) {
        finished_ = true;
        action = kFinish;
      }
    }
    if (action == kWrite) StartWrite(&response_);
    if (action == kFinish) Finish(grpc::Status::OK);
  }

  HealthService* const service_;
  const std::string name_;
  std::atomic<int> refs_{2};
  absl::Mutex mu_;
  // Owned by the write in flight while writing_.
  HealthCheckResponse response_;
  ServingStatus latest_ ABSL_GUARDED_BY(mu_) = HealthCheckResponse::UNKNOWN;
  // UNKNOWN is never a status we report, so the first Notify always writes.
  ServingStatus sent_ ABSL_GUARDED_BY(mu_) = HealthCheckResponse::UNKNOWN;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

void HealthService::Forget(Watcher* watcher) {
  bool known = false;
  {
    absl::MutexLock lock(&mu_);
    known = watchers_.erase(watcher) > 0;
  }
  if (known) watcher->Unref();
}

void HealthService::NotifyAll(bool finish) {
  std::vector<std::pair<Watcher*, ServingStatus>> targets;
  {
    absl::MutexLock lock(&mu_);
    for (Watcher* watcher : watchers_) {
      watcher->Ref();
      targets.emplace_back(watcher, StatusOf(watcher->name()));
    }
  }
  for (auto& [watcher, status] : targets) {
    watcher->Notify(status, finish);
    watcher->Unref();
  }
}

HealthService::~HealthService() { Shutdown(); }

HealthService::ServingStatus HealthService::StatusOf(
    const std::string& service) {
  if (service.empty() || service == "tasks.v1.TaskService") {
    return serving_ ? HealthCheckResponse::SERVING
                    : HealthCheckResponse::NOT_SERVING;
  }
  return HealthCheckResponse::SERVICE_UNKNOWN;
}

void HealthService::SetServing(bool serving) {
  {
    absl::MutexLock lock(&mu_);
    serving_ = serving;
  }
  NotifyAll(false);
}

void HealthService::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    serving_ = false;
  }
  NotifyAll(true);
}

grpc::ServerUnaryReactor* HealthService::Check(
    grpc::CallbackServerContext* context, const HealthCheckRequest* request,
    HealthCheckResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::MutexLock lock(&mu_);
  ServingStatus status = StatusOf(request->service());
  if (status == HealthCheckResponse::SERVICE_UNKNOWN) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::NOT_FOUND,
                     "unknown service \"" + request->service() + "\""));
  } else {
    response->set_status(status);
    reactor->Finish(grpc::Status::OK);
  }
  return reactor;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthService::Watch(
    grpc::CallbackServerContext* context, const HealthCheckRequest* request) {
  auto* watcher = new Watcher(this, request->service());
  ServingStatus status;
  bool finish;
  {
    absl::MutexLock lock(&mu_);
    watchers_.insert(watcher);
    watcher->Ref();  // for the Notify below, outside the lock
    status = StatusOf(request->service());
    finish = shut_down_;
  }
  watcher->Notify(status, finish);
  watcher->Unref();
  return watcher;
}

}  // namespace taskd
