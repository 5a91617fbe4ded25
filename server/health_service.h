// HealthService: grpc.health.v1.Health, generated from Debian's grpc-proto
// (not gRPC's built-in service, which reflection cannot describe).
//
// Knows two service names: "" (the whole server) and "tasks.v1.TaskService";
// both share one status. Check on another name is NOT_FOUND; Watch on
// another name reports SERVICE_UNKNOWN, as the protocol asks.
//
// Thread-safe.
#ifndef TASKD_SERVER_HEALTH_SERVICE_H_
#define TASKD_SERVER_HEALTH_SERVICE_H_

#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace taskd {

class HealthService final : public grpc::health::v1::Health::CallbackService {
 public:
  HealthService() = default;
  HealthService(const HealthService&) = delete;
  HealthService& operator=(const HealthService&) = delete;
  ~HealthService() override;

  // SERVING or NOT_SERVING; open Watch streams are told of the change.
  void SetServing(bool serving);
  // Ends every open Watch stream (with OK), and makes new ones end at once.
  // Call before shutting the server down: Watch streams never end otherwise.
  void Shutdown();

  grpc::ServerUnaryReactor* Check(
      grpc::CallbackServerContext* context,
      const grpc::health::v1::HealthCheckRequest* request,
      grpc::health::v1::HealthCheckResponse* response) override;
  grpc::ServerWriteReactor<grpc::health::v1::HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* context,
      const grpc::health::v1::HealthCheckRequest* request) override;

 private:
  class Watcher;
  using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;
  ServingStatus StatusOf(const std::string& service)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Tells every open Watch stream its status (and, with `finish`, to end).
  void NotifyAll(bool finish);
  // Called by a watcher when its call is done.
  void Forget(Watcher* watcher);

  absl::Mutex mu_;
  bool serving_ ABSL_GUARDED_BY(mu_) = true;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::set<Watcher*> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace taskd

#endif  // TASKD_SERVER_HEALTH_SERVICE_H_
