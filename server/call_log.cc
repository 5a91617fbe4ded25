#include "server/call_log.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"

namespace taskd {
namespace {

std::string CodeName(grpc::StatusCode code) {
  std::string name =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? absl::StrCat(static_cast<int>(code)) : name;
}

}  // namespace

// One call's observer. gRPC creates it when the call arrives and deletes it
// with the call.
class CallLog::Observer final : public grpc::experimental::Interceptor {
 public:
  Observer(grpc::experimental::ServerRpcInfo* info, CallLog* log)
      : info_(info), log_(log) {
    ++log_->calls_in_flight_;
  }
  // A call that ends without sending a status (cancelled) leaves nothing
  // behind.
  ~Observer() override {
    {
      absl::MutexLock lock(&log_->mu_);
      log_->tenants_.erase(info_->server_context());
    }
    --log_->calls_in_flight_;
  }

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      start_ = absl::Now();
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      Record(methods->GetSendStatus());
    }
    methods->Proceed();
  }

 private:
  void Record(const grpc::Status& status) {
    absl::Duration took = absl::Now() - start_;
    std::string tenant = "-";
    {
      absl::MutexLock lock(&log_->mu_);
      auto it = log_->tenants_.find(info_->server_context());
      if (it != log_->tenants_.end()) {
        tenant = std::move(it->second);
        log_->tenants_.erase(it);
      }
    }
    std::string method = info_->method() ? info_->method() : "?";
    std::string code = CodeName(status.error_code());
    if (log_->metrics_ != nullptr) {
      log_->metrics_->ObserveCall(method, code, took);
    }
    LogLevel level = status.ok() ? LogLevel::kDebug : LogLevel::kWarning;
    if (level < MinLogLevel()) return;
    std::string peer = info_->server_context() != nullptr
                           ? info_->server_context()->peer()
                           : "?";
    Log(level, "call method=%s status=%s peer=%s tenant=%s duration=%s%s%s",
        method, code, peer, tenant, absl::FormatDuration(took),
        status.ok() ? "" : " message=",
        status.ok() ? "" : absl::StrCat("\"", status.error_message(), "\""));
  }

  grpc::experimental::ServerRpcInfo* const info_;
  CallLog* const log_;
  absl::Time start_ = absl::Now();
};

grpc::experimental::Interceptor* CallLog::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new Observer(info, this);
}

void CallLog::NoteCaller(const grpc::ServerContextBase& context,
                         const Caller& caller) {
  absl::MutexLock lock(&mu_);
  tenants_[&context] = caller.scoped() ? caller.tenant : "*";
}

}  // namespace taskd
