// CallLog: observes every gRPC call taskd serves: one log line (at debug
// level for successes, at warning for errors) with method, status, peer,
// tenant and duration, and the per-call metrics (taskd_calls_total,
// taskd_call_duration_seconds).
//
//   CallLog call_log(metrics);                 // an interceptor factory
//   service_options.on_caller = [&](auto& context, const Caller& caller) {
//     call_log.NoteCaller(context, caller);    // the service's one parse
//   };
//
// The tenant is the one the service identified from the call's token
// (NoteCaller): "*" for a token of every tenant, "-" when no token was
// identified (none, an unknown one, or a call refused before that).
//
// Thread-safe.
#ifndef TASKD_SERVER_CALL_LOG_H_
#define TASKD_SERVER_CALL_LOG_H_

#include <grpcpp/support/server_interceptor.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/auth.h"
#include "server/metrics.h"

namespace taskd {

class CallLog : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `metrics` (may be null: log only) must outlive the calls.
  explicit CallLog(Metrics* metrics) : metrics_(metrics) {}
  CallLog(const CallLog&) = delete;
  CallLog& operator=(const CallLog&) = delete;

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

  // The caller of the call `context` serves, for its log line.
  void NoteCaller(const grpc::ServerContextBase& context, const Caller& caller);

  // Calls that have arrived and not yet been destroyed.
  int64_t calls_in_flight() const { return calls_in_flight_.load(); }

 private:
  class Observer;
  friend class Observer;

  Metrics* const metrics_;
  std::atomic<int64_t> calls_in_flight_{0};
  absl::Mutex mu_;
  // The tenant noted for each call in flight, by its context.
  absl::flat_hash_map<const grpc::ServerContextBase*, std::string> tenants_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace taskd

#endif  // TASKD_SERVER_CALL_LOG_H_
