// Metrics: taskd's Prometheus metrics, and the gRPC interceptor that
// observes and logs every call.
//
//   taskd_calls_total{method,code}              calls by method and status
//   taskd_call_duration_seconds{method}         latency histogram
//   taskd_watch_streams_open                    open WatchTasks streams
//   taskd_watch_events_delivered_total          events written to streams
//   taskd_store_revision                        the last committed revision
//   taskd_store_commit_duration_seconds         commit latency histogram
//   taskd_store_commit_batch_size               changes per commit
//   taskd_tasks{state}                          tasks by state
//
// Served as Prometheus text on http://ADDRESS/metrics when taskd has
// --metrics_listen. Thread-safe.
#ifndef TASKD_SERVER_METRICS_H_
#define TASKD_SERVER_METRICS_H_

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/auth.h"

namespace taskd {

class Metrics {
 public:
  Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  void ObserveCall(const std::string& method, const std::string& code,
                   absl::Duration duration);
  void ObserveCommit(absl::Duration duration, size_t batch_size);
  void SetOpenWatchStreams(size_t open);
  void AddEventsDelivered(int64_t events);
  void SetRevision(int64_t revision);
  void SetTasksByState(const std::map<std::string, int64_t>& counts);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& calls_;
  prometheus::Family<prometheus::Histogram>& call_duration_;
  prometheus::Histogram& commit_duration_;
  prometheus::Histogram& commit_batch_;
  prometheus::Gauge& watch_streams_;
  prometheus::Counter& events_delivered_;
  prometheus::Gauge& revision_;
  prometheus::Family<prometheus::Gauge>& tasks_;
};

// Observes every call: metrics (if `metrics` is not null) and one log line,
// at debug level for successes and at warning for errors, with method,
// status, peer, tenant and duration. `authorizer` (may be null) names the
// caller's tenant. A TaskService request gRPC could not decode, which gRPC
// 1.51 answers with a bare UNIMPLEMENTED, is answered INVALID_ARGUMENT
// (reason MALFORMED_REQUEST) instead.
class CallObserverFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  CallObserverFactory(Metrics* metrics, Authorizer* authorizer)
      : metrics_(metrics), authorizer_(authorizer) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  Metrics* const metrics_;
  Authorizer* const authorizer_;
};

}  // namespace taskd

#endif  // TASKD_SERVER_METRICS_H_
