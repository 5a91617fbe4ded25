#include "server/metrics.h"

#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "base/error_details.h"
#include "base/log.h"
#include "google/protobuf/descriptor.h"
#include "server/grpc_status.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

// Seconds, from 100 us to 10 s.
prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

std::string CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  int index = static_cast<int>(code);
  if (index >= 0 && index < 17) return kNames[index];
  return absl::StrCat(index);
}

// gRPC 1.51's callback API answers a request it cannot decode (malformed
// bytes, a string field that is not UTF-8) with UNIMPLEMENTED and no
// message. Every TaskService method is implemented, so for them that status
// can only mean such a request: it becomes INVALID_ARGUMENT, saying so.
std::optional<grpc::Status> UndecodableRequest(const char* method,
                                               const grpc::Status& status) {
  constexpr absl::string_view kPrefix = "/tasks.v1.TaskService/";
  if (status.error_code() != grpc::StatusCode::UNIMPLEMENTED ||
      method == nullptr || !absl::StartsWith(method, kPrefix)) {
    return std::nullopt;
  }
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          "tasks.v1.TaskService");
  const google::protobuf::MethodDescriptor* descriptor =
      service == nullptr
          ? nullptr
          : service->FindMethodByName(
                std::string(absl::string_view(method).substr(kPrefix.size())));
  if (descriptor == nullptr) return std::nullopt;
  return ToGrpcStatus(WithReason(
      absl::InvalidArgumentError(absl::StrCat(
          "request: not a valid ", descriptor->input_type()->full_name(),
          " (malformed bytes, or a string field that is not UTF-8)")),
      "MALFORMED_REQUEST"));
}

class CallObserver final : public grpc::experimental::Interceptor {
 public:
  CallObserver(grpc::experimental::ServerRpcInfo* info, Metrics* metrics,
               Authorizer* authorizer)
      : info_(info), metrics_(metrics), authorizer_(authorizer) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      start_ = absl::Now();
      auto* metadata = methods->GetRecvInitialMetadata();
      if (metadata != nullptr && authorizer_ != nullptr &&
          !authorizer_->open()) {
        auto it = metadata->find("authorization");
        if (it != metadata->end()) {
          tenant_ = authorizer_->TenantOf(
              absl::string_view(it->second.data(), it->second.size()));
        }
      }
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::Status status = methods->GetSendStatus();
      if (std::optional<grpc::Status> rewritten =
              UndecodableRequest(info_->method(), status)) {
        status = *rewritten;
        methods->ModifySendStatus(status);
      }
      absl::Duration took = absl::Now() - start_;
      std::string method = info_->method() ? info_->method() : "?";
      std::string code = CodeName(status.error_code());
      if (metrics_ != nullptr) metrics_->ObserveCall(method, code, took);
      LogLevel level = status.ok() ? LogLevel::kDebug : LogLevel::kWarning;
      if (level >= MinLogLevel()) {
        std::string peer = info_->server_context() != nullptr
                               ? info_->server_context()->peer()
                               : "?";
        Log(level, "call method=%s status=%s peer=%s tenant=%s duration=%s%s%s",
            method, code, peer, tenant_.empty() ? "-" : tenant_,
            absl::FormatDuration(took), status.ok() ? "" : " message=",
            status.ok() ? ""
                        : absl::StrCat("\"", status.error_message(), "\""));
      }
    }
    methods->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* const info_;
  Metrics* const metrics_;
  Authorizer* const authorizer_;
  absl::Time start_ = absl::Now();
  std::string tenant_;
};

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      calls_(BuildCounter()
                 .Name("taskd_calls_total")
                 .Help("Calls by method and status code")
                 .Register(*registry_)),
      call_duration_(BuildHistogram()
                         .Name("taskd_call_duration_seconds")
                         .Help("Call latency by method")
                         .Register(*registry_)),
      commit_duration_(BuildHistogram()
                           .Name("taskd_store_commit_duration_seconds")
                           .Help("Storage commit latency")
                           .Register(*registry_)
                           .Add({}, LatencyBuckets())),
      commit_batch_(BuildHistogram()
                        .Name("taskd_store_commit_batch_size")
                        .Help("Changes per storage transaction")
                        .Register(*registry_)
                        .Add({},
                             prometheus::Histogram::BucketBoundaries{
                                 1, 2, 4, 8, 16, 32, 64, 128, 256, 512})),
      watch_streams_(BuildGauge()
                         .Name("taskd_watch_streams_open")
                         .Help("Open WatchTasks streams")
                         .Register(*registry_)
                         .Add({})),
      events_delivered_(BuildCounter()
                            .Name("taskd_watch_events_delivered_total")
                            .Help("Events written to watch streams")
                            .Register(*registry_)
                            .Add({})),
      revision_(BuildGauge()
                    .Name("taskd_store_revision")
                    .Help("The last committed store revision")
                    .Register(*registry_)
                    .Add({})),
      tasks_(BuildGauge()
                 .Name("taskd_tasks")
                 .Help("Tasks by state")
                 .Register(*registry_)) {}

void Metrics::ObserveCall(const std::string& method, const std::string& code,
                          absl::Duration duration) {
  calls_.Add({{"method", method}, {"code", code}}).Increment();
  call_duration_.Add({{"method", method}}, LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(duration));
}

void Metrics::ObserveCommit(absl::Duration duration, size_t batch_size) {
  commit_duration_.Observe(absl::ToDoubleSeconds(duration));
  commit_batch_.Observe(static_cast<double>(batch_size));
}

void Metrics::SetOpenWatchStreams(size_t open) {
  watch_streams_.Set(static_cast<double>(open));
}

void Metrics::AddEventsDelivered(int64_t events) {
  if (events > 0) events_delivered_.Increment(static_cast<double>(events));
}

void Metrics::SetRevision(int64_t revision) {
  revision_.Set(static_cast<double>(revision));
}

void Metrics::SetTasksByState(const std::map<std::string, int64_t>& counts) {
  for (const auto& [state, count] : counts) {
    tasks_.Add({{"state", state}}).Set(static_cast<double>(count));
  }
}

grpc::experimental::Interceptor* CallObserverFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new CallObserver(info, metrics_, authorizer_);
}

}  // namespace taskd
